/*
 * model_internal.h: the parts of the model that model.c, decoder.c and the
 * core's tests share but the rest of the project does not need.
 *
 * Parameter slab layout (offsets in floats, dense, in this order; the tensor
 * table lists the same order with HF names and shapes):
 *
 *   model.embed_tokens.weight                      [V, C]
 *   for l in 0..L-1:
 *     model.layers.l.input_layernorm.weight        [C]
 *     model.layers.l.self_attn.q_proj.weight       [NH*HD, C]  \
 *     model.layers.l.self_attn.k_proj.weight       [NKV*HD, C]  } contiguous: one
 *     model.layers.l.self_attn.v_proj.weight       [NKV*HD, C] /  [QKV, C] matrix
 *     model.layers.l.self_attn.{q,k,v}_proj.bias   [NH*HD], [NKV*HD] x 2 (Qwen2;
 *                                                  contiguous: one [QKV] vector)
 *     model.layers.l.self_attn.q_norm.weight       [HD]  (Qwen3, Gemma 3)
 *     model.layers.l.self_attn.k_norm.weight       [HD]  (Qwen3, Gemma 3)
 *     model.layers.l.self_attn.o_proj.weight       [C, NH*HD]
 *     model.layers.l.post_attention_layernorm.weight [C]  (Gemma 3: attn_post_norm)
 *     model.layers.l.post_attention_layernorm.weight [C]  (others: mlp_norm)
 *     model.layers.l.pre_feedforward_layernorm.weight [C] (Gemma 3: mlp_norm)
 *     model.layers.l.mlp.gate_proj.weight          [F, C]  \ contiguous: one
 *     model.layers.l.mlp.up_proj.weight            [F, C]  / [2F, C] matrix
 *     model.layers.l.mlp.down_proj.weight          [C, F]
 *     model.layers.l.post_feedforward_layernorm.weight [C] (Gemma 3: mlp_post_norm)
 *   model.norm.weight                              [C]
 *   lm_head.weight                                 [V, C]  (untied only)
 *
 * Tensor names live in layout_model (model.c) and nowhere else: weight
 * formats look tensors up in the table.  Gemma's post_attention_layernorm
 * normalises the attention output, Llama's the MLP input: same name, not the
 * same role, hence the role names above.
 *
 * q, k and v (and gate and up) sit back to back so that one sgemm computes
 * all three projections: the rows of the stacked matrix are the output
 * features q | k | v, exactly as if HF had one fused linear layer.
 * Gradients and AdamW moments use the same offsets in their own slabs.
 */
#ifndef SFT_CORE_MODEL_INTERNAL_H
#define SFT_CORE_MODEL_INTERNAL_H

#include "model.h"

/* Offsets (in floats) of one layer's tensors inside a parameter-shaped slab. */
/* Offsets (in floats); a tensor the family does not have is at SFT_NO_TENSOR. */
#define SFT_NO_TENSOR ((size_t) -1)

typedef struct SftLayerOffsets
{
	size_t		attn_norm;		/* [C] */
	size_t		wqkv;			/* [QKV = (NH + 2 NKV) HD, C] q_proj, k_proj, v_proj */
	size_t		bqkv;			/* [QKV] their biases (Qwen2) */
	size_t		q_norm;			/* [HD] (Qwen3, Gemma 3) */
	size_t		k_norm;			/* [HD] */
	size_t		wo;				/* [C, NH HD] */
	size_t		attn_post_norm;	/* [C] (Gemma 3) */
	size_t		mlp_norm;		/* [C] */
	size_t		wgu;			/* [2F, C] gate_proj then up_proj */
	size_t		wdown;			/* [C, F] */
	size_t		mlp_post_norm;	/* [C] (Gemma 3) */
} SftLayerOffsets;

/* Pointers into one parameter-shaped slab (parameters or gradients); NULL when absent. */
typedef struct SftLayerPtrs
{
	float	   *attn_norm;		/* [C] */
	float	   *wqkv;			/* [QKV, C] */
	float	   *bqkv;			/* [QKV] */
	float	   *q_norm;			/* [HD] */
	float	   *k_norm;			/* [HD] */
	float	   *wo;				/* [C, NH HD] */
	float	   *attn_post_norm;	/* [C] */
	float	   *mlp_norm;		/* [C] */
	float	   *wgu;			/* [2F, C] */
	float	   *wdown;			/* [C, F] */
	float	   *mlp_post_norm;	/* [C] */
} SftLayerPtrs;

