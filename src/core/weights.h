/*
 * weights.h: weight files.
 *   - Hugging Face safetensors (single file, or sharded with
 *     model.safetensors.index.json; F32, BF16, F16 converted to fp32) with HF
 *     tensor names, every header validated (shapes, dtypes, offsets inside
 *     the file, no overlaps, total size);
 *   - export back to safetensors + config.json (byte-exact round trip for fp32);
 *   - the byte streams weight files are read from and written to (the
 *     checkpoint format, checkpoint.h, uses them too).
 */
#ifndef SFT_CORE_WEIGHTS_H
#define SFT_CORE_WEIGHTS_H

#include "common.h"
#include "model.h"

/* Read config.json + safetensors from an HF model directory. */
SftStatus	sft_hf_load_dir(const char *dir, SftModel **out, SftError *err);

/* Write model.safetensors (fp32) + config.json into an existing directory. */
SftStatus	sft_hf_save_dir(const SftModel *model, const char *dir, SftError *err);

/*
 * Streams, so the glue can back them by large objects.  Both move exactly
 * len bytes or fail.  A read function that meets the end of its data returns
 * SFT_ERR_FORMAT (the checkpoint reader then reports "checkpoint truncated at
 * byte N"); other failures (SFT_ERR_IO ...) are reported with their message.
 * Writers and readers call them with pieces of at most a few MiB.
 */
typedef SftStatus (*SftWriteFn) (void *ctx, const void *data, size_t len, SftError *err);
typedef SftStatus (*SftReadFn) (void *ctx, void *data, size_t len, SftError *err);	/* exact */

/* In-memory streams (tests, fuzzing, small objects). */
typedef struct SftMemReader
{
	const unsigned char *data;
	size_t		len;
	size_t		pos;			/* bytes consumed so far */
} SftMemReader;

SftStatus	sft_mem_read(void *ctx /* SftMemReader */ , void *data, size_t len, SftError *err);
SftStatus	sft_buf_write(void *ctx /* SftBuf */ , const void *data, size_t len, SftError *err);

#endif							/* SFT_CORE_WEIGHTS_H */
