/*
 * gen_gguf_seeds.c: seed corpus for fuzz_gguf: tiny models with the
 * fixture tokenizers exported in each dtype, the five family rows among
 * them.  Usage: gen_gguf_seeds OUTDIR
 * (run from the repository root).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_export.h"

static int
slurp(const char *path, SftBuf *b)
{
	FILE	   *f = fopen(path, "rb");
	char		chunk[65536];
	size_t		n;

	sft_buf_init(b);
	if (!f)
		return 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sft_buf_append(b, chunk, n);
	fclose(f);
	return 1;
}

int
main(int argc, char **argv)
{
	const char *tokenizers[2] = {"test/fixtures/tiny_bpe.json", "test/fixtures/tiny_sp.json"};
	SftGgmlType types[4] = {SFT_GGML_F32, SFT_GGML_F16, SFT_GGML_BF16, SFT_GGML_Q8_0};
	SftFamily	families[5] = {SFT_FAMILY_LLAMA, SFT_FAMILY_QWEN2, SFT_FAMILY_QWEN3, SFT_FAMILY_SMOLLM3,
	SFT_FAMILY_GEMMA3};

	if (argc != 2)
		return 2;
	for (int t = 0; t < 2; t++)
		for (int d = 0; d < 4; d++)
		{
			SftBuf		src,
						out;
			SftTokenizer *tok = NULL;
			SftModel   *m = NULL;
			SftError	err = {0};
			SftLlamaConfig cfg = {.hidden_size = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
				.head_dim = 16, .intermediate_size = 32, .max_position = 64, .rms_norm_eps = 1e-5f,
			.rope_theta = 1e4f, .tie_word_embeddings = d % 2, .bos_token_id = -1, .eos_token_id = -1};
			SftGgufExportOptions opt = {types[d], "seed", "{{ x }}", -1};
			char		path[4096];
			FILE	   *f;

			if (!slurp(tokenizers[t], &src) ||
				sft_tokenizer_from_hf(src.data, src.len, NULL, 0, &tok, &err) != SFT_OK)
				return 1;
			cfg.vocab_size = sft_tokenizer_vocab_size(tok);
			/* each family row once at least: its keys and tensor names in the seeds */
			cfg.family = families[(t * 4 + d) % 5];
			cfg.qkv_bias = cfg.family == SFT_FAMILY_QWEN2;
			cfg.qk_norm = cfg.family == SFT_FAMILY_QWEN3 || cfg.family == SFT_FAMILY_GEMMA3;
			cfg.query_pre_attn_scalar = (float) cfg.head_dim;
			if (cfg.family == SFT_FAMILY_GEMMA3)
			{
				cfg.sliding_window = 8;
				cfg.rope_local_theta = 1e4f;
				cfg.final_logit_softcap = 30.0f;
				cfg.layer_flags[0] = SFT_LAYER_SLIDING;
			}
			sft_buf_init(&out);
			if (sft_model_new(&cfg, &m, &err) != SFT_OK ||
				sft_gguf_export_model(m, tok, &opt, sft_buf_write, &out, &err) != SFT_OK)
			{
				fprintf(stderr, "%s\n", err.message);
				return 1;
			}
			snprintf(path, sizeof(path), "%s/seed_%d_%s.gguf", argv[1], t, sft_ggml_type_name(types[d]));
			f = fopen(path, "wb");
			if (!f || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0)
				return 1;
			sft_buf_free(&out);
			sft_buf_free(&src);
			sft_model_free(m);
			sft_tokenizer_free(tok);
		}
	return 0;
}
