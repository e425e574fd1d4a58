/*
 * kernels.c: forward/backward kernel pairs of the Llama model (see
 * kernels.h for the conventions).  Matrix products are cblas_sgemm calls;
 * the rest are plain loops written so gcc -O3 vectorises them.
 */
/*
 * Without -fno-trapping-math gcc will not if-convert the float comparisons
 * in these loops (exp's input clamp, dropout's select), so they would stay
 * scalar.  Nothing in the core enables floating-point traps.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <cblas.h>
#include <math.h>

/*
 * exp(x) in float, branch-free so loops over it vectorise: 2^n * e^r with
 * n = round(x / ln2), r = x - n ln2 (two-constant split of ln2) and a degree-7
 * Taylor polynomial on |r| <= ln2/2 (truncation error < 6e-9 relative).
 * Measured max relative error vs libm expf: ~2e-7 (tested).  Inputs are
 * clamped to [-87, 88]: below, the result is ~1.6e-38 instead of a smaller
 * denormal, which the callers (softmax, sigmoid) cannot tell from 0.
 */
static inline float
sft_expf(float x)
{
	float		n,
				r,
				p,
				scale;
	int32_t		ni,
				bits;

	/* written so that NaN (from a model whose activations overflow) clamps too:
	 * converting NaN to an integer below would be undefined behaviour */
	x = x > -87.0f ? x : -87.0f;
	x = x > 88.0f ? 88.0f : x;
	/* round(x / ln2): the operand of the cast is positive, so truncation floors */
	ni = (int32_t) (x * 1.44269504088896341f + 127.5f) - 127;
	n = (float) ni;
	r = x - n * 0.693359375f;
	r = r + n * 2.12194440e-4f;
	p = 1.0f / 5040.0f;
	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	bits = (ni + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

void
sft_vec_exp(float *y, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] = sft_expf(x[i]);
}


/* ---------------------------------------------------------------------------
 * Vector helpers: eight partial sums so the loop vectorises without
 * -ffast-math (the summation order is fixed, so results are deterministic).
 * ------------------------------------------------------------------------- */

float
sft_vec_sum(const float *x, int n)
{
	float		acc[8] = {0};
	float		s = 0.0f;
	size_t		i = 0,
				len = n > 0 ? (size_t) n : 0;

	for (; i + 8 <= len; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += x[i + j];
	for (; i < len; i++)
		s += x[i];
	for (int j = 0; j < 8; j++)
		s += acc[j];
	return s;
}

float
sft_vec_dot(const float *a, const float *b, int n)
{
	float		acc[8] = {0};
	float		s = 0.0f;
	size_t		i = 0,
				len = n > 0 ? (size_t) n : 0;

	for (; i + 8 <= len; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += a[i + j] * b[i + j];
	for (; i < len; i++)
		s += a[i] * b[i];
	for (int j = 0; j < 8; j++)
		s += acc[j];
	return s;
}

float
sft_vec_max(const float *x, int n)
{
	float		acc[8];
	float		m = -INFINITY;
	size_t		i = 0,
				len = n > 0 ? (size_t) n : 0;

	for (int j = 0; j < 8; j++)
		acc[j] = -INFINITY;
	for (; i + 8 <= len; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
	for (; i < len; i++)
		m = x[i] > m ? x[i] : m;
	for (int j = 0; j < 8; j++)
		m = acc[j] > m ? acc[j] : m;
	return m;
}

/* ---------------------------------------------------------------------------
 * Matrix product
 * ------------------------------------------------------------------------- */

void
matmul_forward(float *out, const float *x, const float *w, int T, int IN, int OUT)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OUT, IN,
				1.0f, x, IN, w, IN, 0.0f, out, OUT);
}

void
matmul_backward(float *dx, float *dw, const float *dout, const float *x,
				const float *w, int T, int IN, int OUT)
{
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, IN, OUT,
					1.0f, dout, OUT, w, IN, 1.0f, dx, IN);
	if (dw)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, T,
					1.0f, dout, OUT, x, IN, 1.0f, dw, IN);
}

/*
 * A tile of a matrix-vector product over several inputs: out[r][j] =
 * row[r] . x[j] for nr <= 2 weight rows and nx <= 3 inputs (x[j] at
 * x + j ldx), so each loaded piece of a row serves every input and each piece
 * of an input every row (12 vector accumulators, the most AVX2's 16 registers
 * leave room for).  Every dot product is the same sums in the same order
 * whatever the tile: 16 lanes in two vector accumulators with a fused
 * multiply-add per element, a fused tail, then the lanes added in order to
 * the tail's sum; so a sequence's product in a batch is bitwise its product
 * alone.
 */
