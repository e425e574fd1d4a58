/*
 * bench_gguf.c: the model side of test/bench/gguf.sh (decode, ours vs
 * llama.cpp on the same weights).
 *
 *   bench_gguf make DIR
 *       a SmolLM2-135M-shaped model (fp32, tied, random weights, seed 1)
 *       with the tiny byte-level fixture tokenizer (vocabulary padded to
 *       49152): DIR/hf (our HF export) and DIR/model-{f32,f16,bf16,q8_0}.gguf
 *   bench_gguf decode HF_DIR THREADS N PROMPT [DTYPE]
 *       greedy batch-1 decode of N tokens after PROMPT (comma-separated
 *       ids) with the KV-cached decoder, reading DTYPE decode weights (f32,
 *       bf16, q8_0: sft.generate_dtype; default f32): the prompt but its last token is
 *       fed before the clock starts, then N single-token steps; prints
 *       "tokens_per_s X" and "ids a,b,..." (the N greedy ids).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gguf_export.h"
#include "model.h"
#include "weights.h"

#include "bench.h"

static SftStatus
file_sink(void *ctx, const void *data, size_t len, SftError *err)
{
	if (fwrite(data, 1, len, ctx) != len)
		return sft_error(err, SFT_ERR_IO, "short write");
	return SFT_OK;
}

static int
make(const char *dir)
{
	SftLlamaConfig cfg = {
		.hidden_size = 576, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
		.intermediate_size = 1536, .vocab_size = 49152, .max_position = 8192,
		.rms_norm_eps = 1e-5f, .rope_theta = 100000.0f, .tie_word_embeddings = 1,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *model = NULL;
	SftTokenizer *tok = NULL;
	SftError	err = {0};
	SftBuf		src;
	char		path[4096];
	FILE	   *f;
	char		chunk[65536];
	size_t		n;
	SftGgmlType types[4] = {SFT_GGML_F32, SFT_GGML_F16, SFT_GGML_BF16, SFT_GGML_Q8_0};

	sft_buf_init(&src);
	f = fopen("test/fixtures/tiny_bpe.json", "rb");
	if (!f)
		return 1;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sft_buf_append(&src, chunk, n);
	fclose(f);
	if (sft_tokenizer_from_hf(src.data, src.len, NULL, 0, &tok, &err) != SFT_OK ||
		sft_model_new(&cfg, &model, &err) != SFT_OK)
	{
		fprintf(stderr, "bench_gguf: %s\n", err.message);
		return 1;
	}
	sft_model_init_random(model, 1);
	snprintf(path, sizeof(path), "%s/hf", dir);
	mkdir(path, 0755);
	if (sft_hf_save_dir(model, path, &err) != SFT_OK)
	{
		fprintf(stderr, "bench_gguf: %s\n", err.message);
		return 1;
	}
	for (int i = 0; i < 4; i++)
	{
		SftGgufExportOptions opt = {types[i], "bench-135m", NULL, -1};

		snprintf(path, sizeof(path), "%s/model-%s.gguf", dir, sft_ggml_type_name(types[i]));
		f = fopen(path, "wb");
		if (!f || sft_gguf_export_model(model, tok, &opt, file_sink, f, &err) != SFT_OK || fclose(f) != 0)
		{
			fprintf(stderr, "bench_gguf: %s: %s\n", path, err.message);
			return 1;
		}
	}
	sft_model_free(model);
	sft_tokenizer_free(tok);
	sft_buf_free(&src);
	return 0;
}

static int
decode(const char *dir, int threads, int n_new, const char *prompt_arg, const char *dtype_name)
{
	SftModel   *model = NULL;
	SftDecoder *dec = NULL;
	SftDecodeWeights *weights = NULL;
	SftDType	dtype;
	SftError	err = {0};
	int32_t		prompt[512];
	int			n_prompt = 0;
	int32_t    *out = malloc(sizeof(int32_t) * n_new);
	float	   *logits;
	const char *p = prompt_arg;
	double		t0,
				dt;
	int			V;

	while (*p && n_prompt < 512)
	{
		prompt[n_prompt++] = (int32_t) strtol(p, (char **) &p, 10);
		if (*p == ',')
			p++;
	}
	if (!sft_dtype_from_name(dtype_name, &dtype))
	{
		fprintf(stderr, "bench_gguf: unknown dtype %s\n", dtype_name);
		return 2;
	}
	openblas_set_num_threads(threads);
	if (sft_hf_load_dir(dir, &model, &err) != SFT_OK ||
		sft_decoder_new(model, n_prompt + n_new + 1, &dec, &err) != SFT_OK ||
		(dtype != SFT_DTYPE_F32 && sft_decode_weights_new(model, dtype, &weights, &err) != SFT_OK))
	{
		fprintf(stderr, "bench_gguf: %s\n", err.message);
		return 1;
	}
	sft_decoder_use_weights(dec, weights);
	V = sft_model_config(model)->vocab_size;
	logits = malloc(sizeof(float) * V);
	/* as llama_ref.mjs bench: the prompt but its last token before the clock,
	 * then n_new single-token steps (each feeds one token, samples the next) */
	if (n_prompt > 1 && sft_decoder_feed(dec, prompt, n_prompt - 1, NULL, &err) != SFT_OK)
	{
		fprintf(stderr, "bench_gguf: %s\n", err.message);
		return 1;
	}
	t0 = now();
	for (int i = 0; i < n_new; i++)
	{
		int32_t		in = i == 0 ? prompt[n_prompt - 1] : out[i - 1];

		if (sft_decoder_feed(dec, &in, 1, logits, &err) != SFT_OK)
		{
			fprintf(stderr, "bench_gguf: %s\n", err.message);
			return 1;
		}
		out[i] = sft_sample(logits, V, NULL, NULL, NULL);
	}
	dt = now() - t0;
	printf("tokens_per_s %.2f\nids ", n_new / dt);
	for (int i = 0; i < n_new; i++)
		printf("%s%d", i ? "," : "", out[i]);
	printf("\n");
	sft_decoder_free(dec);
	sft_decode_weights_free(weights);
	sft_model_free(model);
	free(logits);
	free(out);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "make") == 0)
		return make(argv[2]);
	if ((argc == 6 || argc == 7) && strcmp(argv[1], "decode") == 0)
		return decode(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5], argc == 7 ? argv[6] : "f32");
	fprintf(stderr, "usage: bench_gguf make DIR | bench_gguf decode HF_DIR THREADS N PROMPT [DTYPE]\n");
	return 2;
}
