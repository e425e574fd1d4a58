/*
 * lora_adapter.c: LoRA adapters as PEFT writes them (see lora_adapter.h for
 * the math and the files).
 *
 * adapter_config.json.  What we read:
 *
 *   peft_type                 "LORA" (required)
 *   r                         1 .. 4096 (required)
 *   target_modules            list of q_proj, k_proj, v_proj, o_proj,
 *                             gate_proj, up_proj, down_proj (a name may carry
 *                             its parent: "self_attn.q_proj", "mlp.up_proj"),
 *                             or the string "all-linear" (required)
 *   lora_alpha                > 0, default 8 (PEFT's)
 *   lora_dropout              [0, 1), default 0 (training only)
 *   use_rslora                default false
 *   task_type                 "CAUSAL_LM" or null
 *   bias                      "none" (or absent)
 *   fan_in_fan_out            false or null
 *   base_model_name_or_path   string or null (informative: the base is named
 *                             by the caller)
 *
 * Keys that only describe how PEFT initialised or stored the adapter are
 * ignored: revision, inference_mode, init_lora_weights, auto_mapping,
 * peft_version, megatron_core, qalora_group_size, layers_pattern (it only
 * matters with layers_to_transform), runtime_config.  Every other key changes
 * what the adapter computes (use_dora, rank_pattern, alpha_pattern,
 * layers_to_transform, modules_to_save, exclude_modules, lora_bias,
 * layer_replication, trainable_token_indices, target_parameters, use_qalora,
 * megatron_config, loftq_config, alora_invocation_tokens ...) and is accepted
 * only with its neutral value (null, false, an empty list, object or
 * string), as PEFT writes it when the feature is off; any other value is
 * refused by name.  So a newer PEFT's new key is read when the feature it
 * controls is off and refused when it is on, never silently ignored.
 *
 * A target_modules string other than "all-linear" is a regular expression
 * in PEFT; we refuse it rather than guess which modules it matches.
 */
#include "lora_adapter.h"

#include <cblas.h>
#include <json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------------
 * Modules
 * ------------------------------------------------------------------------- */

static const struct
{
	const char *name;			/* PEFT's target_modules entry */
	const char *parent;			/* the submodule of the decoder layer */
}			lora_modules[SFT_LORA_N_MODULES] = {
	[SFT_LORA_Q] = {"q_proj", "self_attn"},
	[SFT_LORA_K] = {"k_proj", "self_attn"},
	[SFT_LORA_V] = {"v_proj", "self_attn"},
	[SFT_LORA_O] = {"o_proj", "self_attn"},
	[SFT_LORA_GATE] = {"gate_proj", "mlp"},
	[SFT_LORA_UP] = {"up_proj", "mlp"},
	[SFT_LORA_DOWN] = {"down_proj", "mlp"},
};

const char *
sft_lora_module_name(SftLoraModule module)
{
	if ((int) module < 0 || module >= SFT_LORA_N_MODULES)
		return NULL;
	return lora_modules[module].name;
}

int
sft_lora_module_from_name(const char *name)
{
	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		if (strcmp(name, lora_modules[m].name) == 0)
			return m;
	return -1;
}

void
sft_lora_module_shape(const SftLlamaConfig *c, SftLoraModule module, int64_t *out_dim,
					  int64_t *in_dim)
{
	int64_t		C = c->hidden_size, F = c->intermediate_size;
	int64_t		QH = (int64_t) c->n_heads * c->head_dim;
	int64_t		KVH = (int64_t) c->n_kv_heads * c->head_dim;

	switch (module)
	{
		case SFT_LORA_Q:
			*out_dim = QH, *in_dim = C;
			break;
		case SFT_LORA_K:
		case SFT_LORA_V:
			*out_dim = KVH, *in_dim = C;
			break;
		case SFT_LORA_O:
			*out_dim = C, *in_dim = QH;
			break;
		case SFT_LORA_GATE:
		case SFT_LORA_UP:
			*out_dim = F, *in_dim = C;
			break;
		default:
			*out_dim = C, *in_dim = F;
			break;
	}
}

/* ---------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------- */

