/*
 * llama_config.c: Hugging Face config.json <-> SftLlamaConfig.
 *
 * Families.  model_type picks the config class whose defaults apply and the
 * network computed (architectures must name that class):
 *
 *   llama, mistral  LlamaForCausalLM    plain Llama (mistral: sliding_window null)
 *   qwen2           Qwen2ForCausalLM    + bias on q/k/v (always; no key)
 *   qwen3           Qwen3ForCausalLM    + q_norm/k_norm over head_dim (default 128)
 *   smollm3         SmolLM3ForCausalLM  + NoPE layers: no_rope_layers (1 = RoPE),
 *                                         else every no_rope_layer_interval-th (4)
 *   gemma3_text     Gemma3ForCausalLM   scaled embeddings, (1 + w) norms, GeGLU
 *                                       (gelu_pytorch_tanh), four norms a layer,
 *                                       q/k norms, query_pre_attn_scalar (256),
 *                                       sliding_window (4096) layers by layer_types
 *                                       or sliding_window_pattern (6) with their
 *                                       own rope_local_base_freq (10000),
 *                                       final_logit_softcapping; head_dim 256
 *
 * What we read.  The keys the family's model uses, with its config class's
 * defaults where config.json may leave a key out:
 *
 *   hidden_size, num_hidden_layers, num_attention_heads,
 *   intermediate_size, vocab_size                 required integers
 *   num_key_value_heads                           default num_attention_heads
 *   head_dim                                      default hidden_size / heads
 *                                                 (qwen3 128, gemma3_text 256)
 *   max_position_embeddings                       default 2048 (qwen2, qwen3,
 *                                                 smollm3 32768; gemma3 131072)
 *   rms_norm_eps                                  default 1e-6
 *   rope_theta                                    default 10000 (smollm3 2e6,
 *                                                 gemma3_text 1e6)
 *   rope_scaling (4.x) or rope_parameters (5.x)   rope_type default, linear
 *                                                 (factor) or llama3 (factor,
 *                                                 low/high_freq_factor,
 *                                                 original_max_position_
 *                                                 embeddings); 5.x may carry
 *                                                 rope_theta inside, and Gemma 3
 *                                                 one dictionary per layer type
 *   tie_word_embeddings                           default false (smollm3,
 *                                                 gemma3_text true)
 *   layer_types                                   full_attention everywhere
 *                                                 (gemma3_text: also sliding_attention)
 *   bos_token_id, eos_token_id                    integer, list (first one
 *                                                 counts) or null; -1 when
 *                                                 absent (the tokenizer files
 *                                                 are the better source)
 *
 * A null value means "absent" for every optional key, as in the config classes.
 *
 * What we refuse.  A key that would change what the model computes and that
 * we do not implement is an error naming the key, never silently ignored:
 * another rope_type (yarn, dynamic, longrope ...), attention_bias / mlp_bias
 * true where the family reads them, an activation other than the family's,
 * pretraining_tp > 1 (except smollm3, whose model ignores it),
 * attention_dropout > 0, partial_rotary_factor != 1, quantization_config,
 * use_sliding_window true (qwen2, qwen3, smollm3), attn_logit_softcapping and
 * use_bidirectional_attention (gemma3_text), an architectures entry of another
 * family, and any other model_type.  Keys that do not change the math
 * (torch_dtype, use_cache, initializer_range, pad_token_id, max_window_layers
 * ...) are ignored.
 *
 * What we write.  config.json as transformers writes it (keys sorted, two-
 * space indentation), the family's model_type and keys, torch_dtype
 * "float32", so that AutoModelForCausalLM.from_pretrained loads an exported
 * directory and our parser reads back the same config.
 */
#include "llama_config.h"

#include <json.h>
#include <math.h>
#include <stdarg.h>
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

/*
 * Floats of the parameter slab, computed in 64 bits (every factor is
 * bounded).  model.c lays the same tensors out; test_model checks both agree.
 */
uint64_t
sft_llama_config_num_params(const SftLlamaConfig *c)
{
	uint64_t	C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
	uint64_t	QH = (uint64_t) c->n_heads * c->head_dim;
	uint64_t	KVH = (uint64_t) c->n_kv_heads * c->head_dim;
	uint64_t	norms = c->family == SFT_FAMILY_GEMMA3 ? 4 : 2;
	uint64_t	per_layer = norms * C + QH * C + 2 * KVH * C + C * QH + 3 * F * C;

	if (c->qkv_bias)
		per_layer += QH + 2 * KVH;
	if (c->qk_norm)
		per_layer += 2 * (uint64_t) c->head_dim;
	return V * C + (uint64_t) c->n_layers * per_layer + C +
		(c->tie_word_embeddings ? 0 : V * C);
}

