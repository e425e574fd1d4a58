/*
 * checkpoint.h: helpers of the checkpoint format (weights.h declares the
 * format and its reader/writer) that tests and other code may share.
 */
#ifndef SFT_CORE_CHECKPOINT_H
#define SFT_CORE_CHECKPOINT_H

#include "weights.h"

#define SFT_CKPT_MAGIC "SFTCKPT"	/* 8 bytes with its NUL */
#define SFT_CKPT_VERSION 1
#define SFT_CKPT_FIXED_HEADER 48	/* bytes before the config text */
#define SFT_CKPT_FLAG_ADAMW 1u
#define SFT_CKPT_MAX_CONFIG ((uint64_t) 1 << 20)
#define SFT_CKPT_MAX_META ((uint64_t) 64 << 20)

/*
 * CRC-32 (IEEE 802.3, reflected, as zlib.crc32): start with crc = 0 and feed
 * the data in any number of pieces.
 */
uint32_t	sft_crc32_update(uint32_t crc, const void *data, size_t len);

/* Bytes sft_checkpoint_write produces for this model and state. */
uint64_t	sft_checkpoint_size(const SftModel *model, const SftCheckpointState *state);

#endif							/* SFT_CORE_CHECKPOINT_H */
