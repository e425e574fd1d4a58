/*
 * llama_config.c: Hugging Face config.json <-> SftLlamaConfig.
 *
 * What we read.  The keys LlamaForCausalLM uses, with LlamaConfig's defaults
 * where config.json may leave a key out:
 *
 *   hidden_size, num_hidden_layers, num_attention_heads,
 *   intermediate_size, vocab_size                 required integers
 *   num_key_value_heads                           default num_attention_heads
 *   head_dim                                      default hidden_size / heads
 *   max_position_embeddings                       default 2048
 *   rms_norm_eps                                  default 1e-6
 *   rope_theta                                    default 10000
 *   tie_word_embeddings                           default false
 *   bos_token_id, eos_token_id                    integer, list (first one
 *                                                 counts) or null; -1 when
 *                                                 absent (LlamaConfig would say
 *                                                 1 and 2; the tokenizer files
 *                                                 are the better source)
 *
 * A null value means "absent" for every optional key, as in LlamaConfig.
 *
 * What we refuse.  A key that would change what the model computes and that
 * we do not implement is an error naming the key, never silently ignored:
 * rope_scaling (any non-null value), rope_parameters other than the default
 * rotary type, attention_bias / mlp_bias true, hidden_act other than silu,
 * pretraining_tp > 1, attention_dropout > 0, partial_rotary_factor != 1,
 * quantization_config, an architectures entry other than LlamaForCausalLM /
 * MistralForCausalLM, and model_type other than llama (mistral is the same
 * network when sliding_window is null).  Keys that do not change the math
 * (torch_dtype, use_cache, initializer_range, pad_token_id, ...) are ignored.
 *
 * What we write.  config.json as transformers writes it (keys sorted, two-
 * space indentation), model_type "llama", torch_dtype "float32", so that
 * AutoModelForCausalLM.from_pretrained loads an exported directory.
 */
#include "llama_config.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Limits.  Generous for real models (SmolLM2 to Llama 3 70B shapes) and small
 * enough that every size product in the core fits in 64 bits.
 * ------------------------------------------------------------------------- */

#define CFG_MAX_DIM (1 << 20)		/* hidden, intermediate, NH * HD */
#define CFG_MAX_LAYERS 1024
#define CFG_MAX_HEADS 4096
#define CFG_MAX_HEAD_DIM 4096
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_POSITION (1 << 24)
#define CFG_MAX_PARAMS ((uint64_t) 1 << 36)
#define CFG_MAX_JSON_BYTES (16u << 20)

/* ---------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------- */

/* Floats of the parameter slab, computed in 64 bits (every factor is bounded). */
static uint64_t
config_num_params(const SftLlamaConfig *c)
{
	uint64_t	C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
	uint64_t	QH = (uint64_t) c->n_heads * c->head_dim;
	uint64_t	KVH = (uint64_t) c->n_kv_heads * c->head_dim;
	uint64_t	per_layer = 2 * C + QH * C + 2 * KVH * C + C * QH + 3 * F * C;

	return V * C + (uint64_t) c->n_layers * per_layer + C +
		(c->tie_word_embeddings ? 0 : V * C);
}

