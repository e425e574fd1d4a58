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
	expect_with("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", SFT_ERR_UNSUPPORTED,
				"rope_scaling");
	expect_with("\"rope_scaling\": {\"rope_type\": \"llama3\"}", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_scaling\": 1", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_scaling\": \"dynamic\"", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_scaling\": []", SFT_ERR_UNSUPPORTED, "rope_scaling");
	expect_with("\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4}",
				SFT_ERR_UNSUPPORTED, "factor");
	expect_with("\"rope_parameters\": {\"rope_type\": \"yarn\"}", SFT_ERR_UNSUPPORTED, "yarn");
	expect_with("\"rope_parameters\": 5", SFT_ERR_INVALID, "rope_parameters");
	expect_with("\"rope_parameters\": {\"rope_theta\": \"x\"}", SFT_ERR_INVALID, "rope_theta");
	expect_with("\"rope_theta\": 1000.0, \"rope_parameters\": {\"rope_theta\": 2000.0}",
				SFT_ERR_INVALID, "disagree");
	expect_with("\"attention_bias\": true", SFT_ERR_UNSUPPORTED, "attention_bias");
	expect_with("\"mlp_bias\": true", SFT_ERR_UNSUPPORTED, "mlp_bias");
	expect_with("\"hidden_act\": \"gelu\"", SFT_ERR_UNSUPPORTED, "hidden_act");
	expect_with("\"hidden_act\": \"relu\"", SFT_ERR_UNSUPPORTED, "\"relu\"");
	expect_with("\"model_type\": \"qwen2\"", SFT_ERR_UNSUPPORTED, "model_type");
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

int
main(void)
{
	test_valid();
	test_rejected_keys();
	test_wrong_types();
	test_limits();
	test_to_json();
	return tap_done();
}
