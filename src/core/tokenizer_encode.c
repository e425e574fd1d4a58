/*
 * tokenizer_encode.c: text -> token ids, as Hugging Face tokenizers does it.
 *
 * Pipeline for one input (each stage keeps, for every byte it produces, the
 * input byte offset it came from, so every token gets an offset):
 *   1. added tokens: leftmost-longest match of added-token contents (special
 *      ones only when split_special); first the non-normalized tokens over
 *      the whole input, then the normalized ones inside the gaps, as HF's
 *      AddedVocabulary does.  lstrip/rstrip widen a match over White_Space.
 *   2. each text segment between them: normalizer steps (NFC, Prepend,
 *      Replace), then the first pre-tokenizer's prefix (ByteLevel
 *      add_prefix_space, Metaspace), skipping empty segments;
 *   3. pre-tokenizer steps, each splitting every piece of the previous one
 *      (PCRE2 regex, literal) with HF's split behaviours;
 *   4. BPE on every piece: initial symbols are bytes (byte-level; the byte ->
 *      character map is implicit because ids are looked up per byte) or
 *      characters with byte fallback / unk (SentencePiece); then the
 *      lowest-ranked adjacent pair is merged until none is left, ties going
 *      to the leftmost pair.
 *
 * The merge loop uses a binary heap of (rank, position) with lazy deletion,
 * O(n log n) per word, so one 1 MB SentencePiece "word" is fine; words of up
 * to SFT_BPE_SMALL symbols use the plain quadratic scan, which is faster
 * there.  reference_mode forces the plain scan everywhere and turns off the
 * whole-word shortcut so tests can compare the two.
 */
#include "tokenizer_internal.h"
#include "unicode.h"

#include <string.h>

#define SFT_BPE_SMALL 12

/* A span of the current normalized segment. */
typedef struct Piece
{
	int32_t		start;
	int32_t		end;
	int32_t		is_match;
} Piece;

typedef struct PieceList
{
	Piece	   *p;
	size_t		n;
	size_t		cap;
} PieceList;

typedef struct EncodeCtx
{
	const SftTokenizer *tok;
	const char *input;
	int			split_special;
	SftIntVec  *ids;
	SftIntVec  *offsets;		/* NULL: not wanted */
	SftError   *err;

	/* The normalized segment being pre-tokenized. */
	const char *ns;
	size_t		nlen;
	const int32_t *nmap;		/* [nlen] input offset per byte; NULL: nbase + i */
	int32_t		nbase;

	SftBuf		nbuf[2];		/* ping-pong buffers for normalizer steps */
	SftIntVec	nmapv[2];
	PieceList	pieces[SFT_TOKENIZER_MAX_STEPS];
	SftBpeScratch bpe;

	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *jit_stack;
} EncodeCtx;

/* ---------------------------------------------------------------------------
 * BPE over one word
 * ------------------------------------------------------------------------- */

void
sft_bpe_scratch_free(SftBpeScratch *s)
{
	sft_free(s->id);			/* start, prev and next live in the same block */
	sft_free(s->heap);
	memset(s, 0, sizeof(*s));
}

static SftStatus
bpe_reserve(SftBpeScratch *s, size_t n)
{
	int32_t    *block;

	if (n <= s->cap)
		return SFT_OK;
	n = n < 64 ? 64 : n + n / 2;
	sft_free(s->id);
	s->id = s->start = s->prev = s->next = NULL;
	s->cap = 0;
	/* one block: id | start | prev | next, n entries each */
	block = n <= SIZE_MAX / (4 * sizeof(int32_t)) ? sft_alloc(4 * n * sizeof(int32_t)) : NULL;
	if (block == NULL)
		return SFT_ERR_NOMEM;
	s->id = block;
	s->start = block + n;
	s->prev = block + 2 * n;
	s->next = block + 3 * n;
	s->cap = n;
	return SFT_OK;
}

static inline void
bpe_push_symbol(SftBpeScratch *s, int32_t id, int32_t start)
{
	s->id[s->n] = id;
	s->start[s->n] = start;
	s->n++;
}

/* Initial symbols of a byte-level word: one per byte. */
static void
initial_bytes(const SftTokenizer *tok, const unsigned char *w, size_t len, SftBpeScratch *s)
{
	int			pending_unk = 0;

	for (size_t i = 0; i < len; i++)
	{
		int32_t		id = tok->byte_id[w[i]];

		if (id >= 0)
		{
			bpe_push_symbol(s, id, (int32_t) i);
			pending_unk = 0;
		}
		else if (tok->unk_id >= 0 && !(tok->fuse_unk && pending_unk))
		{
			bpe_push_symbol(s, tok->unk_id, (int32_t) i);
			pending_unk = 1;
		}
		/* no unk token: HF drops the character */
	}
}

