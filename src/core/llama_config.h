/*
 * llama_config.h: the architecture of a Llama-family model, as Hugging Face's
 * config.json describes it for LlamaForCausalLM.  Parsed and serialised by
 * llama_config.c; used by the model, the weight formats and the glue.
 */
#ifndef SFT_CORE_LLAMA_CONFIG_H
#define SFT_CORE_LLAMA_CONFIG_H

#include "common.h"

typedef struct SftLlamaConfig
{
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
} SftLlamaConfig;

/*
 * Parse config.json text.  Fields we do not implement (rope_scaling of a type
 * other than null, attention_bias/mlp_bias true, hidden_act other than silu,
 * model_type other than llama/mistral-without-sliding-window ...) are rejected
 * by name with SFT_ERR_UNSUPPORTED, never ignored.
 */
SftStatus	sft_llama_config_parse(const char *json, size_t len,
								   SftLlamaConfig *out, SftError *err);

/* Consistency checks (positive sizes, NH % NKV == 0, ...). */
SftStatus	sft_llama_config_validate(const SftLlamaConfig *cfg, SftError *err);

/* config.json text for HF (architectures, model_type "llama", ...). */
SftStatus	sft_llama_config_to_json(const SftLlamaConfig *cfg, SftBuf *out,
									 SftError *err);

#endif							/* SFT_CORE_LLAMA_CONFIG_H */
