/*
 * bench_decode.c: batch-1 KV-cached decode speed on a SmolLM2-135M-shaped
 * model (fp32, tied embeddings, random weights) against the memory-bandwidth
 * bound measured in the same run.
 *
 *   bench_decode [threads=2] [new_tokens=64] [prompt=32] [CONFIG]
 *
 * CONFIG: a config.json of any family, whose shapes replace SmolLM2's.
 *
 * Decode reads every weight once per token (the LM head is the tied
 * embedding matrix, so all of it), so tokens/s cannot beat
 * read bandwidth / weight bytes.  The bandwidth is measured with `threads`
 * threads each summing its share of a 1 GiB buffer (a vectorised
 * sequential read, the access pattern of the decode's matrix-vector
 * products).  Memory bandwidth on a shared machine drifts, so the run
 * alternates: ROUNDS rounds of (one bandwidth pass, one decode of new_tokens);
 * each round gives a fraction decode / bound, and the median of those is
 * reported with the median rates.  The best bandwidth pass is printed too.
 * Validates first: logits are finite and the cached decode's logits equal a
 * fresh prefill of the same tokens.  Prints medians of 3 runs; the last line
 * is machine-readable for test/bench/decode.sh.
 */
#include "model.h"
#include "llama_config.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define ROUNDS 9				/* alternating bandwidth and decode rounds */

typedef struct
{
	const float *p;
	size_t		n;
	float		sum;
} ReadJob;

static void *
read_job(void *arg)
{
	ReadJob    *j = arg;
	float		acc[16] = {0};

	for (size_t i = 0; i + 16 <= j->n; i += 16)
		for (int k = 0; k < 16; k++)
			acc[k] += j->p[i + k];
	for (int k = 0; k < 16; k++)
		j->sum += acc[k];
	return NULL;
}

/* GB/s of one pass reading buf[n] with `threads` threads. */
static double
read_bandwidth(const float *buf, size_t n, int threads)
{
	pthread_t	tid[64];
	ReadJob		jobs[64];
	double		t0,
				dt;

	if (threads > 64)
		threads = 64;
	t0 = now();
	for (int t = 0; t < threads; t++)
	{
		jobs[t].p = buf + n / threads * t;
		jobs[t].n = n / threads;
		jobs[t].sum = 0.0f;
		pthread_create(&tid[t], NULL, read_job, &jobs[t]);
	}
	for (int t = 0; t < threads; t++)
		pthread_join(tid[t], NULL);
	dt = now() - t0;
	if (jobs[0].sum == -1.0f)	/* keep the sums alive */
		printf("#\n");
	return n * sizeof(float) / dt / 1e9;
}

