/*
 * test_kernels.c: every backward kernel against central finite differences
 * of its forward kernel, the fast kernels against plain references, and the
 * optimizer and schedules against hand-computed values.
 *
 * Finite differences: the forward runs in float, the scalar probe
 * L = sum(out * R) (R fixed random) is summed in double, and the step is
 * h = 1e-3 on inputs of order 1 (4e-3 for the largest attention case).  Float rounding then limits the quotient to
 * about 1e-4 absolute, so an error measure of
 *     max_i |analytic_i - numeric_i| / max_i |numeric_i|
 * below 2e-3 means the gradient is right, while any real mistake (a missed
 * term, a wrong index, a sign) gives errors of order 1e-1 .. 1.
 */
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "tap.h"
#include "threadpool.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL 2e-3

static SftRng rng;
static float fd_step = 1e-3f;	/* raised where a large probe sum costs precision */

static float *
randn(size_t n, float scale)
{
	float	   *x = malloc(sizeof(float) * (n ? n : 1));

	for (size_t i = 0; i < n; i++)
		x[i] = scale * sft_rng_normal(&rng);
	return x;
}

static float *
zeros(size_t n)
{
	return calloc(n ? n : 1, sizeof(float));
}

static float
max_abs_f(const float *x, size_t n)
{
	float		m = 0.0f;

	for (size_t i = 0; i < n; i++)
		m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
	return m;
}

static double
dot_d(const float *a, const float *b, size_t n)
{
	double		s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double) a[i] * b[i];
	return s;
}

/* The probe: a closure that reruns the forward and returns sum(out * R). */
typedef double (*ProbeFn) (void *ctx);

/*
 * Compares analytic[i] with the central difference of probe() in x[i], for
 * all i (or max_checks random ones), and reports the relative error.
 */
static double
fd_error(float *x, size_t n, const float *analytic, ProbeFn probe, void *ctx, int max_checks)
{
	double		max_diff = 0.0,
				max_num = 0.0;
	int			checks = (max_checks > 0 && (size_t) max_checks < n) ? max_checks : (int) n;

	for (int c = 0; c < checks; c++)
	{
		size_t		i = checks == (int) n ? (size_t) c : sft_rng_next(&rng) % n;
		float		saved = x[i];
		double		lp,
					lm,
					num;

		x[i] = saved + fd_step;
		lp = probe(ctx);
		x[i] = saved - fd_step;
		lm = probe(ctx);
		x[i] = saved;
		/* divide by the step actually taken in float */
		num = (lp - lm) / ((double) (saved + fd_step) - (double) (saved - fd_step));
		max_diff = fmax(max_diff, fabs(num - analytic[i]));
		max_num = fmax(max_num, fabs(num));
	}
	return max_num > 0.0 ? max_diff / max_num : max_diff;
}

/* ---------------------------------------------------------------------------
 * matmul
 * ------------------------------------------------------------------------- */

typedef struct
{
	float	   *out, *x, *w, *R;
	int			T, IN, OUT;
} MatmulCtx;

static double
matmul_probe(void *p)
{
	MatmulCtx  *c = p;

	matmul_forward(c->out, c->x, c->w, c->T, c->IN, c->OUT);
	return dot_d(c->out, c->R, (size_t) c->T * c->OUT);
}

static void
test_matmul(void)
{
	MatmulCtx	c = {.T = 5, .IN = 7, .OUT = 6};
	float	   *dx,
			   *dw;
	double		maxerr = 0.0;

	c.x = randn(c.T * c.IN, 1);
	c.w = randn(c.OUT * c.IN, 1);
	c.R = randn(c.T * c.OUT, 1);
	c.out = zeros(c.T * c.OUT);
	dx = randn(c.T * c.IN, 1);	/* non-zero: backward must accumulate */
	dw = randn(c.OUT * c.IN, 1);
	{
		float	   *dx0 = malloc(sizeof(float) * c.T * c.IN),
				   *dw0 = malloc(sizeof(float) * c.OUT * c.IN);

		memcpy(dx0, dx, sizeof(float) * c.T * c.IN);
		memcpy(dw0, dw, sizeof(float) * c.OUT * c.IN);
		matmul_backward(dx, dw, c.R, c.x, c.w, c.T, c.IN, c.OUT);
		for (int i = 0; i < c.T * c.IN; i++)
			dx[i] -= dx0[i];
		for (int i = 0; i < c.OUT * c.IN; i++)
			dw[i] -= dw0[i];
		free(dx0);
		free(dw0);
	}
	TAP_OK(fd_error(c.x, c.T * c.IN, dx, matmul_probe, &c, 0) < FD_TOL, "matmul_backward dx (accumulating)");
	TAP_OK(fd_error(c.w, c.OUT * c.IN, dw, matmul_probe, &c, 0) < FD_TOL, "matmul_backward dw (accumulating)");

	/* forward against a plain triple loop */
	matmul_forward(c.out, c.x, c.w, c.T, c.IN, c.OUT);
	for (int t = 0; t < c.T; t++)
		for (int o = 0; o < c.OUT; o++)
			maxerr = fmax(maxerr, fabs(c.out[t * c.OUT + o] -
									   dot_d(c.x + t * c.IN, c.w + o * c.IN, c.IN)));
	TAP_OK(maxerr < 1e-5, "matmul_forward = loops (max err %.2g)", maxerr);
	free(c.x), free(c.w), free(c.R), free(c.out), free(dx), free(dw);
}

