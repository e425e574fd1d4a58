/*
 * test_quant.c: reduced-precision weights (quant.h) and the decoder reading
 * them.  Conversions against their definitions and the CPU's own F16C
 * instructions, q8_0 blocks against ggml's rule, the vector kernels against
 * the portable ones, and a decoder with bf16/q8_0 weights against an fp32
 * decoder whose matrices hold the same rounded values.
 */
#include "quant.h"
#include "model.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

static float
bits_f(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static void
test_conversions(void)
{
	int			bad = 0;
	SftRng		r;

	/* every non-NaN pattern survives to float and back */
	for (uint32_t h = 0; h < 65536; h++)
	{
		float		f = sft_f16_to_f32((uint16_t) h);

		if (!isnan(f) && sft_f32_to_f16(f) != h)
			bad++;
	}
	TAP_OK(bad == 0, "f16 -> f32 -> f16 is the identity on all non-NaN patterns (%d wrong)", bad);
	bad = 0;
	for (uint32_t b = 0; b < 65536; b++)
	{
		float		f = sft_bf16_to_f32((uint16_t) b);

		if (!isnan(f) && sft_f32_to_bf16(f) != b)
			bad++;
	}
	TAP_OK(bad == 0, "bf16 -> f32 -> bf16 is the identity on all non-NaN patterns (%d wrong)", bad);

	/* halfway cases round to even */
	TAP_OK(sft_f32_to_bf16(bits_f(0x3f808000u)) == 0x3f80 && sft_f32_to_bf16(bits_f(0x3f818000u)) == 0x3f82 &&
		   sft_f32_to_bf16(bits_f(0x3f808001u)) == 0x3f81,
		   "bf16: ties to even (1.00390625 -> 1, 1.01171875 -> 1.015625), above a tie rounds up");
	TAP_OK(sft_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00 &&
		   sft_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02 &&
		   sft_f32_to_f16(65519.0f) == 0x7bff && sft_f32_to_f16(65520.0f) == 0x7c00 &&
		   sft_f32_to_f16(-1e9f) == 0xfc00 && sft_f32_to_f16(ldexpf(1, -25)) == 0x0000 &&
		   sft_f32_to_f16(ldexpf(3, -26)) == 0x0001 && isnan(sft_f16_to_f32(sft_f32_to_f16(NAN))),
		   "f16: ties to even, overflow to infinity at 65520, subnormals, NaN");

	/* random floats over the whole range against the CPU's conversion */
	sft_rng_seed(&r, 5);
	bad = 0;
#if defined(__F16C__)
	for (int i = 0; i < 1000000; i++)
	{
		uint32_t	u = (uint32_t) sft_rng_next(&r);
		float		f = bits_f((u & 0x80000000u) | ((u % 0x1f000000u) + 0x30000000u));
		uint16_t	want = (uint16_t) _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);

		if (!isnan(f) && sft_f32_to_f16(f) != want)
			bad++;
	}
	TAP_OK(bad == 0, "f32 -> f16 equals the F16C instruction on 1e6 random floats (%d differ)", bad);
#else
	TAP_OK(1, "f32 -> f16 vs F16C: # SKIP not built for F16C");
#endif
}

static void
test_q8_0_blocks(void)
{
	float		x[64];
	SftBlockQ8_0 blk[2];
	float		back[64];
	float		worst = 0.0f;
	float		d;

	for (int i = 0; i < 32; i++)
		x[i] = (float) (i - 16) * 0.37f;
	for (int i = 32; i < 64; i++)
		x[i] = 0.0f;
	x[5] = -20.0f;				/* the block's max |x| */
	sft_quantize_row(SFT_DTYPE_Q8_0, x, blk, 64);
	d = sft_f16_to_f32(blk[0].d);
	TAP_OK(sizeof(SftBlockQ8_0) == 34 && blk[0].d == sft_f32_to_f16(20.0f / 127.0f) &&
		   blk[0].qs[5] == -127 && blk[1].d == 0 && blk[1].qs[0] == 0,
		   "q8_0: 34-byte blocks, scale max|x| / 127 in fp16, the max maps to -127, a zero block is zero");
	sft_dequantize_row(SFT_DTYPE_Q8_0, blk, back, 64);
	for (int i = 0; i < 64; i++)
		worst = fmaxf(worst, fabsf(back[i] - x[i]));
	TAP_OK(worst <= 0.5f * d * 1.01f + 1e-6f, "q8_0 round trip error %.5f <= half a step (%.5f)", worst, 0.5f * d);
	TAP_OK(sft_dtype_row_bytes(SFT_DTYPE_Q8_0, 576) == 18 * 34 &&
		   sft_dtype_row_bytes(SFT_DTYPE_BF16, 576) == 1152, "row sizes");
}

