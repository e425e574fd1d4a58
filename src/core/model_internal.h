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
 *     model.layers.l.self_attn.o_proj.weight       [C, NH*HD]
 *     model.layers.l.post_attention_layernorm.weight [C]
 *     model.layers.l.mlp.gate_proj.weight          [F, C]  \ contiguous: one
 *     model.layers.l.mlp.up_proj.weight            [F, C]  / [2F, C] matrix
 *     model.layers.l.mlp.down_proj.weight          [C, F]
 *   model.norm.weight                              [C]
 *   lm_head.weight                                 [V, C]  (untied only)
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
typedef struct SftLayerOffsets
{
	size_t		attn_norm;		/* [C] */
	size_t		wqkv;			/* [QKV = (NH + 2 NKV) HD, C] q_proj, k_proj, v_proj */
	size_t		wo;				/* [C, NH HD] */
	size_t		mlp_norm;		/* [C] */
	size_t		wgu;			/* [2F, C] gate_proj then up_proj */
	size_t		wdown;			/* [C, F] */
} SftLayerOffsets;

/* Pointers into one parameter-shaped slab (parameters or gradients). */
typedef struct SftLayerPtrs
{
	float	   *attn_norm;		/* [C] */
	float	   *wqkv;			/* [QKV, C] */
	float	   *wo;				/* [C, NH HD] */
	float	   *mlp_norm;		/* [C] */
	float	   *wgu;			/* [2F, C] */
	float	   *wdown;			/* [C, F] */
} SftLayerPtrs;

struct SftModel
{
	SftLlamaConfig cfg;
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

	p.attn_norm = slab + o->attn_norm;
	p.wqkv = slab + o->wqkv;
	p.wo = slab + o->wo;
	p.mlp_norm = slab + o->mlp_norm;
	p.wgu = slab + o->wgu;
	p.wdown = slab + o->wdown;
	return p;
}

/* Checks the sizes the model code relies on (and that products fit). */
SftStatus	sft_model_check_config(const SftLlamaConfig *cfg, SftError *err);

/*
 * RoPE tables as HF computes them in fp32: inv_freq[i] = 1 / theta^(2i/HD),
 * angle = pos * inv_freq[i] (fp32 product), cos/sin [n_pos, HD/2].
 */
void		sft_rope_tables(float *cos_tab, float *sin_tab, int n_pos, int head_dim,
							float theta);

#endif							/* SFT_CORE_MODEL_INTERNAL_H */