/*
 * What a family computes beyond Llama, derived once from the config: the
 * model code branches on these, never on the family.
 */
typedef struct SftArch
{
	float		embed_scale;	/* x = embed * this (Gemma: sqrt(C) in fp32; else 1) */
	float		norm_offset;	/* RMSNorm weight offset (Gemma: 1, x * (1 + w)) */
	int			geglu;			/* 1: gelu_tanh(gate) * up, 0: silu(gate) * up */
	int			sandwich;		/* 1: post-attention and post-MLP norms (Gemma) */
	float		attn_scale;		/* score scale */
	float		softcap;		/* final logit softcapping, 0: none */
} SftArch;

struct SftModel
{
	SftLlamaConfig cfg;
	SftArch		arch;
	float	   *params;			/* [n_params] the slab */
	size_t		n_params;
	size_t		embed;			/* offset of embed_tokens [V, C] */
	size_t		final_norm;		/* offset of model.norm [C] */
	size_t		lm_head;		/* offset of lm_head [V, C]; == embed when tied */
	SftLayerOffsets *layers;	/* [L] */
	int			n_tensors;
	SftParamTensor *tensors;	/* [n_tensors] slab order */
};

static inline SftLayerPtrs
sft_layer_ptrs(const SftModel *model, float *slab, int l)
{
	const SftLayerOffsets *o = &model->layers[l];
	SftLayerPtrs p;

#define SFT_AT(off) ((off) == SFT_NO_TENSOR ? NULL : slab + (off))
	p.attn_norm = SFT_AT(o->attn_norm);
	p.wqkv = SFT_AT(o->wqkv);
	p.bqkv = SFT_AT(o->bqkv);
	p.q_norm = SFT_AT(o->q_norm);
	p.k_norm = SFT_AT(o->k_norm);
	p.wo = SFT_AT(o->wo);
	p.attn_post_norm = SFT_AT(o->attn_post_norm);
	p.mlp_norm = SFT_AT(o->mlp_norm);
	p.wgu = SFT_AT(o->wgu);
	p.wdown = SFT_AT(o->wdown);
	p.mlp_post_norm = SFT_AT(o->mlp_post_norm);
#undef SFT_AT
	return p;
}

/* Checks the sizes the model code relies on (and that products fit). */
SftStatus	sft_model_check_config(const SftLlamaConfig *cfg, SftError *err);

/*
 * RoPE inverse frequencies [HD/2] as transformers computes them in fp32:
 * default 1 / theta^(2i/HD), linear (/ factor) or llama3 scaling of the
 * global layers; local = 1 for Gemma 3's sliding layers (default type, base
 * rope_local_base_freq).
 */
void		sft_rope_inv_freq(float *inv_freq, const SftLlamaConfig *cfg, int local);

/* cos/sin [n_pos, HD/2] of angle = pos * inv_freq[i] (fp32 product). */
void		sft_rope_tables(float *cos_tab, float *sin_tab, int n_pos, int head_dim,
							const float *inv_freq);

/* A layer's attention: rotary tables to use (NULL: NoPE) and window. */
static inline int
sft_layer_uses_rope(const SftLlamaConfig *c, int l)
{
	return !(c->layer_flags[l] & SFT_LAYER_NOPE);
}

static inline int
sft_layer_window(const SftLlamaConfig *c, int l)
{
	return c->layer_flags[l] & SFT_LAYER_SLIDING ? c->sliding_window : 0;
}

/* 1 when some layer is local (needs the second rope table). */
static inline int
sft_config_has_local_layers(const SftLlamaConfig *c)
{
	for (int l = 0; l < c->n_layers; l++)
		if (c->layer_flags[l] & SFT_LAYER_SLIDING)
			return 1;
	return 0;
}

#endif							/* SFT_CORE_MODEL_INTERNAL_H */
