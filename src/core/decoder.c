/*
 * decoder.c: batch-1 inference with a KV cache.
 *
 * sft_decoder_feed appends n tokens: it runs them through the model in
 * chunks of up to SFT_DECODE_CHUNK tokens (a prompt prefill is then a few
 * sgemms; a single generated token is a series of matrix-vector products,
 * which is what makes decode memory-bound rather than compute-bound), stores each
 * layer's k (after RoPE) and v in the cache, and writes the logits of the
 * last token only.  The attention kernel is the trainer's: query i of the
 * chunk sits at position pos + i and sees cache rows 0 .. pos + i.
 *
 * Threads.  A generated token is ~4 matrix-vector products per layer plus
 * the LM head, all limited by memory bandwidth, and on the development
 * machine one core reads ~20 GB/s while two read ~30.  The decoder keeps a
 * thread pool (threadpool.h) of openblas_get_num_threads() threads, the
 * caller's thread budget, and shares every product out in tasks of 64 rows
 * (and attention in tasks of one kv head), so a descheduled thread delays
 * one task, not half the product.  Prompt chunks go through BLAS instead.
 *
 * Sliding-window layers (Gemma 3) keep a window-bounded cache: a query
 * there sees only the last W = sliding_window keys, so such a layer holds
 * R = min(S, W - 1 + CH) rows, positions [local_base, local_base + R).  When
 * a chunk would not fit, the last W - 1 rows move to the front (one memmove
 * per layer every CH tokens at most) and local_base advances.
 *
 * Buffers (CH = SFT_DECODE_CHUNK, S = max_seq):
 *   kcache, vcache [sum over layers of R_l, NKV HD]   keys after RoPE,
 *     values; R_l = S for a global layer, R for a sliding one
 *   x [CH, C] residual stream; xn [CH, C]; qkv [CH, QKV]; att [CH, NH HD];
 *   proj [CH, C]; gu [CH, 2F]; h [CH, F]; lse [CH, NH]; rstd [CH];
 *   attn_scratch [attention_scratch_floats(S, NH / NKV, HD)] (a single-token
 *     step uses [threads, S] of it: threads <= 17 and the size is >= 128 S);
 *   cos, sin [S, HD/2] (and cos_loc, sin_loc for local layers); pos [CH]
 *   with a LoRA adapter: lora_a [CH, r], lora_b [CH, max(QH, KVH, C, F)]
 *
 * LoRA adapters.  A decoder may run its model with an adapter attached
 * (sft_decoder_use_adapter): each adapted projection adds s * B (A x) to its
 * output, after the bias, as PEFT's Linear does.  The base stays shared and
 * untouched, so one loaded base serves every adapter of it; the adapter adds
 * r (IN + OUT) weights a projection, a few percent of the bytes a decode step
 * reads for r = 16.  Single tokens and batched rows use the matrix-vector
 * kernel, whose sums do not depend on the number of rows, so batched
 * generation stays bitwise equal to single-sequence generation with an
 * adapter too; prompt chunks use BLAS.
 */
#include "model_internal.h"
#include "kernels.h"
#include "lora_adapter.h"
#include "threadpool.h"

#include <cblas.h>
#include <string.h>

#define SFT_DECODE_CHUNK 128

/* ---------------------------------------------------------------------------
 * Jobs for the helper threads
 * ------------------------------------------------------------------------- */

#define SFT_MATVEC_ROWS 64		/* rows per task */

/*
 * y[OUT] = w[OUT, IN] @ x[IN], tasks of SFT_MATVEC_ROWS rows; w is fp32, or
 * qw in dtype (rows of row_bytes) when qw is set.
 */
typedef struct MatvecJob
{
	float	   *y;
	const float *x;
	const float *w;
	const char *qw;
	SftDType	dtype;
	size_t		row_bytes;
	int			nx;				/* inputs x[nx, IN] -> y[nx, OUT] */
	int			IN,
				OUT;
	atomic_int	next;
} MatvecJob;

/* a task computes rows lo..lo+n of every output; written into a staging block then scattered */
static void
matvec_job(void *ctx, int thread, int n_threads)
{
	MatvecJob  *j = ctx;
	int			task;

	while ((task = sft_pool_next_task(&j->next)) * SFT_MATVEC_ROWS < j->OUT)
	{
		int			lo = task * SFT_MATVEC_ROWS;
		int			n = j->OUT - lo < SFT_MATVEC_ROWS ? j->OUT - lo : SFT_MATVEC_ROWS;
		float		part[SFT_DECODE_CHUNK * SFT_MATVEC_ROWS];

		if (j->qw)
			sft_matvec_quant_rows(j->dtype, part, j->x, j->nx, j->qw + (size_t) lo * j->row_bytes,
								  j->IN, n);
		else
			matvec_forward_rows(part, j->x, j->nx, j->w + (size_t) lo * j->IN, j->IN, n);
		for (int r = 0; r < j->nx; r++)
			memcpy(j->y + (size_t) r * j->OUT + lo, part + (size_t) r * n, sizeof(float) * n);
	}
}

