/*
 * model.h: a decoder-only causal language model as Hugging Face's
 * LlamaForCausalLM (and Qwen2, Qwen3, SmolLM3, Gemma3 text: see model.c)
 * computes it, with training (forward, backward, AdamW) and KV-cached
 * inference.
 *
 * Dimension legend used in shape comments throughout the core:
 *   L  layers            C  hidden size         NH  query heads
 *   NKV key/value heads  HD head dim            F   FFN (SwiGLU) width
 *   V  vocabulary        T  tokens in a packed micro-batch   S  one sequence
 *
 * Parameters live in one slab (model->params) with a table of named tensors
 * (HF names: "model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight",
 * ..., "lm_head.weight" only when embeddings are untied) pointing into it, so
 * a checkpoint is one write and AdamW is one loop.
 */
#ifndef SFT_CORE_MODEL_H
#define SFT_CORE_MODEL_H

#include "common.h"
#include "llama_config.h"
#include "optim.h"
#include "quant.h"

#define SFT_TENSOR_NAME_MAX 96

typedef struct SftParamTensor
{
	char		name[SFT_TENSOR_NAME_MAX];	/* HF tensor name */
	int			ndim;			/* 1 or 2 */
	int64_t		shape[2];		/* HF (PyTorch) shape: [out, in] for linear weights */
	size_t		numel;
	size_t		offset;			/* into the parameter slab, in floats */
	int			weight_decay;	/* 1 for matrices, 0 for norms */
} SftParamTensor;

typedef struct SftModel SftModel;	/* defined in model.c */

SftStatus	sft_model_new(const SftLlamaConfig *cfg, SftModel **out, SftError *err);
void		sft_model_free(SftModel *model);
/* HF's initialisation: weights normal(0, 0.02), biases 0, RMSNorm weights 1
 * (0 for Gemma's x * (1 + w) norms). */
void		sft_model_init_random(SftModel *model, uint64_t seed);

const SftLlamaConfig *sft_model_config(const SftModel *model);
float	   *sft_model_params(SftModel *model);	/* the slab [n_params] */
size_t		sft_model_num_params(const SftModel *model);
int			sft_model_tensor_count(const SftModel *model);
const SftParamTensor *sft_model_tensor(const SftModel *model, int i);
const SftParamTensor *sft_model_find_tensor(const SftModel *model, const char *hf_name);

/* ---------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------- */

/*
 * A micro-batch: n_seqs sequences packed back to back (positions restart at 0
 * for every sequence; attention never crosses a sequence boundary).
 * mask[t] = 1 means token t is a training target: the loss includes
 * -log p(tokens[t] | tokens[start..t-1]).  mask of a sequence's first token is
 * ignored (nothing predicts it).
 */
typedef struct SftBatch
{
	int			n_seqs;
	const int  *seq_lens;		/* [n_seqs] */
	const int32_t *tokens;		/* [T = sum of seq_lens] */
	const int32_t *mask;		/* [T] 0/1 */
} SftBatch;

typedef struct SftTrainer SftTrainer;	/* gradients, AdamW moments, activations */

typedef struct SftLoraConfig SftLoraConfig;	/* lora_adapter.h */
typedef struct SftLoraAdapter SftLoraAdapter;

typedef struct SftTrainerOptions
{
	int			max_tokens;		/* bounds T of any micro-batch (activations are sized once) */
	float		dropout;		/* residual dropout probability, 0 disables */
	uint64_t	seed;			/* of the dropout draws (residual and adapter) */
	/*
	 * Keep only each layer's input from the forward pass and recompute the
	 * rest of the layer in backward: activation memory of one layer plus
	 * [L, T, C], for about one more forward pass; gradients bit for bit
	 * those without it.
	 */
	int			checkpoint_activations;
	/*
	 * LoRA: the adapter (lora_adapter.h) trained in place on a frozen base:
	 * the base gets no weight gradients (activation gradients flow through
	 * it), AdamW moments cover the adapter only, and its own dropout applies
	 * to each adapted module's input.  NULL: full fine-tuning.  The adapter
	 * must outlive the trainer.
	 */
	SftLoraAdapter *adapter;
} SftTrainerOptions;