#define MATVEC_ROWS 2
#define MATVEC_XS 3

static inline __attribute__((always_inline)) void
matvec_tile(float out[MATVEC_ROWS][MATVEC_XS], const float *const *rows, int nr,
			const float *restrict x, size_t ldx, int nx, size_t n)
{
	size_t		i = 0;
	float		acc[MATVEC_ROWS][MATVEC_XS][16];

#if defined(__AVX2__) && defined(__FMA__)
	__m256		a0[MATVEC_ROWS][MATVEC_XS],
				a1[MATVEC_ROWS][MATVEC_XS];

	for (int r = 0; r < nr; r++)
		for (int j = 0; j < nx; j++)
			a0[r][j] = a1[r][j] = _mm256_setzero_ps();
	for (; i + 16 <= n; i += 16)
		for (int r = 0; r < nr; r++)
		{
			__m256		r0 = _mm256_loadu_ps(rows[r] + i),
						r1 = _mm256_loadu_ps(rows[r] + i + 8);

			for (int j = 0; j < nx; j++)
			{
				a0[r][j] = _mm256_fmadd_ps(r0, _mm256_loadu_ps(x + j * ldx + i), a0[r][j]);
				a1[r][j] = _mm256_fmadd_ps(r1, _mm256_loadu_ps(x + j * ldx + i + 8), a1[r][j]);
			}
		}
	for (int r = 0; r < nr; r++)
		for (int j = 0; j < nx; j++)
		{
			_mm256_storeu_ps(acc[r][j], a0[r][j]);
			_mm256_storeu_ps(acc[r][j] + 8, a1[r][j]);
		}
#else
	for (int r = 0; r < nr; r++)
		for (int j = 0; j < nx; j++)
			memset(acc[r][j], 0, sizeof(acc[r][j]));
	for (; i + 16 <= n; i += 16)
		for (int r = 0; r < nr; r++)
			for (int j = 0; j < nx; j++)
				for (int l = 0; l < 16; l++)
					acc[r][j][l] = fmaf(rows[r][i + l], x[j * ldx + i + l], acc[r][j][l]);
#endif
	for (int r = 0; r < nr; r++)
		for (int j = 0; j < nx; j++)
		{
			const float *xj = x + j * ldx;
			float		s = 0.0f;

			for (size_t k = i; k < n; k++)
				s = fmaf(rows[r][k], xj[k], s);
			for (int l = 0; l < 16; l++)
				s += acc[r][j][l];
			out[r][j] = s;
		}
}

void
matvec_forward(float *restrict y, const float *restrict x, const float *restrict w,
			   int IN, int OUT)
{
	matvec_forward_rows(y, x, 1, w, IN, OUT);
}

void
matvec_forward_rows(float *restrict y, const float *restrict x, int nx,
					const float *restrict w, int IN, int OUT)
{
	/* one input: a row at a time (two rows in flight buy nothing there) */
	int			step = nx == 1 ? 1 : MATVEC_ROWS;

	for (int o = 0; o < OUT; o += step)
	{
		const float *rows[MATVEC_ROWS] = {w + (size_t) o * IN, w + (size_t) (o + 1) * IN};
		int			nr = OUT - o < step ? OUT - o : step;

		for (int j = 0; j < nx; j += MATVEC_XS)
		{
			float		out[MATVEC_ROWS][MATVEC_XS];
			int			m = nx - j < MATVEC_XS ? nx - j : MATVEC_XS;
			const float *xj = x + (size_t) j * IN;

			/* constant tile sizes, so that each case compiles to straight register code */
			if (nr == 2 && m == 3)
				matvec_tile(out, rows, 2, xj, (size_t) IN, 3, (size_t) IN);
			else if (nr == 2 && m == 2)
				matvec_tile(out, rows, 2, xj, (size_t) IN, 2, (size_t) IN);
			else if (nr == 2)
				matvec_tile(out, rows, 2, xj, (size_t) IN, 1, (size_t) IN);
			else if (m == 3)
				matvec_tile(out, rows, 1, xj, (size_t) IN, 3, (size_t) IN);
			else if (m == 2)
				matvec_tile(out, rows, 1, xj, (size_t) IN, 2, (size_t) IN);
			else
				matvec_tile(out, rows, 1, xj, (size_t) IN, 1, (size_t) IN);
			for (int r = 0; r < nr; r++)
				for (int k = 0; k < m; k++)
					y[(size_t) (j + k) * OUT + o + r] = out[r][k];
		}
	}
}

void
residual_forward(float *out, const float *x, const float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = x[i] + y[i];
}

