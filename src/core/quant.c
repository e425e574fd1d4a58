/*
 * quant.c: bf16 and q8_0 weight rows and their matrix-vector products (see
 * quant.h).
 *
 * The q8_0 scale follows ggml's quantize_row_q8_0: d = max|x| / 127 rounded to
 * fp16, q = round(x / d) with the unrounded d, so a file llama.cpp quantizes
 * and one quantized here hold the same bytes.
 */
#include "quant.h"

#include <math.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define SFT_QUANT_AVX2 1
#endif

const char *
sft_dtype_name(SftDType dtype)
{
	switch (dtype)
	{
		case SFT_DTYPE_F32:
			return "f32";
		case SFT_DTYPE_BF16:
			return "bf16";
		case SFT_DTYPE_Q8_0:
			return "q8_0";
	}
	return "?";
}

bool
sft_dtype_from_name(const char *name, SftDType *dtype)
{
	for (int i = 0; i < SFT_DTYPE_COUNT; i++)
		if (strcmp(name, sft_dtype_name((SftDType) i)) == 0)
		{
			*dtype = (SftDType) i;
			return true;
		}
	return false;
}

size_t
sft_dtype_row_bytes(SftDType dtype, int64_t n)
{
	switch (dtype)
	{
		case SFT_DTYPE_F32:
			return (size_t) n * sizeof(float);
		case SFT_DTYPE_BF16:
			return (size_t) n * sizeof(uint16_t);
		case SFT_DTYPE_Q8_0:
			return (size_t) (n / SFT_Q8_0_BLOCK) * sizeof(SftBlockQ8_0);
	}
	return 0;
}

static uint32_t
f32_bits(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float
bits_f32(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

uint16_t
sft_f32_to_bf16(float f)
{
	uint32_t	u = f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t) ((u >> 16) | 0x40);	/* quiet NaN */
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t) (u >> 16);
}

uint16_t
sft_f32_to_f16(float f)
{
	uint32_t	u = f32_bits(f);
	uint32_t	sign = (u >> 16) & 0x8000u;
	uint32_t	abs = u & 0x7fffffffu;

	if (abs > 0x7f800000u)
		return (uint16_t) (sign | 0x7e00u);	/* NaN */
	if (abs >= 0x477ff000u)		/* rounds to >= 65520: infinity */
		return (uint16_t) (sign | 0x7c00u);
	if (abs < 0x38800000u)		/* below 2^-14: subnormal or zero */
	{
		/* scale into the subnormal grid (2^-24 units) and round to even */
		float		v = bits_f32(abs) * 16777216.0f;	/* 2^24 */
		uint32_t	q = (uint32_t) v;
		float		rest = v - (float) q;

		if (rest > 0.5f || (rest == 0.5f && (q & 1)))
			q++;
		return (uint16_t) (sign | q);
	}
	{
		uint32_t	mant = abs & 0x7fffffu;
		uint32_t	exp = (abs >> 23) - 127 + 15;
		uint32_t	h = (exp << 10) | (mant >> 13);
		uint32_t	rest = mant & 0x1fffu;

		if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
			h++;				/* may carry into the exponent: still right */
		return (uint16_t) (sign | h);
	}
}

float
sft_bf16_to_f32(uint16_t bits)
{
	/* bfloat16 is the upper half of an fp32. */
	return bits_f32((uint32_t) bits << 16);
}

float
sft_f16_to_f32(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exponent = (h >> 10) & 0x1f;
	uint32_t	mantissa = h & 0x3ff;

	if (exponent == 0x1f)		/* Inf and NaN keep their payload */
		return bits_f32(sign | 0x7f800000u | (mantissa << 13));
	if (exponent != 0)			/* normal: rebias 15 -> 127 */
		return bits_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
	if (mantissa == 0)
		return bits_f32(sign);

	/*
	 * Subnormal: mantissa * 2^-24.  Shift the leading 1 into the implicit bit
	 * position; every fp16 subnormal is a normal fp32.
	 */
	exponent = 113;				/* 127 - 15 + 1 */
	while ((mantissa & 0x400) == 0)
	{
		mantissa <<= 1;
		exponent--;
	}
	return bits_f32(sign | (exponent << 23) | ((mantissa & 0x3ff) << 13));
}

