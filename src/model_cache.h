/*
 * model_cache.h: loaded models, cached per backend for generation and
 * evaluation (src/generate.c, src/eval.c).
 *
 * A caller leases a model by name for the duration of one SQL call (or one
 * set-returning function scan).  The lease pins the cache entry, so that
 * nothing it uses is freed under it, and lends it a KV-cache decoder and/or
 * a forward-only evaluator; the lease lives in a memory context of the
 * caller's choosing and gives everything back when that context is reset or
 * deleted, which happens on success and on error alike: one cleanup path.
 *
 * See model_cache.c for the invalidation and memory rules.
 */
#ifndef SFT_MODEL_CACHE_H
#define SFT_MODEL_CACHE_H

#include "postgres.h"

#include "core/llama_config.h"
#include "core/lora_adapter.h"
#include "core/model.h"

/* GUC sft.model_cache_size, in MB: memory kept between calls, per backend. */
extern int	sft_model_cache_size_mb;

/* GUC sft.generate_dtype: an SftDType, the precision of decode steps. */
extern int	sft_generate_dtype;

/* GUC sft.generate_batch_memory, in MB: KV caches sft_generate_batch may hold at once. */
extern int	sft_generate_batch_memory_mb;

/* Called from _PG_init: defines the GUC. */
void		SftModelCacheInit(void);

typedef struct SftModelCacheEntry SftModelCacheEntry;	/* model_cache.c */

typedef struct SftModelLease
{
	/* read-only for the caller, valid while the lease lives */
	const char *name;			/* the model's name */
	const char *tokenizer;		/* the name of its tokenizer */
	const SftLlamaConfig *config;
	SftModel   *model;			/* core model, shared by every lease of it (an
								 * adapter's: its base's) */
	const SftLoraAdapter *adapter;	/* a LoRA adapter model's tensors, or NULL */
	const char *system_prompt;	/* the row's, as of this lease, or NULL */

	/* private */
	SftModelCacheEntry *entry;
	SftDecoder *decoder;		/* lent by SftModelLeaseDecoder, or NULL */
	int			decoder_seq;	/* its max_seq */
	SftTrainer *evaluator;		/* lent by SftModelLeaseEvaluator, or NULL */
	int			evaluator_tokens;	/* its max_tokens */
	bool		released;
	MemoryContextCallback callback;
} SftModelLease;

/*
 * Lease the model: from the cache when its catalog row still names the same
 * weights, else loaded (as the current user: reading the weights needs
 * SELECT on their large object, checked on every lease, cached or not).
 * The lease is allocated in owner and returned to the cache when owner is
 * reset or deleted.  ERROR (undefined_object) for an unknown model; any
 * ERROR leaves the cache as it was.
 */
SftModelLease *SftModelLeaseAcquire(const char *name, MemoryContext owner);

/*
 * A decoder holding at least min_seq tokens, reset to position 0, owned by
 * the lease until it ends (then kept in the cache for the next call); an
 * adapter's decoder runs the base with the adapter attached.
 */
SftDecoder *SftModelLeaseDecoder(SftModelLease *lease, int min_seq);

/*
 * A forward-only evaluator (sft_trainer_evaluate) for micro-batches of up to
 * max_tokens tokens, owned by the lease like the decoder.
 */
SftTrainer *SftModelLeaseEvaluator(SftModelLease *lease, int max_tokens);

/* Bytes of the decoder the lease holds (0 without one). */
size_t		SftModelLeaseDecoderBytes(const SftModelLease *lease);

/* Give the lease back now (also done by owner's reset); never raises. */
void		SftModelLeaseRelease(SftModelLease *lease);

#endif							/* SFT_MODEL_CACHE_H */
