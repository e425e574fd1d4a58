/*
 * model.c: the Llama-architecture model (parameter slab and its tensor
 * table) and the trainer: forward, backward and the optimizer step over
 * packed micro-batches.
 *
 * The model computes what Hugging Face's LlamaForCausalLM computes, with
 * the differences of the other families in brackets (SftArch and the
 * config's per-layer flags select them):
 *
 *   x = embed_tokens[tokens]               [Gemma: * sqrt(C) in fp32]
 *   for each layer:
 *     h  = rmsnorm(x) * attn_norm          (fp32: x * rsqrt(mean(x^2) + eps))
 *                                          [Gemma: every norm is * (1 + w)]
 *     q, k, v = h Wq^T, h Wk^T, h Wv^T     (one sgemm over the stacked [QKV, C])
 *                                          [Qwen2: + bq, bk, bv]
 *     q, k = rmsnorm_HD(q) * q_norm, ...   [Qwen3, Gemma: per head, over HD]
 *     q, k = rope(q), rope(k)              (HF rotate_half layout)
 *                                          [SmolLM3 NoPE layers: none;
 *                                          Gemma local layers: their own base]
 *     a  = softmax(q k^T scale + causal) v per head, GQA: head h uses
 *                                          kv head h / (NH / NKV); scale
 *                                          HD^-1/2 [Gemma: query_pre_attn_
 *                                          scalar^-1/2; local layers also see
 *                                          only the last sliding_window keys]
 *     x  = x + dropout(a Wo^T)             [Gemma: rmsnorm(a Wo^T) first]
 *     h  = rmsnorm(x) * mlp_norm
 *     x  = x + dropout(down(silu(gate(h)) * up(h)))
 *                                          [Gemma: gelu_tanh, and rmsnorm of
 *                                          down(...) before the add]
 *   logits = rmsnorm(x) * norm  @ lm_head^T   (lm_head = embed_tokens if tied)
 *                                          [Gemma: cap tanh(logits / cap)]
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
#include "lora_adapter.h"
#include "kernels.h"
#include "optim.h"
#include "threadpool.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

static SftArch
arch_of(const SftLlamaConfig *c)
{
	SftArch		a = {.embed_scale = 1.0f, .norm_offset = 0.0f};
	int			gemma = c->family == SFT_FAMILY_GEMMA3;

	/* Gemma3TextScaledWordEmbedding: hidden_size ** 0.5 as an fp32 buffer */
	if (gemma)
		a.embed_scale = (float) sqrt((double) c->hidden_size);
	a.norm_offset = gemma ? 1.0f : 0.0f;
	a.geglu = gemma;
	a.sandwich = gemma;
	a.attn_scale = sft_llama_config_attn_scale(c);
	a.softcap = c->final_logit_softcap;
	return a;
}

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
		SftLayerOffsets dummy,
				   *lo = model->layers ? &model->layers[l] : &dummy;
		int			gemma = c->family == SFT_FAMILY_GEMMA3;

#define LNAME(suffix) (snprintf(name, sizeof(name), "model.layers.%d.%s", l, suffix), name)
		lo->bqkv = lo->q_norm = lo->k_norm = SFT_NO_TENSOR;
		lo->attn_post_norm = lo->mlp_post_norm = SFT_NO_TENSOR;
		lo->attn_norm = off;
		ADD(LNAME("input_layernorm.weight"), 1, C, 0, 0);
		lo->wqkv = off;
		ADD(LNAME("self_attn.q_proj.weight"), 2, QH, C, 1);
		ADD(LNAME("self_attn.k_proj.weight"), 2, KVH, C, 1);
		ADD(LNAME("self_attn.v_proj.weight"), 2, KVH, C, 1);
		if (c->qkv_bias)
		{
			lo->bqkv = off;
			ADD(LNAME("self_attn.q_proj.bias"), 1, QH, 0, 0);
			ADD(LNAME("self_attn.k_proj.bias"), 1, KVH, 0, 0);
			ADD(LNAME("self_attn.v_proj.bias"), 1, KVH, 0, 0);
		}
		if (c->qk_norm)
		{
			lo->q_norm = off;
			ADD(LNAME("self_attn.q_norm.weight"), 1, c->head_dim, 0, 0);
			lo->k_norm = off;
			ADD(LNAME("self_attn.k_norm.weight"), 1, c->head_dim, 0, 0);
		}
		lo->wo = off;
		ADD(LNAME("self_attn.o_proj.weight"), 2, C, QH, 1);
		if (gemma)
		{
			lo->attn_post_norm = off;
			ADD(LNAME("post_attention_layernorm.weight"), 1, C, 0, 0);
			lo->mlp_norm = off;
			ADD(LNAME("pre_feedforward_layernorm.weight"), 1, C, 0, 0);
		}
		else
		{
			lo->mlp_norm = off;
			ADD(LNAME("post_attention_layernorm.weight"), 1, C, 0, 0);
		}
		lo->wgu = off;
		ADD(LNAME("mlp.gate_proj.weight"), 2, F, C, 1);
		ADD(LNAME("mlp.up_proj.weight"), 2, F, C, 1);
		lo->wdown = off;
		ADD(LNAME("mlp.down_proj.weight"), 2, C, F, 1);
		if (gemma)
		{
			lo->mlp_post_norm = off;
			ADD(LNAME("post_feedforward_layernorm.weight"), 1, C, 0, 0);
		}
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
	model->arch = arch_of(cfg);

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

		size_t		nl = strlen(t->name);

		if (t->ndim == 1)
		{
			/* biases 0; norm weights 1, or 0 where the norm multiplies by 1 + w */
			float		v = (nl > 5 && strcmp(t->name + nl - 5, ".bias") == 0) ? 0.0f
				: 1.0f - model->arch.norm_offset;

			for (size_t j = 0; j < t->numel; j++)
				p[j] = v;
		}
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

/* ---------------------------------------------------------------------------
 * RoPE tables
 * ------------------------------------------------------------------------- */

void
sft_rope_inv_freq(float *inv_freq, const SftLlamaConfig *c, int local)
{
	int			half = c->head_dim / 2;
	float		theta = local ? c->rope_local_theta : c->rope_theta;
	SftRopeType type = local ? SFT_ROPE_DEFAULT : c->rope_type;

	for (int i = 0; i < half; i++)
	{
		/* HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all fp32 */
		float		expo = (float) (2 * i) / (float) c->head_dim;
		float		f = 1.0f / powf(theta, expo);

		if (type == SFT_ROPE_LINEAR)
			f = f / c->rope_factor;
		else if (type == SFT_ROPE_LLAMA3)
		{
			/*
			 * _compute_llama3_parameters, in fp32 as torch does it: long
			 * wavelengths divided by factor, short ones kept, the band
			 * between interpolated by smooth_factor.
			 */
			float		factor = c->rope_factor;
			float		lo = c->rope_low_freq_factor,
						hi = c->rope_high_freq_factor;
			float		old_len = (float) c->rope_original_max_position;
			float		low_wavelen = (float) ((double) c->rope_original_max_position / (double) lo);
			float		high_wavelen = (float) ((double) c->rope_original_max_position / (double) hi);
			float		wavelen = (float) (2.0 * M_PI) / f;
			float		scaled = wavelen > low_wavelen ? f / factor : f;
			float		smooth = (old_len / wavelen - lo) / (float) ((double) hi - (double) lo);
			float		smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;

			f = (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) ? smoothed : scaled;
		}
		inv_freq[i] = f;
	}
}

void
sft_rope_tables(float *cos_tab, float *sin_tab, int n_pos, int head_dim, const float *inv_freq)
{
	int			half = head_dim / 2;

	for (int i = 0; i < half; i++)
	{
		for (int p = 0; p < n_pos; p++)
		{
			float		angle = (float) p * inv_freq[i];

			cos_tab[(size_t) p * half + i] = cosf(angle);
			sin_tab[(size_t) p * half + i] = sinf(angle);
		}
	}
}

