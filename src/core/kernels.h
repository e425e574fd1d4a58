/*
 * kernels.h: the numerical kernels of the models (Llama and the families
 * model.c computes), in forward/backward pairs.
 *
 * Conventions (as in llm.c):
 *   - arguments: outputs first, then inputs and saved activations, then sizes;
 *   - backward kernels ACCUMULATE (+=) into every gradient they produce, so the
 *     caller zeroes a gradient buffer once and several consumers of the same
 *     tensor add their share;
 *   - matrices are row-major; linear weights have PyTorch's [out, in] shape;
 *   - a row stride argument (ld*) lets a kernel work on a column block of a
 *     wider matrix (the q | k | v columns of the fused projection output).
 *
 * Dimension legend: T tokens, C hidden, NH query heads, NKV key/value heads,
 * HD head dim, F FFN width, V vocabulary, N target rows.
 *
 * The matrix products go through cblas_sgemm (except the decode step's
 * matrix-vector product, see matvec_forward); everything else is plain C the
 * compiler vectorises (-O3 -march=native).  Sums use eight independent
 * partial accumulators, because without -ffast-math the compiler may not
 * reorder a single float accumulator into vector lanes; their loops count
 * with size_t, because PostgreSQL builds with -fwrapv, under which gcc
 * cannot bound an int loop of the form i + 8 <= n and vectorises it badly.
 */
#ifndef SFT_CORE_KERNELS_H
#define SFT_CORE_KERNELS_H

#include "common.h"

#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Vector helpers
 * ------------------------------------------------------------------------- */

/* y[i] = exp(x[i]) to ~2e-7 relative (a vectorised polynomial; y may be x). */
void		sft_vec_exp(float *y, const float *x, int n);
float		sft_vec_sum(const float *x, int n);
float		sft_vec_dot(const float *a, const float *b, int n);
float		sft_vec_max(const float *x, int n);

/* ---------------------------------------------------------------------------
 * Matrix product (linear layer without bias)
 * ------------------------------------------------------------------------- */

/* out[T, OUT] = x[T, IN] @ w[OUT, IN]^T */
void		matmul_forward(float *out, const float *x, const float *w,
						   int T, int IN, int OUT);
/* dx[T, IN] += dout @ w; dw[OUT, IN] += dout^T @ x.  dx or dw may be NULL. */
void		matmul_backward(float *dx, float *dw, const float *dout,
							const float *x, const float *w, int T, int IN, int OUT);

/*
 * y[OUT] = w[OUT, IN] @ x[IN], the batch-1 decode's product.  Plain loops,
 * one row after the other: decode is bound by reading the weights, and one
 * sequential stream reads faster than BLAS's sgemv here (measured 19-20 vs
 * 6-11 GB/s on the 2-core Zen 3 development machine).
 */
void		matvec_forward(float *y, const float *x, const float *w, int IN, int OUT);
/*
 * The same product for nx inputs at once, y[nx, OUT] = x[nx, IN] @ w^T, each
 * row of w read once for all of them: every y[j] is bitwise what
 * matvec_forward gives for x[j] alone, which is what lets batched generation
 * give exactly the single-sequence results.
 */
void		matvec_forward_rows(float *y, const float *x, int nx, const float *w, int IN, int OUT);

/* out[n] = x[n] + y[n] (the residual add; out may be x).  Its backward is
 * the identity: the residual gradient flows to both inputs unchanged. */
void		residual_forward(float *out, const float *x, const float *y, size_t n);

/* ---------------------------------------------------------------------------
 * Embedding
 * ------------------------------------------------------------------------- */

/* out[T, C] = wte[tokens[t]] */
void		embedding_forward(float *out, const int32_t *tokens, const float *wte,
							  int T, int C);
/* dwte[tokens[t]] += dout[t] */
void		embedding_backward(float *dwte, const float *dout, const int32_t *tokens,
							   int T, int C);

/* ---------------------------------------------------------------------------
 * RMSNorm: out = x * rstd * (w_offset + w), rstd = 1 / sqrt(mean(x^2) + eps),
 * fp32.  w_offset is 0 for Llama's norms, 1 for Gemma's x * (1 + w).
 * ------------------------------------------------------------------------- */

/* out[T, C], rstd[T] (saved for backward) from x[T, C], w[C]; out may be x */
void		rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
							int T, int C, float eps, float w_offset);
/* dx[T, C] += ..., dw[C] += ... (dw may be NULL: a frozen norm) from dout[T, C]
 * and the forward's x, w, rstd */
void		rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
							 const float *w, const float *rstd, int T, int C, float w_offset);

