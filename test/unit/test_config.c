/*
 * test_config.c: config.json parsing (defaults, every rejected key, wrong
 * types, limits) and serialisation (round trip, HF key set).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_config.h"
#include "tap.h"

/* A SmolLM2-135M config.json as published (trimmed of irrelevant keys). */
static const char *SMOLLM2 =
"{\n"
"  \"architectures\": [\"LlamaForCausalLM\"],\n"
"  \"attention_bias\": false,\n"
"  \"attention_dropout\": 0.0,\n"
"  \"bos_token_id\": 0,\n"
"  \"eos_token_id\": 0,\n"
"  \"hidden_act\": \"silu\",\n"
"  \"hidden_size\": 576,\n"
"  \"initializer_range\": 0.041666666666666664,\n"
"  \"intermediate_size\": 1536,\n"
"  \"is_llama_config\": true,\n"
"  \"max_position_embeddings\": 8192,\n"
"  \"mlp_bias\": false,\n"
"  \"model_type\": \"llama\",\n"
"  \"num_attention_heads\": 9,\n"
"  \"num_hidden_layers\": 30,\n"
"  \"num_key_value_heads\": 3,\n"
"  \"pad_token_id\": null,\n"
"  \"pretraining_tp\": 1,\n"
"  \"rms_norm_eps\": 1e-05,\n"
"  \"rope_interleaved\": false,\n"
"  \"rope_scaling\": null,\n"
"  \"rope_theta\": 100000,\n"
"  \"tie_word_embeddings\": true,\n"
"  \"torch_dtype\": \"bfloat16\",\n"
"  \"transformers_version\": \"4.42.3\",\n"
"  \"use_cache\": true,\n"
"  \"vocab_size\": 49152\n"
"}\n";

static const char *MINIMAL =
"{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
" \"intermediate_size\": 128, \"vocab_size\": 100}";

static SftStatus
parse(const char *json, SftLlamaConfig *cfg, SftError *err)
{
	sft_error_clear(err);
	return sft_llama_config_parse(json, strlen(json), cfg, err);
}

/*
 * MINIMAL with one more "key": value pair (after MINIMAL's own keys: json-c
 * keeps the last of duplicate keys, so the pair overrides); expect status
 * and a message containing needle.
 */
static void
expect_with(const char *pair, SftStatus want, const char *needle)
{
	char		json[1024];
	SftLlamaConfig cfg;
	SftError	err;
	SftStatus	st;

	snprintf(json, sizeof(json), "%.*s, %s}", (int) strlen(MINIMAL) - 1, MINIMAL, pair);
	st = parse(json, &cfg, &err);
	TAP_OK(st == want && strstr(err.message, needle) != NULL,
		   "%s -> %s (got %s: %s)", pair, sft_status_name(want), sft_status_name(st),
		   err.message);
}

/* A whole document; expect status and needle in the message. */
static void
expect_doc(const char *json, size_t len, SftStatus want, const char *needle, const char *what)
{
	SftLlamaConfig cfg;
	SftError	err;
	SftStatus	st;

	sft_error_clear(&err);
	st = sft_llama_config_parse(json, len, &cfg, &err);
	TAP_OK(st == want && strstr(err.message, needle) != NULL,
		   "%s -> %s (got %s: %s)", what, sft_status_name(want), sft_status_name(st), err.message);
}

static int
configs_equal(const SftLlamaConfig *a, const SftLlamaConfig *b)
{
	return a->hidden_size == b->hidden_size && a->n_layers == b->n_layers &&
		a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
		a->head_dim == b->head_dim && a->intermediate_size == b->intermediate_size &&
		a->vocab_size == b->vocab_size && a->max_position == b->max_position &&
		a->rms_norm_eps == b->rms_norm_eps && a->rope_theta == b->rope_theta &&
		a->tie_word_embeddings == b->tie_word_embeddings &&
		a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id;
}