float
sft_llama_config_attn_scale(const SftLlamaConfig *c)
{
	/* transformers: scaling = head_dim ** -0.5 (Gemma 3: query_pre_attn_scalar ** -0.5) */
	double		d = c->family == SFT_FAMILY_GEMMA3 ? (double) c->query_pre_attn_scalar
		: (double) c->head_dim;

	return (float) pow(d, -0.5);
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
	if ((int) cfg->family < SFT_FAMILY_LLAMA || cfg->family > SFT_FAMILY_GEMMA3)
		return sft_error(err, SFT_ERR_INVALID, "config: unknown model family %d", (int) cfg->family);
	if (cfg->rope_type != SFT_ROPE_DEFAULT &&
		(!isfinite(cfg->rope_factor) || !(cfg->rope_factor > 0.0f)))
		return sft_error(err, SFT_ERR_INVALID, "config: rope factor = %g must be a finite number > 0",
						 (double) cfg->rope_factor);
	if (cfg->rope_type == SFT_ROPE_LLAMA3 &&
		(!isfinite(cfg->rope_low_freq_factor) || !isfinite(cfg->rope_high_freq_factor) ||
		 !(cfg->rope_low_freq_factor > 0.0f) ||
		 !(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor) ||
		 cfg->rope_original_max_position < 1))
		return sft_error(err, SFT_ERR_INVALID,
						 "config: llama3 rope needs 0 < low_freq_factor (%g) < high_freq_factor (%g) and original_max_position_embeddings (%d) >= 1",
						 (double) cfg->rope_low_freq_factor, (double) cfg->rope_high_freq_factor,
						 cfg->rope_original_max_position);
	if ((cfg->qkv_bias != 0) != (cfg->family == SFT_FAMILY_QWEN2) ||
		(cfg->qk_norm != 0) != (cfg->family == SFT_FAMILY_QWEN3 || cfg->family == SFT_FAMILY_GEMMA3))
		return sft_error(err, SFT_ERR_INVALID,
						 "config: q/k/v bias and q/k norms do not match model_type \"%s\"",
						 sft_family_model_type(cfg->family));
	for (int l = 0; l < SFT_CONFIG_MAX_LAYERS; l++)
	{
		int			allowed = l >= cfg->n_layers ? 0
			: cfg->family == SFT_FAMILY_SMOLLM3 ? SFT_LAYER_NOPE
			: cfg->family == SFT_FAMILY_GEMMA3 ? SFT_LAYER_SLIDING : 0;

		if (cfg->layer_flags[l] & ~allowed)
			return sft_error(err, SFT_ERR_INVALID,
							 "config: layer %d's attention kind does not exist for model_type \"%s\"",
							 l, sft_family_model_type(cfg->family));
	}
	if (cfg->family == SFT_FAMILY_GEMMA3)
	{
		if (cfg->sliding_window < 1 || cfg->sliding_window > CFG_MAX_POSITION)
			return sft_error(err, SFT_ERR_LIMIT, "config: sliding_window = %d is out of range [1, %d]",
							 cfg->sliding_window, CFG_MAX_POSITION);
		if (!isfinite(cfg->rope_local_theta) || !(cfg->rope_local_theta > 0.0f))
			return sft_error(err, SFT_ERR_INVALID,
							 "config: rope_local_base_freq = %g must be a finite number > 0",
							 (double) cfg->rope_local_theta);
		if (!isfinite(cfg->query_pre_attn_scalar) || !(cfg->query_pre_attn_scalar > 0.0f))
			return sft_error(err, SFT_ERR_INVALID,
							 "config: query_pre_attn_scalar = %g must be a finite number > 0",
							 (double) cfg->query_pre_attn_scalar);
		if (!isfinite(cfg->final_logit_softcap) || cfg->final_logit_softcap < 0.0f)
			return sft_error(err, SFT_ERR_INVALID,
							 "config: final_logit_softcapping = %g must be a finite number > 0 or absent",
							 (double) cfg->final_logit_softcap);
	}
	else if (cfg->sliding_window != 0 || cfg->final_logit_softcap != 0.0f)
		return sft_error(err, SFT_ERR_INVALID,
						 "config: sliding windows and logit softcapping exist for gemma3_text only");
	if (sft_llama_config_num_params(cfg) > CFG_MAX_PARAMS)
		return sft_error(err, SFT_ERR_LIMIT,
						 "config: the model would have %llu parameters, more than the limit %llu",
						 (unsigned long long) sft_llama_config_num_params(cfg),
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
 * Families: what each model_type's config class defaults to
 * ------------------------------------------------------------------------- */

typedef struct FamilyInfo
{
	SftFamily	family;
	const char *model_type;
	const char *architecture;	/* the causal-LM class */
	float		rope_theta;		/* the config class's defaults */
	int			max_position;
	int			tie_word_embeddings;
	int			head_dim;		/* 0: hidden_size / num_attention_heads */
} FamilyInfo;

static const FamilyInfo FAMILIES[] = {
	{SFT_FAMILY_LLAMA, "llama", "LlamaForCausalLM", 10000.0f, 2048, 0, 0},
	/* Mistral without a sliding window is Llama's network */
	{SFT_FAMILY_LLAMA, "mistral", "MistralForCausalLM", 10000.0f, 2048, 0, 0},
	{SFT_FAMILY_QWEN2, "qwen2", "Qwen2ForCausalLM", 10000.0f, 32768, 0, 0},
	{SFT_FAMILY_QWEN3, "qwen3", "Qwen3ForCausalLM", 10000.0f, 32768, 0, 128},
	{SFT_FAMILY_SMOLLM3, "smollm3", "SmolLM3ForCausalLM", 2000000.0f, 32768, 1, 0},
	{SFT_FAMILY_GEMMA3, "gemma3_text", "Gemma3ForCausalLM", 1000000.0f, 131072, 1, 256},
};
#define N_FAMILIES ((int) (sizeof(FAMILIES) / sizeof(FAMILIES[0])))

const char *
sft_family_model_type(SftFamily family)
{
	for (int i = 0; i < N_FAMILIES; i++)
		if (FAMILIES[i].family == family)
			return FAMILIES[i].model_type;
	return "unknown";
}

static const FamilyInfo *
family_by_model_type(const char *model_type)
{
	for (int i = 0; i < N_FAMILIES; i++)
		if (strcmp(FAMILIES[i].model_type, model_type) == 0)
			return &FAMILIES[i];
	return NULL;
}

static const FamilyInfo *
family_by_architecture(const char *arch)
{
	for (int i = 0; i < N_FAMILIES; i++)
		if (strcmp(FAMILIES[i].architecture, arch) == 0)
			return &FAMILIES[i];
	return NULL;
}

/* "llama, mistral, qwen2, ..." for error messages */
static void
list_model_types(char *dst, size_t size)
{
	size_t		n = 0;

	dst[0] = '\0';
	for (int i = 0; i < N_FAMILIES && n < size; i++)
		n += snprintf(dst + n, size - n, "%s%s", i ? ", " : "", FAMILIES[i].model_type);
}

/* ---------------------------------------------------------------------------
 * Keys we do not implement: rejected by name.
 * ------------------------------------------------------------------------- */

/* A key that must be absent, null or false for this family. */
static SftStatus
reject_true(json_object *root, const char *key, const char *why, SftError *err)
{
	int			flag;
	SftStatus	st;

	if ((st = get_bool(root, key, 0, &flag, err)) != SFT_OK)
		return st;
	if (flag)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "config.json: \"%s\": true is not supported (%s)",
						 key, why);
	return SFT_OK;
}

/* A number key that must be absent, null or equal to want. */
static SftStatus
reject_number_other_than(json_object *root, const char *key, double want, SftError *err)
{
	json_object *v;
	double		x = 0.0;
	SftStatus	st;

	if ((v = get_present(root, key)) == NULL)
		return SFT_OK;
	if ((st = number_value(v, key, &x, err)) != SFT_OK)
		return st;
	if (x != want)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "config.json: \"%s\" = %g is not supported (only %g)",
						 key, x, want);
	return SFT_OK;
}

