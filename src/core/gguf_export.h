/*
 * gguf_export.h: a model and its tokenizer as one GGUF file for llama.cpp
 * and Ollama (the file format is gguf.h; this is what goes into it).
 */
#ifndef SFT_CORE_GGUF_EXPORT_H
#define SFT_CORE_GGUF_EXPORT_H

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

typedef struct SftGgufExportOptions
{
	SftGgmlType dtype;			/* of the matrices; 1-D tensors (norms) stay f32 */
	const char *name;			/* general.name */
	const char *chat_template;	/* Jinja for tokenizer.chat_template, or NULL */
	int32_t		eot_id;			/* the template's end-of-turn token, or -1 */
} SftGgufExportOptions;

/*
 * Write the GGUF file, with the architecture row of the config's family
 * (llama, qwen2, qwen3, smollm3, gemma3).  Refused with SFT_ERR_UNSUPPORTED
 * (before anything is written) what llama.cpp cannot reproduce: a family or
 * config feature its graph for that architecture computes differently
 * (llama3 RoPE outside llama, SmolLM3 NoPE layers not every 4th, Gemma 3
 * sliding layers without one period or another attention scale, ...), a
 * tensor without a mapping, a pre-tokenizer without a llama.cpp equivalent, and
 * with SFT_ERR_INVALID token texts that appear twice (they crash llama.cpp's
 * loader) or merges whose tokens contain a space.
 */
SftStatus	sft_gguf_export_model(const SftModel *model, const SftTokenizer *tok,
								  const SftGgufExportOptions *opt, SftWriteFn write,
								  void *ctx, SftError *err);

/*
 * The pre-tokenizer name llama.cpp would use for this tokenizer
 * ("gpt-2", "llama-bpe", "qwen2", "smollm"; "default" for SentencePiece),
 * or SFT_ERR_UNSUPPORTED naming what has no equivalent.
 */
SftStatus	sft_gguf_pre_tokenizer_name(const SftTokenizer *tok, const char **name,
										SftError *err);

#endif							/* SFT_CORE_GGUF_EXPORT_H */