/* ---------------------------------------------------------------------------
 * Rotary position embedding, HF layout (rotate_half): for i < HD/2
 *   y[i]        = x[i] cos - x[i + HD/2] sin
 *   y[i + HD/2] = x[i + HD/2] cos + x[i] sin
 * with cos/sin tables [n_pos, HD/2] and the token's position pos[t].
 * ------------------------------------------------------------------------- */

/* In place on n_heads consecutive heads of each row: x[T, ld], heads at 0.. */
void		rope_forward(float *x, const int32_t *pos, const float *cos_tab,
						 const float *sin_tab, int T, int ld, int n_heads, int HD);
/* In place: dx = R^T dy (the rotation's transpose), same layout. */
void		rope_backward(float *dx, const int32_t *pos, const float *cos_tab,
						  const float *sin_tab, int T, int ld, int n_heads, int HD);

/* ---------------------------------------------------------------------------
 * Causal grouped-query attention for one sequence.
 *
 * nq queries attend to nkv >= nq keys; query i sits at position nkv - nq + i
 * and sees keys 0 .. nkv - nq + i (training: nq == nkv; KV-cached decode:
 * nq new tokens after nkv - nq cached ones).  Query head h reads kv head
 * h / (NH / NKV).  q[nq, ldq] holds heads at columns h*HD, k and v [nkv, ldkv]
 * hold kv heads at g*HD, out[nq, ldo] receives heads at h*HD, lse[nq, NH] the
 * log-sum-exp of each softmax row (scaled scores), saved for backward.
 * Scores are scale * q.k; window > 0 is a sliding window: a query sees only
 * the last window keys of those (transformers: kv_idx > q_idx - window).
 * Scratch: attention_scratch_floats(nkv, NH / NKV, HD) floats.
 * ------------------------------------------------------------------------- */

#define SFT_ATTN_BLOCK 64		/* query rows per head and block */

size_t		attention_scratch_floats(int nkv, int group, int HD);
void		attention_forward(float *out, int ldo, float *lse,
							  const float *q, int ldq, const float *k, const float *v,
							  int ldkv, int nq, int nkv, int NH, int NKV, int HD,
							  float scale, int window, float *scratch);
/*
 * One task of the above: kv head g and query rows [r0, r0 + SFT_ATTN_BLOCK)
 * (clipped to nq).  Tasks write disjoint parts of out and lse, so they can
 * run concurrently (each with its own scratch).
 */
void		attention_forward_block(float *out, int ldo, float *lse,
									const float *q, int ldq, const float *k, const float *v,
									int ldkv, int nq, int nkv, int NH, int NKV, int HD,
									float scale, int window, int g, int r0, float *scratch);
/*
 * The same for one query (nq = 1, the decode step) in plain loops: no BLAS
 * call overhead for products this small.  Scratch: nkv floats.
 */
void		attention_forward_one(float *out, float *lse, const float *q,
								  const float *k, const float *v, int ldkv, int nkv,
								  int NH, int NKV, int HD, float scale, int window,
								  float *scratch);
/*
 * dq[nq, ld_dq] += ..., dk/dv[nkv, ld_dkv] += ... from dout[nq, ldo] and the
 * forward's q, k, v, out and lse (probabilities are recomputed, not stored).
 */
void		attention_backward(float *dq, int ld_dq, float *dk, float *dv, int ld_dkv,
							   const float *dout, int ldo,
							   const float *q, int ldq, const float *k, const float *v,
							   int ldkv, const float *out, const float *lse,
							   int nq, int nkv, int NH, int NKV, int HD,
							   float scale, int window, float *scratch);
/*
 * One task of the above (kv head g, query rows from r0).  Tasks of one kv
 * head all add into the same dk/dv rows: concurrent tasks need their own
 * dk/dv buffers (dq rows and columns are the task's own).
 */
void		attention_backward_block(float *dq, int ld_dq, float *dk, float *dv, int ld_dkv,
									 const float *dout, int ldo,
									 const float *q, int ldq, const float *k, const float *v,
									 int ldkv, const float *out, const float *lse,
									 int nq, int nkv, int NH, int NKV, int HD,
									 float scale, int window, int g, int r0, float *scratch);
/* The same forward in plain loops (double sums): the tests' reference. */
void		attention_forward_ref(float *out, int ldo, float *lse,
								  const float *q, int ldq, const float *k, const float *v,
								  int ldkv, int nq, int nkv, int NH, int NKV, int HD,
								  float scale, int window);

/* ---------------------------------------------------------------------------
 * SwiGLU: h = silu(gate) * up, gate and up side by side in gu[T, 2F]
 * ------------------------------------------------------------------------- */

