/*
 * safetensors.h: the safetensors format (Hugging Face) at the level of one
 * file or one in-memory buffer.  weights.c builds directory loading (single
 * file or shards) and export on top of it; the fuzz target drives
 * sft_safetensors_load_buffer directly.
 *
 * Layout of a file:
 *   [0, 8)          u64 little-endian N: length of the JSON header
 *   [8, 8 + N)      UTF-8 JSON object: "__metadata__": {str: str} (optional)
 *                   and for every tensor
 *                   "name": {"dtype": "F32", "shape": [d0, ...],
 *                            "data_offsets": [begin, end]}
 *                   (offsets relative to the data region), then optional
 *                   trailing whitespace
 *   [8 + N, size)   the data region: tensors back to back
 *
 * Validation, as strict as the reference implementation: the header fits in
 * the file and in SFT_ST_MAX_HEADER bytes; every entry has exactly dtype,
 * shape and data_offsets; dtypes are known; end - begin = numel * itemsize
 * (no overflow); sorted by offset, the tensors tile the data region exactly
 * (no gap, no overlap, nothing after the last one).
 */
#ifndef SFT_CORE_SAFETENSORS_H
#define SFT_CORE_SAFETENSORS_H

#include "weights.h"

#define SFT_ST_MAX_HEADER ((uint64_t) 100 << 20)	/* as the reference library */
#define SFT_ST_MAX_NDIM 8

typedef enum SftStDtype
{
	SFT_ST_BOOL = 0,
	SFT_ST_U8,
	SFT_ST_I8,
	SFT_ST_F8_E5M2,
	SFT_ST_F8_E4M3,
	SFT_ST_I16,
	SFT_ST_U16,
	SFT_ST_F16,
	SFT_ST_BF16,
	SFT_ST_I32,
	SFT_ST_U32,
	SFT_ST_F32,
	SFT_ST_I64,
	SFT_ST_U64,
	SFT_ST_F64,
	SFT_ST_N_DTYPES
} SftStDtype;

typedef struct SftStTensor
{
	char	   *name;			/* NUL-terminated copy (sft_alloc) */
	SftStDtype	dtype;
	int			ndim;			/* 0 .. SFT_ST_MAX_NDIM */
	uint64_t	shape[SFT_ST_MAX_NDIM];
	uint64_t	numel;
	uint64_t	begin;			/* byte offsets into the data region */
	uint64_t	end;
} SftStTensor;

typedef struct SftStHeader
{
	uint64_t	data_start;		/* file offset of the data region: 8 + N */
	uint64_t	data_len;		/* bytes of the data region */
	int			n_tensors;
	SftStTensor *tensors;		/* [n_tensors] sorted by begin */
} SftStHeader;

/*
 * Random access to a file or buffer: exactly len bytes at offset, or an error
 * (SFT_ERR_IO / SFT_ERR_FORMAT when the source ends early).
 */
typedef SftStatus (*SftReadAtFn) (void *ctx, uint64_t offset, void *dst, size_t len,
								  SftError *err);

const char *sft_st_dtype_name(SftStDtype dtype);
size_t		sft_st_dtype_size(SftStDtype dtype);

/*
 * Parse and validate the JSON header (json[0..len), the N bytes after the
 * length prefix) against a data region of data_len bytes.  out->data_start
 * is set to 8 + len.  On error *out is left empty.
 */
SftStatus	sft_st_parse_header(const char *json, size_t len, uint64_t data_len,
								SftStHeader *out, SftError *err);
/* Read the length prefix and the header of a source of file_size bytes. */
SftStatus	sft_st_read_header(SftReadAtFn read_at, void *ctx, uint64_t file_size,
							   SftStHeader *out, SftError *err);
void		sft_st_header_free(SftStHeader *header);

/*
 * Copy the header's tensors into the model's parameter slab, converting to
 * fp32.  Every tensor must be a model tensor with the model's shape and a
 * dtype of F32, BF16 or F16, or one we ignore on purpose:
 *   - "model.rotary_emb.inv_freq", "model.layers.N.self_attn.rotary_emb.inv_freq"
 *     (buffers older transformers saved; we recompute them from rope_theta);
 *   - "lm_head.weight" when the embeddings are tied, with shape [V, C]:
 *     transformers ignores it in that case too (the tie wins), so do we.
 * Anything else is an error naming the tensor.  seen[tensor_count] marks
 * model tensors already loaded (by this or an earlier shard): loading one
 * twice is an error.  Non-finite values (NaN, Inf) are an error naming the
 * tensor and element: such a model cannot be trained.
 */
SftStatus	sft_st_load_tensors(const SftStHeader *header, SftReadAtFn read_at, void *ctx,
								SftModel *model, uint8_t *seen, SftError *err);

/* After the last file: every model tensor was loaded (else names the first missing). */
SftStatus	sft_st_check_complete(const SftModel *model, const uint8_t *seen, SftError *err);

/* A whole safetensors file in memory into the model (header, tensors, completeness). */
SftStatus	sft_safetensors_load_buffer(const void *data, size_t len, SftModel *model,
										SftError *err);

/*
 * Read one tensor of a validated header (F32, BF16 or F16) as fp32 into dst
 * [t->numel]; non-finite values are an error naming the tensor and element.
 */
SftStatus	sft_st_read_f32(const SftStHeader *header, const SftStTensor *t,
							SftReadAtFn read_at, void *ctx, float *dst, SftError *err);

/* Bytes in memory as a source for the functions above (ctx: SftStBufferSource). */
typedef struct SftStBufferSource
{
	const unsigned char *data;
	size_t		len;
} SftStBufferSource;

SftStatus	sft_st_buffer_read_at(void *ctx, uint64_t offset, void *dst, size_t len,
								  SftError *err);

/* A tensor to write: fp32 data [numel] of shape [shape[0]] or [shape[0], shape[1]]. */
typedef struct SftStWriteTensor
{
	const char *name;
	int			ndim;			/* 1 or 2 */
	int64_t		shape[2];
	size_t		numel;
	const float *data;
} SftStWriteTensor;

/*
 * Write tensors[0..n) in that order as a safetensors file: F32, metadata
 * {"format": "pt"} (transformers requires it), header padded with spaces to
 * a multiple of 8 so the data is aligned.  Deterministic.
 */
SftStatus	sft_st_write(const SftStWriteTensor *tensors, int n, SftWriteFn write, void *ctx,
						 SftError *err);

/*
 * Write the model as safetensors (sft_st_write): tensors in the model's
 * table order (the slab order).  The same model gives the same bytes.
 */
SftStatus	sft_safetensors_write(const SftModel *model, SftWriteFn write, void *ctx,
								  SftError *err);

#endif							/* SFT_CORE_SAFETENSORS_H */