SftStatus
sft_llama_config_validate(const SftLlamaConfig *cfg, SftError *err)
{
	if (cfg == NULL)
		return sft_error(err, SFT_ERR_INVALID, "model config is missing");
#define CHECK_RANGE(field, key, max) \
	if (cfg->field < 1 || cfg->field > (max)) \
		return sft_error(err, SFT_ERR_LIMIT, "config: " key " = %d is out of range [1, %d]", \
						 cfg->field, (int) (max))
	CHECK_RANGE(hidden_size, "hidden_size", CFG_MAX_DIM);
	CHECK_RANGE(n_layers, "num_hidden_layers", CFG_MAX_LAYERS);
	CHECK_RANGE(n_heads, "num_attention_heads", CFG_MAX_HEADS);
	CHECK_RANGE(n_kv_heads, "num_key_value_heads", CFG_MAX_HEADS);
	CHECK_RANGE(head_dim, "head_dim", CFG_MAX_HEAD_DIM);
	CHECK_RANGE(intermediate_size, "intermediate_size", CFG_MAX_DIM);
	CHECK_RANGE(vocab_size, "vocab_size", CFG_MAX_VOCAB);
	CHECK_RANGE(max_position, "max_position_embeddings", CFG_MAX_POSITION);
#undef CHECK_RANGE
	if (cfg->n_heads % cfg->n_kv_heads != 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
						 cfg->n_heads, cfg->n_kv_heads);
	if (cfg->head_dim % 2 != 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: head_dim (%d) must be even for rotary embeddings",
						 cfg->head_dim);
	if ((int64_t) cfg->n_heads * cfg->head_dim > CFG_MAX_DIM)
		return sft_error(err, SFT_ERR_LIMIT,
						 "config: num_attention_heads * head_dim = %lld exceeds %d",
						 (long long) cfg->n_heads * cfg->head_dim, CFG_MAX_DIM);
	if (!isfinite(cfg->rms_norm_eps) || !(cfg->rms_norm_eps >= 0.0f) ||
		cfg->rms_norm_eps > 1.0f)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: rms_norm_eps = %g must be a finite number in [0, 1]",
						 (double) cfg->rms_norm_eps);
	if (!isfinite(cfg->rope_theta) || !(cfg->rope_theta > 0.0f))
		return sft_error(err, SFT_ERR_INVALID,
						 "config: rope_theta = %g must be a finite number > 0",
						 (double) cfg->rope_theta);
	if (cfg->tie_word_embeddings != 0 && cfg->tie_word_embeddings != 1)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: tie_word_embeddings must be 0 or 1, not %d",
						 cfg->tie_word_embeddings);
	if (cfg->bos_token_id < -1 || cfg->bos_token_id >= cfg->vocab_size)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: bos_token_id %d is outside the vocabulary [0, %d)",
						 cfg->bos_token_id, cfg->vocab_size);
	if (cfg->eos_token_id < -1 || cfg->eos_token_id >= cfg->vocab_size)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: eos_token_id %d is outside the vocabulary [0, %d)",
						 cfg->eos_token_id, cfg->vocab_size);
	if (config_num_params(cfg) > CFG_MAX_PARAMS)
		return sft_error(err, SFT_ERR_LIMIT,
						 "config: the model would have %llu parameters, more than the limit %llu",
						 (unsigned long long) config_num_params(cfg),
						 (unsigned long long) CFG_MAX_PARAMS);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Parsing helpers.  Each names the key in its error message.
 * ------------------------------------------------------------------------- */

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
			return "a floating-point number";
		case json_type_int:
			return "an integer";
		case json_type_object:
			return "an object";
		case json_type_array:
			return "an array";
		case json_type_string:
			return "a string";
	}
	return "an unknown type";
}

/* The value of key, or NULL when the key is absent or null. */
static json_object *
get_present(json_object *root, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(root, key, &v))
		return NULL;
	return json_object_is_type(v, json_type_null) ? NULL : v;
}

/*
 * An integer in [lo, hi] (hi <= INT32_MAX).  json-c saturates integers beyond
 * int64 to INT64_MIN/MAX, which every range here rejects.
 */
static SftStatus
int_value(json_object *v, const char *key, int64_t lo, int64_t hi, int *out, SftError *err)
{
	int64_t		x;

	if (!json_object_is_type(v, json_type_int))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"%s\" must be an integer, not %s",
						 key, json_type_label(v));
	x = json_object_get_int64(v);
	if (x < lo || x > hi)
		return sft_error(err, SFT_ERR_LIMIT, "config.json: \"%s\" = %s is out of range [%lld, %lld]",
						 key, json_object_to_json_string(v), (long long) lo, (long long) hi);
	*out = (int) x;
	return SFT_OK;
}

static SftStatus
get_int(json_object *root, const char *key, int required, int default_value,
		int64_t lo, int64_t hi, int *out, SftError *err)
{
	json_object *v = get_present(root, key);

	if (v == NULL)
	{
		if (required)
			return sft_error(err, SFT_ERR_INVALID, "config.json: required key \"%s\" is missing",
							 key);
		*out = default_value;
		return SFT_OK;
	}
	return int_value(v, key, lo, hi, out, err);
}

/* A JSON number (integer or floating point), finite, as a double. */
static SftStatus
number_value(json_object *v, const char *key, double *out, SftError *err)
{
	double		x = 0.0;

	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"%s\" must be a number, not %s",
						 key, json_type_label(v));
	x = json_object_get_double(v);
	if (!isfinite(x))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"%s\" must be finite", key);
	*out = x;
	return SFT_OK;
}