SftStatus
sft_lora_config_validate(const SftLoraConfig *cfg, SftError *err)
{
	if (cfg->r < 1 || cfg->r > SFT_LORA_MAX_RANK)
		return sft_error(err, SFT_ERR_INVALID, "LoRA r = %d is out of range [1, %d]", cfg->r,
						 SFT_LORA_MAX_RANK);
	if (!(cfg->alpha > 0) || !isfinite(cfg->alpha))
		return sft_error(err, SFT_ERR_INVALID, "LoRA alpha = %g must be a positive number",
						 cfg->alpha);
	if (!(cfg->dropout >= 0 && cfg->dropout < 1))
		return sft_error(err, SFT_ERR_INVALID, "LoRA dropout = %g is out of range [0, 1)",
						 cfg->dropout);
	if (cfg->targets == 0 || (cfg->targets & ~SFT_LORA_TARGET_ALL) != 0)
		return sft_error(err, SFT_ERR_INVALID, "LoRA target modules must be a non-empty set of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
	return SFT_OK;
}

float
sft_lora_scale(const SftLoraConfig *cfg)
{
	return (float) (cfg->rslora ? cfg->alpha / sqrt((double) cfg->r)
					: cfg->alpha / (double) cfg->r);
}

static const char *
json_type_label(json_object *v)
{
	switch (json_object_get_type(v))
	{
		case json_type_null:
			return "null";
		case json_type_boolean:
			return "a boolean";
		case json_type_double:
		case json_type_int:
			return "a number";
		case json_type_string:
			return "a string";
		case json_type_array:
			return "a list";
		case json_type_object:
			return "an object";
	}
	return "a value";
}

/* A key's value, or NULL when absent or null (null means absent, as in PEFT). */
static json_object *
get_present(json_object *root, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

/* The neutral values of a feature switch: null, false, "", [] or {}. */
static int
is_neutral(json_object *v)
{
	switch (json_object_get_type(v))
	{
		case json_type_null:
			return 1;
		case json_type_boolean:
			return !json_object_get_boolean(v);
		case json_type_string:
			return json_object_get_string_len(v) == 0;
		case json_type_array:
			return json_object_array_length(v) == 0;
		case json_type_object:
			return json_object_object_length(v) == 0;
		default:
			return 0;
	}
}

/* Key name safe to show in a message (printable ASCII, bounded). */
static const char *
shown_key(char *dst, size_t size, const char *key)
{
	size_t		i = 0;

	for (; key[i] && i + 4 < size; i++)
		dst[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
	if (key[i])
		memcpy(dst + i, "...", 4);
	else
		dst[i] = '\0';
	return dst;
}

static const char *const inert_keys[] = {
	"revision", "inference_mode", "init_lora_weights", "auto_mapping", "peft_version",
	"megatron_core", "qalora_group_size", "layers_pattern", "runtime_config",
};

/* The keys parse_config reads itself. */
static const char *const read_keys[] = {
	"peft_type", "r", "target_modules", "lora_alpha", "lora_dropout", "use_rslora",
	"task_type", "bias", "fan_in_fan_out", "base_model_name_or_path",
};

static int
in_list(const char *key, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, list[i]) == 0)
			return 1;
	return 0;
}

static SftStatus
get_number(json_object *root, const char *key, double default_value, double *out,
		   SftError *err)
{
	json_object *v = get_present(root, key);

	*out = default_value;
	if (v == NULL)
		return SFT_OK;
	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: %s must be a number, not %s",
						 key, json_type_label(v));
	*out = json_object_get_double(v);
	return SFT_OK;
}

static SftStatus
get_bool(json_object *root, const char *key, int *out, SftError *err)
{
	json_object *v = get_present(root, key);

	*out = 0;
	if (v == NULL)
		return SFT_OK;
	if (!json_object_is_type(v, json_type_boolean))
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: %s must be true or false, not %s",
						 key, json_type_label(v));
	*out = json_object_get_boolean(v);
	return SFT_OK;
}

/* A target_modules entry: "q_proj", or with its parent "self_attn.q_proj". */
static int
target_from_entry(const char *entry)
{
	const char *dot = strchr(entry, '.');
	int			m;

	if (dot == NULL)
		return sft_lora_module_from_name(entry);
	m = sft_lora_module_from_name(dot + 1);
	if (m < 0 || strlen(lora_modules[m].parent) != (size_t) (dot - entry) ||
		strncmp(entry, lora_modules[m].parent, (size_t) (dot - entry)) != 0)
		return -1;
	return m;
}