/* ---------------------------------------------------------------------------
 * Embedding
 * ------------------------------------------------------------------------- */

void
embedding_forward(float *out, const int32_t *tokens, const float *wte, int T, int C)
{
	for (int t = 0; t < T; t++)
		memcpy(out + (size_t) t * C, wte + (size_t) tokens[t] * C, sizeof(float) * C);
}

void
embedding_backward(float *dwte, const float *dout, const int32_t *tokens, int T, int C)
{
	for (int t = 0; t < T; t++)
	{
		float	   *d = dwte + (size_t) tokens[t] * C;
		const float *g = dout + (size_t) t * C;

		for (int i = 0; i < C; i++)
			d[i] += g[i];
	}
}

/* ---------------------------------------------------------------------------
 * RMSNorm
 * ------------------------------------------------------------------------- */

void
rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
				int T, int C, float eps, float w_offset)
{
	for (int t = 0; t < T; t++)
	{
		const float *xt = x + (size_t) t * C;
		float	   *ot = out + (size_t) t * C;
		float		r = 1.0f / sqrtf(sft_vec_dot(xt, xt, C) / (float) C + eps);

		rstd[t] = r;
		for (int i = 0; i < C; i++)
			ot[i] = (xt[i] * r) * (w_offset + w[i]);
	}
}

/*
 * y_i = a_i x_i r with a_i = offset + w_i, r = (mean(x^2) + eps)^-1/2, so
 *   dx_i = r a_i dy_i - x_i r^3 / C * sum_j (dy_j a_j x_j)
 *   dw_i = sum_t dy_i x_i r
 */
void
rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
				 const float *w, const float *rstd, int T, int C, float w_offset)
{
	for (int t = 0; t < T; t++)
	{
		const float *xt = x + (size_t) t * C;
		const float *dy = dout + (size_t) t * C;
		float	   *dxt = dx + (size_t) t * C;
		float		r = rstd[t];
		float		acc[8] = {0};
		float		s = 0.0f;
		float		coef;
		size_t		i = 0;

		for (; i + 8 <= (size_t) C; i += 8)
			for (int j = 0; j < 8; j++)
				acc[j] += dy[i + j] * (w_offset + w[i + j]) * xt[i + j];
		for (; i < (size_t) C; i++)
			s += dy[i] * (w_offset + w[i]) * xt[i];
		for (int j = 0; j < 8; j++)
			s += acc[j];
		coef = s * r * r * r / (float) C;
		for (i = 0; i < (size_t) C; i++)
			dxt[i] += r * (w_offset + w[i]) * dy[i] - xt[i] * coef;
		if (dw)
			for (i = 0; i < (size_t) C; i++)
				dw[i] += dy[i] * xt[i] * r;
	}
}

/* ---------------------------------------------------------------------------
 * Rotary position embedding
 * ------------------------------------------------------------------------- */

/* sign = +1 rotates forward by the angle, -1 applies the transpose. */
static void
rope_rotate(float *x, const int32_t *pos, const float *cos_tab, const float *sin_tab,
			int T, int ld, int n_heads, int HD, float sign)
{
	int			half = HD / 2;

	for (int t = 0; t < T; t++)
	{
		const float *c = cos_tab + (size_t) pos[t] * half;
		const float *s = sin_tab + (size_t) pos[t] * half;

		for (int h = 0; h < n_heads; h++)
		{
			float	   *x1 = x + (size_t) t * ld + (size_t) h * HD;
			float	   *x2 = x1 + half;

			for (int i = 0; i < half; i++)
			{
				float		a = x1[i],
							b = x2[i],
							si = sign * s[i];

				x1[i] = a * c[i] - b * si;
				x2[i] = b * c[i] + a * si;
			}
		}
	}
}

void
rope_forward(float *x, const int32_t *pos, const float *cos_tab, const float *sin_tab,
			 int T, int ld, int n_heads, int HD)
{
	rope_rotate(x, pos, cos_tab, sin_tab, T, ld, n_heads, HD, 1.0f);
}

/*
 * The rotation is linear and orthogonal: the gradient of its input is the
 * transposed rotation of the output gradient.  Done in place (dx is the
 * buffer that holds dy), which is why this backward does not accumulate.
 */
void
rope_backward(float *dx, const int32_t *pos, const float *cos_tab, const float *sin_tab,
			  int T, int ld, int n_heads, int HD)
{
	rope_rotate(dx, pos, cos_tab, sin_tab, T, ld, n_heads, HD, -1.0f);
}

