/*
 * test_lora_adapter.c: LoRA adapters (lora_adapter.h): adapter_config.json
 * parsing (PEFT's real files, every refused setting) and writing (round
 * trips), PEFT tensor names, the slab layout, safetensors round trips
 * (byte-exact) and every kind of bad file, the merge against a float64
 * computation, and PEFT directories.
 */
#define _GNU_SOURCE				/* memmem */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lora_adapter.h"
#include "tap.h"

/* C=8, L=2, NH=4, NKV=2, HD=2, F=12, V=16: q [8,8], k/v [4,8], o [8,8], gate/up [12,8], down [8,12]. */
static const char *TINY =
"{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
" \"num_key_value_heads\": 2, \"intermediate_size\": 12, \"vocab_size\": 16}";
static const char *TINY3 =
"{\"hidden_size\": 8, \"num_hidden_layers\": 3, \"num_attention_heads\": 4,"
" \"num_key_value_heads\": 2, \"intermediate_size\": 12, \"vocab_size\": 16}";

/* adapter_config.json as PEFT 0.17 writes it (every key). */
static const char *PEFT_FULL =
"{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n  \"base_model_name_or_path\": \"HuggingFaceTB/SmolLM2-135M\",\n"
"  \"bias\": \"none\",\n  \"corda_config\": null,\n  \"eva_config\": null,\n  \"exclude_modules\": null,\n"
"  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
"  \"layer_replication\": null,\n  \"layers_pattern\": null,\n  \"layers_to_transform\": null,\n"
"  \"loftq_config\": {},\n  \"lora_alpha\": 32,\n  \"lora_bias\": false,\n  \"lora_dropout\": 0.05,\n"
"  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n  \"modules_to_save\": null,\n"
"  \"peft_type\": \"LORA\",\n  \"qalora_group_size\": 16,\n  \"r\": 16,\n  \"rank_pattern\": {},\n"
"  \"revision\": null,\n  \"target_modules\": [\n    \"down_proj\",\n    \"k_proj\",\n    \"q_proj\",\n"
"    \"o_proj\",\n    \"v_proj\",\n    \"gate_proj\",\n    \"up_proj\"\n  ],\n  \"target_parameters\": [],\n"
"  \"task_type\": \"CAUSAL_LM\",\n  \"trainable_token_indices\": null,\n  \"use_dora\": false,\n"
"  \"use_qalora\": false,\n  \"use_rslora\": true\n}";

static char tmp_root[256];

static SftLlamaConfig
tiny_config(const char *json)
{
	SftLlamaConfig cfg;
	SftError	err = {0};

	if (sft_llama_config_parse(json, strlen(json), &cfg, &err) != SFT_OK)
	{
		printf("# bad test config: %s\n", err.message);
		exit(1);
	}
	return cfg;
}

static SftLoraConfig
lora_config(int r, double alpha, uint32_t targets)
{
	SftLoraConfig c = {0};

	c.r = r;
	c.alpha = alpha;
	c.dropout = 0;
	c.targets = targets;
	return c;
}

/* A random adapter (B not zero, so merging changes something). */
static SftLoraAdapter *
random_adapter(const SftLoraConfig *c, const SftLlamaConfig *mc, uint64_t seed)
{
	SftLoraAdapter *a = NULL;
	SftError	err = {0};
	SftRng		rng;

	if (sft_lora_adapter_new(c, mc, &a, &err) != SFT_OK)
	{
		printf("# cannot build the adapter: %s\n", err.message);
		exit(1);
	}
	sft_rng_seed(&rng, seed);
	for (size_t i = 0; i < a->n_params; i++)
		a->params[i] = sft_rng_normal(&rng);
	return a;
}

static int
same_config(const SftLoraConfig *a, const SftLoraConfig *b)
{
	return a->r == b->r && a->alpha == b->alpha && a->dropout == b->dropout &&
		a->rslora == b->rslora && a->targets == b->targets;
}

static SftStatus
parse_text(const char *json, SftLoraConfig *c, SftError *err)
{
	sft_error_clear(err);
	return sft_lora_config_parse(json, strlen(json), c, NULL, err);
}

/* PEFT_FULL with one "key": value replaced or added (before the closing brace). */
static char *
with_key(const char *key, const char *value)
{
	static char buf[8192];
	char		needle[128];
	const char *at;

	snprintf(needle, sizeof(needle), "\"%s\": ", key);
	at = strstr(PEFT_FULL, needle);
	if (at)
	{
		const char *end = at + strlen(needle);
		int			depth = 0;

		/* the old value ends at the comma or newline at depth 0 */
		for (; *end; end++)
		{
			if (*end == '[' || *end == '{')
				depth++;
			else if (*end == ']' || *end == '}')
			{
				if (depth == 0)
					break;
				depth--;
			}
			else if ((*end == ',' || *end == '\n') && depth == 0)
				break;
		}
		snprintf(buf, sizeof(buf), "%.*s%s%s%s", (int) (at - PEFT_FULL), PEFT_FULL, needle, value,
				 end);
	}
	else
		snprintf(buf, sizeof(buf), "%.*s,\n  \"%s\": %s\n}", (int) (strlen(PEFT_FULL) - 2),
				 PEFT_FULL, key, value);
	return buf;
}

/* ---------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------- */