static SftStatus
parse_targets(json_object *root, uint32_t *targets, SftError *err)
{
	json_object *v = get_present(root, "target_modules");
	char		shown[64];

	*targets = 0;
	if (v == NULL)
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: target_modules is missing");
	if (json_object_is_type(v, json_type_string))
	{
		if (strcmp(json_object_get_string(v), "all-linear") == 0)
		{
			*targets = SFT_LORA_TARGET_ALL;
			return SFT_OK;
		}
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "adapter_config.json: target_modules \"%s\" is a regular expression, which is not supported",
						 shown_key(shown, sizeof(shown), json_object_get_string(v)));
	}
	if (!json_object_is_type(v, json_type_array))
		return sft_error(err, SFT_ERR_FORMAT,
						 "adapter_config.json: target_modules must be a list of module names, not %s",
						 json_type_label(v));
	for (size_t i = 0; i < json_object_array_length(v); i++)
	{
		json_object *e = json_object_array_get_idx(v, i);
		int			m;

		if (!json_object_is_type(e, json_type_string))
			return sft_error(err, SFT_ERR_FORMAT,
							 "adapter_config.json: target_modules[%zu] must be a string, not %s",
							 i, json_type_label(e));
		if ((m = target_from_entry(json_object_get_string(e))) < 0)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "adapter_config.json: target module \"%s\" is not supported (only q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
							 shown_key(shown, sizeof(shown), json_object_get_string(e)));
		*targets |= SFT_LORA_TARGET(m);
	}
	if (*targets == 0)
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: target_modules is empty");
	return SFT_OK;
}

/* A string key that must be absent, null or the one value we implement. */
static SftStatus
expect_string(json_object *root, const char *key, const char *want, SftError *err)
{
	json_object *v = get_present(root, key);
	char		shown[64];

	if (v == NULL)
		return SFT_OK;
	if (!json_object_is_type(v, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: %s must be a string, not %s",
						 key, json_type_label(v));
	if (strcmp(json_object_get_string(v), want) != 0)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "adapter_config.json: %s \"%s\" is not supported (only \"%s\")", key,
						 shown_key(shown, sizeof(shown), json_object_get_string(v)), want);
	return SFT_OK;
}