static SftStatus
reject_unsupported(json_object *root, const FamilyInfo *fam, SftError *err)
{
	json_object *v;
	int			tp;
	const char *s;
	SftStatus	st;
	char		shown[64];
	const char *act_key = fam->family == SFT_FAMILY_GEMMA3 ? "hidden_activation" : "hidden_act";
	const char *act = fam->family == SFT_FAMILY_GEMMA3 ? "gelu_pytorch_tanh" : "silu";

	/* Qwen2 puts a bias on q/k/v whatever attention_bias says, and no bias on o_proj */
	if (fam->family != SFT_FAMILY_QWEN2 &&
		(st = reject_true(root, "attention_bias", "attention projections without bias only", err)) != SFT_OK)
		return st;
	if ((fam->family == SFT_FAMILY_LLAMA || fam->family == SFT_FAMILY_SMOLLM3) &&
		(st = reject_true(root, "mlp_bias", "MLP projections without bias only", err)) != SFT_OK)
		return st;
	if ((st = get_string(root, act_key, &s, err)) != SFT_OK)
		return st;
	if (s != NULL && strcmp(s, act) != 0)
	{
		printable(shown, sizeof(shown), s);
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"%s\" \"%s\" is not supported (only \"%s\")", act_key, shown, act);
	}
	/* SmolLM3's modeling code ignores pretraining_tp, as transformers does */
	if (fam->family != SFT_FAMILY_SMOLLM3)
	{
		if ((st = get_int(root, "pretraining_tp", 0, 1, INT32_MIN, INT32_MAX, &tp, err)) != SFT_OK)
			return st;
		if (tp < 1)
			return sft_error(err, SFT_ERR_INVALID, "config.json: \"pretraining_tp\" = %d must be >= 1", tp);
		if (tp > 1)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: \"pretraining_tp\" = %d is not supported (only 1)", tp);
	}
	if ((st = reject_number_other_than(root, "attention_dropout", 0.0, err)) != SFT_OK ||
		(st = reject_number_other_than(root, "partial_rotary_factor", 1.0, err)) != SFT_OK)
		return st;
	if ((v = get_present(root, "quantization_config")) != NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"quantization_config\" is not supported (quantized weights cannot be trained here)");
	if (strcmp(fam->model_type, "mistral") == 0 && (v = get_present(root, "sliding_window")) != NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"sliding_window\" %s is not supported (mistral models only with sliding_window null)",
						 json_object_is_type(v, json_type_int) ? json_object_to_json_string(v) : "(non-null)");
	/* Qwen2/3 and SmolLM3 carry a sliding window that only use_sliding_window switches on */
	if (fam->family == SFT_FAMILY_QWEN2 || fam->family == SFT_FAMILY_QWEN3 ||
		fam->family == SFT_FAMILY_SMOLLM3)
	{
		if ((st = reject_true(root, "use_sliding_window",
							  "sliding-window attention is implemented for Gemma 3 only", err)) != SFT_OK)
			return st;
	}
	if (fam->family == SFT_FAMILY_GEMMA3)
	{
		if ((v = get_present(root, "attn_logit_softcapping")) != NULL)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: \"attn_logit_softcapping\" is not supported (only null)");
		if ((st = reject_true(root, "use_bidirectional_attention", "causal attention only", err)) != SFT_OK)
			return st;
	}
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
			const FamilyInfo *af;

			if (item == NULL || !json_object_is_type(item, json_type_string))
				return sft_error(err, SFT_ERR_INVALID,
								 "config.json: \"architectures\" element %zu must be a string, not %s",
								 i, item ? json_type_label(item) : "null");
			arch = json_object_get_string(item);
			af = family_by_architecture(arch);
			if (af == NULL || af->family != fam->family)
			{
				printable(shown, sizeof(shown), arch);
				return sft_error(err, SFT_ERR_UNSUPPORTED,
								 "config.json: architecture \"%s\" is not supported for model_type \"%s\" (only %s)",
								 shown, fam->model_type, fam->architecture);
			}
		}
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Rotary parameters: rope_scaling (4.x) or rope_parameters (5.x)
 * ------------------------------------------------------------------------- */