static void
test_config_parse(void)
{
	SftLoraConfig c;
	SftError	err;
	char	   *base = NULL;

	sft_error_clear(&err);
	TAP_OK(sft_lora_config_parse(PEFT_FULL, strlen(PEFT_FULL), &c, &base, &err) == SFT_OK,
		   "PEFT 0.17's adapter_config.json parses (%s)", err.message);
	TAP_OK(c.r == 16 && c.alpha == 32 && c.dropout == 0.05 && c.rslora == 1 &&
		   c.targets == SFT_LORA_TARGET_ALL, "its r, alpha, dropout, rslora and targets");
	TAP_OK(base && strcmp(base, "HuggingFaceTB/SmolLM2-135M") == 0,
		   "base_model_name_or_path is returned");
	sft_free(base);
	TAP_OK(fabsf(sft_lora_scale(&c) - 8.0f) == 0, "rslora scale alpha/sqrt(r) = 8");
	c.rslora = 0;
	TAP_OK(sft_lora_scale(&c) == 2.0f, "scale alpha/r = 2");

	TAP_OK(parse_text("{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\", \"v_proj\"]}",
					  &c, &err) == SFT_OK && c.alpha == 8 && c.dropout == 0 && !c.rslora &&
		   c.targets == (SFT_LORA_TARGET(SFT_LORA_Q) | SFT_LORA_TARGET(SFT_LORA_V)),
		   "minimal config: PEFT's defaults (alpha 8, dropout 0)");
	TAP_OK(parse_text("{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"all-linear\"}",
					  &c, &err) == SFT_OK && c.targets == SFT_LORA_TARGET_ALL,
		   "target_modules \"all-linear\"");
	TAP_OK(parse_text("{\"peft_type\": \"LORA\", \"r\": 4.0, \"target_modules\": [\"self_attn.o_proj\", \"mlp.down_proj\"]}",
					  &c, &err) == SFT_OK &&
		   c.targets == (SFT_LORA_TARGET(SFT_LORA_O) | SFT_LORA_TARGET(SFT_LORA_DOWN)) && c.r == 4,
		   "entries with their parent module; r 4.0");
	TAP_OK(parse_text(with_key("future_feature", "null"), &c, &err) == SFT_OK &&
		   parse_text(with_key("future_switch", "false"), &c, &err) == SFT_OK,
		   "an unknown key with a neutral value is accepted");

	{
		static const struct
		{
			const char *json;
			SftStatus	status;
			const char *needle;
		}			bad[] = {
			{"[]", SFT_ERR_FORMAT, "must be a JSON object"},
			{"{\"r\": 4", SFT_ERR_FORMAT, "invalid JSON"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"all-linear\"} x", SFT_ERR_FORMAT, "after the JSON value"},
			{"{\"r\": 4, \"target_modules\": [\"q_proj\"]}", SFT_ERR_FORMAT, "peft_type is missing"},
			{"{\"peft_type\": \"IA3\", \"r\": 4, \"target_modules\": [\"q_proj\"]}", SFT_ERR_UNSUPPORTED, "peft_type \"IA3\""},
			{"{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"]}", SFT_ERR_FORMAT, "r is missing"},
			{"{\"peft_type\": \"LORA\", \"r\": 0, \"target_modules\": [\"q_proj\"]}", SFT_ERR_LIMIT, "r = 0"},
			{"{\"peft_type\": \"LORA\", \"r\": 1.5, \"target_modules\": [\"q_proj\"]}", SFT_ERR_FORMAT, "r must be an integer"},
			{"{\"peft_type\": \"LORA\", \"r\": 5000, \"target_modules\": [\"q_proj\"]}", SFT_ERR_LIMIT, "out of range"},
			{"{\"peft_type\": \"LORA\", \"r\": 4}", SFT_ERR_FORMAT, "target_modules is missing"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": []}", SFT_ERR_FORMAT, "target_modules is empty"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \".*q_proj\"}", SFT_ERR_UNSUPPORTED, "regular expression"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"lm_head\"]}", SFT_ERR_UNSUPPORTED, "\"lm_head\" is not supported"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"mlp.q_proj\"]}", SFT_ERR_UNSUPPORTED, "\"mlp.q_proj\""},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [3]}", SFT_ERR_FORMAT, "target_modules[0] must be a string"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"lora_alpha\": 0}", SFT_ERR_INVALID, "alpha"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"lora_alpha\": \"16\"}", SFT_ERR_FORMAT, "lora_alpha must be a number"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"lora_dropout\": 1}", SFT_ERR_INVALID, "dropout"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"use_rslora\": 1}", SFT_ERR_FORMAT, "use_rslora must be true or false"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"task_type\": \"SEQ_CLS\"}", SFT_ERR_UNSUPPORTED, "task_type \"SEQ_CLS\""},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"bias\": \"all\"}", SFT_ERR_UNSUPPORTED, "bias \"all\""},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"fan_in_fan_out\": true}", SFT_ERR_UNSUPPORTED, "fan_in_fan_out"},
			{"{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": [\"q_proj\"], \"base_model_name_or_path\": 7}", SFT_ERR_FORMAT, "base_model_name_or_path must be a string"},
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			SftStatus	st = parse_text(bad[i].json, &c, &err);

			TAP_OK(st == bad[i].status && strstr(err.message, bad[i].needle) != NULL,
				   "refused (%s): %s", sft_status_name(st), err.message);
		}
	}
	{
		static const char *const switches[][2] = {
			{"use_dora", "true"}, {"rank_pattern", "{\"q_proj\": 8}"},
			{"alpha_pattern", "{\"q_proj\": 8}"}, {"layers_to_transform", "[0]"},
			{"modules_to_save", "[\"lm_head\"]"}, {"lora_bias", "true"},
			{"exclude_modules", "[\"q_proj\"]"}, {"trainable_token_indices", "[1, 2]"},
			{"layer_replication", "[[0, 1]]"}, {"target_parameters", "[\"x\"]"},
			{"future_feature", "1"},
		};

		for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++)
		{
			SftStatus	st = parse_text(with_key(switches[i][0], switches[i][1]), &c, &err);

			TAP_OK(st == SFT_ERR_UNSUPPORTED && strstr(err.message, switches[i][0]) != NULL,
				   "%s = %s refused: %s", switches[i][0], switches[i][1], err.message);
		}
	}
	{
		char		nul[] = "{\"peft_type\": \"LORA\"\0}";

		sft_error_clear(&err);
		TAP_OK(sft_lora_config_parse(nul, sizeof(nul) - 1, &c, NULL, &err) == SFT_ERR_FORMAT &&
			   strstr(err.message, "NUL byte") != NULL, "a NUL byte is refused: %s", err.message);
		TAP_OK(parse_text("{\"peft_type\": \"\xff\"}", &c, &err) == SFT_ERR_FORMAT &&
			   strstr(err.message, "UTF-8") != NULL, "invalid UTF-8 is refused: %s", err.message);
	}
}