/* one query's attention, one kv head (and its query heads) per task */
typedef struct AttnJob
{
	float	   *out, *lse, *scratch;	/* scratch [threads, S] */
	const float *q, *k, *v;
	int			ldkv, nkv, NH, NKV, HD, S, window;
	float		scale;
	atomic_int	next;
} AttnJob;

static void
attn_job(void *ctx, int thread, int n_threads)
{
	AttnJob    *j = ctx;
	int			G = j->NH / j->NKV;
	int			g;

	while ((g = sft_pool_next_task(&j->next)) < j->NKV)
		attention_forward_one(j->out + (size_t) g * G * j->HD, j->lse + g * G,
							  j->q + (size_t) g * G * j->HD, j->k + (size_t) g * j->HD,
							  j->v + (size_t) g * j->HD, j->ldkv, j->nkv, G, 1, j->HD,
							  j->scale, j->window, j->scratch + (size_t) thread * j->S);
}

struct SftDecoder
{
	const SftModel *model;
	int			max_seq;		/* S */
	int			pos;			/* tokens in the cache */
	int			local_rows;		/* R: rows of a sliding layer's cache */
	int			local_base;		/* position of their first row */
	size_t	   *layer_row;		/* [L] first cache row of each layer */
	float	   *kcache;			/* [rows, NKV HD] */
	float	   *vcache;			/* [rows, NKV HD] */
	float	   *work;			/* the rest, one block */
	float	   *x, *xn, *qkv, *att, *proj, *gu, *h, *lse, *rstd, *attn_scratch;
	float	   *cos_tab, *sin_tab;	/* [S, HD/2] */
	float	   *cos_loc, *sin_loc;	/* [S, HD/2] local layers, or NULL */
	int32_t    *posv;			/* [CH] */
	SftThreadPool *pool;		/* helper threads for single-token steps */
	const SftDecodeWeights *weights;	/* reduced-precision matrices, or NULL */
	const SftLoraAdapter *adapter;	/* LoRA adapter applied, or NULL */
	float		lora_scale;		/* its s */
	float	   *lora_a;			/* [CH, r] A x */
	float	   *lora_b;			/* [CH, max OUT] B (A x) */
	size_t		lora_floats;	/* allocated floats of lora_a + lora_b */
};

/* Rows of a sliding layer's cache for max_seq tokens. */
static int
local_cache_rows(const SftLlamaConfig *c, int max_seq)
{
	int64_t		r = (int64_t) c->sliding_window - 1 + SFT_DECODE_CHUNK;

	return r < max_seq ? (int) r : max_seq;
}

/* KV cache rows of all layers. */
static size_t
cache_rows(const SftLlamaConfig *c, int max_seq)
{
	size_t		rows = 0;

	for (int l = 0; l < c->n_layers; l++)
		rows += sft_layer_window(c, l) ? (size_t) local_cache_rows(c, max_seq) : (size_t) max_seq;
	return rows;
}

/* Floats of the work block (see the buffer list above). */
static size_t
work_floats(const SftLlamaConfig *c, int max_seq)
{
	size_t		C = c->hidden_size, F = c->intermediate_size, HD = c->head_dim;
	size_t		QH = c->n_heads * HD, KVH = c->n_kv_heads * HD;
	size_t		QKV = QH + 2 * KVH, CH = SFT_DECODE_CHUNK;
	int			tables = sft_config_has_local_layers(c) ? 2 : 1;

	return CH * (3 * C + QKV + QH + 2 * F + F + c->n_heads + c->n_kv_heads + 1)
		+ attention_scratch_floats(max_seq, c->n_heads / c->n_kv_heads, c->head_dim)
		+ 2 * (size_t) tables * max_seq * (HD / 2);
}

size_t
sft_decoder_memory_estimate(const SftLlamaConfig *c, int max_seq)
{
	size_t		KVH = (size_t) c->n_kv_heads * c->head_dim;

	return (2 * cache_rows(c, max_seq) * KVH + work_floats(c, max_seq)) * sizeof(float)
		+ SFT_DECODE_CHUNK * sizeof(int32_t) + c->n_layers * sizeof(size_t)
		+ sizeof(SftDecoder) + sft_pool_memory();
}