static void
test_valid(void)
{
	SftLlamaConfig cfg;
	SftError	err;
	SftStatus	st;
	char		json[1024];

	st = parse(SMOLLM2, &cfg, &err);
	TAP_OK(st == SFT_OK, "SmolLM2-135M config parses (%s)", err.message);
	TAP_OK(cfg.hidden_size == 576 && cfg.n_layers == 30 && cfg.n_heads == 9 &&
		   cfg.n_kv_heads == 3 && cfg.head_dim == 64 && cfg.intermediate_size == 1536 &&
		   cfg.vocab_size == 49152 && cfg.max_position == 8192,
		   "SmolLM2 sizes: C=%d L=%d NH=%d NKV=%d HD=%d F=%d V=%d P=%d", cfg.hidden_size,
		   cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.intermediate_size,
		   cfg.vocab_size, cfg.max_position);
	TAP_OK(cfg.rms_norm_eps == 1e-5f && cfg.rope_theta == 100000.0f &&
		   cfg.tie_word_embeddings == 1 && cfg.bos_token_id == 0 && cfg.eos_token_id == 0,
		   "SmolLM2 eps, theta (integer in JSON), tied, bos/eos");

	st = parse(MINIMAL, &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.n_kv_heads == 4 && cfg.head_dim == 16 &&
		   cfg.max_position == 2048 && cfg.rms_norm_eps == 1e-6f &&
		   cfg.rope_theta == 10000.0f && cfg.tie_word_embeddings == 0 &&
		   cfg.bos_token_id == -1 && cfg.eos_token_id == -1,
		   "LlamaConfig defaults: NKV=NH, HD=C/NH, 2048 positions, eps 1e-6, theta 1e4, untied, no bos/eos (%s)",
		   err.message);

	/* null means absent for optional keys */
	snprintf(json, sizeof(json), "{\"num_key_value_heads\": null, \"head_dim\": null,"
			 " \"rope_theta\": null, \"bos_token_id\": null, \"tie_word_embeddings\": null, %s",
			 MINIMAL + 1);
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.n_kv_heads == 4 && cfg.head_dim == 16 &&
		   cfg.rope_theta == 10000.0f && cfg.bos_token_id == -1 && cfg.tie_word_embeddings == 0,
		   "null optional keys take the defaults (%s)", err.message);

	/* explicit head_dim that is not C / NH (and C not divisible by NH) */
	snprintf(json, sizeof(json), "{\"hidden_size\": 60, \"head_dim\": 32, \"num_hidden_layers\": 1,"
			 " \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"intermediate_size\": 8,"
			 " \"vocab_size\": 10}");
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.head_dim == 32 && cfg.n_kv_heads == 2,
		   "explicit head_dim independent of hidden_size (%s)", err.message);

	/* eos as a list (Llama 3), bos/eos as lists */
	snprintf(json, sizeof(json), "{\"bos_token_id\": [7], \"eos_token_id\": [9, 3, 5], %s",
			 MINIMAL + 1);
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.bos_token_id == 7 && cfg.eos_token_id == 9,
		   "token id lists: the first counts (%s)", err.message);
	snprintf(json, sizeof(json), "{\"eos_token_id\": [], %s", MINIMAL + 1);
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.eos_token_id == -1, "empty eos list is -1 (%s)", err.message);

	/* mistral without sliding window, MistralForCausalLM */
	snprintf(json, sizeof(json), "{\"model_type\": \"mistral\", \"sliding_window\": null,"
			 " \"architectures\": [\"MistralForCausalLM\"], %s", MINIMAL + 1);
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK, "mistral with sliding_window null is accepted (%s)", err.message);

	/* transformers 5 rope_parameters with the default type */
	snprintf(json, sizeof(json), "{\"rope_parameters\": {\"rope_type\": \"default\","
			 " \"rope_theta\": 500000.0}, %s", MINIMAL + 1);
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.rope_theta == 500000.0f,
		   "rope_parameters default type gives rope_theta (%s)", err.message);

	/* benign keys that do not change the math, zero attention dropout */
	snprintf(json, sizeof(json), "{\"attention_dropout\": 0, \"pretraining_tp\": 1,"
			 " \"partial_rotary_factor\": 1.0, \"sliding_window\": 4096, \"use_cache\": false,"
			 " \"torch_dtype\": \"float16\", \"rope_scaling\": null, %s", MINIMAL + 1);
	st = parse(json, &cfg, &err);
	TAP_OK(st == SFT_OK, "benign keys accepted (llama ignores sliding_window like HF) (%s)",
		   err.message);

	/* whitespace around the document, eps as integer-valued exponent */
	st = parse("  \n{\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
			   " \"intermediate_size\": 4, \"vocab_size\": 3, \"rms_norm_eps\": 1E-6} \n\t", &cfg, &err);
	TAP_OK(st == SFT_OK && cfg.rms_norm_eps == 1e-6f, "surrounding whitespace (%s)", err.message);
}

