/*
 * tokenizer_decode.c: token ids -> text, as Hugging Face tokenizers'
 * decode() does it: every id becomes its token text (added tokens included,
 * special ones dropped when skip_special), the decoder steps rewrite the
 * token list, and the pieces are joined ("" after a decoder; " " when the
 * file has no decoder).
 *
 * Invalid UTF-8: a byte-level id sequence can stop inside a character (a
 * partial decode, or a model's odd output).  Like HF (Rust's
 * String::from_utf8_lossy) each maximal invalid subsequence becomes one
 * U+FFFD; ByteFallback turns each byte of an invalid <0xNN> run into one
 * U+FFFD.  The result is therefore always valid UTF-8.
 */
#include "tokenizer_internal.h"
#include "unicode.h"

#include <string.h>

typedef struct TokList
{
	SftBuf		text;			/* all tokens, back to back */
	SftIntVec	end;			/* [n] end offset of each token in text */
} TokList;

static void
tl_init(TokList *l)
{
	sft_buf_init(&l->text);
	sft_intvec_init(&l->end);
}

static void
tl_free(TokList *l)
{
	sft_buf_free(&l->text);
	sft_intvec_free(&l->end);
}

static void
tl_clear(TokList *l)
{
	l->text.len = 0;
	l->end.len = 0;
}

static SftStatus
tl_push(TokList *l, const char *s, size_t len)
{
	if (sft_buf_append(&l->text, s, len) != SFT_OK)
		return SFT_ERR_NOMEM;
	if (l->text.len > INT32_MAX)
		return SFT_ERR_LIMIT;
	return sft_intvec_push(&l->end, (int32_t) l->text.len);
}

static inline const char *
tl_token(const TokList *l, size_t i, size_t *len)
{
	size_t		start = i ? (size_t) l->end.data[i - 1] : 0;

	*len = (size_t) l->end.data[i] - start;
	return l->text.data + start;
}

