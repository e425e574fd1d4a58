/*
 * tokenizer_internal.h: the SftTokenizer structure and the helpers shared by
 * tokenizer.c (loading, accessors), tokenizer_encode.c (normalise,
 * pre-tokenize, BPE) and tokenizer_decode.c.  Not part of the core's API.
 *
 * Vocabulary legend: V = vocabulary size (max id + 1, added tokens included),
 * M = number of merges, A = number of added tokens.
 */
#ifndef SFT_CORE_TOKENIZER_INTERNAL_H
#define SFT_CORE_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

/* Largest id we accept: bounds the id-indexed arrays of a hostile file. */
#define SFT_TOKENIZER_MAX_ID		((1 << 22) - 1)
#define SFT_TOKENIZER_MAX_STEPS		8	/* normalizer / pre-tokenizer / decoder steps */

/* ---------------------------------------------------------------------------
 * Hash maps
 * ------------------------------------------------------------------------- */

/*
 * Byte string -> int32, open addressing with the entry in the slot itself;
 * keys are copied into an arena, and keys of up to 8 bytes are also kept in
 * the slot, so looking up a short word touches one cache line.
 */
typedef struct SftStrMapSlot
{
	uint64_t	head;			/* first 8 key bytes, zero padded */
	uint32_t	hash;
	int32_t		value;
	uint32_t	off;			/* key offset in keys */
	uint32_t	len;			/* key length; SFT_STRMAP_EMPTY when free */
} SftStrMapSlot;

#define SFT_STRMAP_EMPTY UINT32_MAX

typedef struct SftStrMap
{
	SftStrMapSlot *slots;		/* [mask + 1] */
	uint32_t	mask;
	uint32_t	n;				/* entries in use */
	SftBuf		keys;
} SftStrMap;

void		sft_strmap_init(SftStrMap *map);
/* Key of a slot in use (iterate slots 0..mask, skipping len == EMPTY). */
#define SFT_STRMAP_KEY(map, slot) ((map)->keys.data + (slot)->off)
void		sft_strmap_free(SftStrMap *map);
/* Insert or overwrite; *existed (may be NULL) says whether the key was there. */
SftStatus	sft_strmap_put(SftStrMap *map, const char *key, size_t len, int32_t value, int *existed);
int32_t		sft_strmap_get(const SftStrMap *map, const char *key, size_t len);	/* -1 */
uint32_t	sft_hash_bytes(const char *s, size_t len);

/* (left id, right id) -> (rank, merged id), open addressing on a packed key. */
typedef struct SftMergeSlot
{
	uint64_t	key;			/* left << 32 | right; SFT_MERGE_EMPTY when free */
	int32_t		rank;
	int32_t		merged;
} SftMergeSlot;

#define SFT_MERGE_EMPTY UINT64_MAX

typedef struct SftMergeMap
{
	SftMergeSlot *slots;		/* [cap] */
	uint32_t	mask;
	uint32_t	bits;			/* log2(cap) */
	uint32_t	n;
} SftMergeMap;

static inline const SftMergeSlot *
sft_merge_get(const SftMergeMap *map, int32_t left, int32_t right)
{
	uint64_t	key = ((uint64_t) (uint32_t) left << 32) | (uint32_t) right;
	uint32_t	i;

	if (map->slots == NULL)
		return NULL;
	i = (uint32_t) ((key * 0x9E3779B97F4A7C15ULL) >> (64 - map->bits)) & map->mask;
	for (;;)
	{
		const SftMergeSlot *s = &map->slots[i];

		if (s->key == key)
			return s;
		if (s->key == SFT_MERGE_EMPTY)
			return NULL;
		i = (i + 1) & map->mask;
	}
}

/* ---------------------------------------------------------------------------
 * Pipeline steps parsed from tokenizer.json
 * ------------------------------------------------------------------------- */

typedef enum SftNormKind
{
	SFT_NORM_NFC,
	SFT_NORM_PREPEND,			/* a = text to prepend to a non-empty segment */
	SFT_NORM_REPLACE			/* every a (literal) becomes b */
} SftNormKind;

