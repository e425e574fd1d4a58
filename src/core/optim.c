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

	for (size_t i = 0; i < n; i++)
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