static void
test_rejected_keys(void)
{
	expect_with("\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0}", SFT_ERR_UNSUPPORTED,
				"rope_scaling.rope_type \"yarn\" is not supported");
	expect_with("\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}", SFT_ERR_UNSUPPORTED,
				"\"dynamic\"");
	expect_with("\"rope_scaling\": {\"rope_type\": \"llama3\"}", SFT_ERR_INVALID,
				"rope_scaling needs \"factor\"");
	expect_with("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", SFT_ERR_INVALID,
				"needs \"low_freq_factor\"");
	expect_with("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4,"
				" \"high_freq_factor\": 1, \"original_max_position_embeddings\": 8192}", SFT_ERR_INVALID,
				"low_freq_factor (4) < high_freq_factor (1)");
	expect_with("\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0, \"beta_fast\": 3}",
				SFT_ERR_UNSUPPORTED, "key \"beta_fast\" is not supported");
	expect_with("\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": -2.0}", SFT_ERR_INVALID,
				"rope factor");
	expect_with("\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0},"
				" \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 2.0}", SFT_ERR_INVALID, "not both");
	expect_with("\"rope_scaling\": 1", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_scaling\": \"dynamic\"", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_scaling\": []", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4}",
				SFT_ERR_UNSUPPORTED, "yarn");
	expect_with("\"rope_parameters\": {\"rope_type\": \"yarn\"}", SFT_ERR_UNSUPPORTED, "yarn");
	expect_with("\"rope_parameters\": 5", SFT_ERR_INVALID, "rope_parameters");
	expect_with("\"rope_parameters\": {\"rope_theta\": \"x\"}", SFT_ERR_INVALID, "rope_theta");
	expect_with("\"rope_theta\": 1000.0, \"rope_parameters\": {\"rope_theta\": 2000.0}",
				SFT_ERR_INVALID, "disagree");
	expect_with("\"attention_bias\": true", SFT_ERR_UNSUPPORTED, "attention_bias");
	expect_with("\"mlp_bias\": true", SFT_ERR_UNSUPPORTED, "mlp_bias");
	expect_with("\"hidden_act\": \"gelu\"", SFT_ERR_UNSUPPORTED, "hidden_act");
	expect_with("\"hidden_act\": \"relu\"", SFT_ERR_UNSUPPORTED, "\"relu\"");
	expect_with("\"model_type\": \"phi3\"", SFT_ERR_UNSUPPORTED, "model_type");
	expect_with("\"model_type\": \"mistral\", \"sliding_window\": 4096", SFT_ERR_UNSUPPORTED,
				"sliding_window");
	expect_with("\"pretraining_tp\": 2", SFT_ERR_UNSUPPORTED, "pretraining_tp");
	expect_with("\"pretraining_tp\": 0", SFT_ERR_INVALID, "pretraining_tp");
	expect_with("\"attention_dropout\": 0.1", SFT_ERR_UNSUPPORTED, "attention_dropout");
	expect_with("\"partial_rotary_factor\": 0.5", SFT_ERR_UNSUPPORTED, "partial_rotary_factor");
	expect_with("\"quantization_config\": {\"quant_method\": \"gptq\"}", SFT_ERR_UNSUPPORTED,
				"quantization_config");
	expect_with("\"architectures\": [\"LlamaForSequenceClassification\"]", SFT_ERR_UNSUPPORTED,
				"LlamaForSequenceClassification");
	expect_with("\"architectures\": [\"LlamaForCausalLM\", \"Other\"]", SFT_ERR_UNSUPPORTED,
				"\"Other\"");
	/* names from the file are shown printable and bounded */
	expect_with("\"model_type\": \"a\\u0001b\\u00e9cdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij\"",
				SFT_ERR_UNSUPPORTED, "a?b??cdef");
}