void		swiglu_forward(float *h, const float *gu, int T, int F);
/* dgu[T, 2F] += ... from dh[T, F] and the forward's gu */
void		swiglu_backward(float *dgu, const float *dh, const float *gu, int T, int F);

/* ---------------------------------------------------------------------------
 * GeGLU (Gemma): h = gelu_tanh(gate) * up, gate and up side by side in gu[T, 2F]
 * ------------------------------------------------------------------------- */

void		geglu_tanh_forward(float *h, const float *gu, int T, int F);
/* dgu[T, 2F] += ... from dh[T, F] and the forward's gu */
void		geglu_tanh_backward(float *dgu, const float *dh, const float *gu, int T, int F);

/* ---------------------------------------------------------------------------
 * Linear-layer bias on the first N columns of rows of stride ld
 * ------------------------------------------------------------------------- */

/* out[T, ld][:, :N] += b[N] */
void		bias_forward(float *out, const float *b, int T, int N, int ld);
/* db[N] += sum over rows of dout[T, ld][:, :N] */
void		bias_backward(float *db, const float *dout, int T, int N, int ld);

/* ---------------------------------------------------------------------------
 * Logit softcapping (Gemma): y = cap tanh(x / cap)
 * ------------------------------------------------------------------------- */

/* In place on x[n]; th[n] (may be NULL) keeps tanh(x / cap) for backward. */
void		softcap_forward(float *x, float *th, float cap, int n);
/* In place: d[n] (dy on entry) becomes dx = dy (1 - th^2). */
void		softcap_backward(float *d, const float *th, int n);

/* ---------------------------------------------------------------------------
 * Inverted dropout: keep with probability 1 - p, scale kept values 1/(1-p)
 * ------------------------------------------------------------------------- */

/* In place on x[n]; keep[n] records the draw (1 kept, 0 dropped). */
void		dropout_forward(float *x, uint8_t *keep, float p, SftRng *rng, size_t n);
/* dx[n] += dout * keep / (1 - p) */
void		dropout_backward(float *dx, const float *dout, const uint8_t *keep,
							 float p, size_t n);

/* ---------------------------------------------------------------------------
 * Softmax cross-entropy over N rows of V logits
 * ------------------------------------------------------------------------- */

/*
 * In place: logits[N, V] become probabilities; returns the summed
 * -log p(target[i]) in double.
 */
double		crossentropy_forward(float *probs, const int32_t *targets, int N, int V);
/*
 * In place, the one exception to "backward accumulates": probs[N, V] becomes
 * dlogits = probs - onehot(target).  [N, V] is the largest activation, and
 * keeping a second copy for the gradient would double it.
 */
void		crossentropy_backward_inplace(float *probs, const int32_t *targets,
										  int N, int V);

/* ---------------------------------------------------------------------------
 * LoRA: the low-rank update of a frozen linear layer (PEFT's lora.Linear)
 *   y += scale * (x A^T) B^T,  A [r, IN], B [OUT, r]
 * x is the layer input after the adapter's own dropout (the caller applies
 * it); u = x A^T [T, r] is kept for backward.  Row strides let y be a column
 * block of the fused q | k | v (or gate | up) output.
 * ------------------------------------------------------------------------- */

/* y[T, ldy][:, :OUT] += scale * u B^T, u[T, r] = x[T, ldx] A^T */
void		lora_update_forward(float *y, int ldy, float *u, const float *x, int ldx,
						 const float *A, const float *B, float scale,
						 int T, int IN, int OUT, int r);
/*
 * From dy[T, ldy] (the gradient of y's block) and the forward's x, u:
 * dB[OUT, r] += scale dy^T u, du = scale dy B (written to du[T, r], scratch),
 * dA[r, IN] += du^T x, and dx[T, ldx] += du A when dx is not NULL.
 */
void		lora_update_backward(float *dx, int lddx, float *dA, float *dB, float *du,
						  const float *dy, int ldy, const float *x, int ldx,
						  const float *u, const float *A, const float *B, float scale,
						  int T, int IN, int OUT, int r);

/* out[n] = keep ? x / (1 - p) : 0: dropout_forward's arithmetic on draws made
 * before (out may be x), for recomputing a forward pass exactly */
void		dropout_apply(float *out, const float *x, const uint8_t *keep, float p, size_t n);
/* keep[n] = a fresh draw (1 kept with probability 1 - p): dropout_forward's draws */
void		dropout_draw(uint8_t *keep, float p, SftRng *rng, size_t n);

#endif							/* SFT_CORE_KERNELS_H */
