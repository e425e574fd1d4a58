/*
 * bench_lora_decode.c: what serving a LoRA adapter through the shared base
 * costs, against the merged model: batch-1 decode and prompt prefill on a
 * SmolLM2-135M-shaped model (fp32, random weights) with an all-linear r = 16
 * adapter (random, non-zero B).
 *
 *   bench_lora_decode [threads=2] [new_tokens=64] [prompt=256] [r=16]
 *
 * The decoder applies y += s B (A x) on each adapted projection; the merged
 * model has W + s B A in place.  Rounds alternate the two (ROUNDS each,
 * same tokens) and the medians of tokens/s and of the per-round ratios are
 * printed.  Validates first: the adapter decoder's logits equal the merged
 * model's within fp32 rounding.
 */
#include "lora_adapter.h"
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define ROUNDS 7

static const char *SMOLLM2 =
"{\"hidden_size\": 576, \"num_hidden_layers\": 30, \"num_attention_heads\": 9,"
" \"num_key_value_heads\": 3, \"intermediate_size\": 1536, \"vocab_size\": 49152,"
" \"max_position_embeddings\": 2048, \"rope_theta\": 100000, \"tie_word_embeddings\": true}";

static void
die(const char *what, const SftError *err)
{
	fprintf(stderr, "%s: %s\n", what, err->message);
	exit(1);
}

/* seconds of prefilling prompt[n_prompt] and decoding n_new greedy tokens */
static void
run(SftDecoder *d, const int32_t *prompt, int n_prompt, int n_new, float *logits,
	double *prefill_s, double *decode_s)
{
	SftError	err = {0};
	double		t0;
	int32_t		tok = 1;

	sft_decoder_reset(d);
	t0 = now();
	if (sft_decoder_feed(d, prompt, n_prompt, logits, &err) != SFT_OK)
		die("prefill", &err);
	*prefill_s = now() - t0;
	t0 = now();
	for (int i = 0; i < n_new; i++)
	{
		if (sft_decoder_feed(d, &tok, 1, logits, &err) != SFT_OK)
			die("decode", &err);
		tok = (tok * 31 + 7) % 49152;	/* the same fixed tokens for both */
	}
	*decode_s = now() - t0;
}

int
main(int argc, char **argv)
{
	int			threads = argc > 1 ? atoi(argv[1]) : 2;
	int			n_new = argc > 2 ? atoi(argv[2]) : 64;
	int			n_prompt = argc > 3 ? atoi(argv[3]) : 256;
	int			r = argc > 4 ? atoi(argv[4]) : 16;
	SftLlamaConfig mc;
	SftLoraConfig lc = {.r = r, .alpha = 2.0 * r, .targets = SFT_LORA_TARGET_ALL};
	SftLoraAdapter *a = NULL;
	SftModel   *base = NULL, *merged = NULL;
	SftDecoder *da = NULL, *dm = NULL;
	SftError	err = {0};
	SftRng		rng;
	int32_t    *prompt;
	float	   *la, *lm;
	double		pa[ROUNDS], pm[ROUNDS], ta[ROUNDS], tm[ROUNDS], rp[ROUNDS], rt[ROUNDS];
	double		worst = 0, top = 0;
	int			V;

	openblas_set_num_threads(threads);
	if (sft_llama_config_parse(SMOLLM2, strlen(SMOLLM2), &mc, &err) != SFT_OK ||
		sft_model_new(&mc, &base, &err) != SFT_OK || sft_model_new(&mc, &merged, &err) != SFT_OK ||
		sft_lora_adapter_new(&lc, &mc, &a, &err) != SFT_OK)
		die("setup", &err);
	V = mc.vocab_size;
	sft_model_init_random(base, 1);
	sft_rng_seed(&rng, 2);
	for (size_t i = 0; i < a->n_params; i++)
		a->params[i] = 0.02f * sft_rng_normal(&rng);
	memcpy(sft_model_params(merged), sft_model_params(base), sft_model_num_params(base) * sizeof(float));
	if (sft_lora_merge(merged, a, &err) != SFT_OK ||
		sft_decoder_new(base, n_prompt + n_new + 1, &da, &err) != SFT_OK ||
		sft_decoder_new(merged, n_prompt + n_new + 1, &dm, &err) != SFT_OK ||
		sft_decoder_use_adapter(da, a, &err) != SFT_OK)
		die("setup", &err);
	prompt = malloc(sizeof(int32_t) * n_prompt);
	la = malloc(sizeof(float) * V);
	lm = malloc(sizeof(float) * V);
	for (int i = 0; i < n_prompt; i++)
		prompt[i] = (i * 7919 + 13) % V;

	/* validate: same logits after prefill + decode */
	{
		double		p, t;

		run(da, prompt, n_prompt, 4, la, &p, &t);
		run(dm, prompt, n_prompt, 4, lm, &p, &t);
		for (int i = 0; i < V; i++)
		{
			worst = fmax(worst, fabs(la[i] - lm[i]));
			top = fmax(top, fabs(lm[i]));
		}
		if (!(worst <= 1e-4 * (1 + top)))
		{
			fprintf(stderr, "validation failed: logits differ by %g (of %g)\n", worst, top);
			return 1;
		}
	}
	for (int k = 0; k < ROUNDS; k++)
	{
		run(da, prompt, n_prompt, n_new, la, &pa[k], &ta[k]);
		run(dm, prompt, n_prompt, n_new, lm, &pm[k], &tm[k]);
		rp[k] = pm[k] / pa[k];	/* speed ratio adapter / merged */
		rt[k] = tm[k] / ta[k];
	}
	printf("model SmolLM2-135M shape, %.1f M parameters (%.0f MB fp32); adapter all-linear r=%d: %.2f M parameters (%.1f MB, %.1f%% of the base)\n",
		   sft_model_num_params(base) / 1e6, sft_model_num_params(base) * 4 / 1048576.0, r,
		   a->n_params / 1e6, a->n_params * 4 / 1048576.0, 100.0 * a->n_params / sft_model_num_params(base));
	printf("validated: adapter logits = merged within %.2g (max |logit| %.3g)\n", worst, top);
	printf("%d threads, %d rounds alternating, medians:\n", threads, ROUNDS);
	printf("  decode  (%d tokens): base + adapter %.1f tokens/s, merged %.1f tokens/s, ratio %.3f\n",
		   n_new, n_new / median(ta, ROUNDS), n_new / median(tm, ROUNDS), median(rt, ROUNDS));
	printf("  prefill (%d tokens): base + adapter %.0f tokens/s, merged %.0f tokens/s, ratio %.3f\n",
		   n_prompt, n_prompt / median(pa, ROUNDS), n_prompt / median(pm, ROUNDS), median(rp, ROUNDS));
	sft_decoder_free(da);
	sft_decoder_free(dm);
	sft_model_free(base);
	sft_model_free(merged);
	sft_lora_adapter_free(a);
	free(prompt);
	free(la);
	free(lm);
	return 0;
}