static void
test_wrong_types(void)
{
	expect_with("\"hidden_size\": 64.5", SFT_ERR_INVALID, "\"hidden_size\" must be an integer");
	expect_with("\"hidden_size\": \"64\"", SFT_ERR_INVALID, "\"hidden_size\" must be an integer, not a string");
	expect_with("\"num_hidden_layers\": true", SFT_ERR_INVALID, "\"num_hidden_layers\" must be an integer");
	expect_with("\"num_attention_heads\": [4]", SFT_ERR_INVALID, "\"num_attention_heads\"");
	expect_with("\"num_key_value_heads\": {}", SFT_ERR_INVALID, "\"num_key_value_heads\"");
	expect_with("\"intermediate_size\": 1e3", SFT_ERR_INVALID, "\"intermediate_size\"");
	expect_with("\"vocab_size\": \"big\"", SFT_ERR_INVALID, "\"vocab_size\"");
	expect_with("\"head_dim\": 16.0", SFT_ERR_INVALID, "\"head_dim\"");
	expect_with("\"max_position_embeddings\": \"2048\"", SFT_ERR_INVALID,
				"\"max_position_embeddings\"");
	expect_with("\"rms_norm_eps\": \"1e-5\"", SFT_ERR_INVALID, "\"rms_norm_eps\" must be a number");
	expect_with("\"rope_theta\": [10000]", SFT_ERR_INVALID, "\"rope_theta\" must be a number");
	expect_with("\"tie_word_embeddings\": 1", SFT_ERR_INVALID,
				"\"tie_word_embeddings\" must be true or false");
	expect_with("\"tie_word_embeddings\": \"true\"", SFT_ERR_INVALID, "\"tie_word_embeddings\"");
	expect_with("\"attention_bias\": 0", SFT_ERR_INVALID, "\"attention_bias\" must be true or false");
	expect_with("\"mlp_bias\": \"no\"", SFT_ERR_INVALID, "\"mlp_bias\"");
	expect_with("\"hidden_act\": 3", SFT_ERR_INVALID, "\"hidden_act\" must be a string");
	expect_with("\"model_type\": [\"llama\"]", SFT_ERR_INVALID, "\"model_type\" must be a string");
	expect_with("\"bos_token_id\": \"1\"", SFT_ERR_INVALID, "\"bos_token_id\"");
	expect_with("\"eos_token_id\": [1, \"2\"]", SFT_ERR_INVALID, "\"eos_token_id\"");
	expect_with("\"eos_token_id\": 1.5", SFT_ERR_INVALID, "\"eos_token_id\"");
	expect_with("\"pretraining_tp\": 1.0", SFT_ERR_INVALID, "\"pretraining_tp\"");
	expect_with("\"attention_dropout\": \"0\"", SFT_ERR_INVALID, "\"attention_dropout\"");
	expect_with("\"architectures\": \"LlamaForCausalLM\"", SFT_ERR_INVALID, "\"architectures\"");
	expect_with("\"architectures\": [3]", SFT_ERR_INVALID, "\"architectures\" element 0");
	expect_with("\"architectures\": [null]", SFT_ERR_INVALID, "\"architectures\" element 0");
}

