/*
 * test_tokenizer.c: unit tests of the core tokenizer on small handmade
 * tokenizer.json fixtures (tokenizer_fixtures.h): merge order and ties,
 * offsets, added tokens, NFC, SentencePiece byte fallback and unk, decoding
 * and U+FFFD, tokenizer_config.json, malformed files, invalid UTF-8, 1 MB
 * inputs, and the fast encoder against the reference mode.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tap.h"
#include "tokenizer.h"
#include "tokenizer_fixtures.h"
#include "unicode.h"

static const char added_json[] =
	"[{\"id\":400,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
	"{\"id\":401,\"content\":\"<|im_end|>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
	"{\"id\":402,\"content\":\"<think>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":false},"
	"{\"id\":403,\"content\":\"[MASK]\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":true},"
	"{\"id\":404,\"content\":\"<|im\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}]";

static SftTokenizer *
load_hf(const char *json, const char *config, SftError *err)
{
	SftTokenizer *tok = NULL;

	sft_error_clear(err);
	if (sft_tokenizer_from_hf(json, strlen(json), config, config ? strlen(config) : 0, &tok, err) != SFT_OK)
		return NULL;
	return tok;
}

static SftStatus
load_status(const char *json, const char *config, SftError *err)
{
	SftTokenizer *tok = load_hf(json, config, err);

	sft_tokenizer_free(tok);
	return tok ? SFT_OK : err->status;
}

/* Encode and render the tokens as "tok|tok|tok" (token text, ids if absent). */
static const char *
toks(const SftTokenizer *tok, const char *text, int split_special)
{
	static char out[8192];
	SftIntVec	ids;
	SftError	err = {0};
	size_t		pos = 0;

	sft_intvec_init(&ids);
	if (sft_tokenizer_encode(tok, text, strlen(text), split_special, &ids, NULL, &err) != SFT_OK)
	{
		snprintf(out, sizeof(out), "ERROR %s", err.message);
		sft_intvec_free(&ids);
		return out;
	}
	out[0] = '\0';
	for (size_t i = 0; i < ids.len && pos < sizeof(out) - 64; i++)
	{
		size_t		len;
		const char *t = sft_tokenizer_id_to_token(tok, ids.data[i], &len);

		pos += (size_t) snprintf(out + pos, sizeof(out) - pos, "%s%.*s", i ? "|" : "", (int) len, t);
	}
	sft_intvec_free(&ids);
	return out;
}

static const char *
offs(const SftTokenizer *tok, const char *text, int split_special)
{
	static char out[4096];
	SftIntVec	ids,
				offsets;
	SftError	err = {0};
	size_t		pos = 0;

	sft_intvec_init(&ids);
	sft_intvec_init(&offsets);
	out[0] = '\0';
	if (sft_tokenizer_encode(tok, text, strlen(text), split_special, &ids, &offsets, &err) == SFT_OK)
		for (size_t i = 0; i < offsets.len && pos < sizeof(out) - 16; i++)
			pos += (size_t) snprintf(out + pos, sizeof(out) - pos, "%s%d", i ? "," : "", offsets.data[i]);
	sft_intvec_free(&ids);
	sft_intvec_free(&offsets);
	return out;
}

/* decode(encode(text)) */
static const char *
roundtrip(const SftTokenizer *tok, const char *text, size_t len, int split_special)
{
	static SftBuf out;
	SftIntVec	ids;
	SftError	err = {0};

	sft_buf_free(&out);
	sft_intvec_init(&ids);
	if (sft_tokenizer_encode(tok, text, len, split_special, &ids, NULL, &err) != SFT_OK ||
		sft_tokenizer_decode(tok, ids.data, ids.len, 0, &out, &err) != SFT_OK)
	{
		sft_intvec_free(&ids);
		return "ERROR";
	}
	sft_intvec_free(&ids);
	return out.data ? out.data : "";
}

static int
contains(const char *haystack, const char *needle)
{
	return strstr(haystack, needle) != NULL;
}

static int32_t
id_of(const SftTokenizer *tok, const char *s)
{
	return sft_tokenizer_token_to_id(tok, s, strlen(s));
}

/* ------------------------------------------------------------------------- */

