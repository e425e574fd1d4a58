/*
 * test_model.c: the whole model.
 *   - tensor table (HF names, shapes, offsets) for SmolLM2-135M's shape;
 *   - finite-difference gradient of the summed masked loss with respect to
 *     every parameter of tiny models (GQA, tied and untied, 3 packed
 *     sequences, masked positions, residual dropout);
 *   - packing: a packed micro-batch gives the loss and gradient of its
 *     sequences run one by one (no cross-contamination);
 *   - gradient accumulation: k micro-batches + one step = one k-times batch;
 *   - memorisation: a tiny model learns a few sequences, then greedy decode
 *     with the KV cache reproduces them, and decoder logits match a full
 *     forward (re-prefill) and the trainer's loss;
 *   - sampler: greedy, seeded determinism, top-k / top-p on small
 *     distributions, temperature;
 *   - memory estimate vs what is allocated; allocation failure; bad input.
 */
#include "model.h"
#include "checkpoint.h"
#include "lora_adapter.h"
#include "tap.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static SftRng rng;

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static SftLlamaConfig
tiny_config(int tied)
{
	/* head_dim * heads (16) != hidden (12) on purpose; GQA 4 / 2 */
	SftLlamaConfig c = {
		.hidden_size = 12, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
		.intermediate_size = 20, .vocab_size = 17, .max_position = 64,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = tied,
		.bos_token_id = -1, .eos_token_id = -1
	};

	return c;
}

/* Larger than HF's 0.02 init so the loss is far from uniform and every path matters. */
static void
init_params(SftModel *m, float scale, uint64_t seed)
{
	SftRng		r;
	float	   *p = sft_model_params(m);

	sft_rng_seed(&r, seed);
	for (int i = 0; i < sft_model_tensor_count(m); i++)
	{
		const SftParamTensor *t = sft_model_tensor(m, i);

		for (size_t j = 0; j < t->numel; j++)
			p[t->offset + j] = t->ndim == 1 ? 1.0f + 0.2f * sft_rng_normal(&r)
				: scale * sft_rng_normal(&r);
	}
}

static SftModel *
new_model(const SftLlamaConfig *cfg, float scale, uint64_t seed)
{
	SftModel   *m = NULL;
	SftError	err = {0};

	if (sft_model_new(cfg, &m, &err) != SFT_OK)
	{
		printf("# sft_model_new: %s\n", err.message);
		exit(1);
	}
	init_params(m, scale, seed);
	return m;
}

static SftTrainer *
new_trainer(SftModel *m, int max_tokens, float dropout, uint64_t seed)
{
	SftTrainer *tr = NULL;
	SftError	err = {0};

	if (sft_trainer_new(m, max_tokens, dropout, seed, &tr, &err) != SFT_OK)
	{
		printf("# sft_trainer_new: %s\n", err.message);
		exit(1);
	}
	return tr;
}

/* Three packed sequences, the middle one of length 1 (no target). */
static const int pack_lens[3] = {6, 1, 5};
static const int32_t pack_tokens[12] = {3, 16, 2, 9, 9, 0, 5, 11, 7, 1, 14, 2};
static const int32_t pack_mask[12] = {0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1};

static SftBatch
pack_batch(void)
{
	SftBatch	b = {3, pack_lens, pack_tokens, pack_mask};

	return b;
}

static double
eval_loss(SftTrainer *tr, const SftBatch *b)
{
	double		loss = 0.0;
	int64_t		n = 0;
	SftError	err = {0};

	if (sft_trainer_evaluate(tr, b, &loss, &n, &err) != SFT_OK)
		printf("# evaluate: %s\n", err.message);
	return loss;
}

static double
max_abs_diff(const float *a, const float *b, size_t n)
{
	double		d = 0.0;

	for (size_t i = 0; i < n; i++)
		d = fmax(d, fabs((double) a[i] - b[i]));
	return d;
}

static double
max_abs(const float *a, size_t n)
{
	double		d = 0.0;

	for (size_t i = 0; i < n; i++)
		d = fmax(d, fabs((double) a[i]));
	return d;
}

/* ---------------------------------------------------------------------------
 * Tensor table
 * ------------------------------------------------------------------------- */

static void
test_tensor_table(void)
{
	SftLlamaConfig c = {
		.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
		.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
		.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1
	};
	SftModel   *m = NULL;
	SftError	err = {0};
	const SftParamTensor *t;
	size_t		off = 0;
	int			contiguous = 1;

	TAP_OK(sft_model_new(&c, &m, &err) == SFT_OK, "SmolLM2-135M shape builds");
	TAP_OK(sft_model_num_params(m) == 134515008 && sft_model_tensor_count(m) == 272,
		   "SmolLM2-135M: 134515008 parameters in 272 tensors (got %zu, %d)",
		   sft_model_num_params(m), sft_model_tensor_count(m));
	for (int i = 0; i < sft_model_tensor_count(m); i++)
	{
		t = sft_model_tensor(m, i);
		contiguous &= t->offset == off && t->numel == (size_t) t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
		off += t->numel;
	}
	TAP_OK(contiguous && off == sft_model_num_params(m), "tensors tile the slab in order");
	t = sft_model_find_tensor(m, "model.layers.29.self_attn.k_proj.weight");
	TAP_OK(t && t->ndim == 2 && t->shape[0] == 192 && t->shape[1] == 576 && t->weight_decay,
		   "k_proj is [NKV*HD, C] = [192, 576], decayed");
	t = sft_model_find_tensor(m, "model.layers.0.mlp.down_proj.weight");
	TAP_OK(t && t->shape[0] == 576 && t->shape[1] == 1536, "down_proj is [C, F]");
	t = sft_model_find_tensor(m, "model.norm.weight");
	TAP_OK(t && t->ndim == 1 && t->shape[0] == 576 && !t->weight_decay, "model.norm is [C], not decayed");
	TAP_OK(sft_model_find_tensor(m, "lm_head.weight") == NULL &&
		   sft_model_tensor(m, 272) == NULL && sft_model_tensor(m, -1) == NULL,
		   "tied: no lm_head tensor; out-of-range index gives NULL");
	sft_model_free(m);

	c.tie_word_embeddings = 0;
	sft_model_new(&c, &m, &err);
	t = sft_model_find_tensor(m, "lm_head.weight");
	TAP_OK(t && t->shape[0] == 49152 && sft_model_tensor_count(m) == 273 &&
		   sft_model_num_params(m) == 134515008 + 49152 * 576, "untied: lm_head.weight [V, C] last");
	sft_model_free(m);

	c.tie_word_embeddings = 1;
	c.n_kv_heads = 4;
	sft_error_clear(&err);
	TAP_OK(sft_model_new(&c, &m, &err) == SFT_ERR_INVALID && strstr(err.message, "multiple") && m == NULL,
		   "9 heads over 4 kv heads is rejected: %s", err.message);
	c.n_kv_heads = 3;
	c.head_dim = 63;
	sft_error_clear(&err);
	TAP_OK(sft_model_new(&c, &m, &err) == SFT_ERR_INVALID, "odd head_dim is rejected: %s", err.message);
	c.head_dim = 64;
	c.vocab_size = 0;
	sft_error_clear(&err);
	TAP_OK(sft_model_new(&c, &m, &err) == SFT_ERR_INVALID, "vocab 0 is rejected: %s", err.message);
}

/* ---------------------------------------------------------------------------
 * Whole-model finite differences
 * ------------------------------------------------------------------------- */

/*
 * d(summed loss)/d(param) for every parameter (or a sample), central
 * differences with h = 1e-3 on the float model.  Relative error measure and
 * tolerance as in test_kernels.c.
 */