static void
test_matvec(void)
{
	int			IN = 37,
				OUT = 9;		/* an odd width: the 16-lane loop's tail too */
	float	   *w = randn(OUT * IN, 1),
			   *x = randn(IN, 1),
			   *y = zeros(OUT),
			   *y2 = zeros(OUT);
	double		maxerr = 0.0;

	matvec_forward(y, x, w, IN, OUT);
	matmul_forward(y2, x, w, 1, IN, OUT);
	for (int o = 0; o < OUT; o++)
		maxerr = fmax(maxerr, fabs(y[o] - dot_d(w + o * IN, x, IN)) + fabs(y[o] - y2[o]));
	TAP_OK(maxerr < 1e-5, "matvec_forward = loops = matmul_forward with T = 1 (max err %.2g)", maxerr);
	free(w), free(x), free(y), free(y2);

	/* several inputs at once: each output bitwise the single product (tiles of 2 rows x 3 inputs and their tails) */
	for (int in = 37; in <= 80; in += 43)
	{
		int			same = 1;
		float	   *wb = randn(OUT * in, 2),
				   *xb = randn(7 * in, 3),
				   *yb = zeros(7 * OUT),
				   *y1 = zeros(OUT);

		for (int nx = 1; nx <= 7; nx++)
		{
			matvec_forward_rows(yb, xb, nx, wb, in, OUT);
			for (int j = 0; j < nx; j++)
			{
				matvec_forward(y1, xb + j * in, wb, in, OUT);
				same &= memcmp(y1, yb + j * OUT, sizeof(float) * OUT) == 0;
			}
		}
		TAP_OK(same, "matvec_forward_rows, 1..7 inputs of %d: every output bitwise matvec_forward's", in);
		free(wb), free(xb), free(yb), free(y1);
	}
}

/* ---------------------------------------------------------------------------
 * embedding
 * ------------------------------------------------------------------------- */

typedef struct
{
	float	   *out, *wte, *R;
	const int32_t *tok;
	int			T, C;
} EmbCtx;

static double
emb_probe(void *p)
{
	EmbCtx	   *c = p;

	embedding_forward(c->out, c->tok, c->wte, c->T, c->C);
	return dot_d(c->out, c->R, (size_t) c->T * c->C);
}

static void
test_embedding(void)
{
	static const int32_t tok[6] = {3, 0, 3, 4, 1, 3};	/* repeats accumulate */
	EmbCtx		c = {.tok = tok, .T = 6, .C = 5};
	float	   *dwte;

	c.wte = randn(5 * c.C, 1);
	c.R = randn(c.T * c.C, 1);
	c.out = zeros(c.T * c.C);
	dwte = zeros(5 * c.C);
	embedding_backward(dwte, c.R, tok, c.T, c.C);
	TAP_OK(fd_error(c.wte, 5 * c.C, dwte, emb_probe, &c, 0) < FD_TOL,
		   "embedding_backward (repeated ids, unused row 2)");
	free(c.wte), free(c.R), free(c.out), free(dwte);
}

/* ---------------------------------------------------------------------------
 * rmsnorm
 * ------------------------------------------------------------------------- */

typedef struct
{
	float	   *out, *rstd, *x, *w, *R;
	int			T, C;
	float		eps, offset;
} NormCtx;

static double
norm_probe(void *p)
{
	NormCtx    *c = p;

	rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->T, c->C, c->eps, c->offset);
	return dot_d(c->out, c->R, (size_t) c->T * c->C);
}

/* offset 0: Llama's x * w; offset 1: Gemma's x * (1 + w) */
static void
test_rmsnorm(float offset)
{
	/* C = 19: the 8-lane sums' tails are exercised too */
	NormCtx		c = {.T = 4, .C = 19, .eps = 1e-5f, .offset = offset};
	float	   *dx,
			   *dw;
	double		maxerr = 0.0;

	c.x = randn(c.T * c.C, 1);
	c.w = randn(c.C, 1);
	c.R = randn(c.T * c.C, 1);
	c.out = zeros(c.T * c.C);
	c.rstd = zeros(c.T);
	dx = zeros(c.T * c.C);
	dw = zeros(c.C);
	rmsnorm_forward(c.out, c.rstd, c.x, c.w, c.T, c.C, c.eps, c.offset);
	for (int t = 0; t < c.T; t++)
	{
		double		ms = dot_d(c.x + t * c.C, c.x + t * c.C, c.C) / c.C;

		for (int i = 0; i < c.C; i++)
			maxerr = fmax(maxerr, fabs(c.out[t * c.C + i] -
									   c.x[t * c.C + i] / sqrt(ms + c.eps) * (offset + c.w[i])));
	}
	TAP_OK(maxerr < 1e-5, "rmsnorm_forward = x / sqrt(mean(x^2) + eps) * (%g + w) (max err %.2g)",
		   offset, maxerr);
	rmsnorm_backward(dx, dw, c.R, c.x, c.w, c.rstd, c.T, c.C, c.offset);
	TAP_OK(fd_error(c.x, c.T * c.C, dx, norm_probe, &c, 0) < FD_TOL, "rmsnorm_backward dx (offset %g)",
		   offset);
	TAP_OK(fd_error(c.w, c.C, dw, norm_probe, &c, 0) < FD_TOL, "rmsnorm_backward dw (offset %g)",
		   offset);
	free(c.x), free(c.w), free(c.R), free(c.out), free(c.rstd), free(dx), free(dw);
}

/* ---------------------------------------------------------------------------
 * RoPE
 * ------------------------------------------------------------------------- */

void		sft_rope_tables(float *cos_tab, float *sin_tab, int n_pos, int head_dim,
							const float *inv_freq);

typedef struct
{
	float	   *x, *work, *R, *cos_tab, *sin_tab;
	int32_t    *pos;
	int			T, ld, nh, HD;
} RopeCtx;

static double
rope_probe(void *p)
{
	RopeCtx    *c = p;

	memcpy(c->work, c->x, sizeof(float) * c->T * c->ld);
	rope_forward(c->work, c->pos, c->cos_tab, c->sin_tab, c->T, c->ld, c->nh, c->HD);
	return dot_d(c->work, c->R, (size_t) c->T * c->ld);
}