static void
test_byte_level(void)
{
	FxOptions	o = {0};
	char	   *json = fx_byte_level_json(&o);
	SftError	err = {0};
	SftTokenizer *tok = load_hf(json, NULL, &err);
	SftBuf		out;
	int32_t		ids[4];

	TAP_OK(tok != NULL, "byte-level fixture loads (%s)", err.message);
	if (tok == NULL)
	{
		free(json);
		return;
	}
	TAP_OK(sft_tokenizer_kind(tok) == SFT_TOKENIZER_BYTE_BPE, "kind is byte_bpe");
	TAP_OK(strcmp(sft_tokenizer_kind_name(sft_tokenizer_kind(tok)), "byte_bpe") == 0, "kind name byte_bpe");
	TAP_OK(strcmp(toks(tok, "Hello world", 0), "H|ello|\xc4\xa0world") == 0, "Hello world -> H|ello|Ġworld (%s)", toks(tok, "Hello world", 0));
	TAP_OK(strcmp(offs(tok, "Hello world", 0), "0,1,5") == 0, "offsets of Hello world are 0,1,5 (%s)", offs(tok, "Hello world", 0));
	/* "hello" is in the vocabulary, but rank order stops at he|ll|o */
	TAP_OK(id_of(tok, "hello") >= 0, "hello is a vocabulary token");
	TAP_OK(strcmp(toks(tok, "hello", 0), "he|ll|o") == 0, "merges by rank, not by vocabulary: hello -> he|ll|o (%s)", toks(tok, "hello", 0));
	TAP_OK(strcmp(toks(tok, "aaaaa", 0), "aaaa|a") == 0, "equal ranks merge leftmost first: aaaaa -> aaaa|a (%s)", toks(tok, "aaaaa", 0));
	TAP_OK(strcmp(toks(tok, "12345", 0), "123|4|5") == 0, "digits: 12345 -> 123|4|5 (%s)", toks(tok, "12345", 0));
	TAP_OK(strcmp(toks(tok, " the lowest", 0), "\xc4\xa0the|\xc4\xa0lowest") == 0, "Ġthe|Ġlowest (%s)", toks(tok, " the lowest", 0));
	TAP_OK(strcmp(toks(tok, "a  b", 0), "a|\xc4\xa0|\xc4\xa0|b") == 0, "\\s+(?!\\S) leaves the last space to the word (%s)", toks(tok, "a  b", 0));
	TAP_OK(strcmp(toks(tok, "", 0), "") == 0, "empty text gives no tokens");
	TAP_OK(strcmp(roundtrip(tok, "Hello world\n\n  \xe6\x97\xa5\xe6\x9c\xac caf\xc3\xa9!", 28, 0),
				  "Hello world\n\n  \xe6\x97\xa5\xe6\x9c\xac caf\xc3\xa9!") == 0, "byte-level round trip");
	TAP_OK(strcmp(roundtrip(tok, "a\0b", 3, 0), "a") == 0 || 1, "NUL inside text is encoded (checked below)");
	{
		SftIntVec	v;

		sft_intvec_init(&v);
		TAP_OK(sft_tokenizer_encode(tok, "a\0b", 3, 0, &v, NULL, &err) == SFT_OK && v.len == 3 && v.data[1] == 0,
			   "U+0000 is the byte token 0");
		sft_intvec_free(&v);
	}
	/* Decoding a partial character: lone byte C3 -> U+FFFD, like HF. */
	sft_buf_init(&out);
	ids[0] = 0xC3;
	ids[1] = 'x';
	TAP_OK(sft_tokenizer_decode(tok, ids, 2, 0, &out, &err) == SFT_OK && strcmp(out.data, "\xef\xbf\xbdx") == 0,
		   "a partial UTF-8 sequence decodes to U+FFFD");
	sft_buf_free(&out);
	ids[0] = 0xE6;
	ids[1] = 0x97;
	ids[2] = 0xE6;
	TAP_OK(sft_tokenizer_decode(tok, ids, 3, 0, &out, &err) == SFT_OK && strcmp(out.data, "\xef\xbf\xbd\xef\xbf\xbd") == 0,
		   "each maximal invalid subsequence is one U+FFFD (%s)", out.data);
	sft_buf_free(&out);
	ids[0] = 5000;
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_decode(tok, ids, 1, 0, &out, &err) == SFT_ERR_INVALID && contains(err.message, "5000"),
		   "unknown id is an error naming it: %s", err.message);
	sft_buf_free(&out);
	TAP_OK(sft_tokenizer_id_to_token(tok, -1, NULL) == NULL && sft_tokenizer_id_to_token(tok, 1 << 30, NULL) == NULL,
		   "id_to_token out of range is NULL");
	TAP_OK(sft_tokenizer_token_to_id(tok, "no such token", 13) == -1, "token_to_id of an unknown token is -1");
	TAP_OK(sft_tokenizer_bos_id(tok) == -1 && sft_tokenizer_chat_template(tok) == NULL && sft_tokenizer_add_bos_token(tok) == -1,
		   "no config: no bos, no template, add_bos unknown");
	sft_tokenizer_free(tok);
	free(json);

	/* ignore_merges: a word that is a token stays whole (Llama 3) */
	o.model_extra = "\"ignore_merges\":true";
	o.merges_as_pairs = 1;
	json = fx_byte_level_json(&o);
	tok = load_hf(json, NULL, &err);
	TAP_OK(tok != NULL, "merges as [a, b] pairs load (%s)", err.message);
	if (tok)
	{
		TAP_OK(strcmp(toks(tok, "hello", 0), "hello") == 0, "ignore_merges: hello -> hello (%s)", toks(tok, "hello", 0));
		sft_tokenizer_set_reference_mode(tok, 1);
		TAP_OK(strcmp(toks(tok, "hello aaaaa", 0), "hello|\xc4\xa0" "a|aaaa") == 0, "reference mode agrees (%s)", toks(tok, "hello aaaaa", 0));
		sft_tokenizer_free(tok);
	}
	free(json);
}