/* ---------------------------------------------------------------------------
 * Reduced-precision weights
 * ------------------------------------------------------------------------- */

/* One matrix of the model: where it is in the fp32 slab and in data. */
typedef struct SftPackedMatrix
{
	size_t		offset;			/* in the fp32 slab, floats */
	size_t		numel;
	int			IN;				/* row length */
	size_t		packed;			/* byte offset in data */
} SftPackedMatrix;

struct SftDecodeWeights
{
	SftDType	dtype;
	int			n;
	SftPackedMatrix *mats;		/* [n] slab order */
	char	   *data;
	size_t		bytes;
};

SftStatus
sft_decode_weights_new(const SftModel *model, SftDType dtype, SftDecodeWeights **out,
					   SftError *err)
{
	SftDecodeWeights *w;
	size_t		bytes = 0;

	*out = NULL;
	if (dtype == SFT_DTYPE_F32)
		return sft_error(err, SFT_ERR_INVALID, "fp32 decode weights are the model's own");
	w = sft_calloc(1, sizeof(SftDecodeWeights));
	if (w == NULL || (w->mats = sft_calloc(model->n_tensors, sizeof(SftPackedMatrix))) == NULL)
	{
		sft_decode_weights_free(w);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for %s decode weights",
						 sft_dtype_name(dtype));
	}
	w->dtype = dtype;
	for (int i = 0; i < model->n_tensors; i++)
	{
		const SftParamTensor *t = &model->tensors[i];
		SftPackedMatrix *m;

		if (t->ndim != 2)
			continue;
		if (dtype == SFT_DTYPE_Q8_0 && t->shape[1] % SFT_Q8_0_BLOCK != 0)
		{
			sft_decode_weights_free(w);
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "q8_0 needs rows that are a multiple of %d long; %s has rows of %lld",
							 SFT_Q8_0_BLOCK, t->name, (long long) t->shape[1]);
		}
		m = &w->mats[w->n++];
		m->offset = t->offset;
		m->numel = t->numel;
		m->IN = (int) t->shape[1];
		m->packed = bytes;
		bytes += (size_t) t->shape[0] * sft_dtype_row_bytes(dtype, t->shape[1]);
	}
	w->data = sft_alloc(bytes > 0 ? bytes : 1);
	if (w->data == NULL)
	{
		sft_decode_weights_free(w);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for %s decode weights (%zu bytes)",
						 sft_dtype_name(dtype), bytes);
	}
	w->bytes = bytes;
	for (int i = 0; i < w->n; i++)
	{
		const SftPackedMatrix *m = &w->mats[i];
		size_t		rows = m->numel / m->IN;
		size_t		row_bytes = sft_dtype_row_bytes(dtype, m->IN);

		for (size_t r = 0; r < rows; r++)
			sft_quantize_row(dtype, model->params + m->offset + r * m->IN,
							 w->data + m->packed + r * row_bytes, m->IN);
	}
	*out = w;
	return SFT_OK;
}

void
sft_decode_weights_free(SftDecodeWeights *w)
{
	if (w == NULL)
		return;
	sft_free(w->mats);
	sft_free(w->data);
	sft_free(w);
}

size_t
sft_decode_weights_bytes(const SftDecodeWeights *w)
{
	return w ? w->bytes + (size_t) w->n * sizeof(SftPackedMatrix) : 0;
}

/*
 * The packed rows standing for the fp32 rows w[0 .. OUT) of length IN, or
 * NULL when they are not one packed run: they may span several matrices
 * (q | k | v, gate | up) only if those follow each other in the slab.
 */
static const char *
packed_rows(const SftDecodeWeights *pw, const SftModel *model, const float *w, int IN, int OUT)
{
	size_t		off = (size_t) (w - model->params);
	size_t		end = off + (size_t) IN * OUT;
	int			lo = 0,
				hi = pw->n - 1,
				first = -1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (pw->mats[mid].offset <= off)
		{
			first = mid;
			lo = mid + 1;
		}
		else
			hi = mid - 1;
	}
	if (first < 0 || off >= pw->mats[first].offset + pw->mats[first].numel)
		return NULL;
	for (int i = first;; i++)
	{
		const SftPackedMatrix *m = &pw->mats[i];

		if (m->IN != IN)
			return NULL;
		if (m->offset + m->numel >= end)
			break;
		if (i + 1 == pw->n || pw->mats[i + 1].offset != m->offset + m->numel)
			return NULL;
	}
	if ((off - pw->mats[first].offset) % IN != 0)
		return NULL;
	return pw->data + pw->mats[first].packed +
		(off - pw->mats[first].offset) / IN * sft_dtype_row_bytes(pw->dtype, IN);
}