/* ---------------------------------------------------------------------------
 * Attention
 *
 * Work goes by kv head g and block of query rows [r0, r1):
 *   - the G = NH / NKV query heads that share kv head g are stacked into one
 *     [G * nr, HD] matrix (row j * nr + i is head g G + j, query r0 + i), so
 *     each product is one sgemm G times taller than per-head products;
 *   - the block only sees keys [0, off + r1) (off = nkv - nq), so its scores
 *     are [G * nr, off + r1] instead of [.., nkv]: with 64-row blocks at
 *     nq = nkv = 512 that is 56% of the full square; entries right of each
 *     row's diagonal get probability zero.
 * SFT_ATTN_BLOCK rows per head keeps a block's probabilities (G * 64 x 512
 * floats for SmolLM2) near the L2 cache for the softmax passes.
 * ------------------------------------------------------------------------- */

size_t
attention_scratch_floats(int nkv, int group, int HD)
{
	size_t		rows = (size_t) group * SFT_ATTN_BLOCK;

	/* P and dP [rows, nkv]; stacked Q, dO and dQ [rows, HD]; D [rows] */
	return 2 * rows * (size_t) nkv + 3 * rows * (size_t) HD + rows;
}

/* Stack rows [r0, r0 + nr) of heads h0 .. h0 + G - 1 of x[., ld] into s[G nr, HD]. */
static void
stack_heads(float *s, const float *x, int ld, int h0, int G, int r0, int nr, int HD)
{
	for (int j = 0; j < G; j++)
		for (int i = 0; i < nr; i++)
			memcpy(s + ((size_t) j * nr + i) * HD, x + (size_t) (r0 + i) * ld + (size_t) (h0 + j) * HD,
				   sizeof(float) * HD);
}

/*
 * The first key a query that sees keys [0, nvis) may attend to: with a
 * sliding window of w keys (transformers: kv_idx > q_idx - w), the last w.
 */
static inline int
first_visible(int nvis, int window)
{
	return window > 0 && nvis > window ? nvis - window : 0;
}

/*
 * Probabilities P[G nr, ncol] of stacked queries Qs against keys [0, ncol):
 * softmax(scale Qs K^T) under the causal (and window) mask, computing lse (forward,
 * lse_out) or reusing it (backward, lse_in).  lse is [nq, NH].
 */
static void
attention_probs(float *P, float *lse_out, const float *lse_in, const float *Qs,
				const float *kg, int ldkv, int G, int h0, int NH, int r0, int nr,
				int off, int ncol, int HD, float scale, int window)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, G * nr, ncol, HD,
				scale, Qs, HD, kg, ldkv, 0.0f, P, ncol);
	for (int j = 0; j < G; j++)
		for (int i = 0; i < nr; i++)
		{
			float	   *p = P + ((size_t) j * nr + i) * ncol;
			int			nvis = off + r0 + i + 1;	/* keys this query sees ... */
			int			lo = first_visible(nvis, window);	/* ... from this one */
			size_t		li = (size_t) (r0 + i) * NH + h0 + j;

			if (lse_out)
			{
				float		m = sft_vec_max(p + lo, nvis - lo);
				float		sum,
							inv;

				for (int c = lo; c < nvis; c++)
					p[c] = sft_expf(p[c] - m);
				sum = sft_vec_sum(p + lo, nvis - lo);
				lse_out[li] = m + logf(sum);
				inv = 1.0f / sum;
				for (int c = lo; c < nvis; c++)
					p[c] *= inv;
			}
			else
			{
				float		lse = lse_in[li];

				for (int c = lo; c < nvis; c++)
					p[c] = sft_expf(p[c] - lse);
			}
			for (int c = 0; c < lo; c++)
				p[c] = 0.0f;
			for (int c = nvis; c < ncol; c++)
				p[c] = 0.0f;
		}
}

void
attention_forward_block(float *out, int ldo, float *lse, const float *q, int ldq,
						const float *k, const float *v, int ldkv, int nq, int nkv,
						int NH, int NKV, int HD, float scale, int window, int g, int r0,
						float *scratch)
{
	int			G = NH / NKV;
	int			off = nkv - nq;
	size_t		rows = (size_t) G * SFT_ATTN_BLOCK;
	float	   *P = scratch;	/* [G BLOCK, nkv] */
	float	   *Qs = P + 2 * rows * nkv;	/* [G BLOCK, HD] */
	float	   *Os = Qs + rows * HD;	/* [G BLOCK, HD] */
	/* a windowed block skips the keys its first row no longer sees */
	int			c0 = first_visible(off + r0 + 1, window);
	const float *kg = k + (size_t) c0 * ldkv + (size_t) g * HD;
	const float *vg = v + (size_t) c0 * ldkv + (size_t) g * HD;
	int			nr = nq - r0 < SFT_ATTN_BLOCK ? nq - r0 : SFT_ATTN_BLOCK;
	int			ncol;

	off -= c0;					/* columns count from key c0 */
	ncol = off + r0 + nr;
	stack_heads(Qs, q, ldq, g * G, G, r0, nr, HD);
	attention_probs(P, lse, NULL, Qs, kg, ldkv, G, g * G, NH, r0, nr, off, ncol, HD, scale,
					window);
	/* Os = P @ v[0:ncol], then back to the heads' columns */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, G * nr, HD, ncol,
				1.0f, P, ncol, vg, ldkv, 0.0f, Os, HD);
	for (int j = 0; j < G; j++)
		for (int i = 0; i < nr; i++)
			memcpy(out + (size_t) (r0 + i) * ldo + (size_t) (g * G + j) * HD,
				   Os + ((size_t) j * nr + i) * HD, sizeof(float) * HD);
}