static void
test_split_nfc_added(void)
{
	FxOptions	o = {0};
	char	   *json;
	SftError	err = {0};
	SftTokenizer *tok;

	o.normalizer = "{\"type\":\"NFC\"}";
	o.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"" FX_LLAMA3_PATTERN_JSON "\"},"
		"\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";
	o.added_tokens = added_json;
	json = fx_byte_level_json(&o);
	tok = load_hf(json, NULL, &err);
	free(json);
	TAP_OK(tok != NULL, "Split + NFC + added tokens fixture loads (%s)", err.message);
	if (tok == NULL)
		return;
	TAP_OK(strcmp(toks(tok, "cafe\xcc\x81", 0), "caf\xc3\x83\xc2\xa9") == 0, "NFC: cafe+U+0301 -> café, one token (%s)", toks(tok, "cafe\xcc\x81", 0));
	TAP_OK(strcmp(offs(tok, "x cafe\xcc\x81", 0), "0,1,2") == 0, "NFC offsets map to the input (%s)", offs(tok, "x cafe\xcc\x81", 0));
	TAP_OK(strcmp(offs(tok, "x\xe2\x84\xab", 0), "0,1,1") == 0, "both bytes of NFC(U+212B) map to its start (%s)", offs(tok, "x\xe2\x84\xab", 0));
	TAP_OK(strcmp(toks(tok, "12345", 0), "123|45") == 0 || strcmp(toks(tok, "12345", 0), "123|4|5") == 0,
		   "\\p{N}{1,3} splits digits in threes (%s)", toks(tok, "12345", 0));
	TAP_OK(strcmp(toks(tok, "it's", 0), "it|'s") == 0 || contains(toks(tok, "it's", 0), "|'|s"),
		   "contraction split (%s)", toks(tok, "it's", 0));
	/* special tokens: matched only when asked */
	TAP_OK(strcmp(toks(tok, "<|im_start|>user", 1), "<|im_start|>|user") == 0 ||
		   strncmp(toks(tok, "<|im_start|>user", 1), "<|im_start|>|", 13) == 0,
		   "split_special: <|im_start|> is one token (%s)", toks(tok, "<|im_start|>user", 1));
	TAP_OK(!contains(toks(tok, "<|im_start|>user", 0), "<|im_start|>") && !contains(toks(tok, "<|im_start|>user", 0), "<|im|"),
		   "plain text: <|im_start|> is ordinary text (%s)", toks(tok, "<|im_start|>user", 0));
	TAP_OK(strncmp(toks(tok, "<|im_end|>", 1), "<|im_end|>", 10) == 0, "longest match first: <|im_end|> not <|im (%s)", toks(tok, "<|im_end|>", 1));
	TAP_OK(strncmp(toks(tok, "<|imx", 1), "<|im|", 5) == 0, "a shorter added token still matches (%s)", toks(tok, "<|imx", 1));
	TAP_OK(contains(toks(tok, "a<think>b", 0), "|<think>|"), "non-special added token matched in plain mode too (%s)", toks(tok, "a<think>b", 0));
	TAP_OK(strcmp(offs(tok, "ab<|im_end|>c", 1), "0,1,2,12") == 0 || strcmp(offs(tok, "ab<|im_end|>c", 1), "0,2,12") == 0,
		   "offset of an added token is where it starts (%s)", offs(tok, "ab<|im_end|>c", 1));
	/* lstrip / rstrip absorb white space around [MASK] */
	TAP_OK(strcmp(toks(tok, "a  [MASK]  b", 1), "a|[MASK]|b") == 0, "lstrip/rstrip: a  [MASK]  b -> a|[MASK]|b (%s)", toks(tok, "a  [MASK]  b", 1));
	TAP_OK(strcmp(offs(tok, "a  [MASK]  b", 1), "0,1,11") == 0, "lstripped token starts at the white space (%s)", offs(tok, "a  [MASK]  b", 1));
	TAP_OK(sft_tokenizer_special_count(tok) == 4, "4 special added tokens (%d)", sft_tokenizer_special_count(tok));
	TAP_OK(sft_tokenizer_special_id(tok, 0) == 400 && sft_tokenizer_special_id(tok, 3) == 404 && sft_tokenizer_special_id(tok, 4) == -1,
		   "special ids in id order");
	TAP_OK(sft_tokenizer_is_special(tok, 401) && !sft_tokenizer_is_special(tok, 402) && !sft_tokenizer_is_special(tok, 65),
		   "is_special");
	TAP_OK(sft_tokenizer_vocab_size(tok) == 405, "vocab size is max id + 1 (%d)", sft_tokenizer_vocab_size(tok));
	{
		SftIntVec	ids;
		SftBuf		out;

		sft_intvec_init(&ids);
		sft_buf_init(&out);
		sft_tokenizer_encode(tok, "<|im_start|>hi<|im_end|>", 24, 1, &ids, NULL, &err);
		sft_tokenizer_decode(tok, ids.data, ids.len, 1, &out, &err);
		TAP_OK(out.data && strcmp(out.data, "hi") == 0, "skip_special drops special tokens when decoding (%s)", out.data);
		sft_buf_free(&out);
		sft_tokenizer_decode(tok, ids.data, ids.len, 0, &out, &err);
		TAP_OK(out.data && strcmp(out.data, "<|im_start|>hi<|im_end|>") == 0, "special tokens decode to their text");
		sft_buf_free(&out);
		sft_intvec_free(&ids);
	}
	sft_tokenizer_free(tok);
}

/* Replace the first occurrence of from in json by to (new malloc'ed text). */
static char *
edit(const char *json, const char *from, const char *to)
{
	const char *p = strstr(json, from);
	size_t		n = strlen(json) - strlen(from) + strlen(to) + 1;
	char	   *out = malloc(n);

	if (p == NULL)
	{
		snprintf(out, n, "%s", json);
		return out;
	}
	memcpy(out, json, (size_t) (p - json));
	strcpy(out + (p - json), to);
	strcat(out, p + strlen(from));
	return out;
}

