/*
 * tokenizer.c: loading Hugging Face tokenizers (tokenizer.json +
 * tokenizer_config.json, or GPT-2's vocab.json + merges.txt) into an
 * SftTokenizer, and the accessors of tokenizer.h.
 *
 * What is understood (anything else is SFT_ERR_UNSUPPORTED naming it):
 *   model         BPE: vocab, merges ("a b" strings or ["a","b"] pairs),
 *                 unk_token, fuse_unk, byte_fallback, ignore_merges; dropout
 *                 must be null/0 and subword prefix/suffix empty.
 *   normalizer    NFC, Prepend, Replace (String pattern), Sequence of those.
 *   pre_tokenizer Split (Regex or String; Removed, Isolated,
 *                 MergedWithPrevious, MergedWithNext, Contiguous; invert),
 *                 ByteLevel (use_regex: GPT-2 pattern; add_prefix_space as
 *                 first step), Digits (Unicode numerics, as Rust's
 *                 char::is_numeric), Metaspace (first step), Sequence.
 *   decoder       ByteLevel, Replace (String), ByteFallback, Fuse, Strip,
 *                 Metaspace, Sequence; none: tokens joined by " " as HF does.
 *   post_processor not applied: encoding never adds BOS/EOS (templates do);
 *   the token its template starts with is kept for exports.
 *   added_tokens  special, lstrip, rstrip; normalized only where it changes
 *                 nothing (no normalizer); single_word rejected.
 *
 * Split patterns are compiled with PCRE2 in UTF + UCP mode (JIT when the
 * library has it).  PCRE2's \s is not the White_Space set that Oniguruma,
 * which HF tokenizers uses, matches: it adds U+180E.  So \s and \S in a
 * pattern are rewritten to the exact White_Space class before compiling
 * (\S inside a character class is left to PCRE2).
 *
 * The kind is byte-level BPE when a ByteLevel pre-tokenizer is present, else
 * SentencePiece-style BPE when the file uses byte fallback or the "▁"
 * convention (Metaspace, or a normalizer/decoder mentioning U+2581).
 */
#include "tokenizer_internal.h"
#include "unicode.h"

#include <json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char	sft_gpt2_pattern[] =
"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* White_Space as a class body (PCRE2 syntax, valid inside [...]). */
static const char ws_class_body[] =
"\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
"\\x{202F}\\x{205F}\\x{3000}";

#define META_REPLACEMENT "\xE2\x96\x81"	/* U+2581 */

/* ---------------------------------------------------------------------------
 * Hash maps
 * ------------------------------------------------------------------------- */

/* First min(len, 8) bytes of key, zero padded, without a variable memcpy. */
static inline uint64_t
key_head(const char *key, size_t len)
{
	const unsigned char *k = (const unsigned char *) key;
	uint64_t	head;

	if (len >= 8)
	{
		memcpy(&head, k, 8);
		return head;
	}
	if (len >= 4)
	{
		uint32_t	lo;
		uint32_t	hi;

		/* two overlapping 4-byte loads; the shared bytes are equal */
		memcpy(&lo, k, 4);
		memcpy(&hi, k + len - 4, 4);
		return (uint64_t) lo | ((uint64_t) hi << (8 * (len - 4)));
	}
	head = 0;
	for (size_t i = 0; i < len; i++)
		head |= (uint64_t) k[i] << (8 * i);
	return head;
}

static inline uint64_t
mix64(uint64_t h)
{
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	return h;
}

uint32_t
sft_hash_bytes(const char *s, size_t len)
{
	/* Words are short: one multiply-mix per 8 bytes, tail by overlapping load. */
	uint64_t	h = 0x9E3779B97F4A7C15ULL * (len + 1);
	size_t		i = 0;

	if (len <= 8)
		return (uint32_t) mix64(h ^ key_head(s, len));
	for (; i + 8 <= len; i += 8)
	{
		uint64_t	w;

		memcpy(&w, s + i, 8);
		h = mix64(h ^ w);
	}
	if (i < len)
	{
		uint64_t	w;

		memcpy(&w, s + len - 8, 8);
		h = mix64(h ^ w ^ 0x5bd1e995u);
	}
	return (uint32_t) h;
}

void
sft_strmap_init(SftStrMap *map)
{
	memset(map, 0, sizeof(*map));
	sft_buf_init(&map->keys);
}

void
sft_strmap_free(SftStrMap *map)
{
	sft_free(map->slots);
	sft_buf_free(&map->keys);
	sft_strmap_init(map);
}

static SftStatus
strmap_grow(SftStrMap *map)
{
	uint32_t	cap = map->slots ? (map->mask + 1) * 2 : 64;
	SftStrMapSlot *slots;

	if (cap > (1u << 28))
		return SFT_ERR_LIMIT;
	slots = sft_alloc((size_t) cap * sizeof(SftStrMapSlot));
	if (slots == NULL)
		return SFT_ERR_NOMEM;
	for (uint32_t i = 0; i < cap; i++)
		slots[i].len = SFT_STRMAP_EMPTY;
	for (uint32_t k = 0; map->slots && k <= map->mask; k++)
	{
		uint32_t	i;

		if (map->slots[k].len == SFT_STRMAP_EMPTY)
			continue;
		i = map->slots[k].hash & (cap - 1);
		while (slots[i].len != SFT_STRMAP_EMPTY)
			i = (i + 1) & (cap - 1);
		slots[i] = map->slots[k];
	}
	sft_free(map->slots);
	map->slots = slots;
	map->mask = cap - 1;
	return SFT_OK;
}

static inline SftStrMapSlot *
strmap_find_slot(const SftStrMap *map, const char *key, size_t len, uint32_t hash)
{
	uint64_t	head = key_head(key, len);
	uint32_t	i = hash & map->mask;

	for (;;)
	{
		SftStrMapSlot *s = &map->slots[i];

		if (s->len == SFT_STRMAP_EMPTY)
			return s;
		if (s->hash == hash && s->len == len && s->head == head &&
			(len <= 8 || memcmp(map->keys.data + s->off + 8, key + 8, len - 8) == 0))
			return s;
		i = (i + 1) & map->mask;
	}
}

SftStatus
sft_strmap_put(SftStrMap *map, const char *key, size_t len, int32_t value, int *existed)
{
	uint32_t	hash = sft_hash_bytes(key, len);
	SftStrMapSlot *slot;
	SftStatus	st;

	if (existed)
		*existed = 0;
	if (len >= UINT32_MAX / 2 || map->keys.len > UINT32_MAX / 2)
		return SFT_ERR_LIMIT;
	/* Keep the load factor at most 0.7. */
	if (map->slots == NULL || (uint64_t) (map->n + 1) * 10 > (uint64_t) (map->mask + 1) * 7)
	{
		if ((st = strmap_grow(map)) != SFT_OK)
			return st;
	}
	slot = strmap_find_slot(map, key, len, hash);
	if (slot->len != SFT_STRMAP_EMPTY)
	{
		slot->value = value;
		if (existed)
			*existed = 1;
		return SFT_OK;
	}
	slot->head = key_head(key, len);
	slot->hash = hash;
	slot->value = value;
	slot->off = (uint32_t) map->keys.len;
	if ((st = sft_buf_append(&map->keys, key, len)) != SFT_OK)
		return st;
	slot->len = (uint32_t) len;
	map->n++;
	return SFT_OK;
}

int32_t
sft_strmap_get(const SftStrMap *map, const char *key, size_t len)
{
	const SftStrMapSlot *slot;

	if (map->slots == NULL)
		return -1;
	slot = strmap_find_slot(map, key, len, sft_hash_bytes(key, len));
	return slot->len != SFT_STRMAP_EMPTY ? slot->value : -1;
}

static SftStatus
mergemap_init(SftMergeMap *map, size_t expected)
{
	uint32_t	bits = 4;

	while (((size_t) 1 << bits) < expected + expected / 2 + 16)
		bits++;
	if (bits > 28)
		return SFT_ERR_LIMIT;
	map->slots = sft_alloc(((size_t) 1 << bits) * sizeof(SftMergeSlot));
	if (map->slots == NULL)
		return SFT_ERR_NOMEM;
	for (size_t i = 0; i < ((size_t) 1 << bits); i++)
		map->slots[i].key = SFT_MERGE_EMPTY;
	map->bits = bits;
	map->mask = (1u << bits) - 1;
	map->n = 0;
	return SFT_OK;
}

/* Insert; a pair listed twice keeps its last rank, as HF's map does. */
static void
mergemap_put(SftMergeMap *map, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
	uint64_t	key = ((uint64_t) (uint32_t) left << 32) | (uint32_t) right;
	uint32_t	i = (uint32_t) ((key * 0x9E3779B97F4A7C15ULL) >> (64 - map->bits)) & map->mask;

	while (map->slots[i].key != SFT_MERGE_EMPTY && map->slots[i].key != key)
		i = (i + 1) & map->mask;
	if (map->slots[i].key == SFT_MERGE_EMPTY)
		map->n++;
	map->slots[i].key = key;
	map->slots[i].rank = rank;
	map->slots[i].merged = merged;
}

/* ---------------------------------------------------------------------------
 * PCRE2 with the core's allocator
 * ------------------------------------------------------------------------- */

static void *
pcre_alloc_cb(size_t size, void *data)
{
	(void) data;
	return sft_alloc(size);
}

static void
pcre_free_cb(void *ptr, void *data)
{
	(void) data;
	sft_free(ptr);
}

