/*
 * optim.h: the optimizer: AdamW's settings and kernels, the gradient norm,
 * and the learning-rate schedules.  The trainer (model.h) takes these types;
 * this header does not depend on the model.
 */
#ifndef SFT_CORE_OPTIM_H
#define SFT_CORE_OPTIM_H

#include "common.h"
#include "threadpool.h"

typedef struct SftParamTensor SftParamTensor;	/* model.h */

typedef enum SftLrSchedule
{
	SFT_LR_COSINE = 0,			/* linear warmup, cosine decay to min_lr_ratio * lr */
	SFT_LR_LINEAR,				/* linear warmup, linear decay to min_lr_ratio * lr */
	SFT_LR_CONSTANT				/* linear warmup, then constant */
} SftLrSchedule;

/* Learning rate at optimizer step (0-based) of total_steps. */
double		sft_lr_at(SftLrSchedule schedule, double peak_lr, int64_t step,
					  int64_t total_steps, int64_t warmup_steps, double min_lr_ratio);

typedef struct SftAdamWConfig
{
	double		beta1;
	double		beta2;
	double		eps;
	double		weight_decay;	/* decoupled, matrices only */
	double		max_grad_norm;	/* global-norm clipping; <= 0 disables */
} SftAdamWConfig;

/*
 * The AdamW training uses: torch.optim.AdamW's betas (0.9, 0.999) and eps
 * 1e-8, the defaults TRL's SFTTrainer keeps, with the run's weight decay and
 * clipping norm.
 */
static inline SftAdamWConfig
sft_adamw_config(double weight_decay, double max_grad_norm)
{
	SftAdamWConfig cfg = {0.9, 0.999, 1e-8, weight_decay, max_grad_norm};

	return cfg;
}

/* Sum of squares of g[n], accumulated in double. */
double		sft_sum_squares(const float *g, size_t n);

/*
 * One AdamW update of n parameters, PyTorch's torch.optim.AdamW semantics:
 *   g  = grad_scale * grad                 (1 / n_targets times the clip factor)
 *   p -= lr * weight_decay * p             (decoupled; weight_decay 0 for norms)
 *   m  = beta1 m + (1 - beta1) g
 *   v  = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * t is the 1-based step number.  grad is zeroed on the way (ready for the
 * next accumulation), which saves a separate pass over the slab.
 */
void		sft_adamw_update(float *params, float *grad, float *m, float *v, size_t n,
							 float grad_scale, const SftAdamWConfig *cfg, double lr,
							 double weight_decay, int64_t t);

/*
 * The optimizer step over a whole parameter slab [n]: sft_adamw_update on
 * every tensor (weight_decay for tensors that have weight_decay set, 0 for
 * the others), in chunks shared out over the pool's threads.  The step is
 * memory-bound (seven floats read or written per parameter), and one core
 * alone does not saturate the memory bus.
 */
void		sft_adamw_update_slab(float *params, float *grad, float *m, float *v, size_t n,
								  const SftParamTensor *tensors, int n_tensors,
								  float grad_scale, const SftAdamWConfig *cfg, double lr,
								  int64_t t, SftThreadPool *pool);

/* sft_sum_squares of the slab [n], in chunks over the pool's threads. */
double		sft_sum_squares_pool(const float *g, size_t n, SftThreadPool *pool);

#endif							/* SFT_CORE_OPTIM_H */