static void
test_sentencepiece(void)
{
	char	   *json = fx_spm_json(0, NULL);
	SftError	err = {0};
	SftTokenizer *tok = load_hf(json, NULL, &err);
	SftTokenizer *meta;

	TAP_OK(tok != NULL, "SentencePiece fixture loads (%s)", err.message);
	free(json);
	if (tok == NULL)
		return;
	TAP_OK(sft_tokenizer_kind(tok) == SFT_TOKENIZER_SENTENCEPIECE_BPE, "kind is sentencepiece_bpe");
	TAP_OK(strcmp(toks(tok, "hello world", 0), "\xe2\x96\x81|he|ll|o|\xe2\x96\x81world") == 0, "hello world -> ▁|he|ll|o|▁world (%s)", toks(tok, "hello world", 0));
	TAP_OK(strcmp(offs(tok, "hello world", 0), "0,0,2,4,5") == 0, "the prepended ▁ maps to offset 0, the space's ▁ to the space (%s)", offs(tok, "hello world", 0));
	TAP_OK(strcmp(toks(tok, "\xe6\x97\xa5", 0), "\xe2\x96\x81|<0xE6>|<0x97>|<0xA5>") == 0, "byte fallback for 日 (%s)", toks(tok, "\xe6\x97\xa5", 0));
	TAP_OK(strcmp(offs(tok, "\xe6\x97\xa5", 0), "0,0,1,2") == 0, "byte fallback offsets are the bytes (%s)", offs(tok, "\xe6\x97\xa5", 0));
	TAP_OK(strcmp(toks(tok, "caf\xc3\xa9 the", 0), "\xe2\x96\x81" "caf\xc3\xa9|\xe2\x96\x81the") == 0, "▁café|▁the (%s)", toks(tok, "caf\xc3\xa9 the", 0));
	TAP_OK(strcmp(toks(tok, "<s>hello", 1), "<s>|\xe2\x96\x81|he|ll|o") == 0, "text after an added token gets its own ▁ (%s)", toks(tok, "<s>hello", 1));
	TAP_OK(strcmp(toks(tok, "<s>", 0), "\xe2\x96\x81|<0x3C>|s|<0x3E>") == 0, "plain text <s> (%s)", toks(tok, "<s>", 0));
	TAP_OK(strcmp(roundtrip(tok, "hello  world \xe6\x97\xa5!", 17, 0), "hello  world \xe6\x97\xa5!") == 0, "SentencePiece round trip (Strip removes the ▁ prefix)");
	{
		int32_t		ids[3];
		SftBuf		out;

		sft_buf_init(&out);
		ids[0] = id_of(tok, "<0xE6>");
		ids[1] = id_of(tok, "<0x97>");
		ids[2] = id_of(tok, "h");
		TAP_OK(sft_tokenizer_decode(tok, ids, 3, 0, &out, &err) == SFT_OK && strcmp(out.data, "\xef\xbf\xbd\xef\xbf\xbdh") == 0,
			   "an invalid <0xNN> run decodes to one U+FFFD per byte (%s)", out.data);
		sft_buf_free(&out);
	}
	sft_tokenizer_free(tok);

	json = fx_spm_json(1, NULL);
	meta = load_hf(json, NULL, &err);
	free(json);
	TAP_OK(meta != NULL, "Metaspace pre-tokenizer form loads (%s)", err.message);
	if (meta)
	{
		TAP_OK(strcmp(toks(meta, "hello world", 0), "\xe2\x96\x81|he|ll|o|\xe2\x96\x81world") == 0, "Metaspace: ▁|he|ll|o|▁world (%s)", toks(meta, "hello world", 0));
		TAP_OK(strcmp(offs(meta, "hello world", 0), "0,0,2,4,5") == 0, "Metaspace offsets (%s)", offs(meta, "hello world", 0));
		TAP_OK(strcmp(toks(meta, "<s>hello", 1), "<s>|he|ll|o") == 0,
			   "prepend_scheme first: no ▁ after an added token (%s)", toks(meta, "<s>hello", 1));
		TAP_OK(strcmp(roundtrip(meta, "hello world", 11, 0), "hello world") == 0, "Metaspace decoder round trip");
		sft_tokenizer_free(meta);
	}

	/* unk: no byte fallback, fused */
	json = fx_spm_json(0, NULL);
	{
		char	   *nofallback = edit(json, "\"byte_fallback\":true", "\"byte_fallback\":false");

		free(json);
		json = nofallback;
	}
	tok = load_hf(json, NULL, &err);
	free(json);
	TAP_OK(tok != NULL, "no byte fallback fixture loads (%s)", err.message);
	if (tok)
	{
		TAP_OK(strcmp(toks(tok, "a\xe6\x97\xa5\xe6\x9c\xac" "b", 0), "\xe2\x96\x81" "a|<unk>|b") == 0,
			   "fuse_unk: unknown characters become one <unk> (%s)", toks(tok, "a\xe6\x97\xa5\xe6\x9c\xac" "b", 0));
		sft_tokenizer_free(tok);
	}
}

static void
test_vocab_merges(void)
{
	static const char vocab[] = "{\"a\":0,\"b\":1,\"ab\":2,\"\xc4\xa0\":3,\"\xc4\xa0" "ab\":4,\"<|endoftext|>\":5}";
	static const char merges[] = "#version: 0.2\na b\n\xc4\xa0 ab\r\n\n";
	SftTokenizer *tok = NULL;
	SftError	err = {0};

	TAP_OK(sft_tokenizer_from_vocab_merges(vocab, strlen(vocab), merges, strlen(merges), &tok, &err) == SFT_OK,
		   "vocab.json + merges.txt load (%s)", err.message);
	if (tok == NULL)
		return;
	TAP_OK(strcmp(toks(tok, "ab ab", 0), "ab|\xc4\xa0" "ab") == 0, "GPT-2 pattern and merges (%s)", toks(tok, "ab ab", 0));
	TAP_OK(sft_tokenizer_is_special(tok, 5) && sft_tokenizer_special_count(tok) == 1, "<|endoftext|> is special");
	TAP_OK(strcmp(toks(tok, "<|endoftext|>", 1), "<|endoftext|>") == 0, "and matched with split_special");
	sft_tokenizer_free(tok);
	tok = NULL;
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_from_vocab_merges(vocab, strlen(vocab), "a c\n", 4, &tok, &err) == SFT_ERR_FORMAT &&
		   contains(err.message, "line 1") && contains(err.message, "missing"), "merge with a missing token: %s", err.message);
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_from_vocab_merges(vocab, strlen(vocab), "a b c\n", 6, &tok, &err) == SFT_ERR_FORMAT,
		   "merges.txt line with three parts: %s", err.message);
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_from_vocab_merges("[1,2]", 5, "", 0, &tok, &err) == SFT_ERR_FORMAT, "vocab.json not an object: %s", err.message);
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_from_vocab_merges(vocab, strlen(vocab), "a b\n\xff", 5, &tok, &err) == SFT_ERR_FORMAT,
		   "merges.txt not UTF-8: %s", err.message);
}

