/*
 * checkpoint.h: the project's checkpoint format (magic, version, config,
 * weights, optionally AdamW state and step), stored in large objects by the
 * glue: its layout, reader, writer and the helpers tests share.
 */
#ifndef SFT_CORE_CHECKPOINT_H
#define SFT_CORE_CHECKPOINT_H

#include "lora_adapter.h"
#include "weights.h"

#define SFT_CKPT_MAGIC "SFTCKPT"	/* 8 bytes with its NUL */
#define SFT_CKPT_VERSION 1
#define SFT_CKPT_FIXED_HEADER 48	/* bytes before the config text */
#define SFT_CKPT_FLAG_ADAMW 1u
#define SFT_CKPT_FLAG_ADAPTER 2u
#define SFT_CKPT_MAX_CONFIG ((uint64_t) 1 << 20)
#define SFT_CKPT_MAX_META ((uint64_t) 64 << 20)

/*
 * Checkpoint layout (little-endian), version 1:
 *   [0, 8)    magic "SFTCKPT\0"
 *   [8, 12)   u32 version = 1
 *   [12, 16)  u32 flags: bit 0 = AdamW moments follow the parameters;
 *             bit 1 = the slab is a LoRA adapter's (training checkpoints of
 *             LoRA runs): the config text is its adapter_config.json, the
 *             parameters its slab in table order (lora_adapter.h)
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

/*
 * The same for a LoRA run: the adapter's slab and its moments only (the
 * base is the run's and is not copied).  Reading needs the base's config
 * (shapes) and gives a new adapter; each kind refuses the other's file.
 */
SftStatus	sft_checkpoint_write_adapter(SftWriteFn write, void *ctx,
										 const SftLoraAdapter *adapter,
										 const SftCheckpointState *state, SftError *err);
SftStatus	sft_checkpoint_read_adapter(SftReadFn read, void *ctx, const SftLlamaConfig *base,
										SftLoraAdapter **adapter, float **adam_m,
										float **adam_v, int64_t *step, char **meta_json,
										SftError *err);

/*
 * CRC-32 (IEEE 802.3, reflected, as zlib.crc32): start with crc = 0 and feed
 * the data in any number of pieces.
 */
uint32_t	sft_crc32_update(uint32_t crc, const void *data, size_t len);

/* Bytes sft_checkpoint_write produces for this model and state. */
uint64_t	sft_checkpoint_size(const SftModel *model, const SftCheckpointState *state);

#endif							/* SFT_CORE_CHECKPOINT_H */
