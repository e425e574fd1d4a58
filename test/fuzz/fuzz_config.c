/*
 * fuzz_config.c: libFuzzer target for the config.json parser.
 *
 * Any input ends in SFT_OK or an error with a message.  An accepted config
 * must serialise, and its config.json must parse back to the same config
 * (to_json is a faithful inverse of parse).
 */
#include <stdlib.h>
#include <string.h>

#include "llama_config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftLlamaConfig cfg;
	SftLlamaConfig back;
	SftError	err;
	SftBuf		text;
	SftStatus	st;

	sft_error_clear(&err);
	st = sft_llama_config_parse((const char *) data, size, &cfg, &err);
	if (st != SFT_OK)
	{
		if (err.message[0] == '\0')
			abort();
		return 0;
	}
	sft_buf_init(&text);
	if (sft_llama_config_to_json(&cfg, &text, &err) != SFT_OK ||
		sft_llama_config_parse(text.data, text.len, &back, &err) != SFT_OK)
		abort();
	if (memcmp(&cfg, &back, sizeof(cfg)) != 0)
		abort();
	sft_buf_free(&text);
	return 0;
}