static double
model_fd_error(SftModel *m, SftTrainer *tr, const SftBatch *b, const float *grads,
			   int max_checks, int dropout_seed)
{
	float	   *p = sft_model_params(m);
	size_t		n = sft_model_num_params(m);
	double		max_diff = 0.0,
				max_num = 0.0;
	int			checks = max_checks > 0 && (size_t) max_checks < n ? max_checks : (int) n;

	for (int c = 0; c < checks; c++)
	{
		size_t		i = checks == (int) n ? (size_t) c : sft_rng_next(&rng) % n;
		float		saved = p[i],
					h = 1e-3f;
		double		lp,
					lm,
					num;

		for (int sgn = 0; sgn < 2; sgn++)
		{
			double		loss;

			p[i] = sgn == 0 ? saved + h : saved - h;
			if (dropout_seed)
			{
				/* replay the same dropout draws; the gradients this adds are not read */
				int64_t		nt;

				sft_trainer_set_dropout_seed(tr, dropout_seed);
				sft_trainer_accumulate(tr, b, &loss, &nt, NULL);
			}
			else
				loss = eval_loss(tr, b);
			if (sgn == 0)
				lp = loss;
			else
				lm = loss;
		}
		p[i] = saved;
		num = (lp - lm) / ((double) (saved + h) - (double) (saved - h));
		max_diff = fmax(max_diff, fabs(num - grads[i]));
		max_num = fmax(max_num, fabs(num));
	}
	return max_diff / max_num;
}

static void
test_model_gradients(int tied, float dropout)
{
	SftLlamaConfig cfg = tiny_config(tied);
	SftModel   *m = new_model(&cfg, 0.3f, 7 + tied);
	SftTrainer *tr = new_trainer(m, 16, dropout, 99);
	SftBatch	b = pack_batch();
	size_t		n = sft_model_num_params(m);
	float	   *grads = malloc(sizeof(float) * n);
	double		loss = 0.0,
				err;
	int64_t		nt = 0;
	SftError	e = {0};

	if (dropout > 0.0f)
		sft_trainer_set_dropout_seed(tr, 5);
	TAP_OK(sft_trainer_accumulate(tr, &b, &loss, &nt, &e) == SFT_OK && nt == 7 && isfinite(loss),
		   "tiny model (%s%s): accumulate over 3 packed sequences, 7 targets, loss %.4f",
		   tied ? "tied" : "untied", dropout > 0 ? ", dropout 0.3" : "", loss);
	memcpy(grads, sft_trainer_grads(tr), sizeof(float) * n);
	err = model_fd_error(m, tr, &b, grads, dropout > 0.0f ? 300 : 0, dropout > 0.0f ? 5 : 0);
	TAP_OK(err < 2e-3, "whole-model gradient = finite differences over %s parameters (%s%s): rel err %.2g",
		   dropout > 0.0f ? "300 sampled" : "all", tied ? "tied" : "untied",
		   dropout > 0.0f ? ", dropout" : "", err);
	if (dropout == 0.0f)
		TAP_OK(fabs(eval_loss(tr, &b) - loss) < 1e-9 * fabs(loss) + 1e-12,
			   "evaluate gives the training loss when dropout is off");
	else
	{
		double		l2 = eval_loss(tr, &b),
					l3 = eval_loss(tr, &b);

		TAP_OK(l2 == l3 && fabs(l2 - loss) > 1e-6, "evaluate turns dropout off (deterministic, differs from the dropout loss)");
	}
	free(grads);
	sft_trainer_free(tr);
	sft_model_free(m);
}

/* Packed micro-batch = its sequences one by one (loss and gradients). */
static void
test_packing(void)
{
	SftLlamaConfig cfg = tiny_config(0);
	SftModel   *m = new_model(&cfg, 0.3f, 11);
	SftTrainer *tr = new_trainer(m, 16, 0.0f, 1);
	SftBatch	b = pack_batch();
	size_t		n = sft_model_num_params(m);
	float	   *g_packed = malloc(sizeof(float) * n);
	double		loss_packed = 0.0,
				loss_sep = 0.0,
				l;
	int64_t		nt,
				nt_sep = 0;
	int			start = 0;

	sft_trainer_accumulate(tr, &b, &loss_packed, &nt, NULL);
	memcpy(g_packed, sft_trainer_grads(tr), sizeof(float) * n);
	memset(sft_trainer_grads(tr), 0, sizeof(float) * n);
	for (int s = 0; s < 3; s++)
	{
		SftBatch	one = {1, &pack_lens[s], pack_tokens + start, pack_mask + start};

		sft_trainer_accumulate(tr, &one, &l, &nt, NULL);
		loss_sep += l;
		nt_sep += nt;
		start += pack_lens[s];
	}
	TAP_OK(fabs(loss_packed - loss_sep) < 1e-5 && nt_sep == 7,
		   "packed loss = sum of per-sequence losses (%.6f vs %.6f)", loss_packed, loss_sep);
	TAP_OK(max_abs_diff(g_packed, sft_trainer_grads(tr), n) < 1e-5 * max_abs(g_packed, n),
		   "packed gradient = sum of per-sequence gradients");
	free(g_packed);
	sft_trainer_free(tr);
	sft_model_free(m);
}

/*
 * Attention on the trainer's thread pool (a 3-thread budget, so tasks run
 * concurrently with single-threaded BLAS) = one thread, bit for bit: loss,
 * gradients and the parameters after an AdamW step (threads never change
 * a summation order).
 */
static void
test_trainer_threads(void)
{
	SftLlamaConfig cfg = tiny_config(1);
	SftModel   *m = new_model(&cfg, 0.3f, 17);
	int			lens[3] = {64, 150, 30};	/* 1 + 3 + 1 row blocks, times 2 kv heads */
	int32_t		toks[244],
				mask[244];
	SftBatch	b = {3, lens, toks, mask};
	SftTrainer *t1,
			   *t3;
	size_t		n = sft_model_num_params(m);
	float	   *g1 = malloc(sizeof(float) * n);
	double		l1,
				l3;
	int64_t		nt;
	SftRng		r;

	cfg.max_position = 256;
	sft_model_free(m);
	m = new_model(&cfg, 0.3f, 17);
	sft_rng_seed(&r, 8);
	for (int i = 0; i < 244; i++)
	{
		toks[i] = (int32_t) (sft_rng_next(&r) % cfg.vocab_size);
		mask[i] = (i % 5) != 0;
	}
	t1 = new_trainer(m, 244, 0.0f, 1);
	openblas_set_num_threads(3);
	t3 = new_trainer(m, 244, 0.0f, 1);
	sft_trainer_accumulate(t1, &b, &l1, &nt, NULL);
	memcpy(g1, sft_trainer_grads(t1), sizeof(float) * n);
	sft_trainer_accumulate(t3, &b, &l3, &nt, NULL);
	TAP_OK(l1 == l3 && openblas_get_num_threads() == 3,
		   "3-thread trainer: same loss bit for bit (%.9g), BLAS thread count restored", l1);
	TAP_OK(memcmp(g1, sft_trainer_grads(t3), sizeof(float) * n) == 0,
		   "3-thread trainer: same gradients bit for bit (max diff %.2g)",
		   max_abs_diff(g1, sft_trainer_grads(t3), n));
	{
		SftAdamWConfig adam = {0.9, 0.999, 1e-8, 0.1, 1.0};
		SftModel   *m3 = new_model(&cfg, 0.3f, 17);
		SftTrainer *t3b = new_trainer(m3, 244, 0.0f, 1);
		double		n1,
					n3;

		sft_trainer_accumulate(t3b, &b, &l3, &nt, NULL);
		sft_trainer_step(t3b, nt, &adam, 1e-3, &n3, NULL);
		openblas_set_num_threads(1);
		sft_trainer_step(t1, nt, &adam, 1e-3, &n1, NULL);
		TAP_OK(n1 == n3 && memcmp(sft_model_params(m), sft_model_params(m3), sizeof(float) * n) == 0,
			   "3-thread AdamW step (threaded norm and update) = 1 thread, bit for bit");
		sft_trainer_free(t3b);
		sft_model_free(m3);
	}
	openblas_set_num_threads(1);
	sft_trainer_free(t1);
	sft_trainer_free(t3);
	sft_model_free(m);
	free(g1);
}

