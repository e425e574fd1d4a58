/*
 * fuzz_peft.c: libFuzzer target for PEFT adapter files (lora_adapter.h):
 * adapter_config.json and adapter_model.safetensors with PEFT's names.
 *
 * Input: one selector byte (low bit: which tiny base, a Llama or a Qwen2
 * with q/k/v bias and GQA), a little-endian u16 n, n bytes of
 * adapter_config.json, then the safetensors file.  Every input must end in
 * SFT_OK or an error with a message; ASan and UBSan catch the rest.  What
 * parses must also survive the paths an accepted adapter takes: config
 * written and read back equal, tensors written and read back bitwise equal,
 * a merge into the base, and a decoder step with the adapter attached.
 */
#include <stdlib.h>
#include <string.h>

#include "lora_adapter.h"

static const char *BASES[2] = {
	"{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
	" \"num_key_value_heads\": 1, \"intermediate_size\": 4, \"vocab_size\": 8}",
	"{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"num_hidden_layers\": 1,"
	" \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 12,"
	" \"vocab_size\": 8, \"tie_word_embeddings\": true}",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftLlamaConfig mc;
	SftLoraConfig cfg, back;
	SftLoraAdapter *a = NULL, *again = NULL;
	SftModel   *model = NULL;
	SftDecoder *dec = NULL;
	SftError	err;
	SftStatus	st;
	const char *base;
	char	   *base_name = NULL;
	size_t		n;

	if (size < 3)
		return 0;
	base = BASES[data[0] & 1];
	n = (size_t) data[1] | (size_t) data[2] << 8;
	if (n > size - 3)
		return 0;
	sft_error_clear(&err);
	if (sft_llama_config_parse(base, strlen(base), &mc, &err) != SFT_OK)
		abort();
	st = sft_lora_config_parse((const char *) data + 3, n, &cfg, &base_name, &err);
	if (st != SFT_OK)
	{
		if (err.message[0] == '\0' || base_name != NULL)
			abort();
		return 0;
	}
	{
		SftBuf		json;

		sft_buf_init(&json);
		if (sft_lora_config_to_json(&cfg, base_name, &json, &err) != SFT_OK ||
			sft_lora_config_parse(json.data, json.len, &back, NULL, &err) != SFT_OK ||
			back.r != cfg.r || back.alpha != cfg.alpha || back.dropout != cfg.dropout ||
			back.rslora != cfg.rslora || back.targets != cfg.targets)
			abort();
		sft_buf_free(&json);
	}
	sft_free(base_name);
	if (cfg.r > 64)
		return 0;				/* bounded work per input */

	st = sft_lora_adapter_load_buffer(data + 3 + n, size - 3 - n, &cfg, &mc, &a, &err);
	if (st != SFT_OK)
	{
		if (err.message[0] == '\0' || a != NULL)
			abort();
		return 0;
	}
	{
		SftBuf		out;

		sft_buf_init(&out);
		if (sft_lora_adapter_write(a, sft_buf_write, &out, &err) != SFT_OK ||
			sft_lora_adapter_load_buffer(out.data, out.len, &cfg, &mc, &again, &err) != SFT_OK ||
			memcmp(a->params, again->params, a->n_params * sizeof(float)) != 0)
			abort();
		sft_buf_free(&out);
		sft_lora_adapter_free(again);
	}
	if (sft_model_new(&mc, &model, &err) != SFT_OK)
		abort();
	sft_model_init_random(model, 1);
	{
		int32_t		tokens[2] = {1, 2};
		float		logits[8];

		if (sft_decoder_new(model, 4, &dec, &err) != SFT_OK ||
			sft_decoder_use_adapter(dec, a, &err) != SFT_OK ||
			sft_decoder_feed(dec, tokens, 2, logits, &err) != SFT_OK ||
			sft_decoder_feed(dec, tokens, 1, logits, &err) != SFT_OK)
			abort();
		sft_decoder_free(dec);
	}
	if (sft_lora_merge(model, a, &err) != SFT_OK)
		abort();
	sft_model_free(model);
	sft_lora_adapter_free(a);
	return 0;
}