static void
test_config_write(void)
{
	static const char *expect =
		"{\n  \"base_model_name_or_path\": \"smol \\\"2\\\"\",\n  \"bias\": \"none\",\n"
		"  \"fan_in_fan_out\": false,\n  \"lora_alpha\": 32,\n  \"lora_dropout\": 0.05,\n"
		"  \"peft_type\": \"LORA\",\n  \"r\": 16,\n  \"target_modules\": [\n    \"down_proj\",\n"
		"    \"q_proj\",\n    \"v_proj\"\n  ],\n  \"task_type\": \"CAUSAL_LM\",\n  \"use_rslora\": false\n}";
	SftLoraConfig c = lora_config(16, 32, SFT_LORA_TARGET(SFT_LORA_V) | SFT_LORA_TARGET(SFT_LORA_Q) |
								  SFT_LORA_TARGET(SFT_LORA_DOWN));
	SftLoraConfig back;
	SftBuf		a, b;
	SftError	err = {0};
	char	   *base = NULL;
	int			ok = 1;

	c.dropout = 0.05;
	sft_buf_init(&a);
	sft_buf_init(&b);
	TAP_OK(sft_lora_config_to_json(&c, "smol \"2\"", &a, &err) == SFT_OK &&
		   strcmp(a.data, expect) == 0, "adapter_config.json as PEFT writes it (sorted keys, 2 spaces)");
	TAP_OK(sft_lora_config_parse(a.data, a.len, &back, &base, &err) == SFT_OK &&
		   same_config(&back, &c) && base && strcmp(base, "smol \"2\"") == 0,
		   "parse(to_json(c)) == c, base name included");
	sft_free(base);
	TAP_OK(sft_lora_config_to_json(&back, "smol \"2\"", &b, &err) == SFT_OK &&
		   a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "to_json(parse(text)) == text");

	/* odd values round-trip exactly */
	for (int i = 0; i < 50; i++)
	{
		SftBuf		t;

		c = lora_config(1 + i * 37 % 300, 0.1 + i * 1.37, SFT_LORA_TARGET_ALL >> (i % 7));
		c.dropout = i / 51.0;
		c.rslora = i & 1;
		sft_buf_init(&t);
		ok &= sft_lora_config_to_json(&c, NULL, &t, &err) == SFT_OK &&
			sft_lora_config_parse(t.data, t.len, &back, NULL, &err) == SFT_OK &&
			same_config(&back, &c);
		sft_buf_free(&t);
	}
	TAP_OK(ok, "50 configs with odd alphas and dropouts round-trip exactly");
	c.r = 0;
	sft_buf_free(&a);
	sft_buf_init(&a);
	TAP_OK(sft_lora_config_to_json(&c, NULL, &a, &err) == SFT_ERR_INVALID, "an invalid config is not written");
	sft_buf_free(&a);
	sft_buf_free(&b);
}

/* ---------------------------------------------------------------------------
 * Names and layout
 * ------------------------------------------------------------------------- */

