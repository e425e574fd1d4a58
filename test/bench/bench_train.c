/*
 * bench_train.c: training throughput of the core on a SmolLM2-135M-shaped
 * model (hidden 576, 30 layers, 9 heads, 3 KV heads, FFN 1536, vocab 49152,
 * tied), or on the shapes of a config.json of any family (CONFIG), random
 * weights, fp32, one 512-token sequence per step with the first third
 * masked out, forward + backward + AdamW.
 *
 *   bench_train [threads=2] [steps=5] [seq_len=512] [CONFIG|-] [LORA_R=0] [CKPT=0]
 *
 * LORA_R > 0 trains a LoRA adapter of that rank on every projection
 * (all-linear, alpha 2 r) of the frozen model instead; CKPT 1 turns
 * activation checkpointing on.
 *
 * Validates before timing (3 steps on one batch: the loss is finite and
 * falls), then times `steps` more, and reports the median step: tokens/s,
 * the model FLOP rate, its ratio to a raw sgemm rate measured in the same
 * run on the model's own matrix shapes, and the peak resident memory.
 * The last line is machine-readable for test/bench/train.sh.
 */
#include "model.h"
#include "llama_config.h"
#include "lora_adapter.h"
#include "quant.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.h"

/*
 * Raw sgemm rate on the shapes one training step uses most (T = seq_len):
 * the fused q|k|v, o, gate|up and down projections, forward and both
 * backward products, and one LM-head chunk.  Median of 3 rounds.
 */
static double
sgemm_rate(const SftLlamaConfig *c, int T)
{
	int			C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
	int			QH = c->n_heads * c->head_dim;
	int			QKV = QH + 2 * c->n_kv_heads * c->head_dim;
	int			R = V > 131072 ? 128 : 256;	/* LM-head rows per chunk */
	int			shapes[][3] = {	/* M, N, K of C = A B^T-like products */
		{T, QKV, C}, {T, C, QH}, {T, 2 * F, C}, {T, C, F},
		{T, C, QKV}, {QKV, C, T}, {T, C, 2 * F}, {2 * F, C, T},
		{R, V, C}, {V, C, R}
	};
	int			nshapes = sizeof(shapes) / sizeof(shapes[0]);
	size_t		maxa = 0;

	for (int s = 0; s < nshapes; s++)
	{
		size_t		a = (size_t) shapes[s][0] * shapes[s][2],
					b = (size_t) shapes[s][1] * shapes[s][2],
					o = (size_t) shapes[s][0] * shapes[s][1];

		maxa = a > maxa ? a : maxa;
		maxa = b > maxa ? b : maxa;
		maxa = o > maxa ? o : maxa;
	}
	float	   *A = malloc(sizeof(float) * maxa),
			   *B = malloc(sizeof(float) * maxa),
			   *Cm = malloc(sizeof(float) * maxa);
	double		rates[3];

	for (size_t i = 0; i < maxa; i++)
		A[i] = B[i] = (float) ((i % 17) - 8) * 0.01f;
	for (int round = 0; round < 3; round++)
	{
		double		flops = 0.0,
					t0 = now();

		for (int s = 0; s < nshapes; s++)
		{
			int			M = shapes[s][0],
						Nn = shapes[s][1],
						K = shapes[s][2];

			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, Nn, K,
						1.0f, A, K, B, K, 0.0f, Cm, Nn);
			flops += 2.0 * M * Nn * K;
		}
		rates[round] = flops / (now() - t0) / 1e9;
	}
	free(A), free(B), free(Cm);
	return median(rates, 3);
}

