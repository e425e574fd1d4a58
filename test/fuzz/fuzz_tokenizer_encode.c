/*
 * fuzz_tokenizer_encode.c: libFuzzer target for the tokenizer encoder.
 *
 * Loads, once, the handmade fixtures of test/unit/tokenizer_fixtures.h
 * (byte-level with a Split regex + NFC + added tokens with lstrip/rstrip,
 * GPT-2 style ByteLevel regex + Digits, SentencePiece with a normalizer,
 * SentencePiece with Metaspace) and, when SFT_FUZZ_TOKENIZER names a
 * tokenizer.json, that real one too.  Input: a selector byte, then the text.
 * Checks: the fast encoder equals the reference (quadratic merge loop, no
 * shortcut) in ids and offsets; offsets are in range and non-decreasing;
 * decoding gives valid UTF-8 and, for byte-level tokenizers without a
 * normalizer, the input back; invalid UTF-8 is rejected with an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "tokenizer_fixtures.h"

#define MAX_TOKS 6

static SftTokenizer *toks[MAX_TOKS];
static int	roundtrip_exact[MAX_TOKS];
static int	ntoks;

static void
check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void
add(char *json, size_t len, int exact)
{
	SftError	err = {0};

	if (sft_tokenizer_from_hf(json, len, NULL, 0, &toks[ntoks], &err) != SFT_OK)
	{
		fprintf(stderr, "fixture does not load: %s\n", err.message);
		abort();
	}
	roundtrip_exact[ntoks++] = exact;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char added[] =
		"[{\"id\":400,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
		"{\"id\":401,\"content\":\"<|im_end|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
		"{\"id\":402,\"content\":\"<think>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":false},"
		"{\"id\":403,\"content\":\"[MASK]\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":true}]";
	FxOptions	o = {0};
	char	   *json;
	const char *path = getenv("SFT_FUZZ_TOKENIZER");

	(void) argc;
	(void) argv;
	o.normalizer = "{\"type\":\"NFC\"}";
	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" FX_LLAMA3_PATTERN_JSON "\"},"
		"\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";
	o.added_tokens = added;
	json = fx_byte_level_json(&o);
	add(json, strlen(json), 0);
	free(json);

	memset(&o, 0, sizeof(o));
	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
		"{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}";
	o.model_extra = "\"ignore_merges\":true";
	o.merges_as_pairs = 1;
	json = fx_byte_level_json(&o);
	add(json, strlen(json), 1);
	free(json);

	json = fx_spm_json(0, NULL);
	add(json, strlen(json), 0);
	free(json);
	json = fx_spm_json(1, NULL);
	add(json, strlen(json), 0);
	free(json);

	if (path)
	{
		FILE	   *f = fopen(path, "rb");
		long		size;

		if (f == NULL)
		{
			fprintf(stderr, "cannot open %s\n", path);
			abort();
		}
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		fseek(f, 0, SEEK_SET);
		json = malloc((size_t) size);
		if (json == NULL || fread(json, 1, (size_t) size, f) != (size_t) size)
			abort();
		fclose(f);
		add(json, (size_t) size, 0);
		free(json);
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftTokenizer *tok;
	const char *text = (const char *) data + 1;
	size_t		len;
	int			split;
	SftIntVec	ids,
				offsets,
				ref_ids,
				ref_offsets;
	SftBuf		out;
	SftError	err = {0};
	SftStatus	st;

	if (size < 1)
		return 0;
	tok = toks[(data[0] >> 1) % ntoks];
	split = data[0] & 1;
	len = size - 1;
	sft_intvec_init(&ids);
	sft_intvec_init(&offsets);
	sft_intvec_init(&ref_ids);
	sft_intvec_init(&ref_offsets);
	sft_buf_init(&out);

	st = sft_tokenizer_encode(tok, text, len, split, &ids, &offsets, &err);
	if (sft_utf8_invalid_offset(text, len) != (size_t) -1)
		check(st == SFT_ERR_INVALID && ids.len == 0);
	else
	{
		check(st == SFT_OK);
		check(ids.len == offsets.len);
		for (size_t i = 0; i < ids.len; i++)
		{
			check(offsets.data[i] >= 0 && (size_t) offsets.data[i] < len);
			check(i == 0 || offsets.data[i] >= offsets.data[i - 1]);
		}
		sft_tokenizer_set_reference_mode(tok, 1);
		st = sft_tokenizer_encode(tok, text, len, split, &ref_ids, &ref_offsets, &err);
		sft_tokenizer_set_reference_mode(tok, 0);
		check(st == SFT_OK);
		check(ref_ids.len == ids.len);
		check(ids.len == 0 || memcmp(ref_ids.data, ids.data, ids.len * sizeof(int32_t)) == 0);
		check(ids.len == 0 || memcmp(ref_offsets.data, offsets.data, ids.len * sizeof(int32_t)) == 0);
		st = sft_tokenizer_decode(tok, ids.data, ids.len, 0, &out, &err);
		check(st == SFT_OK);
		check(sft_utf8_invalid_offset(out.data ? out.data : "", out.len) == (size_t) -1);
		if (roundtrip_exact[(data[0] >> 1) % ntoks])
			check(out.len == len && (len == 0 || memcmp(out.data, text, len) == 0));
	}
	sft_intvec_free(&ids);
	sft_intvec_free(&offsets);
	sft_intvec_free(&ref_ids);
	sft_intvec_free(&ref_offsets);
	sft_buf_free(&out);
	return 0;
}
