/*
 * tokenizer_fixtures.h: small handmade tokenizer.json texts for the
 * tokenizer's unit tests and fuzz targets (no third-party vocabulary is
 * committed).  Merges are written as pairs of raw strings; the builder maps
 * them to GPT-2's byte characters (byte-level) or keeps them (SentencePiece)
 * and derives the vocabulary: every base symbol, then each merge's result in
 * merge order.
 */
#ifndef SFT_TOKENIZER_FIXTURES_H
#define SFT_TOKENIZER_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Llama 3's split pattern (Qwen's differs only in \p{N} instead of \p{N}{1,3}). */
#define FX_LLAMA3_PATTERN "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* The same pattern escaped for a JSON string. */
#define FX_LLAMA3_PATTERN_JSON "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* Merges over English-ish text: raw left, raw right. */
static const char *const fx_merges[][2] = {
	{" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {"e", "r"}, {"o", "n"}, {" ", "a"},
	{"r", "e"}, {"a", "t"}, {"e", "n"}, {" ", "w"}, {"l", "l"}, {"o", "r"}, {" ", "s"},
	{"in", "g"}, {" a", "nd"}, {"n", "d"}, {" ", "o"}, {" o", "f"}, {"h", "ell"}, {"e", "ll"},
	{"hell", "o"}, {" w", "or"}, {"l", "d"}, {" wor", "ld"}, {" ", "h"}, {" h", "ello"},
	{"ell", "o"}, {"T", "he"}, {" ", " "}, {"  ", "  "}, {"\n", "\n"}, {"1", "2"}, {"12", "3"},
	{"\xcc", "\x81"}, {"e", "\xcc\x81"}, {"\xc3", "\xa9"}, {"c", "af"}, {"a", "f"}, {"caf", "\xc3\xa9"},
	{"<", "|"}, {"|", ">"}, {" ", "l"}, {" l", "o"}, {" lo", "w"}, {"e", "s"}, {"es", "t"},
	{" low", "est"}, {"a", "a"}, {"aa", "aa"}, {"\xe6", "\x97"}, {"\xe6", "\x9c"}, {"\xe6\x97", "\xa5"}, {"\xe6\x9c", "\xac"},
};
#define FX_NMERGES ((int) (sizeof(fx_merges) / sizeof(fx_merges[0])))

static inline void
fx_json_string(SftBuf *b, const char *s, size_t len)
{
	sft_buf_append(b, "\"", 1);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		char		esc[8];

		if (c == '"' || c == '\\')
		{
			esc[0] = '\\';
			esc[1] = (char) c;
			sft_buf_append(b, esc, 2);
		}
		else if (c < 0x20)
		{
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			sft_buf_append(b, esc, 6);
		}
		else
			sft_buf_append(b, (const char *) &c, 1);
	}
	sft_buf_append(b, "\"", 1);
}

/* GPT-2 byte -> character (UTF-8 into out, returns length). */
static inline size_t
fx_byte_char(unsigned char byte, char *out)
{
	int			n = 0;
	unsigned	cp = 0;

	for (int b = 0; b < 256; b++)
	{
		int			printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;

		if (b == byte)
		{
			cp = printable ? (unsigned) b : 256u + (unsigned) n;
			break;
		}
		if (!printable)
			n++;
	}
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	out[0] = (char) (0xC0 | (cp >> 6));
	out[1] = (char) (0x80 | (cp & 0x3F));
	return 2;
}

static inline void
fx_byte_string(SftBuf *out, const char *raw)
{
	char		c[2];

	for (const char *p = raw; *p; p++)
	{
		size_t		n = fx_byte_char((unsigned char) *p, c);

		sft_buf_append(out, c, n);
	}
}

/* Ids used by fx_byte_level_json: 256 bytes + distinct merge results. */
static inline int
fx_byte_level_vocab_size(void)
{
	int			n = 256;

	for (int m = 0; m < FX_NMERGES; m++)
	{
		char		joined[64];
		int			dup = 0;

		snprintf(joined, sizeof(joined), "%s%s", fx_merges[m][0], fx_merges[m][1]);
		for (int k = 0; k < m && !dup; k++)
		{
			char		other[64];

			snprintf(other, sizeof(other), "%s%s", fx_merges[k][0], fx_merges[k][1]);
			dup = strcmp(joined, other) == 0;
		}
		n += !dup;
	}
	return n;
}