int
main(int argc, char **argv)
{
	int			threads = argc > 1 ? atoi(argv[1]) : 2;
	int			steps = argc > 2 ? atoi(argv[2]) : 5;
	int			T = argc > 3 ? atoi(argv[3]) : 512;
	SftLlamaConfig cfg = {
		.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
		.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
		.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftAdamWConfig adam = {0.9, 0.95, 1e-8, 0.1, 1.0};
	SftModel   *model = NULL;
	SftTrainer *tr = NULL;
	SftError	err = {0};
	int32_t    *tokens = malloc(sizeof(int32_t) * T),
			   *mask = malloc(sizeof(int32_t) * T);
	SftBatch	batch = {1, &T, tokens, mask};
	SftRng		rng;
	double		losses[3],
			   *times = malloc(sizeof(double) * (steps > 0 ? steps : 1));
	double		loss = 0.0,
				gemm,
				med,
				flops,
				gflops;
	int64_t		nt = 0;
	struct rusage ru;
	size_t		P_layers;
	int			lora_r = argc > 5 ? atoi(argv[5]) : 0;
	double		gnorm = 0;
	int			ckpt = argc > 6 ? atoi(argv[6]) : 0;
	SftLoraAdapter *adapter = NULL;
	SftTrainerOptions topts = {.max_tokens = T, .seed = 1, .checkpoint_activations = ckpt};

	if (threads < 1 || steps < 0 || T < 2)
	{
		fprintf(stderr, "usage: bench_train [threads>=1] [steps>=0] [seq_len>=2] [config.json|-] [lora_r] [ckpt]\n");
		return 2;
	}
	if (argc > 4 && strcmp(argv[4], "-") != 0)
	{
		FILE	   *f = fopen(argv[4], "rb");
		static char text[1 << 20];
		size_t		len = f ? fread(text, 1, sizeof(text), f) : 0;

		if (f)
			fclose(f);
		if (sft_llama_config_parse(text, len, &cfg, &err) != SFT_OK)
		{
			fprintf(stderr, "bench_train: %s: %s\n", argv[4], err.message);
			return 1;
		}
		printf("model: %s, %s\n", argv[4], sft_family_model_type(cfg.family));
	}
	openblas_set_num_threads(threads);
	if (argc > 7 && strcmp(argv[7], "estimate") == 0)
	{
		/* what sft_trainer_memory_estimate_for (sft.max_memory) says, allocating nothing */
		SftLoraConfig lc = {.r = lora_r, .alpha = 2.0 * lora_r, .targets = SFT_LORA_TARGET_ALL};

		printf("RESULT estimate_gb=%.2f\n",
			   sft_trainer_memory_estimate_for(&cfg, &topts, lora_r > 0 ? &lc : NULL) / 1073741824.0);
		return 0;
	}
	if (sft_model_new(&cfg, &model, &err) != SFT_OK)
	{
		fprintf(stderr, "bench_train: %s\n", err.message);
		return 1;
	}
	sft_model_init_random(model, 1);
	if (lora_r > 0)
	{
		SftLoraConfig lc = {.r = lora_r, .alpha = 2.0 * lora_r, .targets = SFT_LORA_TARGET_ALL};

		if (sft_lora_adapter_new(&lc, &cfg, &adapter, &err) != SFT_OK)
		{
			fprintf(stderr, "bench_train: %s\n", err.message);
			return 1;
		}
		sft_lora_init_peft(adapter, 1);
		/* B slightly off zero, as after some training: every product runs */
		for (int i = 0; i < adapter->n_tensors; i++)
			if (adapter->tensors[i].is_b)
				for (size_t j = 0; j < adapter->tensors[i].numel; j++)
					adapter->params[adapter->tensors[i].offset + j] = 1e-3f * (float) ((int) (j % 7) - 3);
		topts.adapter = adapter;
	}
	if (sft_trainer_create(model, &topts, &tr, &err) != SFT_OK)
	{
		fprintf(stderr, "bench_train: %s\n", err.message);
		return 1;
	}
	sft_rng_seed(&rng, 2);
	for (int i = 0; i < T; i++)
	{
		tokens[i] = (int32_t) (sft_rng_next(&rng) % cfg.vocab_size);
		mask[i] = i >= T / 3;	/* the first third is the "prompt" */
	}

	/*
	 * steps = 0: memory only (big shapes): one step, then the peak resident
	 * set and the time it took
	 */
	if (steps == 0)
	{
		double		t0 = now();

		if (sft_trainer_accumulate(tr, &batch, &loss, &nt, &err) != SFT_OK ||
			sft_trainer_step(tr, nt, &adam, 1e-3, &gnorm, &err) != SFT_OK || !isfinite(loss))
		{
			fprintf(stderr, "bench_train: %s\n", err.message);
			return 1;
		}
		getrusage(RUSAGE_SELF, &ru);
		printf("sft%s%s: %zu parameters (%zu trained), one %d-token step in %.1f s (loss %.4f, "
			   "gradient norm %.4g), peak RSS %.2f GB\n",
			   lora_r ? " LoRA all-linear" : " full fine-tuning", ckpt ? " + checkpointing" : "",
			   sft_model_num_params(model), sft_trainer_num_trained(tr), T, now() - t0, loss / nt,
			   gnorm, ru.ru_maxrss / 1048576.0);
		printf("RESULT step_s=%.3f peak_rss_gb=%.3f\n", now() - t0, ru.ru_maxrss / 1048576.0);
		return 0;
	}

	/* validate: the loss on a repeated batch is finite and falls */
	for (int s = 0; s < 3; s++)
	{
		if (sft_trainer_accumulate(tr, &batch, &loss, &nt, &err) != SFT_OK ||
			sft_trainer_step(tr, nt, &adam, lora_r ? 1e-2 : 1e-3, &gnorm, &err) != SFT_OK)
		{
			fprintf(stderr, "bench_train: %s\n", err.message);
			return 1;
		}
		losses[s] = loss / nt;
	}
	if (!isfinite(losses[2]) || !(losses[2] < losses[0]))
	{
		fprintf(stderr, "bench_train: validation failed: loss %.12f -> %.12f\n", losses[0], losses[2]);
		return 1;
	}
	printf("validation: mean loss %.6f -> %.6f -> %.6f over 3 steps (ln V = %.2f)\n",
		   losses[0], losses[1], losses[2], log(cfg.vocab_size));

	/* sgemm rate before and after the timed steps; the better one is the
	 * yardstick (a busy machine then lowers our ratio, not raises it) */
	gemm = sgemm_rate(&cfg, T);
	for (int s = 0; s < steps; s++)
	{
		double		t0 = now();

		sft_trainer_accumulate(tr, &batch, &loss, &nt, &err);
		sft_trainer_step(tr, nt, &adam, 1e-4, NULL, &err);
		times[s] = now() - t0;
	}
	med = median(times, steps);
	{
		double		g2 = sgemm_rate(&cfg, T);

		gemm = g2 > gemm ? g2 : gemm;
	}

	/* where the time goes: forward only, forward + backward, AdamW
	 * (SFT_BENCH_BREAKDOWN=0 skips it: the family rounds of train.sh) */
	if (getenv("SFT_BENCH_BREAKDOWN") == NULL || atoi(getenv("SFT_BENCH_BREAKDOWN")) != 0)
	{
		double		tf[3],
					tb[3],
					ta[3];

		for (int s = 0; s < 3; s++)
		{
			double		t0 = now();

			sft_trainer_evaluate(tr, &batch, &loss, &nt, &err);
			tf[s] = now() - t0;
			t0 = now();
			sft_trainer_accumulate(tr, &batch, &loss, &nt, &err);
			tb[s] = now() - t0;
			t0 = now();
			sft_trainer_step(tr, nt, &adam, 1e-4, NULL, &err);
			ta[s] = now() - t0;
		}
		printf("breakdown (medians of 3): forward %.3f s, forward+backward %.3f s, AdamW step %.3f s\n",
			   median(tf, 3), median(tb, 3), median(ta, 3));
	}

	/*
	 * Model FLOPs of a step: matmuls 6 x params x tokens (2 forward, 4
	 * backward), the LM head only on the nt target rows, causal attention
	 * (QK^T and PV: 4 HD NH per visible pair forward, twice that backward).
	 */
	P_layers = sft_model_num_params(model) - (size_t) cfg.vocab_size * cfg.hidden_size;
	/* LoRA: no weight gradients of the base (4 instead of 6), plus the adapter's 6 */
	flops = (lora_r ? 4.0 : 6.0) * P_layers * T
		+ (lora_r ? 4.0 : 6.0) * (double) cfg.vocab_size * cfg.hidden_size * nt
		+ (adapter ? 6.0 * adapter->n_params * T : 0.0)
		+ 3.0 * 4.0 * cfg.n_heads * cfg.head_dim * (T * (T + 1.0) / 2.0) * cfg.n_layers;
	gflops = flops / med / 1e9;
	getrusage(RUSAGE_SELF, &ru);
	printf("sft%s%s: %d threads, %d-token steps (%lld targets), median of %d: %.3f s/step, "
		   "%.1f tokens/s, %.1f GFLOP/s = %.2f x sgemm (%.1f GFLOP/s), peak RSS %.2f GB\n",
		   lora_r ? " LoRA all-linear" : " full fine-tuning", ckpt ? " + checkpointing" : "",
		   threads, T, (long long) nt, steps, med, T / med, gflops, gflops / gemm, gemm,
		   ru.ru_maxrss / 1048576.0);
	/*
	 * The ceiling: tokens/s if every FLOP of the step ran at the sgemm rate
	 * of this run, with nothing else (no attention softmax, norms, AdamW).
	 */
	printf("ceiling: %.3f GFLOP per token at %.1f GFLOP/s = %.1f tokens/s\n",
		   flops / T / 1e9, gemm, gemm * 1e9 / (flops / T));
	/*
	 * A bf16 frozen base, measured by its cost: OpenBLAS has no bf16 sgemm,
	 * so every product would first convert its matrix back to fp32, twice a
	 * step (forward, backward; three times with checkpointing).  The
	 * conversion rate of this run over a chunk larger than the caches, times
	 * the base's matrix floats, against the fp32 step just measured.
	 */
	if (lora_r > 0)
	{
		size_t		chunk = (size_t) 8 << 20,
					mat = 0;
		uint16_t   *src = malloc(chunk * sizeof(uint16_t));
		float	   *dst = malloc(chunk * sizeof(float));
		double		rates[3],
					rate,
					pass_s;
		int			passes = ckpt ? 3 : 2;

		for (int i = 0; i < sft_model_tensor_count(model); i++)
			if (sft_model_tensor(model, i)->ndim == 2)
				mat += sft_model_tensor(model, i)->numel;
		for (size_t j = 0; j < chunk; j++)
			src[j] = sft_f32_to_bf16(0.01f * (float) ((int) (j % 101) - 50));
		for (int rnd = 0; rnd < 3; rnd++)
		{
			double		t0 = now();

			for (int k = 0; k < 8; k++)
				sft_dequantize_row(SFT_DTYPE_BF16, src, dst, (int64_t) chunk);
			rates[rnd] = 8.0 * chunk / (now() - t0);
		}
		rate = median(rates, 3);
		pass_s = (double) mat / rate;
		printf("bf16 base (cost measured, not built): %zu matrix floats, bf16 -> fp32 at %.0f M/s = %.3f s a pass, "
			   "%d passes a step: %.1f tokens/s (%.0f%% slower), base memory %.2f GB instead of %.2f GB\n",
			   mat, rate / 1e6, pass_s, passes, T / (med + passes * pass_s),
			   100.0 * passes * pass_s / (med + passes * pass_s), mat * 2.0 / 1e9, mat * 4.0 / 1e9);
		free(src);
		free(dst);
	}
	printf("RESULT tokens_per_s=%.2f step_s=%.4f gflops=%.2f sgemm_gflops=%.2f peak_rss_gb=%.3f "
		   "ceiling_tokens_per_s=%.2f\n",
		   T / med, med, gflops, gemm, ru.ru_maxrss / 1048576.0, gemm * 1e9 / (flops / T));
	sft_trainer_free(tr);
	sft_lora_adapter_free(adapter);
	sft_model_free(model);
	free(tokens), free(mask), free(times);
	return 0;
}
