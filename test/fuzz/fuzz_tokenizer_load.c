/*
 * fuzz_tokenizer_load.c: libFuzzer target for the tokenizer loaders.
 *
 * Input: one mode byte, then the file text(s).  Mode 0: tokenizer.json;
 * mode 1: tokenizer.json SEP tokenizer_config.json; mode 2: vocab.json SEP
 * merges.txt (SEP = the two bytes 0x01 0x01).  A tokenizer that loads is
 * exercised: encode fixed strings and the input itself in both special
 * modes, check the offsets, decode the ids.  Loading must never crash; a
 * broken invariant traps.
 */
#include <stdint.h>
#include <string.h>

#include "tokenizer.h"

static void
check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void
exercise(const SftTokenizer *tok, const char *text, size_t len)
{
	for (int split = 0; split < 2; split++)
	{
		SftIntVec	ids,
					offsets;
		SftBuf		out;
		SftError	err = {0};

		sft_intvec_init(&ids);
		sft_intvec_init(&offsets);
		sft_buf_init(&out);
		if (sft_tokenizer_encode(tok, text, len, split, &ids, &offsets, &err) == SFT_OK)
		{
			check(ids.len == offsets.len);
			for (size_t i = 0; i < offsets.len; i++)
			{
				check(offsets.data[i] >= 0 && (size_t) offsets.data[i] < len);
				check(i == 0 || offsets.data[i] >= offsets.data[i - 1]);
				check(ids.data[i] >= 0 && ids.data[i] < sft_tokenizer_vocab_size(tok));
			}
			if (sft_tokenizer_decode(tok, ids.data, ids.len, split, &out, &err) == SFT_OK)
				check(sft_utf8_invalid_offset(out.data ? out.data : "", out.len) == (size_t) -1);
		}
		else
			check(err.status != SFT_OK && err.message[0] != '\0');
		sft_intvec_free(&ids);
		sft_intvec_free(&offsets);
		sft_buf_free(&out);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const samples[] = {
		"Hello world, this is a test 123.", "  <|im_start|>user\n caf\xc3\xa9 e\xcc\x81 <s> \xe6\x97\xa5\xe6\x9c\xac",
		"\xe2\x96\x81\xe2\x96\x81 aaaa\t\n\n  ", "",
	};
	const char *body = (const char *) data + 1;
	size_t		blen = size ? size - 1 : 0;
	const char *sep = NULL;
	SftTokenizer *tok = NULL;
	SftError	err = {0};
	SftStatus	st;

	if (size < 1)
		return 0;
	for (size_t i = 0; i + 1 < blen; i++)
		if (body[i] == 1 && body[i + 1] == 1)
		{
			sep = body + i;
			break;
		}
	switch (data[0] % 3)
	{
		case 0:
			st = sft_tokenizer_from_hf(body, blen, NULL, 0, &tok, &err);
			break;
		case 1:
			if (sep)
				st = sft_tokenizer_from_hf(body, (size_t) (sep - body), sep + 2, blen - (size_t) (sep - body) - 2, &tok, &err);
			else
				st = sft_tokenizer_from_hf(body, blen, "{}", 2, &tok, &err);
			break;
		default:
			if (sep == NULL)
				return 0;
			st = sft_tokenizer_from_vocab_merges(body, (size_t) (sep - body), sep + 2,
												 blen - (size_t) (sep - body) - 2, &tok, &err);
			break;
	}
	if (st != SFT_OK)
	{
		check(tok == NULL && err.status == st && err.message[0] != '\0');
		return 0;
	}
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
		exercise(tok, samples[i], strlen(samples[i]));
	exercise(tok, body, blen > 4096 ? 4096 : blen);
	/* accessors */
	for (int i = 0; i < sft_tokenizer_special_count(tok); i++)
		check(sft_tokenizer_is_special(tok, sft_tokenizer_special_id(tok, i)));
	(void) sft_tokenizer_chat_template(tok);
	sft_tokenizer_free(tok);
	return 0;
}