/*
 * One rope dictionary: rope_type (or the older "type"), the scaling keys of
 * that type, and rope_theta (5.x keeps it here).  where names the object in
 * messages.  Types other than default, linear and llama3 are refused by name.
 */
static SftStatus
parse_rope_object(json_object *obj, const char *where, SftRopeType *type,
				  float *theta, int *theta_given, SftLlamaConfig *cfg, SftError *err)
{
	json_object *t = get_present(obj, "rope_type");
	const char *name = "default";
	char		shown[64];
	SftStatus	st;

	if (!json_object_is_type(obj, json_type_object))
		return sft_error(err, SFT_ERR_UNSUPPORTED, "config.json: \"%s\" must be an object or null, not %s",
						 where, json_type_label(obj));
	if (t == NULL)
		t = get_present(obj, "type");
	if (t != NULL)
	{
		if (!json_object_is_type(t, json_type_string))
			return sft_error(err, SFT_ERR_INVALID, "config.json: %s.rope_type must be a string, not %s",
							 where, json_type_label(t));
		name = json_object_get_string(t);
	}
	if (strcmp(name, "default") == 0)
		*type = SFT_ROPE_DEFAULT;
	else if (strcmp(name, "linear") == 0)
		*type = SFT_ROPE_LINEAR;
	else if (strcmp(name, "llama3") == 0)
		*type = SFT_ROPE_LLAMA3;
	else
	{
		printable(shown, sizeof(shown), name);
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: %s.rope_type \"%s\" is not supported (only default, linear and llama3)",
						 where, shown);
	}
	json_object_object_foreach(obj, key, val)
	{
		int			known = strcmp(key, "rope_type") == 0 || strcmp(key, "type") == 0 ||
			strcmp(key, "rope_theta") == 0;

		(void) val;
		if (*type != SFT_ROPE_DEFAULT && strcmp(key, "factor") == 0)
			known = 1;
		if (*type == SFT_ROPE_LLAMA3 &&
			(strcmp(key, "low_freq_factor") == 0 || strcmp(key, "high_freq_factor") == 0 ||
			 strcmp(key, "original_max_position_embeddings") == 0))
			known = 1;
		if (!known)
		{
			printable(shown, sizeof(shown), key);
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: %s key \"%s\" is not supported for rope_type \"%s\"",
							 where, shown, name);
		}
	}
	*theta_given = get_present(obj, "rope_theta") != NULL;
	if (*theta_given && (st = get_float(obj, "rope_theta", 0.0f, theta, err)) != SFT_OK)
		return st;
	if (cfg == NULL)
	{
		if (*type != SFT_ROPE_DEFAULT)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: %s.rope_type \"%s\" is not supported here (only default)",
							 where, name);
		return SFT_OK;
	}
	cfg->rope_type = *type;
	if (*type != SFT_ROPE_DEFAULT)
	{
		if (get_present(obj, "factor") == NULL)
			return sft_error(err, SFT_ERR_INVALID, "config.json: %s needs \"factor\" for rope_type \"%s\"",
							 where, name);
		if ((st = get_float(obj, "factor", 1.0f, &cfg->rope_factor, err)) != SFT_OK)
			return st;
	}
	if (*type == SFT_ROPE_LLAMA3)
	{
		static const char *const keys[] = {"low_freq_factor", "high_freq_factor",
		"original_max_position_embeddings"};

		for (int i = 0; i < 3; i++)
			if (get_present(obj, keys[i]) == NULL)
				return sft_error(err, SFT_ERR_INVALID,
								 "config.json: %s needs \"%s\" for rope_type \"llama3\"", where, keys[i]);
		if ((st = get_float(obj, "low_freq_factor", 1.0f, &cfg->rope_low_freq_factor, err)) ||
			(st = get_float(obj, "high_freq_factor", 4.0f, &cfg->rope_high_freq_factor, err)) ||
			(st = get_int(obj, "original_max_position_embeddings", 1, 0, 1, CFG_MAX_POSITION,
						  &cfg->rope_original_max_position, err)))
			return st;
	}
	return SFT_OK;
}

/* rope_theta at the top level and in a rope dictionary must agree when both are given. */
static SftStatus
merge_theta(json_object *root, const char *top_key, float *value, float from_dict,
			int dict_given, const char *where, SftError *err)
{
	if (!dict_given)
		return SFT_OK;
	if (get_present(root, top_key) != NULL && from_dict != *value)
		return sft_error(err, SFT_ERR_INVALID,
						 "config.json: \"%s\" (%g) and %s.rope_theta (%g) disagree",
						 top_key, (double) *value, where, (double) from_dict);
	*value = from_dict;
	return SFT_OK;
}

