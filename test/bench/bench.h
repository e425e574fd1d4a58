/*
 * bench.h: the timing and statistics helpers the C benchmarks share.
 */
#ifndef SFT_BENCH_H
#define SFT_BENCH_H

#include <stdlib.h>
#include <time.h>

/* Monotonic seconds. */
static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Median of v[n] (sorts v). */
static inline double
median(double *v, int n)
{
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif							/* SFT_BENCH_H */