void
attention_forward(float *out, int ldo, float *lse, const float *q, int ldq,
				  const float *k, const float *v, int ldkv, int nq, int nkv,
				  int NH, int NKV, int HD, float scale, int window, float *scratch)
{
	for (int g = 0; g < NKV; g++)
		for (int r0 = 0; r0 < nq; r0 += SFT_ATTN_BLOCK)
			attention_forward_block(out, ldo, lse, q, ldq, k, v, ldkv, nq, nkv, NH, NKV, HD,
									scale, window, g, r0, scratch);
}

void
attention_forward_one(float *out, float *lse, const float *q, const float *k,
					  const float *v, int ldkv, int nkv, int NH, int NKV, int HD,
					  float scale, int window, float *scratch)
{
	int			G = NH / NKV;
	int			lo = first_visible(nkv, window);
	float	   *p = scratch;	/* [nkv] */

	/* a windowed query only reads the last keys: start there */
	k += (size_t) lo * ldkv;
	v += (size_t) lo * ldkv;
	nkv -= lo;

	for (int h = 0; h < NH; h++)
	{
		const float *qh = q + (size_t) h * HD;
		const float *kg = k + (size_t) (h / G) * HD;
		const float *vg = v + (size_t) (h / G) * HD;
		float	   *oh = out + (size_t) h * HD;
		float		m,
					sum,
					inv;

		for (int j = 0; j < nkv; j++)
			p[j] = scale * sft_vec_dot(qh, kg + (size_t) j * ldkv, HD);
		m = sft_vec_max(p, nkv);
		for (int j = 0; j < nkv; j++)
			p[j] = sft_expf(p[j] - m);
		sum = sft_vec_sum(p, nkv);
		lse[h] = m + logf(sum);
		inv = 1.0f / sum;
		for (int c = 0; c < HD; c++)
			oh[c] = 0.0f;
		for (int j = 0; j < nkv; j++)
		{
			const float *vj = vg + (size_t) j * ldkv;
			float		pj = p[j] * inv;

			for (int c = 0; c < HD; c++)
				oh[c] += pj * vj[c];
		}
	}
}