static SftStatus
parse_rope(json_object *root, SftLlamaConfig *cfg, SftError *err)
{
	json_object *scaling = get_present(root, "rope_scaling");
	json_object *params = get_present(root, "rope_parameters");
	SftRopeType type = SFT_ROPE_DEFAULT;
	float		theta = 0.0f;
	int			given = 0;
	SftStatus	st;

	if (scaling != NULL && params != NULL)
		return sft_error(err, SFT_ERR_INVALID,
						 "config.json: give \"rope_scaling\" or \"rope_parameters\", not both");
	if (scaling != NULL)
		return parse_rope_object(scaling, "rope_scaling", &type, &theta, &given, cfg, err);
	if (params == NULL)
		return SFT_OK;
	if (!json_object_is_type(params, json_type_object))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"rope_parameters\" must be an object, not %s",
						 json_type_label(params));
	if (cfg->family == SFT_FAMILY_GEMMA3 &&
		(get_present(params, "full_attention") != NULL || get_present(params, "sliding_attention") != NULL))
	{
		/* 5.x Gemma 3: one dictionary per layer type */
		json_object_object_foreach(params, key, val)
		{
			if (strcmp(key, "full_attention") == 0)
			{
				if ((st = parse_rope_object(val, "rope_parameters.full_attention", &type, &theta,
											&given, cfg, err)) != SFT_OK ||
					(st = merge_theta(root, "rope_theta", &cfg->rope_theta, theta, given,
									  "rope_parameters.full_attention", err)) != SFT_OK)
					return st;
			}
			else if (strcmp(key, "sliding_attention") == 0)
			{
				if ((st = parse_rope_object(val, "rope_parameters.sliding_attention", &type, &theta,
											&given, NULL, err)) != SFT_OK ||
					(st = merge_theta(root, "rope_local_base_freq", &cfg->rope_local_theta, theta,
									  given, "rope_parameters.sliding_attention", err)) != SFT_OK)
					return st;
			}
			else
			{
				char		shown[64];

				printable(shown, sizeof(shown), key);
				return sft_error(err, SFT_ERR_UNSUPPORTED,
								 "config.json: \"rope_parameters\" key \"%s\" is not supported", shown);
			}
		}
		return SFT_OK;
	}
	if ((st = parse_rope_object(params, "rope_parameters", &type, &theta, &given, cfg, err)) != SFT_OK)
		return st;
	return merge_theta(root, "rope_theta", &cfg->rope_theta, theta, given, "rope_parameters", err);
}

/* ---------------------------------------------------------------------------
 * Per-layer attention kinds
 * ------------------------------------------------------------------------- */

/*
 * layer_types: a list of num_hidden_layers strings.  sliding_allowed says
 * whether "sliding_attention" is implemented (Gemma 3); elsewhere only
 * "full_attention" is accepted.
 */
static SftStatus
parse_layer_types(json_object *root, SftLlamaConfig *cfg, int sliding_allowed, int *given,
				  SftError *err)
{
	json_object *v = get_present(root, "layer_types");
	char		shown[64];

	*given = v != NULL;
	if (v == NULL)
		return SFT_OK;
	if (!json_object_is_type(v, json_type_array))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"layer_types\" must be a list of strings, not %s",
						 json_type_label(v));
	if ((int) json_object_array_length(v) != cfg->n_layers)
		return sft_error(err, SFT_ERR_INVALID,
						 "config.json: \"layer_types\" has %zu entries but num_hidden_layers is %d",
						 json_object_array_length(v), cfg->n_layers);
	for (int i = 0; i < cfg->n_layers; i++)
	{
		json_object *item = json_object_array_get_idx(v, i);
		const char *kind;

		if (item == NULL || !json_object_is_type(item, json_type_string))
			return sft_error(err, SFT_ERR_INVALID, "config.json: \"layer_types\" element %d must be a string, not %s",
							 i, item ? json_type_label(item) : "null");
		kind = json_object_get_string(item);
		if (strcmp(kind, "full_attention") == 0)
			continue;
		if (sliding_allowed && strcmp(kind, "sliding_attention") == 0)
		{
			cfg->layer_flags[i] |= SFT_LAYER_SLIDING;
			continue;
		}
		printable(shown, sizeof(shown), kind);
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "config.json: \"layer_types\" element %d \"%s\" is not supported (only %s)",
						 i, shown, sliding_allowed ? "full_attention and sliding_attention" : "full_attention");
	}
	return SFT_OK;
}