static void
test_limits(void)
{
	SftLlamaConfig cfg;
	SftError	err;
	char		json[1024];

	expect_doc("{}", 0, SFT_ERR_FORMAT, "unexpected end of input", "empty input");
	{
		const char *doc = "{\"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
			" \"intermediate_size\": 8, \"vocab_size\": 10}";

		expect_doc(doc, strlen(doc), SFT_ERR_INVALID, "\"hidden_size\" is missing",
				   "missing hidden_size");
	}
	{
		const char *doc = "{\"hidden_size\": 8, \"num_attention_heads\": 4, \"intermediate_size\": 8,"
			" \"vocab_size\": 10}";

		expect_doc(doc, strlen(doc), SFT_ERR_INVALID, "\"num_hidden_layers\" is missing",
				   "missing num_hidden_layers");
	}
	expect_with("\"hidden_size\": null", SFT_ERR_INVALID, "\"hidden_size\" is missing");
	expect_with("\"hidden_size\": 0", SFT_ERR_LIMIT, "\"hidden_size\" = 0 is out of range");
	expect_with("\"hidden_size\": -64", SFT_ERR_LIMIT, "\"hidden_size\" = -64");
	expect_with("\"hidden_size\": 99999999999999999999999", SFT_ERR_LIMIT, "\"hidden_size\"");
	expect_with("\"vocab_size\": 4294967296", SFT_ERR_LIMIT, "\"vocab_size\"");
	expect_with("\"num_hidden_layers\": 100000", SFT_ERR_LIMIT, "\"num_hidden_layers\"");
	expect_with("\"num_key_value_heads\": 3", SFT_ERR_INVALID,
				"num_attention_heads (4) is not a multiple of num_key_value_heads (3)");
	expect_with("\"num_key_value_heads\": 0", SFT_ERR_LIMIT, "\"num_key_value_heads\" = 0");
	expect_with("\"head_dim\": 15", SFT_ERR_INVALID, "head_dim (15) must be even");
	expect_with("\"rms_norm_eps\": -1e-5", SFT_ERR_INVALID, "rms_norm_eps");
	expect_with("\"rms_norm_eps\": 1e39", SFT_ERR_LIMIT, "rms_norm_eps");
	expect_with("\"rope_theta\": 0", SFT_ERR_INVALID, "rope_theta");
	expect_with("\"rope_theta\": -5.0", SFT_ERR_INVALID, "rope_theta");
	expect_with("\"bos_token_id\": 100", SFT_ERR_INVALID, "bos_token_id 100 is outside");
	expect_with("\"eos_token_id\": -2", SFT_ERR_LIMIT, "\"eos_token_id\" = -2");
	expect_with("\"eos_token_id\": [-1]", SFT_ERR_LIMIT, "\"eos_token_id\"");

	snprintf(json, sizeof(json), "{\"hidden_size\": 66, \"num_hidden_layers\": 1,"
			 " \"num_attention_heads\": 4, \"intermediate_size\": 8, \"vocab_size\": 10}");
	expect_doc(json, strlen(json), SFT_ERR_INVALID,
			   "hidden_size (66) is not a multiple of num_attention_heads (4)", "C % NH without head_dim");

	/* each size within bounds but the product too large for the parameter limit */
	snprintf(json, sizeof(json), "{\"hidden_size\": 1048576, \"num_hidden_layers\": 1024,"
			 " \"num_attention_heads\": 4096, \"head_dim\": 512, \"intermediate_size\": 1048576,"
			 " \"vocab_size\": 16777216}");
	expect_doc(json, strlen(json), SFT_ERR_LIMIT, "num_attention_heads * head_dim", "NH*HD bound");
	snprintf(json, sizeof(json), "{\"hidden_size\": 1048576, \"num_hidden_layers\": 1024,"
			 " \"num_attention_heads\": 4096, \"intermediate_size\": 1048576,"
			 " \"vocab_size\": 16777216}");
	expect_doc(json, strlen(json), SFT_ERR_LIMIT, "parameters", "parameter count bound");

	/* not JSON, not an object, trailing garbage, NUL, bad UTF-8 */
	expect_doc("{\"hidden_size\": 64,", 18, SFT_ERR_FORMAT, "invalid JSON", "truncated JSON");
	expect_doc("[1, 2]", 6, SFT_ERR_FORMAT, "must be a JSON object", "array document");
	expect_doc("{} x", 4, SFT_ERR_FORMAT, "unexpected data after", "trailing garbage");
	expect_doc("{}\0{}", 5, SFT_ERR_FORMAT, "NUL byte", "embedded NUL");
	expect_doc("{\"a\xff\": 1}", 9, SFT_ERR_FORMAT, "invalid UTF-8", "invalid UTF-8");
	expect_doc("nonsense", 8, SFT_ERR_FORMAT, "invalid JSON", "not JSON");

	/* validate() on hand-built configs */
	memset(&cfg, 0, sizeof(cfg));
	sft_error_clear(&err);
	TAP_OK(sft_llama_config_validate(&cfg, &err) == SFT_ERR_LIMIT &&
		   strstr(err.message, "hidden_size") != NULL, "validate: all-zero config (%s)", err.message);
	sft_error_clear(&err);
	TAP_OK(sft_llama_config_validate(NULL, &err) == SFT_ERR_INVALID, "validate: NULL config");
}

static void
test_to_json(void)
{
	SftLlamaConfig a;
	SftLlamaConfig b;
	SftError	err;
	SftBuf		text;
	SftBuf		again;
	SftStatus	st;
	static const char *const keys[] = {
		"\"LlamaForCausalLM\"", "\"model_type\": \"llama\"",
		"\"torch_dtype\": \"float32\"", "\"hidden_act\": \"silu\"", "\"rope_scaling\": null",
		"\"rms_norm_eps\": 1e-05", "\"rope_theta\": 100000.0", "\"tie_word_embeddings\": true",
		"\"num_key_value_heads\": 3", "\"head_dim\": 64", "\"bos_token_id\": 0",
	};

	parse(SMOLLM2, &a, &err);
	sft_buf_init(&text);
	sft_error_clear(&err);
	st = sft_llama_config_to_json(&a, &text, &err);
	TAP_OK(st == SFT_OK, "to_json SmolLM2 (%s)", err.message);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		TAP_OK(text.data && strstr(text.data, keys[i]) != NULL, "config.json has %s", keys[i]);
	st = parse(text.data, &b, &err);
	TAP_OK(st == SFT_OK && configs_equal(&a, &b), "parse(to_json(c)) == c (%s)", err.message);
	sft_buf_init(&again);
	sft_llama_config_to_json(&b, &again, &err);
	TAP_OK(again.len == text.len && memcmp(again.data, text.data, text.len) == 0,
		   "to_json is deterministic and a fixed point");
	sft_buf_free(&again);
	sft_buf_free(&text);

	/* odd floats and absent token ids survive the trip */
	parse(MINIMAL, &a, &err);
	a.rms_norm_eps = 1.2345678e-7f;
	a.rope_theta = 1234567.5f;
	a.tie_word_embeddings = 0;
	sft_buf_init(&text);
	sft_llama_config_to_json(&a, &text, &err);
	st = parse(text.data, &b, &err);
	TAP_OK(st == SFT_OK && configs_equal(&a, &b) && strstr(text.data, "\"eos_token_id\": null"),
		   "round trip of eps 1.2345678e-7, theta 1234567.5, null ids (%s)", err.message);
	sft_buf_free(&text);

	/* to_json refuses invalid configs */
	a.n_kv_heads = 3;
	sft_buf_init(&text);
	sft_error_clear(&err);
	TAP_OK(sft_llama_config_to_json(&a, &text, &err) == SFT_ERR_INVALID && text.len == 0,
		   "to_json validates (%s)", err.message);
	sft_buf_free(&text);
}

