/*
 * fuzz_checkpoint.c: libFuzzer target for the checkpoint reader.
 *
 * Built with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, so the reader does not
 * enforce its CRC-32s and the fuzzer reaches the parsing behind them.  The
 * allocator hook refuses blocks over 64 MiB: a config asking for a huge model
 * must end in SFT_ERR_NOMEM, not in the fuzzer's out-of-memory report.  A
 * checkpoint that reads must write and read back to the same values.  Every
 * input is also read as a LoRA training checkpoint (an adapter and its
 * moments) for the base of fuzz_lora_base.h, with the same round trip.
 */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_lora_base.h"

#define FUZZ_MAX_ALLOC ((size_t) 64 << 20)

static void *
capped_alloc(size_t size)
{
	return size > FUZZ_MAX_ALLOC ? NULL : malloc(size);
}

static void *
capped_realloc(void *p, size_t size)
{
	return size > FUZZ_MAX_ALLOC ? NULL : realloc(p, size);
}

static const SftAllocator capped = {capped_alloc, capped_realloc, free};

static int
same_floats(const float *a, const float *b, size_t n)
{
	return (a == NULL && b == NULL) ||
		(a != NULL && b != NULL && memcmp(a, b, n * sizeof(float)) == 0);
}

/* The input as an adapter checkpoint: read, write, read back the same. */
static void
fuzz_adapter(const uint8_t *data, size_t size)
{
	SftLlamaConfig base = fuzz_lora_base();
	SftMemReader r = {data, size, 0};
	SftLoraAdapter *ad = NULL,
			   *ad2 = NULL;
	float	   *m = NULL,
			   *v = NULL,
			   *m2 = NULL,
			   *v2 = NULL;
	int64_t		step = 0,
				step2 = 0;
	SftError	err;
	SftBuf		out;
	SftMemReader r2;

	sft_error_clear(&err);
	if (sft_checkpoint_read_adapter(sft_mem_read, &r, &base, &ad, &m, &v, &step, NULL, &err) != SFT_OK)
	{
		if (err.message[0] == '\0' || ad != NULL || m != NULL)
			abort();
		return;
	}
	{
		SftCheckpointState state = {m, v, step, NULL};

		sft_buf_init(&out);
		if (sft_checkpoint_write_adapter(sft_buf_write, &out, ad, &state, &err) != SFT_OK)
			abort();
	}
	r2.data = (const unsigned char *) out.data;
	r2.len = out.len;
	r2.pos = 0;
	if (sft_checkpoint_read_adapter(sft_mem_read, &r2, &base, &ad2, &m2, &v2, &step2, NULL, &err) != SFT_OK ||
		r2.pos != out.len || step2 != step || ad2->n_params != ad->n_params ||
		memcmp(ad->params, ad2->params, ad->n_params * sizeof(float)) != 0 ||
		!same_floats(m, m2, ad->n_params) || !same_floats(v, v2, ad->n_params))
		abort();
	sft_buf_free(&out);
	sft_lora_adapter_free(ad);
	sft_lora_adapter_free(ad2);
	sft_free(m);
	sft_free(v);
	sft_free(m2);
	sft_free(v2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftMemReader r = {data, size, 0};
	SftModel   *model = NULL;
	float	   *m = NULL;
	float	   *v = NULL;
	int64_t		step = 0;
	char	   *meta = NULL;
	SftError	err;
	SftStatus	st;

	sft_set_allocator(&capped);
	fuzz_adapter(data, size);
	sft_error_clear(&err);
	st = sft_checkpoint_read(sft_mem_read, &r, &model, &m, &v, &step, &meta, &err);
	if (st != SFT_OK)
	{
		if (err.message[0] == '\0' || model != NULL || m != NULL || meta != NULL)
			abort();
		return 0;
	}
	{
		SftCheckpointState state = {m, v, step, meta};
		SftBuf		out;
		SftMemReader r2;
		SftModel   *model2 = NULL;
		float	   *m2 = NULL;
		float	   *v2 = NULL;
		int64_t		step2 = 0;
		char	   *meta2 = NULL;
		size_t		n = sft_model_num_params(model);

		sft_buf_init(&out);
		if (sft_checkpoint_write(sft_buf_write, &out, model, &state, &err) != SFT_OK)
			abort();
		r2.data = (const unsigned char *) out.data;
		r2.len = out.len;
		r2.pos = 0;
		if (sft_checkpoint_read(sft_mem_read, &r2, &model2, &m2, &v2, &step2, &meta2, &err) != SFT_OK ||
			r2.pos != out.len || step2 != step ||
			memcmp(sft_model_params(model), sft_model_params(model2), n * sizeof(float)) != 0 ||
			!same_floats(m, m2, n) || !same_floats(v, v2, n) ||
			(meta == NULL) != (meta2 == NULL) || (meta && strcmp(meta, meta2) != 0))
			abort();
		sft_buf_free(&out);
		sft_model_free(model2);
		sft_free(m2);
		sft_free(v2);
		sft_free(meta2);
	}
	sft_model_free(model);
	sft_free(m);
	sft_free(v);
	sft_free(meta);
	return 0;
}