/* Initial symbols of a SentencePiece word: characters, byte fallback, unk. */
static void
initial_chars(const SftTokenizer *tok, const unsigned char *w, size_t len, SftBpeScratch *s)
{
	int			pending_unk = 0;
	size_t		i = 0;

	while (i < len)
	{
		size_t		n;
		uint32_t	cp = sft_utf8_decode(w + i, &n);
		int32_t		id = cp < SFT_CHAR_ID_DIRECT ? tok->char_id[cp] :
			sft_strmap_get(&tok->vocab, (const char *) w + i, n);

		if (id >= 0)
		{
			bpe_push_symbol(s, id, (int32_t) i);
			pending_unk = 0;
		}
		else
		{
			int			have_bytes = tok->byte_fallback;

			for (size_t k = 0; k < n && have_bytes; k++)
				have_bytes = tok->fallback_id[w[i + k]] >= 0;
			if (have_bytes)
			{
				for (size_t k = 0; k < n; k++)
					bpe_push_symbol(s, tok->fallback_id[w[i + k]], (int32_t) (i + k));
				pending_unk = 0;
			}
			else if (tok->unk_id >= 0 && !(tok->fuse_unk && pending_unk))
			{
				bpe_push_symbol(s, tok->unk_id, (int32_t) i);
				pending_unk = 1;
			}
		}
		i += n;
	}
}

/* Plain loop: merge the leftmost lowest-ranked pair until none is left. */
static void
merge_plain(const SftTokenizer *tok, SftBpeScratch *s)
{
	size_t		n = s->n;

	while (n > 1)
	{
		int32_t		best_rank = INT32_MAX;
		size_t		best = 0;
		int32_t		best_id = -1;

		for (size_t i = 0; i + 1 < n; i++)
		{
			const SftMergeSlot *m = sft_merge_get(&tok->merges, s->id[i], s->id[i + 1]);

			if (m && m->rank < best_rank)
			{
				best_rank = m->rank;
				best = i;
				best_id = m->merged;
			}
		}
		if (best_id < 0)
			break;
		s->id[best] = best_id;
		memmove(s->id + best + 1, s->id + best + 2, (n - best - 2) * sizeof(int32_t));
		memmove(s->start + best + 1, s->start + best + 2, (n - best - 2) * sizeof(int32_t));
		n--;
	}
	s->n = n;
}

static inline void
heap_push(uint64_t *heap, size_t *n, uint64_t v)
{
	size_t		i = (*n)++;

	while (i > 0)
	{
		size_t		parent = (i - 1) / 2;

		if (heap[parent] <= v)
			break;
		heap[i] = heap[parent];
		i = parent;
	}
	heap[i] = v;
}

static inline uint64_t
heap_pop(uint64_t *heap, size_t *n)
{
	uint64_t	top = heap[0];
	uint64_t	last = heap[--(*n)];
	size_t		i = 0;

	for (;;)
	{
		size_t		child = 2 * i + 1;

		if (child >= *n)
			break;
		if (child + 1 < *n && heap[child + 1] < heap[child])
			child++;
		if (last <= heap[child])
			break;
		heap[i] = heap[child];
		i = child;
	}
	if (*n > 0)
		heap[i] = last;
	return top;
}

/*
 * Heap loop: entries are rank << 32 | left position, so the minimum is the
 * lowest rank and, among equal ranks, the leftmost pair.  An entry is stale
 * when its left symbol was merged away or its pair changed; the pair's rank
 * identifies it (a pair has exactly one rank).
 */
