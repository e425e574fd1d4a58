/*
 * sampler.c: picks the next token from logits.
 *
 * The order is Hugging Face generate()'s warper order:
 *   1. temperature: logits / temperature (temperature <= 0 means greedy:
 *      the argmax, lowest id on ties, no randomness consumed; so does a
 *      NULL cfg, rng or scratch);
 *   2. top-k: keep tokens whose scaled logit is >= the k-th largest (ties
 *      with the k-th value are kept, as TopKLogitsWarper does);
 *   3. top-p: over the softmax of what is left, sorted by probability,
 *      drop the least likely tokens while their cumulative mass stays
 *      <= 1 - top_p (TopPLogitsWarper), always keeping the most likely one;
 *   4. draw from the renormalised remainder with the seeded SftRng.
 * The same logits, settings and rng state always give the same token.
 *
 * Scratch (sft_sample_scratch_bytes): vals [V] floats, probs [V] floats,
 * ids [V] int32.
 */
#include "model.h"

#include <math.h>
#include <string.h>

size_t
sft_sample_scratch_bytes(int V)
{
	return (size_t) (V > 0 ? V : 1) * (2 * sizeof(float) + sizeof(int32_t));
}

static int32_t
argmax(const float *x, int V)
{
	int32_t		best = 0;

	for (int i = 1; i < V; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* The k-th largest (1-based) of a[0..n), reordering a (quickselect). */
static float
kth_largest(float *a, int n, int k)
{
	int			lo = 0,
				hi = n - 1,
				target = k - 1;

	while (lo < hi)
	{
		float		pivot = a[lo + (hi - lo) / 2];
		int			i = lo,
					j = hi;

		/* partition descending: [lo, j] >= pivot >= [i, hi] */
		while (i <= j)
		{
			while (a[i] > pivot)
				i++;
			while (a[j] < pivot)
				j--;
			if (i <= j)
			{
				float		t = a[i];

				a[i] = a[j];
				a[j] = t;
				i++;
				j--;
			}
		}
		if (target <= j)
			hi = j;
		else if (target >= i)
			lo = i;
		else
			return a[target];
	}
	return a[target];
}

/* Heap sort of (key, id) pairs: key descending, then id ascending. */
static int
pair_before(const float *key, const int32_t *id, int a, int b)
{
	return key[a] > key[b] || (key[a] == key[b] && id[a] < id[b]);
}

static void
sift_down(float *key, int32_t *id, int root, int n)
{
	for (;;)
	{
		int			child = 2 * root + 1,
					last = root;

		/* a min-heap on "before" puts the latest element at the root */
		if (child < n && pair_before(key, id, last, child))
			last = child;
		if (child + 1 < n && pair_before(key, id, last, child + 1))
			last = child + 1;
		if (last == root)
			return;
		{
			float		tk = key[root];
			int32_t		ti = id[root];

			key[root] = key[last];
			id[root] = id[last];
			key[last] = tk;
			id[last] = ti;
		}
		root = last;
	}
}

static void
sort_pairs(float *key, int32_t *id, int n)
{
	for (int i = n / 2 - 1; i >= 0; i--)
		sift_down(key, id, i, n);
	for (int end = n - 1; end > 0; end--)
	{
		float		tk = key[0];
		int32_t		ti = id[0];

		key[0] = key[end];
		id[0] = id[end];
		key[end] = tk;
		id[end] = ti;
		sift_down(key, id, 0, end);
	}
}

int32_t
sft_sample(const float *logits, int V, const SftSamplerConfig *cfg, SftRng *rng,
		   void *scratch)
{
	float	   *vals = scratch;		/* [V] scaled logits (then quickselect's copy) */
	float	   *probs = vals + V;	/* [V] candidate probabilities */
	int32_t    *ids = (int32_t *) (probs + V);	/* [V] candidate ids */
	float		inv_t,
				threshold = -INFINITY,
				maxv = -INFINITY;
	double		total = 0.0,
				u,
				acc = 0.0;
	int			n = 0;

	/* greedy needs neither rng nor scratch (both may be NULL then) */
	if (cfg == NULL || !(cfg->temperature > 0.0) || V <= 1 || rng == NULL || scratch == NULL)
		return V >= 1 ? argmax(logits, V) : 0;

	/* 1. temperature */
	inv_t = (float) (1.0 / cfg->temperature);
	for (int i = 0; i < V; i++)
		vals[i] = logits[i] * inv_t;

	/* 2. top-k: the threshold from a scratch copy */
	if (cfg->top_k > 0 && cfg->top_k < V)
	{
		memcpy(probs, vals, sizeof(float) * V);
		threshold = kth_largest(probs, V, cfg->top_k);
	}
	for (int i = 0; i < V; i++)
		if (vals[i] >= threshold && !isnan(vals[i]))
		{
			ids[n++] = i;
			if (vals[i] > maxv)
				maxv = vals[i];
		}
	if (n == 0)					/* every logit NaN: nothing to sample from */
		return argmax(logits, V);
	for (int j = 0; j < n; j++)
	{
		probs[j] = expf(vals[ids[j]] - maxv);
		total += probs[j];
	}

	/* 3. top-p over the candidates, most likely first */
	if (cfg->top_p < 1.0)
	{
		double		tail = 0.0;
		int			keep = n;

		sort_pairs(probs, ids, n);
		/* walk up from the least likely: drop while the mass so far <= 1 - top_p */
		for (int j = n - 1; j > 0; j--)
		{
			tail += probs[j] / total;
			if (tail > 1.0 - cfg->top_p)
				break;
			keep = j;
		}
		n = keep;
		total = 0.0;
		for (int j = 0; j < n; j++)
			total += probs[j];
	}

	/* 4. draw */
	u = sft_rng_uniform(rng) * total;
	for (int j = 0; j < n; j++)
	{
		acc += probs[j];
		if (u < acc)
			return ids[j];
	}
	return ids[n - 1];			/* rounding left u at the very end */
}