typedef struct SftNormStep
{
	SftNormKind kind;
	char	   *a;
	size_t		alen;
	char	   *b;
	size_t		blen;
} SftNormStep;

typedef enum SftSplitBehavior
{
	SFT_SPLIT_REMOVED,
	SFT_SPLIT_ISOLATED,
	SFT_SPLIT_MERGED_WITH_PREVIOUS,
	SFT_SPLIT_MERGED_WITH_NEXT,
	SFT_SPLIT_CONTIGUOUS
} SftSplitBehavior;

typedef enum SftPreKind
{
	SFT_PRE_REGEX,				/* Split with a Regex, ByteLevel's GPT-2 regex, Digits' \p{N} */
	SFT_PRE_LITERAL				/* Split with a String; Metaspace's split on the replacement */
} SftPreKind;

typedef struct SftPreStep
{
	SftPreKind	kind;
	SftSplitBehavior behavior;
	int			invert;
	pcre2_code *re;				/* SFT_PRE_REGEX */
	char	   *pattern;		/* SFT_PRE_REGEX: the source, for exports (GGUF's pre-tokenizer name) */
	char	   *literal;		/* SFT_PRE_LITERAL */
	size_t		literal_len;
} SftPreStep;

typedef enum SftDecKind
{
	SFT_DEC_BYTE_LEVEL,
	SFT_DEC_REPLACE,			/* a -> b in every token */
	SFT_DEC_BYTE_FALLBACK,
	SFT_DEC_FUSE,
	SFT_DEC_STRIP,				/* strip up to start/stop copies of char a */
	SFT_DEC_METASPACE			/* a = replacement; start = 1 unless prepend_scheme never */
} SftDecKind;

typedef struct SftDecStep
{
	SftDecKind	kind;
	char	   *a;
	size_t		alen;
	char	   *b;
	size_t		blen;
	int			start;
	int			stop;
} SftDecStep;

/* How a segment's first pre-tokenizer prefixes it (HF applies it per piece). */
typedef enum SftPrefixKind
{
	SFT_PREFIX_NONE,
	SFT_PREFIX_SPACE,			/* ByteLevel add_prefix_space: " " unless it starts with ' ' */
	SFT_PREFIX_METASPACE		/* Metaspace: ' ' -> replacement, then prepend per scheme */
} SftPrefixKind;

typedef struct SftAddedToken
{
	int32_t		id;
	uint32_t	off;			/* content offset in SftTokenizer.tok_text */
	uint32_t	len;
	uint8_t		special;
	uint8_t		lstrip;
	uint8_t		rstrip;
	uint8_t		normalized;
} SftAddedToken;

#define SFT_TOK_PRESENT	1
#define SFT_TOK_ADDED	2
#define SFT_TOK_SPECIAL	4

struct SftTokenizer
{
	SftTokenizerKind kind;

	/* Every id: its text (added tokens: content; model tokens: vocab key). */
	int32_t		vocab_size;		/* V */
	uint32_t   *tok_off;		/* [V] offset in tok_text */
	uint32_t   *tok_len;		/* [V] */
	uint8_t    *tok_flags;		/* [V] SFT_TOK_* */
	SftBuf		tok_text;

	SftStrMap	vocab;			/* model vocabulary: token text -> id */
	SftStrMap	added_map;		/* added token content -> id */
	SftMergeMap merges;			/* M merges */

	/* BPE model options */
	int32_t		unk_id;			/* -1: none */
	int			fuse_unk;
	int			byte_fallback;
	int			ignore_merges;
	int32_t		fallback_id[256];	/* <0xNN> ids, -1 when absent */

	/* Byte-level */
	int32_t		byte_id[256];	/* id of each byte's printable character, -1 */
	char		byte_char[256][2];	/* UTF-8 of each byte's character */
	uint8_t		byte_char_len[256];
	int16_t		char_byte[324];	/* inverse: code point -> byte, -1 */
	SftStrMap	raw_words;		/* word -> id where that id is exactly the word's BPE result
								 * (byte-level: keyed by raw bytes; SentencePiece: by text) */
	/*
	 * SentencePiece: no vocabulary token has the space marker right after
	 * another character, so BPE never merges across such a point and a word
	 * can be cut there into pieces encoded one by one (and looked up in
	 * raw_words).
	 */
	int			spm_split;
	char		spm_marker[4];	/* the space marker (UTF-8) */
	size_t		spm_marker_len;