static void
test_rope(void)
{
	int32_t		pos[5] = {0, 1, 2, 0, 7};
	RopeCtx		c = {.pos = pos, .T = 5, .nh = 3, .HD = 8};
	float	   *dx;
	double		maxerr = 0.0;

	c.ld = c.nh * c.HD + 4;		/* 4 trailing columns the kernel must not touch */
	c.x = randn(c.T * c.ld, 1);
	c.work = zeros(c.T * c.ld);
	c.R = randn(c.T * c.ld, 1);
	c.cos_tab = zeros(8 * c.HD / 2);
	c.sin_tab = zeros(8 * c.HD / 2);
	{
		float		inv_freq[4];

		for (int i = 0; i < c.HD / 2; i++)
			inv_freq[i] = 1.0f / powf(10000.0f, (float) (2 * i) / (float) c.HD);
		sft_rope_tables(c.cos_tab, c.sin_tab, 8, c.HD, inv_freq);
	}

	/* HF: q * cos(emb) + rotate_half(q) * sin(emb), emb = cat(freqs, freqs) */
	rope_probe(&c);
	for (int t = 0; t < c.T; t++)
		for (int h = 0; h < c.nh; h++)
			for (int i = 0; i < c.HD; i++)
			{
				int			f = i % (c.HD / 2);
				double		ang = pos[t] * (1.0 / pow(10000.0, 2.0 * f / c.HD));
				const float *q = c.x + t * c.ld + h * c.HD;
				double		rot = i < c.HD / 2 ? -q[i + c.HD / 2] : q[i - c.HD / 2];
				double		want = q[i] * cos(ang) + rot * sin(ang);

				maxerr = fmax(maxerr, fabs(c.work[t * c.ld + h * c.HD + i] - want));
			}
	for (int t = 0; t < c.T; t++)
		for (int j = c.nh * c.HD; j < c.ld; j++)
			maxerr = fmax(maxerr, fabs(c.work[t * c.ld + j] - c.x[t * c.ld + j]));
	TAP_OK(maxerr < 1e-5, "rope_forward = HF rotate_half formula (max err %.2g)", maxerr);

	/* backward works in place: dx starts as dy = R */
	dx = malloc(sizeof(float) * c.T * c.ld);
	memcpy(dx, c.R, sizeof(float) * c.T * c.ld);
	rope_backward(dx, pos, c.cos_tab, c.sin_tab, c.T, c.ld, c.nh, c.HD);
	TAP_OK(fd_error(c.x, c.T * c.ld, dx, rope_probe, &c, 0) < FD_TOL, "rope_backward");
	free(c.x), free(c.work), free(c.R), free(c.cos_tab), free(c.sin_tab), free(dx);
}

/* ---------------------------------------------------------------------------
 * Attention
 * ------------------------------------------------------------------------- */

typedef struct
{
	float	   *q, *k, *v, *out, *lse, *R, *scratch;
	int			ldq, ldkv, ldo, nq, nkv, NH, NKV, HD;
	float		scale;
	int			window;			/* sliding window, 0: none */
} AttnCtx;

/* every attention test below runs with this window (0: plain causal) */
static int attn_window = 0;

static double
attn_probe(void *p)
{
	AttnCtx    *c = p;

	attention_forward(c->out, c->ldo, c->lse, c->q, c->ldq, c->k, c->v, c->ldkv,
					  c->nq, c->nkv, c->NH, c->NKV, c->HD, c->scale, c->window, c->scratch);
	return dot_d(c->out, c->R, (size_t) c->nq * c->ldo);
}

static void
attn_setup(AttnCtx *c, int nq, int nkv, int NH, int NKV, int HD)
{
	c->nq = nq, c->nkv = nkv, c->NH = NH, c->NKV = NKV, c->HD = HD;
	/* a scale other than HD^-1/2 (Gemma's query_pre_attn_scalar) when windowed */
	c->scale = attn_window ? 0.3f : 1.0f / sqrtf((float) HD);
	c->window = attn_window;
	c->ldq = NH * HD + 3;		/* padded strides: kernels must honour ld */
	c->ldkv = NKV * HD + 2;
	c->ldo = NH * HD + 1;
	c->q = randn((size_t) nq * c->ldq, 1);
	c->k = randn((size_t) nkv * c->ldkv, 1);
	c->v = randn((size_t) nkv * c->ldkv, 1);
	c->out = zeros((size_t) nq * c->ldo);
	c->lse = zeros((size_t) nq * NH);
	c->R = randn((size_t) nq * c->ldo, 1);
	for (int i = 0; i < nq; i++)	/* the padding column of out is not an output */
		c->R[(size_t) i * c->ldo + NH * HD] = 0.0f;
	c->scratch = zeros(attention_scratch_floats(nkv, NH / NKV, HD));
}

static void
attn_free(AttnCtx *c)
{
	free(c->q), free(c->k), free(c->v), free(c->out), free(c->lse), free(c->R), free(c->scratch);
}

static void
test_attention_vs_ref(int nq, int nkv, int NH, int NKV, int HD)
{
	AttnCtx		c;
	float	   *out_ref,
			   *lse_ref;
	double		eo = 0.0,
				el = 0.0;

	attn_setup(&c, nq, nkv, NH, NKV, HD);
	out_ref = zeros((size_t) nq * c.ldo);
	lse_ref = zeros((size_t) nq * NH);
	attn_probe(&c);
	attention_forward_ref(out_ref, c.ldo, lse_ref, c.q, c.ldq, c.k, c.v, c.ldkv,
						  nq, nkv, NH, NKV, HD, c.scale, c.window);
	for (int i = 0; i < nq; i++)
		for (int j = 0; j < NH * HD; j++)
			eo = fmax(eo, fabs(c.out[(size_t) i * c.ldo + j] - out_ref[(size_t) i * c.ldo + j]));
	for (int i = 0; i < nq * NH; i++)
		el = fmax(el, fabs(c.lse[i] - lse_ref[i]));
	TAP_OK(eo < 2e-5 && el < 2e-5,
		   "attention_forward = reference, nq %d nkv %d NH %d NKV %d HD %d window %d (out %.2g, lse %.2g)",
		   nq, nkv, NH, NKV, HD, attn_window, eo, el);
	free(out_ref), free(lse_ref);
	attn_free(&c);
}