/* ---------------------------------------------------------------------------
 * The families: the published configs (test/fixtures/configs/), what each
 * parses to, and a to_json -> parse round trip that keeps every field.
 * ------------------------------------------------------------------------- */

static char fixture_dir[4096] = "test/fixtures/configs";

static char *
read_fixture(const char *name, size_t *len)
{
	char		path[4300];
	FILE	   *f;
	char	   *buf;
	long		n;

	snprintf(path, sizeof(path), "%s/%s.json", fixture_dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n + 1);
	if (fread(buf, 1, n, f) != (size_t) n)
		n = 0;
	buf[n] = '\0';
	fclose(f);
	*len = (size_t) n;
	return buf;
}

/* Parse a fixture; round-trip it through to_json; the parsed config. */
static int
parse_fixture(const char *name, SftLlamaConfig *cfg)
{
	size_t		len = 0;
	char	   *text = read_fixture(name, &len);
	SftLlamaConfig back;
	SftError	err;
	SftBuf		out;
	int			ok;

	if (text == NULL)
	{
		TAP_OK(0, "%s: fixture missing in %s", name, fixture_dir);
		return 0;
	}
	sft_error_clear(&err);
	ok = sft_llama_config_parse(text, len, cfg, &err) == SFT_OK;
	TAP_OK(ok, "%s: config.json parses (%s)", name, err.message);
	free(text);
	if (!ok)
		return 0;
	sft_buf_init(&out);
	ok = sft_llama_config_to_json(cfg, &out, &err) == SFT_OK &&
		sft_llama_config_parse(out.data, out.len, &back, &err) == SFT_OK &&
		memcmp(&back, cfg, sizeof(back)) == 0;
	TAP_OK(ok, "%s: to_json -> parse gives the same config (%s)", name, err.message);
	sft_buf_free(&out);
	return 1;
}