void
attention_backward_block(float *dq, int ld_dq, float *dk, float *dv, int ld_dkv,
						 const float *dout, int ldo, const float *q, int ldq,
						 const float *k, const float *v, int ldkv, const float *out,
						 const float *lse, int nq, int nkv, int NH, int NKV, int HD,
						 float scale, int window, int g, int r0, float *scratch)
{
	int			G = NH / NKV;
	int			off = nkv - nq;
	size_t		rows = (size_t) G * SFT_ATTN_BLOCK;
	float	   *P = scratch;	/* [G BLOCK, nkv] */
	float	   *dP = P + rows * nkv;	/* [G BLOCK, nkv] */
	float	   *Qs = dP + rows * nkv;	/* [G BLOCK, HD] */
	float	   *dOs = Qs + rows * HD;	/* [G BLOCK, HD] */
	float	   *dQs = dOs + rows * HD;	/* [G BLOCK, HD] */
	float	   *D = dQs + rows * HD;	/* [G BLOCK] */
	/* a windowed block skips the keys its first row no longer sees */
	int			c0 = first_visible(off + r0 + 1, window);
	const float *kg = k + (size_t) c0 * ldkv + (size_t) g * HD;
	const float *vg = v + (size_t) c0 * ldkv + (size_t) g * HD;
	float	   *dkg = dk + (size_t) c0 * ld_dkv + (size_t) g * HD;
	float	   *dvg = dv + (size_t) c0 * ld_dkv + (size_t) g * HD;
	int			nr = nq - r0 < SFT_ATTN_BLOCK ? nq - r0 : SFT_ATTN_BLOCK;
	int			ncol;
	int			M = G * nr;

	off -= c0;					/* columns count from key c0 */
	ncol = off + r0 + nr;

	stack_heads(Qs, q, ldq, g * G, G, r0, nr, HD);
	stack_heads(dOs, dout, ldo, g * G, G, r0, nr, HD);
	for (int j = 0; j < G; j++)
		for (int i = 0; i < nr; i++)
			D[j * nr + i] = sft_vec_dot(dOs + ((size_t) j * nr + i) * HD,
										out + (size_t) (r0 + i) * ldo + (size_t) (g * G + j) * HD, HD);
	attention_probs(P, NULL, lse, Qs, kg, ldkv, G, g * G, NH, r0, nr, off, ncol, HD, scale,
					window);
	/* dV[0:ncol] += P^T dOs */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ncol, HD, M,
				1.0f, P, ncol, dOs, HD, 1.0f, dvg, ld_dkv);
	/* dP = dOs V^T */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, ncol, HD,
				1.0f, dOs, HD, vg, ldkv, 0.0f, dP, ncol);
	for (int j = 0; j < G; j++)
		for (int i = 0; i < nr; i++)
		{
			const float *p = P + ((size_t) j * nr + i) * ncol;
			float	   *ds = dP + ((size_t) j * nr + i) * ncol;
			float		Di = D[j * nr + i];
			int			nvis = off + r0 + i + 1;

			/* p is 0 outside the visible keys: so is ds */
			for (int c = 0; c < nvis; c++)
				ds[c] = p[c] * (ds[c] - Di);
			for (int c = nvis; c < ncol; c++)
				ds[c] = 0.0f;
		}
	/* dQs = scale dS K[0:ncol], added back to the heads' columns */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, HD, ncol,
				scale, dP, ncol, kg, ldkv, 0.0f, dQs, HD);
	for (int j = 0; j < G; j++)
		for (int i = 0; i < nr; i++)
		{
			float	   *dst = dq + (size_t) (r0 + i) * ld_dq + (size_t) (g * G + j) * HD;
			const float *src = dQs + ((size_t) j * nr + i) * HD;

			for (int c = 0; c < HD; c++)
				dst[c] += src[c];
		}
	/* dK[0:ncol] += scale dS^T Qs */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ncol, HD, M,
				scale, dP, ncol, Qs, HD, 1.0f, dkg, ld_dkv);
}

/*
 * With O = P V and P = softmax(S), S = scale Q K^T:
 *   dV += P^T dO;  dP = dO V^T;  dS = P * (dP - D) with D_i = sum_d dO_id O_id
 *   (= sum_j P_ij dP_ij);  dQ += scale dS K;  dK += scale dS^T Q.
 */
void
attention_backward(float *dq, int ld_dq, float *dk, float *dv, int ld_dkv,
				   const float *dout, int ldo, const float *q, int ldq,
				   const float *k, const float *v, int ldkv, const float *out,
				   const float *lse, int nq, int nkv, int NH, int NKV, int HD,
				   float scale, int window, float *scratch)
{
	for (int g = 0; g < NKV; g++)
		for (int r0 = 0; r0 < nq; r0 += SFT_ATTN_BLOCK)
			attention_backward_block(dq, ld_dq, dk, dv, ld_dkv, dout, ldo, q, ldq, k, v, ldkv,
									 out, lse, nq, nkv, NH, NKV, HD, scale, window, g, r0,
									 scratch);
}

/* scale * q_i . k_j in double */
static double
ref_score(const float *q, int ldq, const float *k, int ldkv, int i, int j, int h, int g,
		  int HD, double scale)
{
	double		d = 0.0;

	for (int c = 0; c < HD; c++)
		d += (double) q[(size_t) i * ldq + h * HD + c] * k[(size_t) j * ldkv + g * HD + c];
	return d * scale;
}

void
attention_forward_ref(float *out, int ldo, float *lse, const float *q, int ldq,
					  const float *k, const float *v, int ldkv, int nq, int nkv,
					  int NH, int NKV, int HD, float scale, int window)
{
	int			group = NH / NKV;

	for (int h = 0; h < NH; h++)
	{
		int			g = h / group;

		for (int i = 0; i < nq; i++)
		{
			int			nvis = nkv - nq + i + 1;
			int			lo = window > 0 && nvis > window ? nvis - window : 0;
			double		m = -INFINITY,
						sum = 0.0;

			for (int j = lo; j < nvis; j++)
				m = fmax(m, ref_score(q, ldq, k, ldkv, i, j, h, g, HD, scale));
			for (int j = lo; j < nvis; j++)
				sum += exp(ref_score(q, ldq, k, ldkv, i, j, h, g, HD, scale) - m);
			lse[(size_t) i * NH + h] = (float) (m + log(sum));
			for (int c = 0; c < HD; c++)
				out[(size_t) i * ldo + h * HD + c] = 0.0f;
			for (int j = lo; j < nvis; j++)
			{
				double		p = exp(ref_score(q, ldq, k, ldkv, i, j, h, g, HD, scale) - m) / sum;

				for (int c = 0; c < HD; c++)
					out[(size_t) i * ldo + h * HD + c] += (float) (p * v[(size_t) j * ldkv + g * HD + c]);
			}
		}
	}
}