/* A float-typed field: the number must survive the conversion to float. */
static SftStatus
get_float(json_object *root, const char *key, float default_value, float *out, SftError *err)
{
	json_object *v = get_present(root, key);
	double		x = 0.0;
	SftStatus	st;

	if (v == NULL)
	{
		*out = default_value;
		return SFT_OK;
	}
	if ((st = number_value(v, key, &x, err)) != SFT_OK)
		return st;
	if (fabs(x) > 3.0e38)
		return sft_error(err, SFT_ERR_LIMIT, "config.json: \"%s\" = %g does not fit a float",
						 key, x);
	*out = (float) x;
	return SFT_OK;
}

static SftStatus
get_bool(json_object *root, const char *key, int default_value, int *out, SftError *err)
{
	json_object *v = get_present(root, key);

	if (v == NULL)
	{
		*out = default_value;
		return SFT_OK;
	}
	if (!json_object_is_type(v, json_type_boolean))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"%s\" must be true or false, not %s",
						 key, json_type_label(v));
	*out = json_object_get_boolean(v) ? 1 : 0;
	return SFT_OK;
}

/* A string or NULL when absent/null; anything else is a type error. */
static SftStatus
get_string(json_object *root, const char *key, const char **out, SftError *err)
{
	json_object *v = get_present(root, key);

	*out = NULL;
	if (v == NULL)
		return SFT_OK;
	if (!json_object_is_type(v, json_type_string))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"%s\" must be a string, not %s",
						 key, json_type_label(v));
	*out = json_object_get_string(v);
	return SFT_OK;
}

/* Token ids: an integer, a list of integers (the first counts), or null. */
static SftStatus
get_token_id(json_object *root, const char *key, int *out, SftError *err)
{
	json_object *v = get_present(root, key);

	*out = -1;
	if (v == NULL)
		return SFT_OK;
	if (json_object_is_type(v, json_type_array))
	{
		size_t		n = json_object_array_length(v);

		for (size_t i = 0; i < n; i++)
		{
			json_object *item = json_object_array_get_idx(v, i);
			int			id = -1;
			SftStatus	st;

			if (item == NULL || !json_object_is_type(item, json_type_int))
				return sft_error(err, SFT_ERR_INVALID,
								 "config.json: \"%s\" must be an integer or a list of integers; element %zu is %s",
								 key, i, item ? json_type_label(item) : "null");
			if ((st = int_value(item, key, 0, INT32_MAX, &id, err)) != SFT_OK)
				return st;
			if (i == 0)
				*out = id;
		}
		return SFT_OK;
	}
	return int_value(v, key, 0, INT32_MAX, out, err);
}