/* The decode step's one-query kernel against the reference. */
static void
test_attention_one(int nkv, int NH, int NKV, int HD)
{
	AttnCtx		c;
	float	   *out,
			   *lse,
			   *out_ref,
			   *lse_ref,
			   *scr = zeros(nkv);
	double		eo = 0.0,
				el = 0.0;

	attn_setup(&c, 1, nkv, NH, NKV, HD);
	out = zeros(NH * HD), lse = zeros(NH), out_ref = zeros(c.ldo), lse_ref = zeros(NH);
	attention_forward_one(out, lse, c.q, c.k, c.v, c.ldkv, nkv, NH, NKV, HD, c.scale, c.window, scr);
	attention_forward_ref(out_ref, c.ldo, lse_ref, c.q, c.ldq, c.k, c.v, c.ldkv, 1, nkv, NH, NKV, HD,
						  c.scale, c.window);
	for (int j = 0; j < NH * HD; j++)
		eo = fmax(eo, fabs(out[j] - out_ref[j]));
	for (int h = 0; h < NH; h++)
		el = fmax(el, fabs(lse[h] - lse_ref[h]));
	TAP_OK(eo < 2e-5 && el < 2e-5, "attention_forward_one = reference, nkv %d NH %d NKV %d window %d (out %.2g, lse %.2g)",
		   nkv, NH, NKV, attn_window, eo, el);
	free(out), free(lse), free(out_ref), free(lse_ref), free(scr);
	attn_free(&c);
}

static void
test_attention_grad(int nq, int nkv, int NH, int NKV, int HD, int max_checks)
{
	AttnCtx		c;
	float	   *dq,
			   *dk,
			   *dv,
			   *scr;
	double		eq,
				ek,
				ev;

	attn_setup(&c, nq, nkv, NH, NKV, HD);
	dq = zeros((size_t) nq * c.ldq);
	dk = zeros((size_t) nkv * c.ldkv);
	dv = zeros((size_t) nkv * c.ldkv);
	scr = zeros(attention_scratch_floats(nkv, NH / NKV, HD));
	attn_probe(&c);
	attention_backward(dq, c.ldq, dk, dv, c.ldkv, c.R, c.ldo, c.q, c.ldq, c.k, c.v, c.ldkv,
					   c.out, c.lse, nq, nkv, NH, NKV, HD, c.scale, c.window, scr);
	eq = fd_error(c.q, (size_t) nq * c.ldq, dq, attn_probe, &c, max_checks);
	ek = fd_error(c.k, (size_t) nkv * c.ldkv, dk, attn_probe, &c, max_checks);
	ev = fd_error(c.v, (size_t) nkv * c.ldkv, dv, attn_probe, &c, max_checks);
	TAP_OK(eq < FD_TOL && ek < FD_TOL && ev < FD_TOL,
		   "attention_backward, nq %d nkv %d NH %d NKV %d window %d (dq %.2g dk %.2g dv %.2g)",
		   nq, nkv, NH, NKV, attn_window, eq, ek, ev);
	free(dq), free(dk), free(dv), free(scr);
	attn_free(&c);
}

/* ---------------------------------------------------------------------------
 * SwiGLU, dropout, cross-entropy
 * ------------------------------------------------------------------------- */

typedef struct
{
	float	   *h, *gu, *R;
	int			T, F;
} SwiCtx;

static double
swi_probe(void *p)
{
	SwiCtx	   *c = p;

	swiglu_forward(c->h, c->gu, c->T, c->F);
	return dot_d(c->h, c->R, (size_t) c->T * c->F);
}

static void
test_swiglu(void)
{
	SwiCtx		c = {.T = 3, .F = 11};
	float	   *dgu;
	double		maxerr = 0.0;

	c.gu = randn(c.T * 2 * c.F, 2);
	c.h = zeros(c.T * c.F);
	c.R = randn(c.T * c.F, 1);
	dgu = zeros(c.T * 2 * c.F);
	swi_probe(&c);
	for (int t = 0; t < c.T; t++)
		for (int i = 0; i < c.F; i++)
		{
			double		g = c.gu[t * 2 * c.F + i],
						u = c.gu[t * 2 * c.F + c.F + i];

			maxerr = fmax(maxerr, fabs(c.h[t * c.F + i] - g / (1 + exp(-g)) * u));
		}
	TAP_OK(maxerr < 1e-5, "swiglu_forward = silu(gate) * up (max err %.2g)", maxerr);
	swiglu_backward(dgu, c.R, c.gu, c.T, c.F);
	TAP_OK(fd_error(c.gu, c.T * 2 * c.F, dgu, swi_probe, &c, 0) < FD_TOL, "swiglu_backward");
	free(c.gu), free(c.h), free(c.R), free(dgu);
}

static double
geglu_probe(void *p)
{
	SwiCtx	   *c = p;

	geglu_tanh_forward(c->h, c->gu, c->T, c->F);
	return dot_d(c->h, c->R, (size_t) c->T * c->F);
}

