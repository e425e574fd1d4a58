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
#include <pthread.h>
#if defined(__AVX__) && defined(__FMA__)
#include <immintrin.h>
#endif

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
 * Threaded passes over the slab
 * ------------------------------------------------------------------------- */

#define SFT_OPTIM_MAX_THREADS 16

typedef struct SlabJob
{
	size_t		lo, hi;			/* element range [lo, hi) of the slab */
	/* AdamW */
	float	   *params, *grad, *m, *v;
	const SftParamTensor *tensors;
	int			n_tensors;
	float		grad_scale;
	const SftAdamWConfig *cfg;
	double		lr;
	int64_t		t;
	/* sum of squares */
	const float *g;
	double		sum;
} SlabJob;

static void *
adamw_job(void *arg)
{
	SlabJob    *j = arg;

	for (int i = 0; i < j->n_tensors; i++)
	{
		const SftParamTensor *t = &j->tensors[i];
		size_t		lo = t->offset > j->lo ? t->offset : j->lo;
		size_t		hi = t->offset + t->numel < j->hi ? t->offset + t->numel : j->hi;

		if (lo < hi)
			sft_adamw_update(j->params + lo, j->grad + lo, j->m + lo, j->v + lo, hi - lo,
							 j->grad_scale, j->cfg, j->lr,
							 t->weight_decay ? j->cfg->weight_decay : 0.0, j->t);
	}
	return NULL;
}

static void *
sumsq_job(void *arg)
{
	SlabJob    *j = arg;

	j->sum = sft_sum_squares(j->g + j->lo, j->hi - j->lo);
	return NULL;
}

/*
 * Runs fn on n_threads equal ranges of [0, n) (job 0 in the calling thread);
 * a range whose thread cannot start runs in the calling thread afterwards.
 */
static void
run_split(SlabJob *jobs, size_t n, int n_threads, void *(*fn) (void *))
{
	pthread_t	tid[SFT_OPTIM_MAX_THREADS];
	int			started[SFT_OPTIM_MAX_THREADS] = {0};

	if (n_threads < 1)
		n_threads = 1;
	if (n_threads > SFT_OPTIM_MAX_THREADS)
		n_threads = SFT_OPTIM_MAX_THREADS;
	for (int i = 0; i < n_threads; i++)
	{
		jobs[i] = jobs[0];
		/* ranges aligned to 16 floats so no two threads share a cache line */
		jobs[i].lo = (n / n_threads * i) & ~(size_t) 15;
		jobs[i].hi = i + 1 == n_threads ? n : (n / n_threads * (i + 1)) & ~(size_t) 15;
	}
	for (int i = 1; i < n_threads; i++)
		started[i] = pthread_create(&tid[i], NULL, fn, &jobs[i]) == 0;
	fn(&jobs[0]);
	for (int i = 1; i < n_threads; i++)
	{
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			fn(&jobs[i]);
	}
}

void
sft_adamw_update_slab(float *params, float *grad, float *m, float *v,
					  const SftParamTensor *tensors, int n_tensors,
					  float grad_scale, const SftAdamWConfig *cfg, double lr,
					  int64_t t, int n_threads)
{
	SlabJob		jobs[SFT_OPTIM_MAX_THREADS];
	size_t		n = 0;

	for (int i = 0; i < n_tensors; i++)
		if (tensors[i].offset + tensors[i].numel > n)
			n = tensors[i].offset + tensors[i].numel;
	jobs[0] = (SlabJob) {
		.params = params, .grad = grad, .m = m, .v = v, .tensors = tensors,
		.n_tensors = n_tensors, .grad_scale = grad_scale, .cfg = cfg, .lr = lr, .t = t
	};
	run_split(jobs, n, n_threads, adamw_job);
}

double
sft_sum_squares_threaded(const float *g, size_t n, int n_threads)
{
	SlabJob		jobs[SFT_OPTIM_MAX_THREADS];
	double		s = 0.0;

	if (n_threads < 1)
		n_threads = 1;
	if (n_threads > SFT_OPTIM_MAX_THREADS)
		n_threads = SFT_OPTIM_MAX_THREADS;
	jobs[0] = (SlabJob) {.g = g};
	run_split(jobs, n, n_threads, sumsq_job);
	for (int i = 0; i < n_threads; i++)
		s += jobs[i].sum;
	return s;
}