static SftStatus
merge_heap(const SftTokenizer *tok, SftBpeScratch *s)
{
	size_t		n = s->n;
	size_t		hn = 0;
	size_t		out;
	int32_t		i;

	/* Every merge adds at most two entries: 3n bounds the heap. */
	if (s->heap_cap < 3 * n)
	{
		sft_free(s->heap);
		s->heap_cap = 3 * n + 16;
		s->heap = sft_alloc(s->heap_cap * sizeof(uint64_t));
		if (s->heap == NULL)
		{
			s->heap_cap = 0;
			return SFT_ERR_NOMEM;
		}
	}
	for (size_t k = 0; k < n; k++)
	{
		s->prev[k] = (int32_t) k - 1;
		s->next[k] = k + 1 < n ? (int32_t) k + 1 : -1;
	}
	for (size_t k = 0; k + 1 < n; k++)
	{
		const SftMergeSlot *m = sft_merge_get(&tok->merges, s->id[k], s->id[k + 1]);

		if (m)
			heap_push(s->heap, &hn, ((uint64_t) (uint32_t) m->rank << 32) | k);
	}
	while (hn > 0)
	{
		uint64_t	top = heap_pop(s->heap, &hn);
		int32_t		pos = (int32_t) (top & 0xFFFFFFFFu);
		int32_t		rank = (int32_t) (top >> 32);
		int32_t		nx = s->next[pos];
		const SftMergeSlot *m;

		if (s->id[pos] < 0 || nx < 0)
			continue;
		m = sft_merge_get(&tok->merges, s->id[pos], s->id[nx]);
		if (m == NULL || m->rank != rank)
			continue;
		s->id[pos] = m->merged;
		s->id[nx] = -1;
		s->next[pos] = s->next[nx];
		if (s->next[nx] >= 0)
			s->prev[s->next[nx]] = pos;
		if (s->prev[pos] >= 0)
		{
			int32_t		pv = s->prev[pos];
			const SftMergeSlot *pm = sft_merge_get(&tok->merges, s->id[pv], s->id[pos]);

			if (pm)
				heap_push(s->heap, &hn, ((uint64_t) (uint32_t) pm->rank << 32) | (uint32_t) pv);
		}
		if (s->next[pos] >= 0)
		{
			const SftMergeSlot *nm = sft_merge_get(&tok->merges, s->id[pos], s->id[s->next[pos]]);

			if (nm)
				heap_push(s->heap, &hn, ((uint64_t) (uint32_t) nm->rank << 32) | (uint32_t) pos);
		}
	}
	/* Compact the surviving symbols in order. */
	out = 0;
	for (i = 0; i >= 0 && n > 0; i = s->next[i])
	{
		s->id[out] = s->id[i];
		s->start[out] = s->start[i];
		out++;
	}
	s->n = out;
	return SFT_OK;
}