static SftStatus
parse_config(json_object *root, SftLoraConfig *cfg, char **base_name, SftError *err)
{
	json_object *v;
	double		r;
	int			flag;
	SftStatus	st;
	char		shown[64];

	memset(cfg, 0, sizeof(*cfg));
	if ((v = get_present(root, "peft_type")) == NULL)
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: peft_type is missing");
	if (!json_object_is_type(v, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: peft_type must be a string, not %s",
						 json_type_label(v));
	if (strcmp(json_object_get_string(v), "LORA") != 0)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "adapter_config.json: peft_type \"%s\" is not supported (only \"LORA\")",
						 shown_key(shown, sizeof(shown), json_object_get_string(v)));

	if ((v = get_present(root, "r")) == NULL)
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: r is missing");
	if (!json_object_is_type(v, json_type_int) &&
		!(json_object_is_type(v, json_type_double) &&
		  json_object_get_double(v) == floor(json_object_get_double(v))))
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: r must be an integer, not %s",
						 json_type_label(v));
	r = json_object_get_double(v);
	if (!(r >= 1 && r <= SFT_LORA_MAX_RANK))
		return sft_error(err, SFT_ERR_LIMIT, "adapter_config.json: r = %g is out of range [1, %d]",
						 r, SFT_LORA_MAX_RANK);
	cfg->r = (int) r;

	if ((st = parse_targets(root, &cfg->targets, err)) != SFT_OK ||
		(st = get_number(root, "lora_alpha", 8.0, &cfg->alpha, err)) != SFT_OK ||
		(st = get_number(root, "lora_dropout", 0.0, &cfg->dropout, err)) != SFT_OK ||
		(st = get_bool(root, "use_rslora", &cfg->rslora, err)) != SFT_OK ||
		(st = expect_string(root, "task_type", "CAUSAL_LM", err)) != SFT_OK ||
		(st = expect_string(root, "bias", "none", err)) != SFT_OK ||
		(st = get_bool(root, "fan_in_fan_out", &flag, err)) != SFT_OK)
		return st;
	if (flag)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "adapter_config.json: fan_in_fan_out true (GPT-2 Conv1D weights) is not supported");
	if ((st = sft_lora_config_validate(cfg, err)) != SFT_OK)
	{
		sft_error_prefix(err, "adapter_config.json: ");
		return st;
	}

	/* Everything else: ignored when inert, else only with its neutral value. */
	{
		json_object_iter it;

		json_object_object_foreachC(root, it)
		{
			if (in_list(it.key, read_keys, sizeof(read_keys) / sizeof(read_keys[0])) ||
				in_list(it.key, inert_keys, sizeof(inert_keys) / sizeof(inert_keys[0])))
				continue;
			if (!is_neutral(it.val))
			{
				char		value[48];

				return sft_error(err, SFT_ERR_UNSUPPORTED,
								 "adapter_config.json: %s = %s is not supported (only null, false or empty)",
								 shown_key(shown, sizeof(shown), it.key),
								 shown_key(value, sizeof(value),
										   json_object_to_json_string_ext(it.val, JSON_C_TO_STRING_PLAIN |
																		  JSON_C_TO_STRING_NOSLASHESCAPE)));
			}
		}
	}

	v = get_present(root, "base_model_name_or_path");
	if (v != NULL && !json_object_is_type(v, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT,
						 "adapter_config.json: base_model_name_or_path must be a string, not %s",
						 json_type_label(v));
	if (base_name)
	{
		*base_name = NULL;
		if (v != NULL &&
			(*base_name = sft_strndup(json_object_get_string(v),
									  (size_t) json_object_get_string_len(v))) == NULL)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	return SFT_OK;
}

SftStatus
sft_lora_config_parse(const char *json, size_t len, SftLoraConfig *out, char **base_name,
					  SftError *err)
{
	json_tokener *tok;
	json_object *root;
	enum json_tokener_error jerr;
	size_t		consumed;
	size_t		bad;
	SftStatus	st;

	if (base_name)
		*base_name = NULL;
	if (len > SFT_LORA_MAX_CONFIG_BYTES)
		return sft_error(err, SFT_ERR_LIMIT, "adapter_config.json: %zu bytes is more than the limit of %u",
						 len, SFT_LORA_MAX_CONFIG_BYTES);
	if (memchr(json, '\0', len) != NULL)
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: contains a NUL byte at offset %zu",
						 (size_t) ((const char *) memchr(json, '\0', len) - json));
	if ((bad = sft_utf8_invalid_offset(json, len)) != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: invalid UTF-8 at byte %zu", bad);

	if ((tok = json_tokener_new()) == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "adapter_config.json: out of memory");
	root = json_tokener_parse_ex(tok, json, (int) len);
	jerr = json_tokener_get_error(tok);
	consumed = tok->char_offset;
	json_tokener_free(tok);
	if (root == NULL || jerr != json_tokener_success)
	{
		json_object_put(root);
		return sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: invalid JSON near byte %zu: %s",
						 consumed, jerr == json_tokener_continue ? "unexpected end of input"
						 : json_tokener_error_desc(jerr));
	}
	for (; consumed < len; consumed++)
		if (strchr(" \t\r\n", json[consumed]) == NULL)
		{
			json_object_put(root);
			return sft_error(err, SFT_ERR_FORMAT,
							 "adapter_config.json: unexpected data after the JSON value at byte %zu",
							 consumed);
		}
	if (!json_object_is_type(root, json_type_object))
	{
		st = sft_error(err, SFT_ERR_FORMAT, "adapter_config.json: must be a JSON object, not %s",
					   json_type_label(root));
		json_object_put(root);
		return st;
	}
	st = parse_config(root, out, base_name, err);
	json_object_put(root);
	if (st != SFT_OK && base_name && *base_name)
	{
		sft_free(*base_name);
		*base_name = NULL;
	}
	return st;
}