static void
test_names(void)
{
	char		name[SFT_TENSOR_NAME_MAX];
	int			layer, is_b, ok = 1;
	SftLoraModule module;
	SftError	err = {0};

	sft_lora_tensor_name(name, sizeof(name), 11, SFT_LORA_Q, 0);
	TAP_OK(strcmp(name, "base_model.model.model.layers.11.self_attn.q_proj.lora_A.weight") == 0,
		   "PEFT name of q_proj A: %s", name);
	sft_lora_tensor_name(name, sizeof(name), 0, SFT_LORA_DOWN, 1);
	TAP_OK(strcmp(name, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight") == 0,
		   "PEFT name of down_proj B: %s", name);
	sft_lora_base_tensor_name(name, sizeof(name), 3, SFT_LORA_UP);
	TAP_OK(strcmp(name, "model.layers.3.mlp.up_proj.weight") == 0, "base name: %s", name);
	for (int l = 0; l < 40; l += 13)
		for (int m = 0; m < SFT_LORA_N_MODULES; m++)
			for (int b = 0; b < 2; b++)
			{
				sft_lora_tensor_name(name, sizeof(name), l, (SftLoraModule) m, b);
				ok &= sft_lora_parse_tensor_name(name, &layer, &module, &is_b, &err) == SFT_OK &&
					layer == l && module == (SftLoraModule) m && is_b == b;
			}
	TAP_OK(ok, "every name parses back to (layer, module, A|B)");
	{
		static const char *bad[] = {
			"base_model.model.model.layers.01.self_attn.q_proj.lora_A.weight",
			"base_model.model.model.layers.1.mlp.q_proj.lora_A.weight",
			"base_model.model.model.layers.1.self_attn.q_proj.lora_C.weight",
			"base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight",
			"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight.x",
			"base_model.model.model.layers.99999.self_attn.q_proj.lora_A.weight",
			"base_model.model.model.layers..self_attn.q_proj.lora_A.weight",
			"model.layers.1.self_attn.q_proj.lora_A.weight",
			"base_model.model.lm_head.lora_A.weight",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			sft_error_clear(&err);
			TAP_OK(sft_lora_parse_tensor_name(bad[i], &layer, &module, &is_b, &err) == SFT_ERR_INVALID &&
				   strstr(err.message, "is not a LoRA tensor") != NULL, "not a LoRA name: %s", bad[i]);
		}
	}
	TAP_OK(sft_lora_module_from_name("gate_proj") == SFT_LORA_GATE &&
		   sft_lora_module_from_name("gate") == -1 &&
		   strcmp(sft_lora_module_name(SFT_LORA_K), "k_proj") == 0 &&
		   sft_lora_module_name(SFT_LORA_N_MODULES) == NULL, "module names both ways");
}

static void
test_layout(void)
{
	SftLlamaConfig mc = tiny_config(TINY);
	SftLoraConfig c = lora_config(3, 6, SFT_LORA_TARGET(SFT_LORA_K) | SFT_LORA_TARGET(SFT_LORA_DOWN));
	SftLoraAdapter *a = NULL;
	SftError	err = {0};
	size_t		offset = 0;
	int			ok = 1;

	TAP_OK(sft_lora_adapter_new(&c, &mc, &a, &err) == SFT_OK, "adapter for k_proj and down_proj");
	TAP_OK(a->n_tensors == 8 && a->n_targets == 2 && a->n_params == 2 * 3 * ((4 + 8) + (8 + 12)) &&
		   a->n_params == sft_lora_num_params(&c, &mc), "8 tensors, %zu parameters", a->n_params);
	for (int i = 0; i < a->n_tensors; i++)
	{
		ok &= a->tensors[i].offset == offset;
		offset += a->tensors[i].numel;
	}
	TAP_OK(ok && offset == a->n_params, "tensors tile the slab in table order");
	TAP_OK(sft_lora_adapter_find(a, 1, SFT_LORA_DOWN, 1) == 7 &&
		   sft_lora_adapter_find(a, 0, SFT_LORA_K, 0) == 0 &&
		   sft_lora_adapter_find(a, 1, SFT_LORA_K, 1) == 5 &&
		   sft_lora_adapter_find(a, 0, SFT_LORA_Q, 0) == -1 &&
		   sft_lora_adapter_find(a, 2, SFT_LORA_K, 0) == -1, "find: index 2 (layer * targets + k) + B");
	TAP_OK(a->tensors[0].shape[0] == 3 && a->tensors[0].shape[1] == 8 &&
		   a->tensors[1].shape[0] == 4 && a->tensors[1].shape[1] == 3 &&
		   a->tensors[2].shape[0] == 3 && a->tensors[2].shape[1] == 12 &&
		   a->tensors[3].shape[0] == 8 && a->tensors[3].shape[1] == 3,
		   "A [r, in], B [out, r] (k_proj [4, 8], down_proj [8, 12])");
	TAP_OK(a->params[0] == 0 && a->params[a->n_params - 1] == 0, "a new adapter is zero");
	{
		SftLlamaConfig m3 = tiny_config(TINY3);
		SftLlamaConfig wide = mc;

		wide.intermediate_size = 16;
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_check_base(a, &m3, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "2 layers but the base model has 3") != NULL, "%s", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_check_base(a, &wide, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "down_proj.lora_A.weight\" has shape [3, 12] but the base model implies [3, 16]") != NULL,
			   "%s", err.message);
		TAP_OK(sft_lora_adapter_check_base(a, &mc, &err) == SFT_OK, "fits its own base");
	}
	sft_lora_adapter_free(a);
	c.r = 0;
	sft_error_clear(&err);
	TAP_OK(sft_lora_adapter_new(&c, &mc, &a, &err) == SFT_ERR_INVALID && a == NULL,
		   "r = 0 refused: %s", err.message);
}

/* ---------------------------------------------------------------------------
 * safetensors
 * ------------------------------------------------------------------------- */

static SftStatus
write_adapter(const SftLoraAdapter *a, SftBuf *out)
{
	SftError	err = {0};

	sft_buf_init(out);
	return sft_lora_adapter_write(a, sft_buf_write, out, &err);
}

/* A file from a header text and a data region of n floats. */
static void
make_file(SftBuf *out, const char *header, const float *data, size_t n)
{
	uint64_t	len = strlen(header);
	unsigned char prefix[8];

	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char) (len >> (8 * i));
	sft_buf_init(out);
	sft_buf_append(out, (const char *) prefix, 8);
	sft_buf_append(out, header, len);
	if (n)
		sft_buf_append(out, (const char *) data, n * sizeof(float));
}