void
sft_quantize_row(SftDType dtype, const float *x, void *out, int64_t n)
{
	switch (dtype)
	{
		case SFT_DTYPE_F32:
			memcpy(out, x, (size_t) n * sizeof(float));
			break;
		case SFT_DTYPE_BF16:
			for (int64_t i = 0; i < n; i++)
				((uint16_t *) out)[i] = sft_f32_to_bf16(x[i]);
			break;
		case SFT_DTYPE_Q8_0:
			for (int64_t b = 0; b < n / SFT_Q8_0_BLOCK; b++)
			{
				const float *v = x + b * SFT_Q8_0_BLOCK;
				SftBlockQ8_0 *blk = (SftBlockQ8_0 *) out + b;
				float		amax = 0.0f;
				float		d,
							id;

				for (int j = 0; j < SFT_Q8_0_BLOCK; j++)
					amax = fmaxf(amax, fabsf(v[j]));
				d = amax / 127.0f;
				id = d != 0.0f ? 1.0f / d : 0.0f;
				blk->d = sft_f32_to_f16(d);
				for (int j = 0; j < SFT_Q8_0_BLOCK; j++)
					blk->qs[j] = (int8_t) roundf(v[j] * id);
			}
			break;
	}
}

void
sft_dequantize_row(SftDType dtype, const void *in, float *x, int64_t n)
{
	switch (dtype)
	{
		case SFT_DTYPE_F32:
			memcpy(x, in, (size_t) n * sizeof(float));
			break;
		case SFT_DTYPE_BF16:
			for (int64_t i = 0; i < n; i++)
				x[i] = sft_bf16_to_f32(((const uint16_t *) in)[i]);
			break;
		case SFT_DTYPE_Q8_0:
			for (int64_t b = 0; b < n / SFT_Q8_0_BLOCK; b++)
			{
				const SftBlockQ8_0 *blk = (const SftBlockQ8_0 *) in + b;
				float		d = sft_f16_to_f32(blk->d);

				for (int j = 0; j < SFT_Q8_0_BLOCK; j++)
					x[b * SFT_Q8_0_BLOCK + j] = d * (float) blk->qs[j];
			}
			break;
	}
}

/* ---------------------------------------------------------------------------
 * Portable kernels
 * ------------------------------------------------------------------------- */