/*
 * Rewrite \s and \S (outside character classes) and \s (inside) to the exact
 * White_Space set; everything else is copied verbatim.
 */
static SftStatus
rewrite_pattern(const char *p, size_t len, SftBuf *out)
{
	int			in_class = 0;
	size_t		class_start = 0;
	SftStatus	st = SFT_OK;

	for (size_t i = 0; i < len && st == SFT_OK; i++)
	{
		char		c = p[i];

		if (c == '\\' && i + 1 < len)
		{
			char		e = p[i + 1];

			if (e == 'Q')
			{
				/* \Q...\E quotes literally: copy through \E untouched. */
				size_t		j = i + 2;

				while (j + 1 < len && !(p[j] == '\\' && p[j + 1] == 'E'))
					j++;
				j = j + 1 < len ? j + 2 : len;
				st = sft_buf_append(out, p + i, j - i);
				i = j - 1;
				continue;
			}
			if (e == 's')
			{
				if (!in_class)
					st = sft_buf_append_str(out, "[");
				if (st == SFT_OK)
					st = sft_buf_append_str(out, ws_class_body);
				if (st == SFT_OK && !in_class)
					st = sft_buf_append_str(out, "]");
			}
			else if (e == 'S' && !in_class)
			{
				st = sft_buf_append_str(out, "[^");
				if (st == SFT_OK)
					st = sft_buf_append_str(out, ws_class_body);
				if (st == SFT_OK)
					st = sft_buf_append_str(out, "]");
			}
			else
				st = sft_buf_append(out, p + i, 2);
			i++;
			continue;
		}
		if (!in_class && c == '[')
		{
			in_class = 1;
			class_start = i;
			/* A ']' right after '[' or '[^' is a literal member. */
			if (i + 1 < len && p[i + 1] == '^')
			{
				st = sft_buf_append(out, p + i, 2);
				i++;
				class_start = i;
			}
			else
				st = sft_buf_append(out, p + i, 1);
			if (st == SFT_OK && i + 1 < len && p[i + 1] == ']')
			{
				st = sft_buf_append(out, "]", 1);
				i++;
			}
			continue;
		}
		if (in_class && c == '[' && i + 1 < len && p[i + 1] == ':')
		{
			/* POSIX class [:name:] inside a class */
			size_t		j = i + 2;

			while (j + 1 < len && !(p[j] == ':' && p[j + 1] == ']'))
				j++;
			j = j + 1 < len ? j + 2 : len;
			st = sft_buf_append(out, p + i, j - i);
			i = j - 1;
			continue;
		}
		if (in_class && c == ']' && i > class_start)
			in_class = 0;
		st = sft_buf_append(out, p + i, 1);
	}
	if (st == SFT_OK && out->data == NULL)
		st = sft_buf_append(out, "", 0);
	return st;
}

SftStatus
sft_tokenizer_compile_regex(SftTokenizer *tok, const char *pattern, size_t len,
							pcre2_code **out, SftError *err)
{
	SftBuf		rewritten;
	int			errcode = 0;
	PCRE2_SIZE	erroffset = 0;
	pcre2_code *re;
	SftStatus	st;

	*out = NULL;
	if (sft_utf8_invalid_offset(pattern, len) != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT, "split pattern is not valid UTF-8");
	sft_buf_init(&rewritten);
	st = rewrite_pattern(pattern, len, &rewritten);
	if (st != SFT_OK)
	{
		sft_buf_free(&rewritten);
		return sft_error(err, st, "out of memory compiling a split pattern");
	}
	re = pcre2_compile((PCRE2_SPTR) rewritten.data, rewritten.len,
					   PCRE2_UTF | PCRE2_UCP, &errcode, &erroffset, tok->pcre_cctx);
	sft_buf_free(&rewritten);
	if (re == NULL)
	{
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(errcode, msg, sizeof(msg));
		return sft_error(err, SFT_ERR_FORMAT, "split pattern \"%.*s\" does not compile: %s",
						 (int) (len > 200 ? 200 : len), pattern, (const char *) msg);
	}
	/* JIT is an optimisation: the interpreter gives the same matches. */
	(void) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	*out = re;
	return SFT_OK;
}