static void
test_geglu(void)
{
	SwiCtx		c = {.T = 3, .F = 11};
	float	   *dgu;
	double		maxerr = 0.0;

	c.gu = randn(c.T * 2 * c.F, 2);
	c.h = zeros(c.T * c.F);
	c.R = randn(c.T * c.F, 1);
	dgu = zeros(c.T * 2 * c.F);
	geglu_probe(&c);
	for (int t = 0; t < c.T; t++)
		for (int i = 0; i < c.F; i++)
		{
			double		g = c.gu[t * 2 * c.F + i],
						u = c.gu[t * 2 * c.F + c.F + i];
			double		gelu = 0.5 * g * (1.0 + tanh(sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));

			maxerr = fmax(maxerr, fabs(c.h[t * c.F + i] - gelu * u));
		}
	TAP_OK(maxerr < 1e-5, "geglu_tanh_forward = gelu_pytorch_tanh(gate) * up (max err %.2g)", maxerr);
	geglu_tanh_backward(dgu, c.R, c.gu, c.T, c.F);
	TAP_OK(fd_error(c.gu, c.T * 2 * c.F, dgu, geglu_probe, &c, 0) < FD_TOL, "geglu_tanh_backward");
	free(c.gu), free(c.h), free(c.R), free(dgu);

	/*
	 * A dense sweep of the gate over [-12, 12] (up = 1, dh = 1) against
	 * float64: gelu and its derivative, error relative to max(|value|, 1e-3)
	 * (the kernel computes x sigmoid(2a); 0.5 x (1 + tanhf(a)) in float
	 * misses by 7.7e-5 and 5.5e-4 near x = -5, where 1 + tanh cancels)
	 */
	{
		int			n = 240001;
		float	   *gu1 = zeros(2 * (size_t) n),
				   *h1 = zeros(n),
				   *d1 = zeros(n),
				   *dgu1 = zeros(2 * (size_t) n);
		double		err_f = 0.0,
					err_b = 0.0;

		for (int i = 0; i < n; i++)
		{
			gu1[i] = -12.0f + 24.0f * (float) i / (float) (n - 1);
			gu1[n + i] = 1.0f;
			d1[i] = 1.0f;
		}
		/* one row of width n: the gate half, then the up half */
		geglu_tanh_forward(h1, gu1, 1, n);
		geglu_tanh_backward(dgu1, d1, gu1, 1, n);
		for (int i = 0; i < n; i++)
		{
			double		x = gu1[i],
						s = sqrt(2.0 / M_PI),
						a = s * (x + 0.044715 * x * x * x),
						th = tanh(a),
						gelu = 0.5 * x * (1.0 + th),
						dgelu = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * s * (1.0 + 3.0 * 0.044715 * x * x);

			err_f = fmax(err_f, fabs(h1[i] - gelu) / fmax(fabs(gelu), 1e-3));
			err_b = fmax(err_b, fabs(dgu1[i] - dgelu) / fmax(fabs(dgelu), 1e-3));
		}
		TAP_OK(err_f < 2e-6, "geglu_tanh_forward on [-12, 12]: relative error %.2g vs float64", err_f);
		TAP_OK(err_b < 1e-4, "geglu_tanh_backward on [-12, 12]: relative error %.2g vs float64", err_b);
		free(gu1), free(h1), free(d1), free(dgu1);
	}
}

typedef struct
{
	float	   *x, *b, *out, *R, *th;
	int			T, N, ld;
	float		cap;
} RowOpCtx;

static double
bias_probe(void *p)
{
	RowOpCtx   *c = p;

	memcpy(c->out, c->x, sizeof(float) * c->T * c->ld);
	bias_forward(c->out, c->b, c->T, c->N, c->ld);
	return dot_d(c->out, c->R, (size_t) c->T * c->ld);
}

static double
softcap_probe(void *p)
{
	RowOpCtx   *c = p;

	memcpy(c->out, c->x, sizeof(float) * c->T * c->N);
	softcap_forward(c->out, NULL, c->cap, c->T * c->N);
	return dot_d(c->out, c->R, (size_t) c->T * c->N);
}

static void
test_bias_softcap(void)
{
	RowOpCtx	c = {.T = 4, .N = 7, .ld = 9, .cap = 3.0f};
	float	   *db = zeros(7),
			   *dx;
	double		maxerr = 0.0;

	c.x = randn(c.T * c.ld, 4);	/* large enough that tanh saturates somewhat */
	c.b = randn(c.N, 1);
	c.out = zeros(c.T * c.ld);
	c.R = randn(c.T * c.ld, 1);
	c.th = zeros(c.T * c.N);
	bias_probe(&c);
	for (int t = 0; t < c.T; t++)
		for (int i = 0; i < c.ld; i++)
			maxerr = fmax(maxerr, fabs(c.out[t * c.ld + i] - c.x[t * c.ld + i] - (i < c.N ? c.b[i] : 0.0f)));
	TAP_OK(maxerr < 1e-6, "bias_forward adds b to the first N columns only (max err %.2g)", maxerr);
	bias_backward(db, c.R, c.T, c.N, c.ld);
	TAP_OK(fd_error(c.b, c.N, db, bias_probe, &c, 0) < FD_TOL, "bias_backward");

	softcap_probe(&c);
	maxerr = 0.0;
	for (int i = 0; i < c.T * c.N; i++)
		maxerr = fmax(maxerr, fabs(c.out[i] - 3.0 * tanh(c.x[i] / 3.0)));
	TAP_OK(maxerr < 1e-5, "softcap_forward = cap tanh(x / cap) (max err %.2g)", maxerr);
	dx = malloc(sizeof(float) * c.T * c.N);
	memcpy(dx, c.R, sizeof(float) * c.T * c.N);
	memcpy(c.out, c.x, sizeof(float) * c.T * c.N);
	softcap_forward(c.out, c.th, c.cap, c.T * c.N);
	softcap_backward(dx, c.th, c.T * c.N);
	TAP_OK(fd_error(c.x, c.T * c.N, dx, softcap_probe, &c, 0) < FD_TOL, "softcap_backward");
	free(c.x), free(c.b), free(c.out), free(c.R), free(c.th), free(db), free(dx);
}

typedef struct
{
	float	   *x, *work, *R;
	uint8_t    *keep;
	float		p;
	size_t		n;
} DropCtx;

static double
drop_probe(void *p)
{
	DropCtx    *c = p;
	SftRng		r;

	sft_rng_seed(&r, 77);		/* the same draws on every call */
	memcpy(c->work, c->x, sizeof(float) * c->n);
	dropout_forward(c->work, c->keep, c->p, &r, c->n);
	return dot_d(c->work, c->R, c->n);
}

