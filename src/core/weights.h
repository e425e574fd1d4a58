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

/* Streams, so the glue can back them by large objects. */
typedef SftStatus (*SftWriteFn) (void *ctx, const void *data, size_t len, SftError *err);
typedef SftStatus (*SftReadFn) (void *ctx, void *data, size_t len, SftError *err);	/* exact */

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
 * NULL), step, and meta_json (allocated, or NULL).
 */
SftStatus	sft_checkpoint_read(SftReadFn read, void *ctx, SftModel **model,
								float **adam_m, float **adam_v, int64_t *step,
								char **meta_json, SftError *err);

#endif							/* SFT_CORE_WEIGHTS_H */
