/*
 * llama_config.h: the architecture of a decoder-only model of one of the
 * families we compute (Llama, Qwen2, Qwen3, SmolLM3, Gemma 3 text), as
 * Hugging Face's config.json describes it.  Parsed and serialised by
 * llama_config.c; used by the model, the weight formats and the glue.
 */
#ifndef SFT_CORE_LLAMA_CONFIG_H
#define SFT_CORE_LLAMA_CONFIG_H

#include "common.h"

/* The transformers model class the config describes. */
typedef enum SftFamily
{
	SFT_FAMILY_LLAMA = 0,		/* LlamaForCausalLM (and Mistral without a window) */
	SFT_FAMILY_QWEN2,			/* Qwen2ForCausalLM: q/k/v bias */
	SFT_FAMILY_QWEN3,			/* Qwen3ForCausalLM: q/k RMSNorm over head_dim */
	SFT_FAMILY_SMOLLM3,			/* SmolLM3ForCausalLM: NoPE layers */
	SFT_FAMILY_GEMMA3			/* Gemma3ForCausalLM (gemma3_text) */
} SftFamily;

/* How the rotary inverse frequencies are computed (modeling_rope_utils). */
typedef enum SftRopeType
{
	SFT_ROPE_DEFAULT = 0,		/* 1 / theta^(2i/HD) */
	SFT_ROPE_LINEAR,			/* default / factor */
	SFT_ROPE_LLAMA3				/* Llama 3.1's band-wise rescaling */
} SftRopeType;

#define SFT_CONFIG_MAX_LAYERS 1024
#define SFT_CONFIG_MAX_HEAD_DIM 4096

/* layer_flags bits */
#define SFT_LAYER_NOPE 1		/* no rotary embedding (SmolLM3) */
#define SFT_LAYER_SLIDING 2		/* local sliding-window attention (Gemma 3) */

typedef struct SftLlamaConfig
{
	SftFamily	family;
	int			hidden_size;	/* C */
	int			n_layers;		/* L  (num_hidden_layers) */
	int			n_heads;		/* NH (num_attention_heads) */
	int			n_kv_heads;		/* NKV (num_key_value_heads), divides NH */
	int			head_dim;		/* HD = C / NH unless config.json says */
	int			intermediate_size;	/* F (SwiGLU width) */
	int			vocab_size;		/* V */
	int			max_position;	/* max_position_embeddings */
	float		rms_norm_eps;
	float		rope_theta;
	int			tie_word_embeddings;	/* 1: lm_head shares embed_tokens */
	int			bos_token_id;	/* -1 when absent */
	int			eos_token_id;	/* -1 when absent */

	/* rotary scaling of the (global) layers: rope_scaling / rope_parameters */
	SftRopeType rope_type;
	float		rope_factor;	/* linear, llama3 */
	float		rope_low_freq_factor;	/* llama3 */
	float		rope_high_freq_factor;	/* llama3 */
	int			rope_original_max_position;	/* llama3 */

	int			qkv_bias;		/* 1: q_proj, k_proj, v_proj have a bias (Qwen2) */
	int			qk_norm;		/* 1: q_norm, k_norm over head_dim (Qwen3, Gemma 3) */

	/* Gemma 3 */
	int			sliding_window; /* keys a local layer's query sees; 0: none */
	float		rope_local_theta;	/* rope base of the local layers */
	float		query_pre_attn_scalar;	/* attention scale = this^-1/2 */
	float		final_logit_softcap;	/* 0: none; logits = cap tanh(logits / cap) */

	uint8_t		layer_flags[SFT_CONFIG_MAX_LAYERS];	/* SFT_LAYER_* per layer */
} SftLlamaConfig;

/* The family's name as in config.json's model_type ("llama", "qwen2", ...). */
const char *sft_family_model_type(SftFamily family);

/* Floats of the parameter slab the config implies (64-bit; tensors in model.c). */
uint64_t	sft_llama_config_num_params(const SftLlamaConfig *cfg);

/* Attention score scale of the config: HD^-1/2, or query_pre_attn_scalar^-1/2. */
float		sft_llama_config_attn_scale(const SftLlamaConfig *cfg);

/*
 * Parse config.json text (transformers 4.x and 5.x dialects).  Fields we do
 * not implement (a rope type other than default/linear/llama3, an active
 * sliding window outside Gemma 3, attention_bias/mlp_bias true, another
 * activation, another model_type ...) are rejected by name with
 * SFT_ERR_UNSUPPORTED, never ignored.
 */
SftStatus	sft_llama_config_parse(const char *json, size_t len,
								   SftLlamaConfig *out, SftError *err);

/* Consistency checks (positive sizes, NH % NKV == 0, ...). */
SftStatus	sft_llama_config_validate(const SftLlamaConfig *cfg, SftError *err);

/* config.json text for HF (architectures, the family's model_type, ...). */
SftStatus	sft_llama_config_to_json(const SftLlamaConfig *cfg, SftBuf *out,
									 SftError *err);

#endif							/* SFT_CORE_LLAMA_CONFIG_H */