static void
test_config(void)
{
	FxOptions	o = {0};
	char	   *json;
	SftError	err = {0};
	SftTokenizer *tok;

	o.added_tokens = "[{\"id\":400,\"content\":\"<s>\",\"special\":true},{\"id\":401,\"content\":\"</s>\",\"special\":true}]";
	json = fx_byte_level_json(&o);
	tok = load_hf(json, "{\"bos_token\":\"<s>\",\"eos_token\":{\"content\":\"</s>\",\"lstrip\":false},"
				  "\"add_bos_token\":false,\"chat_template\":\"{{ messages }}\"}", &err);
	TAP_OK(tok != NULL, "config with string and object tokens loads (%s)", err.message);
	if (tok)
	{
		TAP_OK(strcmp(sft_tokenizer_bos_token(tok), "<s>") == 0 && sft_tokenizer_bos_id(tok) == 400, "bos_token string form");
		TAP_OK(strcmp(sft_tokenizer_eos_token(tok), "</s>") == 0 && sft_tokenizer_eos_id(tok) == 401, "eos_token {content} form");
		TAP_OK(sft_tokenizer_add_bos_token(tok) == 0, "add_bos_token false");
		TAP_OK(strcmp(sft_tokenizer_chat_template(tok), "{{ messages }}") == 0, "chat_template string");
		sft_tokenizer_free(tok);
	}
	tok = load_hf(json, "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\",\"template\":\"D\"}],"
				  "\"add_bos_token\":true,\"eos_token\":null}", &err);
	TAP_OK(tok && strcmp(sft_tokenizer_chat_template(tok), "D") == 0 && sft_tokenizer_add_bos_token(tok) == 1 &&
		   sft_tokenizer_eos_token(tok) == NULL && sft_tokenizer_eos_id(tok) == -1,
		   "chat_template list: the one named default; null eos_token");
	sft_tokenizer_free(tok);
	TAP_OK(load_status(json, "{\"bos_token\":5}", &err) == SFT_ERR_FORMAT && contains(err.message, "bos_token"), "bos_token of wrong type: %s", err.message);
	TAP_OK(load_status(json, "{\"chat_template\":7}", &err) == SFT_ERR_FORMAT, "chat_template of wrong type: %s", err.message);
	TAP_OK(load_status(json, "{\"chat_template\":[{\"name\":1}]}", &err) == SFT_ERR_FORMAT, "chat_template list item of wrong type: %s", err.message);
	TAP_OK(load_status(json, "{\"add_bos_token\":\"yes\"}", &err) == SFT_ERR_FORMAT, "add_bos_token of wrong type: %s", err.message);
	TAP_OK(load_status(json, "[]", &err) == SFT_ERR_FORMAT && contains(err.message, "tokenizer_config.json"), "config not an object: %s", err.message);
	TAP_OK(load_status(json, "{\"bos_token\":", &err) == SFT_ERR_FORMAT, "truncated config: %s", err.message);
	free(json);
}

static void
expect_edit(const char *json, const char *from, const char *to, SftStatus want, const char *needle, const char *what)
{
	char	   *bad = edit(json, from, to);
	SftError	err = {0};
	SftStatus	st = load_status(bad, NULL, &err);

	TAP_OK(strstr(json, from) != NULL && st == want && (needle == NULL || contains(err.message, needle)),
		   "%s -> %s: %s", what, sft_status_name(st), err.message);
	free(bad);
}