SftStatus	sft_trainer_create(SftModel *model, const SftTrainerOptions *opts,
							   SftTrainer **out, SftError *err);
/* Full fine-tuning with max_tokens, dropout and seed (the other options off). */
SftStatus	sft_trainer_new(SftModel *model, int max_tokens, float dropout,
							uint64_t seed, SftTrainer **out, SftError *err);
void		sft_trainer_free(SftTrainer *trainer);

/*
 * Bytes sft_trainer_create + the model (+ the adapter, of config lora when
 * not NULL; opts->adapter is not read) would allocate: for memory limits.
 */
size_t		sft_trainer_memory_estimate_for(const SftLlamaConfig *cfg,
											const SftTrainerOptions *opts,
											const SftLoraConfig *lora);
/* The same for full fine-tuning with dropout (the largest without checkpointing). */
size_t		sft_trainer_memory_estimate(const SftLlamaConfig *cfg, int max_tokens);

/*
 * PEFT's initial adapter: every lora_A kaiming_uniform_(a = sqrt(5)), i.e.
 * uniform in +-1/sqrt(in), from seed; every lora_B zero (so the adapted
 * model starts as the base).
 */
void		sft_lora_init_peft(SftLoraAdapter *adapter, uint64_t seed);

/*
 * Forward + backward of one micro-batch; gradients are SUMMED into the
 * gradient slab (not averaged).  Returns the summed loss and target count.
 */
SftStatus	sft_trainer_accumulate(SftTrainer *trainer, const SftBatch *batch,
								   double *loss_sum, int64_t *n_targets, SftError *err);

/*
 * One optimizer step: gradients divided by n_targets (the targets of every
 * micro-batch accumulated since the last step), clipped to max_grad_norm,
 * AdamW update with learning rate lr, gradients zeroed.  grad_norm receives
 * the norm before clipping.  n_targets <= 0 is SFT_ERR_INVALID; a non-finite
 * gradient norm is SFT_ERR_INVALID too (gradients zeroed, weights untouched).
 * The memory-bound slab passes run on openblas_get_num_threads() threads, the
 * thread budget the caller gave BLAS.
 */
SftStatus	sft_trainer_step(SftTrainer *trainer, int64_t n_targets,
							 const SftAdamWConfig *adamw, double lr,
							 double *grad_norm, SftError *err);

/* Forward only, no dropout: summed loss and target count (evaluation). */
SftStatus	sft_trainer_evaluate(SftTrainer *trainer, const SftBatch *batch,
								 double *loss_sum, int64_t *n_targets, SftError *err);

/*
 * Restart the dropout random stream (sft_trainer_new seeds it once).  A
 * resumed run can reseed with (run seed, step) to get draws independent of
 * where it was interrupted; tests reseed to replay identical draws.
 */
void		sft_trainer_set_dropout_seed(SftTrainer *trainer, uint64_t seed);

/*
 * The trained parameters: the model's (full fine-tuning) or the adapter's
 * (LoRA), n of them.  AdamW state for checkpoints: moments [n] each and
 * steps taken; gradients [n] for tests.
 */
size_t		sft_trainer_num_trained(const SftTrainer *trainer);
float	   *sft_trainer_adam_m(SftTrainer *trainer);
float	   *sft_trainer_adam_v(SftTrainer *trainer);
int64_t    *sft_trainer_step_count(SftTrainer *trainer);
float	   *sft_trainer_grads(SftTrainer *trainer);

/*
 * The adapter dropout draws [T, IN] of (layer, module) of the last training
 * micro-batch (1 kept), or NULL when that module has no adapter dropout: for
 * tests that replay them in a reference.
 */
const uint8_t *sft_trainer_lora_dropout_keep(const SftTrainer *trainer, int layer, int module);

/*
 * Resuming: the trainer takes over moments m and v [trained parameters: the
 * model's, or the adapter's for LoRA] (from sft_alloc, e.g. the checkpoint
 * readers') instead of copying them, so a
 * resumed run never holds two pairs (its memory stays what
 * sft_trainer_memory_estimate says); its own are freed.
 */
void		sft_trainer_adopt_adam(SftTrainer *trainer, float *m, float *v, int64_t step);