SftStatus
sft_bpe_word(const SftTokenizer *tok, const char *word, size_t len,
			 SftBpeScratch *s, int use_shortcut, SftError *err)
{
	const unsigned char *w = (const unsigned char *) word;

	s->n = 0;
	if (len == 0)
		return SFT_OK;
	/*
	 * ignore_merges (Llama 3): a word that is a vocabulary token is that
	 * token.  Otherwise a byte-level word found in raw_words is a token whose
	 * own BPE is itself: a shortcut with the same answer.  Reference mode
	 * looks ignore_merges words up by their byte-character spelling instead.
	 */
	if (tok->ignore_merges && tok->reference_mode && tok->kind == SFT_TOKENIZER_BYTE_BPE)
	{
		char	   *mapped = sft_alloc(2 * len);
		size_t		mlen = 0;
		int32_t		id;

		if (mapped == NULL)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory encoding a word of %zu bytes", len);
		for (size_t i = 0; i < len; i++)
		{
			memcpy(mapped + mlen, tok->byte_char[w[i]], tok->byte_char_len[w[i]]);
			mlen += tok->byte_char_len[w[i]];
		}
		id = sft_strmap_get(&tok->vocab, mapped, mlen);
		sft_free(mapped);
		if (id >= 0)
		{
			if (bpe_reserve(s, 1) != SFT_OK)
				return sft_error(err, SFT_ERR_NOMEM, "out of memory encoding a word");
			bpe_push_symbol(s, id, 0);
			return SFT_OK;
		}
	}
	else if (tok->ignore_merges || (use_shortcut && !tok->reference_mode))
	{
		int32_t		id;

		if (tok->kind == SFT_TOKENIZER_SENTENCEPIECE_BPE && tok->ignore_merges)
			id = sft_strmap_get(&tok->vocab, word, len);
		else
			id = sft_strmap_get(&tok->raw_words, word, len);
		if (id >= 0)
		{
			if (bpe_reserve(s, 1) != SFT_OK)
				return sft_error(err, SFT_ERR_NOMEM, "out of memory encoding a word");
			bpe_push_symbol(s, id, 0);
			return SFT_OK;
		}
	}
	if (len > INT32_MAX / 4 || bpe_reserve(s, len) != SFT_OK)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory encoding a word of %zu bytes", len);
	if (tok->kind == SFT_TOKENIZER_BYTE_BPE)
		initial_bytes(tok, w, len, s);
	else
		initial_chars(tok, w, len, s);
	if (s->n > 1)
	{
		if (tok->reference_mode || s->n <= SFT_BPE_SMALL)
			merge_plain(tok, s);
		else if (merge_heap(tok, s) != SFT_OK)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory encoding a word of %zu bytes", len);
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Emitting tokens
 * ------------------------------------------------------------------------- */

static inline int32_t
source_offset(const EncodeCtx *ctx, size_t i)
{
	if (ctx->nmap)
		return i < ctx->nlen ? ctx->nmap[i] : ctx->nmap[ctx->nlen - 1];
	return ctx->nbase + (int32_t) i;
}

static SftStatus
emit(EncodeCtx *ctx, int32_t id, int32_t offset)
{
	if (sft_intvec_push(ctx->ids, id) != SFT_OK ||
		(ctx->offsets && sft_intvec_push(ctx->offsets, offset) != SFT_OK))
		return sft_error(ctx->err, SFT_ERR_NOMEM, "out of memory storing token ids");
	return SFT_OK;
}

static SftStatus
encode_piece(EncodeCtx *ctx, int32_t start, int32_t end)
{
	SftBpeScratch *s = &ctx->bpe;
	SftStatus	st;

	st = sft_bpe_word(ctx->tok, ctx->ns + start, (size_t) (end - start), s, 1, ctx->err);
	if (st != SFT_OK)
		return st;
	for (size_t k = 0; k < s->n; k++)
		if ((st = emit(ctx, s->id[k], source_offset(ctx, (size_t) (start + s->start[k])))) != SFT_OK)
			return st;
	return SFT_OK;
}

static SftStatus
encode_word(EncodeCtx *ctx, int32_t start, int32_t end)
{
	const SftTokenizer *tok = ctx->tok;
	SftStatus	st;

	/* SentencePiece: cut before each space marker that follows another character. */
	if (tok->kind == SFT_TOKENIZER_SENTENCEPIECE_BPE && tok->spm_split && !tok->reference_mode)
	{
		const char *w = ctx->ns;
		const char *m = tok->spm_marker;
		size_t		ml = tok->spm_marker_len;
		int32_t		piece = start;

		for (int32_t i = start + 1; i + (int32_t) ml <= end; i++)
		{
			if (w[i] != m[0] || memcmp(w + i, m, ml) != 0 ||
				(i - start >= (int32_t) ml && memcmp(w + i - ml, m, ml) == 0))
				continue;
			if ((st = encode_piece(ctx, piece, i)) != SFT_OK)
				return st;
			piece = i;
		}
		return encode_piece(ctx, piece, end);
	}
	return encode_piece(ctx, start, end);
}

/* ---------------------------------------------------------------------------
 * Pre-tokenization
 * ------------------------------------------------------------------------- */

static SftStatus
piece_add(EncodeCtx *ctx, PieceList *l, int32_t start, int32_t end, int is_match)
{
	if (l->n == l->cap)
	{
		size_t		cap = l->cap ? l->cap * 2 : 256;
		Piece	   *p = sft_realloc(l->p, cap * sizeof(Piece));

		if (p == NULL)
			return sft_error(ctx->err, SFT_ERR_NOMEM, "out of memory pre-tokenizing");
		l->p = p;
		l->cap = cap;
	}
	l->p[l->n].start = start;
	l->p[l->n].end = end;
	l->p[l->n].is_match = is_match;
	l->n++;
	return SFT_OK;
}

static SftStatus
regex_matches(EncodeCtx *ctx, const SftPreStep *step, PieceList *l, int32_t start, int32_t end)
{
	PCRE2_SPTR	subject = (PCRE2_SPTR) (ctx->ns + start);
	PCRE2_SIZE	len = (PCRE2_SIZE) (end - start);
	PCRE2_SIZE	off = 0;
	PCRE2_SIZE	prev = 0;
	SftStatus	st;

	while (off <= len)
	{
		int			rc = pcre2_match(step->re, subject, len, off, PCRE2_NO_UTF_CHECK, ctx->md, ctx->mctx);
		PCRE2_SIZE *ov;

		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT && ctx->jit_stack == NULL)
		{
			/* Deep backtracking: retry with a large JIT stack (rare). */
			ctx->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, ctx->tok->pcre_gctx);
			if (ctx->jit_stack == NULL)
				return sft_error(ctx->err, SFT_ERR_NOMEM, "out of memory for the regex stack");
			pcre2_jit_stack_assign(ctx->mctx, NULL, ctx->jit_stack);
			continue;
		}
		if (rc < 0)
		{
			PCRE2_UCHAR msg[128];

			pcre2_get_error_message(rc, msg, sizeof(msg));
			return sft_error(ctx->err, SFT_ERR_LIMIT, "pre-tokenizer regex failed on a piece of %zu bytes: %s",
							 (size_t) len, (const char *) msg);
		}
		ov = pcre2_get_ovector_pointer(ctx->md);
		if (ov[0] > prev && (st = piece_add(ctx, l, start + (int32_t) prev, start + (int32_t) ov[0], 0)) != SFT_OK)
			return st;
		if ((st = piece_add(ctx, l, start + (int32_t) ov[0], start + (int32_t) ov[1], 1)) != SFT_OK)
			return st;
		prev = ov[1];
		if (ov[1] > ov[0])
			off = ov[1];
		else if (ov[1] < len)
			off = ov[1] + sft_utf8_len(subject[ov[1]]);	/* empty match: step one character */
		else
			break;
	}
	if (prev < len)
		return piece_add(ctx, l, start + (int32_t) prev, end, 0);
	return SFT_OK;
}