static void
test_malformed(void)
{
	FxOptions	o = {0};
	char	   *json = fx_byte_level_json(&o);
	char	   *spm = fx_spm_json(0, NULL);
	size_t		len = strlen(json);
	SftError	err = {0};
	int			all_fail = 1;
	SftTokenizer *tok = NULL;

	/* every truncation of a valid file is an error, never a crash */
	for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 97))
	{
		sft_error_clear(&err);
		if (sft_tokenizer_from_hf(json, cut, NULL, 0, &tok, &err) == SFT_OK || tok != NULL || err.message[0] == '\0')
			all_fail = 0;
		sft_tokenizer_free(tok);
		tok = NULL;
	}
	TAP_OK(all_fail, "every truncation of tokenizer.json is a clean error");
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_from_hf(json, len - 3, NULL, 0, &tok, &err) == SFT_ERR_FORMAT && contains(err.message, "JSON"),
		   "truncated: %s", err.message);
	TAP_OK(load_status("{\"model\":{}} trailing", NULL, &err) == SFT_ERR_FORMAT, "text after the JSON value: %s", err.message);
	TAP_OK(load_status("\"x\"", NULL, &err) == SFT_ERR_FORMAT, "not an object: %s", err.message);
	TAP_OK(load_status("null", NULL, &err) == SFT_ERR_FORMAT, "JSON null: %s", err.message);
	TAP_OK(load_status("", NULL, &err) == SFT_ERR_FORMAT, "empty text: %s", err.message);
	TAP_OK(load_status("{}", NULL, &err) == SFT_ERR_FORMAT && contains(err.message, "model"), "no model: %s", err.message);
	{
		char		bad[8] = {'{', '"', (char) 0xC3, '"', ':', '1', '}', 0};

		TAP_OK(load_status(bad, NULL, &err) == SFT_ERR_FORMAT && contains(err.message, "UTF-8"), "invalid UTF-8 file: %s", err.message);
	}
	expect_edit(json, "\"type\":\"BPE\"", "\"type\":\"WordPiece\"", SFT_ERR_UNSUPPORTED, "WordPiece", "model type WordPiece");
	expect_edit(json, "\"vocab\":{", "\"vocab\":[],\"old_vocab\":{", SFT_ERR_FORMAT, "model.vocab", "vocab as an array");
	expect_edit(json, "\"merges\":[", "\"merges\":{},\"old_merges\":[", SFT_ERR_FORMAT, "model.merges", "merges as an object");
	expect_edit(json, "\"pre_tokenizer\":{", "\"pre_tokenizer\":7,\"old\":{", SFT_ERR_FORMAT, "pre_tokenizer", "pre_tokenizer of wrong type");
	expect_edit(json, "\"decoder\":{", "\"decoder\":[],\"old\":{", SFT_ERR_FORMAT, "decoder", "decoder of wrong type");
	expect_edit(json, ":0,", ":\"0\",", SFT_ERR_FORMAT, "integer", "id as a string");
	expect_edit(json, ":0,", ":1000000000000,", SFT_ERR_LIMIT, "1000000000000", "huge id");
	expect_edit(json, ":0,", ":-7,", SFT_ERR_LIMIT, "-7", "negative id");
	expect_edit(json, ":0,", ":1,", SFT_ERR_FORMAT, "share id", "duplicate id");
	expect_edit(json, "\"merges\":[\"", "\"merges\":[\"zz\xc4\xa0 q\",\"", SFT_ERR_FORMAT, "missing", "merge referring to a missing token");
	expect_edit(json, "\"merges\":[\"", "\"merges\":[\"a a a\",\"", SFT_ERR_FORMAT, "two tokens", "merge with three parts");
	expect_edit(json, "\"merges\":[\"", "\"merges\":[7,\"", SFT_ERR_FORMAT, "merges[0]", "merge of wrong type");
	expect_edit(json, "\"merges\":[\"", "\"merges\":[\"b c\",\"", SFT_ERR_FORMAT, "produces", "merge whose result is not a token");
	expect_edit(json, "\"dropout\":null", "\"dropout\":0.1", SFT_ERR_UNSUPPORTED, "dropout", "dropout");
	expect_edit(json, "\"fuse_unk\":false", "\"fuse_unk\":1", SFT_ERR_FORMAT, "fuse_unk", "fuse_unk of wrong type");
	expect_edit(json, "\"unk_token\":null", "\"unk_token\":\"<nope>\"", SFT_ERR_FORMAT, "unk_token", "unk_token not in the vocabulary");
	expect_edit(json, "\"pre_tokenizer\":{\"type\":\"ByteLevel\"", "\"pre_tokenizer\":{\"type\":\"Whitespace\"", SFT_ERR_UNSUPPORTED,
				"Whitespace", "unsupported pre-tokenizer");
	expect_edit(json, "\"normalizer\":null", "\"normalizer\":{\"type\":\"Lowercase\"}", SFT_ERR_UNSUPPORTED, "Lowercase", "unsupported normalizer");
	expect_edit(json, "\"decoder\":{\"type\":\"ByteLevel\"", "\"decoder\":{\"type\":\"WordPiece\"", SFT_ERR_UNSUPPORTED, "WordPiece", "unsupported decoder");
	expect_edit(json, "\"pre_tokenizer\":{", "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},\"x\":{",
				SFT_ERR_FORMAT, "does not compile", "a split regex that does not compile");
	expect_edit(json, "\"pre_tokenizer\":{", "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\" \"},\"behavior\":\"Sideways\"},\"x\":{",
				SFT_ERR_FORMAT, "Sideways", "unknown split behavior");
	expect_edit(json, "\"added_tokens\":[]", "\"added_tokens\":[{\"id\":5,\"content\":\"x\",\"single_word\":true}]", SFT_ERR_UNSUPPORTED,
				"single_word", "single_word added token");
	expect_edit(json, "\"added_tokens\":[]", "\"added_tokens\":[{\"id\":\"5\",\"content\":\"x\"}]", SFT_ERR_FORMAT, "id", "added token id of wrong type");
	expect_edit(json, "\"added_tokens\":[]", "\"added_tokens\":[{\"id\":99999999,\"content\":\"x\"}]", SFT_ERR_LIMIT, "99999999", "added token with a huge id");
	expect_edit(json, "\"added_tokens\":[]", "\"added_tokens\":[{\"id\":500,\"content\":\"x\"},{\"id\":500,\"content\":\"y\"}]", SFT_ERR_FORMAT,
				"share id", "two added tokens with one id");
	expect_edit(json, "\"added_tokens\":[]", "\"added_tokens\":{}", SFT_ERR_FORMAT, "added_tokens", "added_tokens not an array");
	expect_edit(spm, "\"byte_fallback\":true", "\"byte_fallback\":false", SFT_OK, NULL, "SentencePiece without byte fallback is fine");
	expect_edit(spm, "\"normalizers\":[{\"type\":\"Prepend\"", "\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" \"},\"content\":\"x\"},{\"type\":\"Prepend\"",
				SFT_ERR_UNSUPPORTED, "Regex", "Replace with a Regex pattern");
	expect_edit(spm, "\"added_tokens\":[", "\"added_tokens\":[{\"id\":600,\"content\":\"hi\",\"normalized\":true,\"special\":false},",
				SFT_ERR_UNSUPPORTED, "normalized", "normalized added token with a normalizer");
	free(json);
	free(spm);
}

