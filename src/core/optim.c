/*
 * optim.c: AdamW, the global gradient norm, and learning-rate schedules.
 *
 * The schedules are those of Hugging Face transformers (so a run configured
 * like an HF Trainer run sees the same learning rates), with a floor:
 *   warmup (all schedules):  lr * step / warmup_steps for step < warmup_steps
 *                            (so step 0 has lr 0 when there is a warmup, as in HF)
 *   cosine:   factor = 0.5 (1 + cos(pi progress)),  progress = (step - warmup)
 *             / (total - warmup) clamped to [0, 1]   (get_cosine_with_min_lr_
 *             schedule_with_warmup)
 *   linear:   factor = 1 - progress                  (get_linear_schedule_with_warmup)
 *   constant: factor = 1
 * and lr * (min_lr_ratio + (1 - min_lr_ratio) factor) after warmup.
 */
#include "optim.h"

#include <math.h>
#if defined(__AVX__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "model.h"			/* SftParamTensor */

double
sft_lr_at(SftLrSchedule schedule, double peak_lr, int64_t step,
		  int64_t total_steps, int64_t warmup_steps, double min_lr_ratio)
{
	double		progress,
				factor;

	if (step < 0)
		step = 0;
	if (warmup_steps > 0 && step < warmup_steps)
		return peak_lr * (double) step / (double) warmup_steps;
	if (schedule == SFT_LR_CONSTANT)
		return peak_lr;
	if (total_steps - warmup_steps <= 0)
		progress = 1.0;
	else
		progress = (double) (step - warmup_steps) / (double) (total_steps - warmup_steps);
	if (progress > 1.0)
		progress = 1.0;
	if (schedule == SFT_LR_COSINE)
		factor = 0.5 * (1.0 + cos(M_PI * progress));
	else
		factor = 1.0 - progress;
	return peak_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor);
}

double
sft_sum_squares(const float *g, size_t n)
{
	double		acc[8] = {0};
	double		s = 0.0;
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += (double) g[i + j] * (double) g[i + j];
	for (; i < n; i++)
		s += (double) g[i] * (double) g[i];
	for (int j = 0; j < 8; j++)
		s += acc[j];
	return s;
}

void
sft_adamw_update(float *params, float *grad, float *m, float *v, size_t n,
				 float grad_scale, const SftAdamWConfig *cfg, double lr,
				 double weight_decay, int64_t t)
{
	float		b1 = (float) cfg->beta1;
	float		b2 = (float) cfg->beta2;
	float		eps = (float) cfg->eps;
	float		decay = (float) (1.0 - lr * weight_decay);
	/* PyTorch: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps */
	float		step_size = (float) (lr / (1.0 - pow(cfg->beta1, (double) t)));
	float		sqrt_bc2 = (float) sqrt(1.0 - pow(cfg->beta2, (double) t));

	size_t		i = 0;

#if defined(__AVX__) && defined(__FMA__)

	/*
	 * gcc leaves a loop with sqrtf scalar unless -fno-math-errno (sqrtf of a
	 * negative sets errno), and this loop is the whole optimizer step: the
	 * same update, eight lanes at a time.
	 */
	{
		__m256		vscale = _mm256_set1_ps(grad_scale),
					vb1 = _mm256_set1_ps(b1),
					vb2 = _mm256_set1_ps(b2),
					v1b1 = _mm256_set1_ps(1.0f - b1),
					v1b2 = _mm256_set1_ps(1.0f - b2),
					veps = _mm256_set1_ps(eps),
					vdecay = _mm256_set1_ps(decay),
					vstep = _mm256_set1_ps(step_size),
					vbc2 = _mm256_set1_ps(sqrt_bc2);

		for (; i + 8 <= n; i += 8)
		{
			__m256		g = _mm256_mul_ps(_mm256_loadu_ps(grad + i), vscale);
			__m256		mi = _mm256_fmadd_ps(vb1, _mm256_loadu_ps(m + i), _mm256_mul_ps(v1b1, g));
			__m256		vi = _mm256_fmadd_ps(vb2, _mm256_loadu_ps(v + i),
											 _mm256_mul_ps(_mm256_mul_ps(v1b2, g), g));
			__m256		p = _mm256_mul_ps(_mm256_loadu_ps(params + i), vdecay);
			__m256		den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc2), veps);

			_mm256_storeu_ps(m + i, mi);
			_mm256_storeu_ps(v + i, vi);
			_mm256_storeu_ps(params + i,
							 _mm256_sub_ps(p, _mm256_div_ps(_mm256_mul_ps(vstep, mi), den)));
			_mm256_storeu_ps(grad + i, _mm256_setzero_ps());
		}
	}