int
main(int argc, char **argv)
{
	int			threads = argc > 1 ? atoi(argv[1]) : 2;
	int			n_new = argc > 2 ? atoi(argv[2]) : 64;
	int			n_prompt = argc > 3 ? atoi(argv[3]) : 32;
	SftLlamaConfig cfg = {
		.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
		.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
		.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *model = NULL;
	SftDecoder *dec = NULL,
			   *check = NULL;
	SftError	err = {0};
	SftRng		rng;
	int32_t    *seq;
	float	   *logits,
			   *logits2;
	double		bw,
				bytes,
				rate,
				maxdiff = 0.0;

	if (threads < 1 || n_new < 1 || n_prompt < 1)
	{
		fprintf(stderr, "usage: bench_decode [threads>=1] [new_tokens>=1] [prompt>=1] [config.json]\n");
		return 2;
	}
	if (argc > 4)
	{
		FILE	   *f = fopen(argv[4], "rb");
		static char text[1 << 20];
		size_t		len = f ? fread(text, 1, sizeof(text), f) : 0;

		if (f)
			fclose(f);
		if (sft_llama_config_parse(text, len, &cfg, &err) != SFT_OK)
		{
			fprintf(stderr, "bench_decode: %s: %s\n", argv[4], err.message);
			return 1;
		}
		printf("model: %s, %s\n", argv[4], sft_family_model_type(cfg.family));
	}
	openblas_set_num_threads(threads);
	seq = malloc(sizeof(int32_t) * (n_prompt + n_new + 1));
	logits = malloc(sizeof(float) * cfg.vocab_size);
	logits2 = malloc(sizeof(float) * cfg.vocab_size);
	if (sft_model_new(&cfg, &model, &err) != SFT_OK ||
		sft_decoder_new(model, n_prompt + n_new + 1, &dec, &err) != SFT_OK ||
		sft_decoder_new(model, n_prompt + n_new + 1, &check, &err) != SFT_OK)
	{
		fprintf(stderr, "bench_decode: %s\n", err.message);
		return 1;
	}
	/*
	 * SFT_BENCH_MIN_AVAILABLE_GB=N: on a shared machine, skip (exit 0, a
	 * SKIPPED line) when MemAvailable is below the fp32 weights + N GB
	 * (the slabs are allocated, not yet touched)
	 */
	if (getenv("SFT_BENCH_MIN_AVAILABLE_GB"))
	{
		double		need = (double) sft_model_num_params(model) * sizeof(float) +
			2.0 * sft_decoder_memory_estimate(&cfg, n_prompt + n_new + 1);
		double		avail_kb = 0.0;
		char		line[256];
		FILE	   *mi = fopen("/proc/meminfo", "r");

		while (mi && fgets(line, sizeof(line), mi))
			if (sscanf(line, "MemAvailable: %lf kB", &avail_kb) == 1)
				break;
		if (mi)
			fclose(mi);
		if (avail_kb > 0 && avail_kb * 1024.0 < need +
			atof(getenv("SFT_BENCH_MIN_AVAILABLE_GB")) * 1073741824.0)
		{
			printf("SKIPPED needs %.1f GB + %s GB, %.1f GB available\n", need / 1073741824.0,
				   getenv("SFT_BENCH_MIN_AVAILABLE_GB"), avail_kb / 1048576.0);
			return 0;
		}
	}
	sft_model_init_random(model, 1);
	sft_rng_seed(&rng, 3);
	for (int i = 0; i < n_prompt; i++)
		seq[i] = (int32_t) (sft_rng_next(&rng) % cfg.vocab_size);

	/* validate: 8 cached steps vs one fresh prefill of the same tokens */
	sft_decoder_feed(dec, seq, n_prompt, logits, &err);
	for (int i = 0; i < 8; i++)
	{
		seq[n_prompt + i] = sft_sample(logits, cfg.vocab_size, NULL, NULL, NULL);
		sft_decoder_feed(dec, &seq[n_prompt + i], 1, logits, &err);
	}
	sft_decoder_feed(check, seq, n_prompt + 8, logits2, &err);
	for (int v = 0; v < cfg.vocab_size; v++)
	{
		if (!isfinite(logits[v]))
			maxdiff = INFINITY;
		maxdiff = fmax(maxdiff, fabs(logits[v] - logits2[v]));
	}
	if (!(maxdiff < 1e-3))
	{
		fprintf(stderr, "bench_decode: validation failed: cached vs prefill logits differ by %g\n",
				maxdiff);
		return 1;
	}
	printf("validation: cached decode logits = prefill logits (max diff %.2g)\n", maxdiff);

	{
		size_t		nbuf = ((size_t) 1 << 30) / sizeof(float);
		float	   *buf = malloc(nbuf * sizeof(float));
		double		bws[ROUNDS],
					toks[ROUNDS],
					fracs[ROUNDS],
					best = 0.0,
					best_tok = 0.0;

		/* every weight once (tied: the embedding is the LM head); the one
		 * embedding row and the KV cache reads are negligible next to it */
		bytes = (double) sft_model_num_params(model) * sizeof(float);
		for (size_t i = 0; i < nbuf; i++)
			buf[i] = (float) (i & 7);
		for (int r = 0; r < ROUNDS; r++)
		{
			double		t0;

			bws[r] = read_bandwidth(buf, nbuf, threads);
			best = fmax(best, bws[r]);
			sft_decoder_reset(dec);
			sft_decoder_feed(dec, seq, n_prompt, logits, &err);
			t0 = now();
			for (int i = 0; i < n_new; i++)
			{
				int32_t		tok = sft_sample(logits, cfg.vocab_size, NULL, NULL, NULL);

				if (sft_decoder_feed(dec, &tok, 1, logits, &err) != SFT_OK)
				{
					fprintf(stderr, "bench_decode: %s\n", err.message);
					return 1;
				}
			}
			toks[r] = n_new / (now() - t0);
			best_tok = fmax(best_tok, toks[r]);
			fracs[r] = toks[r] / (bws[r] * 1e9 / bytes);
		}
		free(buf);
		qsort(bws, ROUNDS, sizeof(double), cmp_double);
		qsort(toks, ROUNDS, sizeof(double), cmp_double);
		qsort(fracs, ROUNDS, sizeof(double), cmp_double);
		bw = bws[ROUNDS / 2];
		rate = toks[ROUNDS / 2];
		printf("sft decode: %d threads, prompt %d, %d new tokens, %d rounds: median %.2f tokens/s; "
			   "bound median %.2f tokens/s (%.1f MB per token at %.2f GB/s read) -> median %.0f%% "
			   "of the bound (range %.0f%%..%.0f%%)\n",
			   threads, n_prompt, n_new, ROUNDS, rate, bw * 1e9 / bytes, bytes / 1e6, bw,
			   100.0 * fracs[ROUNDS / 2], 100.0 * fracs[0], 100.0 * fracs[ROUNDS - 1]);
		/* the best of each: what each reaches when the machine lets it */
		printf("sft decode, best rounds: %.2f tokens/s vs best bandwidth pass %.2f GB/s = %.2f tokens/s "
			   "-> %.0f%% of the bound\n", best_tok, best, best * 1e9 / bytes,
			   100.0 * best_tok / (best * 1e9 / bytes));
		printf("RESULT tokens_per_s=%.2f bound_tokens_per_s=%.2f read_gbps=%.2f fraction=%.3f "
			   "best_fraction=%.3f weights_gb=%.3f\n",
			   rate, bw * 1e9 / bytes, bw, fracs[ROUNDS / 2], best_tok / (best * 1e9 / bytes),
			   bytes / 1e9);
	}
	sft_decoder_free(dec);
	sft_decoder_free(check);
	sft_model_free(model);
	free(seq), free(logits), free(logits2);
	return 0;
}