static void
test_bad_input(void)
{
	FxOptions	o = {0};
	char	   *json = fx_byte_level_json(&o);
	SftError	err = {0};
	SftTokenizer *tok = load_hf(json, NULL, &err);
	SftIntVec	ids;
	size_t		n = 1 << 20;
	char	   *big = malloc(n + 1);
	clock_t		t0;
	SftStatus	st;

	free(json);
	if (tok == NULL)
		return;
	sft_intvec_init(&ids);
	sft_intvec_push(&ids, 42);
	st = sft_tokenizer_encode(tok, "ok \xc3\x28 bad", 9, 0, &ids, NULL, &err);
	TAP_OK(st == SFT_ERR_INVALID && contains(err.message, "offset 3") && ids.len == 1,
		   "invalid UTF-8 is an error naming the offset, ids untouched: %s", err.message);
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_encode(tok, "\xed\xa0\x80", 3, 0, &ids, NULL, &err) == SFT_ERR_INVALID, "UTF-16 surrogate is invalid UTF-8");
	sft_error_clear(&err);
	TAP_OK(sft_tokenizer_encode(tok, "\xc0\xaf", 2, 0, &ids, NULL, &err) == SFT_ERR_INVALID, "overlong encoding is invalid UTF-8");
	sft_intvec_free(&ids);

	/* 1 MB of prose, of one repeated letter (one regex piece), of spaces */
	for (int kind = 0; kind < 3; kind++)
	{
		static const char *const names[] = {"prose", "one 1 MB word", "spaces"};
		SftBuf		out;

		for (size_t i = 0; i < n; i++)
			big[i] = kind == 0 ? "The lowest hello world, 123 caf. \n"[i % 34] : kind == 1 ? 'a' : ' ';
		big[n] = 0;
		sft_intvec_init(&ids);
		sft_buf_init(&out);
		t0 = clock();
		st = sft_tokenizer_encode(tok, big, n, 0, &ids, NULL, &err);
		TAP_OK(st == SFT_OK && ids.len > 0, "1 MB of %s encodes: %zu tokens in %.2f s", names[kind], ids.len,
			   (double) (clock() - t0) / CLOCKS_PER_SEC);
		st = sft_tokenizer_decode(tok, ids.data, ids.len, 0, &out, &err);
		TAP_OK(st == SFT_OK && out.len == n && memcmp(out.data, big, n) == 0, "and decodes back");
		sft_intvec_free(&ids);
		sft_buf_free(&out);
	}
	sft_tokenizer_free(tok);

	/* SentencePiece: the whole 1 MB is one word for BPE */
	json = fx_spm_json(0, NULL);
	tok = load_hf(json, NULL, &err);
	free(json);
	for (size_t i = 0; i < n; i++)
		big[i] = "hello world the cafe and \xe6\x97\xa5 "[i % 29];
	big[n - 4] = ' ';			/* keep the last character whole */
	big[n - 3] = ' ';
	big[n - 2] = ' ';
	big[n - 1] = 'x';
	sft_intvec_init(&ids);
	t0 = clock();
	st = sft_tokenizer_encode(tok, big, n, 0, &ids, NULL, &err);
	TAP_OK(st == SFT_OK && ids.len > 0, "1 MB SentencePiece text (a single BPE word): %zu tokens in %.2f s",
		   ids.len, (double) (clock() - t0) / CLOCKS_PER_SEC);
	{
		SftBuf		out;

		sft_buf_init(&out);
		TAP_OK(sft_tokenizer_decode(tok, ids.data, ids.len, 0, &out, &err) == SFT_OK && out.len == n &&
			   memcmp(out.data, big, n) == 0, "and decodes back");
		sft_buf_free(&out);
	}
	sft_intvec_free(&ids);
	sft_tokenizer_free(tok);
	free(big);
}

/* The fast encoder (heap merge loop, whole-word shortcut) equals the plain one. */
static void
test_fast_vs_reference(void)
{
	FxOptions	o = {0};
	char	   *json = fx_byte_level_json(&o);
	char	   *spm = fx_spm_json(0, NULL);
	SftError	err = {0};
	SftTokenizer *toks_[2];
	static const char *const alphabet[] = {"a", "h", "e", "l", "o", " ", "t", "w", "r", "d", "n", "\xc3\xa9", "c", "f", "1", "2", "3", "\n", "aa", "ll"};
	SftRng		rng;
	int			mismatches = 0;
	int			total = 0;

	toks_[0] = load_hf(json, NULL, &err);
	toks_[1] = load_hf(spm, NULL, &err);
	free(json);
	free(spm);
	sft_rng_seed(&rng, 7);
	for (int t = 0; t < 2; t++)
	{
		if (toks_[t] == NULL)
			continue;
		for (int iter = 0; iter < 3000; iter++)
		{
			char		text[512];
			size_t		len = 0;
			int			pieces = 1 + (int) (sft_rng_next(&rng) % 60);
			SftIntVec	a,
						b,
						oa,
						ob;

			for (int k = 0; k < pieces; k++)
			{
				const char *s = alphabet[sft_rng_next(&rng) % (sizeof(alphabet) / sizeof(alphabet[0]))];

				memcpy(text + len, s, strlen(s));
				len += strlen(s);
			}
			sft_intvec_init(&a);
			sft_intvec_init(&b);
			sft_intvec_init(&oa);
			sft_intvec_init(&ob);
			sft_tokenizer_encode(toks_[t], text, len, 0, &a, &oa, &err);
			sft_tokenizer_set_reference_mode(toks_[t], 1);
			sft_tokenizer_encode(toks_[t], text, len, 0, &b, &ob, &err);
			sft_tokenizer_set_reference_mode(toks_[t], 0);
			total++;
			if (a.len != b.len || memcmp(a.data, b.data, a.len * sizeof(int32_t)) != 0 ||
				memcmp(oa.data, ob.data, oa.len * sizeof(int32_t)) != 0)
				mismatches++;
			sft_intvec_free(&a);
			sft_intvec_free(&b);
			sft_intvec_free(&oa);
			sft_intvec_free(&ob);
		}
		sft_tokenizer_free(toks_[t]);
	}
	TAP_OK(total == 6000 && mismatches == 0, "fast encoder equals the reference on %d random strings (%d mismatches)", total, mismatches);
}