#endif
	for (; i < n; i++)
	{
		float		g = grad[i] * grad_scale;
		float		mi = b1 * m[i] + (1.0f - b1) * g;
		float		vi = b2 * v[i] + (1.0f - b2) * g * g;
		float		p = params[i] * decay;

		m[i] = mi;
		v[i] = vi;
		params[i] = p - step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
		grad[i] = 0.0f;
	}
}

/* ---------------------------------------------------------------------------
 * Passes over the whole slab on the thread pool, in chunks of
 * SFT_OPTIM_CHUNK floats taken one at a time (a descheduled thread delays
 * one chunk, not a fixed share)
 * ------------------------------------------------------------------------- */

#define SFT_OPTIM_CHUNK ((size_t) 1 << 18)	/* 1 MB of each array */

typedef struct SlabJob
{
	size_t		n;				/* slab length */
	size_t		chunk;			/* floats per task */
	atomic_int	next;
	/* AdamW */
	float	   *params, *grad, *m, *v;
	const SftParamTensor *tensors;
	int			n_tensors;
	float		grad_scale;
	const SftAdamWConfig *cfg;
	double		lr;
	int64_t		t;
	/* sum of squares, per chunk (added in chunk order: deterministic) */
	const float *g;
	double	   *sums;			/* [n / chunk, rounded up] */
} SlabJob;

static void
adamw_job(void *ctx, int thread, int n_threads)
{
	SlabJob    *j = ctx;
	int			chunk;

	while ((size_t) (chunk = sft_pool_next_task(&j->next)) * j->chunk < j->n)
	{
		size_t		lo0 = (size_t) chunk * j->chunk;
		size_t		hi0 = lo0 + j->chunk < j->n ? lo0 + j->chunk : j->n;

		/* the chunk may cross tensors with different weight decay */
		for (int i = 0; i < j->n_tensors; i++)
		{
			const SftParamTensor *t = &j->tensors[i];
			size_t		lo = t->offset > lo0 ? t->offset : lo0;
			size_t		hi = t->offset + t->numel < hi0 ? t->offset + t->numel : hi0;

			if (lo < hi)
				sft_adamw_update(j->params + lo, j->grad + lo, j->m + lo, j->v + lo, hi - lo,
								 j->grad_scale, j->cfg, j->lr,
								 t->weight_decay ? j->cfg->weight_decay : 0.0, j->t);
		}
	}
}

static void
sumsq_job(void *ctx, int thread, int n_threads)
{
	SlabJob    *j = ctx;
	int			chunk;

	while ((size_t) (chunk = sft_pool_next_task(&j->next)) * j->chunk < j->n)
	{
		size_t		lo = (size_t) chunk * j->chunk;
		size_t		hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;

		j->sums[chunk] = sft_sum_squares(j->g + lo, hi - lo);
	}
}

void
sft_adamw_update_slab(float *params, float *grad, float *m, float *v, size_t n,
					  const SftParamTensor *tensors, int n_tensors,
					  float grad_scale, const SftAdamWConfig *cfg, double lr,
					  int64_t t, SftThreadPool *pool)
{
	SlabJob		job = {
		.n = n, .chunk = SFT_OPTIM_CHUNK,
		.params = params, .grad = grad, .m = m, .v = v, .tensors = tensors,
		.n_tensors = n_tensors, .grad_scale = grad_scale, .cfg = cfg, .lr = lr, .t = t
	};

	atomic_init(&job.next, 0);
	sft_pool_run(pool, adamw_job, &job);
}

double
sft_sum_squares_pool(const float *g, size_t n, SftThreadPool *pool)
{
	SlabJob		job = {.n = n, .chunk = SFT_OPTIM_CHUNK, .g = g};
	size_t		n_chunks = (n + SFT_OPTIM_CHUNK - 1) / SFT_OPTIM_CHUNK;
	double		s = 0.0;

	/*
	 * Chunk sums added in chunk order whichever thread computed them, so the
	 * norm (and with it clipping) does not depend on scheduling.  Without
	 * memory for the chunk sums, the same chunks in the same order here.
	 */
	job.sums = sft_alloc(sizeof(double) * (n_chunks ? n_chunks : 1));
	if (job.sums == NULL)
	{
		for (size_t lo = 0; lo < n; lo += SFT_OPTIM_CHUNK)
			s += sft_sum_squares(g + lo, n - lo < SFT_OPTIM_CHUNK ? n - lo : SFT_OPTIM_CHUNK);
		return s;
	}
	atomic_init(&job.next, 0);
	sft_pool_run(pool, sumsq_job, &job);
	for (size_t i = 0; i < n_chunks; i++)
		s += job.sums[i];
	sft_free(job.sums);
	return s;
}