/* SmolLM3: no_rope_layers (1 = RoPE, 0 = NoPE) or one NoPE layer every no_rope_layer_interval. */
static SftStatus
parse_nope_layers(json_object *root, SftLlamaConfig *cfg, SftError *err)
{
	json_object *v = get_present(root, "no_rope_layers");
	int			interval = 4;
	SftStatus	st;

	if (v == NULL)
	{
		if ((st = get_int(root, "no_rope_layer_interval", 0, 4, 1, CFG_MAX_LAYERS, &interval, err)) != SFT_OK)
			return st;
		for (int i = 0; i < cfg->n_layers; i++)
			if ((i + 1) % interval == 0)
				cfg->layer_flags[i] |= SFT_LAYER_NOPE;
		return SFT_OK;
	}
	if (!json_object_is_type(v, json_type_array))
		return sft_error(err, SFT_ERR_INVALID, "config.json: \"no_rope_layers\" must be a list of 0/1, not %s",
						 json_type_label(v));
	if ((int) json_object_array_length(v) < cfg->n_layers)
		return sft_error(err, SFT_ERR_INVALID,
						 "config.json: \"no_rope_layers\" has %zu entries, fewer than num_hidden_layers (%d)",
						 json_object_array_length(v), cfg->n_layers);
	for (int i = 0; i < cfg->n_layers; i++)
	{
		json_object *item = json_object_array_get_idx(v, i);
		int			use_rope = 0;

		if (item == NULL || (st = int_value(item, "no_rope_layers", 0, 1, &use_rope, err)) != SFT_OK)
			return item == NULL ? sft_error(err, SFT_ERR_INVALID,
											"config.json: \"no_rope_layers\" element %d must be 0 or 1, not null", i)
				: st;
		if (!use_rope)
			cfg->layer_flags[i] |= SFT_LAYER_NOPE;
	}
	return SFT_OK;
}