/* Printable, bounded copy of an outside string for an error message. */
static void
printable(char *dst, size_t size, const char *src)
{
	size_t		i = 0;

	for (; src[i] != '\0' && i + 4 < size; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	if (src[i] != '\0' && i + 4 >= size && size >= 4)
	{
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

/* ---------------------------------------------------------------------------
 * Keys we do not implement: rejected by name.
 * ------------------------------------------------------------------------- */

static SftStatus
reject_unsupported(json_object *root, const char *model_type, SftError *err)
{
	json_object *v;
	int			flag;
	int			tp;
	double		x = 0.0;
	const char *s;
	SftStatus	st;
	char		shown[64];

	if ((v = get_present(root, "rope_scaling")) != NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"rope_scaling\" is not supported (only plain rotary embeddings are implemented; found %s)",
						 json_type_label(v));
	if ((v = get_present(root, "rope_parameters")) != NULL)
	{
		/* transformers 5 moves rope_theta here; only the default type is ours. */
		json_object *type = NULL;

		if (!json_object_is_type(v, json_type_object))
			return sft_error(err, SFT_ERR_INVALID,
							 "config.json: \"rope_parameters\" must be an object, not %s",
							 json_type_label(v));
		json_object_object_foreach(v, key, val)
		{
			if (strcmp(key, "rope_type") == 0 || strcmp(key, "type") == 0)
				type = val;
			else if (strcmp(key, "rope_theta") != 0)
			{
				printable(shown, sizeof(shown), key);
				return sft_error(err, SFT_ERR_UNSUPPORTED,
								 "config.json: \"rope_parameters\" key \"%s\" is not supported",
								 shown);
			}
		}
		if (type != NULL && !json_object_is_type(type, json_type_null) &&
			(!json_object_is_type(type, json_type_string) ||
			 strcmp(json_object_get_string(type), "default") != 0))
		{
			printable(shown, sizeof(shown), json_object_get_string(type));
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: rope_parameters.rope_type \"%s\" is not supported (only \"default\")",
							 shown);
		}
	}
	if ((st = get_bool(root, "attention_bias", 0, &flag, err)) != SFT_OK)
		return st;
	if (flag)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"attention_bias\": true is not supported (attention projections without bias only)");
	if ((st = get_bool(root, "mlp_bias", 0, &flag, err)) != SFT_OK)
		return st;
	if (flag)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"mlp_bias\": true is not supported (MLP projections without bias only)");
	if ((st = get_string(root, "hidden_act", &s, err)) != SFT_OK)
		return st;
	if (s != NULL && strcmp(s, "silu") != 0)
	{
		printable(shown, sizeof(shown), s);
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"hidden_act\" \"%s\" is not supported (only \"silu\")", shown);
	}
	if ((st = get_int(root, "pretraining_tp", 0, 1, INT32_MIN, INT32_MAX, &tp, err)) != SFT_OK)
		return st;
	if (tp < 1)
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"pretraining_tp\" = %d must be >= 1", tp);
	if (tp > 1)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"pretraining_tp\" = %d is not supported (only 1)", tp);
	if ((v = get_present(root, "attention_dropout")) != NULL)
	{
		if ((st = number_value(v, "attention_dropout", &x, err)) != SFT_OK)
			return st;
		if (x != 0.0)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: \"attention_dropout\" = %g is not supported (only 0)", x);
	}
	if ((v = get_present(root, "partial_rotary_factor")) != NULL)
	{
		if ((st = number_value(v, "partial_rotary_factor", &x, err)) != SFT_OK)
			return st;
		if (x != 1.0)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: \"partial_rotary_factor\" = %g is not supported (only 1)", x);
	}
	if ((v = get_present(root, "quantization_config")) != NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"quantization_config\" is not supported (quantized weights cannot be trained here)");
	if (model_type != NULL && strcmp(model_type, "mistral") == 0 &&
		(v = get_present(root, "sliding_window")) != NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"sliding_window\" %s is not supported (mistral models only with sliding_window null)",
						 json_object_is_type(v, json_type_int) ? json_object_to_json_string(v) : "(non-null)");
	if ((v = get_present(root, "architectures")) != NULL)
	{
		size_t		n;

		if (!json_object_is_type(v, json_type_array))
			return sft_error(err, SFT_ERR_INVALID,
							 "config.json: \"architectures\" must be a list of strings, not %s",
							 json_type_label(v));
		n = json_object_array_length(v);
		for (size_t i = 0; i < n; i++)
		{
			json_object *item = json_object_array_get_idx(v, i);
			const char *arch;

			if (item == NULL || !json_object_is_type(item, json_type_string))
				return sft_error(err, SFT_ERR_INVALID,
								 "config.json: \"architectures\" element %zu must be a string, not %s",
								 i, item ? json_type_label(item) : "null");
			arch = json_object_get_string(item);
			if (strcmp(arch, "LlamaForCausalLM") != 0 && strcmp(arch, "MistralForCausalLM") != 0)
			{
				printable(shown, sizeof(shown), arch);
				return sft_error(err, SFT_ERR_UNSUPPORTED,
								 "config.json: architecture \"%s\" is not supported (only LlamaForCausalLM)",
								 shown);
			}
		}
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Parse
 * ------------------------------------------------------------------------- */

static SftStatus
parse_object(json_object *root, SftLlamaConfig *cfg, SftError *err)
{
	const char *model_type;
	json_object *rope_params;
	SftStatus	st;
	char		shown[64];

	if ((st = get_string(root, "model_type", &model_type, err)) != SFT_OK)
		return st;
	if (model_type != NULL && strcmp(model_type, "llama") != 0 &&
		strcmp(model_type, "mistral") != 0)
	{
		printable(shown, sizeof(shown), model_type);
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"model_type\" \"%s\" is not supported (only llama, and mistral without sliding_window)",
						 shown);
	}
	if ((st = reject_unsupported(root, model_type, err)) != SFT_OK)
		return st;

	memset(cfg, 0, sizeof(*cfg));
	if ((st = get_int(root, "hidden_size", 1, 0, 1, CFG_MAX_DIM, &cfg->hidden_size, err)) ||
		(st = get_int(root, "num_hidden_layers", 1, 0, 1, CFG_MAX_LAYERS, &cfg->n_layers, err)) ||
		(st = get_int(root, "num_attention_heads", 1, 0, 1, CFG_MAX_HEADS, &cfg->n_heads, err)) ||
		(st = get_int(root, "num_key_value_heads", 0, cfg->n_heads, 1, CFG_MAX_HEADS,
					  &cfg->n_kv_heads, err)) ||
		(st = get_int(root, "intermediate_size", 1, 0, 1, CFG_MAX_DIM,
					  &cfg->intermediate_size, err)) ||
		(st = get_int(root, "vocab_size", 1, 0, 1, CFG_MAX_VOCAB, &cfg->vocab_size, err)) ||
		(st = get_int(root, "max_position_embeddings", 0, 2048, 1, CFG_MAX_POSITION,
					  &cfg->max_position, err)))
		return st;
	if (get_present(root, "head_dim") == NULL && cfg->hidden_size % cfg->n_heads != 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "config.json: hidden_size (%d) is not a multiple of num_attention_heads (%d) and head_dim is not given",
						 cfg->hidden_size, cfg->n_heads);
	if ((st = get_int(root, "head_dim", 0, cfg->hidden_size / cfg->n_heads, 1, CFG_MAX_HEAD_DIM,
					  &cfg->head_dim, err)) ||
		(st = get_float(root, "rms_norm_eps", 1e-6f, &cfg->rms_norm_eps, err)) ||
		(st = get_float(root, "rope_theta", 10000.0f, &cfg->rope_theta, err)) ||
		(st = get_bool(root, "tie_word_embeddings", 0, &cfg->tie_word_embeddings, err)) ||
		(st = get_token_id(root, "bos_token_id", &cfg->bos_token_id, err)) ||
		(st = get_token_id(root, "eos_token_id", &cfg->eos_token_id, err)))
		return st;
	rope_params = get_present(root, "rope_parameters");
	if (rope_params != NULL && get_present(rope_params, "rope_theta") != NULL)
	{
		float		theta;

		if ((st = get_float(rope_params, "rope_theta", 10000.0f, &theta, err)) != SFT_OK)
		{
			sft_error_prefix(err, "rope_parameters: ");
			return st;
		}
		if (get_present(root, "rope_theta") != NULL && theta != cfg->rope_theta)
			return sft_error(err, SFT_ERR_INVALID,
							 "config.json: \"rope_theta\" (%g) and rope_parameters.rope_theta (%g) disagree",
							 (double) cfg->rope_theta, (double) theta);
		cfg->rope_theta = theta;
	}
	return sft_llama_config_validate(cfg, err);
}