void
sft_decoder_use_weights(SftDecoder *d, const SftDecodeWeights *weights)
{
	d->weights = weights;
}

SftStatus
sft_decoder_new(const SftModel *model, int max_seq, SftDecoder **out, SftError *err)
{
	const SftLlamaConfig *c = &model->cfg;
	size_t		C = c->hidden_size, F = c->intermediate_size, HD = c->head_dim;
	size_t		QH = c->n_heads * HD, KVH = c->n_kv_heads * HD;
	size_t		QKV = QH + 2 * KVH, CH = SFT_DECODE_CHUNK;
	size_t		cache, n_work, row = 0;
	SftDecoder *d;
	float	   *p;
	float		inv_freq[SFT_CONFIG_MAX_HEAD_DIM / 2];

	*out = NULL;
	if (max_seq <= 0 || max_seq > c->max_position)
		return sft_error(err, SFT_ERR_INVALID,
						 "decoder length %d is out of range (1..%d, the model's max_position_embeddings)",
						 max_seq, c->max_position);
	d = sft_calloc(1, sizeof(SftDecoder));
	if (d == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for the decoder");
	d->model = model;
	d->max_seq = max_seq;
	d->local_rows = local_cache_rows(c, max_seq);
	cache = cache_rows(c, max_seq) * KVH;
	n_work = work_floats(c, max_seq);
	d->layer_row = sft_alloc(sizeof(size_t) * c->n_layers);
	d->kcache = sft_alloc(cache * sizeof(float));
	d->vcache = sft_alloc(cache * sizeof(float));
	d->work = sft_alloc(n_work * sizeof(float));
	d->posv = sft_alloc(CH * sizeof(int32_t));
	d->pool = sft_pool_new(openblas_get_num_threads());
	if (d->layer_row == NULL || d->kcache == NULL || d->vcache == NULL || d->work == NULL ||
		d->posv == NULL || d->pool == NULL)
	{
		sft_decoder_free(d);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for a KV cache of %d tokens", max_seq);
	}
	p = d->work;
	d->x = p, p += CH * C;
	d->xn = p, p += CH * C;
	d->proj = p, p += CH * C;
	d->qkv = p, p += CH * QKV;
	d->att = p, p += CH * QH;
	d->gu = p, p += CH * 2 * F;
	d->h = p, p += CH * F;
	d->lse = p, p += CH * (c->n_heads + c->n_kv_heads);	/* also the q/k norms' rstd */
	d->rstd = p, p += CH;
	d->attn_scratch = p, p += attention_scratch_floats(max_seq, c->n_heads / c->n_kv_heads,
													   c->head_dim);
	d->cos_tab = p, p += (size_t) max_seq * (HD / 2);
	d->sin_tab = p, p += (size_t) max_seq * (HD / 2);
	sft_rope_inv_freq(inv_freq, c, 0);
	sft_rope_tables(d->cos_tab, d->sin_tab, max_seq, c->head_dim, inv_freq);
	if (sft_config_has_local_layers(c))
	{
		d->cos_loc = p, p += (size_t) max_seq * (HD / 2);
		d->sin_loc = p;
		sft_rope_inv_freq(inv_freq, c, 1);
		sft_rope_tables(d->cos_loc, d->sin_loc, max_seq, c->head_dim, inv_freq);
	}
	for (int l = 0; l < c->n_layers; l++)
	{
		d->layer_row[l] = row;
		row += sft_layer_window(c, l) ? (size_t) d->local_rows : (size_t) max_seq;
	}
	*out = d;
	return SFT_OK;
}

void
sft_decoder_free(SftDecoder *d)
{
	if (d == NULL)
		return;
	sft_free(d->layer_row);
	sft_free(d->kcache);
	sft_free(d->vcache);
	sft_free(d->work);
	sft_free(d->posv);
	sft_free(d->lora_a);
	sft_pool_free(d->pool);
	sft_free(d);
}

SftStatus
sft_decoder_use_adapter(SftDecoder *d, const SftLoraAdapter *adapter, SftError *err)
{
	const SftLlamaConfig *c = &d->model->cfg;
	size_t		max_out, need;
	SftStatus	st;

	if (adapter == NULL)
	{
		d->adapter = NULL;
		return SFT_OK;
	}
	if ((st = sft_lora_adapter_check_base(adapter, c, err)) != SFT_OK)
		return st;
	max_out = (size_t) c->n_heads * c->head_dim;
	if ((size_t) c->hidden_size > max_out)
		max_out = (size_t) c->hidden_size;
	if ((size_t) c->intermediate_size > max_out)
		max_out = (size_t) c->intermediate_size;
	need = (size_t) SFT_DECODE_CHUNK * ((size_t) adapter->config.r + max_out);
	if (need > d->lora_floats)
	{
		float	   *p = sft_alloc(need * sizeof(float));

		if (p == NULL)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory for the adapter's buffers");
		sft_free(d->lora_a);
		d->lora_a = p;
		d->lora_floats = need;
	}
	d->lora_b = d->lora_a + (size_t) SFT_DECODE_CHUNK * adapter->config.r;
	d->adapter = adapter;
	d->lora_scale = sft_lora_scale(&adapter->config);
	return SFT_OK;
}

void
sft_decoder_reset(SftDecoder *d)
{
	d->pos = 0;
	d->local_base = 0;
}

int
sft_decoder_position(const SftDecoder *d)
{
	return d->pos;
}

/*
 * y[n, OUT] = x[n, IN] W[OUT, IN]^T.  A prompt chunk goes through BLAS; a
 * single token, or one token of each of n sequences (rows), is memory-bound:
 * matrix-vector products reading each weight row once for every row, from
 * the reduced-precision copy when the decoder has one, with exactly the sums
 * of a single token's product.
 */
static void
linear(SftDecoder *d, float *y, const float *x, const float *w, int n, bool rows,
	   int IN, int OUT)
{
	const char *qw = NULL;

	if (!(n == 1 || rows))
	{
		matmul_forward(y, x, w, n, IN, OUT);
		return;
	}
	if (d->weights)
		qw = packed_rows(d->weights, d->model, w, IN, OUT);
	if ((int64_t) n * IN * OUT < 65536)
	{
		/* not worth waking anyone for */
		if (qw)
			sft_matvec_quant_rows(d->weights->dtype, y, x, n, qw, IN, OUT);
		else
			matvec_forward_rows(y, x, n, w, IN, OUT);
	}
	else
	{
		MatvecJob	job = {.y = y, .x = x, .w = w, .qw = qw, .nx = n, .IN = IN, .OUT = OUT};

		if (qw)
		{
			job.dtype = d->weights->dtype;
			job.row_bytes = sft_dtype_row_bytes(job.dtype, IN);
		}
		atomic_init(&job.next, 0);
		sft_pool_run(d->pool, matvec_job, &job);
	}
}

/*
 * Makes room for n more tokens in the sliding layers' caches: when they
 * would overflow, keep the last W - 1 rows (all the next query can see) and
 * move them to the front.
 */
static void
slide_local_caches(SftDecoder *d, int n)
{
	const SftLlamaConfig *c = &d->model->cfg;
	size_t		KVH = (size_t) c->n_kv_heads * c->head_dim;
	int			held = d->pos - d->local_base;
	int			keep;

	if (held + n <= d->local_rows)
		return;
	keep = c->sliding_window - 1 < held ? c->sliding_window - 1 : held;
	for (int l = 0; l < c->n_layers; l++)
		if (sft_layer_window(c, l))
		{
			float	   *kc = d->kcache + d->layer_row[l] * KVH;
			float	   *vc = d->vcache + d->layer_row[l] * KVH;

			memmove(kc, kc + (size_t) (held - keep) * KVH, sizeof(float) * keep * KVH);
			memmove(vc, vc + (size_t) (held - keep) * KVH, sizeof(float) * keep * KVH);
		}
	d->local_base = d->pos - keep;
}

/* Per-head RMSNorm of q and k in qkv [n, QKV], in place (Qwen3, Gemma 3). */
static void
qk_norm(SftDecoder *d, const SftLayerPtrs *w, int n)
{
	const SftModel *m = d->model;
	const SftLlamaConfig *c = &m->cfg;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	size_t		QKV = (size_t) (NH + 2 * NKV) * HD;

	for (int i = 0; i < n; i++)
	{
		float	   *row = d->qkv + i * QKV;

		rmsnorm_forward(row, d->lse, row, w->q_norm, NH, HD, c->rms_norm_eps, m->arch.norm_offset);
		rmsnorm_forward(row + (size_t) NH * HD, d->lse, row + (size_t) NH * HD, w->k_norm, NKV, HD,
						c->rms_norm_eps, m->arch.norm_offset);
	}
}

/* attention of one token of each of n sequences, one (sequence, kv head) per task */
typedef struct RowsAttnJob
{
	SftDecoder *const *seqs;
	float	   *out, *lse, *scratch;	/* scratch [threads, S of the work decoder] */
	const float *q;				/* [n, QKV] */
	int			layer, n, NH, NKV, HD, QKV, S, window;
	float		scale;
	atomic_int	next;
} RowsAttnJob;

static void
rows_attn_job(void *ctx, int thread, int n_threads)
{
	RowsAttnJob *j = ctx;
	int			G = j->NH / j->NKV,
				KVH = j->NKV * j->HD;
	int			task;

	while ((task = sft_pool_next_task(&j->next)) < j->n * j->NKV)
	{
		int			i = task / j->NKV,
					g = task % j->NKV;
		const SftDecoder *sd = j->seqs[i];
		const float *kc = sd->kcache + sd->layer_row[j->layer] * KVH;
		const float *vc = sd->vcache + sd->layer_row[j->layer] * KVH;
		int			base = j->window ? sd->local_base : 0;	/* position of cache row 0 */

		/* the call a single token's step makes (attn_job): the same sums */
		attention_forward_one(j->out + (size_t) i * j->NH * j->HD + (size_t) g * G * j->HD,
							  j->lse + (size_t) i * j->NH + g * G,
							  j->q + (size_t) i * j->QKV + (size_t) g * G * j->HD,
							  kc + (size_t) g * j->HD, vc + (size_t) g * j->HD, KVH,
							  sd->pos + 1 - base, G, 1, j->HD, j->scale, j->window,
							  j->scratch + (size_t) thread * j->S);
	}
}

/*
 * y[n, OUT] (rows ldy apart) += s * B (A x[n, IN]) when the decoder's
 * adapter targets this projection of layer l.
 */
static void
lora_forward(SftDecoder *d, float *y, int ldy, const float *x, int n, bool rows, int l,
			 SftLoraModule module)
{
	const SftLoraAdapter *a = d->adapter;
	int			ia = a ? sft_lora_adapter_find(a, l, module, 0) : -1;
	const float *A, *B;
	int			r, IN, OUT;
	float		s = d->lora_scale;

	if (ia < 0)
		return;
	A = a->params + a->tensors[ia].offset;	/* [r, IN] */
	B = a->params + a->tensors[ia + 1].offset;	/* [OUT, r] */
	r = a->config.r;
	IN = (int) a->tensors[ia].shape[1];
	OUT = (int) a->tensors[ia + 1].shape[0];
	if (!(n == 1 || rows))
	{
		/* a prompt chunk: y += s (x A^T) B^T, the second product straight into y */
		matmul_forward(d->lora_a, x, A, n, IN, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, OUT, r, s, d->lora_a, r, B, r,
					1.0f, y, ldy);
		return;
	}
	matvec_forward_rows(d->lora_a, x, n, A, IN, r);
	matvec_forward_rows(d->lora_b, d->lora_a, n, B, r, OUT);
	for (int i = 0; i < n; i++)
	{
		float	   *yi = y + (size_t) i * ldy;
		const float *bi = d->lora_b + (size_t) i * OUT;

		for (int j = 0; j < OUT; j++)
			yi[j] += s * bi[j];
	}
}

/*
 * Runs n <= SFT_DECODE_CHUNK tokens through the model with d's buffers and
 * threads.  seqs == NULL: n consecutive tokens of d's own sequence at
 * positions d->pos.. (a prompt chunk, or one new token); logits [V] of the
 * last.  seqs given: token i is the next token of sequence seqs[i], at that
 * sequence's position and into its KV cache (d is the one with the longest
 * cache, so its scratch fits every row); logits [n, V].  Each row of a batch
 * is computed with the very sums of a single token's step.
 */
static void
forward_tokens(SftDecoder *d, SftDecoder *const *seqs, const int32_t *tokens, int n,
			   float *logits)
{
	const SftModel *m = d->model;
	const SftLlamaConfig *c = &m->cfg;
	const SftArch *arch = &m->arch;
	int			C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
	int			NH = c->n_heads, NKV = c->n_kv_heads, HD = c->head_dim;
	int			QH = NH * HD, KVH = NKV * HD, QKV = QH + 2 * KVH;
	bool		rows = seqs != NULL;
	int			p0 = d->pos;
	float	   *params = m->params;
	float		eps = c->rms_norm_eps,
				noff = arch->norm_offset;

	if (sft_config_has_local_layers(c))
	{
		if (rows)
			for (int i = 0; i < n; i++)
				slide_local_caches(seqs[i], 1);
		else
			slide_local_caches(d, n);
	}
	for (int i = 0; i < n; i++)
		d->posv[i] = rows ? seqs[i]->pos : p0 + i;
	embedding_forward(d->x, tokens, params + m->embed, n, C);
	if (arch->embed_scale != 1.0f)
		for (size_t i = 0; i < (size_t) n * C; i++)
			d->x[i] *= arch->embed_scale;
	for (int l = 0; l < c->n_layers; l++)
	{
		SftLayerPtrs w = sft_layer_ptrs(m, params, l);
		int			window = sft_layer_window(c, l);
		int			rope = sft_layer_uses_rope(c, l);

		rmsnorm_forward(d->xn, d->rstd, d->x, w.attn_norm, n, C, eps, noff);
		linear(d, d->qkv, d->xn, w.wqkv, n, rows, C, QKV);
		if (w.bqkv)
			bias_forward(d->qkv, w.bqkv, n, QKV, QKV);
		if (d->adapter)
		{
			lora_forward(d, d->qkv, QKV, d->xn, n, rows, l, SFT_LORA_Q);
			lora_forward(d, d->qkv + QH, QKV, d->xn, n, rows, l, SFT_LORA_K);
			lora_forward(d, d->qkv + QH + KVH, QKV, d->xn, n, rows, l, SFT_LORA_V);
		}
		if (w.q_norm)
			qk_norm(d, &w, n);
		for (int i = 0; i < n; i++)
		{
			SftDecoder *sd = rows ? seqs[i] : d;
			int			base = window ? sd->local_base : 0;	/* position of cache row 0 */
			float	   *qkv = d->qkv + (size_t) i * QKV;
			float	   *kc = sd->kcache + sd->layer_row[l] * KVH;
			float	   *vc = sd->vcache + sd->layer_row[l] * KVH;

			if (rope)
				rope_forward(qkv, &d->posv[i], window ? sd->cos_loc : sd->cos_tab,
							 window ? sd->sin_loc : sd->sin_tab, 1, QKV, NH + NKV, HD);
			memcpy(kc + (size_t) (d->posv[i] - base) * KVH, qkv + QH, sizeof(float) * KVH);
			memcpy(vc + (size_t) (d->posv[i] - base) * KVH, qkv + QH + KVH, sizeof(float) * KVH);
		}
		if (rows)
		{
			RowsAttnJob job = {
				.seqs = seqs, .out = d->att, .lse = d->lse, .scratch = d->attn_scratch,
				.q = d->qkv, .layer = l, .n = n, .NH = NH, .NKV = NKV, .HD = HD, .QKV = QKV,
				.S = d->max_seq, .window = window, .scale = arch->attn_scale
			};

			atomic_init(&job.next, 0);
			sft_pool_run(d->pool, rows_attn_job, &job);
		}
		else if (n == 1)
		{
			float	   *kc = d->kcache + d->layer_row[l] * KVH;
			float	   *vc = d->vcache + d->layer_row[l] * KVH;
			int			nkv = p0 + 1 - (window ? d->local_base : 0);
			AttnJob		job = {
				.out = d->att, .lse = d->lse, .scratch = d->attn_scratch, .q = d->qkv,
				.k = kc, .v = vc, .ldkv = KVH, .nkv = nkv, .NH = NH, .NKV = NKV,
				.HD = HD, .S = d->max_seq, .window = window, .scale = arch->attn_scale
			};

			atomic_init(&job.next, 0);
			sft_pool_run(d->pool, attn_job, &job);
		}
		else
			attention_forward(d->att, QH, d->lse, d->qkv, QKV,
							  d->kcache + d->layer_row[l] * KVH, d->vcache + d->layer_row[l] * KVH,
							  KVH, n, p0 + n - (window ? d->local_base : 0), NH, NKV, HD,
							  arch->attn_scale, window, d->attn_scratch);
		linear(d, d->proj, d->att, w.wo, n, rows, QH, C);
		lora_forward(d, d->proj, C, d->att, n, rows, l, SFT_LORA_O);
		if (w.attn_post_norm)
			rmsnorm_forward(d->proj, d->rstd, d->proj, w.attn_post_norm, n, C, eps, noff);
		residual_forward(d->x, d->x, d->proj, (size_t) n * C);
		rmsnorm_forward(d->xn, d->rstd, d->x, w.mlp_norm, n, C, eps, noff);
		linear(d, d->gu, d->xn, w.wgu, n, rows, C, 2 * F);
		if (d->adapter)
		{
			lora_forward(d, d->gu, 2 * F, d->xn, n, rows, l, SFT_LORA_GATE);
			lora_forward(d, d->gu + F, 2 * F, d->xn, n, rows, l, SFT_LORA_UP);
		}
		(arch->geglu ? geglu_tanh_forward : swiglu_forward) (d->h, d->gu, n, F);
		linear(d, d->proj, d->h, w.wdown, n, rows, F, C);
		lora_forward(d, d->proj, C, d->h, n, rows, l, SFT_LORA_DOWN);
		if (w.mlp_post_norm)
			rmsnorm_forward(d->proj, d->rstd, d->proj, w.mlp_post_norm, n, C, eps, noff);
		residual_forward(d->x, d->x, d->proj, (size_t) n * C);
	}
	if (rows)
	{
		for (int i = 0; i < n; i++)
			seqs[i]->pos++;
		rmsnorm_forward(d->xn, d->rstd, d->x, params + m->final_norm, n, C, eps, noff);
		linear(d, logits, d->xn, params + m->lm_head, n, true, C, V);
		for (int i = 0; i < n && arch->softcap > 0.0f; i++)
			softcap_forward(logits + (size_t) i * V, NULL, arch->softcap, V);
		return;
	}
	d->pos += n;
	if (logits)
	{
		/* only the last token's logits are asked for */
		rmsnorm_forward(d->xn, d->rstd, d->x + (size_t) (n - 1) * C, params + m->final_norm,
						1, C, eps, noff);
		linear(d, logits, d->xn, params + m->lm_head, 1, false, C, V);
		if (arch->softcap > 0.0f)
			softcap_forward(logits, NULL, arch->softcap, V);
	}
}

SftStatus
sft_decoder_feed(SftDecoder *d, const int32_t *tokens, int n, float *logits, SftError *err)
{
	int			V = d->model->cfg.vocab_size;

	if (n <= 0 || tokens == NULL)
		return sft_error(err, SFT_ERR_INVALID, "no tokens to feed the decoder");
	if (n > d->max_seq - d->pos)
		return sft_error(err, SFT_ERR_LIMIT,
						 "the sequence would reach %lld tokens, more than the decoder's %d",
						 (long long) d->pos + n, d->max_seq);
	for (int i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= V)
			return sft_error(err, SFT_ERR_INVALID,
							 "token id %d is outside the vocabulary (%d)", (int) tokens[i], V);
	for (int i = 0; i < n; i += SFT_DECODE_CHUNK)
	{
		int			k = n - i < SFT_DECODE_CHUNK ? n - i : SFT_DECODE_CHUNK;

		forward_tokens(d, NULL, tokens + i, k, i + k == n ? logits : NULL);
	}
	return SFT_OK;
}

SftStatus
sft_decoder_step_batch(SftDecoder *const *decs, int n, const int32_t *tokens, float *logits,
					   SftError *err)
{
	SftDecoder *work;
	int			V;

	if (n <= 0 || decs == NULL || tokens == NULL || logits == NULL)
		return sft_error(err, SFT_ERR_INVALID, "no sequences to step");
	if (n > SFT_DECODE_CHUNK)
		return sft_error(err, SFT_ERR_LIMIT, "at most %d sequences step together, not %d",
						 SFT_DECODE_CHUNK, n);
	work = decs[0];
	V = work->model->cfg.vocab_size;
	for (int i = 0; i < n; i++)
	{
		const SftDecoder *d = decs[i];

		if (d->model != work->model || d->weights != work->weights ||
			d->adapter != work->adapter)
			return sft_error(err, SFT_ERR_INVALID,
							 "sequences stepped together must share one model, its weights and its adapter");
		for (int k = 0; k < i; k++)
			if (decs[k] == d)
				return sft_error(err, SFT_ERR_INVALID, "sequence %d is stepped twice", i);
		if (d->pos >= d->max_seq)
			return sft_error(err, SFT_ERR_LIMIT,
							 "sequence %d would reach %d tokens, more than its decoder's %d",
							 i, d->pos + 1, d->max_seq);
		if (tokens[i] < 0 || tokens[i] >= V)
			return sft_error(err, SFT_ERR_INVALID,
							 "token id %d is outside the vocabulary (%d)", (int) tokens[i], V);
		if (d->max_seq > work->max_seq)
			work = decs[i];
	}
	forward_tokens(work, decs, tokens, n, logits);
	return SFT_OK;
}