/* ---------------------------------------------------------------------------
 * Trainer
 *
 * Buffers (T = max_tokens, QKV = (NH + 2 NKV) HD, QH = NH HD, R = LM-head rows
 * per chunk, min(T, lm_head_rows(V)): 512, fewer when 512 rows of V logits
 * would pass SFT_LM_HEAD_FLOATS, as for Gemma's 262,144-entry vocabulary):
 *
 *   grads, adam_m, adam_v   [n_params] each, same layout as the parameters
 *   acts slab, per layer l (saved for backward):
 *     res_in   [T, C]    input of the layer (residual stream)
 *     rstd1    [T]       1/rms of res_in
 *     qkv      [T, QKV]  q and k after RoPE, v
 *     lse      [T, NH]   attention softmax log-sum-exp per row and head
 *     att      [T, QH]   attention output (input of o_proj)
 *     res_mid  [T, C]    residual after the attention block
 *     rstd2    [T]       1/rms of res_mid
 *     gu       [T, 2F]   gate | up projections (pre-activation)
 *     qk_raw   [T, QKH]  q | k before their norms (q/k norm only; QKH = (NH + NKV) HD)
 *     rstd_qk  [T, NH + NKV] their 1/rms per head (q/k norm only)
 *     ao, mo   [T, C]    o_proj and down_proj outputs before their norms (Gemma)
 *     rstd3, rstd4 [T]   their 1/rms (Gemma)
 *   then, shared by all layers:
 *     res_final [T, C]   output of the last layer
 *     xg       [T, C]    rows of res_final that predict a target (gathered)
 *     rstdf    [T]       their 1/rms
 *     xf       [T, C]    their final-normed values (LM-head input)
 *     dxf      [T, C]    gradient of xf
 *     logits   [R, V]    one chunk of LM-head rows: logits -> probs -> dlogits
 *     xn       [T, C]    normed block input (recomputed in backward)
 *     h        [T, F]    silu(gate) * up (recomputed in backward)
 *     proj     [T, C]    o_proj / down_proj output before dropout
 *     dres     [T, C]    gradient of the residual stream
 *     dproj    [T, C]    gradient of proj (through dropout)
 *     dxn      [T, C]
 *     dh       [T, F]
 *     dgu      [T, 2F]
 *     datt     [T, QH]
 *     dqkv     [T, QKV]
 *     dqk      [T, QKH]  gradient of the normed q | k (q/k norm only)
 *     dpost    [T, C]    gradient of ao or mo (Gemma)
 *     ce_scratch [P, V]  tanh of the softcapped logits of one row (softcap only)
 *     attn_scratch [P, attention_scratch_floats(T, NH / NKV, HD)] one per thread
 *     dkv_part [2, T, 2 NKV HD] the k|v gradient in two halves (see Threads)
 *     cos, sin [NP, HD/2] RoPE tables, NP = min(T, max_position)
 *     cos_loc, sin_loc [NP, HD/2] the local layers' tables (Gemma)
 *   keep slab (only with dropout): [L, 2, T, C] bytes, the dropout draws
 *   index slab (int32): pos [T], tgt_row [T], tgt_id [T], attention tasks
 *     [max_tasks, 4] (sequence start, length, kv head, first row or half)
 * (P = threads of the trainer's pool.)
 *
 * Threads.  The projections are few large sgemms that OpenBLAS threads
 * well.  Attention is hundreds of small products per layer, which OpenBLAS
 * threads poorly, and every one of them is a barrier of its threads, which
 * a busy machine turns into a stall each time it deschedules one of them.
 * So attention runs as tasks of (sequence, kv head, block of query rows)
 * that the trainer's own pool (threadpool.h) takes one at a time, each task
 * calling single-threaded BLAS (openblas_set_num_threads(1) around the
 * phase, restored after).  Forward tasks are (sequence, kv head, block of
 * query rows); their outputs are disjoint.  In the backward pass all blocks
 * of a kv head add into the same k and v gradient rows, so a task is
 * (sequence, kv head, half): half 0 takes blocks 0, 3, 4, 7, 8 ... and half
 * 1 blocks 1, 2, 5, 6 ... (equal work, as block costs grow linearly), each
 * half adds into its own dkv_part, and the two are summed in a fixed order.
 * The element-wise kernels between the products (norms, RoPE, SwiGLU,
 * residual adds, the LM head's softmax) run on the same pool by blocks of
 * rows (run_rows), so no core idles through them; the pool's helpers then
 * sleep within 50 us, before they could take a core from the next sgemm.
 * Which thread runs which task never changes a result: training is
 * reproducible bit for bit at any thread count.
 * ------------------------------------------------------------------------- */

#define SFT_LM_HEAD_ROWS 512
#define SFT_LM_HEAD_FLOATS ((size_t) 1 << 25)	/* 128 MB of logits at most */

/* Rows of one LM-head chunk: the [rows, V] logits stay within the budget. */
static int
lm_head_rows(int V)
{
	size_t		rows = SFT_LM_HEAD_FLOATS / (size_t) V;

	if (rows > SFT_LM_HEAD_ROWS)
		rows = SFT_LM_HEAD_ROWS;
	return rows < 16 ? 16 : (int) rows;
}

/* The LoRA modules' inputs and outputs in a layer (lora_adapter.h order). */
static void
lora_module_dims(const SftLlamaConfig *c, int module, int *in, int *out)
{
	int64_t		o,
				i;

	sft_lora_module_shape(c, (SftLoraModule) module, &o, &i);
	*in = (int) i;
	*out = (int) o;
}

typedef struct LayerActs
{
	float	   *res_in;			/* [T, C] */
	float	   *rstd1;			/* [T] */
	float	   *qkv;			/* [T, QKV] */
	float	   *lse;			/* [T, NH] */
	float	   *att;			/* [T, QH] */
	float	   *res_mid;		/* [T, C] */
	float	   *rstd2;			/* [T] */
	float	   *gu;				/* [T, 2F] */
	float	   *qk_raw;			/* [T, QKH] or NULL */
	float	   *rstd_qk;		/* [T, NH + NKV] or NULL */
	float	   *ao, *mo;		/* [T, C] or NULL */
	float	   *rstd3, *rstd4;	/* [T] or NULL */
	float	   *lora_u[SFT_LORA_N_MODULES];	/* [T, r] x A^T of each adapted module, or NULL */
	uint8_t    *keep_att;		/* [T, C] or NULL */
	uint8_t    *keep_mlp;		/* [T, C] or NULL */
	uint8_t    *lora_keep[SFT_LORA_N_MODULES];	/* [T, IN] its dropout draws, or NULL */
} LayerActs;

/*
 * What sizes the trainer's buffers beyond the model config: the tokens, the
 * threads, dropout, the adapter's rank and targets, checkpointing.
 */
typedef struct TrainShape
{
	int			T;
	int			P;
	int			dropout;		/* residual dropout on */
	int			ckpt;			/* activation checkpointing */
	int			lora_r;			/* 0: full fine-tuning */
	uint32_t	lora_targets;
	int			lora_dropout;	/* adapter dropout on */
} TrainShape;

struct SftTrainer
{
	SftModel   *model;
	int			max_tokens;		/* T */
	float		dropout;
	SftRng		rng;			/* dropout draws */
	int64_t		step;			/* optimizer steps taken */
	TrainShape	shape;

	/*
	 * The trained parameters: the model's slab (full fine-tuning) or the
	 * adapter's (LoRA: the base is frozen and has no gradients or moments).
	 */
	float	   *train_params;	/* [n_train] */
	size_t		n_train;
	const SftParamTensor *train_tensors;	/* weight-decay table over them */
	int			n_train_tensors;
	SftParamTensor adapter_table;	/* LoRA: one entry, the whole slab, decayed */
	float	   *grads;			/* [n_train] */
	float	   *adam_m;			/* [n_train] */
	float	   *adam_v;			/* [n_train] */

	/* LoRA (adapter NULL: full fine-tuning) */
	SftLoraAdapter *adapter;
	float		lora_scale;		/* s */
	float		lora_dropout;	/* p of the adapters' input dropout */
	size_t	   *lora_off;		/* [L, N_MODULES, 2] A and B offsets, SFT_NO_TENSOR if not adapted */
	int			lora_in[SFT_LORA_N_MODULES];
	int			lora_out[SFT_LORA_N_MODULES];
	float	   *lx;				/* [T, max IN] an adapter's dropped input */
	float	   *ldx;			/* [T, max IN] its gradient */
	float	   *ldu;			/* [T, r] gradient of x A^T */

	float	   *acts;			/* the activation slab (see above) */
	uint8_t    *keep;			/* dropout draws, or NULL */
	int32_t    *index;			/* the index slab */
	LayerActs  *layers;			/* [L] */
	LayerActs	work;			/* checkpointing: the one layer's activations */

	float	   *res_final, *xg, *rstdf, *xf, *dxf, *logits;
	float	   *xn, *h, *proj, *dres, *dproj, *dxn, *dh, *dgu, *datt, *dqkv;
	float	   *dqk;			/* [T, QKH] or NULL */
	float	   *dpost;			/* [T, C] or NULL */
	float	   *ce_scratch;		/* [P, V] or NULL */
	float	   *attn_scratch;	/* [P, attn_scratch_size] */
	size_t		attn_scratch_size;
	float	   *dkv_part;		/* [2, T, 2 KVH] */
	SftThreadPool *pool;
	int			n_threads;		/* P */
	int32_t    *tasks;			/* [max_tasks, 4] forward tasks */
	int			n_tasks;
	int32_t    *btasks;			/* [2 NKV n_seqs, 4] backward tasks */
	int			n_btasks;
	float	   *cos_tab, *sin_tab;	/* [n_rope, HD/2] */
	float	   *cos_loc, *sin_loc;	/* [n_rope, HD/2] local layers, or NULL */
	int			n_rope;
	int32_t    *pos;			/* [T] position of each token in its sequence */
	int32_t    *tgt_row;		/* [T] rows predicting a target */
	int32_t    *tgt_id;			/* [T] their target token ids */
	double	   *row_loss;		/* [T] cross-entropy loss of each target row */
};

/* The saved activations of one layer: a layer's own, or with checkpointing
 * the shared set with that layer's input and dropout draws. */
static LayerActs *
layer_acts(SftTrainer *tr, int l)
{
	LayerActs  *w = &tr->work;

	if (!tr->shape.ckpt)
		return &tr->layers[l];
	w->res_in = tr->layers[l].res_in;
	w->keep_att = tr->layers[l].keep_att;
	w->keep_mlp = tr->layers[l].keep_mlp;
	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		w->lora_keep[m] = tr->layers[l].lora_keep[m];
	return w;
}