static void
test_safetensors(void)
{
	SftLlamaConfig mc = tiny_config(TINY);
	SftLoraConfig c = lora_config(2, 4, SFT_LORA_TARGET(SFT_LORA_Q) | SFT_LORA_TARGET(SFT_LORA_V));
	SftLoraAdapter *a = random_adapter(&c, &mc, 7);
	SftLoraAdapter *b = NULL;
	SftBuf		f1, f2;
	SftError	err = {0};
	char		name[SFT_TENSOR_NAME_MAX];

	TAP_OK(write_adapter(a, &f1) == SFT_OK, "adapter written (%zu bytes)", f1.len);
	TAP_OK(memmem(f1.data, f1.len, "{\"__metadata__\":{\"format\":\"pt\"},\"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[2,8]",
				  120) != NULL, "header: metadata format pt, first tensor layer 0 q_proj A [2, 8]");
	{
		uint64_t	hl = 0;
		const char *p, *q;

		for (int i = 0; i < 8; i++)
			hl |= (uint64_t) (unsigned char) f1.data[i] << (8 * i);
		p = strstr(f1.data + 8, "layers.0.self_attn.v_proj.lora_B");
		q = strstr(f1.data + 8, "layers.1.self_attn.q_proj.lora_A");
		TAP_OK((8 + hl) % 8 == 0 && p && q && p < q, "data 8-byte aligned; tensors sorted by name");
	}
	TAP_OK(sft_lora_adapter_load_buffer(f1.data, f1.len, &c, &mc, &b, &err) == SFT_OK &&
		   b->n_params == a->n_params &&
		   memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0,
		   "read back: every value equal (%s)", err.message);
	TAP_OK(write_adapter(b, &f2) == SFT_OK && f1.len == f2.len && memcmp(f1.data, f2.data, f1.len) == 0,
		   "written again: byte-identical");
	sft_lora_adapter_free(b);
	sft_buf_free(&f2);

	/* the same file against other configs */
	{
		SftLoraConfig r3 = c, more = c, fewer = c;
		SftLlamaConfig m3 = tiny_config(TINY3);

		r3.r = 3;
		more.targets |= SFT_LORA_TARGET(SFT_LORA_O);
		fewer.targets = SFT_LORA_TARGET(SFT_LORA_Q);
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_load_buffer(f1.data, f1.len, &r3, &mc, &b, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "must have shape [3, 8] (r = 3") != NULL, "other r: %s", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_load_buffer(f1.data, f1.len, &more, &mc, &b, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "o_proj.lora_A.weight\" is missing") != NULL, "a targeted module missing: %s",
			   err.message);
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_load_buffer(f1.data, f1.len, &fewer, &mc, &b, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "adapts v_proj, which is not in target_modules") != NULL, "%s",
			   err.message);
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_load_buffer(f1.data, f1.len, &c, &m3, &b, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "layers.2.self_attn.q_proj.lora_A.weight\" is missing") != NULL,
			   "a base with more layers: %s", err.message);
	}

	/* hand-made files */
	{
		float		data[64];
		SftBuf		f;
		SftLoraConfig one = lora_config(1, 1, SFT_LORA_TARGET(SFT_LORA_K));
		SftLlamaConfig m1 = mc;
		char		h[2048];

		m1.n_layers = 1;
		for (int i = 0; i < 64; i++)
			data[i] = (float) i;
		/* k_proj of one layer, r = 1: A [1, 8], B [4, 1] */
#define K_A "\"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight\""
#define K_B "\"base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight\""
		snprintf(h, sizeof(h), "{" K_A ":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
				 K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]}}");
		make_file(&f, h, data, 12);
		TAP_OK(sft_lora_adapter_load_buffer(f.data, f.len, &one, &m1, &b, &err) == SFT_OK &&
			   b->params[0] == 0 && b->params[11] == 11, "a minimal hand-made file (no metadata) loads");
		sft_lora_adapter_free(b);
		sft_buf_free(&f);

		snprintf(h, sizeof(h), "{" K_A ":{\"dtype\":\"BF16\",\"shape\":[1,8],\"data_offsets\":[0,16]},"
				 K_B ":{\"dtype\":\"F16\",\"shape\":[4,1],\"data_offsets\":[16,24]}}");
		{
			uint16_t	half[12];

			for (int i = 0; i < 8; i++)
				half[i] = 0x3f80;	/* bf16 1.0 */
			for (int i = 8; i < 12; i++)
				half[i] = 0xc000;	/* f16 -2.0 */
			make_file(&f, h, (const float *) half, 6);
		}
		TAP_OK(sft_lora_adapter_load_buffer(f.data, f.len, &one, &m1, &b, &err) == SFT_OK &&
			   b->params[0] == 1.0f && b->params[11] == -2.0f, "BF16 and F16 tensors convert to fp32");
		sft_lora_adapter_free(b);
		sft_buf_free(&f);

		data[3] = NAN;
		snprintf(h, sizeof(h), "{" K_A ":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]},"
				 K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]}}");
		make_file(&f, h, data, 12);
		sft_error_clear(&err);
		TAP_OK(sft_lora_adapter_load_buffer(f.data, f.len, &one, &m1, &b, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "non-finite value (nan) at element 3") != NULL, "NaN: %s", err.message);
		sft_buf_free(&f);
		data[3] = 3;

		{
			static const struct
			{
				const char *header;
				const char *needle;
				size_t		floats;		/* 0: 12 */
			}			bad[] = {
				{"{" K_A ":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]}}", "lora_B.weight\" is missing", 8},
				{"{" K_A ":{\"dtype\":\"F32\",\"shape\":[8,1],\"data_offsets\":[0,32]}," K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]}}", "must have shape [1, 8]", 0},
				{"{" K_A ":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}," K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]}}", "must have shape [1, 8]", 0},
				{"{" K_A ":{\"dtype\":\"I32\",\"shape\":[1,8],\"data_offsets\":[0,32]}," K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]}}", "dtype I32", 0},
				{"{" K_A ":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]}," K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]},"
				 "\"base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,0],\"data_offsets\":[48,48]}}", "for layer 1 but the base model has 1 layers", 0},
				{"{" K_A ":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]}," K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,48]},"
				 "\"base_model.model.lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[48,48]}}", "is not a LoRA tensor", 0},
				{"{" K_A ":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]}," K_B ":{\"dtype\":\"F32\",\"shape\":[4,1],\"data_offsets\":[32,40]}}", "data_offsets", 0},
			};

			for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			{
				SftStatus	st;

				make_file(&f, bad[i].header, data, bad[i].floats ? bad[i].floats : 12);
				sft_error_clear(&err);
				b = NULL;
				st = sft_lora_adapter_load_buffer(f.data, f.len, &one, &m1, &b, &err);
				TAP_OK(st != SFT_OK && b == NULL && strstr(err.message, bad[i].needle) != NULL,
					   "bad file %zu refused: %s", i, err.message);
				sft_buf_free(&f);
			}
		}
		/* every truncation of a valid file is an error, never a crash */
		{
			int			all = 1;

			for (size_t len = 0; len < f1.len; len += 7)
			{
				b = NULL;
				all &= sft_lora_adapter_load_buffer(f1.data, len, &c, &mc, &b, &err) != SFT_OK && b == NULL;
			}
			TAP_OK(all, "every truncation of a valid file is refused");
		}
	}
	sft_lora_tensor_name(name, sizeof(name), 0, SFT_LORA_Q, 0);
	sft_buf_free(&f1);
	sft_lora_adapter_free(a);
}