/* Append s to out, each maximal invalid UTF-8 subsequence as U+FFFD. */
static SftStatus
append_lossy(SftBuf *out, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t		i = 0;
	size_t		run = 0;		/* start of the pending valid run */

	while (i < n)
	{
		unsigned char c = s[i];
		size_t		need;
		unsigned char lo = 0x80;
		unsigned char hi = 0xBF;
		size_t		j;
		int			ok = 1;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			need = 1;
		else if (c >= 0xE0 && c <= 0xEF)
		{
			need = 2;
			if (c == 0xE0)
				lo = 0xA0;
			else if (c == 0xED)
				hi = 0x9F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			need = 3;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F;
		}
		else
			need = 0, ok = 0;
		j = i + 1;
		for (size_t k = 0; k < need; k++, j++)
		{
			if (j >= n || s[j] < (k == 0 ? lo : 0x80) || s[j] > (k == 0 ? hi : 0xBF))
			{
				ok = 0;
				break;
			}
		}
		if (ok)
		{
			i = j;
			continue;
		}
		if (sft_buf_append(out, str + run, i - run) != SFT_OK ||
			sft_buf_append(out, "\xEF\xBF\xBD", 3) != SFT_OK)
			return SFT_ERR_NOMEM;
		i = j;
		run = j;
	}
	return sft_buf_append(out, str + run, n - run);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "<0xNN>" -> NN, else -1 */
static int
fallback_byte(const char *t, size_t len)
{
	int			h;
	int			l;

	if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
		return -1;
	h = hexval(t[3]);
	l = hexval(t[4]);
	return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static SftStatus
flush_bytes(TokList *out, SftBuf *bytes)
{
	SftStatus	st = SFT_OK;

	if (bytes->len == 0)
		return SFT_OK;
	if (sft_utf8_invalid_offset(bytes->data, bytes->len) == (size_t) -1)
		st = tl_push(out, bytes->data, bytes->len);
	else
		for (size_t i = 0; i < bytes->len && st == SFT_OK; i++)
			st = tl_push(out, "\xEF\xBF\xBD", 3);
	bytes->len = 0;
	return st;
}

static SftStatus
apply_step(const SftTokenizer *tok, const SftDecStep *step, const TokList *in, TokList *out)
{
	SftStatus	st = SFT_OK;
	SftBuf		tmp;

	sft_buf_init(&tmp);
	tl_clear(out);
	switch (step->kind)
	{
		case SFT_DEC_BYTE_LEVEL:
			for (size_t i = 0; i < in->end.len && st == SFT_OK; i++)
			{
				size_t		len;
				const char *t = tl_token(in, i, &len);
				const unsigned char *u = (const unsigned char *) t;
				size_t		mark = tmp.len;
				int			all = 1;

				for (size_t k = 0; k < len && all && st == SFT_OK;)
				{
					size_t		n;
					uint32_t	cp = sft_utf8_decode(u + k, &n);

					if (cp < 324 && tok->char_byte[cp] >= 0)
					{
						char		b = (char) tok->char_byte[cp];

						st = sft_buf_append(&tmp, &b, 1);
					}
					else
						all = 0;
					k += n;
				}
				/* A token with a character outside the map: its raw bytes. */
				if (!all && st == SFT_OK)
				{
					tmp.len = mark;
					st = sft_buf_append(&tmp, t, len);
				}
			}
			/* One token out: the bytes, each invalid subsequence as U+FFFD. */
			if (st == SFT_OK)
				st = append_lossy(&out->text, tmp.data ? tmp.data : "", tmp.len);
			if (st == SFT_OK)
				st = out->text.len > INT32_MAX ? SFT_ERR_LIMIT :
					sft_intvec_push(&out->end, (int32_t) out->text.len);
			break;
		case SFT_DEC_REPLACE:
			for (size_t i = 0; i < in->end.len && st == SFT_OK; i++)
			{
				size_t		len;
				const char *t = tl_token(in, i, &len);
				size_t		k = 0;
				size_t		prev = 0;

				tmp.len = 0;
				while (k + step->alen <= len && st == SFT_OK)
				{
					if (memcmp(t + k, step->a, step->alen) == 0)
					{
						st = sft_buf_append(&tmp, t + prev, k - prev);
						if (st == SFT_OK)
							st = sft_buf_append(&tmp, step->b, step->blen);
						k += step->alen;
						prev = k;
					}
					else
						k++;
				}
				if (st == SFT_OK)
					st = sft_buf_append(&tmp, t + prev, len - prev);
				if (st == SFT_OK)
					st = tl_push(out, tmp.data ? tmp.data : "", tmp.len);
			}
			break;
		case SFT_DEC_BYTE_FALLBACK:
			for (size_t i = 0; i < in->end.len && st == SFT_OK; i++)
			{
				size_t		len;
				const char *t = tl_token(in, i, &len);
				int			b = fallback_byte(t, len);

				if (b >= 0)
				{
					char		c = (char) b;

					st = sft_buf_append(&tmp, &c, 1);
					continue;
				}
				st = flush_bytes(out, &tmp);
				if (st == SFT_OK)
					st = tl_push(out, t, len);
			}
			if (st == SFT_OK)
				st = flush_bytes(out, &tmp);
			break;
		case SFT_DEC_FUSE:
			st = tl_push(out, in->text.data ? in->text.data : "", in->text.len);
			break;
		case SFT_DEC_STRIP:
			for (size_t i = 0; i < in->end.len && st == SFT_OK; i++)
			{
				size_t		len;
				const char *t = tl_token(in, i, &len);
				size_t		from = 0;
				size_t		to = len;

				for (int k = 0; k < step->start && from + step->alen <= to &&
					 memcmp(t + from, step->a, step->alen) == 0; k++)
					from += step->alen;
				for (int k = 0; k < step->stop && to >= from + step->alen &&
					 memcmp(t + to - step->alen, step->a, step->alen) == 0; k++)
					to -= step->alen;
				st = tl_push(out, t + from, to - from);
			}
			break;
		case SFT_DEC_METASPACE:
			for (size_t i = 0; i < in->end.len && st == SFT_OK; i++)
			{
				size_t		len;
				const char *t = tl_token(in, i, &len);
				size_t		k = 0;
				size_t		prev = 0;

				tmp.len = 0;
				while (k < len && st == SFT_OK)
				{
					if (k + step->alen <= len && memcmp(t + k, step->a, step->alen) == 0)
					{
						st = sft_buf_append(&tmp, t + prev, k - prev);
						/* HF drops every replacement in the first token */
						if (st == SFT_OK && !(i == 0 && step->start))
							st = sft_buf_append(&tmp, " ", 1);
						k += step->alen;
						prev = k;
					}
					else
						k += sft_utf8_len((unsigned char) t[k]);
				}
				if (st == SFT_OK)
					st = sft_buf_append(&tmp, t + prev, len - prev);
				if (st == SFT_OK)
					st = tl_push(out, tmp.data ? tmp.data : "", tmp.len);
			}
			break;
	}
	sft_buf_free(&tmp);
	return st;
}

SftStatus
sft_tokenizer_decode(const SftTokenizer *tok, const int32_t *ids, size_t n,
					 int skip_special, SftBuf *out, SftError *err)
{
	TokList		lists[2];
	int			cur = 0;
	SftStatus	st = SFT_OK;

	if (n > 0 && ids == NULL)
		return sft_error(err, SFT_ERR_INVALID, "ids are NULL");
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= tok->vocab_size || !(tok->tok_flags[ids[i]] & SFT_TOK_PRESENT))
			return sft_error(err, SFT_ERR_INVALID, "token id %d at position %zu is not in the vocabulary (size %d)",
							 ids[i], i, tok->vocab_size);
	tl_init(&lists[0]);
	tl_init(&lists[1]);
	for (size_t i = 0; i < n && st == SFT_OK; i++)
	{
		int32_t		id = ids[i];

		if (skip_special && (tok->tok_flags[id] & SFT_TOK_SPECIAL))
			continue;
		st = tl_push(&lists[0], tok->tok_text.data + tok->tok_off[id], tok->tok_len[id]);
	}
	for (int k = 0; k < tok->n_dec && st == SFT_OK; k++)
	{
		st = apply_step(tok, &tok->dec[k], &lists[cur], &lists[!cur]);
		cur = !cur;
	}
	/* Join: "" after a decoder, " " without one; then make it valid UTF-8. */
	if (st == SFT_OK)
	{
		const TokList *l = &lists[cur];

		if (tok->has_decoder)
			st = append_lossy(out, l->text.data ? l->text.data : "", l->text.len);
		else
		{
			for (size_t i = 0; i < l->end.len && st == SFT_OK; i++)
			{
				size_t		len;
				const char *t = tl_token(l, i, &len);

				if (i > 0)
					st = sft_buf_append(out, " ", 1);
				if (st == SFT_OK)
					st = append_lossy(out, t, len);
			}
		}
		if (st == SFT_OK && out->data == NULL)
			st = sft_buf_append(out, "", 0);
	}
	tl_free(&lists[0]);
	tl_free(&lists[1]);
	if (st != SFT_OK)
		return sft_error(err, st, "out of memory decoding %zu ids", n);
	return SFT_OK;
}