static void
test_families(void)
{
	SftLlamaConfig c;
	int			nope = 0,
				sliding = 0;

	if (parse_fixture("qwen2.5-0.5b", &c))
		TAP_OK(c.family == SFT_FAMILY_QWEN2 && c.qkv_bias && !c.qk_norm && c.tie_word_embeddings &&
			   c.head_dim == 64 && c.n_kv_heads == 2 && c.rope_theta == 1e6f && c.layer_flags[0] == 0 &&
			   sft_llama_config_num_params(&c) == 494032768,
			   "qwen2.5-0.5b: q/k/v bias, tied, inactive sliding window ignored, 494,032,768 parameters (%llu)",
			   (unsigned long long) sft_llama_config_num_params(&c));
	if (parse_fixture("qwen2.5-1.5b", &c))
		TAP_OK(c.family == SFT_FAMILY_QWEN2 && c.qkv_bias && c.head_dim == 128 &&
			   sft_llama_config_num_params(&c) == 1543714304,
			   "qwen2.5-1.5b: 1,543,714,304 parameters (%llu)",
			   (unsigned long long) sft_llama_config_num_params(&c));
	if (parse_fixture("qwen3-0.6b", &c))
		TAP_OK(c.family == SFT_FAMILY_QWEN3 && c.qk_norm && !c.qkv_bias && c.head_dim == 128 &&
			   c.hidden_size / c.n_heads == 64 && c.max_position == 40960 &&
			   sft_llama_config_num_params(&c) == 596049920,
			   "qwen3-0.6b: q/k norms, head_dim 128 != 1024 / 16, 596,049,920 parameters (%llu)",
			   (unsigned long long) sft_llama_config_num_params(&c));
	if (parse_fixture("qwen3-1.7b", &c))
		TAP_OK(c.family == SFT_FAMILY_QWEN3 && c.qk_norm && c.head_dim == 128 && c.n_kv_heads == 8,
			   "qwen3-1.7b: q/k norms, GQA 16/8");
	if (parse_fixture("llama-3.2-1b", &c))
		TAP_OK(c.family == SFT_FAMILY_LLAMA && c.rope_type == SFT_ROPE_LLAMA3 && c.rope_factor == 32.0f &&
			   c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f &&
			   c.rope_original_max_position == 8192 && c.rope_theta == 500000.0f &&
			   c.eos_token_id == 128001 && sft_llama_config_num_params(&c) == 1235814400,
			   "llama-3.2-1b: llama3 rope (32, 1, 4, 8192), 1,235,814,400 parameters (%llu)",
			   (unsigned long long) sft_llama_config_num_params(&c));
	if (parse_fixture("llama-3.2-3b", &c))
		TAP_OK(c.family == SFT_FAMILY_LLAMA && c.rope_type == SFT_ROPE_LLAMA3 && c.head_dim == 128,
			   "llama-3.2-3b: llama3 rope, head_dim 128");
	if (parse_fixture("smollm3-3b", &c))
	{
		for (int l = 0; l < c.n_layers; l++)
			nope += (c.layer_flags[l] & SFT_LAYER_NOPE) != 0;
		TAP_OK(c.family == SFT_FAMILY_SMOLLM3 && nope == 9 && (c.layer_flags[3] & SFT_LAYER_NOPE) &&
			   !(c.layer_flags[0] & SFT_LAYER_NOPE) && c.tie_word_embeddings && c.bos_token_id == -1,
			   "smollm3-3b: 9 NoPE layers (every 4th, no_rope_layers 0 = NoPE), tied by default, pretraining_tp ignored");
	}
	if (parse_fixture("gemma-3-270m", &c))
	{
		for (int l = 0; l < c.n_layers; l++)
			sliding += (c.layer_flags[l] & SFT_LAYER_SLIDING) != 0;
		TAP_OK(c.family == SFT_FAMILY_GEMMA3 && sliding == 15 && !(c.layer_flags[5] & SFT_LAYER_SLIDING) &&
			   c.sliding_window == 512 && c.rope_local_theta == 10000.0f && c.rope_theta == 1e6f &&
			   c.query_pre_attn_scalar == 256.0f && c.final_logit_softcap == 0.0f && c.qk_norm &&
			   c.tie_word_embeddings && c.vocab_size == 262144 &&
			   sft_llama_config_num_params(&c) == 268098176,
			   "gemma-3-270m: 15 local layers (window 512, base 1e4), 3 global, q/k norms, tied, 268,098,176 parameters (%llu)",
			   (unsigned long long) sft_llama_config_num_params(&c));
	}
}

