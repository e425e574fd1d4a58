/*
 * safetensors_torch.c: the C side of the safetensors_torch suite, a small
 * driver over the core's weight files that the PyTorch script calls.
 *
 *   load DIR OUT        sft_hf_load_dir(DIR); OUT gets every parameter as raw
 *                       fp32 in tensor-table order; stdout lists
 *                       "name ndim d0 d1" per tensor
 *   save DIR OUTDIR     load DIR, sft_hf_save_dir(OUTDIR)
 *   ckpt DIR OUT        load DIR, write a checkpoint with AdamW moments
 *                       m = params / 2, v = params^2, step 77 and metadata
 *
 * Errors go to stderr with exit status 1 (the suite checks messages too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

static SftStatus
file_sink(void *ctx, const void *data, size_t len, SftError *err)
{
	if (fwrite(data, 1, len, (FILE *) ctx) != len)
		return sft_error(err, SFT_ERR_IO, "short write");
	return SFT_OK;
}

int
main(int argc, char **argv)
{
	SftModel   *model = NULL;
	SftError	err;
	FILE	   *out;

	sft_error_clear(&err);
	if (argc != 4)
	{
		fprintf(stderr, "usage: %s load|save|ckpt DIR OUT\n", argv[0]);
		return 2;
	}
	if (sft_hf_load_dir(argv[2], &model, &err) != SFT_OK)
	{
		fprintf(stderr, "error: %s\n", err.message);
		return 1;
	}
	if (strcmp(argv[1], "load") == 0)
	{
		out = fopen(argv[3], "wb");
		if (out == NULL ||
			fwrite(sft_model_params(model), sizeof(float), sft_model_num_params(model), out) !=
			sft_model_num_params(model) || fclose(out) != 0)
		{
			fprintf(stderr, "error: cannot write %s\n", argv[3]);
			return 1;
		}
		for (int i = 0; i < sft_model_tensor_count(model); i++)
		{
			const SftParamTensor *t = sft_model_tensor(model, i);

			printf("%s %d %lld %lld\n", t->name, t->ndim, (long long) t->shape[0],
				   (long long) t->shape[1]);
		}
	}
	else if (strcmp(argv[1], "save") == 0)
	{
		if (sft_hf_save_dir(model, argv[3], &err) != SFT_OK)
		{
			fprintf(stderr, "error: %s\n", err.message);
			return 1;
		}
	}
	else if (strcmp(argv[1], "ckpt") == 0)
	{
		size_t		n = sft_model_num_params(model);
		const float *p = sft_model_params(model);
		float	   *m = malloc(n * sizeof(float));
		float	   *v = malloc(n * sizeof(float));
		SftCheckpointState state = {m, v, 77, "{\"run\": 3, \"note\": \"from the suite\"}"};

		for (size_t i = 0; i < n; i++)
		{
			m[i] = p[i] / 2;
			v[i] = p[i] * p[i];
		}
		out = fopen(argv[3], "wb");
		if (out == NULL || sft_checkpoint_write(file_sink, out, model, &state, &err) != SFT_OK ||
			fclose(out) != 0)
		{
			fprintf(stderr, "error: %s\n", err.message[0] ? err.message : "cannot write");
			return 1;
		}
		free(m);
		free(v);
	}
	else
	{
		fprintf(stderr, "unknown command %s\n", argv[1]);
		return 2;
	}
	sft_model_free(model);
	return 0;
}