static SftStatus
literal_matches(EncodeCtx *ctx, const SftPreStep *step, PieceList *l, int32_t start, int32_t end)
{
	int32_t		prev = start;
	int32_t		i = start;
	int32_t		llen = (int32_t) step->literal_len;
	SftStatus	st;

	while (i + llen <= end)
	{
		const char *hit = memchr(ctx->ns + i, step->literal[0], (size_t) (end - llen + 1 - i));

		if (hit == NULL)
			break;
		i = (int32_t) (hit - ctx->ns);
		if (memcmp(hit, step->literal, (size_t) llen) != 0)
		{
			i++;
			continue;
		}
		if (i > prev && (st = piece_add(ctx, l, prev, i, 0)) != SFT_OK)
			return st;
		if ((st = piece_add(ctx, l, i, i + llen, 1)) != SFT_OK)
			return st;
		i += llen;
		prev = i;
	}
	if (prev < end)
		return piece_add(ctx, l, prev, end, 0);
	return SFT_OK;
}

/* Fold (span, is_match) runs by the split behaviour, in place (HF semantics). */
static void
fold_pieces(PieceList *l, SftSplitBehavior behavior, int invert)
{
	size_t		out = 0;
	int			previous_match = 0;
	int32_t		carry = -1;

	if (invert)
		for (size_t i = 0; i < l->n; i++)
			l->p[i].is_match = !l->p[i].is_match;
	for (size_t i = 0; i < l->n; i++)
	{
		Piece		p = l->p[i];

		switch (behavior)
		{
			case SFT_SPLIT_ISOLATED:
				l->p[out++] = p;
				break;
			case SFT_SPLIT_REMOVED:
				if (!p.is_match)
					l->p[out++] = p;
				break;
			case SFT_SPLIT_MERGED_WITH_PREVIOUS:
				if (p.is_match && !previous_match && out > 0)
					l->p[out - 1].end = p.end;
				else
					l->p[out++] = p;
				previous_match = p.is_match;
				break;
			case SFT_SPLIT_CONTIGUOUS:
				if (p.is_match == previous_match && out > 0)
					l->p[out - 1].end = p.end;
				else
					l->p[out++] = p;
				previous_match = p.is_match;
				break;
			case SFT_SPLIT_MERGED_WITH_NEXT:
				/* A match joins the piece after it, unless that is a match too. */
				if (carry >= 0)
					p.start = carry;
				carry = -1;
				if (l->p[i].is_match && i + 1 < l->n && !l->p[i + 1].is_match)
				{
					carry = p.start;
					break;
				}
				l->p[out++] = p;
				break;
		}
	}
	l->n = out;
}