/* ---------------------------------------------------------------------------
 * SwiGLU
 * ------------------------------------------------------------------------- */

void
swiglu_forward(float *h, const float *gu, int T, int F)
{
	for (int t = 0; t < T; t++)
	{
		const float *g = gu + (size_t) t * 2 * F;
		const float *u = g + F;
		float	   *ht = h + (size_t) t * F;

		for (int i = 0; i < F; i++)
			ht[i] = g[i] / (1.0f + sft_expf(-g[i])) * u[i];
	}
}

/*
 * h = g s(g) u with s the logistic sigmoid:
 *   dg = dh u s (1 + g (1 - s)),   du = dh g s
 */
void
swiglu_backward(float *dgu, const float *dh, const float *gu, int T, int F)
{
	for (int t = 0; t < T; t++)
	{
		const float *g = gu + (size_t) t * 2 * F;
		const float *u = g + F;
		const float *d = dh + (size_t) t * F;
		float	   *dg = dgu + (size_t) t * 2 * F;
		float	   *du = dg + F;

		for (int i = 0; i < F; i++)
		{
			float		s = 1.0f / (1.0f + sft_expf(-g[i]));

			dg[i] += d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
			du[i] += d[i] * g[i] * s;
		}
	}
}

/* ---------------------------------------------------------------------------
 * GeGLU with the tanh approximation of GELU (gelu_pytorch_tanh)
 * ------------------------------------------------------------------------- */

#define SFT_SQRT_2_OVER_PI 0.7978845608028654f
#define SFT_GELU_CUBIC 0.044715f

/*
 * gelu_tanh(x) = x/2 (1 + tanh(a)), a = s (x + c x^3), is computed as
 * x sigmoid(2a) (the same function: 1 + tanh(a) = 2 / (1 + e^-2a)) with
 * sft_expf, so the loops vectorise (libm tanhf does not: it was 6% of a
 * gemma-3-270m training step) and nothing cancels where tanh(a) is near -1.
 * With e = e^-2a and g = 1 / (1 + e):
 *   gelu(x)  = x g
 *   gelu'(x) = g + x (1 - tanh(a)^2) / 2 * s (1 + 3 c x^2)
 *            = g + 2 x s (1 + 3 c x^2) e g^2          (1 - tanh^2 = 4 e g^2)
 *   dg = dh u gelu'(g),   du = dh gelu(g)
 * For a below -44 (x below about -7.6) e is clamped at e^88: g is then
 * ~6e-39 instead of smaller, and e g^2 underflows to 0, never inf * 0.
 */
static inline float
gelu_tanh_gate(float x, float *e_out)
{
	float		e = sft_expf(-2.0f * SFT_SQRT_2_OVER_PI * (x + SFT_GELU_CUBIC * x * x * x));

	*e_out = e;
	return 1.0f / (1.0f + e);
}

void
geglu_tanh_forward(float *h, const float *gu, int T, int F)
{
	for (int t = 0; t < T; t++)
	{
		const float *g = gu + (size_t) t * 2 * F;
		const float *u = g + F;
		float	   *ht = h + (size_t) t * F;

		for (int i = 0; i < F; i++)
		{
			float		e,
						sg = gelu_tanh_gate(g[i], &e);

			ht[i] = g[i] * sg * u[i];
		}
	}
}

void
geglu_tanh_backward(float *dgu, const float *dh, const float *gu, int T, int F)
{
	for (int t = 0; t < T; t++)
	{
		const float *g = gu + (size_t) t * 2 * F;
		const float *u = g + F;
		const float *d = dh + (size_t) t * F;
		float	   *dg = dgu + (size_t) t * 2 * F;
		float	   *du = dg + F;

		for (int i = 0; i < F; i++)
		{
			float		x = g[i];
			float		e,
						sg = gelu_tanh_gate(x, &e);
			float		dgelu = sg + 2.0f * x * SFT_SQRT_2_OVER_PI *
				(1.0f + 3.0f * SFT_GELU_CUBIC * x * x) * (e * sg * sg);

			dg[i] += d[i] * u[i] * dgelu;
			du[i] += d[i] * x * sg;
		}
	}
}

