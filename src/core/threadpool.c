/*
 * threadpool.c: helper threads that run one job at a time with the caller
 * (see threadpool.h).
 *
 * A job is published by writing job/ctx, resetting `done` and bumping
 * `generation` (release); helpers poll `generation` (acquire), run the job
 * and count themselves in `done`.  The caller runs its own share, then waits
 * for `done` to reach the helper count before it returns, so job and ctx are
 * never rewritten while a helper may still read them.  The mutex and
 * condition variable only serve helpers that went to sleep after polling.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define SFT_POOL_MAX_THREADS 16
/*
 * How long a helper polls for the next job before it sleeps.  Short: in
 * training, the next thing after a pool job is usually an sgemm on
 * OpenBLAS's own threads, and a helper still spinning then takes a core
 * from it (a spin of 100,000 pause instructions, ~3 ms here, cost training
 * more than a tenth of its speed).  Long enough to bridge the few
 * microseconds between the jobs of a decode step.
 */
#define SFT_POOL_SPIN_NS 50000
#define SFT_POOL_POLLS_PER_CLOCK 64	/* pauses between clock reads */

typedef struct PoolWorker
{
	SftThreadPool *pool;
	int			index;			/* 1 .. n_helpers */
	pthread_t	tid;
} PoolWorker;

struct SftThreadPool
{
	int			n_helpers;
	PoolWorker	workers[SFT_POOL_MAX_THREADS];
	pthread_mutex_t mutex;
	pthread_cond_t wake;
	atomic_int	generation;		/* bumped once per job (and to stop) */
	atomic_int	done;			/* helpers finished with the current job */
	int			stop;
	SftPoolJob	job;			/* the current job */
	void	   *ctx;
};

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* true while a spin that began at *start (0: not yet) should go on */
static int
keep_spinning(long *polls, int64_t *start)
{
	if (++*polls % SFT_POOL_POLLS_PER_CLOCK != 0)
		return 1;
	if (*start == 0)
		*start = now_ns();
	return now_ns() - *start < SFT_POOL_SPIN_NS;
}

static void *
worker_main(void *arg)
{
	PoolWorker *me = arg;
	SftThreadPool *p = me->pool;
	int			seen = 0;

	for (;;)
	{
		int			g;
		long		polls = 0;
		int64_t		spin_start = 0;

		while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
		{
			if (keep_spinning(&polls, &spin_start))
			{
				cpu_relax();
				continue;
			}
			pthread_mutex_lock(&p->mutex);
			while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
				pthread_cond_wait(&p->wake, &p->mutex);
			pthread_mutex_unlock(&p->mutex);
			break;
		}
		seen = g;
		if (p->stop)
			return NULL;
		p->job(p->ctx, me->index, p->n_helpers + 1);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	}
}

SftThreadPool *
sft_pool_new(int n_threads)
{
	SftThreadPool *p = sft_calloc(1, sizeof(SftThreadPool));
	sigset_t	all,
				old;

	if (p == NULL)
		return NULL;
	pthread_mutex_init(&p->mutex, NULL);
	pthread_cond_init(&p->wake, NULL);
	atomic_init(&p->generation, 0);
	atomic_init(&p->done, 0);
	if (n_threads > SFT_POOL_MAX_THREADS + 1)
		n_threads = SFT_POOL_MAX_THREADS + 1;
	/* helpers inherit this mask: signals stay with the caller's thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i + 1 < n_threads; i++)
	{
		PoolWorker *w = &p->workers[p->n_helpers];

		w->pool = p;
		w->index = p->n_helpers + 1;
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
			break;
		p->n_helpers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return p;
}

void
sft_pool_free(SftThreadPool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mutex);
	p->stop = 1;
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mutex);
	for (int i = 0; i < p->n_helpers; i++)
		pthread_join(p->workers[i].tid, NULL);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->mutex);
	sft_free(p);
}

int
sft_pool_threads(const SftThreadPool *p)
{
	return p ? p->n_helpers + 1 : 1;
}

size_t
sft_pool_memory(void)
{
	return sizeof(SftThreadPool);
}

void
sft_pool_run(SftThreadPool *p, SftPoolJob job, void *ctx)
{
	long		polls = 0;
	int64_t		spin_start = 0;

	if (p == NULL || p->n_helpers == 0)
	{
		job(ctx, 0, 1);
		return;
	}
	p->job = job;
	p->ctx = ctx;
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	pthread_mutex_lock(&p->mutex);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mutex);
	job(ctx, 0, p->n_helpers + 1);
	while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n_helpers)
	{
		if (keep_spinning(&polls, &spin_start))
			cpu_relax();
		else
			sched_yield();		/* a helper was descheduled */
	}
}