SftStatus
sft_llama_config_parse(const char *json, size_t len, SftLlamaConfig *out, SftError *err)
{
	json_tokener *tok;
	json_object *root;
	enum json_tokener_error jerr;
	size_t		consumed;
	size_t		bad;
	SftStatus	st;

	if (json == NULL || out == NULL)
		return sft_error(err, SFT_ERR_INVALID, "config.json: no input");
	if (len > CFG_MAX_JSON_BYTES)
		return sft_error(err, SFT_ERR_LIMIT, "config.json: %zu bytes is more than the limit of %u",
						 len, CFG_MAX_JSON_BYTES);
	if (memchr(json, '\0', len) != NULL)
		return sft_error(err, SFT_ERR_FORMAT, "config.json: contains a NUL byte at offset %zu",
						 (size_t) ((const char *) memchr(json, '\0', len) - json));
	if ((bad = sft_utf8_invalid_offset(json, len)) != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT, "config.json: invalid UTF-8 at byte %zu", bad);

	tok = json_tokener_new();
	if (tok == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "config.json: out of memory");
	root = json_tokener_parse_ex(tok, json, (int) len);
	jerr = json_tokener_get_error(tok);
	consumed = tok->char_offset;
	json_tokener_free(tok);
	if (root == NULL || jerr != json_tokener_success)
	{
		json_object_put(root);
		return sft_error(err, SFT_ERR_FORMAT, "config.json: invalid JSON near byte %zu: %s",
						 consumed, jerr == json_tokener_continue ? "unexpected end of input"
						 : json_tokener_error_desc(jerr));
	}
	for (; consumed < len; consumed++)
		if (strchr(" \t\r\n", json[consumed]) == NULL)
		{
			json_object_put(root);
			return sft_error(err, SFT_ERR_FORMAT,
							 "config.json: unexpected data after the JSON value at byte %zu",
							 consumed);
		}
	if (!json_object_is_type(root, json_type_object))
	{
		st = sft_error(err, SFT_ERR_FORMAT, "config.json: must be a JSON object, not %s",
					   json_type_label(root));
		json_object_put(root);
		return st;
	}
	st = parse_object(root, out, err);
	json_object_put(root);
	return st;
}