static void
test_dropout(void)
{
	DropCtx		c = {.p = 0.3f, .n = 4000};
	float	   *dx;
	size_t		kept = 0;
	int			scaled_ok = 1;

	c.x = randn(c.n, 1);
	c.work = zeros(c.n);
	c.R = randn(c.n, 1);
	c.keep = calloc(c.n, 1);
	dx = zeros(c.n);
	drop_probe(&c);
	for (size_t i = 0; i < c.n; i++)
	{
		kept += c.keep[i];
		if (fabsf(c.work[i] - (c.keep[i] ? c.x[i] / 0.7f : 0.0f)) > 1e-6f)
			scaled_ok = 0;
	}
	/* 4000 draws at p = 0.3: kept ~ 2800 +- 29 (1 sigma) */
	TAP_OK(kept > 2650 && kept < 2950 && scaled_ok,
		   "dropout_forward keeps %zu of 4000 at p = 0.3, kept values scaled by 1/(1-p)", kept);
	{
		float	   *again = zeros(c.n);

		dropout_apply(again, c.x, c.keep, c.p, c.n);
		TAP_OK(memcmp(again, c.work, sizeof(float) * c.n) == 0,
			   "dropout_apply on the same draws = dropout_forward, bit for bit");
		free(again);
	}
	dropout_backward(dx, c.R, c.keep, c.p, c.n);
	TAP_OK(fd_error(c.x, c.n, dx, drop_probe, &c, 200) < FD_TOL, "dropout_backward");
	free(c.x), free(c.work), free(c.R), free(c.keep), free(dx);
}

/* ---------------------------------------------------------------------------
 * LoRA: y[:, block] += s (x A^T) B^T on a column block of a wider output
 * ------------------------------------------------------------------------- */

typedef struct
{
	float	   *y, *y0, *u, *x, *A, *B, *R;
	int			T, IN, OUT, r, ldx, ldy;
	float		s;
} LoraCtx;

static double
lora_probe(void *p)
{
	LoraCtx    *c = p;

	memcpy(c->y, c->y0, sizeof(float) * c->T * c->ldy);
	lora_update_forward(c->y + 2, c->ldy, c->u, c->x + 1, c->ldx, c->A, c->B, c->s,
				 c->T, c->IN, c->OUT, c->r);
	return dot_d(c->y, c->R, (size_t) c->T * c->ldy);
}

static void
test_lora(void)
{
	LoraCtx		c = {.T = 6, .IN = 7, .OUT = 5, .r = 3, .s = 1.7f};
	float	   *dx,
			   *dA,
			   *dB,
			   *du,
			   *dy;
	double		maxerr = 0.0;
	int			outside_ok = 1;

	c.ldx = c.IN + 3;			/* x is columns 1 .. IN of a wider matrix */
	c.ldy = c.OUT + 4;			/* y is columns 2 .. OUT + 1 */
	c.x = randn(c.T * c.ldx, 1);
	c.A = randn(c.r * c.IN, 1);
	c.B = randn(c.OUT * c.r, 1);
	c.R = randn(c.T * c.ldy, 1);
	c.y0 = randn(c.T * c.ldy, 1);
	c.y = zeros(c.T * c.ldy);
	c.u = zeros(c.T * c.r);
	dx = zeros(c.T * c.ldx);
	dA = zeros(c.r * c.IN);
	dB = zeros(c.OUT * c.r);
	du = zeros(c.T * c.r);
	dy = c.R + 2;				/* the gradient of the block */

	/* forward against loops: y0 + s sum_k (sum_i x A) B, nothing outside the block */
	lora_probe(&c);
	for (int t = 0; t < c.T; t++)
		for (int o = 0; o < c.ldy; o++)
		{
			double		want = c.y0[t * c.ldy + o];

			if (o >= 2 && o < 2 + c.OUT)
				for (int k = 0; k < c.r; k++)
					want += c.s * dot_d(c.x + t * c.ldx + 1, c.A + k * c.IN, c.IN) *
						c.B[(o - 2) * c.r + k];
			else if (c.y[t * c.ldy + o] != c.y0[t * c.ldy + o])
				outside_ok = 0;
			maxerr = fmax(maxerr, fabs(c.y[t * c.ldy + o] - want));
		}
	TAP_OK(maxerr < 1e-5 && outside_ok, "lora_update_forward = loops on a column block (max err %.2g)", maxerr);

	/* backward accumulates into dA and dB (dx with a stride), FD of every input */
	for (int i = 0; i < c.r * c.IN; i++)
		dA[i] = 0.5f;
	for (int i = 0; i < c.OUT * c.r; i++)
		dB[i] = -0.25f;
	lora_update_backward(dx + 1, c.ldx, dA, dB, du, dy, c.ldy, c.x + 1, c.ldx, c.u, c.A, c.B, c.s,
				  c.T, c.IN, c.OUT, c.r);
	for (int i = 0; i < c.r * c.IN; i++)
		dA[i] -= 0.5f;
	for (int i = 0; i < c.OUT * c.r; i++)
		dB[i] += 0.25f;
	TAP_OK(fd_error(c.x, c.T * c.ldx, dx, lora_probe, &c, 0) < FD_TOL, "lora_update_backward dx");
	TAP_OK(fd_error(c.A, c.r * c.IN, dA, lora_probe, &c, 0) < FD_TOL, "lora_update_backward dA (accumulating)");
	TAP_OK(fd_error(c.B, c.OUT * c.r, dB, lora_probe, &c, 0) < FD_TOL, "lora_update_backward dB (accumulating)");
	free(c.x), free(c.A), free(c.B), free(c.R), free(c.y0), free(c.y), free(c.u);
	free(dx), free(dA), free(dB), free(du);
}

typedef struct
{
	float	   *logits, *work;
	const int32_t *tgt;
	int			N, V;
} CeCtx;

static double
ce_probe(void *p)
{
	CeCtx	   *c = p;

	memcpy(c->work, c->logits, sizeof(float) * c->N * c->V);
	return crossentropy_forward(c->work, c->tgt, c->N, c->V);
}

