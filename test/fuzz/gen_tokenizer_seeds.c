/*
 * gen_tokenizer_seeds.c: writes the seed inputs of the tokenizer fuzz
 * targets into a directory (called by test/fuzz/build.sh): the handmade
 * fixtures of test/unit/tokenizer_fixtures.h in the loader's input format
 * (mode byte + text), and a few texts for the encoder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_fixtures.h"

static void
write_seed(const char *dir, const char *name, char mode, const char *a, const char *b)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL)
	{
		perror(path);
		exit(1);
	}
	if (mode >= 0)
		fputc(mode, f);
	fputs(a, f);
	if (b)
	{
		fputs("\x01\x01", f);
		fputs(b, f);
	}
	fclose(f);
}

int
main(int argc, char **argv)
{
	FxOptions	o = {0};
	char	   *json;
	char		dir[4096];

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s outdir (with load/ and encode/ inside)\n", argv[0]);
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s/load", argv[1]);
	json = fx_byte_level_json(&o);
	write_seed(dir, "gpt2_style", 0, json, NULL);
	write_seed(dir, "gpt2_style_config", 1, json,
			   "{\"bos_token\":{\"content\":\"<s>\"},\"eos_token\":\"</s>\",\"add_bos_token\":true,"
			   "\"chat_template\":[{\"name\":\"default\",\"template\":\"{{x}}\"}]}");
	free(json);
	o.normalizer = "{\"type\":\"NFC\"}";
	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" FX_LLAMA3_PATTERN_JSON "\"},"
		"\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";
	o.added_tokens = "[{\"id\":400,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":false,\"special\":true}]";
	o.model_extra = "\"ignore_merges\":true";
	o.merges_as_pairs = 1;
	json = fx_byte_level_json(&o);
	write_seed(dir, "split_nfc", 0, json, NULL);
	free(json);
	json = fx_spm_json(0, NULL);
	write_seed(dir, "spm", 0, json, NULL);
	free(json);
	json = fx_spm_json(1, "{\"id\":400,\"content\":\"[x]\",\"special\":false,\"normalized\":false}");
	write_seed(dir, "spm_metaspace", 1, json, "{\"bos_token\":\"<s>\",\"chat_template\":\"t\"}");
	free(json);
	write_seed(dir, "vocab_merges", 2, "{\"a\":0,\"b\":1,\"ab\":2,\"\xc4\xa0\":3,\"<|endoftext|>\":4}", "#version: 0.2\na b\n");

	snprintf(dir, sizeof(dir), "%s/encode", argv[1]);
	for (char sel = 0; sel < 10; sel++)
	{
		char		name[32];

		snprintf(name, sizeof(name), "text%d", sel);
		write_seed(dir, name, sel, sel % 2 ? "<|im_start|>user\n caf\xc3\xa9 [MASK] e\xcc\x81\xcc\xa3 12345\n\n" :
				   "Hello  world!! The lowest aaaaaaa \xe6\x97\xa5\xe6\x9c\xac\t<think> \xe2\x96\x81x", NULL);
	}
	return 0;
}
