/*
 * threadpool.h: a few helper threads for the core's coarse parallel loops
 * (attention over (sequence, kv head, row block) tasks in training, the
 * decode step's matrix-vector products).
 *
 * sft_pool_run(pool, job, ctx) runs job(ctx, thread, n_threads) once on the
 * caller (thread 0) and once on every helper, and returns when all have
 * returned.  Jobs usually share out work through an atomic task counter
 * (sft_pool_next_task), so a thread the OS deschedules holds up at most the
 * task it is in, not a fixed share of the work.
 *
 * Between jobs a helper polls for the next one for 50
 * microseconds, then sleeps on a condition variable: an idle pool costs no
 * CPU.  Helpers block all signals (inside PostgreSQL, signal handlers belong
 * to the backend's own thread) and never call anything but the job.
 */
#ifndef SFT_CORE_THREADPOOL_H
#define SFT_CORE_THREADPOOL_H

#include "common.h"

#include <stdatomic.h>

typedef struct SftThreadPool SftThreadPool;

typedef void (*SftPoolJob) (void *ctx, int thread, int n_threads);

/*
 * A pool of n_threads - 1 helpers (the caller is the n-th thread); fewer if a
 * thread cannot be started, none for n_threads <= 1.  NULL only when out of
 * memory.
 */
SftThreadPool *sft_pool_new(int n_threads);
void		sft_pool_free(SftThreadPool *pool);
int			sft_pool_threads(const SftThreadPool *pool);	/* helpers + 1 */
size_t		sft_pool_memory(void);	/* bytes sft_pool_new allocates */
void		sft_pool_run(SftThreadPool *pool, SftPoolJob job, void *ctx);

/* Task counter for dynamic scheduling: reset to 0 before sft_pool_run. */
static inline int
sft_pool_next_task(atomic_int *counter)
{
	return atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

#endif							/* SFT_CORE_THREADPOOL_H */
