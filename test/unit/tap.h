/*
 * tap.h: a minimal TAP producer for the core's unit tests.  Each check prints
 * "ok N - what" or "not ok N - what"; the test runner counts those lines.
 */
#ifndef SFT_TAP_H
#define SFT_TAP_H

#include <math.h>
#include <stdio.h>

static int tap_count = 0;
static int tap_failures = 0;

static inline int
tap_ok(int cond, const char *what)
{
	tap_count++;
	if (!cond)
		tap_failures++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tap_count, what);
	fflush(stdout);
	return cond;
}

/* The condition is evaluated first, so the description may show its effects. */
#define TAP_OK(cond, ...) do { \
	int tap_cond_ = (cond); \
	char tap_what_[1024]; \
	snprintf(tap_what_, sizeof(tap_what_), __VA_ARGS__); \
	tap_ok(tap_cond_, tap_what_); \
} while (0)

/* Exit status: non-zero when any check failed. */
static inline int
tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}

#endif