typedef struct FxOptions
{
	const char *normalizer;		/* JSON value or NULL */
	const char *pre_tokenizer;
	const char *decoder;
	const char *added_tokens;	/* JSON array or NULL */
	const char *model_extra;	/* extra "key": value pairs for model, or NULL */
	int			merges_as_pairs;	/* ["a","b"] instead of "a b" */
} FxOptions;

/*
 * Byte-level tokenizer.json: ids 0..255 are the byte characters in byte
 * order, then the merge results.  Returns a malloc'ed NUL-terminated text.
 */
static inline char *
fx_byte_level_json(const FxOptions *o)
{
	SftBuf		b,
				tok;
	int			next_id = 256;
	char	   *seen[FX_NMERGES];
	int			nseen = 0;

	sft_buf_init(&b);
	sft_buf_init(&tok);
	sft_buf_append_str(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":");
	sft_buf_append_str(&b, o->added_tokens ? o->added_tokens : "[]");
	sft_buf_append_str(&b, ",\"normalizer\":");
	sft_buf_append_str(&b, o->normalizer ? o->normalizer : "null");
	sft_buf_append_str(&b, ",\"pre_tokenizer\":");
	sft_buf_append_str(&b, o->pre_tokenizer ? o->pre_tokenizer :
					   "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}");
	sft_buf_append_str(&b, ",\"post_processor\":null,\"decoder\":");
	sft_buf_append_str(&b, o->decoder ? o->decoder : "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}");
	sft_buf_append_str(&b, ",\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"fuse_unk\":false,\"byte_fallback\":false");
	if (o->model_extra)
	{
		sft_buf_append_str(&b, ",");
		sft_buf_append_str(&b, o->model_extra);
	}
	sft_buf_append_str(&b, ",\"vocab\":{");
	for (int byte = 0; byte < 256; byte++)
	{
		char		raw[2] = {(char) byte, 0};
		char		num[16];

		tok.len = 0;
		if (byte == 0)
		{
			char		c[2];
			size_t		n = fx_byte_char(0, c);

			sft_buf_append(&tok, c, n);
		}
		else
			fx_byte_string(&tok, raw);
		if (byte)
			sft_buf_append_str(&b, ",");
		fx_json_string(&b, tok.data, tok.len);
		snprintf(num, sizeof(num), ":%d", byte);
		sft_buf_append_str(&b, num);
	}
	for (int m = 0; m < FX_NMERGES; m++)
	{
		char		joined[64];
		char		num[16];
		int			dup = 0;

		snprintf(joined, sizeof(joined), "%s%s", fx_merges[m][0], fx_merges[m][1]);
		for (int k = 0; k < nseen; k++)
			dup |= strcmp(seen[k], joined) == 0;
		if (dup)
			continue;
		seen[nseen++] = strdup(joined);
		tok.len = 0;
		fx_byte_string(&tok, joined);
		sft_buf_append_str(&b, ",");
		fx_json_string(&b, tok.data, tok.len);
		snprintf(num, sizeof(num), ":%d", next_id++);
		sft_buf_append_str(&b, num);
	}
	sft_buf_append_str(&b, "},\"merges\":[");
	for (int m = 0; m < FX_NMERGES; m++)
	{
		if (m)
			sft_buf_append_str(&b, ",");
		tok.len = 0;
		fx_byte_string(&tok, fx_merges[m][0]);
		if (o->merges_as_pairs)
		{
			sft_buf_append_str(&b, "[");
			fx_json_string(&b, tok.data, tok.len);
			sft_buf_append_str(&b, ",");
			tok.len = 0;
			fx_byte_string(&tok, fx_merges[m][1]);
			fx_json_string(&b, tok.data, tok.len);
			sft_buf_append_str(&b, "]");
		}
		else
		{
			sft_buf_append_str(&tok, " ");
			fx_byte_string(&tok, fx_merges[m][1]);
			fx_json_string(&b, tok.data, tok.len);
		}
	}
	sft_buf_append_str(&b, "]}}");
	for (int k = 0; k < nseen; k++)
		free(seen[k]);
	sft_buf_free(&tok);
	{
		char	   *out = strdup(b.data);

		sft_buf_free(&b);
		return out;
	}
}

