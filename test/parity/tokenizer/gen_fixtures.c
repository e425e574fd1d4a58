/*
 * gen_fixtures.c: writes the handmade tokenizer.json variants of
 * test/unit/tokenizer_fixtures.h into a directory, for the parity suite to
 * compare our encoder with Hugging Face tokenizers (Rust) on pre-tokenizer
 * and normalizer combinations the four real tokenizers do not use: ByteLevel
 * add_prefix_space, Digits, every Split behaviour and invert, String and
 * Regex patterns, added tokens with lstrip/rstrip, Metaspace schemes.
 * Added-token ids follow the vocabulary, as HF assigns them.
 *
 *   gen_fixtures DIR      writes DIR/NAME.json for every variant, prints names
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_fixtures.h"

static const char *dir;

static void
put(const char *name, char *json)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	f = fopen(path, "w");
	if (f == NULL || fputs(json, f) < 0 || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
	free(json);
	printf("%s\n", name);
}

#define BL_NOREGEX "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}"

int
main(int argc, char **argv)
{
	FxOptions	o;
	char		added[1024];
	char		pre[2048];
	int			base = fx_byte_level_vocab_size();

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	snprintf(added, sizeof(added),
			 "[{\"id\":%d,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":false,\"special\":true},"
			 "{\"id\":%d,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":true,\"normalized\":false,\"special\":false},"
			 "{\"id\":%d,\"content\":\"<think>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":false},"
			 "{\"id\":%d,\"content\":\"<|im\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}]",
			 base, base + 1, base + 2, base + 3);

	memset(&o, 0, sizeof(o));
	o.added_tokens = added;
	put("bytelevel_gpt2", fx_byte_level_json(&o));

	o.pre_tokenizer = "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}";
	put("bytelevel_prefix_space", fx_byte_level_json(&o));

	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
		"{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}";
	put("digits_bytelevel", fx_byte_level_json(&o));

	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":false},"
		"{\"type\":\"Split\",\"pattern\":{\"String\":\"e\"},\"behavior\":\"MergedWithNext\",\"invert\":false},"
		"{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[aeiou]+\"},\"behavior\":\"Contiguous\",\"invert\":true}," BL_NOREGEX "]}";
	put("splits_next_contiguous", fx_byte_level_json(&o));

	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"MergedWithPrevious\",\"invert\":false},"
		"{\"type\":\"Split\",\"pattern\":{\"String\":\"l\"},\"behavior\":\"Removed\",\"invert\":false},"
		"{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{P}\"},\"behavior\":\"MergedWithNext\",\"invert\":true}," BL_NOREGEX "]}";
	put("splits_previous_removed", fx_byte_level_json(&o));

	snprintf(pre, sizeof(pre), "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},"
			 "\"behavior\":\"Isolated\",\"invert\":false}," BL_NOREGEX "]}", FX_LLAMA3_PATTERN_JSON);
	o.pre_tokenizer = pre;
	o.normalizer = "{\"type\":\"NFC\"}";
	o.model_extra = "\"ignore_merges\":true";
	o.merges_as_pairs = 1;
	put("llama3_split_nfc", fx_byte_level_json(&o));

	put("spm_normalizer", fx_spm_json(0, NULL));
	put("spm_metaspace_first", fx_spm_json(1, NULL));
	{
		char	   *json = fx_spm_json(1, NULL);
		const char *from = "\"prepend_scheme\":\"first\",\"split\":false}";
		const char *to = "\"prepend_scheme\":\"always\",\"split\":true}";
		char	   *p = strstr(json, from);	/* the pre-tokenizer's (first) one */
		char	   *out = malloc(strlen(json) + 8);

		memcpy(out, json, (size_t) (p - json));
		strcpy(out + (p - json), to);
		strcat(out, p + strlen(from));
		free(json);
		put("spm_metaspace_always_split", out);
	}
	return 0;
}