/* ---------------------------------------------------------------------------
 * Serialise
 * ------------------------------------------------------------------------- */

/*
 * A float as JSON the way Python prints it closely enough: integral values
 * with ".0", others with the fewest digits that read back as the same float.
 */
static void
format_float(char *dst, size_t size, float value)
{
	if (value == floorf(value) && fabsf(value) < 1e15f)
	{
		snprintf(dst, size, "%.1f", (double) value);
		return;
	}
	for (int precision = 1; precision <= 9; precision++)
	{
		snprintf(dst, size, "%.*g", precision, (double) value);
		if (strtof(dst, NULL) == value)
			return;
	}
}

SftStatus
sft_llama_config_to_json(const SftLlamaConfig *cfg, SftBuf *out, SftError *err)
{
	char		eps[32];
	char		theta[32];
	char		bos[16];
	char		eos[16];
	char		text[2048];
	SftStatus	st;
	int			n;

	if ((st = sft_llama_config_validate(cfg, err)) != SFT_OK)
		return st;
	format_float(eps, sizeof(eps), cfg->rms_norm_eps);
	format_float(theta, sizeof(theta), cfg->rope_theta);
	if (cfg->bos_token_id >= 0)
		snprintf(bos, sizeof(bos), "%d", cfg->bos_token_id);
	else
		snprintf(bos, sizeof(bos), "null");
	if (cfg->eos_token_id >= 0)
		snprintf(eos, sizeof(eos), "%d", cfg->eos_token_id);
	else
		snprintf(eos, sizeof(eos), "null");

	/* Keys sorted, as transformers' to_json_string(sort_keys=True) writes them. */
	n = snprintf(text, sizeof(text),
				 "{\n"
				 "  \"architectures\": [\n"
				 "    \"LlamaForCausalLM\"\n"
				 "  ],\n"
				 "  \"attention_bias\": false,\n"
				 "  \"attention_dropout\": 0.0,\n"
				 "  \"bos_token_id\": %s,\n"
				 "  \"eos_token_id\": %s,\n"
				 "  \"head_dim\": %d,\n"
				 "  \"hidden_act\": \"silu\",\n"
				 "  \"hidden_size\": %d,\n"
				 "  \"initializer_range\": 0.02,\n"
				 "  \"intermediate_size\": %d,\n"
				 "  \"max_position_embeddings\": %d,\n"
				 "  \"mlp_bias\": false,\n"
				 "  \"model_type\": \"llama\",\n"
				 "  \"num_attention_heads\": %d,\n"
				 "  \"num_hidden_layers\": %d,\n"
				 "  \"num_key_value_heads\": %d,\n"
				 "  \"pretraining_tp\": 1,\n"
				 "  \"rms_norm_eps\": %s,\n"
				 "  \"rope_scaling\": null,\n"
				 "  \"rope_theta\": %s,\n"
				 "  \"tie_word_embeddings\": %s,\n"
				 "  \"torch_dtype\": \"float32\",\n"
				 "  \"use_cache\": true,\n"
				 "  \"vocab_size\": %d\n"
				 "}\n",
				 bos, eos, cfg->head_dim, cfg->hidden_size, cfg->intermediate_size,
				 cfg->max_position, cfg->n_heads, cfg->n_layers, cfg->n_kv_heads,
				 eps, theta, cfg->tie_word_embeddings ? "true" : "false", cfg->vocab_size);
	if (n < 0 || (size_t) n >= sizeof(text))
		return sft_error(err, SFT_ERR_INTERNAL, "config.json text does not fit its buffer");
	if (sft_buf_append(out, text, (size_t) n) != SFT_OK)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory writing config.json");
	return SFT_OK;
}