static void
test_kernels(void)
{
	const int	shapes[][2] = {{576, 70}, {1536, 33}, {32, 5}, {37, 9}};
	SftRng		r;

	sft_rng_seed(&r, 9);
	for (int s = 0; s < 4; s++)
		for (int dt = SFT_DTYPE_BF16; dt <= SFT_DTYPE_Q8_0; dt++)
		{
			int			IN = shapes[s][0],
						OUT = shapes[s][1];
			float	   *w = malloc(sizeof(float) * IN * OUT);
			float	   *wd = malloc(sizeof(float) * IN * OUT);
			float	   *x = malloc(sizeof(float) * IN);
			float	   *y = malloc(sizeof(float) * OUT);
			float	   *yp = malloc(sizeof(float) * OUT);
			size_t		row = sft_dtype_row_bytes(dt, IN);
			char	   *q;
			double		worst = 0.0,
						worst_ref = 0.0;

			if (dt == SFT_DTYPE_Q8_0 && IN % 32 != 0)
				continue;
			q = malloc(row * OUT);
			for (int i = 0; i < IN * OUT; i++)
				w[i] = 0.05f * sft_rng_normal(&r);
			for (int i = 0; i < IN; i++)
				x[i] = sft_rng_normal(&r);
			for (int o = 0; o < OUT; o++)
			{
				sft_quantize_row(dt, w + (size_t) o * IN, q + o * row, IN);
				sft_dequantize_row(dt, q + o * row, wd + (size_t) o * IN, IN);
			}
			sft_matvec_quant(dt, y, x, q, IN, OUT);
			sft_matvec_quant_portable(dt, yp, x, q, IN, OUT);
			for (int o = 0; o < OUT; o++)
			{
				double		ref = 0.0,
							mag = 0.0;

				for (int i = 0; i < IN; i++)
				{
					ref += (double) wd[(size_t) o * IN + i] * x[i];
					mag += fabs((double) wd[(size_t) o * IN + i] * x[i]);
				}
				worst = fmax(worst, fabs(y[o] - yp[o]) / (mag + 1e-30));
				worst_ref = fmax(worst_ref, fabs(y[o] - ref) / (mag + 1e-30));
			}
			TAP_OK(worst < 1e-5 && worst_ref < 1e-5,
				   "%s matvec %dx%d: vector vs portable %.1e, vs float64 of the stored values %.1e (relative to sum |w x|)",
				   sft_dtype_name(dt), OUT, IN, worst, worst_ref);
			free(w);
			free(wd);
			free(x);
			free(y);
			free(yp);
			free(q);
		}
}

/* Round the 2-D tensors of m (only the one named only, if not NULL) to dtype and back. */
static void
round_matrices(SftModel *m, SftDType dt, const char *only)
{
	for (int i = 0; i < sft_model_tensor_count(m); i++)
	{
		const SftParamTensor *t = sft_model_tensor(m, i);
		char	   *buf;

		if (t->ndim != 2 || (only && strcmp(t->name, only) != 0))
			continue;
		buf = malloc(sft_dtype_row_bytes(dt, t->shape[1]));
		for (int64_t r = 0; r < t->shape[0]; r++)
		{
			float	   *p = sft_model_params(m) + t->offset + r * t->shape[1];

			sft_quantize_row(dt, p, buf, t->shape[1]);
			sft_dequantize_row(dt, buf, p, t->shape[1]);
		}
		free(buf);
	}
}

/*
 * A decoder reading dtype weights gives the logits of an fp32 decoder over a
 * model whose matrices were rounded to dtype and back: only the order of the
 * sums differs.  Covers the fused q|k|v and gate|up rows and the LM head,
 * tied and untied.
 */