SftStatus
sft_tokenizer_compile_step(SftTokenizer *tok, SftPreStep *step, const char *pattern,
						   size_t len, SftError *err)
{
	step->pattern = sft_strndup(pattern, len);
	if (step->pattern == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	return sft_tokenizer_compile_regex(tok, pattern, len, &step->re, err);
}

/* ---------------------------------------------------------------------------
 * Construction helpers
 * ------------------------------------------------------------------------- */

static SftTokenizer *
tokenizer_new(void)
{
	SftTokenizer *tok = sft_calloc(1, sizeof(SftTokenizer));

	if (tok == NULL)
		return NULL;
	sft_buf_init(&tok->tok_text);
	sft_strmap_init(&tok->vocab);
	sft_strmap_init(&tok->added_map);
	sft_strmap_init(&tok->raw_words);
	tok->unk_id = -1;
	tok->bos_id = -1;
	tok->eos_id = -1;
	tok->pad_id = -1;
	tok->post_first_id = -2;
	tok->add_bos_token = -1;
	tok->added_only_lead[0] = tok->added_only_lead[1] = -1;
	for (int i = 0; i < 256; i++)
	{
		tok->fallback_id[i] = -1;
		tok->byte_id[i] = -1;
	}
	tok->pcre_gctx = pcre2_general_context_create(pcre_alloc_cb, pcre_free_cb, NULL);
	tok->pcre_cctx = tok->pcre_gctx ? pcre2_compile_context_create(tok->pcre_gctx) : NULL;
	if (tok->pcre_cctx == NULL)
	{
		if (tok->pcre_gctx)
			pcre2_general_context_free(tok->pcre_gctx);
		sft_free(tok);
		return NULL;
	}
	return tok;
}

void
sft_tokenizer_free(SftTokenizer *tok)
{
	if (tok == NULL)
		return;
	sft_free(tok->tok_off);
	sft_free(tok->tok_len);
	sft_free(tok->tok_flags);
	sft_buf_free(&tok->tok_text);
	sft_strmap_free(&tok->vocab);
	sft_strmap_free(&tok->added_map);
	sft_strmap_free(&tok->raw_words);
	sft_free(tok->merges.slots);
	sft_free(tok->char_id);
	sft_free(tok->added);
	sft_free(tok->added_order);
	sft_free(tok->special_ids);
	for (int i = 0; i < tok->n_norm; i++)
	{
		sft_free(tok->norm[i].a);
		sft_free(tok->norm[i].b);
	}
	for (int i = 0; i < tok->n_pre; i++)
	{
		if (tok->pre[i].re)
			pcre2_code_free(tok->pre[i].re);
		sft_free(tok->pre[i].literal);
		sft_free(tok->pre[i].pattern);
	}
	for (int i = 0; i < tok->n_dec; i++)
	{
		sft_free(tok->dec[i].a);
		sft_free(tok->dec[i].b);
	}
	sft_free(tok->meta_repl);
	sft_free(tok->bos_token);
	sft_free(tok->eos_token);
	sft_free(tok->pad_token);
	sft_free(tok->chat_template);
	pcre2_compile_context_free(tok->pcre_cctx);
	pcre2_general_context_free(tok->pcre_gctx);
	sft_free(tok);
}

/* GPT-2's reversible byte -> printable character map. */
static void
init_byte_map(SftTokenizer *tok)
{
	int			n = 0;

	for (int i = 0; i < 324; i++)
		tok->char_byte[i] = -1;
	for (int b = 0; b < 256; b++)
	{
		int			printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
		uint32_t	cp = printable ? (uint32_t) b : (uint32_t) (256 + n++);
		char		enc[4];
		size_t		elen = sft_utf8_encode(cp, enc);

		memcpy(tok->byte_char[b], enc, elen);
		tok->byte_char_len[b] = (uint8_t) elen;
		tok->char_byte[cp] = (int16_t) b;
	}
}

/* Make room for ids up to max_id in the id-indexed arrays. */
static SftStatus
ensure_ids(SftTokenizer *tok, int32_t max_id)
{
	int32_t		old = tok->vocab_size;
	int32_t		size = max_id + 1;
	uint32_t   *off;
	uint32_t   *len;
	uint8_t    *flags;

	if (size <= old)
		return SFT_OK;
	off = sft_realloc(tok->tok_off, (size_t) size * sizeof(uint32_t));
	if (off == NULL)
		return SFT_ERR_NOMEM;
	tok->tok_off = off;
	len = sft_realloc(tok->tok_len, (size_t) size * sizeof(uint32_t));
	if (len == NULL)
		return SFT_ERR_NOMEM;
	tok->tok_len = len;
	flags = sft_realloc(tok->tok_flags, (size_t) size);
	if (flags == NULL)
		return SFT_ERR_NOMEM;
	tok->tok_flags = flags;
	memset(off + old, 0, (size_t) (size - old) * sizeof(uint32_t));
	memset(len + old, 0, (size_t) (size - old) * sizeof(uint32_t));
	memset(flags + old, 0, (size_t) (size - old));
	tok->vocab_size = size;
	return SFT_OK;
}

static SftStatus
set_token_text(SftTokenizer *tok, int32_t id, const char *s, size_t len)
{
	SftStatus	st;

	if (tok->tok_text.len + len > UINT32_MAX / 2)
		return SFT_ERR_LIMIT;
	tok->tok_off[id] = (uint32_t) tok->tok_text.len;
	tok->tok_len[id] = (uint32_t) len;
	st = sft_buf_append(&tok->tok_text, s, len);
	return st;
}

/* Add a model vocabulary entry. */
static SftStatus
add_vocab(SftTokenizer *tok, const char *s, size_t len, int64_t id, SftError *err)
{
	SftStatus	st;
	int			existed;

	if (id < 0 || id > SFT_TOKENIZER_MAX_ID)
		return sft_error(err, SFT_ERR_LIMIT, "token \"%.*s\" has id %lld (must be 0..%d)",
						 (int) (len > 64 ? 64 : len), s, (long long) id, SFT_TOKENIZER_MAX_ID);
	if ((st = ensure_ids(tok, (int32_t) id)) != SFT_OK)
		return sft_error(err, st, "out of memory for the vocabulary");
	if (tok->tok_flags[id] & SFT_TOK_PRESENT)
		return sft_error(err, SFT_ERR_FORMAT, "tokens \"%.*s\" and \"%.*s\" share id %lld",
						 (int) (tok->tok_len[id] > 64 ? 64 : tok->tok_len[id]),
						 tok->tok_text.data + tok->tok_off[id],
						 (int) (len > 64 ? 64 : len), s, (long long) id);
	if ((st = sft_strmap_put(&tok->vocab, s, len, (int32_t) id, &existed)) != SFT_OK)
		return sft_error(err, st, "out of memory for the vocabulary");
	if (existed)
		return sft_error(err, SFT_ERR_FORMAT, "token \"%.*s\" appears twice",
						 (int) (len > 64 ? 64 : len), s);
	if ((st = set_token_text(tok, (int32_t) id, s, len)) != SFT_OK)
		return sft_error(err, st, "out of memory for the vocabulary");
	tok->tok_flags[id] |= SFT_TOK_PRESENT;
	return SFT_OK;
}

static SftStatus
add_merge(SftTokenizer *tok, const char *a, size_t alen, const char *b, size_t blen,
		  int32_t rank, SftBuf *scratch, SftError *err)
{
	int32_t		ida = sft_strmap_get(&tok->vocab, a, alen);
	int32_t		idb = sft_strmap_get(&tok->vocab, b, blen);
	int32_t		idm;

	if (ida < 0 || idb < 0)
		return sft_error(err, SFT_ERR_FORMAT, "merge %d (\"%.*s\" \"%.*s\") refers to a token missing from the vocabulary",
						 rank, (int) (alen > 64 ? 64 : alen), a, (int) (blen > 64 ? 64 : blen), b);
	scratch->len = 0;
	if (sft_buf_append(scratch, a, alen) != SFT_OK || sft_buf_append(scratch, b, blen) != SFT_OK)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory reading merges");
	idm = sft_strmap_get(&tok->vocab, scratch->data, scratch->len);
	if (idm < 0)
		return sft_error(err, SFT_ERR_FORMAT, "merge %d produces \"%.*s\", which is missing from the vocabulary",
						 rank, (int) (scratch->len > 64 ? 64 : scratch->len), scratch->data);
	mergemap_put(&tok->merges, ida, idb, rank, idm);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * JSON helpers (json-c)
 * ------------------------------------------------------------------------- */

/* Member of an object, NULL when absent or JSON null. */
static json_object *
jget(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (obj == NULL || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

static int
jis(json_object *v, json_type type)
{
	return v != NULL && json_object_is_type(v, type);
}

/* Optional boolean member; absent/null gives dflt; other types are errors. */
static SftStatus
jbool(json_object *obj, const char *key, int dflt, int *out, const char *where, SftError *err)
{
	json_object *v = jget(obj, key);

	*out = dflt;
	if (v == NULL)
		return SFT_OK;
	if (!jis(v, json_type_boolean))
		return sft_error(err, SFT_ERR_FORMAT, "%s.%s must be a boolean", where, key);
	*out = json_object_get_boolean(v);
	return SFT_OK;
}

/* Optional string member (NULL when absent/null). */
static SftStatus
jstr(json_object *obj, const char *key, const char **out, size_t *len, const char *where, SftError *err)
{
	json_object *v = jget(obj, key);

	*out = NULL;
	if (len)
		*len = 0;
	if (v == NULL)
		return SFT_OK;
	if (!jis(v, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT, "%s.%s must be a string", where, key);
	*out = json_object_get_string(v);
	if (len)
		*len = (size_t) json_object_get_string_len(v);
	return SFT_OK;
}

static SftStatus
parse_json(const char *text, size_t len, const char *what, json_object **out, SftError *err)
{
	struct json_tokener *jt;
	json_object *obj;
	enum json_tokener_error jerr;
	size_t		bad;

	*out = NULL;
	if (len > INT_MAX)
		return sft_error(err, SFT_ERR_LIMIT, "%s is larger than %d bytes", what, INT_MAX);
	bad = sft_utf8_invalid_offset(text, len);
	if (bad != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT, "%s is not valid UTF-8 (byte offset %zu)", what, bad);
	jt = json_tokener_new_ex(64);
	if (jt == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory parsing %s", what);
	obj = json_tokener_parse_ex(jt, text, (int) len);
	jerr = json_tokener_get_error(jt);
	if (obj == NULL || jerr != json_tokener_success)
	{
		SftStatus	st;

		if (jerr == json_tokener_success)	/* the text was "null" */
			st = sft_error(err, SFT_ERR_FORMAT, "%s is JSON null, not an object", what);
		else
			st = sft_error(err, SFT_ERR_FORMAT, "%s is not valid JSON (byte %zu): %s", what,
						   (size_t) json_tokener_get_parse_end(jt),
						   jerr == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(jerr));

		if (obj)
			json_object_put(obj);
		json_tokener_free(jt);
		return st;
	}
	/* Trailing non-space text after the value is an error too. */
	{
		size_t		used = (size_t) json_tokener_get_parse_end(jt);

		while (used < len && (text[used] == ' ' || text[used] == '\n' ||
							  text[used] == '\r' || text[used] == '\t'))
			used++;
		json_tokener_free(jt);
		if (used < len)
		{
			json_object_put(obj);
			return sft_error(err, SFT_ERR_FORMAT, "%s: unexpected text after the JSON value at byte %zu", what, used);
		}
	}
	*out = obj;
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * tokenizer.json sections
 * ------------------------------------------------------------------------- */

static SftStatus
parse_model(SftTokenizer *tok, json_object *model, SftError *err)
{
	json_object *vocab;
	json_object *merges;
	json_object *v;
	const char *type;
	const char *s;
	size_t		slen;
	SftBuf		scratch;
	size_t		nmerges;
	SftStatus	st;

	if (!jis(model, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT, "model must be an object");
	if ((st = jstr(model, "type", &type, NULL, "model", err)) != SFT_OK)
		return st;
	if (type != NULL && strcmp(type, "BPE") != 0)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "model type \"%s\" is not supported (only BPE)", type);
	vocab = jget(model, "vocab");
	merges = jget(model, "merges");
	if (!jis(vocab, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT, "model.vocab must be an object of token -> id");
	if (!jis(merges, json_type_array))
		return sft_error(err, SFT_ERR_FORMAT, "model.merges must be an array");

	v = jget(model, "dropout");
	if (v != NULL && !((jis(v, json_type_double) || jis(v, json_type_int)) && json_object_get_double(v) == 0.0))
		return sft_error(err, SFT_ERR_UNSUPPORTED, "model.dropout is not supported (must be null)");
	if ((st = jstr(model, "continuing_subword_prefix", &s, &slen, "model", err)) != SFT_OK)
		return st;
	if (s && slen)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "model.continuing_subword_prefix is not supported");
	if ((st = jstr(model, "end_of_word_suffix", &s, &slen, "model", err)) != SFT_OK)
		return st;
	if (s && slen)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "model.end_of_word_suffix is not supported");
	if ((st = jbool(model, "fuse_unk", 0, &tok->fuse_unk, "model", err)) != SFT_OK ||
		(st = jbool(model, "byte_fallback", 0, &tok->byte_fallback, "model", err)) != SFT_OK ||
		(st = jbool(model, "ignore_merges", 0, &tok->ignore_merges, "model", err)) != SFT_OK)
		return st;

	json_object_object_foreach(vocab, key, val)
	{
		if (!jis(val, json_type_int))
			return sft_error(err, SFT_ERR_FORMAT, "model.vocab: id of \"%.64s\" must be an integer", key);
		if ((st = add_vocab(tok, key, strlen(key), json_object_get_int64(val), err)) != SFT_OK)
		{
			sft_error_prefix(err, "model.vocab: ");
			return st;
		}
	}

	if ((st = jstr(model, "unk_token", &s, &slen, "model", err)) != SFT_OK)
		return st;
	if (s)
	{
		tok->unk_id = sft_strmap_get(&tok->vocab, s, slen);
		if (tok->unk_id < 0)
			return sft_error(err, SFT_ERR_FORMAT, "model.unk_token \"%.64s\" is not in the vocabulary", s);
	}

	nmerges = json_object_array_length(merges);
	if (nmerges > (size_t) INT32_MAX / 2)
		return sft_error(err, SFT_ERR_LIMIT, "too many merges");
	if ((st = mergemap_init(&tok->merges, nmerges)) != SFT_OK)
		return sft_error(err, st, "cannot allocate %zu merges", nmerges);
	sft_buf_init(&scratch);
	for (size_t i = 0; i < nmerges; i++)
	{
		json_object *m = json_object_array_get_idx(merges, i);
		const char *a;
		const char *b;
		size_t		alen;
		size_t		blen;

		if (jis(m, json_type_string))
		{
			const char *text = json_object_get_string(m);
			size_t		tlen = (size_t) json_object_get_string_len(m);
			const char *space = memchr(text, ' ', tlen);

			if (space == NULL || space == text || space + 1 == text + tlen ||
				memchr(space + 1, ' ', tlen - (size_t) (space + 1 - text)) != NULL)
			{
				sft_buf_free(&scratch);
				return sft_error(err, SFT_ERR_FORMAT, "model.merges[%zu] must be two tokens separated by one space", i);
			}
			a = text;
			alen = (size_t) (space - text);
			b = space + 1;
			blen = tlen - alen - 1;
		}
		else if (jis(m, json_type_array) && json_object_array_length(m) == 2 &&
				 jis(json_object_array_get_idx(m, 0), json_type_string) &&
				 jis(json_object_array_get_idx(m, 1), json_type_string))
		{
			json_object *ja = json_object_array_get_idx(m, 0);
			json_object *jb = json_object_array_get_idx(m, 1);

			a = json_object_get_string(ja);
			alen = (size_t) json_object_get_string_len(ja);
			b = json_object_get_string(jb);
			blen = (size_t) json_object_get_string_len(jb);
		}
		else
		{
			sft_buf_free(&scratch);
			return sft_error(err, SFT_ERR_FORMAT, "model.merges[%zu] must be a string \"a b\" or a pair [\"a\", \"b\"]", i);
		}
		if ((st = add_merge(tok, a, alen, b, blen, (int32_t) i, &scratch, err)) != SFT_OK)
		{
			sft_buf_free(&scratch);
			sft_error_prefix(err, "model.merges: ");
			return st;
		}
	}
	sft_buf_free(&scratch);
	return SFT_OK;
}

static int
cmp_added_id(const void *a, const void *b)
{
	const SftAddedToken *x = a;
	const SftAddedToken *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

/* Sort key of an added token for the matcher: first byte, then longest first. */
typedef struct AddedOrder
{
	int			first;			/* first byte; -1 for empty content */
	uint32_t	len;
	int32_t		id;
	int			index;			/* into SftTokenizer.added */
} AddedOrder;

static int
cmp_added_order(const void *a, const void *b)
{
	const AddedOrder *x = a;
	const AddedOrder *y = b;

	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Register one added token (from tokenizer.json or implied by vocab.json). */
static SftStatus
add_added_token(SftTokenizer *tok, int64_t id, const char *content, size_t len,
				int special, int lstrip, int rstrip, int normalized, SftError *err)
{
	SftAddedToken *t;
	SftStatus	st;
	int			existed;

	if (id < 0 || id > SFT_TOKENIZER_MAX_ID)
		return sft_error(err, SFT_ERR_LIMIT, "added token \"%.*s\" has id %lld (must be 0..%d)",
						 (int) (len > 64 ? 64 : len), content, (long long) id, SFT_TOKENIZER_MAX_ID);
	if ((st = ensure_ids(tok, (int32_t) id)) != SFT_OK)
		return sft_error(err, st, "out of memory for added tokens");
	if (tok->tok_flags[id] & SFT_TOK_ADDED)
		return sft_error(err, SFT_ERR_FORMAT, "two added tokens share id %lld", (long long) id);
	if ((st = sft_strmap_put(&tok->added_map, content, len, (int32_t) id, &existed)) != SFT_OK)
		return sft_error(err, st, "out of memory for added tokens");
	if (existed)
		return sft_error(err, SFT_ERR_FORMAT, "added token \"%.*s\" appears twice",
						 (int) (len > 64 ? 64 : len), content);
	t = sft_realloc(tok->added, (size_t) (tok->n_added + 1) * sizeof(SftAddedToken));
	if (t == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for added tokens");
	tok->added = t;
	/* An added token's own text wins over the model's for that id (HF order). */
	if ((st = set_token_text(tok, (int32_t) id, content, len)) != SFT_OK)
		return sft_error(err, st, "out of memory for added tokens");
	t = &tok->added[tok->n_added++];
	t->id = (int32_t) id;
	t->off = tok->tok_off[id];
	t->len = (uint32_t) len;
	t->special = (uint8_t) special;
	t->lstrip = (uint8_t) lstrip;
	t->rstrip = (uint8_t) rstrip;
	t->normalized = (uint8_t) normalized;
	tok->tok_flags[id] |= SFT_TOK_PRESENT | SFT_TOK_ADDED | (special ? SFT_TOK_SPECIAL : 0);
	return SFT_OK;
}

static SftStatus
parse_added_tokens(SftTokenizer *tok, json_object *arr, SftError *err)
{
	size_t		n;
	SftStatus	st;

	if (arr == NULL)
		return SFT_OK;
	if (!jis(arr, json_type_array))
		return sft_error(err, SFT_ERR_FORMAT, "added_tokens must be an array");
	n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++)
	{
		json_object *t = json_object_array_get_idx(arr, i);
		json_object *jid = jget(t, "id");
		const char *content;
		size_t		clen;
		int			special,
					lstrip,
					rstrip,
					normalized,
					single_word;
		char		where[48];

		snprintf(where, sizeof(where), "added_tokens[%zu]", i);
		if (!jis(t, json_type_object))
			return sft_error(err, SFT_ERR_FORMAT, "%s must be an object", where);
		if (!jis(jid, json_type_int))
			return sft_error(err, SFT_ERR_FORMAT, "%s.id must be an integer", where);
		if ((st = jstr(t, "content", &content, &clen, where, err)) != SFT_OK)
			return st;
		if (content == NULL)
			return sft_error(err, SFT_ERR_FORMAT, "%s.content must be a string", where);
		if ((st = jbool(t, "special", 0, &special, where, err)) != SFT_OK ||
			(st = jbool(t, "lstrip", 0, &lstrip, where, err)) != SFT_OK ||
			(st = jbool(t, "rstrip", 0, &rstrip, where, err)) != SFT_OK ||
			(st = jbool(t, "normalized", !special, &normalized, where, err)) != SFT_OK ||
			(st = jbool(t, "single_word", 0, &single_word, where, err)) != SFT_OK)
			return st;
		if (single_word)
			return sft_error(err, SFT_ERR_UNSUPPORTED, "%s (\"%.64s\"): single_word is not supported", where, content);
		if ((st = add_added_token(tok, json_object_get_int64(jid), content, clen,
								  special, lstrip, rstrip, normalized, err)) != SFT_OK)
			return st;
	}
	return SFT_OK;
}

/* Sort added tokens by id, build the matcher index and the special list. */
static SftStatus
finish_added_tokens(SftTokenizer *tok, SftError *err)
{
	int			nspecial = 0;

	if (tok->n_added == 0)
		return SFT_OK;
	qsort(tok->added, (size_t) tok->n_added, sizeof(SftAddedToken), cmp_added_id);
	tok->added_order = sft_alloc((size_t) tok->n_added * sizeof(int));
	tok->special_ids = sft_alloc((size_t) tok->n_added * sizeof(int32_t));
	if (tok->added_order == NULL || tok->special_ids == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for added tokens");
	for (int i = 0; i < tok->n_added; i++)
	{
		const SftAddedToken *t = &tok->added[i];

		tok->added_order[i] = i;
		if (t->special)
			tok->special_ids[nspecial++] = t->id;
		if (t->len == 0)
			continue;
		if (t->normalized && tok->n_norm > 0)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "added token \"%.*s\" has normalized=true and the tokenizer has a normalizer; "
							 "matching added tokens on normalized text is not supported",
							 (int) (t->len > 64 ? 64 : t->len), tok->tok_text.data + t->off);
		tok->added_lead[(unsigned char) tok->tok_text.data[t->off]] |= t->special ? 1 : 3;
	}
	for (int cls = 0; cls < 2; cls++)
	{
		int			only = -1;

		for (int b = 0; b < 256; b++)
			if (tok->added_lead[b] & (cls ? 2 : 1))
				only = only == -1 ? b : -2;
		tok->added_only_lead[cls] = only;
	}
	tok->n_special = nspecial;
	/* added_first[b] .. added_first[b + 1]: tokens whose first byte is b */
	{
		AddedOrder *order = sft_alloc((size_t) tok->n_added * sizeof(AddedOrder));
		int			k = 0;

		if (order == NULL)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory for added tokens");
		for (int i = 0; i < tok->n_added; i++)
		{
			const SftAddedToken *t = &tok->added[i];

			order[i].first = t->len ? (unsigned char) tok->tok_text.data[t->off] : -1;
			order[i].len = t->len;
			order[i].id = t->id;
			order[i].index = i;
		}
		qsort(order, (size_t) tok->n_added, sizeof(AddedOrder), cmp_added_order);
		for (int i = 0; i < tok->n_added; i++)
			tok->added_order[i] = order[i].index;
		for (int b = 0; b < 256; b++)
		{
			while (k < tok->n_added && order[k].first < b)
				k++;
			tok->added_first[b] = k;
		}
		tok->added_first[256] = tok->n_added;
		sft_free(order);
	}
	return SFT_OK;
}

static SftStatus parse_normalizer(SftTokenizer *tok, json_object *n, SftError *err);

static SftStatus
add_norm(SftTokenizer *tok, SftNormKind kind, const char *a, size_t alen,
		 const char *b, size_t blen, SftError *err)
{
	SftNormStep *s;

	if (tok->n_norm >= SFT_TOKENIZER_MAX_STEPS)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "normalizer has more than %d steps", SFT_TOKENIZER_MAX_STEPS);
	s = &tok->norm[tok->n_norm++];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	if (a)
	{
		s->a = sft_strndup(a, alen);
		s->alen = alen;
	}
	if (b)
	{
		s->b = sft_strndup(b, blen);
		s->blen = blen;
	}
	if ((a && s->a == NULL) || (b && s->b == NULL))
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	return SFT_OK;
}

/* A {"String": "..."} pattern; Regex patterns are rejected by the caller. */
static SftStatus
string_pattern(json_object *pattern, const char *where, const char **out, size_t *len, SftError *err)
{
	json_object *s = jget(pattern, "String");

	if (jis(s, json_type_string))
	{
		*out = json_object_get_string(s);
		*len = (size_t) json_object_get_string_len(s);
		if (*len == 0)
			return sft_error(err, SFT_ERR_FORMAT, "%s: empty String pattern", where);
		return SFT_OK;
	}
	if (jget(pattern, "Regex") != NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "%s: Regex patterns are not supported here (only String)", where);
	return sft_error(err, SFT_ERR_FORMAT, "%s: pattern must be {\"String\": ...}", where);
}

static SftStatus
parse_normalizer(SftTokenizer *tok, json_object *n, SftError *err)
{
	const char *type;
	SftStatus	st;

	if (n == NULL)
		return SFT_OK;
	if (!jis(n, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT, "normalizer must be an object");
	if ((st = jstr(n, "type", &type, NULL, "normalizer", err)) != SFT_OK)
		return st;
	if (type == NULL)
		return sft_error(err, SFT_ERR_FORMAT, "normalizer.type is missing");
	if (strcmp(type, "Sequence") == 0)
	{
		json_object *list = jget(n, "normalizers");

		if (!jis(list, json_type_array))
			return sft_error(err, SFT_ERR_FORMAT, "normalizer Sequence needs a normalizers array");
		for (size_t i = 0; i < json_object_array_length(list); i++)
			if ((st = parse_normalizer(tok, json_object_array_get_idx(list, i), err)) != SFT_OK)
				return st;
		return SFT_OK;
	}
	if (strcmp(type, "NFC") == 0)
		return add_norm(tok, SFT_NORM_NFC, NULL, 0, NULL, 0, err);
	if (strcmp(type, "Prepend") == 0)
	{
		const char *p;
		size_t		plen;

		if ((st = jstr(n, "prepend", &p, &plen, "normalizer Prepend", err)) != SFT_OK)
			return st;
		if (p == NULL)
			return sft_error(err, SFT_ERR_FORMAT, "normalizer Prepend needs a prepend string");
		return add_norm(tok, SFT_NORM_PREPEND, p, plen, NULL, 0, err);
	}
	if (strcmp(type, "Replace") == 0)
	{
		const char *pat;
		const char *content;
		size_t		patlen;
		size_t		clen;

		if ((st = string_pattern(jget(n, "pattern"), "normalizer Replace", &pat, &patlen, err)) != SFT_OK)
			return st;
		if ((st = jstr(n, "content", &content, &clen, "normalizer Replace", err)) != SFT_OK)
			return st;
		if (content == NULL)
			return sft_error(err, SFT_ERR_FORMAT, "normalizer Replace needs a content string");
		return add_norm(tok, SFT_NORM_REPLACE, pat, patlen, content, clen, err);
	}
	return sft_error(err, SFT_ERR_UNSUPPORTED, "normalizer type \"%s\" is not supported (NFC, Prepend, Replace, Sequence are)", type);
}

static SftStatus
split_behavior(const char *s, SftSplitBehavior *out, SftError *err)
{
	static const struct
	{
		const char *name;
		SftSplitBehavior b;
	}			names[] = {
		{"Removed", SFT_SPLIT_REMOVED},
		{"Isolated", SFT_SPLIT_ISOLATED},
		{"MergedWithPrevious", SFT_SPLIT_MERGED_WITH_PREVIOUS},
		{"MergedWithNext", SFT_SPLIT_MERGED_WITH_NEXT},
		{"Contiguous", SFT_SPLIT_CONTIGUOUS},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (s && strcmp(s, names[i].name) == 0)
		{
			*out = names[i].b;
			return SFT_OK;
		}
	return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer Split: unknown behavior \"%s\"", s ? s : "(missing)");
}

static SftStatus
new_pre(SftTokenizer *tok, SftPreKind kind, SftSplitBehavior behavior, SftPreStep **out, SftError *err)
{
	if (tok->n_pre >= SFT_TOKENIZER_MAX_STEPS)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "pre_tokenizer has more than %d steps", SFT_TOKENIZER_MAX_STEPS);
	*out = &tok->pre[tok->n_pre++];
	memset(*out, 0, sizeof(**out));
	(*out)->kind = kind;
	(*out)->behavior = behavior;
	return SFT_OK;
}

static SftStatus parse_pre(SftTokenizer *tok, json_object *p, int *seen_byte_level, SftError *err);

static SftStatus
parse_pre(SftTokenizer *tok, json_object *p, int *seen_byte_level, SftError *err)
{
	const char *type;
	SftPreStep *step = NULL;
	SftStatus	st;
	int			first = tok->n_pre == 0 && tok->prefix == SFT_PREFIX_NONE;

	if (p == NULL)
		return SFT_OK;
	if (!jis(p, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer must be an object");
	if ((st = jstr(p, "type", &type, NULL, "pre_tokenizer", err)) != SFT_OK)
		return st;
	if (type == NULL)
		return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer.type is missing");
	if (strcmp(type, "Sequence") == 0)
	{
		json_object *list = jget(p, "pretokenizers");

		if (!jis(list, json_type_array))
			return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer Sequence needs a pretokenizers array");
		for (size_t i = 0; i < json_object_array_length(list); i++)
			if ((st = parse_pre(tok, json_object_array_get_idx(list, i), seen_byte_level, err)) != SFT_OK)
				return st;
		return SFT_OK;
	}
	if (strcmp(type, "Split") == 0)
	{
		json_object *pattern = jget(p, "pattern");
		json_object *re = jget(pattern, "Regex");
		json_object *lit = jget(pattern, "String");
		const char *behavior;
		SftSplitBehavior b = SFT_SPLIT_ISOLATED;
		int			invert;

		if ((st = jstr(p, "behavior", &behavior, NULL, "pre_tokenizer Split", err)) != SFT_OK ||
			(st = split_behavior(behavior, &b, err)) != SFT_OK ||
			(st = jbool(p, "invert", 0, &invert, "pre_tokenizer Split", err)) != SFT_OK)
			return st;
		if (jis(re, json_type_string))
		{
			if ((st = new_pre(tok, SFT_PRE_REGEX, b, &step, err)) != SFT_OK)
				return st;
			step->invert = invert;
			return sft_tokenizer_compile_step(tok, step, json_object_get_string(re),
											  (size_t) json_object_get_string_len(re), err);
		}
		if (jis(lit, json_type_string) && json_object_get_string_len(lit) > 0)
		{
			if ((st = new_pre(tok, SFT_PRE_LITERAL, b, &step, err)) != SFT_OK)
				return st;
			step->invert = invert;
			step->literal_len = (size_t) json_object_get_string_len(lit);
			step->literal = sft_strndup(json_object_get_string(lit), step->literal_len);
			return step->literal ? SFT_OK : sft_error(err, SFT_ERR_NOMEM, "out of memory");
		}
		return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer Split needs a pattern {\"Regex\": ...} or a non-empty {\"String\": ...}");
	}
	if (strcmp(type, "ByteLevel") == 0)
	{
		int			add_prefix_space;
		int			use_regex;

		if ((st = jbool(p, "add_prefix_space", 1, &add_prefix_space, "pre_tokenizer ByteLevel", err)) != SFT_OK ||
			(st = jbool(p, "use_regex", 1, &use_regex, "pre_tokenizer ByteLevel", err)) != SFT_OK)
			return st;
		*seen_byte_level = 1;
		if (add_prefix_space)
		{
			if (!first)
				return sft_error(err, SFT_ERR_UNSUPPORTED, "pre_tokenizer ByteLevel with add_prefix_space is only supported as the first step");
			tok->prefix = SFT_PREFIX_SPACE;
		}
		if (!use_regex)
			return SFT_OK;
		if ((st = new_pre(tok, SFT_PRE_REGEX, SFT_SPLIT_ISOLATED, &step, err)) != SFT_OK)
			return st;
		return sft_tokenizer_compile_step(tok, step, sft_gpt2_pattern, strlen(sft_gpt2_pattern), err);
	}
	if (strcmp(type, "Digits") == 0)
	{
		int			individual;

		if ((st = jbool(p, "individual_digits", 0, &individual, "pre_tokenizer Digits", err)) != SFT_OK)
			return st;
		/* HF splits on char::is_numeric (Nd, Nl, No): one match per character */
		if ((st = new_pre(tok, SFT_PRE_REGEX, individual ? SFT_SPLIT_ISOLATED : SFT_SPLIT_CONTIGUOUS, &step, err)) != SFT_OK)
			return st;
		return sft_tokenizer_compile_step(tok, step, "\\p{N}", 5, err);
	}
	if (strcmp(type, "Metaspace") == 0)
	{
		const char *repl;
		size_t		rlen;
		const char *scheme;
		int			add_prefix_space;
		int			split;

		if ((st = jstr(p, "replacement", &repl, &rlen, "pre_tokenizer Metaspace", err)) != SFT_OK ||
			(st = jstr(p, "prepend_scheme", &scheme, NULL, "pre_tokenizer Metaspace", err)) != SFT_OK ||
			(st = jbool(p, "add_prefix_space", 1, &add_prefix_space, "pre_tokenizer Metaspace", err)) != SFT_OK ||
			(st = jbool(p, "split", 1, &split, "pre_tokenizer Metaspace", err)) != SFT_OK)
			return st;
		if (!first)
			return sft_error(err, SFT_ERR_UNSUPPORTED, "pre_tokenizer Metaspace is only supported as the first step");
		if (repl == NULL)
		{
			repl = META_REPLACEMENT;
			rlen = 3;
		}
		if (rlen == 0 || sft_utf8_len((unsigned char) repl[0]) != rlen)
			return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer Metaspace: replacement must be one character");
		tok->meta_repl = sft_strndup(repl, rlen);
		if (tok->meta_repl == NULL)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory");
		tok->meta_repl_len = rlen;
		tok->prefix = SFT_PREFIX_METASPACE;
		if (scheme == NULL)
			tok->meta_prepend = add_prefix_space ? 1 : 0;
		else if (strcmp(scheme, "always") == 0)
			tok->meta_prepend = 1;
		else if (strcmp(scheme, "first") == 0)
			tok->meta_prepend = 2;
		else if (strcmp(scheme, "never") == 0)
			tok->meta_prepend = 0;
		else
			return sft_error(err, SFT_ERR_FORMAT, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"", scheme);
		if (!split)
			return SFT_OK;
		if ((st = new_pre(tok, SFT_PRE_LITERAL, SFT_SPLIT_MERGED_WITH_NEXT, &step, err)) != SFT_OK)
			return st;
		step->literal = sft_strndup(repl, rlen);
		step->literal_len = rlen;
		return step->literal ? SFT_OK : sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	return sft_error(err, SFT_ERR_UNSUPPORTED,
					 "pre_tokenizer type \"%s\" is not supported (Split, ByteLevel, Digits, Metaspace, Sequence are)", type);
}

static SftStatus
add_dec(SftTokenizer *tok, SftDecKind kind, const char *a, size_t alen, const char *b, size_t blen,
		SftDecStep **out, SftError *err)
{
	SftDecStep *s;

	if (tok->n_dec >= SFT_TOKENIZER_MAX_STEPS)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "decoder has more than %d steps", SFT_TOKENIZER_MAX_STEPS);
	s = &tok->dec[tok->n_dec++];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	if (a)
	{
		s->a = sft_strndup(a, alen);
		s->alen = alen;
	}
	if (b)
	{
		s->b = sft_strndup(b, blen);
		s->blen = blen;
	}
	if ((a && s->a == NULL) || (b && s->b == NULL))
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	if (out)
		*out = s;
	return SFT_OK;
}

static SftStatus
jint_opt(json_object *obj, const char *key, int dflt, int *out, const char *where, SftError *err)
{
	json_object *v = jget(obj, key);
	int64_t		x;

	if (v == NULL)
	{
		*out = dflt;
		return SFT_OK;
	}
	if (!jis(v, json_type_int))
		return sft_error(err, SFT_ERR_FORMAT, "%s.%s must be an integer", where, key);
	x = json_object_get_int64(v);
	if (x < 0 || x > 1024)
		return sft_error(err, SFT_ERR_FORMAT, "%s.%s is out of range", where, key);
	*out = (int) x;
	return SFT_OK;
}

static SftStatus
parse_decoder(SftTokenizer *tok, json_object *d, SftError *err)
{
	const char *type;
	SftDecStep *step;
	SftStatus	st;

	if (d == NULL)
		return SFT_OK;
	tok->has_decoder = 1;
	if (!jis(d, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT, "decoder must be an object");
	if ((st = jstr(d, "type", &type, NULL, "decoder", err)) != SFT_OK)
		return st;
	if (type == NULL)
		return sft_error(err, SFT_ERR_FORMAT, "decoder.type is missing");
	if (strcmp(type, "Sequence") == 0)
	{
		json_object *list = jget(d, "decoders");

		if (!jis(list, json_type_array))
			return sft_error(err, SFT_ERR_FORMAT, "decoder Sequence needs a decoders array");
		for (size_t i = 0; i < json_object_array_length(list); i++)
			if ((st = parse_decoder(tok, json_object_array_get_idx(list, i), err)) != SFT_OK)
				return st;
		return SFT_OK;
	}
	if (strcmp(type, "ByteLevel") == 0)
		return add_dec(tok, SFT_DEC_BYTE_LEVEL, NULL, 0, NULL, 0, NULL, err);
	if (strcmp(type, "ByteFallback") == 0)
		return add_dec(tok, SFT_DEC_BYTE_FALLBACK, NULL, 0, NULL, 0, NULL, err);
	if (strcmp(type, "Fuse") == 0)
		return add_dec(tok, SFT_DEC_FUSE, NULL, 0, NULL, 0, NULL, err);
	if (strcmp(type, "Replace") == 0)
	{
		const char *pat;
		const char *content;
		size_t		patlen;
		size_t		clen;

		if ((st = string_pattern(jget(d, "pattern"), "decoder Replace", &pat, &patlen, err)) != SFT_OK)
			return st;
		if ((st = jstr(d, "content", &content, &clen, "decoder Replace", err)) != SFT_OK)
			return st;
		if (content == NULL)
			return sft_error(err, SFT_ERR_FORMAT, "decoder Replace needs a content string");
		return add_dec(tok, SFT_DEC_REPLACE, pat, patlen, content, clen, NULL, err);
	}
	if (strcmp(type, "Strip") == 0)
	{
		const char *content;
		size_t		clen;
		int			start;
		int			stop;

		if ((st = jstr(d, "content", &content, &clen, "decoder Strip", err)) != SFT_OK ||
			(st = jint_opt(d, "start", 0, &start, "decoder Strip", err)) != SFT_OK ||
			(st = jint_opt(d, "stop", 0, &stop, "decoder Strip", err)) != SFT_OK)
			return st;
		if (content == NULL || clen == 0 || sft_utf8_len((unsigned char) content[0]) != clen)
			return sft_error(err, SFT_ERR_FORMAT, "decoder Strip: content must be one character");
		if ((st = add_dec(tok, SFT_DEC_STRIP, content, clen, NULL, 0, &step, err)) != SFT_OK)
			return st;
		step->start = start;
		step->stop = stop;
		return SFT_OK;
	}
	if (strcmp(type, "Metaspace") == 0)
	{
		const char *repl;
		size_t		rlen;
		const char *scheme;
		int			add_prefix_space;

		if ((st = jstr(d, "replacement", &repl, &rlen, "decoder Metaspace", err)) != SFT_OK ||
			(st = jstr(d, "prepend_scheme", &scheme, NULL, "decoder Metaspace", err)) != SFT_OK ||
			(st = jbool(d, "add_prefix_space", 1, &add_prefix_space, "decoder Metaspace", err)) != SFT_OK)
			return st;
		if (repl == NULL)
		{
			repl = META_REPLACEMENT;
			rlen = 3;
		}
		if (rlen == 0 || sft_utf8_len((unsigned char) repl[0]) != rlen)
			return sft_error(err, SFT_ERR_FORMAT, "decoder Metaspace: replacement must be one character");
		if ((st = add_dec(tok, SFT_DEC_METASPACE, repl, rlen, NULL, 0, &step, err)) != SFT_OK)
			return st;
		step->start = scheme ? strcmp(scheme, "never") != 0 : add_prefix_space;
		return SFT_OK;
	}
	return sft_error(err, SFT_ERR_UNSUPPORTED,
					 "decoder type \"%s\" is not supported (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence are)", type);
}

static int
mentions_metaspace(const SftTokenizer *tok)
{
	for (int i = 0; i < tok->n_norm; i++)
		if ((tok->norm[i].a && strstr(tok->norm[i].a, META_REPLACEMENT)) ||
			(tok->norm[i].b && strstr(tok->norm[i].b, META_REPLACEMENT)))
			return 1;
	for (int i = 0; i < tok->n_dec; i++)
		if ((tok->dec[i].a && strstr(tok->dec[i].a, META_REPLACEMENT)) ||
			tok->dec[i].kind == SFT_DEC_METASPACE)
			return 1;
	return tok->prefix == SFT_PREFIX_METASPACE;
}

/*
 * Byte-level shortcut table: raw word bytes -> id, for every vocabulary token
 * whose BPE over its own raw bytes is exactly itself (or every token, with
 * ignore_merges).  Encoding a word found here skips the merge loop; the
 * answer is the same by construction.
 */
static SftStatus
build_raw_words(SftTokenizer *tok, SftError *err)
{
	SftBuf		raw;
	SftBpeScratch scratch;
	SftStatus	st = SFT_OK;

	sft_buf_init(&raw);
	memset(&scratch, 0, sizeof(scratch));
	for (uint32_t e = 0; tok->vocab.slots && e <= tok->vocab.mask && st == SFT_OK; e++)
	{
		const SftStrMapSlot *ent = &tok->vocab.slots[e];
		const unsigned char *s;
		size_t		i = 0;
		int			ok = 1;

		if (ent->len == SFT_STRMAP_EMPTY)
			continue;
		s = (const unsigned char *) SFT_STRMAP_KEY(&tok->vocab, ent);
		raw.len = 0;
		while (i < ent->len && ok)
		{
			size_t		n;
			uint32_t	cp = sft_utf8_decode(s + i, &n);

			if (cp >= 324 || tok->char_byte[cp] < 0)
				ok = 0;
			else
			{
				char		byte = (char) tok->char_byte[cp];

				st = sft_buf_append(&raw, &byte, 1);
				if (st != SFT_OK)
					break;
			}
			i += n;
		}
		if (!ok || st != SFT_OK || raw.len == 0)
			continue;
		if (!tok->ignore_merges)
		{
			if ((st = sft_bpe_word(tok, raw.data, raw.len, &scratch, 0, err)) != SFT_OK)
				break;
			if (scratch.n != 1 || scratch.id[0] != ent->value)
				continue;
		}
		st = sft_strmap_put(&tok->raw_words, raw.data, raw.len, ent->value, NULL);
	}
	sft_buf_free(&raw);
	sft_bpe_scratch_free(&scratch);
	if (st != SFT_OK)
		return sft_error(err, st, "out of memory building the word table");
	return SFT_OK;
}

/*
 * SentencePiece shortcut tables: whether words may be cut before every space
 * marker that follows another character (true when no vocabulary token
 * contains such a pair), and raw_words = the tokens whose BPE is themselves.
 */
static SftStatus
build_spm_words(SftTokenizer *tok, SftError *err)
{
	SftBpeScratch scratch;
	const char *m = tok->meta_repl ? tok->meta_repl : META_REPLACEMENT;
	size_t		mlen = tok->meta_repl ? tok->meta_repl_len : 3;
	SftStatus	st = SFT_OK;

	memcpy(tok->spm_marker, m, mlen);
	tok->spm_marker_len = mlen;
	/* an unknown marker could fuse with an unknown neighbour into one <unk> */
	tok->spm_split = sft_strmap_get(&tok->vocab, m, mlen) >= 0;
	memset(&scratch, 0, sizeof(scratch));
	for (uint32_t e = 0; tok->vocab.slots && e <= tok->vocab.mask && st == SFT_OK; e++)
	{
		const SftStrMapSlot *ent = &tok->vocab.slots[e];
		const char *key;

		if (ent->len == SFT_STRMAP_EMPTY)
			continue;
		key = SFT_STRMAP_KEY(&tok->vocab, ent);
		for (size_t i = 1; i + mlen <= ent->len && tok->spm_split; i++)
			if (memcmp(key + i, m, mlen) == 0 && !(i >= mlen && memcmp(key + i - mlen, m, mlen) == 0) &&
				((unsigned char) key[i] & 0xC0) != 0x80)
				tok->spm_split = 0;
		if ((st = sft_bpe_word(tok, key, ent->len, &scratch, 0, err)) != SFT_OK)
			break;
		if (scratch.n == 1 && scratch.id[0] == ent->value)
			st = sft_strmap_put(&tok->raw_words, key, ent->len, ent->value, NULL);
	}
	sft_bpe_scratch_free(&scratch);
	if (st != SFT_OK)
		return sft_error(err, st, "out of memory building the word table");
	return SFT_OK;
}

static SftStatus
finish_model(SftTokenizer *tok, int byte_level, SftError *err)
{
	char		name[8];

	if (byte_level)
	{
		tok->kind = SFT_TOKENIZER_BYTE_BPE;
		for (int b = 0; b < 256; b++)
			tok->byte_id[b] = sft_strmap_get(&tok->vocab, tok->byte_char[b], tok->byte_char_len[b]);
		return build_raw_words(tok, err);
	}
	if (!tok->byte_fallback && !mentions_metaspace(tok))
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "BPE without a ByteLevel pre-tokenizer, byte fallback or the \xE2\x96\x81 convention is not supported");
	tok->kind = SFT_TOKENIZER_SENTENCEPIECE_BPE;
	for (int b = 0; b < 256; b++)
	{
		snprintf(name, sizeof(name), "<0x%02X>", b);
		tok->fallback_id[b] = sft_strmap_get(&tok->vocab, name, 6);
	}
	tok->char_id = sft_alloc(SFT_CHAR_ID_DIRECT * sizeof(int32_t));
	if (tok->char_id == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	for (uint32_t cp = 0; cp < SFT_CHAR_ID_DIRECT; cp++)
	{
		char		enc[4];
		size_t		n = sft_utf8_encode(cp, enc);

		tok->char_id[cp] = (cp >= 0xD800 && cp <= 0xDFFF) ? -1 : sft_strmap_get(&tok->vocab, enc, n);
	}
	return build_spm_words(tok, err);
}

/* ---------------------------------------------------------------------------
 * tokenizer_config.json
 * ------------------------------------------------------------------------- */

static SftStatus
config_token(json_object *cfg, const char *key, char **out, SftError *err)
{
	json_object *v = jget(cfg, key);

	*out = NULL;
	if (v == NULL)
		return SFT_OK;
	if (jis(v, json_type_object))
		v = jget(v, "content");
	if (!jis(v, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT, "tokenizer_config.json: %s must be a string or an object with a \"content\" string", key);
	*out = sft_strndup(json_object_get_string(v), (size_t) json_object_get_string_len(v));
	return *out ? SFT_OK : sft_error(err, SFT_ERR_NOMEM, "out of memory");
}

/*
 * What the post_processor's "single" template starts with (post_first_id).
 * Only read, never applied; shapes it does not describe leave -2.
 */
static void
parse_post_processor(SftTokenizer *tok, json_object *pp)
{
	json_object *type = jget(pp, "type");
	json_object *first;
	json_object *special;
	json_object *id;

	if (!jis(type, json_type_string))
		return;
	if (strcmp(json_object_get_string(type), "Sequence") == 0)
	{
		json_object *procs = jget(pp, "processors");

		for (size_t i = 0; jis(procs, json_type_array) && i < json_object_array_length(procs); i++)
			parse_post_processor(tok, json_object_array_get_idx(procs, i));
		return;
	}
	if (strcmp(json_object_get_string(type), "TemplateProcessing") != 0)
		return;
	first = jis(jget(pp, "single"), json_type_array) && json_object_array_length(jget(pp, "single")) > 0
		? json_object_array_get_idx(jget(pp, "single"), 0) : NULL;
	special = jget(first, "SpecialToken");
	id = jget(special, "id");
	if (jis(id, json_type_string))
		tok->post_first_id = sft_tokenizer_token_to_id(tok, json_object_get_string(id),
													   (size_t) json_object_get_string_len(id));
	else if (jget(first, "Sequence") != NULL)
		tok->post_first_id = -1;
}

static SftStatus
parse_config(SftTokenizer *tok, const char *text, size_t len, SftError *err)
{
	json_object *cfg;
	json_object *tpl;
	SftStatus	st;

	if ((st = parse_json(text, len, "tokenizer_config.json", &cfg, err)) != SFT_OK)
		return st;
	if (!jis(cfg, json_type_object))
	{
		json_object_put(cfg);
		return sft_error(err, SFT_ERR_FORMAT, "tokenizer_config.json must be a JSON object");
	}
	if ((st = config_token(cfg, "bos_token", &tok->bos_token, err)) != SFT_OK ||
		(st = config_token(cfg, "eos_token", &tok->eos_token, err)) != SFT_OK ||
		(st = config_token(cfg, "pad_token", &tok->pad_token, err)) != SFT_OK)
		goto done;
	if (jget(cfg, "add_bos_token") != NULL)
	{
		if ((st = jbool(cfg, "add_bos_token", 0, &tok->add_bos_token, "tokenizer_config.json", err)) != SFT_OK)
			goto done;
	}
	tpl = jget(cfg, "chat_template");
	if (jis(tpl, json_type_string))
	{
		tok->chat_template = sft_strndup(json_object_get_string(tpl), (size_t) json_object_get_string_len(tpl));
		if (tok->chat_template == NULL)
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	else if (jis(tpl, json_type_array))
	{
		/* [{"name": ..., "template": ...}]: the one named "default" */
		for (size_t i = 0; i < json_object_array_length(tpl); i++)
		{
			json_object *item = json_object_array_get_idx(tpl, i);
			json_object *name = jget(item, "name");
			json_object *body = jget(item, "template");

			if (!jis(name, json_type_string) || !jis(body, json_type_string))
			{
				st = sft_error(err, SFT_ERR_FORMAT, "tokenizer_config.json: chat_template[%zu] must be {\"name\": string, \"template\": string}", i);
				goto done;
			}
			if (strcmp(json_object_get_string(name), "default") == 0)
			{
				tok->chat_template = sft_strndup(json_object_get_string(body), (size_t) json_object_get_string_len(body));
				if (tok->chat_template == NULL)
					st = sft_error(err, SFT_ERR_NOMEM, "out of memory");
				break;
			}
		}
	}
	else if (tpl != NULL)
		st = sft_error(err, SFT_ERR_FORMAT, "tokenizer_config.json: chat_template must be a string or a list of named templates");
done:
	json_object_put(cfg);
	if (st == SFT_OK)
	{
		if (tok->bos_token)
			tok->bos_id = sft_tokenizer_token_to_id(tok, tok->bos_token, strlen(tok->bos_token));
		if (tok->eos_token)
			tok->eos_id = sft_tokenizer_token_to_id(tok, tok->eos_token, strlen(tok->eos_token));
		if (tok->pad_token)
			tok->pad_id = sft_tokenizer_token_to_id(tok, tok->pad_token, strlen(tok->pad_token));
	}
	return st;
}

/* ---------------------------------------------------------------------------
 * Public constructors
 * ------------------------------------------------------------------------- */

SftStatus
sft_tokenizer_from_hf(const char *tokenizer_json, size_t tokenizer_len,
					  const char *config_json, size_t config_len,
					  SftTokenizer **out, SftError *err)
{
	SftTokenizer *tok;
	json_object *root = NULL;
	int			byte_level = 0;
	SftStatus	st;

	*out = NULL;
	if (tokenizer_json == NULL)
		return sft_error(err, SFT_ERR_INVALID, "tokenizer.json text is missing");
	tok = tokenizer_new();
	if (tok == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory creating a tokenizer");
	init_byte_map(tok);
	if ((st = parse_json(tokenizer_json, tokenizer_len, "tokenizer.json", &root, err)) != SFT_OK)
		goto fail;
	if (!jis(root, json_type_object))
	{
		st = sft_error(err, SFT_ERR_FORMAT, "tokenizer.json must be a JSON object");
		goto fail;
	}
	if ((st = parse_model(tok, jget(root, "model"), err)) != SFT_OK ||
		(st = parse_normalizer(tok, jget(root, "normalizer"), err)) != SFT_OK ||
		(st = parse_pre(tok, jget(root, "pre_tokenizer"), &byte_level, err)) != SFT_OK ||
		(st = parse_decoder(tok, jget(root, "decoder"), err)) != SFT_OK ||
		(st = parse_added_tokens(tok, jget(root, "added_tokens"), err)) != SFT_OK ||
		(st = finish_added_tokens(tok, err)) != SFT_OK ||
		(st = finish_model(tok, byte_level, err)) != SFT_OK)
	{
		sft_error_prefix(err, "tokenizer.json: ");
		goto fail;
	}
	parse_post_processor(tok, jget(root, "post_processor"));
	json_object_put(root);
	root = NULL;
	if (config_json != NULL && (st = parse_config(tok, config_json, config_len, err)) != SFT_OK)
		goto fail;
	*out = tok;
	return SFT_OK;
fail:
	if (root)
		json_object_put(root);
	sft_tokenizer_free(tok);
	return st;
}

SftStatus
sft_tokenizer_from_vocab_merges(const char *vocab_json, size_t vocab_len,
								const char *merges_txt, size_t merges_len,
								SftTokenizer **out, SftError *err)
{
	SftTokenizer *tok;
	json_object *vocab = NULL;
	SftBuf		scratch;
	SftPreStep *step = NULL;
	size_t		pos = 0;
	int32_t		rank = 0;
	size_t		line_no = 0;
	size_t		bad;
	SftStatus	st;

	*out = NULL;
	if (vocab_json == NULL || merges_txt == NULL)
		return sft_error(err, SFT_ERR_INVALID, "vocab.json and merges.txt are both needed");
	tok = tokenizer_new();
	if (tok == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory creating a tokenizer");
	sft_buf_init(&scratch);
	init_byte_map(tok);
	if ((st = parse_json(vocab_json, vocab_len, "vocab.json", &vocab, err)) != SFT_OK)
		goto fail;
	if (!jis(vocab, json_type_object))
	{
		st = sft_error(err, SFT_ERR_FORMAT, "vocab.json must be an object of token -> id");
		goto fail;
	}
	{
		json_object_object_foreach(vocab, key, val)
		{
			if (!jis(val, json_type_int))
			{
				st = sft_error(err, SFT_ERR_FORMAT, "vocab.json: id of \"%.64s\" must be an integer", key);
				goto fail;
			}
			if ((st = add_vocab(tok, key, strlen(key), json_object_get_int64(val), err)) != SFT_OK)
			{
				sft_error_prefix(err, "vocab.json: ");
				goto fail;
			}
		}
	}
	json_object_put(vocab);
	vocab = NULL;

	bad = sft_utf8_invalid_offset(merges_txt, merges_len);
	if (bad != (size_t) -1)
	{
		st = sft_error(err, SFT_ERR_FORMAT, "merges.txt is not valid UTF-8 (byte offset %zu)", bad);
		goto fail;
	}
	/* Count lines to size the merge table once. */
	{
		size_t		lines = 1;

		for (size_t i = 0; i < merges_len; i++)
			lines += merges_txt[i] == '\n';
		if ((st = mergemap_init(&tok->merges, lines)) != SFT_OK)
		{
			st = sft_error(err, st, "cannot allocate %zu merges", lines);
			goto fail;
		}
	}
	while (pos < merges_len)
	{
		const char *line = merges_txt + pos;
		const char *nl = memchr(line, '\n', merges_len - pos);
		size_t		llen = nl ? (size_t) (nl - line) : merges_len - pos;
		const char *space;

		pos += llen + (nl ? 1 : 0);
		line_no++;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen == 0 || (llen >= 8 && memcmp(line, "#version", 8) == 0))
			continue;
		space = memchr(line, ' ', llen);
		if (space == NULL || space == line || space + 1 == line + llen ||
			memchr(space + 1, ' ', llen - (size_t) (space + 1 - line)) != NULL)
		{
			st = sft_error(err, SFT_ERR_FORMAT, "merges.txt line %zu must be two tokens separated by one space", line_no);
			goto fail;
		}
		if ((st = add_merge(tok, line, (size_t) (space - line), space + 1,
							llen - (size_t) (space - line) - 1, rank++, &scratch, err)) != SFT_OK)
		{
			sft_error_prefix(err, "merges.txt line %zu: ", line_no);
			goto fail;
		}
	}
	/* GPT-2 style: the ByteLevel regex split and decoder. */
	if ((st = new_pre(tok, SFT_PRE_REGEX, SFT_SPLIT_ISOLATED, &step, err)) != SFT_OK ||
		(st = sft_tokenizer_compile_step(tok, step, sft_gpt2_pattern, strlen(sft_gpt2_pattern), err)) != SFT_OK ||
		(st = add_dec(tok, SFT_DEC_BYTE_LEVEL, NULL, 0, NULL, 0, NULL, err)) != SFT_OK)
		goto fail;
	tok->has_decoder = 1;
	/* As HF's GPT2Tokenizer: <|endoftext|>, when present, is the special token. */
	{
		int32_t		eot = sft_strmap_get(&tok->vocab, "<|endoftext|>", 13);

		if (eot >= 0 &&
			(st = add_added_token(tok, eot, "<|endoftext|>", 13, 1, 0, 0, 0, err)) != SFT_OK)
			goto fail;
	}
	if ((st = finish_added_tokens(tok, err)) != SFT_OK ||
		(st = finish_model(tok, 1, err)) != SFT_OK)
		goto fail;
	sft_buf_free(&scratch);
	*out = tok;
	return SFT_OK;
fail:
	if (vocab)
		json_object_put(vocab);
	sft_buf_free(&scratch);
	sft_tokenizer_free(tok);
	return st;
}

/* ---------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------- */

SftTokenizerKind
sft_tokenizer_kind(const SftTokenizer *tok)
{
	return tok->kind;
}

const char *
sft_tokenizer_kind_name(SftTokenizerKind kind)
{
	return kind == SFT_TOKENIZER_BYTE_BPE ? "byte_bpe" : "sentencepiece_bpe";
}

int32_t
sft_tokenizer_vocab_size(const SftTokenizer *tok)
{
	return tok->vocab_size;
}

int32_t
sft_tokenizer_token_to_id(const SftTokenizer *tok, const char *s, size_t len)
{
	int32_t		id = sft_strmap_get(&tok->added_map, s, len);

	return id >= 0 ? id : sft_strmap_get(&tok->vocab, s, len);
}

const char *
sft_tokenizer_id_to_token(const SftTokenizer *tok, int32_t id, size_t *len)
{
	if (id < 0 || id >= tok->vocab_size || !(tok->tok_flags[id] & SFT_TOK_PRESENT))
		return NULL;
	if (len)
		*len = tok->tok_len[id];
	return tok->tok_text.data + tok->tok_off[id];
}

int
sft_tokenizer_is_special(const SftTokenizer *tok, int32_t id)
{
	return id >= 0 && id < tok->vocab_size && (tok->tok_flags[id] & SFT_TOK_SPECIAL) != 0;
}

int
sft_tokenizer_special_count(const SftTokenizer *tok)
{
	return tok->n_special;
}

int32_t
sft_tokenizer_special_id(const SftTokenizer *tok, int i)
{
	return i >= 0 && i < tok->n_special ? tok->special_ids[i] : -1;
}

const char *
sft_tokenizer_bos_token(const SftTokenizer *tok)
{
	return tok->bos_token;
}

const char *
sft_tokenizer_eos_token(const SftTokenizer *tok)
{
	return tok->eos_token;
}

int32_t
sft_tokenizer_bos_id(const SftTokenizer *tok)
{
	return tok->bos_id;
}

int32_t
sft_tokenizer_eos_id(const SftTokenizer *tok)
{
	return tok->eos_id;
}

const char *
sft_tokenizer_chat_template(const SftTokenizer *tok)
{
	return tok->chat_template;
}

int
sft_tokenizer_add_bos_token(const SftTokenizer *tok)
{
	return tok->add_bos_token;
}

void
sft_tokenizer_set_reference_mode(SftTokenizer *tok, int on)
{
	tok->reference_mode = on != 0;
}