/* ---------------------------------------------------------------------------
 * Bias of a linear layer
 * ------------------------------------------------------------------------- */

void
bias_forward(float *out, const float *b, int T, int N, int ld)
{
	for (int t = 0; t < T; t++)
	{
		float	   *o = out + (size_t) t * ld;

		for (int i = 0; i < N; i++)
			o[i] += b[i];
	}
}

void
bias_backward(float *db, const float *dout, int T, int N, int ld)
{
	for (int t = 0; t < T; t++)
	{
		const float *d = dout + (size_t) t * ld;

		for (int i = 0; i < N; i++)
			db[i] += d[i];
	}
}

/* ---------------------------------------------------------------------------
 * Logit softcapping: y = cap tanh(x / cap)
 * ------------------------------------------------------------------------- */

void
softcap_forward(float *x, float *th, float cap, int n)
{
	for (int i = 0; i < n; i++)
	{
		float		t = tanhf(x[i] / cap);

		if (th)
			th[i] = t;
		x[i] = t * cap;
	}
}

void
softcap_backward(float *d, const float *th, int n)
{
	for (int i = 0; i < n; i++)
		d[i] *= 1.0f - th[i] * th[i];
}

/* ---------------------------------------------------------------------------
 * Dropout
 * ------------------------------------------------------------------------- */

void
dropout_forward(float *x, uint8_t *keep, float p, SftRng *rng, size_t n)
{
	dropout_draw(keep, p, rng, n);
	dropout_apply(x, x, keep, p, n);
}

void
dropout_draw(uint8_t *keep, float p, SftRng *rng, size_t n)
{
	for (size_t i = 0; i < n; i++)
		keep[i] = sft_rng_uniform(rng) >= p;
}

void
dropout_apply(float *out, const float *x, const uint8_t *keep, float p, size_t n)
{
	float		scale = 1.0f / (1.0f - p);

	for (size_t i = 0; i < n; i++)
		out[i] = keep[i] ? x[i] * scale : 0.0f;
}

void
dropout_backward(float *dx, const float *dout, const uint8_t *keep, float p, size_t n)
{
	float		scale = 1.0f / (1.0f - p);

	for (size_t i = 0; i < n; i++)
		dx[i] += keep[i] ? dout[i] * scale : 0.0f;
}

/* ---------------------------------------------------------------------------
 * Cross-entropy
 * ------------------------------------------------------------------------- */

double
crossentropy_forward(float *probs, const int32_t *targets, int N, int V)
{
	double		loss = 0.0;

	for (int i = 0; i < N; i++)
	{
		float	   *p = probs + (size_t) i * V;
		float		m = sft_vec_max(p, V);
		float		target_logit = p[targets[i]];
		float		sum,
					inv;

		for (int j = 0; j < V; j++)
			p[j] = sft_expf(p[j] - m);
		sum = sft_vec_sum(p, V);
		/* -log softmax = log-sum-exp - logit */
		loss += (double) m + log((double) sum) - (double) target_logit;
		inv = 1.0f / sum;
		for (int j = 0; j < V; j++)
			p[j] *= inv;
	}
	return loss;
}

void
crossentropy_backward_inplace(float *probs, const int32_t *targets, int N, int V)
{
	for (int i = 0; i < N; i++)
		probs[(size_t) i * V + targets[i]] -= 1.0f;
}

/* ---------------------------------------------------------------------------
 * LoRA
 * ------------------------------------------------------------------------- */

void
lora_update_forward(float *y, int ldy, float *u, const float *x, int ldx, const float *A,
			 const float *B, float scale, int T, int IN, int OUT, int r)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, r, IN,
				1.0f, x, ldx, A, IN, 0.0f, u, r);
	/* PEFT: lora_B(lora_A(x)) * scaling, the scale folded into the product */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OUT, r,
				scale, u, r, B, r, 1.0f, y, ldy);
}

void
lora_update_backward(float *dx, int lddx, float *dA, float *dB, float *du, const float *dy, int ldy,
			  const float *x, int ldx, const float *u, const float *A, const float *B,
			  float scale, int T, int IN, int OUT, int r)
{
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, r, T,
				scale, dy, ldy, u, r, 1.0f, dB, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, r, OUT,
				scale, dy, ldy, B, r, 0.0f, du, r);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, IN, T,
				1.0f, du, r, x, ldx, 1.0f, dA, IN);
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, IN, r,
					1.0f, du, r, A, IN, 1.0f, dx, lddx);
}
