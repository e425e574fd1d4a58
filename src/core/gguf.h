/*
 * gguf.h: the GGUF file format (version 3) that llama.cpp and Ollama read:
 * a writer for exports and a strict reader for tests and fuzzing.
 *
 * Layout of a file (all integers little-endian):
 *   u32 magic "GGUF", u32 version = 3, u64 tensor count, u64 key/value count
 *   key/value pairs: string key, u32 value type, value
 *     (string = u64 byte length + bytes, no NUL; array = u32 element type,
 *      u64 count, elements; arrays of arrays are not used here)
 *   tensor infos: string name, u32 n_dims, u64 dims[n_dims] (ne0 first: the
 *     contiguous dimension, so the reverse of PyTorch's shape), u32 ggml type,
 *     u64 offset into the data region (a multiple of the alignment)
 *   padding to general.alignment (32 unless the file says), the data region:
 *     tensors in order, each padded to the alignment.
 *
 * Element types written: F32, F16, BF16 (both rounded to nearest even from
 * fp32, NaN kept a quiet NaN) and Q8_0 (blocks of 32 values along ne0: an
 * fp16 scale d = max|x| / 127 then 32 int8 round(x / d), 34 bytes), with the
 * conversions of quant.c, which the reduced-precision decode uses too.
 */
#ifndef SFT_CORE_GGUF_H
#define SFT_CORE_GGUF_H

#include "common.h"
#include "quant.h"
#include "weights.h"

#define SFT_GGUF_VERSION 3
#define SFT_GGUF_DEFAULT_ALIGNMENT 32
#define SFT_GGUF_MAX_DIMS 4
#define SFT_GGUF_QK8_0 SFT_Q8_0_BLOCK	/* values per q8_0 block */
#define SFT_GGUF_Q8_0_BLOCK_BYTES ((int) sizeof(SftBlockQ8_0))	/* 34 */

/* Value types of the key/value section (GGUF's numbering). */
typedef enum SftGgufValueType
{
	SFT_GGUF_UINT8 = 0,
	SFT_GGUF_INT8 = 1,
	SFT_GGUF_UINT16 = 2,
	SFT_GGUF_INT16 = 3,
	SFT_GGUF_UINT32 = 4,
	SFT_GGUF_INT32 = 5,
	SFT_GGUF_FLOAT32 = 6,
	SFT_GGUF_BOOL = 7,
	SFT_GGUF_STRING = 8,
	SFT_GGUF_ARRAY = 9,
	SFT_GGUF_UINT64 = 10,
	SFT_GGUF_INT64 = 11,
	SFT_GGUF_FLOAT64 = 12,
	SFT_GGUF_N_VALUE_TYPES
} SftGgufValueType;

/* Tensor element types (ggml's numbering); only these four are written or read. */
typedef enum SftGgmlType
{
	SFT_GGML_F32 = 0,
	SFT_GGML_F16 = 1,
	SFT_GGML_Q8_0 = 8,
	SFT_GGML_BF16 = 30
} SftGgmlType;

/* "f32", "f16", "bf16", "q8_0"; anything else is SFT_ERR_INVALID listing them. */
SftStatus	sft_ggml_type_from_name(const char *name, SftGgmlType *out, SftError *err);
const char *sft_ggml_type_name(SftGgmlType type);

/* Bytes of n values of type along ne0 (q8_0: n a multiple of 32). */
size_t		sft_ggml_row_bytes(SftGgmlType type, uint64_t n);

/* ---------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------- */

typedef struct SftGgufTensorOut
{
	char	   *name;
	int			n_dims;
	uint64_t	ne[SFT_GGUF_MAX_DIMS];	/* GGUF order: ne[0] contiguous */
	SftGgmlType type;
	const float *data;			/* fp32 source in the same layout, or NULL with fill */
	/* rows produced on demand (for permuted tensors): row r of ne[0] floats */
	void		(*fill_row) (const void *arg, uint64_t row, float *out);
	const void *fill_arg;
	uint64_t	offset;			/* in the data region, set by the writer */
} SftGgufTensorOut;

typedef struct SftGgufWriter
{
	SftBuf		kv;				/* serialized key/value pairs */
	uint64_t	n_kv;
	SftGgufTensorOut *tensors;
	int			n_tensors;
	int			cap_tensors;
	SftStatus	status;			/* first failure of an add_* call */
	SftError	error;
} SftGgufWriter;

