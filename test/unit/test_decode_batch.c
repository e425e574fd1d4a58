/*
 * test_decode_batch.c: sft_decoder_step_batch steps several sequences at
 * once and gives each exactly (bitwise) the logits of stepping it alone,
 * with fp32 and with reduced-precision decode weights, for sequences of
 * different lengths in decoders of different sizes; bad calls change nothing.
 */
#include "model.h"
#include "tap.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define NSEQ 5
#define STEPS 12

static void
test_batch(SftDType dt, int tied, int threads)
{
	SftLlamaConfig cfg = {
		.hidden_size = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
		.intermediate_size = 96, .vocab_size = 301, .max_position = 512,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = tied,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *m = NULL;
	SftDecodeWeights *w = NULL;
	SftDecoder *batch[NSEQ],
			   *alone[NSEQ];
	SftError	err = {0};
	float	   *lb = malloc(sizeof(float) * NSEQ * cfg.vocab_size),
			   *la = malloc(sizeof(float) * cfg.vocab_size);
	int32_t		next[NSEQ];
	int			same = 1,
				ok = 1;
	SftRng		r;

	openblas_set_num_threads(threads);
	sft_model_new(&cfg, &m, &err);
	sft_model_init_random(m, 21);
	if (dt != SFT_DTYPE_F32)
		ok = sft_decode_weights_new(m, dt, &w, &err) == SFT_OK;
	sft_rng_seed(&r, 4);
	for (int s = 0; s < NSEQ && ok; s++)
	{
		int			plen = 3 + 17 * s;	/* 3 .. 71 tokens: chunks of one and of many */
		int32_t		prompt[80];

		for (int i = 0; i < plen; i++)
			prompt[i] = (int32_t) (sft_rng_next(&r) % cfg.vocab_size);
		ok = sft_decoder_new(m, 100 + 60 * s, &batch[s], &err) == SFT_OK &&
			sft_decoder_new(m, 100 + 60 * s, &alone[s], &err) == SFT_OK;
		if (!ok)
			break;
		sft_decoder_use_weights(batch[s], w);
		sft_decoder_use_weights(alone[s], w);
		ok = sft_decoder_feed(batch[s], prompt, plen, la, &err) == SFT_OK &&
			sft_decoder_feed(alone[s], prompt, plen, la, &err) == SFT_OK;
		next[s] = sft_sample(la, cfg.vocab_size, NULL, NULL, NULL);
	}
	for (int step = 0; step < STEPS && ok; step++)
	{
		ok = sft_decoder_step_batch(batch, NSEQ, next, lb, &err) == SFT_OK;
		for (int s = 0; s < NSEQ && ok; s++)
		{
			ok = sft_decoder_feed(alone[s], &next[s], 1, la, &err) == SFT_OK;
			if (memcmp(la, lb + (size_t) s * cfg.vocab_size, sizeof(float) * cfg.vocab_size) != 0)
				same = 0;
			next[s] = sft_sample(la, cfg.vocab_size, NULL, NULL, NULL);
		}
	}
	TAP_OK(ok && same, "%d sequences x %d batched steps (%s, %s, %d threads): logits bitwise equal to stepping each alone%s%s",
		   NSEQ, STEPS, sft_dtype_name(dt), tied ? "tied" : "untied", threads,
		   ok ? "" : ": ", ok ? "" : err.message);
	if (dt == SFT_DTYPE_F32 && tied && threads == 1)
	{
		int			pos0 = sft_decoder_position(batch[0]);
		int32_t		bad[NSEQ] = {1, 2, 3, 4, 301};
		SftDecoder *twice[2] = {batch[0], batch[0]};

		sft_error_clear(&err);
		TAP_OK(sft_decoder_step_batch(batch, NSEQ, bad, lb, &err) == SFT_ERR_INVALID &&
			   sft_decoder_position(batch[0]) == pos0, "a token outside the vocabulary: %s; nothing stepped",
			   err.message);
		sft_error_clear(&err);
		TAP_OK(sft_decoder_step_batch(twice, 2, bad, lb, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "twice") != NULL &&
			   sft_decoder_position(batch[0]) == pos0, "a sequence twice: %s", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_decoder_step_batch(batch, 129, bad, lb, &err) == SFT_ERR_LIMIT,
			   "more than 128 sequences: %s", err.message);
		sft_decoder_use_weights(batch[1], (const SftDecodeWeights *) batch);	/* any other pointer */
		sft_error_clear(&err);
		TAP_OK(sft_decoder_step_batch(batch, NSEQ, next, lb, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "share") != NULL, "different decode weights: %s", err.message);
		sft_decoder_use_weights(batch[1], NULL);
	}
	for (int s = 0; s < NSEQ; s++)
	{
		sft_decoder_free(batch[s]);
		sft_decoder_free(alone[s]);
	}
	sft_decode_weights_free(w);
	sft_model_free(m);
	free(lb);
	free(la);
}

int
main(void)
{
	test_batch(SFT_DTYPE_F32, 1, 1);
	test_batch(SFT_DTYPE_F32, 0, 2);
	test_batch(SFT_DTYPE_BF16, 1, 2);
	test_batch(SFT_DTYPE_Q8_0, 0, 2);
	test_batch(SFT_DTYPE_Q8_0, 1, 1);
	return tap_done();
}