/*
 * A double as Python's json.dumps prints it closely enough: the fewest
 * digits that read back as the same double, ".0" on integral values
 * (integers, as lora_alpha usually is, when as_int).
 */
static void
format_number(char *dst, size_t size, double value, int as_int)
{
	if (value == floor(value) && fabs(value) < 1e15)
	{
		snprintf(dst, size, as_int ? "%.0f" : "%.1f", value);
		return;
	}
	for (int precision = 1; precision <= 17; precision++)
	{
		snprintf(dst, size, "%.*g", precision, value);
		if (strtod(dst, NULL) == value)
			return;
	}
}

SftStatus
sft_lora_config_to_json(const SftLoraConfig *cfg, const char *base_name, SftBuf *out,
						SftError *err)
{
	/* Sorted module names: what PEFT's sorted(set) gives, and json key order. */
	static const SftLoraModule by_name[SFT_LORA_N_MODULES] = {
		SFT_LORA_DOWN, SFT_LORA_GATE, SFT_LORA_K, SFT_LORA_O, SFT_LORA_Q, SFT_LORA_UP,
		SFT_LORA_V,
	};
	char		alpha[40];
	char		dropout[40];
	char		line[128];
	int			first = 1;
	SftStatus	st;
	int			ok = 1;

	if ((st = sft_lora_config_validate(cfg, err)) != SFT_OK)
		return st;
	format_number(alpha, sizeof(alpha), cfg->alpha, 1);
	format_number(dropout, sizeof(dropout), cfg->dropout, 0);

	ok &= sft_buf_append_str(out, "{\n  \"base_model_name_or_path\": ") == SFT_OK;
	if (base_name == NULL)
		ok &= sft_buf_append_str(out, "null") == SFT_OK;
	else
	{
		json_object *s = json_object_new_string(base_name);

		if (s == NULL)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory writing adapter_config.json");
		ok &= sft_buf_append_str(out, json_object_to_json_string_ext(s, JSON_C_TO_STRING_NOSLASHESCAPE)) == SFT_OK;
		json_object_put(s);
	}
	ok &= sft_buf_append_str(out, ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n") == SFT_OK;
	snprintf(line, sizeof(line), "  \"lora_alpha\": %s,\n  \"lora_dropout\": %s,\n", alpha, dropout);
	ok &= sft_buf_append_str(out, line) == SFT_OK;
	snprintf(line, sizeof(line), "  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"target_modules\": [", cfg->r);
	ok &= sft_buf_append_str(out, line) == SFT_OK;
	for (int i = 0; i < SFT_LORA_N_MODULES; i++)
		if (cfg->targets & SFT_LORA_TARGET(by_name[i]))
		{
			snprintf(line, sizeof(line), "%s\n    \"%s\"", first ? "" : ",",
					 lora_modules[by_name[i]].name);
			ok &= sft_buf_append_str(out, line) == SFT_OK;
			first = 0;
		}
	snprintf(line, sizeof(line), "\n  ],\n  \"task_type\": \"CAUSAL_LM\",\n  \"use_rslora\": %s\n}",
			 cfg->rslora ? "true" : "false");
	ok &= sft_buf_append_str(out, line) == SFT_OK;
	if (!ok)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory writing adapter_config.json");
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Tensor names
 * ------------------------------------------------------------------------- */

#define PEFT_PREFIX "base_model.model.model.layers."

void
sft_lora_tensor_name(char *dst, size_t size, int layer, SftLoraModule module, int is_b)
{
	snprintf(dst, size, PEFT_PREFIX "%d.%s.%s.lora_%c.weight", layer,
			 lora_modules[module].parent, lora_modules[module].name, is_b ? 'B' : 'A');
}

void
sft_lora_base_tensor_name(char *dst, size_t size, int layer, SftLoraModule module)
{
	snprintf(dst, size, "model.layers.%d.%s.%s.weight", layer, lora_modules[module].parent,
			 lora_modules[module].name);
}

SftStatus
sft_lora_parse_tensor_name(const char *name, int *layer, SftLoraModule *module, int *is_b,
						   SftError *err)
{
	const char *p = name;
	long		value = 0;
	char		shown[80];
	char		want[SFT_TENSOR_NAME_MAX];

	if (strncmp(p, PEFT_PREFIX, strlen(PEFT_PREFIX)) != 0)
		goto bad;
	p += strlen(PEFT_PREFIX);
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		goto bad;
	while (*p >= '0' && *p <= '9')
	{
		value = value * 10 + (*p++ - '0');
		if (value >= SFT_CONFIG_MAX_LAYERS)
			goto bad;
	}
	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		for (int b = 0; b < 2; b++)
		{
			sft_lora_tensor_name(want, sizeof(want), (int) value, (SftLoraModule) m, b);
			if (strcmp(name, want) == 0)
			{
				*layer = (int) value;
				*module = (SftLoraModule) m;
				*is_b = b;
				return SFT_OK;
			}
		}
bad:
	return sft_error(err, SFT_ERR_INVALID,
					 "tensor \"%s\" is not a LoRA tensor (base_model.model.model.layers.N.{self_attn,mlp}.MODULE.lora_{A,B}.weight)",
					 shown_key(shown, sizeof(shown), name));
}

uint64_t
sft_lora_num_params(const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg)
{
	uint64_t	per_layer = 0;

	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		if (cfg->targets & SFT_LORA_TARGET(m))
		{
			int64_t		out_dim, in_dim;

			sft_lora_module_shape(model_cfg, (SftLoraModule) m, &out_dim, &in_dim);
			per_layer += (uint64_t) cfg->r * (uint64_t) (out_dim + in_dim);
		}
	return per_layer * (uint64_t) model_cfg->n_layers;
}

/* ---------------------------------------------------------------------------
 * Adapters
 * ------------------------------------------------------------------------- */

SftStatus
sft_lora_adapter_new(const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg,
					 SftLoraAdapter **out, SftError *err)
{
	SftLoraAdapter *a;
	uint64_t	n_params;
	size_t		offset = 0;
	int			t = 0;
	SftStatus	st;

	*out = NULL;
	if ((st = sft_lora_config_validate(cfg, err)) != SFT_OK ||
		(st = sft_llama_config_validate(model_cfg, err)) != SFT_OK)
		return st;
	n_params = sft_lora_num_params(cfg, model_cfg);
	if (n_params > (uint64_t) SIZE_MAX / sizeof(float))
		return sft_error(err, SFT_ERR_LIMIT, "LoRA adapter of %llu parameters is too large",
						 (unsigned long long) n_params);
	if ((a = sft_calloc(1, sizeof(*a))) == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for a LoRA adapter");
	a->config = *cfg;
	a->n_layers = model_cfg->n_layers;
	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		a->n_targets += (cfg->targets & SFT_LORA_TARGET(m)) != 0;
	a->n_tensors = 2 * a->n_layers * a->n_targets;
	a->n_params = (size_t) n_params;
	a->tensors = sft_calloc((size_t) a->n_tensors, sizeof(SftLoraTensor));
	a->params = sft_calloc(a->n_params ? a->n_params : 1, sizeof(float));
	if (a->tensors == NULL || a->params == NULL)
	{
		sft_lora_adapter_free(a);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for a LoRA adapter of %zu parameters",
						 (size_t) n_params);
	}
	for (int l = 0; l < a->n_layers; l++)
		for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		{
			int64_t		out_dim, in_dim;

			if (!(cfg->targets & SFT_LORA_TARGET(m)))
				continue;
			sft_lora_module_shape(model_cfg, (SftLoraModule) m, &out_dim, &in_dim);
			for (int b = 0; b < 2; b++, t++)
			{
				SftLoraTensor *x = &a->tensors[t];

				sft_lora_tensor_name(x->name, sizeof(x->name), l, (SftLoraModule) m, b);
				x->layer = l;
				x->module = (SftLoraModule) m;
				x->is_b = b;
				x->shape[0] = b ? out_dim : cfg->r;
				x->shape[1] = b ? cfg->r : in_dim;
				x->numel = (size_t) (x->shape[0] * x->shape[1]);
				x->offset = offset;
				offset += x->numel;
			}
		}
	*out = a;
	return SFT_OK;
}

void
sft_lora_adapter_free(SftLoraAdapter *adapter)
{
	if (adapter == NULL)
		return;
	sft_free(adapter->tensors);
	sft_free(adapter->params);
	sft_free(adapter);
}

int
sft_lora_adapter_find(const SftLoraAdapter *a, int layer, SftLoraModule module, int is_b)
{
	int			k = 0;

	if (layer < 0 || layer >= a->n_layers || (int) module < 0 || module >= SFT_LORA_N_MODULES ||
		!(a->config.targets & SFT_LORA_TARGET(module)))
		return -1;
	for (int m = 0; m < (int) module; m++)
		k += (a->config.targets & SFT_LORA_TARGET(m)) != 0;
	return 2 * (layer * a->n_targets + k) + (is_b ? 1 : 0);
}

SftStatus
sft_lora_adapter_check_base(const SftLoraAdapter *a, const SftLlamaConfig *model_cfg,
							SftError *err)
{
	if (a->n_layers != model_cfg->n_layers)
		return sft_error(err, SFT_ERR_INVALID,
						 "the adapter has %d layers but the base model has %d", a->n_layers,
						 model_cfg->n_layers);
	for (int i = 0; i < a->n_tensors; i++)
	{
		const SftLoraTensor *t = &a->tensors[i];
		int64_t		out_dim, in_dim;
		int64_t		want0, want1;

		sft_lora_module_shape(model_cfg, t->module, &out_dim, &in_dim);
		want0 = t->is_b ? out_dim : a->config.r;
		want1 = t->is_b ? a->config.r : in_dim;
		if (t->shape[0] != want0 || t->shape[1] != want1)
			return sft_error(err, SFT_ERR_INVALID,
							 "tensor \"%s\" has shape [%lld, %lld] but the base model implies [%lld, %lld]",
							 t->name, (long long) t->shape[0], (long long) t->shape[1],
							 (long long) want0, (long long) want1);
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * safetensors
 * ------------------------------------------------------------------------- */

SftStatus
sft_lora_adapter_read(SftReadAtFn read_at, void *ctx, uint64_t file_size,
					  const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg,
					  SftLoraAdapter **out, SftError *err)
{
	SftStHeader header;
	SftLoraAdapter *a = NULL;
	int		   *target = NULL;	/* [header tensors] adapter tensor index */
	uint8_t    *seen = NULL;
	SftStatus	st;

	*out = NULL;
	if ((st = sft_lora_adapter_new(cfg, model_cfg, &a, err)) != SFT_OK)
		return st;
	if ((st = sft_st_read_header(read_at, ctx, file_size, &header, err)) != SFT_OK)
	{
		sft_lora_adapter_free(a);
		return st;
	}
	target = sft_alloc(sizeof(int) * (size_t) (header.n_tensors ? header.n_tensors : 1));
	seen = sft_calloc((size_t) a->n_tensors + 1, 1);
	if (target == NULL || seen == NULL)
		st = sft_error(err, SFT_ERR_NOMEM, "out of memory loading a LoRA adapter");

	/* Match and check every entry before reading any data. */
	for (int i = 0; i < header.n_tensors && st == SFT_OK; i++)
	{
		const SftStTensor *t = &header.tensors[i];
		int			layer, is_b, k;
		SftLoraModule module;

		if ((st = sft_lora_parse_tensor_name(t->name, &layer, &module, &is_b, err)) != SFT_OK)
			break;
		if (layer >= a->n_layers)
		{
			st = sft_error(err, SFT_ERR_INVALID,
						   "tensor \"%s\" is for layer %d but the base model has %d layers",
						   t->name, layer, a->n_layers);
			break;
		}
		if ((k = sft_lora_adapter_find(a, layer, module, is_b)) < 0)
		{
			st = sft_error(err, SFT_ERR_INVALID,
						   "tensor \"%s\" adapts %s, which is not in target_modules",
						   t->name, lora_modules[module].name);
			break;
		}
		if (seen[k])
		{
			st = sft_error(err, SFT_ERR_INVALID, "tensor \"%s\" appears more than once", t->name);
			break;
		}
		if (t->ndim != 2 || t->shape[0] != (uint64_t) a->tensors[k].shape[0] ||
			t->shape[1] != (uint64_t) a->tensors[k].shape[1])
		{
			st = sft_error(err, SFT_ERR_INVALID,
						   "tensor \"%s\" must have shape [%lld, %lld] (r = %d on this base model)",
						   t->name, (long long) a->tensors[k].shape[0],
						   (long long) a->tensors[k].shape[1], a->config.r);
			break;
		}
		seen[k] = 1;
		target[i] = k;
	}
	for (int k = 0; k < a->n_tensors && st == SFT_OK; k++)
		if (!seen[k])
			st = sft_error(err, SFT_ERR_INVALID, "tensor \"%s\" is missing from the adapter",
						   a->tensors[k].name);
	for (int i = 0; i < header.n_tensors && st == SFT_OK; i++)
		st = sft_st_read_f32(&header, &header.tensors[i], read_at, ctx,
							 a->params + a->tensors[target[i]].offset, err);
	sft_free(seen);
	sft_free(target);
	sft_st_header_free(&header);
	if (st != SFT_OK)
	{
		sft_lora_adapter_free(a);
		return st;
	}
	*out = a;
	return SFT_OK;
}

SftStatus
sft_lora_adapter_load_buffer(const void *data, size_t len, const SftLoraConfig *cfg,
							 const SftLlamaConfig *model_cfg, SftLoraAdapter **out,
							 SftError *err)
{
	SftStBufferSource src = {data, len};

	return sft_lora_adapter_read(sft_st_buffer_read_at, &src, len, cfg, model_cfg, out, err);
}

static int
compare_write_names(const void *a, const void *b)
{
	return strcmp(((const SftStWriteTensor *) a)->name, ((const SftStWriteTensor *) b)->name);
}

SftStatus
sft_lora_adapter_write(const SftLoraAdapter *a, SftWriteFn write, void *ctx, SftError *err)
{
	SftStWriteTensor *w;
	SftStatus	st;

	if ((w = sft_alloc(sizeof(*w) * (size_t) (a->n_tensors ? a->n_tensors : 1))) == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory writing a LoRA adapter");
	for (int i = 0; i < a->n_tensors; i++)
	{
		w[i].name = a->tensors[i].name;
		w[i].ndim = 2;
		w[i].shape[0] = a->tensors[i].shape[0];
		w[i].shape[1] = a->tensors[i].shape[1];
		w[i].numel = a->tensors[i].numel;
		w[i].data = a->params + a->tensors[i].offset;
	}
	qsort(w, (size_t) a->n_tensors, sizeof(*w), compare_write_names);
	st = sft_st_write(w, a->n_tensors, write, ctx, err);
	sft_free(w);
	return st;
}

/* ---------------------------------------------------------------------------
 * Merge
 * ------------------------------------------------------------------------- */

SftStatus
sft_lora_merge(SftModel *model, const SftLoraAdapter *a, SftError *err)
{
	const SftLlamaConfig *cfg = sft_model_config(model);
	float	   *params = sft_model_params(model);
	float		scale = sft_lora_scale(&a->config);
	SftStatus	st;
	char		name[SFT_TENSOR_NAME_MAX];

	if ((st = sft_lora_adapter_check_base(a, cfg, err)) != SFT_OK)
		return st;
	/* Every base tensor exists before anything changes. */
	for (int i = 0; i < a->n_tensors; i += 2)
	{
		sft_lora_base_tensor_name(name, sizeof(name), a->tensors[i].layer, a->tensors[i].module);
		if (sft_model_find_tensor(model, name) == NULL)
			return sft_error(err, SFT_ERR_INTERNAL, "the model has no tensor \"%s\"", name);
	}
	for (int i = 0; i < a->n_tensors; i += 2)
	{
		const SftLoraTensor *A = &a->tensors[i];
		const SftLoraTensor *B = &a->tensors[i + 1];
		const SftParamTensor *W;

		sft_lora_base_tensor_name(name, sizeof(name), A->layer, A->module);
		W = sft_model_find_tensor(model, name);
		/* W [out, in] += s * B [out, r] @ A [r, in] */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) W->shape[0],
					(int) W->shape[1], a->config.r, scale, a->params + B->offset, a->config.r,
					a->params + A->offset, (int) W->shape[1], 1.0f, params + W->offset,
					(int) W->shape[1]);
	}
	return SFT_OK;
}