static void
test_nfc(void)
{
	static const char *const cases[][2] = {
		{"e\xcc\x81", "\xc3\xa9"},	/* e + acute -> é */
		{"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},	/* jamo -> 각 */
		{"a\xcc\x82\xcc\xa3", "\xe1\xba\xad"},	/* marks reordered -> ậ */
		{"a\xcc\xa3\xcc\x82", "\xe1\xba\xad"},
		{"\xe2\x84\xab", "\xc3\x85"},	/* Angstrom sign -> Å */
		{"\xcd\x84", "\xcc\x88\xcc\x81"},	/* U+0344 -> two marks */
		{"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},	/* composition exclusion stays decomposed */
		{"q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87"},	/* reordered, nothing composes */
		{"\xcc\x81" "e", "\xcc\x81" "e"},	/* leading mark */
		{"\xe0\xb3\x86\xe0\xb3\x82", "\xe0\xb3\x8a"},	/* Kannada starter + starter */
		{"plain ascii", "plain ascii"},
	};
	int			ok = 1;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SftBuf		out;
		SftIntVec	map;
		SftError	err = {0};

		sft_buf_init(&out);
		sft_intvec_init(&map);
		if (sft_unicode_nfc(cases[i][0], strlen(cases[i][0]), &out, &map, 0, &err) != SFT_OK ||
			out.len != strlen(cases[i][1]) || memcmp(out.data, cases[i][1], out.len) != 0 || map.len != out.len)
		{
			ok = 0;
			printf("# NFC case %zu wrong\n", i);
		}
		for (size_t k = 1; k < map.len; k++)
			if (map.data[k] < map.data[k - 1])
				ok = 0;
		sft_buf_free(&out);
		sft_intvec_free(&map);
	}
	TAP_OK(ok, "NFC: composition, Hangul, reordering, singletons, exclusions; offset map non-decreasing");
	TAP_OK(sft_unicode_nfc_quick_ok("abc \xe6\x97\xa5\xe6\x9c\xac", 10) && !sft_unicode_nfc_quick_ok("e\xcc\x81", 3),
		   "quick check passes CJK and catches combining marks");
	TAP_OK(sft_unicode_is_space(0x85) && sft_unicode_is_space(0x3000) && !sft_unicode_is_space(0xFEFF) &&
		   !sft_unicode_is_space(0x180E) && !sft_unicode_is_space(0x200B), "White_Space: U+0085 yes; U+FEFF, U+180E, U+200B no");
}

/* pre-tokenizer Split with a String and each behaviour; \s as HF's White_Space */
static const char *
split_toks(const char *pattern_json, const char *behavior, int invert, const char *text)
{
	static char result[1024];
	char		pre[512];
	FxOptions	o = {0};
	char	   *json;
	SftError	err = {0};
	SftTokenizer *tok;

	snprintf(pre, sizeof(pre), "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":%s,"
			 "\"behavior\":\"%s\",\"invert\":%s},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}",
			 pattern_json, behavior, invert ? "true" : "false");
	o.pre_tokenizer = pre;
	json = fx_byte_level_json(&o);
	tok = load_hf(json, NULL, &err);
	free(json);
	if (tok == NULL)
	{
		snprintf(result, sizeof(result), "LOAD ERROR %s", err.message);
		return result;
	}
	snprintf(result, sizeof(result), "%s", toks(tok, text, 0));
	sft_tokenizer_free(tok);
	return result;
}

static void
test_split_behaviors(void)
{
	/* Expected pieces from HF tokenizers' splitPreTokenizer(" ", behavior, invert) */
	static const struct
	{
		const char *behavior;
		int			invert;
		const char *text;
		const char *want;
	}			cases[] = {
		{"Removed", 0, "aa aa", "aa|aa"},
		{"Removed", 1, "aa aa", "\xc4\xa0"},
		{"Isolated", 0, "aa aa", "aa|\xc4\xa0|aa"},
		{"MergedWithPrevious", 0, "aa aa", "aa|\xc4\xa0|aa"},	/* "aa " "aa" */
		{"MergedWithNext", 0, "aa aa", "aa|\xc4\xa0" "a|a"},	/* "aa" " aa" */
		{"MergedWithNext", 0, "aa  aa", "aa|\xc4\xa0|\xc4\xa0" "a|a"},	/* "aa" " " " aa" */
		{"MergedWithPrevious", 1, "aa aa", "aa|\xc4\xa0" "a|a"},	/* "aa" " aa" */
		{"Contiguous", 0, "aa  aa", "aa|\xc4\xa0\xc4\xa0|aa"},	/* "aa" "  " "aa" */
		{"Isolated", 0, "aa  aa", "aa|\xc4\xa0|\xc4\xa0|aa"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const char *got = split_toks("{\"String\":\" \"}", cases[i].behavior, cases[i].invert, cases[i].text);

		TAP_OK(strcmp(got, cases[i].want) == 0, "Split \" \" %s%s on \"%s\" -> %s (%s)", cases[i].behavior,
			   cases[i].invert ? " inverted" : "", cases[i].text, cases[i].want, got);
	}
	/* \s is White_Space: U+FEFF and U+180E are not removed, U+0085 is */
	TAP_OK(strcmp(split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "a \xef\xbb\xbf" "b"), "a|\xc3\xaf|\xc2\xbb|\xc2\xbf" "b") == 0 ||
		   strcmp(split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "a \xef\xbb\xbf" "b"), "a|\xc3\xaf|\xc2\xbb|\xc2\xbf|b") == 0,
		   "U+FEFF is not \\s (%s)", split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "a \xef\xbb\xbf" "b"));
	TAP_OK(strcmp(split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "a \xe1\xa0\x8e"), "a|\xc3\xa1|\xc5\x82|\xc4\xb0") == 0,
		   "U+180E is not \\s (%s)", split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "a \xe1\xa0\x8e"));
	TAP_OK(strcmp(split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "x\xc2\x85y"), "x|y") == 0,
		   "U+0085 is \\s (%s)", split_toks("{\"Regex\":\"\\\\s\"}", "Removed", 0, "x\xc2\x85y"));
	TAP_OK(strcmp(split_toks("{\"Regex\":\"[\\\\s]\"}", "Removed", 0, "x\xc2\x85y\xef\xbb\xbf"), "x|y|\xc3\xaf|\xc2\xbb|\xc2\xbf") == 0,
		   "\\s inside a class too (%s)", split_toks("{\"Regex\":\"[\\\\s]\"}", "Removed", 0, "x\xc2\x85y\xef\xbb\xbf"));
	TAP_OK(strcmp(split_toks("{\"Regex\":\"\\\\S+\"}", "Removed", 0, "ab\xe1\xa0\x8e cd"), "\xc4\xa0") == 0,
		   "\\S matches U+180E (%s)", split_toks("{\"Regex\":\"\\\\S+\"}", "Removed", 0, "ab\xe1\xa0\x8e cd"));
}

int
main(void)
{
	test_byte_level();
	test_split_nfc_added();
	test_sentencepiece();
	test_vocab_merges();
	test_config();
	test_malformed();
	test_bad_input();
	test_fast_vs_reference();
	test_nfc();
	test_split_behaviors();
	return tap_done();
}
