/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors reader.
 *
 * Input: one selector byte, then a whole safetensors file.  The selector's
 * low bit picks a tiny untied or tied model (the tied one exercises the
 * ignored lm_head.weight path); shapes in the file are checked against that
 * model.  Every input must end in SFT_OK or an error with a message; ASan
 * and UBSan catch any out-of-bounds read or undefined behaviour.  A file
 * that loads must also survive a write/read round trip unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static const char *CONFIGS[2] = {
	"{\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
	" \"num_key_value_heads\": 1, \"intermediate_size\": 4, \"vocab_size\": 8}",
	"{\"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
	" \"num_key_value_heads\": 1, \"intermediate_size\": 4, \"vocab_size\": 8,"
	" \"tie_word_embeddings\": true}",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftLlamaConfig cfg;
	SftModel   *model = NULL;
	SftModel   *again = NULL;
	SftError	err;
	SftStatus	st;
	const char *config;

	if (size < 1)
		return 0;
	config = CONFIGS[data[0] & 1];
	sft_error_clear(&err);
	if (sft_llama_config_parse(config, strlen(config), &cfg, &err) != SFT_OK ||
		sft_model_new(&cfg, &model, &err) != SFT_OK)
		abort();
	st = sft_safetensors_load_buffer(data + 1, size - 1, model, &err);
	if (st != SFT_OK && err.message[0] == '\0')
		abort();				/* every error carries a message */
	if (st == SFT_OK)
	{
		SftBuf		out;

		sft_buf_init(&out);
		if (sft_safetensors_write(model, sft_buf_write, &out, &err) != SFT_OK ||
			sft_model_new(&cfg, &again, &err) != SFT_OK ||
			sft_safetensors_load_buffer(out.data, out.len, again, &err) != SFT_OK ||
			memcmp(sft_model_params(model), sft_model_params(again),
				   sft_model_num_params(model) * sizeof(float)) != 0)
			abort();
		sft_buf_free(&out);
		sft_model_free(again);
	}
	sft_model_free(model);
	return 0;
}
