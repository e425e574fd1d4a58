/*
 * optim.h: the optimizer kernels the trainer uses (AdamW, gradient norm) and
 * the learning-rate schedules (sft_lr_at, declared in model.h).
 */
#ifndef SFT_CORE_OPTIM_H
#define SFT_CORE_OPTIM_H

#include "model.h"
#include "threadpool.h"

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