	/* SentencePiece: ids of single code points below SFT_CHAR_ID_DIRECT */
	int32_t    *char_id;		/* [SFT_CHAR_ID_DIRECT] */

	/* Added tokens in id order, and a first-byte index for matching. */
	SftAddedToken *added;		/* [A] */
	int			n_added;
	int		   *added_order;	/* [A] indices sorted by first byte, longest first */
	int			added_first[257];	/* added_order range per first byte */
	uint8_t		added_lead[256];	/* bit 1: any token starts with byte; bit 2: a non-special one */
	int			added_only_lead[2];	/* [0] all tokens, [1] non-special: their single lead
									 * byte, -1 when none, -2 when several */
	int32_t    *special_ids;	/* [n_special] */
	int			n_special;

	SftNormStep norm[SFT_TOKENIZER_MAX_STEPS];
	int			n_norm;
	SftPrefixKind prefix;
	char	   *meta_repl;		/* Metaspace replacement character (UTF-8) */
	size_t		meta_repl_len;
	int			meta_prepend;	/* 0 never, 1 always, 2 first (only at input offset 0) */
	SftPreStep	pre[SFT_TOKENIZER_MAX_STEPS];
	int			n_pre;
	SftDecStep	dec[SFT_TOKENIZER_MAX_STEPS];
	int			n_dec;
	int			has_decoder;	/* 0: tokens joined with " " as HF does */

	pcre2_general_context *pcre_gctx;	/* routes PCRE2 memory through sft_alloc */
	pcre2_compile_context *pcre_cctx;

	/* tokenizer_config.json */
	char	   *bos_token;
	char	   *eos_token;
	char	   *pad_token;
	int32_t		bos_id;
	int32_t		eos_id;
	int32_t		pad_id;			/* -1: none */
	char	   *chat_template;
	int			add_bos_token;	/* -1 absent */

	/*
	 * tokenizer.json's post_processor (TemplateProcessing, alone or in a
	 * Sequence): the id of the special token its "single" template starts
	 * with, -1 when it starts with the sequence, -2 when there is none.
	 * Encoding never applies it (templates write BOS); exports describe
	 * with it what HF's tokenizer(text) does.
	 */
	int32_t		post_first_id;

	int			reference_mode; /* plain quadratic merge loop, no shortcuts */
};

#define SFT_CHAR_ID_DIRECT 0x3000

/* BPE over one pre-tokenized word (tokenizer_encode.c); used at load too. */
typedef struct SftBpeScratch
{
	int32_t    *id;				/* [n] symbol ids, -1 once merged away */
	int32_t    *start;			/* [n] byte offset of the symbol in the word */
	int32_t    *prev;			/* [n] */
	int32_t    *next;			/* [n] */
	size_t		cap;
	uint64_t   *heap;			/* [heap_cap] rank << 32 | position */
	size_t		heap_cap;
	size_t		n;
} SftBpeScratch;

void		sft_bpe_scratch_free(SftBpeScratch *s);
SftStatus	sft_bpe_word(const SftTokenizer *tok, const char *word, size_t len,
						 SftBpeScratch *s, int use_shortcut, SftError *err);

/* Compile a split pattern (White_Space-exact \s, see tokenizer.c). */
SftStatus	sft_tokenizer_compile_regex(SftTokenizer *tok, const char *pattern, size_t len,
										pcre2_code **out, SftError *err);

/* Compile pattern into step->re and keep its source in step->pattern. */
SftStatus	sft_tokenizer_compile_step(SftTokenizer *tok, SftPreStep *step, const char *pattern,
									   size_t len, SftError *err);

extern const char sft_gpt2_pattern[];

#endif							/* SFT_CORE_TOKENIZER_INTERNAL_H */