/* ---------------------------------------------------------------------------
 * Inference: batch 1, KV cache
 * ------------------------------------------------------------------------- */

typedef struct SftDecoder SftDecoder;

SftStatus	sft_decoder_new(const SftModel *model, int max_seq, SftDecoder **out,
							SftError *err);
void		sft_decoder_free(SftDecoder *dec);
/* Bytes sft_decoder_new would allocate for this config and length. */
size_t		sft_decoder_memory_estimate(const SftLlamaConfig *cfg, int max_seq);
void		sft_decoder_reset(SftDecoder *dec);
int			sft_decoder_position(const SftDecoder *dec);

/*
 * Append n tokens to the cache (n >= 1) and write the logits [V] of the last
 * one (logits may be NULL to only fill the cache).  Exceeding max_seq is
 * SFT_ERR_LIMIT, a token outside the vocabulary SFT_ERR_INVALID; either way
 * the cache is left as it was.  A prompt goes through BLAS in chunks of 128
 * tokens; a single token through plain matrix-vector loops (decode is bound
 * by reading the weights, which one core already saturates).  The model must
 * outlive the decoder and not change under it.
 */
SftStatus	sft_decoder_feed(SftDecoder *dec, const int32_t *tokens, int n,
							 float *logits, SftError *err);

/*
 * Reduced-precision copies of a model's weight matrices for decode steps
 * (quant.h): every 2-D tensor, the LM head included, in dtype; embeddings are
 * still looked up, and prompts still prefilled, in fp32 from the model (there
 * is no bf16 or int8 GEMM in OpenBLAS here, and a prefill is compute-bound).
 * q8_0 needs every matrix row to be a multiple of 32 long (else
 * SFT_ERR_UNSUPPORTED).  The model must outlive them.
 */
typedef struct SftDecodeWeights SftDecodeWeights;

SftStatus	sft_decode_weights_new(const SftModel *model, SftDType dtype,
								   SftDecodeWeights **out, SftError *err);
void		sft_decode_weights_free(SftDecodeWeights *weights);
size_t		sft_decode_weights_bytes(const SftDecodeWeights *weights);

/*
 * Single-token steps of this decoder read weights (built from its model)
 * instead of the fp32 matrices; NULL goes back to fp32.  weights must outlive
 * the decoder's use of it.
 */
void		sft_decoder_use_weights(SftDecoder *dec, const SftDecodeWeights *weights);

/*
 * Run the decoder's model with a LoRA adapter (lora_adapter.h) applied to
 * the projections it targets: the logits are those of the merged model
 * (within fp32 rounding) while the model stays shared and unchanged.  NULL
 * detaches it.  The adapter must fit the model (SFT_ERR_INVALID otherwise)
 * and outlive the decoder's use of it; the decoder keeps small buffers for
 * it.  The KV cache is not reset: attach before feeding a sequence.
 */
typedef struct SftLoraAdapter SftLoraAdapter;

SftStatus	sft_decoder_use_adapter(SftDecoder *dec, const SftLoraAdapter *adapter,
									SftError *err);

/*
 * One new token for each of n sequences (n <= 128), each with its own
 * decoder of the same model (and decode weights and adapter): token i is appended to
 * decs[i]'s cache and its logits land in logits[i * V ..].  Every weight is
 * read once for all n; each sequence's logits are bitwise those of
 * sft_decoder_feed of that token alone, so batched generation gives exactly
 * what generating each sequence alone gives.  On error nothing is changed.
 */
SftStatus	sft_decoder_step_batch(SftDecoder *const *decs, int n, const int32_t *tokens,
								   float *logits, SftError *err);

typedef struct SftSamplerConfig
{
	double		temperature;	/* 0: greedy (argmax, lowest id on ties) */
	int			top_k;			/* 0: off */
	double		top_p;			/* 1: off */
} SftSamplerConfig;

/* Sample one id from logits [V]; scratch holds at least V floats + V ints. */
int32_t		sft_sample(const float *logits, int V, const SftSamplerConfig *cfg,
					   SftRng *rng, void *scratch);
size_t		sft_sample_scratch_bytes(int V);

#endif							/* SFT_CORE_MODEL_H */
