/*
 * quant.h: reduced-precision copies of weight matrices for decoding, and
 * their matrix-vector products.
 *
 * Decode (one token at a time) is bound by reading the weights: every
 * generated token reads each matrix once.  Storing them in fewer bytes makes
 * a token cheaper, at a small cost in accuracy:
 *   bf16  the top 16 bits of the fp32 value, rounded to nearest even:
 *         2 bytes a weight, 8 bits of mantissa;
 *   q8_0  ggml's block layout: 32 consecutive weights of a row share one fp16
 *         scale d = max|w| / 127 and are stored as int8 round(w / d):
 *         34 bytes per 32 weights.  Rows must be a multiple of 32 long.
 * The input vector stays fp32 and products accumulate in fp32.  Each kernel
 * has a portable C form and, when built for AVX2 + FMA + F16C, a vector form;
 * unit tests check one against the other.
 */
#ifndef SFT_CORE_QUANT_H
#define SFT_CORE_QUANT_H

#include "common.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum SftDType
{
	SFT_DTYPE_F32 = 0,
	SFT_DTYPE_BF16,
	SFT_DTYPE_Q8_0
} SftDType;

#define SFT_DTYPE_COUNT 3
#define SFT_Q8_0_BLOCK 32

/* ggml's block_q8_0: fp16 scale, then 32 int8 values (34 bytes, no padding). */
typedef struct SftBlockQ8_0
{
	uint16_t	d;
	int8_t		qs[SFT_Q8_0_BLOCK];
} SftBlockQ8_0;

/* "f32", "bf16", "q8_0" */
const char *sft_dtype_name(SftDType dtype);
/* false for an unknown name */
bool		sft_dtype_from_name(const char *name, SftDType *dtype);
/* Bytes of a row of n values (n a multiple of 32 for q8_0). */
size_t		sft_dtype_row_bytes(SftDType dtype, int64_t n);

/*
 * IEEE half and bfloat16 <-> float: to float exactly (every 16-bit pattern
 * has an fp32 twin), from float rounded to nearest even (NaN stays NaN).
 */
uint16_t	sft_f32_to_f16(float f);
float		sft_f16_to_f32(uint16_t h);
uint16_t	sft_f32_to_bf16(float f);
float		sft_bf16_to_f32(uint16_t b);

/*
 * Convert n values (a multiple of 32 for q8_0) of row x into out, which holds
 * sft_dtype_row_bytes(dtype, n) bytes.
 */
void		sft_quantize_row(SftDType dtype, const float *x, void *out, int64_t n);
/* And back: the values the kernels compute with. */
void		sft_dequantize_row(SftDType dtype, const void *in, float *x, int64_t n);

/*
 * y[OUT] = w[OUT, IN] @ x[IN] with w in dtype, rows of
 * sft_dtype_row_bytes(dtype, IN) bytes back to back.
 */
void		sft_matvec_quant(SftDType dtype, float *y, const float *x, const void *w,
							 int IN, int OUT);
/*
 * The same for nx inputs, y[nx, OUT] = x[nx, IN] @ w^T, each row of w read
 * once for all of them; every y[j] is bitwise sft_matvec_quant's for x[j].
 */
void		sft_matvec_quant_rows(SftDType dtype, float *y, const float *x, int nx,
								  const void *w, int IN, int OUT);
/* The portable C form of the same (what the vector form is tested against). */
void		sft_matvec_quant_portable(SftDType dtype, float *y, const float *x, const void *w,
									  int IN, int OUT);

#endif							/* SFT_CORE_QUANT_H */