/* k micro-batches accumulated + one step == one batch k times larger. */
static void
test_grad_accumulation(void)
{
	SftLlamaConfig cfg = tiny_config(1);
	SftModel   *m1 = new_model(&cfg, 0.3f, 21),
			   *m2 = new_model(&cfg, 0.3f, 21);
	SftTrainer *t1 = new_trainer(m1, 16, 0.0f, 1),
			   *t2 = new_trainer(m2, 16, 0.0f, 1);
	SftAdamWConfig adam = {0.9, 0.999, 1e-8, 0.1, 1.0};
	SftBatch	big = pack_batch();
	double		loss1 = 0.0,
				loss2 = 0.0,
				l,
				norm1,
				norm2;
	int64_t		n1 = 0,
				n2 = 0,
				nt;
	int			start = 0;
	size_t		n = sft_model_num_params(m1);
	SftError	err = {0};

	for (int step = 0; step < 2; step++)
	{
		/* trainer 1: the 3 sequences as 3 micro-batches; trainer 2: one batch */
		start = 0;
		n1 = n2 = 0;
		for (int s = 0; s < 3; s++)
		{
			SftBatch	one = {1, &pack_lens[s], pack_tokens + start, pack_mask + start};

			sft_trainer_accumulate(t1, &one, &l, &nt, NULL);
			loss1 += l;
			n1 += nt;
			start += pack_lens[s];
		}
		sft_trainer_accumulate(t2, &big, &l, &nt, NULL);
		loss2 += l;
		n2 += nt;
		if (step == 0)
			TAP_OK(max_abs_diff(sft_trainer_grads(t1), sft_trainer_grads(t2), n) <
				   1e-5 * max_abs(sft_trainer_grads(t2), n),
				   "grad accumulation: 3 micro-batches sum to the gradient of one batch");
		sft_trainer_step(t1, n1, &adam, 1e-2, &norm1, &err);
		sft_trainer_step(t2, n2, &adam, 1e-2, &norm2, &err);
	}
	TAP_OK(fabs(loss1 - loss2) < 1e-5 && fabs(norm1 - norm2) < 1e-5 * norm2,
		   "grad accumulation: same losses and gradient norms (%.6f / %.6f)", norm1, norm2);
	/* AdamW divides by sqrt(v): float noise on near-zero gradients shows up at
	 * ~1e-4 of the lr; a scaling mistake would show up at the lr (1e-2) */
	TAP_OK(max_abs_diff(sft_model_params(m1), sft_model_params(m2), n) < 2e-5 &&
		   *sft_trainer_step_count(t1) == 2 && max_abs(sft_trainer_grads(t1), n) == 0.0,
		   "grad accumulation: same parameters after 2 AdamW steps (max diff %.2g); steps counted; grads zeroed",
		   max_abs_diff(sft_model_params(m1), sft_model_params(m2), n));
	TAP_OK(sft_trainer_step(t1, 0, &adam, 1e-2, NULL, &err) == SFT_ERR_INVALID,
		   "a step over 0 targets is an error: %s", err.message);
	sft_trainer_free(t1);
	sft_trainer_free(t2);
	sft_model_free(m1);
	sft_model_free(m2);
}

/* Global-norm clipping: the norm reported is that of the averaged gradient. */
static void
test_clipping(void)
{
	SftLlamaConfig cfg = tiny_config(1);
	SftModel   *m = new_model(&cfg, 0.3f, 31);
	SftTrainer *tr = new_trainer(m, 16, 0.0f, 1);
	SftBatch	b = pack_batch();
	SftAdamWConfig adam = {0.9, 0.999, 1e-8, 0.0, 1e-3};
	size_t		n = sft_model_num_params(m);
	float	   *p0 = malloc(sizeof(float) * n);
	double		loss,
				norm,
				want = 0.0,
				moved = 0.0;
	int64_t		nt;
	float	   *g = sft_trainer_grads(tr);

	memcpy(p0, sft_model_params(m), sizeof(float) * n);
	sft_trainer_accumulate(tr, &b, &loss, &nt, NULL);
	for (size_t i = 0; i < n; i++)
		want += (double) g[i] * g[i];
	want = sqrt(want) / nt;
	sft_trainer_step(tr, nt, &adam, 1e-3, &norm, NULL);
	/* first AdamW step moves every parameter with a gradient by ~lr, clipped or not */
	for (size_t i = 0; i < n; i++)
		moved = fmax(moved, fabs(sft_model_params(m)[i] - p0[i]));
	TAP_OK(fabs(norm - want) < 1e-9 * want && want > 1e-3 && moved < 1.01e-3 && moved > 0.9e-3,
		   "grad norm reported before clipping (%.6g), first step moves by <= lr", norm);
	free(p0);
	sft_trainer_free(tr);
	sft_model_free(m);
}

/* ---------------------------------------------------------------------------
 * Memorisation and decode
 * ------------------------------------------------------------------------- */

#define MEM_SEQS 4
#define MEM_LEN 12

static void
test_memorise_and_decode(void)
{
	SftLlamaConfig cfg = {
		.hidden_size = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
		.intermediate_size = 64, .vocab_size = 24, .max_position = 300,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = 1
	};
	SftModel   *m = NULL;
	SftTrainer *tr;
	SftDecoder *dec = NULL,
			   *dec2 = NULL;
	SftAdamWConfig adam = {0.9, 0.99, 1e-8, 0.0, 1.0};
	int32_t		seqs[MEM_SEQS][MEM_LEN];
	int32_t		mask[MEM_SEQS * MEM_LEN];
	int			lens[MEM_SEQS];
	double		loss = 0.0,
				mean = 0.0;
	int64_t		nt = 0;
	SftRng		r;
	float	   *logits = malloc(sizeof(float) * cfg.vocab_size),
			   *logits2 = malloc(sizeof(float) * cfg.vocab_size);
	int			all_ok = 1,
				steps;
	double		max_logit_diff = 0.0,
				dec_loss = 0.0;
	SftError	err = {0};

	sft_model_new(&cfg, &m, &err);
	sft_model_init_random(m, 3);
	tr = new_trainer(m, MEM_SEQS * MEM_LEN, 0.0f, 1);
	sft_rng_seed(&r, 42);
	for (int s = 0; s < MEM_SEQS; s++)
	{
		lens[s] = MEM_LEN;
		seqs[s][0] = s;			/* distinct first token: the prompt */
		for (int i = 1; i < MEM_LEN; i++)
			seqs[s][i] = (int32_t) (sft_rng_next(&r) % cfg.vocab_size);
		for (int i = 0; i < MEM_LEN; i++)
			mask[s * MEM_LEN + i] = 1;
	}
	{
		SftBatch	b = {MEM_SEQS, lens, &seqs[0][0], mask};

		for (steps = 0; steps < 300; steps++)
		{
			sft_trainer_accumulate(tr, &b, &loss, &nt, NULL);
			mean = loss / nt;
			if (mean < 0.01)
				break;
			sft_trainer_step(tr, nt, &adam, 1e-2, NULL, NULL);
		}
	}
	TAP_OK(mean < 0.01, "memorisation: mean loss %.4f < 0.01 after %d AdamW steps (from ln 24 = 3.18)",
		   mean, steps);

	sft_decoder_new(m, 200, &dec, &err);
	sft_decoder_new(m, 200, &dec2, &err);
	for (int s = 0; s < MEM_SEQS; s++)
	{
		int32_t		out[MEM_LEN];
		int32_t		tok = seqs[s][0];

		sft_decoder_reset(dec);
		out[0] = tok;
		for (int i = 1; i < MEM_LEN; i++)
		{
			sft_decoder_feed(dec, &tok, 1, logits, &err);	/* one token, KV cache */
			/* without cache: re-prefill the whole prefix in a fresh pass */
			sft_decoder_reset(dec2);
			sft_decoder_feed(dec2, out, i, logits2, &err);
			max_logit_diff = fmax(max_logit_diff, max_abs_diff(logits, logits2, cfg.vocab_size));
			tok = sft_sample(logits, cfg.vocab_size, NULL, NULL, NULL);
			out[i] = tok;
			/* -log p(true next token) from the decoder, to compare with the trainer */
			{
				double		mx = -INFINITY,
							sum = 0.0;

				for (int v = 0; v < cfg.vocab_size; v++)
					mx = fmax(mx, logits[v]);
				for (int v = 0; v < cfg.vocab_size; v++)
					sum += exp(logits[v] - mx);
				dec_loss += mx + log(sum) - logits[seqs[s][i]];
			}
		}
		all_ok &= memcmp(out, seqs[s], sizeof(out)) == 0;
	}
	TAP_OK(all_ok, "greedy decode with the KV cache reproduces all %d memorised sequences", MEM_SEQS);
	TAP_OK(max_logit_diff < 1e-4, "cached decode logits = full re-prefill logits (max diff %.2g)",
		   max_logit_diff);
	{
		SftBatch	b = {MEM_SEQS, lens, &seqs[0][0], mask};
		double		tl = eval_loss(tr, &b);

		TAP_OK(fabs(tl - dec_loss) < 1e-4 * fmax(1.0, tl),
			   "decoder log-probs give the trainer's loss (%.6f vs %.6f)", dec_loss, tl);
	}

	/* a prompt longer than the decoder's 128-token chunk, then one more token */
	{
		int32_t		prompt[150];
		int			ok = 1;

		for (int i = 0; i < 150; i++)
			prompt[i] = (int32_t) (sft_rng_next(&r) % cfg.vocab_size);
		sft_decoder_reset(dec);
		sft_decoder_reset(dec2);
		sft_decoder_feed(dec, prompt, 150, logits, &err);
		for (int i = 0; i < 150; i++)
			ok &= sft_decoder_feed(dec2, &prompt[i], 1, logits2, &err) == SFT_OK;
		TAP_OK(ok && max_abs_diff(logits, logits2, cfg.vocab_size) < 1e-4 &&
			   sft_decoder_position(dec) == 150,
			   "150-token prefill (two chunks) = 150 single steps (max diff %.2g)",
			   max_abs_diff(logits, logits2, cfg.vocab_size));
		sft_error_clear(&err);
		TAP_OK(sft_decoder_feed(dec, prompt, 51, logits, &err) == SFT_ERR_LIMIT &&
			   sft_decoder_position(dec) == 150,
			   "feeding past max_seq is refused, cache untouched: %s", err.message);
		prompt[0] = 24;
		sft_error_clear(&err);
		TAP_OK(sft_decoder_feed(dec, prompt, 1, logits, &err) == SFT_ERR_INVALID,
			   "token id outside the vocabulary is refused: %s", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_decoder_new(m, 301, &dec2 /* not overwritten on error */, &err) == SFT_ERR_INVALID,
			   "decoder longer than max_position_embeddings is refused: %s", err.message);
	}
	sft_decoder_free(dec);
	sft_decoder_free(dec2);
	sft_trainer_free(tr);
	sft_model_free(m);
	free(logits);
	free(logits2);
}