/* One layer's saved activations (everything but res_in), in a LayerActs. */
static size_t
layout_layer_saved(const SftLlamaConfig *c, const TrainShape *s, LayerActs *a, float *base,
				   size_t off)
{
	size_t		T = s->T;
	size_t		C = c->hidden_size, F = c->intermediate_size;
	size_t		NH = c->n_heads, HD = c->head_dim;
	size_t		QH = NH * HD, QKV = (NH + 2 * (size_t) c->n_kv_heads) * HD;
	size_t		QKH = (NH + (size_t) c->n_kv_heads) * HD;
	int			qkn = c->qk_norm;
	int			gemma = c->family == SFT_FAMILY_GEMMA3;

#define TAKE(ptr, count) do { \
		if (base) (ptr) = base + off; \
		off += (size_t) (count); \
	} while (0)
#define TAKE_IF(cond, ptr, count) do { \
		if (cond) TAKE(ptr, count); \
		else if (base) (ptr) = NULL; \
	} while (0)
	TAKE(a->rstd1, T);
	TAKE(a->qkv, T * QKV);
	TAKE(a->lse, T * NH);
	TAKE(a->att, T * QH);
	TAKE(a->res_mid, T * C);
	TAKE(a->rstd2, T);
	TAKE(a->gu, T * 2 * F);
	TAKE_IF(qkn, a->qk_raw, T * QKH);
	TAKE_IF(qkn, a->rstd_qk, T * (NH + c->n_kv_heads));
	TAKE_IF(gemma, a->ao, T * C);
	TAKE_IF(gemma, a->mo, T * C);
	TAKE_IF(gemma, a->rstd3, T);
	TAKE_IF(gemma, a->rstd4, T);
	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		TAKE_IF(s->lora_r > 0 && (s->lora_targets & SFT_LORA_TARGET(m)), a->lora_u[m],
				T * (size_t) s->lora_r);
#undef TAKE_IF
#undef TAKE
	return off;
}

/*
 * Walks the activation slab: with base NULL only counts floats, otherwise
 * also sets the trainer's pointers.  Keeping one function for both is what
 * keeps sft_trainer_memory_estimate honest.  With checkpointing a layer
 * keeps only its input (res_in); the rest exists once, for the layer being
 * recomputed.
 */
static size_t
layout_acts(const SftLlamaConfig *c, const TrainShape *s, SftTrainer *tr, float *base)
{
	size_t		T = s->T;
	int			P = s->P;
	size_t		C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
	size_t		NH = c->n_heads, HD = c->head_dim;
	size_t		QH = NH * HD, QKV = (NH + 2 * (size_t) c->n_kv_heads) * HD;
	size_t		n_rope = T < (size_t) c->max_position ? T : (size_t) c->max_position;
	size_t		QKH = (NH + (size_t) c->n_kv_heads) * HD;
	int			qkn = c->qk_norm;
	int			gemma = c->family == SFT_FAMILY_GEMMA3;
	int			local = sft_config_has_local_layers(c);
	size_t		off = 0;
	size_t		max_in = 0;

#define TAKE(ptr, count) do { \
		if (base) (ptr) = base + off; \
		off += (size_t) (count); \
	} while (0)
#define TAKE_IF(cond, ptr, count) do { \
		if (cond) TAKE(ptr, count); \
		else if (base) (ptr) = NULL; \
	} while (0)

	for (int l = 0; l < c->n_layers; l++)
	{
		LayerActs	dummy,
				   *a = base ? &tr->layers[l] : &dummy;

		TAKE(a->res_in, T * C);
		if (!s->ckpt)
			off = layout_layer_saved(c, s, a, base, off);
	}
	if (s->ckpt)
	{
		LayerActs	dummy;

		off = layout_layer_saved(c, s, base ? &tr->work : &dummy, base, off);
	}
	for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		if (s->lora_r > 0 && (s->lora_targets & SFT_LORA_TARGET(m)))
		{
			int			in,
						out;

			lora_module_dims(c, m, &in, &out);
			max_in = (size_t) in > max_in ? (size_t) in : max_in;
		}
	{
		SftTrainer	dummy,
				   *t = base ? tr : &dummy;

		TAKE(t->res_final, T * C);
		TAKE(t->xg, T * C);
		TAKE(t->rstdf, T);
		TAKE(t->xf, T * C);
		TAKE(t->dxf, T * C);
		TAKE(t->logits, (size_t) (T < (size_t) lm_head_rows(V) ? T : (size_t) lm_head_rows(V)) * V);
		TAKE(t->xn, T * C);
		TAKE(t->h, T * F);
		TAKE(t->proj, T * C);
		TAKE(t->dres, T * C);
		TAKE(t->dproj, T * C);
		TAKE(t->dxn, T * C);
		TAKE(t->dh, T * F);
		TAKE(t->dgu, T * 2 * F);
		TAKE(t->datt, T * QH);
		TAKE(t->dqkv, T * QKV);
		TAKE_IF(qkn, t->dqk, T * QKH);
		TAKE_IF(gemma, t->dpost, T * C);
		TAKE_IF(c->final_logit_softcap > 0.0f, t->ce_scratch, (size_t) P * V);
		TAKE(t->attn_scratch, (size_t) P * attention_scratch_floats((int) T, c->n_heads / c->n_kv_heads,
																	c->head_dim));
		TAKE(t->dkv_part, (size_t) 2 * T * 2 * c->n_kv_heads * HD);
		TAKE(t->cos_tab, n_rope * HD / 2);
		TAKE(t->sin_tab, n_rope * HD / 2);
		TAKE_IF(local, t->cos_loc, n_rope * HD / 2);
		TAKE_IF(local, t->sin_loc, n_rope * HD / 2);
		TAKE_IF(s->lora_r > 0 && s->lora_dropout, t->lx, T * max_in);
		TAKE_IF(s->lora_r > 0 && s->lora_dropout, t->ldx, T * max_in);
		TAKE_IF(s->lora_r > 0, t->ldu, T * (size_t) s->lora_r);
	}
#undef TAKE_IF
#undef TAKE
	return off;
}

/*
 * The dropout draws (bytes): residual dropout [L, 2, T, C], then each
 * layer's adapter dropout [T, IN] per adapted module.  With tr NULL only
 * counts.
 */
static size_t
layout_keep(const SftLlamaConfig *c, const TrainShape *s, SftTrainer *tr, uint8_t *base)
{
	size_t		T = s->T,
				C = c->hidden_size;
	size_t		off = 0;

	for (int l = 0; l < c->n_layers; l++)
	{
		LayerActs	dummy,
				   *a = base ? &tr->layers[l] : &dummy;

		a->keep_att = s->dropout && base ? base + off : NULL;
		off += s->dropout ? T * C : 0;
		a->keep_mlp = s->dropout && base ? base + off : NULL;
		off += s->dropout ? T * C : 0;
		for (int m = 0; m < SFT_LORA_N_MODULES; m++)
		{
			int			on = s->lora_r > 0 && s->lora_dropout &&
				(s->lora_targets & SFT_LORA_TARGET(m));
			int			in = 0,
						out;

			if (on)
				lora_module_dims(c, m, &in, &out);
			a->lora_keep[m] = on && base ? base + off : NULL;
			off += on ? T * (size_t) in : 0;
		}
	}
	return off;
}

/* Attention tasks of a micro-batch of at most T tokens: NKV per row block. */
static size_t
max_attention_tasks(const SftLlamaConfig *c, int T)
{
	/* every sequence has at most len / BLOCK + 1 blocks, and at most T sequences */
	return (size_t) c->n_kv_heads * ((size_t) T / SFT_ATTN_BLOCK + (size_t) T);
}

static size_t
index_ints(const SftLlamaConfig *c, int T)
{
	/* pos, tgt_row, tgt_id; forward tasks; backward tasks (2 per kv head and sequence) */
	return 3 * (size_t) T + 4 * max_attention_tasks(c, T) + 4 * 2 * (size_t) c->n_kv_heads * T;
}

static TrainShape
train_shape(const SftLlamaConfig *c, const SftTrainerOptions *o, const SftLoraConfig *lora,
			int P)
{
	TrainShape	s = {0};

	s.T = o->max_tokens;
	s.P = P;
	s.dropout = o->dropout > 0.0f;
	s.ckpt = o->checkpoint_activations != 0;
	if (lora)
	{
		s.lora_r = lora->r;
		s.lora_targets = lora->targets;
		s.lora_dropout = lora->dropout > 0.0;
	}
	(void) c;
	return s;
}

size_t
sft_trainer_memory_estimate_for(const SftLlamaConfig *cfg, const SftTrainerOptions *opts,
								const SftLoraConfig *lora)
{
	SftModel	m;
	size_t		n_params,
				n_train;
	TrainShape	s;

	memset(&m, 0, sizeof(m));
	m.cfg = *cfg;
	if (sft_model_check_config(cfg, NULL) != SFT_OK || opts->max_tokens <= 0)
		return 0;
	n_params = (size_t) layout_model(&m);
	n_train = lora ? (size_t) sft_lora_num_params(lora, cfg) : n_params;
	s = train_shape(cfg, opts, lora, openblas_get_num_threads());
	/* parameters; trained ones' gradients and two AdamW moments (LoRA: the
	 * adapter, its slab included); activations; dropout draws; int32
	 * indexes; small tables */
	return n_params * sizeof(float) + (lora ? 4 : 3) * n_train * sizeof(float)
		+ layout_acts(cfg, &s, NULL, NULL) * sizeof(float)
		+ layout_keep(cfg, &s, NULL, NULL)
		+ index_ints(cfg, opts->max_tokens) * sizeof(int32_t)
		+ (size_t) opts->max_tokens * sizeof(double)	/* row_loss */
		+ (size_t) cfg->n_layers * (sizeof(LayerActs) + sizeof(SftLayerOffsets)
									+ 2 * SFT_LORA_N_MODULES * sizeof(size_t))
		+ (size_t) m.n_tensors * sizeof(SftParamTensor) + sizeof(SftTrainer) + sizeof(SftModel)
		+ (lora ? sizeof(SftLoraAdapter) + (size_t) 2 * cfg->n_layers * SFT_LORA_N_MODULES *
		   sizeof(SftLoraTensor) : 0)
		+ sft_pool_memory();
}