static void
test_crossentropy(void)
{
	static const int32_t tgt[3] = {4, 0, 20};
	CeCtx		c = {.tgt = tgt, .N = 3, .V = 21};
	double		loss,
				want = 0.0;

	c.logits = randn(c.N * c.V, 3);
	c.logits[5] = 60.0f;		/* large logits must not overflow */
	c.work = zeros(c.N * c.V);
	loss = ce_probe(&c);
	for (int i = 0; i < c.N; i++)
	{
		double		m = -INFINITY,
					s = 0.0;

		for (int j = 0; j < c.V; j++)
			m = fmax(m, c.logits[i * c.V + j]);
		for (int j = 0; j < c.V; j++)
			s += exp(c.logits[i * c.V + j] - m);
		want += m + log(s) - c.logits[i * c.V + tgt[i]];
	}
	TAP_OK(fabs(loss - want) < 1e-5 * fmax(1.0, fabs(want)),
		   "crossentropy_forward = sum of -log softmax (%.6f vs %.6f)", loss, want);
	crossentropy_backward_inplace(c.work, tgt, c.N, c.V);
	{
		float	   *dl = malloc(sizeof(float) * c.N * c.V);

		memcpy(dl, c.work, sizeof(float) * c.N * c.V);
		TAP_OK(fd_error(c.logits, c.N * c.V, dl, ce_probe, &c, 0) < FD_TOL,
			   "crossentropy_backward_inplace");
		free(dl);
	}
	free(c.logits), free(c.work);
}

/* ---------------------------------------------------------------------------
 * Vector helpers
 * ------------------------------------------------------------------------- */

static void
test_vec_helpers(void)
{
	int			n = 1003;
	float	   *x = randn(n, 20),
			   *y = randn(n, 1),
			   *e = zeros(n);
	double		s = 0.0,
				d = 0.0,
				m = -INFINITY,
				maxrel = 0.0;

	for (int i = 0; i < n; i++)
	{
		s += x[i];
		d += (double) x[i] * y[i];
		m = fmax(m, x[i]);
	}
	TAP_OK(fabs(sft_vec_sum(x, n) - s) < 1e-3 && fabs(sft_vec_dot(x, y, n) - d) < 1e-3 &&
		   sft_vec_max(x, n) == (float) m, "sft_vec_sum/dot/max with a non-multiple-of-8 tail");
	x[0] = -200.0f;				/* clamped to ~0 */
	x[1] = 0.0f;
	x[2] = 88.0f;
	sft_vec_exp(e, x, n);
	for (int i = 1; i < n; i++)
		maxrel = fmax(maxrel, fabs(e[i] - exp((double) x[i])) / exp((double) x[i]));
	TAP_OK(maxrel < 4e-7 && e[0] < 1e-37f && e[1] == 1.0f,
		   "sft_vec_exp: max relative error %.2g over [-60, 88], exp(0) = 1, tiny below -87", maxrel);
	free(x), free(y), free(e);
}

/* ---------------------------------------------------------------------------
 * AdamW and schedules
 * ------------------------------------------------------------------------- */

static void
test_adamw(void)
{
	SftAdamWConfig cfg = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
	float		p[4] = {0.5f, -1.0f, 2.0f, 0.0f},
				g[4],
				m[4] = {0},
				v[4] = {0};
	double		pd[4] = {0.5, -1.0, 2.0, 0.0},
				md[4] = {0},
				vd[4] = {0};
	double		maxerr = 0.0;
	int			zeroed = 1;

	for (int t = 1; t <= 3; t++)
	{
		double		lr = 1e-2 * t;

		for (int i = 0; i < 4; i++)
			g[i] = (float) (0.3 * (i - 1.5) * t);
		for (int i = 0; i < 4; i++)
		{
			double		gi = g[i] * 0.5;	/* grad_scale */

			pd[i] *= 1.0 - lr * 0.1;
			md[i] = 0.9 * md[i] + 0.1 * gi;
			vd[i] = 0.95 * vd[i] + 0.05 * gi * gi;
			pd[i] -= lr / (1 - pow(0.9, t)) * md[i] / (sqrt(vd[i]) / sqrt(1 - pow(0.95, t)) + 1e-8);
		}
		sft_adamw_update(p, g, m, v, 4, 0.5f, &cfg, lr, 0.1, t);
		for (int i = 0; i < 4; i++)
			zeroed &= g[i] == 0.0f;
	}
	for (int i = 0; i < 4; i++)
		maxerr = fmax(maxerr, fabs(p[i] - pd[i]));
	TAP_OK(maxerr < 1e-6 && zeroed, "AdamW: 3 steps = double reference (max err %.2g), grads zeroed", maxerr);
	{
		float		big[1001];

		for (int i = 0; i < 1001; i++)
			big[i] = (float) (i % 7) - 3.0f;
		double		want = 0.0;

		for (int i = 0; i < 1001; i++)
			want += (double) big[i] * big[i];
		TAP_OK(fabs(sft_sum_squares(big, 1001) - want) < 1e-9, "sft_sum_squares");
	}
}