static void
test_decoder(SftDType dt, int tied)
{
	SftLlamaConfig cfg = {
		.hidden_size = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
		.intermediate_size = 96, .vocab_size = 300, .max_position = 64,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = tied,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *m = NULL,
			   *rounded = NULL;
	SftDecodeWeights *w = NULL;
	SftDecoder *da = NULL,
			   *db = NULL;
	SftError	err = {0};
	float	   *la = malloc(sizeof(float) * cfg.vocab_size),
			   *lb = malloc(sizeof(float) * cfg.vocab_size);
	int32_t		prompt[5] = {1, 7, 42, 299, 3};
	double		worst = 0.0;
	int			ok;

	sft_model_new(&cfg, &m, &err);
	sft_model_init_random(m, 11);
	/*
	 * Embeddings are looked up in fp32 but (tied) also serve as the LM head:
	 * round them in the model itself first, so both decoders look up the same
	 * rows; then round every matrix of the copy.
	 */
	round_matrices(m, dt, "model.embed_tokens.weight");
	sft_model_new(&cfg, &rounded, &err);
	memcpy(sft_model_params(rounded), sft_model_params(m), sizeof(float) * sft_model_num_params(m));
	round_matrices(rounded, dt, NULL);
	ok = sft_decode_weights_new(m, dt, &w, &err) == SFT_OK &&
		sft_decoder_new(m, 64, &da, &err) == SFT_OK &&
		sft_decoder_new(rounded, 64, &db, &err) == SFT_OK;
	if (ok)
	{
		sft_decoder_use_weights(da, w);
		/* the prompt is prefilled in fp32 from the model: feed the rounded one its own way */
		for (int i = 0; i < 5 && ok; i++)
		{
			ok = sft_decoder_feed(da, &prompt[i], 1, la, &err) == SFT_OK &&
				sft_decoder_feed(db, &prompt[i], 1, lb, &err) == SFT_OK;
			for (int v = 0; v < cfg.vocab_size; v++)
				worst = fmax(worst, fabs(la[v] - lb[v]));
		}
	}
	TAP_OK(ok && worst < 1e-4, "decoder with %s weights (%s): logits of 5 single-token steps = fp32 over the rounded weights (max diff %.2e)%s%s",
		   sft_dtype_name(dt), tied ? "tied" : "untied", worst, ok ? "" : ": ", ok ? "" : err.message);
	TAP_OK(w && sft_decode_weights_bytes(w) >= (size_t) ((dt == SFT_DTYPE_BF16 ? 2.0 : 34.0 / 32.0) *
														  (sft_model_num_params(m) - (cfg.n_layers * 2 + 1) * cfg.hidden_size)),
		   "%s decode weights hold every matrix (%zu bytes)", sft_dtype_name(dt), sft_decode_weights_bytes(w));
	sft_decoder_free(da);
	sft_decoder_free(db);
	sft_decode_weights_free(w);
	sft_model_free(m);
	sft_model_free(rounded);
	free(la);
	free(lb);
}

static void
test_q8_0_refused(void)
{
	SftLlamaConfig cfg = {
		.hidden_size = 48, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2, .head_dim = 12,
		.intermediate_size = 64, .vocab_size = 40, .max_position = 16,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = 1,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *m = NULL;
	SftDecodeWeights *w = NULL;
	SftError	err = {0};
	SftStatus	st;

	sft_model_new(&cfg, &m, &err);
	st = sft_decode_weights_new(m, SFT_DTYPE_Q8_0, &w, &err);
	TAP_OK(st == SFT_ERR_UNSUPPORTED && w == NULL && strstr(err.message, "multiple of 32") != NULL,
		   "q8_0 refuses rows of 48: %s", err.message);
	TAP_OK(sft_decode_weights_new(m, SFT_DTYPE_BF16, &w, &err) == SFT_OK, "bf16 takes them");
	sft_decode_weights_free(w);
	sft_model_free(m);
}

int
main(void)
{
	SftDType	dt;

	test_conversions();
	test_q8_0_blocks();
	test_kernels();
	test_decoder(SFT_DTYPE_BF16, 1);
	test_decoder(SFT_DTYPE_BF16, 0);
	test_decoder(SFT_DTYPE_Q8_0, 1);
	test_decoder(SFT_DTYPE_Q8_0, 0);
	test_q8_0_refused();
	TAP_OK(sft_dtype_from_name("q8_0", &dt) && dt == SFT_DTYPE_Q8_0 && !sft_dtype_from_name("q4_0", &dt),
		   "dtype names");
	return tap_done();
}