static SftStatus
pretokenize(EncodeCtx *ctx, int depth, int32_t start, int32_t end)
{
	const SftPreStep *step;
	PieceList  *l;
	SftStatus	st;

	if (depth == ctx->tok->n_pre)
		return encode_word(ctx, start, end);
	step = &ctx->tok->pre[depth];
	l = &ctx->pieces[depth];
	l->n = 0;
	switch (step->kind)
	{
		case SFT_PRE_REGEX:
			st = regex_matches(ctx, step, l, start, end);
			break;
		case SFT_PRE_LITERAL:
		default:
			st = literal_matches(ctx, step, l, start, end);
			break;
	}
	if (st != SFT_OK)
		return st;
	fold_pieces(l, step->behavior, step->invert);
	for (size_t i = 0; i < l->n; i++)
	{
		/* deeper levels use their own lists, so l stays valid */
		if (l->p[i].end > l->p[i].start &&
			(st = pretokenize(ctx, depth + 1, l->p[i].start, l->p[i].end)) != SFT_OK)
			return st;
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Normalization of one segment
 * ------------------------------------------------------------------------- */

typedef struct NormText
{
	const char *s;
	size_t		len;
	const int32_t *map;			/* NULL: base + i */
	int32_t		base;
} NormText;

static inline int32_t
norm_src(const NormText *t, size_t i)
{
	return t->map ? t->map[i] : t->base + (int32_t) i;
}

/* Append cur[from, to) to out with its sources. */
static SftStatus
copy_span(const NormText *cur, size_t from, size_t to, SftBuf *out, SftIntVec *map)
{
	if (sft_buf_append(out, cur->s + from, to - from) != SFT_OK)
		return SFT_ERR_NOMEM;
	for (size_t i = from; i < to; i++)
		if (sft_intvec_push(map, norm_src(cur, i)) != SFT_OK)
			return SFT_ERR_NOMEM;
	return SFT_OK;
}

/* Append text whose bytes all come from source offset src. */
static SftStatus
insert_text(const char *s, size_t len, int32_t src, SftBuf *out, SftIntVec *map)
{
	if (sft_buf_append(out, s, len) != SFT_OK)
		return SFT_ERR_NOMEM;
	for (size_t i = 0; i < len; i++)
		if (sft_intvec_push(map, src) != SFT_OK)
			return SFT_ERR_NOMEM;
	return SFT_OK;
}

static SftStatus
replace_all(const NormText *cur, const char *pat, size_t plen, const char *with, size_t wlen,
			SftBuf *out, SftIntVec *map)
{
	size_t		i = 0;
	size_t		prev = 0;
	SftStatus	st;

	while (i + plen <= cur->len)
	{
		const char *hit = memchr(cur->s + i, pat[0], cur->len - plen + 1 - i);

		if (hit == NULL)
			break;
		i = (size_t) (hit - cur->s);
		if (memcmp(hit, pat, plen) != 0)
		{
			i++;
			continue;
		}
		if ((st = copy_span(cur, prev, i, out, map)) != SFT_OK ||
			(st = insert_text(with, wlen, norm_src(cur, i), out, map)) != SFT_OK)
			return st;
		i += plen;
		prev = i;
	}
	return copy_span(cur, prev, cur->len, out, map);
}

/* Run the normalizer steps and the segment prefix; result in ctx->ns etc. */
static SftStatus
normalize_segment(EncodeCtx *ctx, int32_t seg_start, int32_t seg_end)
{
	const SftTokenizer *tok = ctx->tok;
	NormText	cur = {ctx->input + seg_start, (size_t) (seg_end - seg_start), NULL, seg_start};
	int			which = 0;
	int			nsteps = tok->n_norm + (tok->prefix != SFT_PREFIX_NONE);

	for (int k = 0; k < nsteps; k++)
	{
		SftBuf	   *out = &ctx->nbuf[which];
		SftIntVec  *map = &ctx->nmapv[which];
		SftStatus	st = SFT_OK;

		out->len = 0;
		map->len = 0;
		if (cur.len == 0)
			break;
		if (k < tok->n_norm)
		{
			const SftNormStep *n = &tok->norm[k];

			if (n->kind == SFT_NORM_NFC)
			{
				if (sft_unicode_nfc_quick_ok(cur.s, cur.len))
					continue;
				if ((st = sft_unicode_nfc(cur.s, cur.len, out, map, 0, ctx->err)) != SFT_OK)
					return st;
				for (size_t i = 0; i < map->len; i++)
					map->data[i] = norm_src(&cur, (size_t) map->data[i]);
			}
			else if (n->kind == SFT_NORM_PREPEND)
			{
				if ((st = insert_text(n->a, n->alen, norm_src(&cur, 0), out, map)) == SFT_OK)
					st = copy_span(&cur, 0, cur.len, out, map);
			}
			else
				st = replace_all(&cur, n->a, n->alen, n->b, n->blen, out, map);
		}
		else if (tok->prefix == SFT_PREFIX_SPACE)
		{
			if (cur.s[0] == ' ')
				continue;
			if ((st = insert_text(" ", 1, norm_src(&cur, 0), out, map)) == SFT_OK)
				st = copy_span(&cur, 0, cur.len, out, map);
		}
		else
		{
			/* Metaspace: spaces become the replacement, then maybe a prefix. */
			int			prepend = tok->meta_prepend == 1 ||
				(tok->meta_prepend == 2 && norm_src(&cur, 0) == 0);
			NormText	replaced;
			SftBuf		mid;
			SftIntVec	midmap;

			sft_buf_init(&mid);
			sft_intvec_init(&midmap);
			st = replace_all(&cur, " ", 1, tok->meta_repl, tok->meta_repl_len, &mid, &midmap);
			if (st == SFT_OK)
			{
				replaced.s = mid.data;
				replaced.len = mid.len;
				replaced.map = midmap.data;
				replaced.base = 0;
				if (prepend && !(replaced.len >= tok->meta_repl_len &&
								 memcmp(replaced.s, tok->meta_repl, tok->meta_repl_len) == 0))
					st = insert_text(tok->meta_repl, tok->meta_repl_len, norm_src(&replaced, 0), out, map);
				if (st == SFT_OK)
					st = copy_span(&replaced, 0, replaced.len, out, map);
			}
			sft_buf_free(&mid);
			sft_intvec_free(&midmap);
		}
		if (st != SFT_OK)
			return sft_error(ctx->err, SFT_ERR_NOMEM, "out of memory normalizing %zu bytes", cur.len);
		cur.s = out->data ? out->data : "";
		cur.len = out->len;
		cur.map = map->data;
		cur.base = 0;
		which ^= 1;
	}
	ctx->ns = cur.s;
	ctx->nlen = cur.len;
	ctx->nmap = cur.map;
	ctx->nbase = cur.base;
	return SFT_OK;
}

static SftStatus
encode_segment(EncodeCtx *ctx, int32_t seg_start, int32_t seg_end)
{
	SftStatus	st;

	if (seg_end <= seg_start)
		return SFT_OK;
	if ((st = normalize_segment(ctx, seg_start, seg_end)) != SFT_OK)
		return st;
	if (ctx->nlen == 0)
		return SFT_OK;
	return pretokenize(ctx, 0, 0, (int32_t) ctx->nlen);
}

/* ---------------------------------------------------------------------------
 * Added tokens
 * ------------------------------------------------------------------------- */

/* Start of the character before position i (i > 0). */
static size_t
prev_char_start(const char *s, size_t i)
{
	do
		i--;
	while (i > 0 && ((unsigned char) s[i] & 0xC0) == 0x80);
	return i;
}

size_t
sft_tokenizer_special_at(const SftTokenizer *tok, const char *s, size_t n, int32_t *id)
{
	unsigned char b;

	if (n == 0)
		return 0;
	b = (unsigned char) s[0];
	if (!(tok->added_lead[b] & 1))
		return 0;
	/* added_order is longest first within a lead byte: the first match is the longest */
	for (int k = tok->added_first[b]; k < tok->added_first[b + 1]; k++)
	{
		const SftAddedToken *t = &tok->added[tok->added_order[k]];

		if (t->special && t->len > 0 && t->len <= n &&
			memcmp(s, tok->tok_text.data + t->off, t->len) == 0)
		{
			*id = t->id;
			return t->len;
		}
	}
	return 0;
}

/*
 * Leftmost-longest added token of the given class (normalized flag) in
 * [from, end); returns its index in tok->added or -1.
 */
static int
find_added(const EncodeCtx *ctx, int32_t from, int32_t end, int normalized, int32_t *at)
{
	const SftTokenizer *tok = ctx->tok;
	const unsigned char *s = (const unsigned char *) ctx->input;
	uint8_t		want = ctx->split_special ? 1 : 2;
	int			only = tok->added_only_lead[ctx->split_special ? 0 : 1];

	if (only == -1)
		return -1;
	for (int32_t i = from; i < end; i++)
	{
		unsigned char b;

		/* Usually every token starts with '<': jump from one to the next. */
		if (only >= 0)
		{
			const unsigned char *hit = memchr(s + i, only, (size_t) (end - i));

			if (hit == NULL)
				return -1;
			i = (int32_t) (hit - s);
		}
		b = s[i];
		if (!(tok->added_lead[b] & want))
			continue;
		for (int k = tok->added_first[b]; k < tok->added_first[b + 1]; k++)
		{
			const SftAddedToken *t = &tok->added[tok->added_order[k]];

			if (t->len == 0 || t->normalized != normalized || (t->special && !ctx->split_special))
				continue;
			if (t->len <= (uint32_t) (end - i) &&
				memcmp(s + i, tok->tok_text.data + t->off, t->len) == 0)
			{
				*at = i;
				return tok->added_order[k];
			}
		}
	}
	return -1;
}

static SftStatus
split_added(EncodeCtx *ctx, int32_t start, int32_t end, int normalized)
{
	const SftTokenizer *tok = ctx->tok;
	int32_t		pos = start;
	SftStatus	st;

	while (pos < end)
	{
		int32_t		ms = 0;
		int32_t		me;
		int			k = tok->n_added ? find_added(ctx, pos, end, normalized, &ms) : -1;
		const SftAddedToken *t;

		if (k < 0)
			break;
		t = &tok->added[k];
		me = ms + (int32_t) t->len;
		if (t->lstrip)
		{
			while (ms > pos)
			{
				size_t		p = prev_char_start(ctx->input, (size_t) ms);
				size_t		n;

				if (!sft_unicode_is_space(sft_utf8_decode((const unsigned char *) ctx->input + p, &n)))
					break;
				ms = (int32_t) p;
			}
		}
		if (t->rstrip)
		{
			while (me < end)
			{
				size_t		n;

				if (!sft_unicode_is_space(sft_utf8_decode((const unsigned char *) ctx->input + me, &n)))
					break;
				me += (int32_t) n;
			}
		}
		if (ms > pos)
		{
			st = normalized ? encode_segment(ctx, pos, ms) : split_added(ctx, pos, ms, 1);
			if (st != SFT_OK)
				return st;
		}
		if ((st = emit(ctx, t->id, ms)) != SFT_OK)
			return st;
		pos = me;
	}
	if (pos < end)
		return normalized ? encode_segment(ctx, pos, end) : split_added(ctx, pos, end, 1);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------- */

SftStatus
sft_tokenizer_encode(const SftTokenizer *tok, const char *text, size_t len,
					 int split_special, SftIntVec *ids, SftIntVec *offsets,
					 SftError *err)
{
	EncodeCtx	ctx;
	size_t		bad;
	size_t		ids_len0 = ids->len;
	size_t		offsets_len0 = offsets ? offsets->len : 0;
	SftStatus	st;

	if (len == 0)
		return SFT_OK;
	if (text == NULL)
		return sft_error(err, SFT_ERR_INVALID, "text is NULL");
	if (len > (size_t) INT32_MAX / 4)
		return sft_error(err, SFT_ERR_LIMIT, "text of %zu bytes is too long to tokenize (limit %d)",
						 len, INT32_MAX / 4);
	/* ASCII is valid UTF-8: check 8 bytes at a time before the full check. */
	{
		size_t		i = 0;
		uint64_t	high = 0;

		for (; i + 8 <= len; i += 8)
		{
			uint64_t	w;

			memcpy(&w, text + i, 8);
			high |= w;
		}
		for (; i < len; i++)
			high |= (unsigned char) text[i];
		bad = (high & 0x8080808080808080ULL) ? sft_utf8_invalid_offset(text, len) : (size_t) -1;
	}
	if (bad != (size_t) -1)
		return sft_error(err, SFT_ERR_INVALID, "text is not valid UTF-8 (byte offset %zu)", bad);

	memset(&ctx, 0, sizeof(ctx));
	ctx.tok = tok;
	ctx.input = text;
	ctx.split_special = split_special != 0;
	ctx.ids = ids;
	ctx.offsets = offsets;
	ctx.err = err;
	for (int i = 0; i < 2; i++)
	{
		sft_buf_init(&ctx.nbuf[i]);
		sft_intvec_init(&ctx.nmapv[i]);
	}
	if (tok->n_pre > 0)
	{
		ctx.md = pcre2_match_data_create(1, tok->pcre_gctx);
		ctx.mctx = pcre2_match_context_create(tok->pcre_gctx);
		if (ctx.md == NULL || ctx.mctx == NULL)
		{
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory for regex matching");
			goto done;
		}
	}
	st = split_added(&ctx, 0, (int32_t) len, 0);
done:
	for (int i = 0; i < 2; i++)
	{
		sft_buf_free(&ctx.nbuf[i]);
		sft_intvec_free(&ctx.nmapv[i]);
	}
	for (int i = 0; i < SFT_TOKENIZER_MAX_STEPS; i++)
		sft_free(ctx.pieces[i].p);
	sft_bpe_scratch_free(&ctx.bpe);
	if (ctx.md)
		pcre2_match_data_free(ctx.md);
	if (ctx.mctx)
		pcre2_match_context_free(ctx.mctx);
	if (ctx.jit_stack)
		pcre2_jit_stack_free(ctx.jit_stack);
	if (st != SFT_OK)
	{
		ids->len = ids_len0;
		if (offsets)
			offsets->len = offsets_len0;
	}
	return st;
}