/* The slab passes on a 3-thread pool = the plain loops, bit for bit. */
static void
test_adamw_slab(void)
{
	size_t		n = 1000003;	/* several chunks, an odd tail */
	SftParamTensor t[3] = {
		{.numel = 300000, .offset = 0, .weight_decay = 1},
		{.numel = 1000, .offset = 300000, .weight_decay = 0},	/* inside a chunk */
		{.numel = 699003, .offset = 301000, .weight_decay = 1}
	};
	SftAdamWConfig cfg = {0.9, 0.95, 1e-8, 0.1, 1.0};
	float	   *p1 = randn(n, 1),
			   *g1 = randn(n, 1),
			   *m1 = zeros(n),
			   *v1 = zeros(n);
	float	   *p2 = malloc(sizeof(float) * n),
			   *g2 = malloc(sizeof(float) * n),
			   *m2 = zeros(n),
			   *v2 = zeros(n);
	SftThreadPool *pool = sft_pool_new(3);
	double		s_pool,
				s_plain = 0.0;

	memcpy(p2, p1, sizeof(float) * n);
	memcpy(g2, g1, sizeof(float) * n);
	s_pool = sft_sum_squares_pool(g1, n, pool);
	for (size_t lo = 0; lo < n; lo += (size_t) 1 << 18)
		s_plain += sft_sum_squares(g1 + lo, n - lo < ((size_t) 1 << 18) ? n - lo : ((size_t) 1 << 18));
	sft_adamw_update_slab(p1, g1, m1, v1, n, t, 3, 0.5f, &cfg, 1e-3, 1, pool);
	for (int i = 0; i < 3; i++)
		sft_adamw_update(p2 + t[i].offset, g2 + t[i].offset, m2 + t[i].offset, v2 + t[i].offset,
						 t[i].numel, 0.5f, &cfg, 1e-3, t[i].weight_decay ? 0.1 : 0.0, 1);
	TAP_OK(sft_pool_threads(pool) == 3 && s_pool == s_plain &&
		   memcmp(p1, p2, sizeof(float) * n) == 0 && memcmp(m1, m2, sizeof(float) * n) == 0 &&
		   memcmp(v1, v2, sizeof(float) * n) == 0 && max_abs_f(g1, n) == 0.0f,
		   "AdamW and the gradient norm over a 3-thread pool = plain loops, bit for bit");
	sft_pool_free(pool);
	free(p1), free(g1), free(m1), free(v1), free(p2), free(g2), free(m2), free(v2);
}

static void
test_schedules(void)
{
	/* peak 1e-3, 100 steps, 10 warmup, floor 0.1 */
	double		lr0 = sft_lr_at(SFT_LR_COSINE, 1e-3, 0, 100, 10, 0.1);
	double		lr5 = sft_lr_at(SFT_LR_COSINE, 1e-3, 5, 100, 10, 0.1);
	double		lr10 = sft_lr_at(SFT_LR_COSINE, 1e-3, 10, 100, 10, 0.1);
	double		lr55 = sft_lr_at(SFT_LR_COSINE, 1e-3, 55, 100, 10, 0.1);
	double		lr100 = sft_lr_at(SFT_LR_COSINE, 1e-3, 100, 100, 10, 0.1);
	double		lr500 = sft_lr_at(SFT_LR_COSINE, 1e-3, 500, 100, 10, 0.1);

	TAP_OK(lr0 == 0.0 && fabs(lr5 - 5e-4) < 1e-15 && fabs(lr10 - 1e-3) < 1e-15,
		   "warmup: 0 at step 0, linear, peak at the end of warmup (HF)");
	TAP_OK(fabs(lr55 - 1e-3 * (0.1 + 0.9 * 0.5)) < 1e-12 && fabs(lr100 - 1e-4) < 1e-12 &&
		   fabs(lr500 - 1e-4) < 1e-12, "cosine: half-way mid, floor at the end and after");
	TAP_OK(fabs(sft_lr_at(SFT_LR_LINEAR, 1e-3, 55, 100, 10, 0.0) - 5e-4) < 1e-12 &&
		   fabs(sft_lr_at(SFT_LR_LINEAR, 1e-3, 100, 100, 10, 0.2) - 2e-4) < 1e-12,
		   "linear: half-way, floor");
	TAP_OK(sft_lr_at(SFT_LR_CONSTANT, 1e-3, 99, 100, 10, 0.1) == 1e-3 &&
		   sft_lr_at(SFT_LR_CONSTANT, 1e-3, 0, 100, 0, 0.1) == 1e-3 &&
		   sft_lr_at(SFT_LR_COSINE, 1e-3, 0, 100, 0, 0.1) == 1e-3,
		   "constant; no warmup starts at the peak");
}

int
main(void)
{
	openblas_set_num_threads(1);
	sft_rng_seed(&rng, 1234);
	test_vec_helpers();
	test_matmul();
	test_matvec();
	test_embedding();
	test_rmsnorm(0.0f);
	test_rmsnorm(1.0f);
	test_rope();
	test_attention_vs_ref(7, 7, 4, 2, 8);
	test_attention_vs_ref(200, 200, 3, 1, 16);	/* two row blocks */
	test_attention_vs_ref(5, 140, 4, 4, 8);	/* decode-style: 135 cached keys */
	test_attention_vs_ref(1, 1, 2, 1, 4);
	test_attention_one(1, 2, 1, 4);
	test_attention_one(77, 9, 3, 16);
	test_attention_grad(6, 6, 4, 2, 4, 0);	/* GQA, every element */
	test_attention_grad(3, 9, 2, 1, 4, 0);	/* queries after cached keys */
	fd_step = 4e-3f;			/* 150 x 16 outputs in the probe sum */
	test_attention_grad(150, 150, 2, 1, 8, 120);	/* two row blocks, sampled */
	fd_step = 1e-3f;
	/* sliding window of 5 keys (Gemma 3's local layers), its own scale */
	attn_window = 5;
	test_attention_vs_ref(9, 9, 4, 2, 8);
	test_attention_vs_ref(130, 130, 2, 1, 8);	/* three row blocks, window far behind */
	test_attention_vs_ref(3, 12, 2, 2, 4);	/* decode-style, keys before the window */
	test_attention_one(12, 4, 2, 8);
	test_attention_one(3, 2, 1, 4);	/* fewer keys than the window */
	test_attention_grad(9, 9, 4, 2, 4, 0);
	test_attention_grad(3, 11, 2, 1, 4, 0);
	attn_window = 0;
	test_swiglu();
	test_geglu();
	test_bias_softcap();
	test_dropout();
	test_lora();
	test_crossentropy();
	test_adamw();
	test_adamw_slab();
	test_schedules();
	return tap_done();
}
