/*
 * model.c: the Llama-architecture model (parameter slab and its tensor
 * table) and the trainer: forward, backward and the optimizer step over
 * packed micro-batches.
 *
 * The model computes what Hugging Face's LlamaForCausalLM computes:
 *
 *   x = embed_tokens[tokens]
 *   for each layer:
 *     h  = rmsnorm(x) * attn_norm          (fp32: x * rsqrt(mean(x^2) + eps))
 *     q, k, v = h Wq^T, h Wk^T, h Wv^T     (one sgemm over the stacked [QKV, C])
 *     q, k = rope(q), rope(k)              (HF rotate_half layout)
 *     a  = softmax(q k^T / sqrt(HD) + causal) v   per head, GQA: head h uses
 *                                          kv head h / (NH / NKV)
 *     x  = x + dropout(a Wo^T)
 *     h  = rmsnorm(x) * mlp_norm
 *     x  = x + dropout(down(silu(gate(h)) * up(h)))
 *   logits = rmsnorm(x) * norm  @ lm_head^T   (lm_head = embed_tokens if tied)
 *
 * Packing.  A micro-batch is n_seqs sequences laid back to back in T tokens
 * with no padding.  Positions restart at 0 for each sequence and attention
 * runs per sequence, so nothing crosses a boundary; every per-token op (norms,
 * projections, MLP) is one big [T, .] matrix op over all sequences at once.
 *
 * Loss.  Token t of a sequence is a target when mask[t] = 1 and t is not the
 * sequence's first token; it is predicted by the row at t - 1.  Only those
 * rows go through the final norm and the LM head (gathered into [N, C], one
 * sgemm to [N, V]), so the vocabulary-sized work scales with the number of
 * targets, not with T.  The loss is the SUM of -log p over targets;
 * sft_trainer_step divides by the step's total target count, so k
 * micro-batches accumulate exactly like one batch k times larger.
 *
 * Memory.  The activations the backward pass needs are saved per layer in one
 * slab sized for max_tokens (see TrainActs).  Cheap things are recomputed in
 * the backward pass instead of being stored: the normed inputs of each block
 * (from the saved residual and 1/rms), silu(gate) * up (from gate and up), and
 * the attention probabilities (from q, k and the saved row log-sum-exp, as
 * flash attention does), so activation memory is linear in T.
 */
#include "model_internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Configuration checks
 * ------------------------------------------------------------------------- */

/* Generous bounds that keep every size product far from overflow. */
#define SFT_MAX_DIM (1 << 20)
#define SFT_MAX_LAYERS 1024
#define SFT_MAX_PARAMS ((uint64_t) 1 << 36)

SftStatus
sft_model_check_config(const SftLlamaConfig *cfg, SftError *err)
{
	if (cfg == NULL)
		return sft_error(err, SFT_ERR_INVALID, "model config is missing");
#define CHECK_DIM(field, max) \
	if (cfg->field <= 0 || cfg->field > (max)) \
		return sft_error(err, SFT_ERR_INVALID, "config " #field " = %d is out of range (1..%d)", \
						 cfg->field, (int) (max))
	CHECK_DIM(hidden_size, SFT_MAX_DIM);
	CHECK_DIM(n_layers, SFT_MAX_LAYERS);
	CHECK_DIM(n_heads, 4096);
	CHECK_DIM(n_kv_heads, 4096);
	CHECK_DIM(head_dim, 4096);
	CHECK_DIM(intermediate_size, SFT_MAX_DIM);
	CHECK_DIM(vocab_size, 16 * SFT_MAX_DIM);
	CHECK_DIM(max_position, 16 * SFT_MAX_DIM);
#undef CHECK_DIM
	if (cfg->n_heads % cfg->n_kv_heads != 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
						 cfg->n_heads, cfg->n_kv_heads);
	if (cfg->head_dim % 2 != 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "head_dim (%d) must be even for rotary embeddings", cfg->head_dim);
	if ((int64_t) cfg->n_heads * cfg->head_dim > SFT_MAX_DIM)
		return sft_error(err, SFT_ERR_INVALID, "num_attention_heads * head_dim is too large");
	if (!(cfg->rms_norm_eps >= 0.0f) || !isfinite(cfg->rms_norm_eps))
		return sft_error(err, SFT_ERR_INVALID, "rms_norm_eps must be a finite number >= 0");
	if (!(cfg->rope_theta > 0.0f) || !isfinite(cfg->rope_theta))
		return sft_error(err, SFT_ERR_INVALID, "rope_theta must be a finite number > 0");
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Model: parameter slab and tensor table
 * ------------------------------------------------------------------------- */

static void
set_tensor(SftParamTensor *t, const char *name, int ndim, int64_t d0, int64_t d1,
		   size_t offset, int weight_decay)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = ndim == 2 ? d1 : 0;
	t->numel = (size_t) d0 * (ndim == 2 ? (size_t) d1 : 1);
	t->offset = offset;
	t->weight_decay = weight_decay;
}

/*
 * Lay the tensors out (see model_internal.h); with model->tensors NULL only
 * count.  Returns the number of floats.
 */