void		sft_gguf_writer_init(SftGgufWriter *w);
void		sft_gguf_writer_free(SftGgufWriter *w);

/*
 * Add one key/value pair.  Failures (out of memory) are remembered and
 * returned by sft_gguf_write, so a run of add calls needs no checks.
 */
void		sft_gguf_add_string(SftGgufWriter *w, const char *key, const char *s, size_t len);
void		sft_gguf_add_u32(SftGgufWriter *w, const char *key, uint32_t v);
void		sft_gguf_add_i32(SftGgufWriter *w, const char *key, int32_t v);
void		sft_gguf_add_f32(SftGgufWriter *w, const char *key, float v);
void		sft_gguf_add_bool(SftGgufWriter *w, const char *key, int v);
/* Arrays: strings given as (pointer, length) pairs. */
void		sft_gguf_add_string_array(SftGgufWriter *w, const char *key, uint64_t n,
									  const char *const *s, const size_t *len);
void		sft_gguf_add_f32_array(SftGgufWriter *w, const char *key, uint64_t n, const float *v);
void		sft_gguf_add_i32_array(SftGgufWriter *w, const char *key, uint64_t n, const int32_t *v);

/*
 * Add a tensor (ne in GGUF order) to be converted from fp32 when written.
 * Either data (ne[0] * ... floats, ne[0] contiguous) or fill_row.  q8_0
 * needs ne[0] % 32 == 0 (SFT_ERR_INVALID otherwise).
 */
void		sft_gguf_add_tensor(SftGgufWriter *w, const char *name, int n_dims,
								const uint64_t *ne, SftGgmlType type, const float *data,
								void (*fill_row) (const void *arg, uint64_t row, float *out),
								const void *fill_arg);

/* Write the whole file through write (in pieces of at most a few MiB). */
SftStatus	sft_gguf_write(SftGgufWriter *w, SftWriteFn write, void *ctx, SftError *err);

/* ---------------------------------------------------------------------------
 * Reader (an in-memory file)
 * ------------------------------------------------------------------------- */

typedef struct SftGgufValue
{
	SftGgufValueType type;
	SftGgufValueType elem_type; /* arrays */
	uint64_t	count;			/* arrays: element count; else 1 */
	const unsigned char *data;	/* the value's bytes in the file (arrays: first element) */
	uint64_t	len;			/* strings: byte length */
} SftGgufValue;

typedef struct SftGgufKv
{
	const char *key;			/* points into the file (not NUL-terminated) */
	uint64_t	key_len;
	SftGgufValue value;
} SftGgufKv;

typedef struct SftGgufTensorIn
{
	const char *name;
	uint64_t	name_len;
	int			n_dims;
	uint64_t	ne[SFT_GGUF_MAX_DIMS];
	uint32_t	type;
	uint64_t	offset;
	const unsigned char *data;	/* inside the file, bounds checked */
	uint64_t	nbytes;
} SftGgufTensorIn;

typedef struct SftGgufFile
{
	uint32_t	version;
	uint64_t	alignment;
	SftGgufKv  *kv;
	uint64_t	n_kv;
	SftGgufTensorIn *tensors;
	uint64_t	n_tensors;
} SftGgufFile;

/*
 * Parse and validate a whole file held in memory: magic, version 3, every
 * length inside the file, value types known, strings valid UTF-8, no
 * duplicate key or tensor name, general.alignment a u32 power of two,
 * tensor types among the four above with sizes that fit (no overflow),
 * offsets aligned and tensors inside the data region without overlap.
 * The result points into data, which must outlive it.
 */
SftStatus	sft_gguf_parse(const unsigned char *data, size_t len, SftGgufFile *out,
						   SftError *err);
void		sft_gguf_file_free(SftGgufFile *f);

const SftGgufKv *sft_gguf_find_kv(const SftGgufFile *f, const char *key);
const SftGgufTensorIn *sft_gguf_find_tensor(const SftGgufFile *f, const char *name);
/*
 * The elements of a string array (s and len hold v->count entries), or the
 * string itself (one entry).  SFT_ERR_INVALID for other types.
 */
SftStatus	sft_gguf_strings(const SftGgufValue *v, const char **s, uint64_t *len,
							 SftError *err);
/* Tensor values as fp32 (out holds every element). */
SftStatus	sft_gguf_tensor_to_f32(const SftGgufTensorIn *t, float *out, SftError *err);

#endif							/* SFT_CORE_GGUF_H */
