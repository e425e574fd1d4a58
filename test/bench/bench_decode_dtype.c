/*
 * bench_decode_dtype.c: decode speed and quality of the reduced-precision
 * decode weights (quant.h) against fp32.
 *
 *   bench_decode_dtype [threads=2] [new_tokens=64] [prompt=32]
 *
 * Speed: a SmolLM2-135M-shaped model (random weights, tied embeddings);
 * ROUNDS rounds, each decoding new_tokens greedily with f32, bf16 and q8_0
 * weights in turn (the order rotates every round), so the three share the
 * machine's state; medians of tokens/s and of the per-round ratio to f32.
 *
 * Quality: random weights give nearly uniform next-token distributions, which
 * hide rounding, so a small model (C 256, 4 layers, vocab 512) is first
 * trained to a sparse random Markov chain (each token has a few likely
 * successors), to a loss near the chain's entropy; then on held-out
 * sequences, teacher-forced, the per-token KL(f32 || dtype) of the
 * next-token distributions (mean and max) and the top-1 agreement, and the
 * greedy continuations' token agreement over 8 prompts x new_tokens.
 * The last lines are machine-readable (RESULT ...).
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define ROUNDS 7

static void
die(const char *what, const SftError *err)
{
	fprintf(stderr, "bench_decode_dtype: %s: %s\n", what, err ? err->message : "");
	exit(1);
}

/* tokens/s of greedy decoding n_new tokens after the prompt */
static double
decode_rate(SftDecoder *dec, const int32_t *prompt, int n_prompt, int n_new, float *logits, int V)
{
	SftError	err = {0};
	double		t0;

	sft_decoder_reset(dec);
	if (sft_decoder_feed(dec, prompt, n_prompt, logits, &err) != SFT_OK)
		die("prefill", &err);
	t0 = now();
	for (int i = 0; i < n_new; i++)
	{
		int32_t		tok = sft_sample(logits, V, NULL, NULL, NULL);

		if (sft_decoder_feed(dec, &tok, 1, logits, &err) != SFT_OK)
			die("decode", &err);
	}
	return n_new / (now() - t0);
}