/* Helper threads (a 3-thread budget) give the single-threaded logits bit for bit. */
static void
test_decoder_threads(void)
{
	SftLlamaConfig cfg = {
		.hidden_size = 256, .n_layers = 2, .n_heads = 8, .n_kv_heads = 2, .head_dim = 32,
		.intermediate_size = 512, .vocab_size = 300, .max_position = 64,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = 0
	};
	SftModel   *m = new_model(&cfg, 0.05f, 5);
	SftDecoder *d1 = NULL,
			   *d3 = NULL;
	SftError	err = {0};
	float	   *l1 = malloc(sizeof(float) * cfg.vocab_size),
			   *l3 = malloc(sizeof(float) * cfg.vocab_size);
	int32_t		toks[6] = {1, 55, 7, 299, 2, 9};
	int			same = 1;

	sft_decoder_new(m, 64, &d1, &err);
	openblas_set_num_threads(3);
	sft_decoder_new(m, 64, &d3, &err);
	openblas_set_num_threads(1);
	for (int i = 0; i < 6; i++)
	{
		sft_decoder_feed(d1, &toks[i], 1, l1, &err);
		sft_decoder_feed(d3, &toks[i], 1, l3, &err);
		same &= memcmp(l1, l3, sizeof(float) * cfg.vocab_size) == 0;
	}
	TAP_OK(same, "decoder with 2 helper threads = single-threaded decoder, bit for bit");
	sft_decoder_free(d1);
	sft_decoder_free(d3);
	sft_model_free(m);
	free(l1), free(l3);
}

/* ---------------------------------------------------------------------------
 * Sampler
 * ------------------------------------------------------------------------- */

static void
sample_counts(const float *logits, int V, SftSamplerConfig *c, int draws, int *counts,
			  uint64_t seed)
{
	void	   *scratch = malloc(sft_sample_scratch_bytes(V));
	SftRng		r;

	sft_rng_seed(&r, seed);
	memset(counts, 0, sizeof(int) * V);
	for (int i = 0; i < draws; i++)
		counts[sft_sample(logits, V, c, &r, scratch)]++;
	free(scratch);
}