static uint64_t
layout_model(SftModel *model)
{
	const SftLlamaConfig *c = &model->cfg;
	uint64_t	C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
	uint64_t	QH = (uint64_t) c->n_heads * c->head_dim;
	uint64_t	KVH = (uint64_t) c->n_kv_heads * c->head_dim;
	uint64_t	off = 0;
	int			n = 0;
	SftParamTensor *t = model->tensors;
	char		name[SFT_TENSOR_NAME_MAX];

#define ADD(nm, ndim, d0, d1, wd) do { \
		if (t) set_tensor(&t[n], (nm), (ndim), (int64_t) (d0), (int64_t) (d1), off, (wd)); \
		n++; off += (uint64_t) (d0) * ((ndim) == 2 ? (uint64_t) (d1) : 1); \
	} while (0)

	model->embed = off;
	ADD("model.embed_tokens.weight", 2, V, C, 1);
	for (int l = 0; l < c->n_layers; l++)
	{
		SftLayerOffsets *lo = model->layers ? &model->layers[l] : NULL;

#define LNAME(suffix) (snprintf(name, sizeof(name), "model.layers.%d.%s", l, suffix), name)
		if (lo)
			lo->attn_norm = off;
		ADD(LNAME("input_layernorm.weight"), 1, C, 0, 0);
		if (lo)
			lo->wqkv = off;
		ADD(LNAME("self_attn.q_proj.weight"), 2, QH, C, 1);
		ADD(LNAME("self_attn.k_proj.weight"), 2, KVH, C, 1);
		ADD(LNAME("self_attn.v_proj.weight"), 2, KVH, C, 1);
		if (lo)
			lo->wo = off;
		ADD(LNAME("self_attn.o_proj.weight"), 2, C, QH, 1);
		if (lo)
			lo->mlp_norm = off;
		ADD(LNAME("post_attention_layernorm.weight"), 1, C, 0, 0);
		if (lo)
			lo->wgu = off;
		ADD(LNAME("mlp.gate_proj.weight"), 2, F, C, 1);
		ADD(LNAME("mlp.up_proj.weight"), 2, F, C, 1);
		if (lo)
			lo->wdown = off;
		ADD(LNAME("mlp.down_proj.weight"), 2, C, F, 1);
#undef LNAME
	}
	model->final_norm = off;
	ADD("model.norm.weight", 1, C, 0, 0);
	if (c->tie_word_embeddings)
		model->lm_head = model->embed;
	else
	{
		model->lm_head = off;
		ADD("lm_head.weight", 2, V, C, 1);
	}
#undef ADD
	model->n_tensors = n;
	return off;
}

SftStatus
sft_model_new(const SftLlamaConfig *cfg, SftModel **out, SftError *err)
{
	SftModel   *model;
	uint64_t	n_params;
	SftStatus	st;

	*out = NULL;
	if ((st = sft_model_check_config(cfg, err)) != SFT_OK)
		return st;
	model = sft_calloc(1, sizeof(SftModel));
	if (model == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for the model");
	model->cfg = *cfg;
	model->cfg.tie_word_embeddings = cfg->tie_word_embeddings ? 1 : 0;

	/* First pass counts tensors and floats, second fills the tables. */
	n_params = layout_model(model);
	if (n_params > SFT_MAX_PARAMS)
	{
		sft_free(model);
		return sft_error(err, SFT_ERR_LIMIT, "model has too many parameters (%llu)",
						 (unsigned long long) n_params);
	}
	model->n_params = (size_t) n_params;
	model->layers = sft_calloc(cfg->n_layers, sizeof(SftLayerOffsets));
	model->tensors = sft_calloc(model->n_tensors, sizeof(SftParamTensor));
	model->params = sft_calloc(model->n_params, sizeof(float));
	if (model->layers == NULL || model->tensors == NULL || model->params == NULL)
	{
		sft_model_free(model);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for %zu model parameters",
						 (size_t) n_params);
	}
	layout_model(model);
	*out = model;
	return SFT_OK;
}

void
sft_model_free(SftModel *model)
{
	if (model == NULL)
		return;
	sft_free(model->params);
	sft_free(model->tensors);
	sft_free(model->layers);
	sft_free(model);
}

void
sft_model_init_random(SftModel *model, uint64_t seed)
{
	SftRng		rng;

	sft_rng_seed(&rng, seed);
	for (int i = 0; i < model->n_tensors; i++)
	{
		const SftParamTensor *t = &model->tensors[i];
		float	   *p = model->params + t->offset;

		if (t->ndim == 1)
			for (size_t j = 0; j < t->numel; j++)
				p[j] = 1.0f;
		else
			for (size_t j = 0; j < t->numel; j++)
				p[j] = 0.02f * sft_rng_normal(&rng);
	}
}

const SftLlamaConfig *
sft_model_config(const SftModel *model)
{
	return &model->cfg;
}

float *
sft_model_params(SftModel *model)
{
	return model->params;
}

size_t
sft_model_num_params(const SftModel *model)
{
	return model->n_params;
}

int
sft_model_tensor_count(const SftModel *model)
{
	return model->n_tensors;
}

const SftParamTensor *
sft_model_tensor(const SftModel *model, int i)
{
	if (i < 0 || i >= model->n_tensors)
		return NULL;
	return &model->tensors[i];
}

const SftParamTensor *
sft_model_find_tensor(const SftModel *model, const char *hf_name)
{
	for (int i = 0; i < model->n_tensors; i++)
		if (strcmp(model->tensors[i].name, hf_name) == 0)
			return &model->tensors[i];
	return NULL;
}