static void
speed(int threads, int n_new, int n_prompt)
{
	SftLlamaConfig cfg = {
		.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
		.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
		.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *model = NULL;
	SftDecoder *dec = NULL;
	SftDecodeWeights *w[SFT_DTYPE_COUNT] = {NULL};
	SftError	err = {0};
	SftRng		rng;
	int32_t    *prompt = malloc(sizeof(int32_t) * n_prompt);
	float	   *logits = malloc(sizeof(float) * cfg.vocab_size);
	double		rate[SFT_DTYPE_COUNT][ROUNDS],
				ratio[SFT_DTYPE_COUNT][ROUNDS];

	if (sft_model_new(&cfg, &model, &err) != SFT_OK ||
		sft_decoder_new(model, n_prompt + n_new + 1, &dec, &err) != SFT_OK)
		die("model", &err);
	sft_model_init_random(model, 1);
	for (int d = 1; d < SFT_DTYPE_COUNT; d++)
		if (sft_decode_weights_new(model, (SftDType) d, &w[d], &err) != SFT_OK)
			die("decode weights", &err);
	sft_rng_seed(&rng, 3);
	for (int i = 0; i < n_prompt; i++)
		prompt[i] = (int32_t) (sft_rng_next(&rng) % cfg.vocab_size);
	for (int r = 0; r < ROUNDS; r++)
	{
		for (int k = 0; k < SFT_DTYPE_COUNT; k++)
		{
			int			d = (k + r) % SFT_DTYPE_COUNT;

			sft_decoder_use_weights(dec, w[d]);
			rate[d][r] = decode_rate(dec, prompt, n_prompt, n_new, logits, cfg.vocab_size);
		}
		for (int d = 0; d < SFT_DTYPE_COUNT; d++)
			ratio[d][r] = rate[d][r] / rate[SFT_DTYPE_F32][r];
	}
	for (int d = 0; d < SFT_DTYPE_COUNT; d++)
	{
		double		bytes = d == 0 ? (double) sft_model_num_params(model) * 4
			: (double) sft_decode_weights_bytes(w[d]);
		double		mr = median(rate[d], ROUNDS),
					mx = median(ratio[d], ROUNDS);

		printf("decode %-4s: %d threads, prompt %d, %d new tokens, %d rounds: median %.2f tokens/s, "
			   "%.2fx f32 (median of per-round ratios), %.0f MB of weights per token\n",
			   sft_dtype_name((SftDType) d), threads, n_prompt, n_new, ROUNDS, mr, mx, bytes / 1e6);
		printf("RESULT speed dtype=%s tokens_per_s=%.2f ratio_to_f32=%.3f\n",
			   sft_dtype_name((SftDType) d), mr, mx);
	}
	for (int d = 1; d < SFT_DTYPE_COUNT; d++)
		sft_decode_weights_free(w[d]);
	sft_decoder_free(dec);
	sft_model_free(model);
	free(prompt);
	free(logits);
}

/* ---------------------------------------------------------------------------
 * Quality on a trained model
 * ------------------------------------------------------------------------- */

#define QV 512
#define QSUCC 4					/* likely successors per token */
#define QLEN 64

typedef struct Chain
{
	int32_t		succ[QV][QSUCC];
	double		prob[QSUCC];	/* shared shape of the successor distribution */
} Chain;

static void
chain_sequence(const Chain *ch, SftRng *r, int32_t *seq, int n)
{
	seq[0] = (int32_t) (sft_rng_next(r) % QV);
	for (int i = 1; i < n; i++)
	{
		double		u = sft_rng_uniform(r),
					acc = 0.0;
		int			k = 0;

		if (u < 0.1)			/* some noise: 10% uniform */
		{
			seq[i] = (int32_t) (sft_rng_next(r) % QV);
			continue;
		}
		u = (u - 0.1) / 0.9;
		for (k = 0; k < QSUCC - 1; k++)
		{
			acc += ch->prob[k];
			if (u < acc)
				break;
		}
		seq[i] = ch->succ[seq[i - 1]][k];
	}
}

static void
log_softmax(double *out, const float *logits, int V)
{
	double		mx = logits[0],
				s = 0.0;

	for (int v = 1; v < V; v++)
		mx = fmax(mx, logits[v]);
	for (int v = 0; v < V; v++)
		s += exp(logits[v] - mx);
	for (int v = 0; v < V; v++)
		out[v] = logits[v] - mx - log(s);
}

static void
quality(int n_new)
{
	SftLlamaConfig cfg = {
		.hidden_size = 256, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64,
		.intermediate_size = 704, .vocab_size = QV, .max_position = 256,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = 1,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftAdamWConfig adam = sft_adamw_config(0.0, 1.0);
	SftModel   *m = NULL;
	SftTrainer *tr = NULL;
	SftDecoder *ref = NULL,
			   *dec = NULL;
	SftError	err = {0};
	SftRng		r;
	Chain		ch;
	int32_t		seqs[8 * QLEN],
				mask[8 * QLEN];
	int			lens[8];
	double		loss = 0.0;
	int64_t		nt = 0;
	float	   *lr = malloc(sizeof(float) * QV),
			   *ld = malloc(sizeof(float) * QV);
	double	   *pr = malloc(sizeof(double) * QV),
			   *pd = malloc(sizeof(double) * QV);
	double		entropy = 0.0;

	sft_rng_seed(&r, 77);
	for (int t = 0; t < QV; t++)
		for (int k = 0; k < QSUCC; k++)
			ch.succ[t][k] = (int32_t) (sft_rng_next(&r) % QV);
	ch.prob[0] = 0.55, ch.prob[1] = 0.25, ch.prob[2] = 0.12, ch.prob[3] = 0.08;
	for (int k = 0; k < QSUCC; k++)
		entropy -= 0.9 * ch.prob[k] * log(0.9 * ch.prob[k] + 0.1 / QV);
	entropy -= 0.1 * log(0.1 / QV);
	if (sft_model_new(&cfg, &m, &err) != SFT_OK ||
		sft_trainer_new(m, 8 * QLEN, 0.0f, 1, &tr, &err) != SFT_OK)
		die("quality model", &err);
	sft_model_init_random(m, 5);
	for (int i = 0; i < 8 * QLEN; i++)
		mask[i] = 1;
	for (int s = 0; s < 8; s++)
		lens[s] = QLEN;
	for (int step = 0; step < 300; step++)
	{
		SftBatch	b = {8, lens, seqs, mask};

		for (int s = 0; s < 8; s++)
			chain_sequence(&ch, &r, seqs + s * QLEN, QLEN);
		if (sft_trainer_accumulate(tr, &b, &loss, &nt, &err) != SFT_OK ||
			sft_trainer_step(tr, nt, &adam, 3e-3 * fmin(1.0, (step + 1) / 30.0), NULL, &err) != SFT_OK)
			die("training", &err);
	}
	printf("quality model: C 256, 4 layers, vocab %d, trained 300 AdamW steps on a Markov chain: "
		   "loss %.3f nats/token (chain entropy ~%.3f, uniform %.3f)\n", QV, loss / nt, entropy, log(QV));
	sft_trainer_free(tr);
	if (sft_decoder_new(m, 256, &ref, &err) != SFT_OK || sft_decoder_new(m, 256, &dec, &err) != SFT_OK)
		die("decoders", &err);
	for (int d = 1; d < SFT_DTYPE_COUNT; d++)
	{
		SftDecodeWeights *w = NULL;
		double		kl_sum = 0.0,
					kl_max = 0.0;
		int			n_kl = 0,
					top1 = 0,
					agree = 0,
					total = 0;

		if (sft_decode_weights_new(m, (SftDType) d, &w, &err) != SFT_OK)
			die("decode weights", &err);
		sft_decoder_use_weights(dec, w);
		for (int p = 0; p < 8; p++)
		{
			int32_t		seq[QLEN];
			int32_t		a = 0,
						b = 0;
			int			diverged = 0;

			chain_sequence(&ch, &r, seq, QLEN);
			sft_decoder_reset(ref);
			sft_decoder_reset(dec);
			/* teacher-forced: one token at a time, so every step is a decode step */
			for (int i = 0; i < QLEN; i++)
			{
				double		kl = 0.0;
				int			ar = 0,
							ad = 0;

				sft_decoder_feed(ref, &seq[i], 1, lr, &err);
				sft_decoder_feed(dec, &seq[i], 1, ld, &err);
				log_softmax(pr, lr, QV);
				log_softmax(pd, ld, QV);
				for (int v = 0; v < QV; v++)
				{
					kl += exp(pr[v]) * (pr[v] - pd[v]);
					if (lr[v] > lr[ar])
						ar = v;
					if (ld[v] > ld[ad])
						ad = v;
				}
				kl_sum += kl;
				kl_max = fmax(kl_max, kl);
				n_kl++;
				top1 += ar == ad;
			}
			/* greedy continuation of the first 8 tokens, each decoder on its own */
			sft_decoder_reset(ref);
			sft_decoder_reset(dec);
			sft_decoder_feed(ref, seq, 8, lr, &err);
			sft_decoder_feed(dec, seq, 8, ld, &err);
			for (int i = 0; i < n_new && 8 + i < 255; i++)
			{
				a = sft_sample(lr, QV, NULL, NULL, NULL);
				b = sft_sample(ld, QV, NULL, NULL, NULL);
				if (a != b)
					diverged = 1;
				agree += !diverged;
				total++;
				sft_decoder_feed(ref, &a, 1, lr, &err);
				sft_decoder_feed(dec, &b, 1, ld, &err);
			}
		}
		printf("quality %-4s vs f32: per-token KL mean %.2e, max %.2e nats over %d teacher-forced "
			   "steps; top-1 agreement %d/%d; greedy continuations identical for %d/%d tokens "
			   "(counted up to the first divergence of each)\n",
			   sft_dtype_name((SftDType) d), kl_sum / n_kl, kl_max, n_kl, top1, n_kl, agree, total);
		printf("RESULT quality dtype=%s kl_mean=%.3e kl_max=%.3e top1=%d/%d greedy=%d/%d\n",
			   sft_dtype_name((SftDType) d), kl_sum / n_kl, kl_max, top1, n_kl, agree, total);
		sft_decode_weights_free(w);
	}
	sft_decoder_free(ref);
	sft_decoder_free(dec);
	sft_model_free(m);
	free(lr), free(ld), free(pr), free(pd);
}

int
main(int argc, char **argv)
{
	int			threads = argc > 1 ? atoi(argv[1]) : 2;
	int			n_new = argc > 2 ? atoi(argv[2]) : 64;
	int			n_prompt = argc > 3 ? atoi(argv[3]) : 32;

	if (threads < 1 || n_new < 1 || n_prompt < 1)
	{
		fprintf(stderr, "usage: bench_decode_dtype [threads>=1] [new_tokens>=1] [prompt>=1]\n");
		return 2;
	}
	openblas_set_num_threads(threads);
	quality(n_new);
	speed(threads, n_new, n_prompt);
	return 0;
}