static void
test_sampler(void)
{
	/* probabilities 0.5, 0.3, 0.15, 0.05 (as logits), then a tie pair */
	float		lg[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
	float		tie[5] = {1.0f, 3.0f, -2.0f, 3.0f, 0.0f};
	int			counts[5];
	SftSamplerConfig greedy = {0.0, 0, 1.0};
	SftSamplerConfig plain = {1.0, 0, 1.0};
	SftSamplerConfig k2 = {1.0, 2, 1.0};
	SftSamplerConfig p75 = {1.0, 0, 0.75};
	SftSamplerConfig hot = {2.0, 0, 1.0};
	const int	N = 20000;
	double		chi = 0.0;

	TAP_OK(sft_sample(tie, 5, &greedy, NULL, NULL) == 1, "greedy: argmax, lowest id on ties");

	/* determinism: same seed, same draws */
	{
		void	   *scratch = malloc(sft_sample_scratch_bytes(4));
		SftRng		a,
					b;
		int			same = 1;

		sft_rng_seed(&a, 9);
		sft_rng_seed(&b, 9);
		for (int i = 0; i < 200; i++)
			same &= sft_sample(lg, 4, &plain, &a, scratch) == sft_sample(lg, 4, &plain, &b, scratch);
		TAP_OK(same, "same seed, same 200 samples");
		free(scratch);
	}

	/* plain sampling follows softmax: chi-square with 3 dof, p = 0.001 at 16.3 */
	sample_counts(lg, 4, &plain, N, counts, 1);
	{
		const double p[4] = {0.5, 0.3, 0.15, 0.05};

		for (int i = 0; i < 4; i++)
			chi += (counts[i] - N * p[i]) * (counts[i] - N * p[i]) / (N * p[i]);
	}
	TAP_OK(chi < 16.3, "temperature 1 matches softmax (chi2 %.2f; counts %d %d %d %d)",
		   chi, counts[0], counts[1], counts[2], counts[3]);

	sample_counts(lg, 4, &k2, N, counts, 2);
	TAP_OK(counts[2] == 0 && counts[3] == 0 && fabs(counts[0] / (double) N - 0.625) < 0.015,
		   "top-k 2 keeps the two best, renormalised (0.625: %.3f)", counts[0] / (double) N);

	sample_counts(lg, 4, &p75, N, counts, 3);
	TAP_OK(counts[2] == 0 && counts[3] == 0 && fabs(counts[0] / (double) N - 0.625) < 0.015,
		   "top-p 0.75 drops the 0.05 and 0.15 tail (mass 0.2 <= 0.25), keeps 0.3");

	{
		SftSamplerConfig p_tiny = {1.0, 0, 0.01};
		SftSamplerConfig k1 = {5.0, 1, 1.0};
		SftSamplerConfig ktie = {1.0, 2, 1.0};

		sample_counts(lg, 4, &p_tiny, 500, counts, 4);
		TAP_OK(counts[0] == 500, "top-p 0.01 keeps only the most likely token");
		sample_counts(lg, 4, &k1, 500, counts, 5);
		TAP_OK(counts[0] == 500, "top-k 1 is greedy even at temperature 5");
		sample_counts(tie, 5, &ktie, 2000, counts, 6);
		TAP_OK(counts[1] > 900 && counts[3] > 900 && counts[0] == 0,
			   "top-k 2 over a tie of two best keeps both");
	}

	/* temperature 2: probabilities proportional to sqrt(p) */
	sample_counts(lg, 4, &hot, N, counts, 7);
	{
		double		z = sqrt(0.5) + sqrt(0.3) + sqrt(0.15) + sqrt(0.05);

		TAP_OK(fabs(counts[3] / (double) N - sqrt(0.05) / z) < 0.012,
			   "temperature 2 flattens: p(last) %.3f ~ %.3f", counts[3] / (double) N, sqrt(0.05) / z);
	}
}

/* ---------------------------------------------------------------------------
 * Memory estimate, allocation failure, bad input
 * ------------------------------------------------------------------------- */

static size_t alloc_bytes;
static long alloc_budget = -1;	/* allocations allowed before failing; -1 none */

static void *
count_alloc(size_t n)
{
	size_t	   *p;

	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	p = malloc(n + 16);
	if (!p)
		return NULL;
	p[0] = n;
	alloc_bytes += n;
	return (char *) p + 16;
}

static void *
count_realloc(void *ptr, size_t n)
{
	(void) ptr;
	(void) n;
	return NULL;				/* the model code never reallocates */
}

static void
count_free(void *ptr)
{
	if (ptr)
	{
		size_t	   *p = (size_t *) ((char *) ptr - 16);

		alloc_bytes -= p[0];
		free(p);
	}
}

static void
test_memory(void)
{
	SftAllocator a = {count_alloc, count_realloc, count_free};
	SftLlamaConfig cfg = tiny_config(0);
	SftModel   *m = NULL;
	SftTrainer *tr = NULL;
	SftError	err = {0};
	size_t		est,
				used;
	int			failures_clean = 1;

	sft_set_allocator(&a);
	sft_model_new(&cfg, &m, &err);
	sft_trainer_new(m, 40, 0.1f, 1, &tr, &err);
	used = alloc_bytes;
	est = sft_trainer_memory_estimate(&cfg, 40);
	TAP_OK(est >= used && est < used + used / 20,
		   "memory estimate %zu bytes covers the %zu allocated (within 5%%)", est, used);
	sft_trainer_free(tr);
	sft_model_free(m);
	TAP_OK(alloc_bytes == 0, "model and trainer free everything they allocate");

	/* every allocation failing in turn: an error, no crash, no leak */
	for (long budget = 0; budget < 20; budget++)
	{
		SftStatus	st;

		m = NULL;
		tr = NULL;
		sft_error_clear(&err);
		alloc_budget = budget;
		st = sft_model_new(&cfg, &m, &err);
		if (st == SFT_OK)
			st = sft_trainer_new(m, 40, 0.1f, 1, &tr, &err);
		alloc_budget = -1;
		if (st != SFT_OK && st != SFT_ERR_NOMEM)
			failures_clean = 0;
		sft_trainer_free(tr);
		sft_model_free(m);
		if (alloc_bytes != 0)
			failures_clean = 0;
	}
	TAP_OK(failures_clean, "allocation failures give SFT_ERR_NOMEM without leaks");
	sft_set_allocator(NULL);

	{
		SftLlamaConfig smol = {
			.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
			.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
			.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1
		};
		size_t		e512 = sft_trainer_memory_estimate(&smol, 512);

		TAP_OK(e512 > (size_t) 4 * 4 * 134515008 && e512 < ((size_t) 3 << 30),
			   "SmolLM2-135M at 512 tokens: estimate %.2f GB (under 3 GB)", e512 / 1e9);
	}
}

static void
test_bad_batches(void)
{
	SftLlamaConfig cfg = tiny_config(1);
	SftModel   *m = new_model(&cfg, 0.3f, 1);
	SftTrainer *tr = new_trainer(m, 16, 0.0f, 1);
	SftError	err = {0};
	double		loss;
	int64_t		nt;
	int			lens2[2] = {10, 10};
	int			len70 = 70;
	int32_t		toks[70] = {0};
	int32_t		mask[70] = {0};
	SftBatch	too_long = {2, lens2, toks, mask};
	SftBatch	bad_tok = {1, lens2, toks, mask};
	SftBatch	too_far = {1, &len70, toks, mask};
	SftTrainer *big = new_trainer(m, 100, 0.0f, 1);
	SftTrainer *none = NULL;

	TAP_OK(sft_trainer_accumulate(tr, &too_long, &loss, &nt, &err) == SFT_ERR_LIMIT,
		   "20 tokens > max_tokens 16: %s", err.message);
	toks[3] = 17;
	sft_error_clear(&err);
	TAP_OK(sft_trainer_accumulate(tr, &bad_tok, &loss, &nt, &err) == SFT_ERR_INVALID,
		   "token 17 in a 17-token vocabulary: %s", err.message);
	toks[3] = 0;
	mask[2] = 2;
	sft_error_clear(&err);
	TAP_OK(sft_trainer_evaluate(tr, &bad_tok, &loss, &nt, &err) == SFT_ERR_INVALID,
		   "mask value 2: %s", err.message);
	mask[2] = 0;
	sft_error_clear(&err);
	TAP_OK(sft_trainer_accumulate(big, &too_far, &loss, &nt, &err) == SFT_ERR_LIMIT,
		   "70-token sequence, 64 positions: %s", err.message);
	sft_error_clear(&err);
	TAP_OK(sft_trainer_accumulate(tr, &bad_tok, &loss, &nt, &err) == SFT_OK && nt == 0 && loss == 0.0 &&
		   max_abs(sft_trainer_grads(tr), sft_model_num_params(m)) == 0.0,
		   "a fully masked micro-batch: 0 targets, loss 0, no gradient");
	sft_error_clear(&err);
	TAP_OK(sft_trainer_new(m, 16, 1.0f, 1, &none, &err) == SFT_ERR_INVALID && none == NULL,
		   "dropout 1 is refused: %s", err.message);
	sft_trainer_free(big);
	sft_trainer_free(tr);
	sft_model_free(m);
}

/* ---------------------------------------------------------------------------
 * The other families: whole-model gradients, memory, the windowed decoder
 * ------------------------------------------------------------------------- */

/* tiny_config with the family's features switched on */
static SftLlamaConfig
family_config(SftFamily family, int tied)
{
	SftLlamaConfig c = tiny_config(tied);

	c.family = family;
	c.n_layers = 3;
	switch (family)
	{
		case SFT_FAMILY_LLAMA:
			c.rope_type = SFT_ROPE_LLAMA3;
			c.rope_factor = 4.0f;
			c.rope_low_freq_factor = 1.0f;
			c.rope_high_freq_factor = 4.0f;
			c.rope_original_max_position = 16;
			break;
		case SFT_FAMILY_QWEN2:
			c.qkv_bias = 1;
			break;
		case SFT_FAMILY_QWEN3:
			c.qk_norm = 1;
			c.head_dim = 6;
			break;
		case SFT_FAMILY_SMOLLM3:
			c.layer_flags[1] = SFT_LAYER_NOPE;
			break;
		case SFT_FAMILY_GEMMA3:
			c.qk_norm = 1;
			c.head_dim = 6;
			c.sliding_window = 3;
			c.layer_flags[0] = c.layer_flags[2] = SFT_LAYER_SLIDING;
			c.rope_local_theta = 100.0f;
			c.query_pre_attn_scalar = 5.0f;
			c.final_logit_softcap = 2.0f;
			break;
	}
	return c;
}

static void
test_family_models(void)
{
	static const char *const names[] = {"llama3 rope", "qwen2", "qwen3", "smollm3", "gemma3"};

	for (int f = SFT_FAMILY_LLAMA; f <= SFT_FAMILY_GEMMA3; f++)
	{
		SftLlamaConfig cfg = family_config((SftFamily) f, f % 2);
		SftModel   *m = new_model(&cfg, 0.3f, 70 + f);
		SftTrainer *tr = new_trainer(m, 16, 0.0f, 99);
		SftBatch	b = pack_batch();
		size_t		n = sft_model_num_params(m);
		float	   *grads = malloc(sizeof(float) * n);
		double		loss = 0.0,
					err;
		int64_t		nt = 0;
		SftError	e = {0};

		TAP_OK(n == sft_llama_config_num_params(&cfg) &&
			   sft_trainer_accumulate(tr, &b, &loss, &nt, &e) == SFT_OK && nt == 7 && isfinite(loss),
			   "%s: %zu parameters as the config counts; accumulate, loss %.4f", names[f], n, loss);
		memcpy(grads, sft_trainer_grads(tr), sizeof(float) * n);
		err = model_fd_error(m, tr, &b, grads, 0, 0);
		TAP_OK(err < 2e-3, "%s: whole-model gradient = finite differences over all parameters: rel err %.2g",
			   names[f], err);
		free(grads);
		sft_trainer_free(tr);
		sft_model_free(m);
	}
}

/*
 * Gemma 3's window-bounded cache: 300 tokens through a decoder that keeps
 * only W - 1 + 128 rows for its local layers (so it slides), one token at a
 * time and as a 150-token prompt; -log p of every next token must add up to
 * the trainer's loss over the same sequence.
 */
static void
test_windowed_decoder(void)
{
	SftLlamaConfig cfg = family_config(SFT_FAMILY_GEMMA3, 1);
	SftModel   *m;
	SftTrainer *tr;
	SftDecoder *dec = NULL,
			   *dec2 = NULL;
	SftError	err = {0};
	int32_t		toks[300],
				mask[300];
	int			len = 300;
	float		logits[17],
				logits2[17];
	double		dec_loss = 0.0,
				tl = 0.0;
	int64_t		nt = 0;
	int			ok = 1;

	cfg.max_position = 512;
	cfg.sliding_window = 20;
	m = new_model(&cfg, 0.3f, 5);
	tr = new_trainer(m, len, 0.0f, 1);
	for (int i = 0; i < len; i++)
		toks[i] = (int32_t) (sft_rng_next(&rng) % 17), mask[i] = 1;
	ok &= sft_decoder_new(m, len, &dec, &err) == SFT_OK;
	ok &= sft_decoder_new(m, len, &dec2, &err) == SFT_OK;
	for (int i = 0; i + 1 < len && ok; i++)
	{
		double		mx = -INFINITY,
					sum = 0.0;

		ok &= sft_decoder_feed(dec, &toks[i], 1, logits, &err) == SFT_OK;
		for (int v = 0; v < 17; v++)
			mx = fmax(mx, logits[v]);
		for (int v = 0; v < 17; v++)
			sum += exp(logits[v] - mx);
		dec_loss += mx + log(sum) - logits[toks[i + 1]];
	}
	{
		int			lens[1] = {len};
		SftBatch	b = {1, lens, toks, mask};

		ok &= sft_trainer_evaluate(tr, &b, &tl, &nt, &err) == SFT_OK;
	}
	TAP_OK(ok && nt == len - 1 && fabs(dec_loss - tl) < 1e-5 * fabs(tl),
		   "gemma3 window 20, 300 tokens one by one through the sliding cache: decoder log-probs give the trainer's loss (%.6f vs %.6f) %s",
		   dec_loss, tl, err.message);
	ok &= sft_decoder_feed(dec2, toks, 150, NULL, &err) == SFT_OK;
	for (int i = 150; i < 299 && ok; i++)
		ok &= sft_decoder_feed(dec2, &toks[i], 1, logits2, &err) == SFT_OK;
	TAP_OK(ok && max_abs_diff(logits, logits2, 17) < 1e-5,
		   "a 150-token prompt then single tokens = one by one (max diff %.2g)", max_abs_diff(logits, logits2, 17));
	sft_decoder_free(dec);
	sft_decoder_free(dec2);
	sft_trainer_free(tr);
	sft_model_free(m);
}

static void
test_family_memory(void)
{
	SftAllocator a = {count_alloc, count_realloc, count_free};

	for (int f = SFT_FAMILY_LLAMA; f <= SFT_FAMILY_GEMMA3; f++)
	{
		SftLlamaConfig cfg = family_config((SftFamily) f, 0);
		SftModel   *m = NULL;
		SftTrainer *tr = NULL;
		SftDecoder *dec = NULL;
		SftError	err = {0};
		size_t		est,
					used,
					before;

		cfg.max_position = 400;
		sft_set_allocator(&a);
		sft_model_new(&cfg, &m, &err);
		sft_trainer_new(m, 40, 0.0f, 1, &tr, &err);
		used = alloc_bytes;
		est = sft_trainer_memory_estimate(&cfg, 40);
		TAP_OK(est >= used && est < used + used / 20,
			   "family %d: trainer memory estimate %zu bytes covers the %zu allocated (within 5%%)",
			   f, est, used);
		before = alloc_bytes;
		sft_decoder_new(m, 400, &dec, &err);
		used = alloc_bytes - before;
		est = sft_decoder_memory_estimate(&cfg, 400);
		TAP_OK(dec != NULL && est >= used && est < used + used / 10,
			   "family %d: decoder memory estimate %zu bytes covers the %zu allocated (within 10%%)",
			   f, est, used);
		sft_decoder_free(dec);
		sft_trainer_free(tr);
		sft_model_free(m);
		sft_set_allocator(NULL);
	}
}

/* ---------------------------------------------------------------------------
 * LoRA and activation checkpointing
 * ------------------------------------------------------------------------- */

static SftLoraAdapter *
new_adapter(const SftLlamaConfig *cfg, uint32_t targets, double dropout, uint64_t seed)
{
	SftLoraConfig lc = {.r = 3, .alpha = 6, .dropout = dropout, .targets = targets};
	SftLoraAdapter *ad = NULL;
	SftError	err = {0};

	if (sft_lora_adapter_new(&lc, cfg, &ad, &err) != SFT_OK)
	{
		printf("# sft_lora_adapter_new: %s\n", err.message);
		exit(1);
	}
	sft_lora_init_peft(ad, seed);
	return ad;
}

/* Two accumulations and one AdamW step; the gradients of the first kept in g. */
static int
train_twice(SftTrainer *tr, float *g, size_t n, double *loss)
{
	SftBatch	b = pack_batch();
	SftAdamWConfig adam = sft_adamw_config(0.1, 1.0);
	SftError	err = {0};
	int64_t		nt,
				nt2;
	double		l2,
				norm;

	if (sft_trainer_accumulate(tr, &b, loss, &nt, &err) != SFT_OK)
		return 0;
	memcpy(g, sft_trainer_grads(tr), sizeof(float) * n);
	if (sft_trainer_accumulate(tr, &b, &l2, &nt2, &err) != SFT_OK ||
		sft_trainer_step(tr, nt + nt2, &adam, 1e-2, &norm, &err) != SFT_OK)
		return 0;
	return 1;
}

static void
test_lora_trainer(void)
{
	SftError	err = {0};

	/* PEFT's initialisation: B zero, A uniform in +-1/sqrt(in); step 0 = the base */
	{
		SftLlamaConfig cfg = tiny_config(0);
		SftModel   *m = new_model(&cfg, 0.3f, 5);
		SftLoraAdapter *ad = new_adapter(&cfg, SFT_LORA_TARGET_ALL, 0.0, 9);
		SftTrainerOptions o = {.max_tokens = 16, .seed = 1, .adapter = ad};
		SftTrainer *tr = NULL,
				   *full = new_trainer(m, 16, 0.0f, 1);
		SftBatch	b = pack_batch();
		int			b_zero = 1,
					a_ok = 1;
		double		amax = 0;

		for (int i = 0; i < ad->n_tensors; i++)
			for (size_t j = 0; j < ad->tensors[i].numel; j++)
			{
				float		v = ad->params[ad->tensors[i].offset + j];

				if (ad->tensors[i].is_b)
					b_zero &= v == 0.0f;
				else
				{
					a_ok &= fabs(v) <= 1.0 / sqrt((double) ad->tensors[i].shape[1]);
					amax = fmax(amax, fabs(v) * sqrt((double) ad->tensors[i].shape[1]));
				}
			}
		TAP_OK(b_zero && a_ok && amax > 0.9,
			   "sft_lora_init_peft: lora_B zero, lora_A within +-1/sqrt(in) (max |A| sqrt(in) %.3f)", amax);
		TAP_OK(sft_trainer_create(m, &o, &tr, &err) == SFT_OK &&
			   sft_trainer_num_trained(tr) == ad->n_params,
			   "LoRA trainer trains the %zu adapter parameters only (base %zu)", ad->n_params,
			   sft_model_num_params(m));
		TAP_OK(eval_loss(tr, &b) == eval_loss(full, &b),
			   "with B = 0 the adapted model's loss is the base's, bit for bit (%.9f)", eval_loss(tr, &b));
		sft_trainer_free(tr);
		sft_trainer_free(full);
		sft_lora_adapter_free(ad);
		sft_model_free(m);
	}

	/*
	 * Activation checkpointing on and off: the same gradients and the same
	 * step, bit for bit, full fine-tuning and LoRA, with residual and
	 * adapter dropout, for every family.
	 */
	for (int f = SFT_FAMILY_LLAMA; f <= SFT_FAMILY_GEMMA3; f++)
		for (int lora = 0; lora < 2; lora++)
		{
			SftLlamaConfig cfg = family_config((SftFamily) f, f % 2);
			SftModel   *m[2];
			SftLoraAdapter *ad[2] = {NULL, NULL};
			SftTrainer *tr[2] = {NULL, NULL};
			float	   *g[2];
			double		loss[2];
			size_t		n = 0;
			int			ok = 1;

			for (int k = 0; k < 2; k++)
			{
				SftTrainerOptions o = {.max_tokens = 16, .dropout = 0.1f, .seed = 3,
				.checkpoint_activations = k};

				m[k] = new_model(&cfg, 0.3f, 11);
				if (lora)
				{
					ad[k] = new_adapter(&cfg, SFT_LORA_TARGET_ALL, 0.2, 4);
					/* B non-zero, or A's gradients would all be zero */
					for (size_t j = 0; j < ad[k]->n_params; j++)
						ad[k]->params[j] += 0.05f * (float) ((j * 7919) % 13) - 0.3f;
					o.adapter = ad[k];
				}
				ok &= sft_trainer_create(m[k], &o, &tr[k], &err) == SFT_OK;
				n = ok ? sft_trainer_num_trained(tr[k]) : 0;
				g[k] = malloc(sizeof(float) * (n ? n : 1));
				ok &= ok && train_twice(tr[k], g[k], n, &loss[k]);
			}
			ok &= loss[0] == loss[1] && memcmp(g[0], g[1], sizeof(float) * n) == 0 &&
				memcmp(lora ? ad[0]->params : sft_model_params(m[0]),
					   lora ? ad[1]->params : sft_model_params(m[1]),
					   sizeof(float) * n) == 0 && max_abs(g[0], n) > 0;
			if (lora)
				ok &= memcmp(sft_model_params(m[0]), sft_model_params(m[1]),
							 sizeof(float) * sft_model_num_params(m[0])) == 0;
			TAP_OK(ok, "family %d %s, dropout: checkpoint_activations gives the same loss, %zu gradients and step bit for bit %s",
				   f, lora ? "LoRA all-linear" : "full fine-tuning", n, err.message);
			for (int k = 0; k < 2; k++)
			{
				sft_trainer_free(tr[k]);
				sft_lora_adapter_free(ad[k]);
				sft_model_free(m[k]);
				free(g[k]);
			}
		}

	/* the frozen base stays byte for byte; only the adapter moves */
	{
		SftLlamaConfig cfg = family_config(SFT_FAMILY_QWEN2, 0);
		SftModel   *m = new_model(&cfg, 0.3f, 2);
		SftLoraAdapter *ad = new_adapter(&cfg, SFT_LORA_TARGET(SFT_LORA_V) | SFT_LORA_TARGET(SFT_LORA_DOWN), 0.0, 1);
		SftTrainerOptions o = {.max_tokens = 16, .seed = 1, .adapter = ad};
		SftTrainer *tr = NULL;
		size_t		n = sft_model_num_params(m);
		float	   *before = malloc(sizeof(float) * n),
				   *before_ad = malloc(sizeof(float) * ad->n_params),
				   *g = malloc(sizeof(float) * ad->n_params);
		double		loss;
		int			ok;

		memcpy(before, sft_model_params(m), sizeof(float) * n);
		memcpy(before_ad, ad->params, sizeof(float) * ad->n_params);
		ok = sft_trainer_create(m, &o, &tr, &err) == SFT_OK && train_twice(tr, g, ad->n_params, &loss);
		TAP_OK(ok && memcmp(before, sft_model_params(m), sizeof(float) * n) == 0 &&
			   memcmp(before_ad, ad->params, sizeof(float) * ad->n_params) != 0,
			   "qwen2 LoRA on v_proj and down_proj: the base is bit-identical after a step, the adapter moved");
		sft_trainer_free(tr);
		sft_lora_adapter_free(ad);
		sft_model_free(m);
		free(before), free(before_ad), free(g);
	}

	/*
	 * LoRA memorises: random sequences behind distinct first tokens, on a
	 * frozen base whose embeddings (the tied LM head) are large enough to
	 * express confident predictions (an HF-initialised base at std 0.02
	 * cannot: its logits stay within about +-0.6 whatever the adapter does).
	 */
	{
		SftLlamaConfig cfg = {
			.hidden_size = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
			.intermediate_size = 64, .vocab_size = 24, .max_position = 300,
			.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = 1
		};
		SftModel   *m = new_model(&cfg, 0.3f, 3);
		SftLoraConfig lc = {.r = 8, .alpha = 16, .targets = SFT_LORA_TARGET_ALL};
		SftLoraAdapter *ad = NULL;
		SftTrainerOptions o = {.max_tokens = 8 * 12, .seed = 1};
		SftTrainer *tr = NULL;
		SftAdamWConfig adam = {0.9, 0.99, 1e-8, 0.0, 1.0};
		int32_t		toks[8 * 12],
					mask[8 * 12];
		int			lens[8];
		double		loss = 0,
					first = 0,
					mean = 0;
		int64_t		nt = 0;
		int			steps;
		SftRng		r;

		sft_lora_adapter_new(&lc, &cfg, &ad, &err);
		sft_lora_init_peft(ad, 1);
		o.adapter = ad;
		sft_trainer_create(m, &o, &tr, &err);
		sft_rng_seed(&r, 42);
		for (int s = 0; s < 8; s++)
		{
			lens[s] = 12;
			for (int i = 0; i < 12; i++)
			{
				toks[s * 12 + i] = i == 0 ? s : (int32_t) (sft_rng_next(&r) % 24);
				mask[s * 12 + i] = 1;
			}
		}
		{
			SftBatch	b = {8, lens, toks, mask};

			for (steps = 0; steps < 400; steps++)
			{
				sft_trainer_accumulate(tr, &b, &loss, &nt, NULL);
				mean = loss / nt;
				if (steps == 0)
					first = mean;
				if (mean < 0.05)
					break;
				sft_trainer_step(tr, nt, &adam, 1e-2, NULL, NULL);
			}
		}
		TAP_OK(mean < 0.05, "LoRA all-linear r=8 memorises 8 random sequences on a frozen base: mean loss %.4f -> %.4f in %d AdamW steps",
			   first, mean, steps);
		sft_trainer_free(tr);
		sft_lora_adapter_free(ad);
		sft_model_free(m);
	}

	/* LoRA training checkpoints: adapter + moments round trip; each reader refuses the other kind */
	{
		SftLlamaConfig cfg = tiny_config(1),
					other = tiny_config(1);
		SftModel   *m = new_model(&cfg, 0.3f, 2),
				   *mback = NULL;
		SftLoraAdapter *ad = new_adapter(&cfg, SFT_LORA_TARGET(SFT_LORA_O) | SFT_LORA_TARGET(SFT_LORA_UP), 0.1, 3),
				   *back = NULL;
		float	   *mm = malloc(sizeof(float) * ad->n_params),
				   *vv = malloc(sizeof(float) * ad->n_params),
				   *m2 = NULL,
				   *v2 = NULL;
		int64_t		step = 0;
		SftCheckpointState st = {mm, vv, 12, NULL};
		SftBuf		buf,
					mbuf;
		SftMemReader r;
		int			ok;

		for (size_t i = 0; i < ad->n_params; i++)
			mm[i] = 0.5f * (float) i, vv[i] = 0.25f * (float) i;
		sft_buf_init(&buf);
		sft_buf_init(&mbuf);
		ok = sft_checkpoint_write_adapter(sft_buf_write, &buf, ad, &st, &err) == SFT_OK;
		r = (SftMemReader) {(const unsigned char *) buf.data, buf.len, 0};
		ok &= sft_checkpoint_read_adapter(sft_mem_read, &r, &cfg, &back, &m2, &v2, &step, NULL, &err) == SFT_OK;
		ok &= back && back->n_params == ad->n_params && step == 12 &&
			back->config.targets == ad->config.targets && back->config.r == ad->config.r &&
			memcmp(back->params, ad->params, sizeof(float) * ad->n_params) == 0 &&
			memcmp(m2, mm, sizeof(float) * ad->n_params) == 0 && memcmp(v2, vv, sizeof(float) * ad->n_params) == 0;
		TAP_OK(ok && buf.len < 3 * 4 * ad->n_params + 1024,
			   "adapter checkpoint: %zu bytes for %zu adapter parameters and moments, read back bit for bit %s",
			   buf.len, ad->n_params, err.message);
		r = (SftMemReader) {(const unsigned char *) buf.data, buf.len, 0};
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_read(sft_mem_read, &r, &mback, NULL, NULL, NULL, NULL, &err) == SFT_ERR_FORMAT &&
			   mback == NULL, "the model reader refuses an adapter checkpoint: %s", err.message);
		sft_checkpoint_write(sft_buf_write, &mbuf, m, NULL, &err);
		sft_lora_adapter_free(back);
		back = NULL;
		r = (SftMemReader) {(const unsigned char *) mbuf.data, mbuf.len, 0};
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_read_adapter(sft_mem_read, &r, &cfg, &back, NULL, NULL, NULL, NULL, &err) == SFT_ERR_FORMAT &&
			   back == NULL, "the adapter reader refuses a model checkpoint: %s", err.message);
		other.intermediate_size = 24;
		r = (SftMemReader) {(const unsigned char *) buf.data, buf.len, 0};
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_read_adapter(sft_mem_read, &r, &other, &back, NULL, NULL, NULL, NULL, &err) != SFT_OK &&
			   back == NULL, "an adapter checkpoint for another base shape is refused: %s", err.message);
		sft_buf_free(&buf);
		sft_buf_free(&mbuf);
		free(mm), free(vv);
		sft_free(m2), sft_free(v2);
		sft_lora_adapter_free(ad);
		sft_model_free(m);
	}

	/* a bad adapter: one made for another shape */
	{
		SftLlamaConfig cfg = tiny_config(0),
					other = tiny_config(0);
		SftModel   *m = new_model(&cfg, 0.3f, 2);
		SftLoraAdapter *ad;
		SftTrainerOptions o = {.max_tokens = 16};
		SftTrainer *tr = NULL;

		other.intermediate_size = 24;
		ad = new_adapter(&other, SFT_LORA_TARGET_ALL, 0.0, 1);
		o.adapter = ad;
		sft_error_clear(&err);
		TAP_OK(sft_trainer_create(m, &o, &tr, &err) != SFT_OK && tr == NULL,
			   "an adapter of another shape is refused: %s", err.message);
		sft_lora_adapter_free(ad);
		sft_model_free(m);
	}

	/* memory: the estimate covers what LoRA (+ checkpointing) allocates; both save */
	{
		SftAllocator a = {count_alloc, count_realloc, count_free};
		SftLlamaConfig cfg = family_config(SFT_FAMILY_GEMMA3, 0);
		SftLoraConfig lc = {.r = 3, .alpha = 6, .dropout = 0.1, .targets = SFT_LORA_TARGET_ALL};
		int			clean = 1;

		cfg.max_position = 400;
		for (int ckpt = 0; ckpt < 2; ckpt++)
		{
			SftModel   *m = NULL;
			SftLoraAdapter *ad = NULL;
			SftTrainer *tr = NULL;
			SftTrainerOptions o = {.max_tokens = 40, .dropout = 0.1f, .checkpoint_activations = ckpt};
			size_t		est,
						used;

			sft_set_allocator(&a);
			sft_model_new(&cfg, &m, &err);
			sft_lora_adapter_new(&lc, &cfg, &ad, &err);
			o.adapter = ad;
			sft_trainer_create(m, &o, &tr, &err);
			used = alloc_bytes;
			est = sft_trainer_memory_estimate_for(&cfg, &o, &lc);
			TAP_OK(tr && est >= used && est < used + used / 20,
				   "LoRA%s: memory estimate %zu bytes covers the %zu allocated (within 5%%)",
				   ckpt ? " + checkpointing" : "", est, used);
			sft_trainer_free(tr);
			sft_lora_adapter_free(ad);
			sft_model_free(m);
			if (alloc_bytes != 0)
				clean = 0;
			/* every allocation failing in turn */
			for (long budget = 0; budget < 24; budget++)
			{
				SftStatus	st;

				m = NULL;
				ad = NULL;
				tr = NULL;
				alloc_budget = budget;
				st = sft_model_new(&cfg, &m, &err);
				if (st == SFT_OK)
					st = sft_lora_adapter_new(&lc, &cfg, &ad, &err);
				o.adapter = ad;
				if (st == SFT_OK)
					st = sft_trainer_create(m, &o, &tr, &err);
				alloc_budget = -1;
				if (st != SFT_OK && st != SFT_ERR_NOMEM)
					clean = 0;
				sft_trainer_free(tr);
				sft_lora_adapter_free(ad);
				sft_model_free(m);
				if (alloc_bytes != 0)
					clean = 0;
			}
			sft_set_allocator(NULL);
		}
		TAP_OK(clean, "LoRA trainers free everything; allocation failures give SFT_ERR_NOMEM without leaks");
	}
	{
		SftLlamaConfig smol = {
			.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
			.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
			.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1
		};
		SftLoraConfig lc = {.r = 16, .alpha = 32, .dropout = 0.05, .targets = SFT_LORA_TARGET_ALL};
		SftTrainerOptions full = {.max_tokens = 512},
					ck = {.max_tokens = 512, .checkpoint_activations = 1};
		size_t		ef = sft_trainer_memory_estimate_for(&smol, &full, NULL),
					el = sft_trainer_memory_estimate_for(&smol, &full, &lc),
					elc = sft_trainer_memory_estimate_for(&smol, &ck, &lc),
					efc = sft_trainer_memory_estimate_for(&smol, &ck, NULL);

		TAP_OK(el < ef / 2 && elc < el && efc < ef,
			   "SmolLM2-135M at 512 tokens: full %.2f GB, +checkpointing %.2f GB, LoRA r=16 all-linear %.2f GB, +checkpointing %.2f GB",
			   ef / 1e9, efc / 1e9, el / 1e9, elc / 1e9);
	}
}

int
main(void)
{
	openblas_set_num_threads(1);
	sft_rng_seed(&rng, 777);
	test_tensor_table();
	test_model_gradients(1, 0.0f);
	test_model_gradients(0, 0.0f);
	test_model_gradients(1, 0.3f);
	test_packing();
	test_trainer_threads();
	test_grad_accumulation();
	test_clipping();
	test_memorise_and_decode();
	test_decoder_threads();
	test_sampler();
	test_memory();
	test_bad_batches();
	test_family_models();
	test_windowed_decoder();
	test_family_memory();
	test_lora_trainer();
	return tap_done();
}
