/*
 * logits_cli.c: our model's next-token log-probabilities, for the llama.cpp
 * suite (test/suites/gguf_llamacpp.sh) to compare with llama.cpp's.
 *
 *   logits_cli HF_DIR IDS_FILE OUT_FILE
 *
 * HF_DIR is a directory written by sft_model_export (format 'hf'); IDS_FILE
 * holds one sequence per line as space-separated ids.  For every sequence
 * and every position the log-softmax of the logits after that token is
 * written to OUT_FILE as V little-endian float32 values (so the file holds
 * sum(len) * V floats).  The KV-cached decoder is fed one token at a time,
 * as sft_generate_tokens decodes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "weights.h"

int
main(int argc, char **argv)
{
	SftModel   *model = NULL;
	SftDecoder *dec = NULL;
	SftError	err = {0};
	FILE	   *in,
			   *out;
	char		line[1 << 16];
	int			V;
	float	   *logits;

	if (argc != 4)
	{
		fprintf(stderr, "usage: logits_cli HF_DIR IDS_FILE OUT_FILE\n");
		return 2;
	}
	if (sft_hf_load_dir(argv[1], &model, &err) != SFT_OK ||
		sft_decoder_new(model, sft_model_config(model)->max_position, &dec, &err) != SFT_OK)
	{
		fprintf(stderr, "logits_cli: %s\n", err.message);
		return 1;
	}
	V = sft_model_config(model)->vocab_size;
	logits = malloc(sizeof(float) * V);
	in = fopen(argv[2], "r");
	out = fopen(argv[3], "wb");
	if (!in || !out || !logits)
	{
		perror("logits_cli");
		return 1;
	}
	while (fgets(line, sizeof(line), in))
	{
		char	   *p = line,
				   *end;

		sft_decoder_reset(dec);
		for (;;)
		{
			long		id = strtol(p, &end, 10);
			int32_t		tok = (int32_t) id;
			double		max = -INFINITY,
						sum = 0;

			if (end == p)
				break;
			p = end;
			if (sft_decoder_feed(dec, &tok, 1, logits, &err) != SFT_OK)
			{
				fprintf(stderr, "logits_cli: %s\n", err.message);
				return 1;
			}
			for (int v = 0; v < V; v++)
				max = fmax(max, logits[v]);
			for (int v = 0; v < V; v++)
				sum += exp(logits[v] - max);
			for (int v = 0; v < V; v++)
				logits[v] = (float) (logits[v] - max - log(sum));
			fwrite(logits, sizeof(float), V, out);
		}
	}
	fclose(in);
	if (fclose(out) != 0)
		return 1;
	sft_decoder_free(dec);
	sft_model_free(model);
	free(logits);
	return 0;
}