/* The transformers 5 dialect, and the families' defaults and refusals. */
static void
test_family_dialects(void)
{
	SftLlamaConfig c;
	SftError	err;
	SftStatus	st;
	const char *g5 =
	"{\"model_type\": \"gemma3_text\", \"hidden_size\": 64, \"num_hidden_layers\": 4,"
	" \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
	" \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", \"factor\": 8.0,"
	" \"rope_theta\": 1000000.0}, \"sliding_attention\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}},"
	" \"final_logit_softcapping\": 30.0}";

	st = parse(g5, &c, &err);
	TAP_OK(st == SFT_OK && c.rope_type == SFT_ROPE_LINEAR && c.rope_factor == 8.0f &&
		   c.rope_theta == 1e6f && c.rope_local_theta == 1e4f && c.head_dim == 256 &&
		   c.query_pre_attn_scalar == 256.0f && c.sliding_window == 4096 && c.final_logit_softcap == 30.0f &&
		   (c.layer_flags[0] & SFT_LAYER_SLIDING) && (c.layer_flags[3] & SFT_LAYER_SLIDING) &&
		   c.tie_word_embeddings,
		   "gemma3_text 5.x: rope_parameters per layer type, defaults (head_dim 256, window 4096, pattern 6, tied) (%s)",
		   err.message);
	st = parse("{\"model_type\": \"gemma3_text\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"rope_parameters\": {\"sliding_attention\": {\"rope_type\": \"linear\", \"factor\": 2}}}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "sliding_attention") != NULL,
		   "gemma3_text: scaled rope on local layers refused (%s)", err.message);
	st = parse("{\"model_type\": \"gemma3_text\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"attn_logit_softcapping\": 50.0}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "attn_logit_softcapping") != NULL,
		   "gemma3_text: attn_logit_softcapping refused by name (%s)", err.message);
	st = parse("{\"model_type\": \"gemma3_text\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"hidden_activation\": \"gelu\"}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "hidden_activation") != NULL,
		   "gemma3_text: another activation refused by name (%s)", err.message);
	st = parse("{\"model_type\": \"gemma3_text\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"layer_types\": [\"sliding_attention\"]}", &c, &err);
	TAP_OK(st == SFT_ERR_INVALID && strstr(err.message, "layer_types") != NULL,
		   "gemma3_text: layer_types of the wrong length (%s)", err.message);
	st = parse("{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"use_sliding_window\": true, \"sliding_window\": 16}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "use_sliding_window") != NULL,
		   "qwen2: an active sliding window refused by name (%s)", err.message);
	st = parse("{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"layer_types\": [\"full_attention\", \"sliding_attention\"]}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "sliding_attention") != NULL,
		   "qwen3: sliding_attention layer type refused (%s)", err.message);
	st = parse("{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"attention_bias\": true}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "attention_bias") != NULL,
		   "qwen3: attention_bias true refused (%s)", err.message);
	st = parse("{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100}", &c, &err);
	TAP_OK(st == SFT_OK && c.head_dim == 128 && !c.tie_word_embeddings && c.max_position == 32768,
		   "qwen3 defaults: head_dim 128, untied, 32768 positions (%s)", err.message);
	st = parse("{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"attention_bias\": false}", &c, &err);
	TAP_OK(st == SFT_OK && c.qkv_bias, "qwen2: q/k/v bias whatever attention_bias says, as transformers (%s)",
		   err.message);
	st = parse("{\"model_type\": \"smollm3\", \"hidden_size\": 64, \"num_hidden_layers\": 6,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"no_rope_layer_interval\": 3}", &c, &err);
	TAP_OK(st == SFT_OK && c.layer_flags[2] == SFT_LAYER_NOPE && c.layer_flags[5] == SFT_LAYER_NOPE &&
		   c.layer_flags[0] == 0 && c.layer_flags[3] == 0 && c.rope_theta == 2e6f,
		   "smollm3: NoPE every no_rope_layer_interval-th layer, rope_theta default 2e6 (%s)", err.message);
	st = parse("{\"model_type\": \"smollm3\", \"hidden_size\": 64, \"num_hidden_layers\": 3,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"no_rope_layers\": [1, 2, 1]}", &c, &err);
	TAP_OK(st == SFT_ERR_LIMIT && strstr(err.message, "no_rope_layers") != NULL,
		   "smollm3: no_rope_layers entries are 0 or 1 (%s)", err.message);
	st = parse("{\"model_type\": \"smollm3\", \"hidden_size\": 64, \"num_hidden_layers\": 3,"
			   " \"num_attention_heads\": 2, \"intermediate_size\": 32, \"vocab_size\": 100,"
			   " \"no_rope_layers\": [1, 0]}", &c, &err);
	TAP_OK(st == SFT_ERR_INVALID && strstr(err.message, "fewer than") != NULL,
		   "smollm3: no_rope_layers shorter than the layers (%s)", err.message);
	st = parse("{\"model_type\": \"llama\", \"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 64,"
			   " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 32,"
			   " \"vocab_size\": 100}", &c, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, "Qwen2ForCausalLM") != NULL,
		   "architecture of another family than model_type refused (%s)", err.message);
	st = parse("{\"architectures\": [\"Qwen3ForCausalLM\"], \"hidden_size\": 64,"
			   " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 32,"
			   " \"vocab_size\": 100}", &c, &err);
	TAP_OK(st == SFT_OK && c.family == SFT_FAMILY_QWEN3, "no model_type: the architecture names the family (%s)",
		   err.message);
}

int
main(int argc, char **argv)
{
	test_valid();
	test_rejected_keys();
	test_wrong_types();
	test_limits();
	test_to_json();
	{
		const char *slash = strrchr(argv[0], '/');

		/* test/unit/test_config -> test/fixtures/configs */
		if (argc > 1)
			snprintf(fixture_dir, sizeof(fixture_dir), "%s", argv[1]);
		else if (slash != NULL)
			snprintf(fixture_dir, sizeof(fixture_dir), "%.*s/../fixtures/configs",
					 (int) (slash - argv[0]), argv[0]);
	}
	test_families();
	test_family_dialects();
	return tap_done();
}