/* ---------------------------------------------------------------------------
 * Merge
 * ------------------------------------------------------------------------- */

static void
test_merge(void)
{
	SftLlamaConfig mc = tiny_config(TINY);
	SftLoraConfig c = lora_config(3, 5, SFT_LORA_TARGET_ALL & ~SFT_LORA_TARGET(SFT_LORA_UP));
	SftLoraAdapter *a;
	SftModel   *base = NULL, *merged = NULL;
	SftError	err = {0};
	double		worst = 0;
	int			untouched = 1;
	float		scale;

	c.rslora = 1;
	scale = sft_lora_scale(&c);
	a = random_adapter(&c, &mc, 11);
	sft_model_new(&mc, &base, &err);
	sft_model_new(&mc, &merged, &err);
	sft_model_init_random(base, 5);
	memcpy(sft_model_params(merged), sft_model_params(base), sft_model_num_params(base) * sizeof(float));
	TAP_OK(sft_lora_merge(merged, a, &err) == SFT_OK, "merge (rslora, all but up_proj)");
	for (int i = 0; i < sft_model_tensor_count(base); i++)
	{
		const SftParamTensor *t = sft_model_tensor(base, i);
		const float *w0 = sft_model_params(base) + t->offset;
		const float *w1 = sft_model_params(merged) + t->offset;
		int			layer = -1, m = -1;

		for (int l = 0; l < mc.n_layers && m < 0; l++)
			for (int k = 0; k < SFT_LORA_N_MODULES; k++)
			{
				char		name[SFT_TENSOR_NAME_MAX];

				sft_lora_base_tensor_name(name, sizeof(name), l, (SftLoraModule) k);
				if (strcmp(name, t->name) == 0)
					layer = l, m = k;
			}
		if (m < 0 || !(c.targets & SFT_LORA_TARGET(m)))
		{
			untouched &= memcmp(w0, w1, t->numel * sizeof(float)) == 0;
			continue;
		}
		{
			const float *A = a->params + a->tensors[sft_lora_adapter_find(a, layer, m, 0)].offset;
			const float *B = a->params + a->tensors[sft_lora_adapter_find(a, layer, m, 1)].offset;
			int64_t		out = t->shape[0], in = t->shape[1];

			for (int64_t o = 0; o < out; o++)
				for (int64_t j = 0; j < in; j++)
				{
					double		d = 0;

					for (int k = 0; k < c.r; k++)
						d += (double) B[o * c.r + k] * A[k * in + j];
					d = w0[o * in + j] + scale * d;
					if (fabs(d - w1[o * in + j]) > worst)
						worst = fabs(d - w1[o * in + j]);
				}
		}
	}
	TAP_OK(worst < 1e-5, "merged W = W + s B A (float64 reference), worst difference %.2g", worst);
	TAP_OK(untouched, "norms, embeddings, up_proj untouched");
	{
		SftLlamaConfig m3 = tiny_config(TINY3);
		SftModel   *other = NULL;
		size_t		n;
		float	   *copy;

		sft_model_new(&m3, &other, &err);
		sft_model_init_random(other, 1);
		n = sft_model_num_params(other);
		copy = malloc(n * sizeof(float));
		memcpy(copy, sft_model_params(other), n * sizeof(float));
		sft_error_clear(&err);
		TAP_OK(sft_lora_merge(other, a, &err) == SFT_ERR_INVALID &&
			   memcmp(copy, sft_model_params(other), n * sizeof(float)) == 0,
			   "an adapter for another base is refused, model unchanged: %s", err.message);
		free(copy);
		sft_model_free(other);
	}
	sft_model_free(base);
	sft_model_free(merged);
	sft_lora_adapter_free(a);
}

/* ---------------------------------------------------------------------------
 * Decoding with an adapter attached
 * ------------------------------------------------------------------------- */

