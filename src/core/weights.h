/*
 * weights.h: weight files.
 *   - Hugging Face safetensors (single file, or sharded with
 *     model.safetensors.index.json; F32, BF16, F16 converted to fp32) with HF
 *     tensor names, every header validated (shapes, dtypes, offsets inside
 *     the file, no overlaps, total size);
 *   - export back to safetensors + config.json (byte-exact round trip for fp32);
 *   - the project's checkpoint format (magic, version, config, weights,
 *     optionally AdamW state and step) stored in large objects.
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

/*
 * Write dir/name atomically: produce streams the content into a temporary
 * file in dir, which is fsynced and renamed over name; on any failure the
 * temporary file is removed and name is untouched.
 */
typedef SftStatus (*SftProducer) (const void *arg, SftWriteFn write, void *ctx, SftError *err);
SftStatus	sft_write_file_atomically(const char *dir, const char *name, SftProducer produce,
									  const void *arg, SftError *err);

/* In-memory streams (tests, fuzzing, small objects). */
typedef struct SftMemReader
{
	const unsigned char *data;
	size_t		len;
	size_t		pos;			/* bytes consumed so far */
} SftMemReader;

SftStatus	sft_mem_read(void *ctx /* SftMemReader */ , void *data, size_t len, SftError *err);
SftStatus	sft_buf_write(void *ctx /* SftBuf */ , const void *data, size_t len, SftError *err);

/*
 * Checkpoint layout (little-endian), version 1:
 *   [0, 8)    magic "SFTCKPT\0"
 *   [8, 12)   u32 version = 1
 *   [12, 16)  u32 flags: bit 0 = AdamW moments follow the parameters
 *   [16, 24)  u64 config_len: bytes of config.json text (1 MiB at most)
 *   [24, 32)  u64 meta_len: bytes of the metadata JSON (64 MiB at most; 0 = none)
 *   [32, 40)  u64 n_params: must equal the count config.json implies
 *   [40, 48)  i64 step: optimizer steps taken (>= 0)
 *   config.json text, metadata JSON text
 *   u32 CRC-32 (IEEE, as zlib) of every byte above
 *   params fp32 [n_params], then if flagged m [n_params], v [n_params]
 *   u32 CRC-32 of the parameter and moment bytes
 * Both checksums are verified; every size is checked against config.json
 * before anything large is allocated.  Writing streams straight from the
 * slabs and reading streams straight into them: no second copy.
 * state may be NULL (weights only, step 0).  adam_m and adam_v are both set
 * or both NULL.
 */

typedef struct SftCheckpointState
{
	const float *adam_m;		/* [n_params] or NULL (weights only) */
	const float *adam_v;		/* [n_params] or NULL */
	int64_t		step;			/* optimizer steps taken */
	const char *meta_json;		/* free-form run metadata, or NULL */
} SftCheckpointState;

SftStatus	sft_checkpoint_write(SftWriteFn write, void *ctx, const SftModel *model,
								 const SftCheckpointState *state, SftError *err);

/*
 * Read a checkpoint: a new model; when adam_m/adam_v are not NULL and the
 * checkpoint holds optimizer state, newly allocated moments [n_params] (else
 * NULL), step, and meta_json (allocated, or NULL).  adam_m, adam_v, step and
 * meta_json may each be NULL when the caller does not want them.  Nothing is
 * returned (all outputs NULL / 0) on error.
 */
SftStatus	sft_checkpoint_read(SftReadFn read, void *ctx, SftModel **model,
								float **adam_m, float **adam_v, int64_t *step,
								char **meta_json, SftError *err);

#endif							/* SFT_CORE_WEIGHTS_H */