/* SentencePiece merges (raw UTF-8; FX_SP is the U+2581 space marker). */
#define FX_SP "\xe2\x96\x81"
static const char *const fx_spm_merges[][2] = {
	{FX_SP, "t"}, {"h", "e"}, {FX_SP "t", "he"}, {FX_SP, "a"}, {"n", "d"},
	{FX_SP "a", "nd"}, {"l", "l"}, {"e", "ll"}, {"h", "ell"}, {"hell", "o"},
	{FX_SP, "hello"}, {"o", "r"}, {FX_SP, "w"}, {FX_SP "w", "or"},
	{"l", "d"}, {FX_SP "wor", "ld"}, {FX_SP, FX_SP}, {"c", "a"},
	{"ca", "f"}, {"caf", "\xc3\xa9"}, {FX_SP, "caf\xc3\xa9"},
};
#define FX_SPM_NMERGES ((int) (sizeof(fx_spm_merges) / sizeof(fx_spm_merges[0])))

/*
 * SentencePiece-style tokenizer.json: <unk> <s> </s>, <0x00>..<0xFF>, ▁,
 * a-z, é, then merge results.  metaspace != 0 uses the Metaspace
 * pre-tokenizer form instead of the Prepend/Replace normalizer.
 */
static inline char *
fx_spm_json(int metaspace, const char *added_tokens_extra)
{
	SftBuf		b;
	int			id = 0;
	char		num[32];
	char	   *seen[FX_SPM_NMERGES];
	int			nseen = 0;

	sft_buf_init(&b);
	sft_buf_append_str(&b, "{\"version\":\"1.0\",\"added_tokens\":["
					   "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
					   "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
					   "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}");
	if (added_tokens_extra)
	{
		sft_buf_append_str(&b, ",");
		sft_buf_append_str(&b, added_tokens_extra);
	}
	sft_buf_append_str(&b, "],");
	if (metaspace)
		sft_buf_append_str(&b, "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":false},"
						   "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":false},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},");
	else
		sft_buf_append_str(&b, "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
						   "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null,"
						   "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
						   "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},");
	sft_buf_append_str(&b, "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,\"vocab\":{"
					   "\"<unk>\":0,\"<s>\":1,\"</s>\":2");
	id = 3;
	for (int byte = 0; byte < 256; byte++)
	{
		snprintf(num, sizeof(num), ",\"<0x%02X>\":%d", byte, id++);
		sft_buf_append_str(&b, num);
	}
	snprintf(num, sizeof(num), ",\"\xe2\x96\x81\":%d", id++);
	sft_buf_append_str(&b, num);
	for (char c = 'a'; c <= 'z'; c++)
	{
		snprintf(num, sizeof(num), ",\"%c\":%d", c, id++);
		sft_buf_append_str(&b, num);
	}
	snprintf(num, sizeof(num), ",\"\xc3\xa9\":%d", id++);
	sft_buf_append_str(&b, num);
	for (int m = 0; m < FX_SPM_NMERGES; m++)
	{
		char		joined[64];
		int			dup = 0;

		snprintf(joined, sizeof(joined), "%s%s", fx_spm_merges[m][0], fx_spm_merges[m][1]);
		for (int k = 0; k < nseen; k++)
			dup |= strcmp(seen[k], joined) == 0;
		if (dup)
			continue;
		seen[nseen++] = strdup(joined);
		sft_buf_append_str(&b, ",");
		fx_json_string(&b, joined, strlen(joined));
		snprintf(num, sizeof(num), ":%d", id++);
		sft_buf_append_str(&b, num);
	}
	sft_buf_append_str(&b, "},\"merges\":[");
	for (int m = 0; m < FX_SPM_NMERGES; m++)
	{
		char		line[64];

		snprintf(line, sizeof(line), "%s %s", fx_spm_merges[m][0], fx_spm_merges[m][1]);
		if (m)
			sft_buf_append_str(&b, ",");
		fx_json_string(&b, line, strlen(line));
	}
	sft_buf_append_str(&b, "]}}");
	for (int k = 0; k < nseen; k++)
		free(seen[k]);
	{
		char	   *out = strdup(b.data);

		sft_buf_free(&b);
		return out;
	}
}

#endif