size_t
sft_trainer_memory_estimate(const SftLlamaConfig *cfg, int max_tokens)
{
	SftTrainerOptions o = {.max_tokens = max_tokens, .dropout = 0.1f};

	return sft_trainer_memory_estimate_for(cfg, &o, NULL);
}

void
sft_lora_init_peft(SftLoraAdapter *adapter, uint64_t seed)
{
	SftRng		rng;

	sft_rng_seed(&rng, seed);
	for (int i = 0; i < adapter->n_tensors; i++)
	{
		const SftLoraTensor *t = &adapter->tensors[i];
		float	   *p = adapter->params + t->offset;

		/*
		 * kaiming_uniform_(a = sqrt(5)): gain sqrt(2 / (1 + a^2)) = sqrt(1/3),
		 * bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in); B starts at 0.
		 */
		if (t->is_b)
			memset(p, 0, sizeof(float) * t->numel);
		else
		{
			double		bound = 1.0 / sqrt((double) t->shape[1]);

			for (size_t j = 0; j < t->numel; j++)
				p[j] = (float) ((2.0 * sft_rng_uniform(&rng) - 1.0) * bound);
		}
	}
}

SftStatus
sft_trainer_create(SftModel *model, const SftTrainerOptions *opts, SftTrainer **out,
				   SftError *err)
{
	const SftLlamaConfig *c = &model->cfg;
	SftTrainer *tr;
	size_t		n_acts,
				n_keep;
	int			max_tokens = opts->max_tokens;
	size_t		T = (size_t) max_tokens;
	float		dropout = opts->dropout;
	SftLoraAdapter *ad = opts->adapter;
	SftStatus	st;

	*out = NULL;
	if (max_tokens <= 0 || max_tokens > (1 << 24))
		return sft_error(err, SFT_ERR_INVALID, "max_tokens %d is out of range (1..%d)",
						 max_tokens, 1 << 24);
	if (!(dropout >= 0.0f && dropout < 1.0f))
		return sft_error(err, SFT_ERR_INVALID, "dropout %g must be in [0, 1)", dropout);
	if (ad)
	{
		if ((st = sft_lora_config_validate(&ad->config, err)) != SFT_OK ||
			(st = sft_lora_adapter_check_base(ad, c, err)) != SFT_OK)
			return st;
	}
	tr = sft_calloc(1, sizeof(SftTrainer));
	if (tr == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for the trainer");
	tr->model = model;
	tr->max_tokens = max_tokens;
	tr->dropout = dropout;
	sft_rng_seed(&tr->rng, opts->seed);
	tr->n_rope = max_tokens < c->max_position ? max_tokens : c->max_position;

	tr->pool = sft_pool_new(openblas_get_num_threads());
	tr->n_threads = sft_pool_threads(tr->pool);
	tr->shape = train_shape(c, opts, ad ? &ad->config : NULL, tr->n_threads);
	if (ad)
	{
		tr->adapter = ad;
		tr->train_params = ad->params;
		tr->n_train = ad->n_params;
		set_tensor(&tr->adapter_table, "lora", 1, (int64_t) ad->n_params, 0, 0, 1);
		tr->train_tensors = &tr->adapter_table;
		tr->n_train_tensors = 1;
		tr->lora_scale = sft_lora_scale(&ad->config);
		tr->lora_dropout = (float) ad->config.dropout;
		tr->lora_off = sft_calloc((size_t) c->n_layers * SFT_LORA_N_MODULES * 2, sizeof(size_t));
		for (int m = 0; m < SFT_LORA_N_MODULES; m++)
			lora_module_dims(c, m, &tr->lora_in[m], &tr->lora_out[m]);
		if (tr->lora_off)
			for (int l = 0; l < c->n_layers; l++)
				for (int m = 0; m < SFT_LORA_N_MODULES; m++)
					for (int b = 0; b < 2; b++)
					{
						int			i = sft_lora_adapter_find(ad, l, (SftLoraModule) m, b);

						tr->lora_off[((size_t) l * SFT_LORA_N_MODULES + m) * 2 + b] =
							i < 0 ? SFT_NO_TENSOR : ad->tensors[i].offset;
					}
	}
	else
	{
		tr->train_params = model->params;
		tr->n_train = model->n_params;
		tr->train_tensors = model->tensors;
		tr->n_train_tensors = model->n_tensors;
	}
	n_acts = layout_acts(c, &tr->shape, NULL, NULL);
	n_keep = layout_keep(c, &tr->shape, NULL, NULL);
	tr->layers = sft_calloc(c->n_layers, sizeof(LayerActs));
	tr->grads = sft_calloc(tr->n_train, sizeof(float));
	tr->adam_m = sft_calloc(tr->n_train, sizeof(float));
	tr->adam_v = sft_calloc(tr->n_train, sizeof(float));
	/* not zeroed: untouched pages of a large block cost no resident memory */
	tr->acts = n_acts <= SIZE_MAX / sizeof(float) ? sft_alloc(n_acts * sizeof(float)) : NULL;
	tr->index = sft_calloc(index_ints(c, max_tokens), sizeof(int32_t));
	tr->row_loss = sft_calloc(T, sizeof(double));
	if (n_keep > 0)
		tr->keep = sft_calloc(n_keep, 1);
	if (tr->pool == NULL || tr->layers == NULL || tr->grads == NULL || tr->adam_m == NULL ||
		tr->adam_v == NULL || tr->acts == NULL || tr->index == NULL || tr->row_loss == NULL ||
		(n_keep > 0 && tr->keep == NULL) || (ad && tr->lora_off == NULL))
	{
		size_t		need = sft_trainer_memory_estimate_for(c, opts, ad ? &ad->config : NULL);

		sft_trainer_free(tr);
		return sft_error(err, SFT_ERR_NOMEM,
						 "out of memory for the trainer (about %zu MB for max_tokens %d)",
						 need >> 20, max_tokens);
	}
	layout_acts(c, &tr->shape, tr, tr->acts);
	layout_keep(c, &tr->shape, tr, tr->keep);
	tr->attn_scratch_size = attention_scratch_floats(max_tokens, c->n_heads / c->n_kv_heads,
													 c->head_dim);
	tr->pos = tr->index;
	tr->tgt_row = tr->index + T;
	tr->tgt_id = tr->index + 2 * T;
	tr->tasks = tr->index + 3 * T;
	tr->btasks = tr->tasks + 4 * max_attention_tasks(c, max_tokens);
	{
		float		inv_freq[SFT_CONFIG_MAX_HEAD_DIM / 2];

		sft_rope_inv_freq(inv_freq, c, 0);
		sft_rope_tables(tr->cos_tab, tr->sin_tab, tr->n_rope, c->head_dim, inv_freq);
		if (tr->cos_loc)
		{
			sft_rope_inv_freq(inv_freq, c, 1);
			sft_rope_tables(tr->cos_loc, tr->sin_loc, tr->n_rope, c->head_dim, inv_freq);
		}
	}
	*out = tr;
	return SFT_OK;
}

SftStatus
sft_trainer_new(SftModel *model, int max_tokens, float dropout, uint64_t seed,
				SftTrainer **out, SftError *err)
{
	SftTrainerOptions o = {.max_tokens = max_tokens, .dropout = dropout, .seed = seed};

	return sft_trainer_create(model, &o, out, err);
}

void
sft_trainer_free(SftTrainer *tr)
{
	if (tr == NULL)
		return;
	sft_free(tr->grads);
	sft_free(tr->adam_m);
	sft_free(tr->adam_v);
	sft_free(tr->acts);
	sft_free(tr->keep);
	sft_free(tr->index);
	sft_free(tr->row_loss);
	sft_free(tr->layers);
	sft_free(tr->lora_off);
	sft_pool_free(tr->pool);
	sft_free(tr);
}

void
sft_trainer_set_dropout_seed(SftTrainer *tr, uint64_t seed)
{
	sft_rng_seed(&tr->rng, seed);
}

size_t
sft_trainer_num_trained(const SftTrainer *tr)
{
	return tr->n_train;
}

float *
sft_trainer_adam_m(SftTrainer *tr)
{
	return tr->adam_m;
}

float *
sft_trainer_adam_v(SftTrainer *tr)
{
	return tr->adam_v;
}

int64_t    *
sft_trainer_step_count(SftTrainer *tr)
{
	return &tr->step;
}

float *
sft_trainer_grads(SftTrainer *tr)
{
	return tr->grads;
}

const uint8_t *
sft_trainer_lora_dropout_keep(const SftTrainer *tr, int layer, int module)
{
	if (layer < 0 || layer >= tr->model->cfg.n_layers || module < 0 ||
		module >= SFT_LORA_N_MODULES)
		return NULL;
	return tr->layers[layer].lora_keep[module];
}

void
sft_trainer_adopt_adam(SftTrainer *tr, float *m, float *v, int64_t step)
{
	sft_free(tr->adam_m);
	sft_free(tr->adam_v);
	tr->adam_m = m;
	tr->adam_v = v;
	tr->step = step;
}

/* cost of an attention task: rows times visible keys */
static int
compare_task_cost(const void *a, const void *b)
{
	const int32_t *x = a,
			   *y = b;
	int64_t		cx = (int64_t) (x[1] - x[3] < SFT_ATTN_BLOCK ? x[1] - x[3] : SFT_ATTN_BLOCK) * (x[3] + SFT_ATTN_BLOCK);
	int64_t		cy = (int64_t) (y[1] - y[3] < SFT_ATTN_BLOCK ? y[1] - y[3] : SFT_ATTN_BLOCK) * (y[3] + SFT_ATTN_BLOCK);

	return (cx < cy) - (cx > cy);	/* most expensive first */
}

static int
compare_length(const void *a, const void *b)
{
	const int32_t *x = a,
			   *y = b;

	return (x[1] < y[1]) - (x[1] > y[1]);	/* longest first; qsort order among
											 * equals does not matter: tasks
											 * write disjoint data */
}

/* the half of the backward pass that takes query-row block b */
static inline int
block_half(int b)
{
	return ((b + 1) / 2) % 2;
}

/*
 * The attention tasks of a micro-batch: forward (sequence start, length, kv
 * head, first query row), most expensive first so that the threads taking
 * them one by one finish together; backward (start, length, kv head, half).
 */
static void
build_attention_tasks(SftTrainer *tr, const SftBatch *b)
{
	int			NKV = tr->model->cfg.n_kv_heads;
	int			n = 0,
				start = 0;

	for (int s = 0; s < b->n_seqs; s++)
	{
		for (int r0 = 0; r0 < b->seq_lens[s]; r0 += SFT_ATTN_BLOCK)
			for (int g = 0; g < NKV; g++)
			{
				int32_t    *t = tr->tasks + 4 * (size_t) n++;

				t[0] = start;
				t[1] = b->seq_lens[s];
				t[2] = g;
				t[3] = r0;
			}
		start += b->seq_lens[s];
	}
	qsort(tr->tasks, n, 4 * sizeof(int32_t), compare_task_cost);
	tr->n_tasks = n;

	/* backward: (sequence, kv head, half), longest sequences first */
	n = 0;
	start = 0;
	for (int s = 0; s < b->n_seqs; s++)
	{
		for (int g = 0; g < NKV; g++)
			for (int half = 0; half < 2; half++)
			{
				int32_t    *t = tr->btasks + 4 * (size_t) n++;

				t[0] = start;
				t[1] = b->seq_lens[s];
				t[2] = g;
				t[3] = half;
			}
		start += b->seq_lens[s];
	}
	qsort(tr->btasks, n, 4 * sizeof(int32_t), compare_length);
	tr->n_btasks = n;
}

/*
 * Checks a micro-batch and fills pos, tgt_row and tgt_id.  Returns the number
 * of tokens in *T_out and of targets in *N_out.
 */
static SftStatus
prepare_batch(SftTrainer *tr, const SftBatch *b, int *T_out, int *N_out, SftError *err)
{
	const SftLlamaConfig *c = &tr->model->cfg;
	int64_t		T = 0;
	int			N = 0;

	if (b == NULL || b->n_seqs <= 0 || b->seq_lens == NULL || b->tokens == NULL ||
		b->mask == NULL)
		return sft_error(err, SFT_ERR_INVALID, "empty or incomplete micro-batch");
	for (int s = 0; s < b->n_seqs; s++)
	{
		int			len = b->seq_lens[s];

		if (len <= 0)
			return sft_error(err, SFT_ERR_INVALID, "sequence %d of the micro-batch is empty", s);
		if (len > tr->n_rope)
			return sft_error(err, SFT_ERR_LIMIT,
							 "sequence %d has %d tokens, more than the model's %d positions",
							 s, len, c->max_position);
		T += len;
		if (T > tr->max_tokens)
			return sft_error(err, SFT_ERR_LIMIT,
							 "micro-batch has more than max_tokens = %d tokens", tr->max_tokens);
	}
	T = 0;
	for (int s = 0; s < b->n_seqs; s++)
	{
		for (int i = 0; i < b->seq_lens[s]; i++, T++)
		{
			int32_t		tok = b->tokens[T];

			if (tok < 0 || tok >= c->vocab_size)
				return sft_error(err, SFT_ERR_INVALID,
								 "token id %d at position %lld is outside the vocabulary (%d)",
								 (int) tok, (long long) T, c->vocab_size);
			if (b->mask[T] != 0 && b->mask[T] != 1)
				return sft_error(err, SFT_ERR_INVALID, "loss mask value %d at position %lld is not 0 or 1",
								 (int) b->mask[T], (long long) T);
			tr->pos[T] = i;
			if (i > 0 && b->mask[T])
			{
				tr->tgt_row[N] = (int32_t) T - 1;
				tr->tgt_id[N] = tok;
				N++;
			}
		}
	}
	*T_out = (int) T;
	*N_out = N;
	build_attention_tasks(tr, b);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Element-wise phases on the trainer's threads
 *
 * Between two sgemms, OpenBLAS's threads wait; an element-wise kernel run on
 * the caller alone leaves the other cores idle for its whole length.  These
 * wrappers share the rows of one such kernel out in blocks of
 * SFT_ROWS_BLOCK.  Only kernels whose rows are independent (no sum across
 * rows) go through here, so how rows are shared never changes a result.
 * ------------------------------------------------------------------------- */

#define SFT_ROWS_BLOCK 32

typedef enum RowKernel
{
	ROWS_RMSNORM,				/* out, rstd = rmsnorm(x; w) */
	ROWS_SWIGLU,				/* out[T, F] = swiglu(x[T, 2F]) (or GeGLU) */
	ROWS_SWIGLU_BACKWARD,		/* out[T, 2F] += swiglu'(x) * dy[T, F] */
	ROWS_ROPE,					/* rotate out [T, width] in place */
	ROWS_ROPE_BACKWARD,
	ROWS_ADD,					/* out = x + y, [T, width] */
	ROWS_CROSSENTROPY,			/* out[T, V]: logits -> probabilities;
								 * row_loss[T] */
	ROWS_CROSSENTROPY_BACKWARD	/* the same, then probabilities -> dlogits */
} RowKernel;

typedef struct RowsJob
{
	SftTrainer *tr;
	RowKernel	kernel;
	int			T;
	int			width;			/* C, F, or the row stride for RoPE */
	float	   *out;
	float	   *rstd;
	const float *x;
	const float *y;				/* the second operand: w, dy or y */
	const float *cos_tab, *sin_tab;	/* RoPE tables of the layer */
	const int32_t *targets;		/* cross-entropy targets [T] */
	double	   *row_loss;		/* cross-entropy loss of each row [T] */
	atomic_int	next;
} RowsJob;

static void
rows_job(void *ctx, int thread, int n_threads)
{
	RowsJob    *j = ctx;
	const SftLlamaConfig *c = &j->tr->model->cfg;
	const SftArch *arch = &j->tr->model->arch;
	int			task;

	(void) n_threads;
	while ((task = sft_pool_next_task(&j->next)) * SFT_ROWS_BLOCK < j->T)
	{
		int			t0 = task * SFT_ROWS_BLOCK;
		int			n = j->T - t0 < SFT_ROWS_BLOCK ? j->T - t0 : SFT_ROWS_BLOCK;
		size_t		W = (size_t) j->width;

		switch (j->kernel)
		{
			case ROWS_RMSNORM:
				rmsnorm_forward(j->out + t0 * W, j->rstd + t0, j->x + t0 * W, j->y,
								n, j->width, c->rms_norm_eps, arch->norm_offset);
				break;
			case ROWS_SWIGLU:
				(arch->geglu ? geglu_tanh_forward : swiglu_forward)
					(j->out + t0 * W, j->x + t0 * 2 * W, n, j->width);
				break;
			case ROWS_SWIGLU_BACKWARD:
				(arch->geglu ? geglu_tanh_backward : swiglu_backward)
					(j->out + t0 * 2 * W, j->y + t0 * W, j->x + t0 * 2 * W, n, j->width);
				break;
			case ROWS_ROPE:
			case ROWS_ROPE_BACKWARD:
				(j->kernel == ROWS_ROPE ? rope_forward : rope_backward)
					(j->out + t0 * W, j->tr->pos + t0, j->cos_tab, j->sin_tab,
					 n, j->width, c->n_heads + c->n_kv_heads, c->head_dim);
				break;
			case ROWS_ADD:
				residual_forward(j->out + t0 * W, j->x + t0 * W, j->y + t0 * W, n * W);
				break;
			case ROWS_CROSSENTROPY:
			case ROWS_CROSSENTROPY_BACKWARD:
				for (int t = t0; t < t0 + n; t++)
				{
					int			back = j->kernel == ROWS_CROSSENTROPY_BACKWARD;
					float	   *th = arch->softcap > 0.0f && back
						? j->tr->ce_scratch + (size_t) thread * W : NULL;

					if (arch->softcap > 0.0f)
						softcap_forward(j->out + t * W, th, arch->softcap, j->width);
					j->row_loss[t] = crossentropy_forward(j->out + t * W, j->targets + t, 1, j->width);
					if (back)
						crossentropy_backward_inplace(j->out + t * W, j->targets + t, 1, j->width);
					if (th)
						softcap_backward(j->out + t * W, th, j->width);
				}
				break;
		}
	}
}

static void
run_rows(SftTrainer *tr, RowKernel kernel, int T, int width, float *out, float *rstd,
		 const float *x, const float *y)
{
	RowsJob		job = {.tr = tr, .kernel = kernel, .T = T, .width = width, .out = out,
	.rstd = rstd, .x = x, .y = y};

	atomic_init(&job.next, 0);
	sft_pool_run(tr->pool, rows_job, &job);
}

static void
rmsnorm_rows(SftTrainer *tr, float *out, float *rstd, const float *x, const float *w, int T)
{
	run_rows(tr, ROWS_RMSNORM, T, tr->model->cfg.hidden_size, out, rstd, x, w);
}

static void
swiglu_rows(SftTrainer *tr, float *h, const float *gu, int T)
{
	run_rows(tr, ROWS_SWIGLU, T, tr->model->cfg.intermediate_size, h, NULL, gu, NULL);
}

static void
swiglu_backward_rows(SftTrainer *tr, float *dgu, const float *dh, const float *gu, int T)
{
	run_rows(tr, ROWS_SWIGLU_BACKWARD, T, tr->model->cfg.intermediate_size, dgu, NULL, gu, dh);
}

/* RoPE of layer l in place on q and k (nothing on a NoPE layer). */
static void
rope_rows(SftTrainer *tr, float *qkv, int T, int ld, int backward, int l)
{
	const SftLlamaConfig *c = &tr->model->cfg;
	int			local = c->layer_flags[l] & SFT_LAYER_SLIDING;
	RowsJob		job = {.tr = tr, .kernel = backward ? ROWS_ROPE_BACKWARD : ROWS_ROPE, .T = T,
		.width = ld, .out = qkv, .cos_tab = local ? tr->cos_loc : tr->cos_tab,
	.sin_tab = local ? tr->sin_loc : tr->sin_tab};

	if (!sft_layer_uses_rope(c, l))
		return;
	atomic_init(&job.next, 0);
	sft_pool_run(tr->pool, rows_job, &job);
}

/*
 * q/k norms (Qwen3, Gemma 3): each head of q and k of every row normalised
 * over HD with the layer's q_norm / k_norm weight, in place in qkv [T, QKV];
 * the inputs are kept in raw [T, QKH] and the 1/rms in rstd [T, NH + NKV].
 */
static void
qk_norm_forward(SftTrainer *tr, float *qkv, float *raw, float *rstd, const SftLayerPtrs *w, int T)
{
	const SftLlamaConfig *c = &tr->model->cfg;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	size_t		QKV = (size_t) (NH + 2 * NKV) * HD, QKH = (size_t) (NH + NKV) * HD;
	float		off = tr->model->arch.norm_offset;

	for (int t = 0; t < T; t++)
	{
		float	   *row = qkv + t * QKV;
		float	   *r = raw + t * QKH;

		memcpy(r, row, sizeof(float) * QKH);
		rmsnorm_forward(row, rstd + (size_t) t * (NH + NKV), r, w->q_norm, NH, HD,
						c->rms_norm_eps, off);
		rmsnorm_forward(row + (size_t) NH * HD, rstd + (size_t) t * (NH + NKV) + NH,
						r + (size_t) NH * HD, w->k_norm, NKV, HD, c->rms_norm_eps, off);
	}
}

/* The gradient of the normed q | k in dqkv becomes that of the raw ones. */
static void
qk_norm_backward(SftTrainer *tr, float *dqkv, const float *raw, const float *rstd,
				 const SftLayerPtrs *w, const SftLayerPtrs *g, int T)
{
	const SftLlamaConfig *c = &tr->model->cfg;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	size_t		QKV = (size_t) (NH + 2 * NKV) * HD, QKH = (size_t) (NH + NKV) * HD;
	float		off = tr->model->arch.norm_offset;

	for (int t = 0; t < T; t++)
	{
		float	   *row = dqkv + t * QKV;
		float	   *dy = tr->dqk + t * QKH;
		const float *r = raw + t * QKH;
		const float *rs = rstd + (size_t) t * (NH + NKV);

		memcpy(dy, row, sizeof(float) * QKH);
		memset(row, 0, sizeof(float) * QKH);
		rmsnorm_backward(row, g->q_norm, dy, r, w->q_norm, rs, NH, HD, off);
		rmsnorm_backward(row + (size_t) NH * HD, g->k_norm, dy + (size_t) NH * HD,
						 r + (size_t) NH * HD, w->k_norm, rs + NH, NKV, HD, off);
	}
}

static void
add_rows(SftTrainer *tr, float *out, const float *x, const float *y, int T)
{
	run_rows(tr, ROWS_ADD, T, tr->model->cfg.hidden_size, out, NULL, x, y);
}

/*
 * Softmax cross-entropy of N rows of logits against targets, in place (with
 * backward, the logits become dlogits).  Returns the summed loss, added up in
 * row order whatever the threads: the result never depends on them.
 */
static double
crossentropy_rows(SftTrainer *tr, float *logits, const int32_t *targets, int N, int backward)
{
	RowsJob		job = {.tr = tr,
		.kernel = backward ? ROWS_CROSSENTROPY_BACKWARD : ROWS_CROSSENTROPY, .T = N,
		.width = tr->model->cfg.vocab_size, .out = logits, .targets = targets,
	.row_loss = tr->row_loss};
	double		loss = 0.0;

	atomic_init(&job.next, 0);
	sft_pool_run(tr->pool, rows_job, &job);
	for (int i = 0; i < N; i++)
		loss += tr->row_loss[i];
	return loss;
}

/* ---------------------------------------------------------------------------
 * Attention phase: the tasks of one layer on the trainer's threads
 * ------------------------------------------------------------------------- */

typedef struct AttnJob
{
	SftTrainer *tr;
	LayerActs  *a;
	int			T;
	int			backward;
	int			window;			/* the layer's sliding window, 0: none */
	atomic_int	next;
} AttnJob;

static void
attention_job(void *ctx, int thread, int n_threads)
{
	AttnJob    *j = ctx;
	SftTrainer *tr = j->tr;
	const SftLlamaConfig *c = &tr->model->cfg;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	int			QH = NH * HD, KVH = NKV * HD, QKV = QH + 2 * KVH;
	float	   *scratch = tr->attn_scratch + (size_t) thread * tr->attn_scratch_size;
	int			task;

	while ((task = sft_pool_next_task(&j->next)) < (j->backward ? tr->n_btasks : tr->n_tasks))
	{
		const int32_t *t = (j->backward ? tr->btasks : tr->tasks) + 4 * (size_t) task;
		int			start = t[0],
					len = t[1],
					g = t[2];
		const float *qkv = j->a->qkv + (size_t) start * QKV;

		if (!j->backward)
			attention_forward_block(j->a->att + (size_t) start * QH, QH,
									j->a->lse + (size_t) start * NH,
									qkv, QKV, qkv + QH, qkv + QH + KVH, QKV,
									len, len, NH, NKV, HD, tr->model->arch.attn_scale,
									j->window, g, t[3], scratch);
		else
		{
			int			half = t[3];
			float	   *dkv = tr->dkv_part + ((size_t) half * tr->max_tokens + start) * 2 * KVH;

			/* this task owns kv head g's columns of these rows in its half */
			for (int i = 0; i < len; i++)
			{
				memset(dkv + (size_t) i * 2 * KVH + (size_t) g * HD, 0, sizeof(float) * HD);
				memset(dkv + (size_t) i * 2 * KVH + KVH + (size_t) g * HD, 0, sizeof(float) * HD);
			}
			for (int b = 0, r0 = 0; r0 < len; b++, r0 += SFT_ATTN_BLOCK)
				if (block_half(b) == half)
					attention_backward_block(tr->dqkv + (size_t) start * QKV, QKV,
											 dkv, dkv + KVH, 2 * KVH,
											 tr->datt + (size_t) start * QH, QH,
											 qkv, QKV, qkv + QH, qkv + QH + KVH, QKV,
											 j->a->att + (size_t) start * QH,
											 j->a->lse + (size_t) start * NH,
											 len, len, NH, NKV, HD, tr->model->arch.attn_scale,
											 j->window, g, r0, scratch);
		}
	}
}

/*
 * Runs one layer's attention forward (att, lse) or backward (dq added into
 * dqkv, dk and dv written to it) on the pool.
 */
static void
run_attention(SftTrainer *tr, LayerActs *a, int T, int backward, int l)
{
	const SftLlamaConfig *c = &tr->model->cfg;
	int			KVH = c->n_kv_heads * c->head_dim;
	int			QH = c->n_heads * c->head_dim;
	int			QKV = QH + 2 * KVH;
	int			blas_threads = openblas_get_num_threads();
	AttnJob		job = {.tr = tr, .a = a, .T = T, .backward = backward,
	.window = sft_layer_window(c, l)};

	atomic_init(&job.next, 0);
	if (tr->n_threads > 1)
		openblas_set_num_threads(1);
	sft_pool_run(tr->pool, attention_job, &job);
	if (tr->n_threads > 1)
		openblas_set_num_threads(blas_threads);
	if (backward)
	{
		const float *h0 = tr->dkv_part,
				   *h1 = tr->dkv_part + (size_t) tr->max_tokens * 2 * KVH;

		for (int t = 0; t < T; t++)
			residual_forward(tr->dqkv + (size_t) t * QKV + QH, h0 + (size_t) t * 2 * KVH,
							 h1 + (size_t) t * 2 * KVH, 2 * (size_t) KVH);
	}
}

/* ---------------------------------------------------------------------------
 * LoRA on the trainer's layers
 * ------------------------------------------------------------------------- */

static inline size_t
lora_offset(const SftTrainer *tr, int l, int m, int is_b)
{
	return tr->lora_off[((size_t) l * SFT_LORA_N_MODULES + m) * 2 + is_b];
}

/*
 * y[T, ldy] (a module's output block) += s B A dropout(x) for module m of
 * layer l when it is adapted; x [T, IN] is the module's input.  Draws the
 * adapter's dropout in training unless redo (a recomputation) replays them.
 */
static void
lora_apply(SftTrainer *tr, LayerActs *a, int l, int m, float *y, int ldy, const float *x,
		   int T, int train, int redo)
{
	size_t		ao,
				bo;
	int			in = tr->lora_in[m];
	const float *xin = x;
	const float *ad = tr->train_params;

	if (tr->adapter == NULL || (ao = lora_offset(tr, l, m, 0)) == SFT_NO_TENSOR)
		return;
	bo = lora_offset(tr, l, m, 1);
	if (train && tr->lora_dropout > 0.0f)
	{
		if (!redo)
			dropout_draw(a->lora_keep[m], tr->lora_dropout, &tr->rng, (size_t) T * in);
		dropout_apply(tr->lx, x, a->lora_keep[m], tr->lora_dropout, (size_t) T * in);
		xin = tr->lx;
	}
	lora_update_forward(y, ldy, a->lora_u[m], xin, in, ad + ao, ad + bo, tr->lora_scale,
				 T, in, tr->lora_out[m], tr->adapter->config.r);
}

/*
 * The adapter gradients of module m of layer l from dy [T, ldy] (the
 * module's output gradient) and its input x [T, IN]; dx [T, IN] += the
 * adapter's share of the input gradient (NULL: not needed).
 */
static void
lora_grad(SftTrainer *tr, LayerActs *a, int l, int m, float *dx, const float *dy, int ldy,
		  const float *x, int T)
{
	size_t		ao,
				bo;
	int			in = tr->lora_in[m];
	size_t		n = (size_t) T * in;
	const float *xin = x;
	float	   *dxin = dx;
	const float *ad = tr->train_params;
	int			drop = tr->lora_dropout > 0.0f;

	if (tr->adapter == NULL || (ao = lora_offset(tr, l, m, 0)) == SFT_NO_TENSOR)
		return;
	bo = lora_offset(tr, l, m, 1);
	if (drop)
	{
		dropout_apply(tr->lx, x, a->lora_keep[m], tr->lora_dropout, n);
		xin = tr->lx;
		if (dx)
		{
			memset(tr->ldx, 0, sizeof(float) * n);
			dxin = tr->ldx;
		}
	}
	lora_update_backward(dxin, in, tr->grads + ao, tr->grads + bo, tr->ldu, dy, ldy, xin, in,
				  a->lora_u[m], ad + ao, ad + bo, tr->lora_scale, T, in, tr->lora_out[m],
				  tr->adapter->config.r);
	if (drop && dx)
		dropout_backward(dx, tr->ldx, a->lora_keep[m], tr->lora_dropout, n);
}

/* ---------------------------------------------------------------------------
 * Forward and backward
 * ------------------------------------------------------------------------- */

/*
 * Layer l's forward from a->res_in into res_out (NULL: stop before the
 * final residual add, as a recomputation for backward does).  train turns
 * dropout on; redo replays the draws saved by the first pass instead of
 * drawing, so the recomputation is the first pass bit for bit.
 */
static void
layer_forward(SftTrainer *tr, int l, LayerActs *a, float *res_out, int T, int train, int redo)
{
	SftModel   *m = tr->model;
	const SftLlamaConfig *c = &m->cfg;
	int			C = c->hidden_size, F = c->intermediate_size;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	int			QH = NH * HD, KVH = NKV * HD, QKV = QH + 2 * KVH;
	int			drop = train && tr->dropout > 0.0f;
	size_t		TC = (size_t) T * C;
	SftLayerPtrs w = sft_layer_ptrs(m, m->params, l);

	/* attention block */
	rmsnorm_rows(tr, tr->xn, a->rstd1, a->res_in, w.attn_norm, T);
	matmul_forward(a->qkv, tr->xn, w.wqkv, T, C, QKV);
	if (w.bqkv)
		bias_forward(a->qkv, w.bqkv, T, QKV, QKV);
	lora_apply(tr, a, l, SFT_LORA_Q, a->qkv, QKV, tr->xn, T, train, redo);
	lora_apply(tr, a, l, SFT_LORA_K, a->qkv + QH, QKV, tr->xn, T, train, redo);
	lora_apply(tr, a, l, SFT_LORA_V, a->qkv + QH + KVH, QKV, tr->xn, T, train, redo);
	if (w.q_norm)
		qk_norm_forward(tr, a->qkv, a->qk_raw, a->rstd_qk, &w, T);
	rope_rows(tr, a->qkv, T, QKV, 0, l);
	run_attention(tr, a, T, 0, l);
	matmul_forward(tr->proj, a->att, w.wo, T, QH, C);
	lora_apply(tr, a, l, SFT_LORA_O, tr->proj, C, a->att, T, train, redo);
	if (w.attn_post_norm)
	{
		memcpy(a->ao, tr->proj, sizeof(float) * TC);
		rmsnorm_rows(tr, tr->proj, a->rstd3, a->ao, w.attn_post_norm, T);
	}
	if (drop && !redo)
		dropout_forward(tr->proj, a->keep_att, tr->dropout, &tr->rng, TC);
	else if (drop)
		dropout_apply(tr->proj, tr->proj, a->keep_att, tr->dropout, TC);
	add_rows(tr, a->res_mid, a->res_in, tr->proj, T);

	/* MLP block */
	rmsnorm_rows(tr, tr->xn, a->rstd2, a->res_mid, w.mlp_norm, T);
	matmul_forward(a->gu, tr->xn, w.wgu, T, C, 2 * F);
	lora_apply(tr, a, l, SFT_LORA_GATE, a->gu, 2 * F, tr->xn, T, train, redo);
	lora_apply(tr, a, l, SFT_LORA_UP, a->gu + F, 2 * F, tr->xn, T, train, redo);
	/*
	 * A recomputation stops where backward needs nothing more: after gu,
	 * unless the post-MLP norm's input or down_proj's adapter (x A^T) is
	 * needed too.
	 */
	if (res_out == NULL && !w.mlp_post_norm &&
		!(tr->adapter && lora_offset(tr, l, SFT_LORA_DOWN, 0) != SFT_NO_TENSOR))
		return;
	swiglu_rows(tr, tr->h, a->gu, T);
	matmul_forward(tr->proj, tr->h, w.wdown, T, F, C);
	lora_apply(tr, a, l, SFT_LORA_DOWN, tr->proj, C, tr->h, T, train, redo);
	if (w.mlp_post_norm)
	{
		memcpy(a->mo, tr->proj, sizeof(float) * TC);
		rmsnorm_rows(tr, tr->proj, a->rstd4, a->mo, w.mlp_post_norm, T);
	}
	if (res_out == NULL)
		return;
	if (drop)
		dropout_forward(tr->proj, a->keep_mlp, tr->dropout, &tr->rng, TC);
	add_rows(tr, res_out, a->res_mid, tr->proj, T);
}

/*
 * Forward pass; with train, also dropout and the LM-head part of the
 * backward pass (dlogits -> dxf and the LM-head weight gradient), done chunk
 * by chunk so the [N, V] logits never exist at once.  Returns the summed loss.
 */
static double
forward(SftTrainer *tr, const SftBatch *b, int T, int N, int train)
{
	SftModel   *m = tr->model;
	const SftLlamaConfig *c = &m->cfg;
	int			C = c->hidden_size, V = c->vocab_size;
	float	   *x = tr->layers[0].res_in;
	const float *lm_head = m->params + m->lm_head;
	float	   *lm_grad = tr->adapter ? NULL : tr->grads + m->lm_head;
	double		loss = 0.0;

	embedding_forward(x, b->tokens, m->params + m->embed, T, C);
	if (m->arch.embed_scale != 1.0f)
		for (size_t i = 0; i < (size_t) T * C; i++)
			x[i] *= m->arch.embed_scale;
	for (int l = 0; l < c->n_layers; l++)
		layer_forward(tr, l, layer_acts(tr, l),
					  l + 1 < c->n_layers ? tr->layers[l + 1].res_in : tr->res_final,
					  T, train, 0);

	/* final norm and LM head, only on the rows that predict a target */
	for (int i = 0; i < N; i++)
		memcpy(tr->xg + (size_t) i * C, tr->res_final + (size_t) tr->tgt_row[i] * C,
			   sizeof(float) * C);
	rmsnorm_rows(tr, tr->xf, tr->rstdf, tr->xg, m->params + m->final_norm, N);
	/* equal chunks of at most lm_head_rows rows: no small last sgemm */
	int			max_rows = lm_head_rows(V);
	int			n_chunks = (N + max_rows - 1) / max_rows;
	int			chunk = n_chunks ? (N + n_chunks - 1) / n_chunks : 0;

	for (int r0 = 0; r0 < N; r0 += chunk)
	{
		int			nr = N - r0 < chunk ? N - r0 : chunk;
		const float *xf = tr->xf + (size_t) r0 * C;

		matmul_forward(tr->logits, xf, lm_head, nr, C, V);
		loss += crossentropy_rows(tr, tr->logits, tr->tgt_id + r0, nr, train);
		if (train)
		{
			memset(tr->dxf + (size_t) r0 * C, 0, sizeof(float) * nr * C);
			matmul_backward(tr->dxf + (size_t) r0 * C, lm_grad,
							tr->logits, xf, lm_head, nr, C, V);
		}
	}
	return loss;
}

static void
backward(SftTrainer *tr, const SftBatch *b, int T, int N)
{
	SftModel   *m = tr->model;
	const SftLlamaConfig *c = &m->cfg;
	int			C = c->hidden_size, F = c->intermediate_size;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	int			QH = NH * HD, KVH = NKV * HD, QKV = QH + 2 * KVH;
	int			drop = tr->dropout > 0.0f;
	int			lora = tr->adapter != NULL;
	size_t		TC = (size_t) T * C;
	float		noff = m->arch.norm_offset;
	SftLayerPtrs frozen;

	/* a frozen base: every weight gradient pointer NULL */
	memset(&frozen, 0, sizeof(frozen));

	/* final norm: dxf -> gradient of the gathered rows -> scatter into dres */
	memset(tr->dxn, 0, sizeof(float) * (size_t) N * C);
	rmsnorm_backward(tr->dxn, lora ? NULL : tr->grads + m->final_norm, tr->dxf, tr->xg,
					 m->params + m->final_norm, tr->rstdf, N, C, noff);
	memset(tr->dres, 0, sizeof(float) * TC);
	for (int i = 0; i < N; i++)
	{
		float	   *d = tr->dres + (size_t) tr->tgt_row[i] * C;

		residual_forward(d, d, tr->dxn + (size_t) i * C, C);
	}

	for (int l = c->n_layers - 1; l >= 0; l--)
	{
		LayerActs  *a = layer_acts(tr, l);
		SftLayerPtrs w = sft_layer_ptrs(m, m->params, l);
		SftLayerPtrs g = lora ? frozen : sft_layer_ptrs(m, tr->grads, l);
		const float *dproj = tr->dres;
		/* LoRA: below layer 0's projections no gradient is wanted */
		int			need_dx = !(lora && l == 0);

		/* checkpointing: the layer's activations again (the last layer's are there) */
		if (tr->shape.ckpt && l != c->n_layers - 1)
			layer_forward(tr, l, a, NULL, T, 1, 1);

		/* MLP block: res_out = res_mid + dropout(down(swiglu(gate_up(norm(res_mid))))) */
		if (drop)
		{
			memset(tr->dproj, 0, sizeof(float) * TC);
			dropout_backward(tr->dproj, tr->dres, a->keep_mlp, tr->dropout, TC);
			dproj = tr->dproj;
		}
		if (w.mlp_post_norm)
		{
			memset(tr->dpost, 0, sizeof(float) * TC);
			rmsnorm_backward(tr->dpost, g.mlp_post_norm, dproj, a->mo, w.mlp_post_norm,
							 a->rstd4, T, C, noff);
			dproj = tr->dpost;
		}
		rmsnorm_rows(tr, tr->xn, a->rstd2, a->res_mid, w.mlp_norm, T);
		swiglu_rows(tr, tr->h, a->gu, T);
		memset(tr->dh, 0, sizeof(float) * (size_t) T * F);
		matmul_backward(tr->dh, g.wdown, dproj, tr->h, w.wdown, T, F, C);
		lora_grad(tr, a, l, SFT_LORA_DOWN, tr->dh, dproj, C, tr->h, T);
		memset(tr->dgu, 0, sizeof(float) * (size_t) T * 2 * F);
		swiglu_backward_rows(tr, tr->dgu, tr->dh, a->gu, T);
		memset(tr->dxn, 0, sizeof(float) * TC);
		matmul_backward(tr->dxn, g.wgu, tr->dgu, tr->xn, w.wgu, T, C, 2 * F);
		lora_grad(tr, a, l, SFT_LORA_GATE, tr->dxn, tr->dgu, 2 * F, tr->xn, T);
		lora_grad(tr, a, l, SFT_LORA_UP, tr->dxn, tr->dgu + F, 2 * F, tr->xn, T);
		rmsnorm_backward(tr->dres, g.mlp_norm, tr->dxn, a->res_mid, w.mlp_norm, a->rstd2, T, C,
						 noff);

		/* attention block: res_mid = res_in + dropout(o(attention(rope(qkv(norm(res_in)))))) */
		dproj = tr->dres;
		if (drop)
		{
			memset(tr->dproj, 0, sizeof(float) * TC);
			dropout_backward(tr->dproj, tr->dres, a->keep_att, tr->dropout, TC);
			dproj = tr->dproj;
		}
		if (w.attn_post_norm)
		{
			memset(tr->dpost, 0, sizeof(float) * TC);
			rmsnorm_backward(tr->dpost, g.attn_post_norm, dproj, a->ao, w.attn_post_norm,
							 a->rstd3, T, C, noff);
			dproj = tr->dpost;
		}
		memset(tr->datt, 0, sizeof(float) * (size_t) T * QH);
		matmul_backward(tr->datt, g.wo, dproj, a->att, w.wo, T, QH, C);
		lora_grad(tr, a, l, SFT_LORA_O, tr->datt, dproj, C, a->att, T);
		memset(tr->dqkv, 0, sizeof(float) * (size_t) T * QKV);
		run_attention(tr, a, T, 1, l);
		rope_rows(tr, tr->dqkv, T, QKV, 1, l);
		if (w.q_norm)
			qk_norm_backward(tr, tr->dqkv, a->qk_raw, a->rstd_qk, &w, &g, T);
		if (g.bqkv)
			bias_backward(g.bqkv, tr->dqkv, T, QKV, QKV);
		rmsnorm_rows(tr, tr->xn, a->rstd1, a->res_in, w.attn_norm, T);
		memset(tr->dxn, 0, sizeof(float) * TC);
		if (need_dx)
			matmul_backward(tr->dxn, g.wqkv, tr->dqkv, tr->xn, w.wqkv, T, C, QKV);
		lora_grad(tr, a, l, SFT_LORA_Q, need_dx ? tr->dxn : NULL, tr->dqkv, QKV, tr->xn, T);
		lora_grad(tr, a, l, SFT_LORA_K, need_dx ? tr->dxn : NULL, tr->dqkv + QH, QKV, tr->xn, T);
		lora_grad(tr, a, l, SFT_LORA_V, need_dx ? tr->dxn : NULL, tr->dqkv + QH + KVH, QKV,
				  tr->xn, T);
		if (need_dx)
			rmsnorm_backward(tr->dres, g.attn_norm, tr->dxn, a->res_in, w.attn_norm, a->rstd1,
							 T, C, noff);
	}
	if (lora)
		return;					/* the embeddings are frozen */
	if (m->arch.embed_scale != 1.0f)
		for (size_t i = 0; i < TC; i++)
			tr->dres[i] *= m->arch.embed_scale;
	embedding_backward(tr->grads + m->embed, tr->dres, b->tokens, T, C);
}

SftStatus
sft_trainer_accumulate(SftTrainer *tr, const SftBatch *batch, double *loss_sum,
					   int64_t *n_targets, SftError *err)
{
	int			T = 0,
				N = 0;
	SftStatus	st;

	if ((st = prepare_batch(tr, batch, &T, &N, err)) != SFT_OK)
		return st;
	*loss_sum = forward(tr, batch, T, N, 1);
	if (N > 0)					/* no target: every gradient is zero */
		backward(tr, batch, T, N);
	*n_targets = N;
	return SFT_OK;
}

SftStatus
sft_trainer_evaluate(SftTrainer *tr, const SftBatch *batch, double *loss_sum,
					 int64_t *n_targets, SftError *err)
{
	int			T = 0,
				N = 0;
	SftStatus	st;

	if ((st = prepare_batch(tr, batch, &T, &N, err)) != SFT_OK)
		return st;
	*loss_sum = forward(tr, batch, T, N, 0);
	*n_targets = N;
	return SFT_OK;
}

SftStatus
sft_trainer_step(SftTrainer *tr, int64_t n_targets, const SftAdamWConfig *adamw,
				 double lr, double *grad_norm, SftError *err)
{
	double		scale,
				norm,
				clip = 1.0;

	if (n_targets <= 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "optimizer step over %lld target tokens: every token of the step was masked out",
						 (long long) n_targets);
	if (!(adamw->beta1 >= 0.0 && adamw->beta1 < 1.0 && adamw->beta2 >= 0.0 &&
		  adamw->beta2 < 1.0 && adamw->eps >= 0.0 && adamw->weight_decay >= 0.0 &&
		  isfinite(lr) && lr >= 0.0))
		return sft_error(err, SFT_ERR_INVALID,
						 "AdamW settings out of range (betas in [0, 1), eps, weight decay and lr >= 0)");
	scale = 1.0 / (double) n_targets;
	norm = sqrt(sft_sum_squares_pool(tr->grads, tr->n_train, tr->pool)) * scale;
	if (grad_norm)
		*grad_norm = norm;
	if (!isfinite(norm))
	{
		memset(tr->grads, 0, sizeof(float) * tr->n_train);
		return sft_error(err, SFT_ERR_INVALID,
						 "the gradient norm is not finite (training diverged; try a lower learning rate)");
	}
	/* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), at most 1 */
	if (adamw->max_grad_norm > 0.0)
	{
		clip = adamw->max_grad_norm / (norm + 1e-6);
		if (clip > 1.0)
			clip = 1.0;
	}
	tr->step++;
	sft_adamw_update_slab(tr->train_params, tr->grads, tr->adam_m, tr->adam_v, tr->n_train,
						  tr->train_tensors, tr->n_train_tensors, (float) (scale * clip), adamw,
						  lr, tr->step, tr->pool);
	return SFT_OK;
}