static float
dot_bf16_portable(const uint16_t *w, const float *x, int n)
{
	float		acc[8] = {0};
	float		s = 0.0f;
	size_t		i = 0;

	for (; i + 8 <= (size_t) n; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += sft_bf16_to_f32(w[i + j]) * x[i + j];
	for (; i < (size_t) n; i++)
		s += sft_bf16_to_f32(w[i]) * x[i];
	for (int j = 0; j < 8; j++)
		s += acc[j];
	return s;
}

static float
dot_q8_0_portable(const SftBlockQ8_0 *w, const float *x, int n)
{
	float		s = 0.0f;

	for (int b = 0; b < n / SFT_Q8_0_BLOCK; b++)
	{
		const float *v = x + (size_t) b * SFT_Q8_0_BLOCK;
		float		acc = 0.0f;

		for (int j = 0; j < SFT_Q8_0_BLOCK; j++)
			acc += (float) w[b].qs[j] * v[j];
		s += sft_f16_to_f32(w[b].d) * acc;
	}
	return s;
}

static float
dot_f32_portable(const void *row, const float *x, int n)
{
	const float *r = row;
	float		s = 0.0f;

	for (int i = 0; i < n; i++)
		s += r[i] * x[i];
	return s;
}

static float
dot_bf16_portable_row(const void *row, const float *x, int n)
{
	return dot_bf16_portable(row, x, n);
}

static float
dot_q8_0_portable_row(const void *row, const float *x, int n)
{
	return dot_q8_0_portable(row, x, n);
}

typedef float (*SftDotFn) (const void *row, const float *x, int n);

/* y[nx, OUT] = x[nx, IN] @ w^T with dot; each row of w read once for every x */
static void
matvec_rows(SftDotFn dot, size_t row_bytes, float *y, const float *x, int nx, const void *w,
			int IN, int OUT)
{
	for (int o = 0; o < OUT; o++)
	{
		const void *r = (const char *) w + (size_t) o * row_bytes;

		for (int j = 0; j < nx; j++)
			y[(size_t) j * OUT + o] = dot(r, x + (size_t) j * IN, IN);
	}
}

static SftDotFn
portable_dot(SftDType dtype)
{
	return dtype == SFT_DTYPE_BF16 ? dot_bf16_portable_row :
		dtype == SFT_DTYPE_Q8_0 ? dot_q8_0_portable_row : dot_f32_portable;
}

void
sft_matvec_quant_portable(SftDType dtype, float *y, const float *x, const void *w,
						  int IN, int OUT)
{
	matvec_rows(portable_dot(dtype), sft_dtype_row_bytes(dtype, IN), y, x, 1, w, IN, OUT);
}

/* ---------------------------------------------------------------------------
 * AVX2 kernels
 * ------------------------------------------------------------------------- */

#ifdef SFT_QUANT_AVX2
static inline float
hsum256(__m256 v)
{
	__m128		s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static inline __m256
bf16x8_to_ps(__m128i h)
{
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static float
dot_bf16_avx2(const void *row, const float *x, int n)
{
	const uint16_t *w = row;
	__m256		a0 = _mm256_setzero_ps(),
				a1 = _mm256_setzero_ps();
	int			i = 0;
	float		s;

	for (; i + 16 <= n; i += 16)
	{
		__m256i		raw = _mm256_loadu_si256((const __m256i *) (w + i));

		a0 = _mm256_fmadd_ps(bf16x8_to_ps(_mm256_castsi256_si128(raw)),
							 _mm256_loadu_ps(x + i), a0);
		a1 = _mm256_fmadd_ps(bf16x8_to_ps(_mm256_extracti128_si256(raw, 1)),
							 _mm256_loadu_ps(x + i + 8), a1);
	}
	s = hsum256(_mm256_add_ps(a0, a1));
	for (; i < n; i++)
		s += sft_bf16_to_f32(w[i]) * x[i];
	return s;
}

static float
dot_q8_0_avx2(const void *row, const float *x, int n)
{
	const SftBlockQ8_0 *w = row;
	__m256		acc = _mm256_setzero_ps();

	for (int b = 0; b < n / SFT_Q8_0_BLOCK; b++)
	{
		const float *v = x + (size_t) b * SFT_Q8_0_BLOCK;
		const int8_t *q = w[b].qs;
		__m256		d = _mm256_set1_ps(_cvtsh_ss(w[b].d));
		__m256		s;

		s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) q))),
						  _mm256_loadu_ps(v));
		s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) (q + 8)))),
							_mm256_loadu_ps(v + 8), s);
		s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) (q + 16)))),
							_mm256_loadu_ps(v + 16), s);
		s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) (q + 24)))),
							_mm256_loadu_ps(v + 24), s);
		acc = _mm256_fmadd_ps(d, s, acc);
	}
	return hsum256(acc);
}
#endif

/* The fastest dot product this build has for dtype. */
static SftDotFn
best_dot(SftDType dtype)
{
#ifdef SFT_QUANT_AVX2
	if (dtype == SFT_DTYPE_BF16)
		return dot_bf16_avx2;
	if (dtype == SFT_DTYPE_Q8_0)
		return dot_q8_0_avx2;
#endif
	return portable_dot(dtype);
}

void
sft_matvec_quant(SftDType dtype, float *y, const float *x, const void *w, int IN, int OUT)
{
	matvec_rows(best_dot(dtype), sft_dtype_row_bytes(dtype, IN), y, x, 1, w, IN, OUT);
}

void
sft_matvec_quant_rows(SftDType dtype, float *y, const float *x, int nx, const void *w,
					  int IN, int OUT)
{
	matvec_rows(best_dot(dtype), sft_dtype_row_bytes(dtype, IN), y, x, nx, w, IN, OUT);
}