static int
argmax(const float *x, int n)
{
	int			best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/*
 * base + adapter decodes like the merged model: prompt logits, then 24
 * greedy tokens; batched steps bitwise equal to single ones.
 */
static void
decode_case(const char *label, const char *config_json, uint32_t targets)
{
	SftLlamaConfig mc = tiny_config(config_json);
	SftLoraConfig c = lora_config(4, 8, targets);
	SftLoraAdapter *a;
	SftModel   *base = NULL, *merged = NULL;
	SftDecoder *da = NULL, *dm = NULL, *db = NULL, *d2 = NULL;
	SftError	err = {0};
	int			V = mc.vocab_size;
	float	   *la = malloc(sizeof(float) * V * 2), *lm = malloc(sizeof(float) * V),
			   *lb = malloc(sizeof(float) * V);
	int32_t		prompt[9] = {1, 5, 9, 2, 7, 3, 3, 8, 0};
	double		worst = 0, scale = 0;
	int			same_tokens = 1, bitwise = 1, differs = 0;
	int32_t		ta, tm;

	a = random_adapter(&c, &mc, 21);
	for (size_t i = 0; i < a->n_params; i++)
		a->params[i] *= 0.3f;
	sft_model_new(&mc, &base, &err);
	sft_model_init_random(base, 9);
	sft_model_new(&mc, &merged, &err);
	memcpy(sft_model_params(merged), sft_model_params(base), sft_model_num_params(base) * sizeof(float));
	sft_lora_merge(merged, a, &err);
	sft_decoder_new(base, 64, &da, &err);
	sft_decoder_new(base, 64, &db, &err);
	sft_decoder_new(base, 64, &d2, &err);
	sft_decoder_new(merged, 64, &dm, &err);
	TAP_OK(sft_decoder_use_adapter(da, a, &err) == SFT_OK &&
		   sft_decoder_use_adapter(d2, a, &err) == SFT_OK, "%s: adapter attached", label);
	sft_decoder_feed(da, prompt, 9, la, &err);
	sft_decoder_feed(dm, prompt, 9, lm, &err);
	sft_decoder_feed(db, prompt, 9, lb, &err);
	sft_decoder_feed(d2, prompt, 9, la + V, &err);
	for (int i = 0; i < V; i++)
	{
		worst = fmax(worst, fabs(la[i] - lm[i]));
		scale = fmax(scale, fabs(lm[i]));
		differs |= fabs(la[i] - lb[i]) > 1e-3 * (1 + fabs(lb[i]));
	}
	ta = argmax(la, V);
	tm = argmax(lm, V);
	for (int step = 0; step < 24; step++)
	{
		int32_t		two[2];
		SftDecoder *pair[2] = {da, d2};

		same_tokens &= ta == tm;
		sft_decoder_feed(dm, &tm, 1, lm, &err);
		/* da and d2 hold the same sequence: step them as a batch of two */
		two[0] = two[1] = ta;
		if (sft_decoder_step_batch(pair, 2, two, la, &err) != SFT_OK)
			bitwise = 0;
		{
			/* a third decoder fed alone gives the reference for the batch rows */
			static SftDecoder *solo;

			if (step == 0)
			{
				sft_decoder_free(solo);
				solo = NULL;
				sft_decoder_new(base, 64, &solo, &err);
				sft_decoder_use_adapter(solo, a, &err);
				sft_decoder_feed(solo, prompt, 9, NULL, &err);
			}
			sft_decoder_feed(solo, &ta, 1, lb, &err);
			bitwise &= memcmp(la, lb, sizeof(float) * V) == 0 &&
				memcmp(la + V, lb, sizeof(float) * V) == 0;
			if (step == 23)
			{
				sft_decoder_free(solo);
				solo = NULL;
			}
		}
		for (int i = 0; i < V; i++)
		{
			worst = fmax(worst, fabs(la[i] - lm[i]));
			scale = fmax(scale, fabs(lm[i]));
		}
		ta = argmax(la, V);
		tm = argmax(lm, V);
	}
	TAP_OK(differs, "%s: the adapter changes the logits", label);
	TAP_OK(worst <= 2e-5 * (1 + scale), "%s: base + adapter logits = merged model's (worst %.2g of %.3g)",
		   label, worst, scale);
	TAP_OK(same_tokens, "%s: 24 greedy tokens equal the merged model's", label);
	TAP_OK(bitwise, "%s: batched steps with the adapter are bitwise single steps", label);
	{
		SftDecoder *pair[2] = {da, db};
		int32_t		two[2] = {1, 1};

		sft_error_clear(&err);
		TAP_OK(sft_decoder_step_batch(pair, 2, two, la, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "adapter") != NULL, "%s: no batch mixes adapters: %s", label,
			   err.message);
	}
	sft_decoder_use_adapter(da, NULL, &err);
	sft_decoder_reset(da);
	sft_decoder_reset(db);
	sft_decoder_feed(da, prompt, 9, la, &err);
	sft_decoder_feed(db, prompt, 9, lb, &err);
	TAP_OK(memcmp(la, lb, sizeof(float) * V) == 0, "%s: detached, the base's own logits", label);
	free(la);
	free(lm);
	free(lb);
	sft_decoder_free(da);
	sft_decoder_free(db);
	sft_decoder_free(d2);
	sft_decoder_free(dm);
	sft_model_free(base);
	sft_model_free(merged);
	sft_lora_adapter_free(a);
}

static void
test_decoder(void)
{
	decode_case("llama all-linear", TINY, SFT_LORA_TARGET_ALL);
	decode_case("llama q,v", TINY, SFT_LORA_TARGET(SFT_LORA_Q) | SFT_LORA_TARGET(SFT_LORA_V));
	decode_case("qwen2 (bias) k,o,down",
				"{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"num_hidden_layers\": 2,"
				" \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 12,"
				" \"vocab_size\": 16, \"tie_word_embeddings\": true}",
				SFT_LORA_TARGET(SFT_LORA_K) | SFT_LORA_TARGET(SFT_LORA_O) | SFT_LORA_TARGET(SFT_LORA_DOWN));
	decode_case("gemma3 all-linear",
				"{\"model_type\": \"gemma3_text\", \"hidden_size\": 8, \"num_hidden_layers\": 3,"
				" \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 4,"
				" \"intermediate_size\": 12, \"vocab_size\": 16, \"sliding_window\": 4,"
				" \"sliding_window_pattern\": 3, \"query_pre_attn_scalar\": 4, \"final_logit_softcapping\": 30.0}",
				SFT_LORA_TARGET_ALL);
	{
		SftLlamaConfig mc = tiny_config(TINY), m3 = tiny_config(TINY3);
		SftLoraConfig c = lora_config(2, 2, SFT_LORA_TARGET_ALL);
		SftLoraAdapter *a = random_adapter(&c, &m3, 1);
		SftModel   *base = NULL;
		SftDecoder *d = NULL;
		SftError	err = {0};

		sft_model_new(&mc, &base, &err);
		sft_decoder_new(base, 16, &d, &err);
		TAP_OK(sft_decoder_use_adapter(d, a, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "3 layers") != NULL, "an adapter of another base is refused: %s",
			   err.message);
		sft_decoder_free(d);
		sft_model_free(base);
		sft_lora_adapter_free(a);
	}
}

/* ---------------------------------------------------------------------------
 * PEFT directories
 * ------------------------------------------------------------------------- */

static int
read_file(const char *path, SftBuf *out)
{
	FILE	   *f = fopen(path, "rb");
	char		buf[4096];
	size_t		n;

	sft_buf_init(out);
	if (f == NULL)
		return 0;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sft_buf_append(out, buf, n);
	fclose(f);
	return 1;
}

static void
test_peft_dir(void)
{
	SftLlamaConfig mc = tiny_config(TINY);
	SftLoraConfig c = lora_config(4, 16, SFT_LORA_TARGET_ALL);
	SftLoraAdapter *a = random_adapter(&c, &mc, 3);
	SftLoraAdapter *b = NULL;
	SftError	err = {0};
	char		d1[300], d2[300], path[400];
	char	   *base = NULL;
	SftBuf		x, y;

	snprintf(d1, sizeof(d1), "%s/one", tmp_root);
	snprintf(d2, sizeof(d2), "%s/two", tmp_root);
	mkdir(d1, 0700);
	mkdir(d2, 0700);
	TAP_OK(!sft_peft_dir_detect(d1), "an empty directory is not a PEFT directory");
	TAP_OK(sft_peft_save_dir(a, "tiny", d1, &err) == SFT_OK, "saved (%s)", err.message);
	TAP_OK(sft_peft_dir_detect(d1), "now it is");
	TAP_OK(sft_peft_load_dir(d1, &mc, &b, &base, &err) == SFT_OK &&
		   memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0 &&
		   same_config(&a->config, &b->config) && base && strcmp(base, "tiny") == 0,
		   "loaded back: config, base name and values (%s)", err.message);
	TAP_OK(sft_peft_save_dir(b, base, d2, &err) == SFT_OK, "saved again");
	snprintf(path, sizeof(path), "%s/adapter_model.safetensors", d1);
	read_file(path, &x);
	snprintf(path, sizeof(path), "%s/adapter_model.safetensors", d2);
	read_file(path, &y);
	TAP_OK(x.len > 0 && x.len == y.len && memcmp(x.data, y.data, x.len) == 0,
		   "adapter_model.safetensors byte-identical after the round trip");
	sft_buf_free(&x);
	sft_buf_free(&y);
	snprintf(path, sizeof(path), "%s/adapter_config.json", d1);
	read_file(path, &x);
	snprintf(path, sizeof(path), "%s/adapter_config.json", d2);
	read_file(path, &y);
	TAP_OK(x.len > 0 && x.len == y.len && memcmp(x.data, y.data, x.len) == 0,
		   "adapter_config.json byte-identical too");
	sft_buf_free(&x);
	sft_buf_free(&y);
	sft_free(base);
	sft_lora_adapter_free(b);

	snprintf(path, sizeof(path), "%s/adapter_model.safetensors", d2);
	unlink(path);
	sft_error_clear(&err);
	TAP_OK(sft_peft_load_dir(d2, &mc, &b, NULL, &err) == SFT_ERR_IO &&
		   strstr(err.message, "no adapter_model.safetensors") != NULL, "%s", err.message);
	{
		SftLlamaConfig m3 = tiny_config(TINY3);

		sft_error_clear(&err);
		TAP_OK(sft_peft_load_dir(d1, &m3, &b, NULL, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "adapter_model.safetensors: ") == err.message,
			   "against another base: %s", err.message);
	}
	sft_lora_adapter_free(a);
}

int
main(void)
{
	snprintf(tmp_root, sizeof(tmp_root), "/tmp/sft-test-lora-%d", (int) getpid());
	mkdir(tmp_root, 0700);
	test_config_parse();
	test_config_write();
	test_names();
	test_layout();
	test_safetensors();
	test_merge();
	test_decoder();
	test_peft_dir();
	{
		char		cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_root);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmp_root);
	}
	return tap_done();
}