/* Gemma 3: layer_types, else every sliding_window_pattern-th layer is global. */
static SftStatus
parse_gemma3_layers(json_object *root, SftLlamaConfig *cfg, SftError *err)
{
	int			given = 0,
				pattern = 6;
	SftStatus	st;
	const char *key = get_present(root, "sliding_window_pattern") ? "sliding_window_pattern"
		: "_sliding_window_pattern";

	if ((st = parse_layer_types(root, cfg, 1, &given, err)) != SFT_OK || given)
		return st;
	if ((st = get_int(root, key, 0, 6, 1, CFG_MAX_LAYERS, &pattern, err)) != SFT_OK)
		return st;
	for (int i = 0; i < cfg->n_layers; i++)
		if ((i + 1) % pattern != 0)
			cfg->layer_flags[i] |= SFT_LAYER_SLIDING;
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Parse
 * ------------------------------------------------------------------------- */

static SftStatus
parse_object(json_object *root, SftLlamaConfig *cfg, SftError *err)
{
	const char *model_type;
	const FamilyInfo *fam = &FAMILIES[0];
	json_object *archs;
	SftStatus	st;
	char		shown[64];
	char		known[160];
	int			given;

	if ((st = get_string(root, "model_type", &model_type, err)) != SFT_OK)
		return st;
	if (model_type != NULL)
	{
		fam = family_by_model_type(model_type);
		if (fam == NULL)
		{
			printable(shown, sizeof(shown), model_type);
			list_model_types(known, sizeof(known));
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "config.json: \"model_type\" \"%s\" is not supported (only %s)",
							 shown, known);
		}
	}
	else if ((archs = get_present(root, "architectures")) != NULL &&
			 json_object_is_type(archs, json_type_array) && json_object_array_length(archs) > 0 &&
			 json_object_is_type(json_object_array_get_idx(archs, 0), json_type_string))
	{
		/* no model_type: the architecture names the family */
		const FamilyInfo *af = family_by_architecture(json_object_get_string(json_object_array_get_idx(archs, 0)));

		if (af != NULL)
			fam = af;
	}
	if ((st = reject_unsupported(root, fam, err)) != SFT_OK)
		return st;

	memset(cfg, 0, sizeof(*cfg));
	cfg->family = fam->family;
	if ((st = get_int(root, "hidden_size", 1, 0, 1, CFG_MAX_DIM, &cfg->hidden_size, err)) ||
		(st = get_int(root, "num_hidden_layers", 1, 0, 1, CFG_MAX_LAYERS, &cfg->n_layers, err)) ||
		(st = get_int(root, "num_attention_heads", 1, 0, 1, CFG_MAX_HEADS, &cfg->n_heads, err)) ||
		(st = get_int(root, "num_key_value_heads", 0, cfg->n_heads, 1, CFG_MAX_HEADS,
					  &cfg->n_kv_heads, err)) ||
		(st = get_int(root, "intermediate_size", 1, 0, 1, CFG_MAX_DIM,
					  &cfg->intermediate_size, err)) ||
		(st = get_int(root, "vocab_size", 1, 0, 1, CFG_MAX_VOCAB, &cfg->vocab_size, err)) ||
		(st = get_int(root, "max_position_embeddings", 0, fam->max_position, 1, CFG_MAX_POSITION,
					  &cfg->max_position, err)))
		return st;
	if (fam->head_dim == 0 && get_present(root, "head_dim") == NULL &&
		cfg->hidden_size % cfg->n_heads != 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "config.json: hidden_size (%d) is not a multiple of num_attention_heads (%d) and head_dim is not given",
						 cfg->hidden_size, cfg->n_heads);
	if ((st = get_int(root, "head_dim", 0, fam->head_dim ? fam->head_dim : cfg->hidden_size / cfg->n_heads,
					  1, CFG_MAX_HEAD_DIM, &cfg->head_dim, err)) ||
		(st = get_float(root, "rms_norm_eps", 1e-6f, &cfg->rms_norm_eps, err)) ||
		(st = get_float(root, "rope_theta", fam->rope_theta, &cfg->rope_theta, err)) ||
		(st = get_bool(root, "tie_word_embeddings", fam->tie_word_embeddings,
					   &cfg->tie_word_embeddings, err)) ||
		(st = get_token_id(root, "bos_token_id", &cfg->bos_token_id, err)) ||
		(st = get_token_id(root, "eos_token_id", &cfg->eos_token_id, err)))
		return st;
	cfg->rope_factor = 1.0f;
	if (fam->family == SFT_FAMILY_GEMMA3)
	{
		cfg->qk_norm = 1;
		if ((st = get_float(root, "rope_local_base_freq", 10000.0f, &cfg->rope_local_theta, err)) ||
			(st = get_float(root, "query_pre_attn_scalar", 256.0f, &cfg->query_pre_attn_scalar, err)) ||
			(st = get_float(root, "final_logit_softcapping", 0.0f, &cfg->final_logit_softcap, err)) ||
			(st = get_int(root, "sliding_window", 0, 4096, 1, CFG_MAX_POSITION, &cfg->sliding_window, err)) ||
			(st = parse_gemma3_layers(root, cfg, err)))
			return st;
		if (get_present(root, "final_logit_softcapping") != NULL && !(cfg->final_logit_softcap > 0.0f))
			return sft_error(err, SFT_ERR_INVALID,
							 "config.json: \"final_logit_softcapping\" = %g must be > 0 or null",
							 (double) cfg->final_logit_softcap);
	}
	else
	{
		cfg->qkv_bias = fam->family == SFT_FAMILY_QWEN2;
		cfg->qk_norm = fam->family == SFT_FAMILY_QWEN3;
		if (fam->family == SFT_FAMILY_SMOLLM3 && (st = parse_nope_layers(root, cfg, err)) != SFT_OK)
			return st;
		if (fam->family != SFT_FAMILY_LLAMA &&
			(st = parse_layer_types(root, cfg, 0, &given, err)) != SFT_OK)
			return st;
	}
	if ((st = parse_rope(root, cfg, err)) != SFT_OK)
		return st;
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

/*
 * config.json is written as transformers writes it: keys sorted, two-space
 * indentation, one list element per line.  Entries are collected as (key,
 * value text) pairs, then sorted and joined.
 */
#define CFG_MAX_ENTRIES 48

typedef struct JsonEntries
{
	int			n;
	const char *key[CFG_MAX_ENTRIES];
	SftBuf		value[CFG_MAX_ENTRIES];
	int			failed;
} JsonEntries;

static SftBuf *
entry(JsonEntries *e, const char *key)
{
	SftBuf	   *b;

	if (e->n >= CFG_MAX_ENTRIES)
	{
		e->failed = 1;
		return NULL;
	}
	e->key[e->n] = key;
	b = &e->value[e->n++];
	sft_buf_init(b);
	return b;
}

static void put(JsonEntries *e, const char *key, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
put(JsonEntries *e, const char *key, const char *fmt,...)
{
	SftBuf	   *b = entry(e, key);
	char		text[256];
	va_list		ap;
	int			n;

	if (b == NULL)
		return;
	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(text) || sft_buf_append(b, text, (size_t) n) != SFT_OK)
		e->failed = 1;
}

static void
put_float(JsonEntries *e, const char *key, float value)
{
	char		text[32];

	format_float(text, sizeof(text), value);
	put(e, key, "%s", text);
}

static void
put_token(JsonEntries *e, const char *key, int id)
{
	if (id >= 0)
		put(e, key, "%d", id);
	else
		put(e, key, "null");
}

/* A list of n items, each item(i) as JSON text, one per line. */
static void
put_list(JsonEntries *e, const char *key, int n, const char *(*item) (const SftLlamaConfig *, int),
		 const SftLlamaConfig *cfg)
{
	SftBuf	   *b = entry(e, key);

	if (b == NULL)
		return;
	if (sft_buf_append(b, "[\n", 2) != SFT_OK)
		e->failed = 1;
	for (int i = 0; i < n && !e->failed; i++)
	{
		const char *s = item(cfg, i);

		if (sft_buf_append(b, "    ", 4) != SFT_OK || sft_buf_append(b, s, strlen(s)) != SFT_OK ||
			sft_buf_append(b, i + 1 < n ? ",\n" : "\n", i + 1 < n ? 2 : 1) != SFT_OK)
			e->failed = 1;
	}
	if (sft_buf_append(b, "  ]", 3) != SFT_OK)
		e->failed = 1;
}

static const char *
item_layer_type(const SftLlamaConfig *cfg, int i)
{
	return cfg->layer_flags[i] & SFT_LAYER_SLIDING ? "\"sliding_attention\"" : "\"full_attention\"";
}

static const char *
item_use_rope(const SftLlamaConfig *cfg, int i)
{
	return cfg->layer_flags[i] & SFT_LAYER_NOPE ? "0" : "1";
}

static const char *
item_architecture(const SftLlamaConfig *cfg, int i)
{
	static char text[64];

	for (int f = 0; f < N_FAMILIES; f++)
		if (FAMILIES[f].family == cfg->family)
		{
			snprintf(text, sizeof(text), "\"%s\"", FAMILIES[f].architecture);
			return text;
		}
	return "null";
}

static void
put_rope_scaling(JsonEntries *e, const SftLlamaConfig *cfg)
{
	char		f[32],
				lo[32],
				hi[32];

	format_float(f, sizeof(f), cfg->rope_factor);
	format_float(lo, sizeof(lo), cfg->rope_low_freq_factor);
	format_float(hi, sizeof(hi), cfg->rope_high_freq_factor);
	if (cfg->rope_type == SFT_ROPE_DEFAULT)
		put(e, "rope_scaling", "null");
	else if (cfg->rope_type == SFT_ROPE_LINEAR)
		put(e, "rope_scaling", "{\n    \"factor\": %s,\n    \"rope_type\": \"linear\"\n  }", f);
	else
		put(e, "rope_scaling",
			"{\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n    \"low_freq_factor\": %s,\n"
			"    \"original_max_position_embeddings\": %d,\n    \"rope_type\": \"llama3\"\n  }",
			f, hi, lo, cfg->rope_original_max_position);
}

SftStatus
sft_llama_config_to_json(const SftLlamaConfig *cfg, SftBuf *out, SftError *err)
{
	JsonEntries e = {0};
	int			order[CFG_MAX_ENTRIES];
	SftFamily	f;
	SftStatus	st = SFT_OK;

	if ((st = sft_llama_config_validate(cfg, err)) != SFT_OK)
		return st;
	f = cfg->family;
	put_list(&e, "architectures", 1, item_architecture, cfg);
	put(&e, "model_type", "\"%s\"", sft_family_model_type(f));
	put(&e, "attention_dropout", "0.0");
	put_token(&e, "bos_token_id", cfg->bos_token_id);
	put_token(&e, "eos_token_id", cfg->eos_token_id);
	put(&e, "head_dim", "%d", cfg->head_dim);
	put(&e, "hidden_size", "%d", cfg->hidden_size);
	put(&e, "initializer_range", "0.02");
	put(&e, "intermediate_size", "%d", cfg->intermediate_size);
	put(&e, "max_position_embeddings", "%d", cfg->max_position);
	put(&e, "num_attention_heads", "%d", cfg->n_heads);
	put(&e, "num_hidden_layers", "%d", cfg->n_layers);
	put(&e, "num_key_value_heads", "%d", cfg->n_kv_heads);
	put_float(&e, "rms_norm_eps", cfg->rms_norm_eps);
	put_rope_scaling(&e, cfg);
	put_float(&e, "rope_theta", cfg->rope_theta);
	put(&e, "tie_word_embeddings", cfg->tie_word_embeddings ? "true" : "false");
	put(&e, "torch_dtype", "\"float32\"");
	put(&e, "use_cache", "true");
	put(&e, "vocab_size", "%d", cfg->vocab_size);
	if (f != SFT_FAMILY_QWEN2)
		put(&e, "attention_bias", "false");
	if (f == SFT_FAMILY_GEMMA3)
	{
		put(&e, "attn_logit_softcapping", "null");
		if (cfg->final_logit_softcap > 0.0f)
			put_float(&e, "final_logit_softcapping", cfg->final_logit_softcap);
		else
			put(&e, "final_logit_softcapping", "null");
		put(&e, "hidden_activation", "\"gelu_pytorch_tanh\"");
		put_list(&e, "layer_types", cfg->n_layers, item_layer_type, cfg);
		put_float(&e, "query_pre_attn_scalar", cfg->query_pre_attn_scalar);
		put_float(&e, "rope_local_base_freq", cfg->rope_local_theta);
		put(&e, "sliding_window", "%d", cfg->sliding_window);
	}
	else
		put(&e, "hidden_act", "\"silu\"");
	if (f == SFT_FAMILY_LLAMA || f == SFT_FAMILY_SMOLLM3)
		put(&e, "mlp_bias", "false");
	if (f == SFT_FAMILY_LLAMA)
		put(&e, "pretraining_tp", "1");
	if (f == SFT_FAMILY_QWEN2 || f == SFT_FAMILY_QWEN3)
		put(&e, "max_window_layers", "%d", cfg->n_layers);
	if (f == SFT_FAMILY_QWEN2 || f == SFT_FAMILY_QWEN3 || f == SFT_FAMILY_SMOLLM3)
	{
		put(&e, "sliding_window", "null");
		put(&e, "use_sliding_window", "false");
	}
	if (f == SFT_FAMILY_SMOLLM3)
		put_list(&e, "no_rope_layers", cfg->n_layers, item_use_rope, cfg);

	if (e.failed)
		st = sft_error(err, SFT_ERR_NOMEM, "out of memory writing config.json");
	/* insertion sort of a few dozen keys */
	for (int i = 0; i < e.n; i++)
	{
		int			j = i;

		for (; j > 0 && strcmp(e.key[order[j - 1]], e.key[i]) > 0; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	if (st == SFT_OK && sft_buf_append(out, "{\n", 2) != SFT_OK)
		st = sft_error(err, SFT_ERR_NOMEM, "out of memory writing config.json");
	for (int i = 0; i < e.n && st == SFT_OK; i++)
	{
		const SftBuf *v = &e.value[order[i]];
		char		head[80];
		int			n = snprintf(head, sizeof(head), "  \"%s\": ", e.key[order[i]]);

		if (sft_buf_append(out, head, (size_t) n) != SFT_OK ||
			sft_buf_append(out, v->data, v->len) != SFT_OK ||
			sft_buf_append(out, i + 1 < e.n ? ",\n" : "\n", i + 1 < e.n ? 2 : 1) != SFT_OK)
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory writing config.json");
	}
	if (st == SFT_OK && sft_buf_append(out, "}\n", 2) != SFT_OK)
		st = sft_error(err, SFT_ERR_NOMEM, "out of memory writing config.json");
	for (int i = 0; i < e.n; i++)
		sft_buf_free(&e.value[i]);
	return st;
}
