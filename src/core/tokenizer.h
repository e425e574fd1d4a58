/*
 * tokenizer.h: exact Hugging Face tokenizers in C.
 *
 * Two algorithms, chosen from tokenizer.json's "model" and "pre_tokenizer" /
 * "decoder" sections:
 *   - byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen): regex pre-tokenizer split
 *     (PCRE2, pattern from the file; GPT-2's built-in pattern for
 *     vocab.json + merges.txt), optional NFC normaliser, bytes mapped to
 *     printable unicode, ranked merges;
 *   - SentencePiece-style BPE (Llama 2, TinyLlama, Mistral): "▁" for spaces,
 *     prefix "▁", byte fallback to <0xNN> tokens.
 * Added tokens (special or not) are matched as whole tokens when the caller
 * asks for it (split_special); otherwise their text is encoded as plain text,
 * so that user content cannot inject control tokens.
 *
 * Encoding never adds BOS/EOS on its own: templates add them explicitly.
 */
#ifndef SFT_CORE_TOKENIZER_H
#define SFT_CORE_TOKENIZER_H

#include "common.h"

typedef struct SftTokenizer SftTokenizer;

typedef enum SftTokenizerKind
{
	SFT_TOKENIZER_BYTE_BPE = 0,
	SFT_TOKENIZER_SENTENCEPIECE_BPE
} SftTokenizerKind;

/*
 * Build from tokenizer.json text and, optionally, tokenizer_config.json text
 * (config may be NULL).  The inputs need not be NUL-terminated and are not
 * referenced after return.
 */
SftStatus	sft_tokenizer_from_hf(const char *tokenizer_json, size_t tokenizer_len,
								  const char *config_json, size_t config_len,
								  SftTokenizer **out, SftError *err);

/* Build from GPT-2 style vocab.json + merges.txt (GPT-2 split pattern). */
SftStatus	sft_tokenizer_from_vocab_merges(const char *vocab_json, size_t vocab_len,
											const char *merges_txt, size_t merges_len,
											SftTokenizer **out, SftError *err);

void		sft_tokenizer_free(SftTokenizer *tok);

/*
 * Encode UTF-8 text (invalid UTF-8 is SFT_ERR_INVALID naming the byte offset;
 * on any error ids/offsets are left as they were).  split_special: special
 * added tokens in the text become their ids; otherwise their text is encoded
 * as ordinary text (non-special added tokens are always matched, as in HF).
 * Appends to ids; when offsets is not NULL, appends for every token the byte
 * offset in text where the token's first byte came from (monotonic
 * non-decreasing), so callers can map tokens back to spans of the input.
 */
SftStatus	sft_tokenizer_encode(const SftTokenizer *tok, const char *text, size_t len,
								 int split_special, SftIntVec *ids, SftIntVec *offsets,
								 SftError *err);

/*
 * Decode ids to text (appended to out) as HF's decode(): the file's decoder
 * steps, special tokens dropped when skip_special.  Unknown ids are
 * SFT_ERR_INVALID.  The result is always valid UTF-8: ids that stop inside a
 * character (a partial sequence) give U+FFFD for each maximal invalid byte
 * run, exactly as HF (Rust from_utf8_lossy; ByteFallback: one per byte).
 */
SftStatus	sft_tokenizer_decode(const SftTokenizer *tok, const int32_t *ids, size_t n,
								 int skip_special, SftBuf *out, SftError *err);

SftTokenizerKind sft_tokenizer_kind(const SftTokenizer *tok);
const char *sft_tokenizer_kind_name(SftTokenizerKind kind);	/* "byte_bpe", "sentencepiece_bpe" */
int32_t		sft_tokenizer_vocab_size(const SftTokenizer *tok);	/* max id + 1 */
int32_t		sft_tokenizer_token_to_id(const SftTokenizer *tok, const char *s, size_t len);	/* -1 */
const char *sft_tokenizer_id_to_token(const SftTokenizer *tok, int32_t id, size_t *len);	/* NULL */
int			sft_tokenizer_is_special(const SftTokenizer *tok, int32_t id);

/*
 * The longest special added token whose text starts s[0..n): its length in
 * bytes and *id, or 0 when none does (chat templates: which special tokens a
 * template wrote).
 */
size_t		sft_tokenizer_special_at(const SftTokenizer *tok, const char *s, size_t n, int32_t *id);

/* Added tokens with special = true, in id order (for the catalog row). */
int			sft_tokenizer_special_count(const SftTokenizer *tok);
int32_t		sft_tokenizer_special_id(const SftTokenizer *tok, int i);

/*
 * What tokenizer_config.json said (NULL / -1 when absent): bos and eos token
 * text and ids, and the raw Jinja chat_template string.
 */
const char *sft_tokenizer_bos_token(const SftTokenizer *tok);
const char *sft_tokenizer_eos_token(const SftTokenizer *tok);
int32_t		sft_tokenizer_bos_id(const SftTokenizer *tok);
int32_t		sft_tokenizer_eos_id(const SftTokenizer *tok);
const char *sft_tokenizer_chat_template(const SftTokenizer *tok);
/* tokenizer_config.json add_bos_token: 1 / 0, or -1 when absent. */
int			sft_tokenizer_add_bos_token(const SftTokenizer *tok);

/*
 * Tests only: encode with the plain quadratic merge loop and without the
 * whole-word shortcut, so the fast path can be compared against it.
 */
void		sft_tokenizer_set_reference_mode(SftTokenizer *tok, int on);

#endif							/* SFT_CORE_TOKENIZER_H */
