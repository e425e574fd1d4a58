/*
 * model_cache.c: the per-backend cache of loaded models behind sft_generate,
 * sft_loss and sft_eval, and the SQL functions that show and clear it.
 *
 * Why a cache.  Loading a model means reading its whole checkpoint from a
 * large object (hundreds of MB for a 135M model) and, for generation,
 * allocating a KV cache; a chat session calls sft_generate many times on the
 * same model.  So each backend keeps the models it used, with one spare
 * decoder and one spare evaluator each, between calls.
 *
 * Invalidation.  A model row never changes after it is inserted (training
 * writes a new model; see model_catalog.h), and dropping and re-creating a
 * name gives a new weights large object.  Every lease therefore reads the
 * row (one indexed SPI lookup) and compares its weights OID and size with the
 * entry's: a mismatch or a missing row drops the entry.  Nothing can serve a
 * stale model, and no cache-invalidation callback is needed.
 *
 * Privileges.  Reading weights needs SELECT on their large object; the cache
 * must not let a role read a model another role loaded in the same backend
 * (SET ROLE, SECURITY DEFINER functions), so the check is made on every
 * lease, hit or miss.
 *
 * Memory.  Core memory (the parameter slab, KV caches, evaluator
 * activations) is malloc'd by the core, outside PostgreSQL's memory contexts;
 * this file owns all of it.  sft.model_cache_size bounds what is kept
 * between calls: whenever a lease ends (and whenever the setting changes),
 * spare decoders and evaluators are freed first, then whole models in least
 * recently used order, until the total fits.  What a running call uses is
 * never freed under it (entries are pinned by their leases), so a model
 * larger than the bound still works: it is loaded, used and freed again.
 * A bound of 0 disables caching.
 *
 * Adapters.  A LoRA adapter's entry holds only the adapter tensors and a
 * pin on its base's entry, whose model (and decode weights) it shares: any
 * number of adapters of one base keep one copy of the base.  Its decoders
 * run the base's model with the adapter attached (sft_decoder_use_adapter).
 * A lease of an adapter checks both rows and both large objects' privileges;
 * the base entry is validated like any other, and an adapter entry whose
 * base entry is not the current one is dropped.  The base stays loaded at
 * least as long as an adapter entry needs it (the pin), and is evicted like
 * any unpinned entry after that.
 *
 * Threads.  Matrix products run on OpenBLAS threads of this backend; every
 * lease applies sft.threads (0: one per core, OpenBLAS's default), so
 * concurrent sessions can be kept from oversubscribing the cores.
 *
 * Errors.  Every step that can raise an ERROR (catalog lookup, privilege
 * check, loading, allocating) happens before the cache structure is changed,
 * and leases are given back by a memory context reset callback, which runs on
 * success and on abort alike and never raises.
 */
#include "postgres.h"

#include <cblas.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "storage/large_object.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "model_cache.h"
#include "model_catalog.h"
#include "sft.h"
#include "train.h"

PG_FUNCTION_INFO_V1(sft_model_cache);
PG_FUNCTION_INFO_V1(sft_model_cache_clear);

int			sft_model_cache_size_mb = 1024;
int			sft_generate_dtype = SFT_DTYPE_F32;
int			sft_generate_batch_memory_mb = 512;

static const struct config_enum_entry sft_generate_dtype_options[] = {
	{"f32", SFT_DTYPE_F32, false},
	{"bf16", SFT_DTYPE_BF16, false},
	{"q8_0", SFT_DTYPE_Q8_0, false},
	{NULL, 0, false}
};

/* Decoders are sized in steps of this many tokens, so that one fits many calls. */
#define SFT_DECODER_SEQ_STEP 256

struct SftModelCacheEntry
{
	dlist_node	node;			/* in cache_list, most recently used first */
	bool		cached;			/* false once dropped: freed when unpinned */
	int			pins;			/* leases using the entry right now */

	/* identity: the catalog row it was loaded from */
	char	   *name;			/* TopMemoryContext */
	char	   *tokenizer;		/* TopMemoryContext */
	Oid			weights;
	int64		size_bytes;

	SftLlamaConfig config;
	SftModel   *model;			/* core allocation; an adapter's: the base's */
	size_t		model_bytes;	/* the fp32 model and its decode weights; an adapter's tensors */

	/* an adapter: its tensors (core allocation) and its base's entry, pinned */
	SftLoraAdapter *adapter;
	SftModelCacheEntry *base;

	/* reduced-precision copies for decode steps, made on first use */
	SftDecodeWeights *decode_weights[SFT_DTYPE_COUNT];

	/* kept between calls (core allocations), NULL when none */
	SftDecoder *spare_decoder;
	int			spare_decoder_seq;
	size_t		spare_decoder_bytes;
	SftTrainer *spare_evaluator;
	int			spare_evaluator_tokens;
	size_t		spare_evaluator_bytes;

	/* decoders and evaluators lent to running calls */
	size_t		lent_bytes;

	TimestampTz loaded_at;
	TimestampTz last_used;
	int64		hits;			/* leases served without loading */
};

static dlist_head cache_list = DLIST_STATIC_INIT(cache_list);

/* ---------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------- */

/* Bytes a decoder of max_seq tokens allocates (the core sizes it). */
static size_t
SftDecoderBytes(const SftLlamaConfig *c, int max_seq)
{
	return sft_decoder_memory_estimate(c, max_seq);
}

/*
 * Bytes an evaluator adds to its entry's model (everything the trainer
 * allocates but the parameters; an adapter's evaluator runs the base with
 * the adapter attached, and neither is counted again).
 */
static size_t
SftEvaluatorBytes(const SftModelCacheEntry *e, int max_tokens)
{
	SftTrainerOptions o = {.max_tokens = max_tokens};
	const SftLoraConfig *lora = e->adapter ? &e->adapter->config : NULL;
	size_t		total = sft_trainer_memory_estimate_for(&e->config, &o, lora);
	size_t		params = (size_t) SftConfigParameterCount(&e->config) * sizeof(float) +
		(e->adapter ? e->adapter->n_params * sizeof(float) : 0);

	return total > params ? total - params : total;
}

static size_t
SftEntryKeptBytes(const SftModelCacheEntry *e)
{
	return e->model_bytes + e->spare_decoder_bytes + e->spare_evaluator_bytes;
}

static size_t
SftCacheKeptBytes(void)
{
	dlist_iter	it;
	size_t		total = 0;

	dlist_foreach(it, &cache_list)
		total += SftEntryKeptBytes(dlist_container(SftModelCacheEntry, node, it.cur));
	return total;
}

static size_t
SftMegabytes(int mb)
{
	return (size_t) Max(mb, 0) * 1024 * 1024;
}

/* ---------------------------------------------------------------------------
 * Freeing (never raises: called from reset callbacks and GUC assign hooks)
 * ------------------------------------------------------------------------- */

static void
SftEntryFreeSpares(SftModelCacheEntry *e)
{
	sft_decoder_free(e->spare_decoder);
	e->spare_decoder = NULL;
	e->spare_decoder_seq = 0;
	e->spare_decoder_bytes = 0;
	sft_trainer_free(e->spare_evaluator);
	e->spare_evaluator = NULL;
	e->spare_evaluator_tokens = 0;
	e->spare_evaluator_bytes = 0;
}

static void
SftEntryFree(SftModelCacheEntry *e)
{
	SftModelCacheEntry *base = e->base;

	Assert(e->pins == 0 && !e->cached);
	SftEntryFreeSpares(e);
	for (int i = 0; i < SFT_DTYPE_COUNT; i++)
		sft_decode_weights_free(e->decode_weights[i]);
	if (base == NULL)
		sft_model_free(e->model);
	sft_lora_adapter_free(e->adapter);
	pfree(e->name);
	pfree(e->tokenizer);
	pfree(e);
	/* the adapter's pin on its base */
	if (base && --base->pins == 0 && !base->cached)
		SftEntryFree(base);
}

/* Take the entry out of the cache; it is freed now or when its last lease ends. */
static void
SftEntryUncache(SftModelCacheEntry *e)
{
	if (!e->cached)
		return;
	dlist_delete(&e->node);
	e->cached = false;
	if (e->pins == 0)
		SftEntryFree(e);
	else
		SftEntryFreeSpares(e);
}

/*
 * Free cached memory until what is kept fits limit + reserve bytes less than
 * limit: spares first (cheap to rebuild), then unpinned models, least
 * recently used first.  Returns the number of models evicted.
 */
static int
SftCacheShrink(size_t limit, size_t reserve)
{
	dlist_iter	it;
	size_t		target = limit > reserve ? limit - reserve : 0;
	int			evicted = 0;

	if (SftCacheKeptBytes() <= target)
		return 0;
	dlist_reverse_foreach(it, &cache_list)
	{
		SftEntryFreeSpares(dlist_container(SftModelCacheEntry, node, it.cur));
		if (SftCacheKeptBytes() <= target)
			return 0;
	}
	while (SftCacheKeptBytes() > target)
	{
		SftModelCacheEntry *victim = NULL;

		/* the least recently used entry no running call holds */
		dlist_reverse_foreach(it, &cache_list)
		{
			SftModelCacheEntry *e = dlist_container(SftModelCacheEntry, node, it.cur);

			if (e->pins == 0)
			{
				victim = e;
				break;
			}
		}
		if (victim == NULL)
			break;
		SftEntryUncache(victim);
		evicted++;
	}
	return evicted;
}

static void
SftModelCacheSizeAssign(int newval, void *extra)
{
	SftCacheShrink(SftMegabytes(newval), 0);
}

void
SftModelCacheInit(void)
{
	DefineCustomIntVariable("sft.model_cache_size",
							"Memory each backend may keep for loaded models between calls.",
							"Models used by sft_generate, sft_loss and sft_eval stay loaded "
							"(with a KV cache) up to this size; least recently used ones are "
							"freed first. 0 disables the cache.",
							&sft_model_cache_size_mb,
							1024, 0, INT_MAX / 2,
							PGC_USERSET,
							GUC_UNIT_MB,
							NULL, SftModelCacheSizeAssign, NULL);
	DefineCustomEnumVariable("sft.generate_dtype",
							 "Precision of the weights sft_generate reads for each new token.",
							 "f32 reads the model as trained; bf16 and q8_0 read a "
							 "reduced-precision copy (made once per cached model) and are "
							 "faster, as decoding is bound by reading the weights. Prompts "
							 "are always processed in f32; training, sft_loss and sft_eval "
							 "always use f32.",
							 &sft_generate_dtype,
							 SFT_DTYPE_F32, sft_generate_dtype_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("sft.generate_batch_memory",
							"Memory sft_generate_batch may give the KV caches of the sequences it decodes together.",
							"As many sequences are decoded at once as their KV caches fit in "
							"(at least one, at most 128); the others wait for a place.",
							&sft_generate_batch_memory_mb,
							512, 1, INT_MAX / 2,
							PGC_USERSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------------
 * Leases
 * ------------------------------------------------------------------------- */

static SftModelCacheEntry *
SftCacheFind(const char *name)
{
	dlist_iter	it;

	dlist_foreach(it, &cache_list)
	{
		SftModelCacheEntry *e = dlist_container(SftModelCacheEntry, node, it.cur);

		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static void
SftCheckWeightsReadable(const SftModelRow *row)
{
	if (lo_compat_privileges)
		return;
	if (pg_largeobject_aclcheck_snapshot(row->weights, GetUserId(), ACL_SELECT, NULL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for model \"%s\"", row->name),
				 errdetail("Reading a model needs SELECT on its weights, large object %u.",
						   row->weights),
				 errhint("The model's owner may run GRANT SELECT ON LARGE OBJECT %u TO ...",
						 row->weights)));
}

/* Load the row's weights into a new entry (not yet in the cache). */
static SftModelCacheEntry *
SftEntryLoad(const SftModelRow *row)
{
	SftModelCacheEntry *e;

	e = MemoryContextAllocZero(TopMemoryContext, sizeof(SftModelCacheEntry));
	PG_TRY();
	{
		e->name = MemoryContextStrdup(TopMemoryContext, row->name);
		e->tokenizer = MemoryContextStrdup(TopMemoryContext, row->tokenizer);
		e->weights = row->weights;
		e->size_bytes = row->size_bytes;
		e->model = SftModelLoadWeights(row);
	}
	PG_CATCH();
	{
		if (e->name)
			pfree(e->name);
		if (e->tokenizer)
			pfree(e->tokenizer);
		pfree(e);
		PG_RE_THROW();
	}
	PG_END_TRY();
	e->config = *sft_model_config(e->model);
	e->model_bytes = sft_model_num_params(e->model) * sizeof(float);
	e->loaded_at = GetCurrentTimestamp();
	return e;
}

/*
 * Load an adapter row's tensors into a new entry (not yet in the cache)
 * sharing base's model; the entry takes over the caller's pin on base.
 */
static SftModelCacheEntry *
SftEntryLoadAdapter(const SftModelRow *row, SftModelCacheEntry *base)
{
	SftModelCacheEntry *e;

	e = MemoryContextAllocZero(TopMemoryContext, sizeof(SftModelCacheEntry));
	PG_TRY();
	{
		e->name = MemoryContextStrdup(TopMemoryContext, row->name);
		e->tokenizer = MemoryContextStrdup(TopMemoryContext, row->tokenizer);
		e->weights = row->weights;
		e->size_bytes = row->size_bytes;
		e->adapter = SftModelLoadAdapter(row);
	}
	PG_CATCH();
	{
		if (e->name)
			pfree(e->name);
		if (e->tokenizer)
			pfree(e->tokenizer);
		pfree(e);
		PG_RE_THROW();
	}
	PG_END_TRY();
	e->base = base;
	e->model = base->model;
	e->config = base->config;
	e->model_bytes = e->adapter->n_params * sizeof(float);
	e->loaded_at = GetCurrentTimestamp();
	return e;
}

/* sft.threads for this backend's BLAS calls (set only when it changed). */
static void
SftApplyThreads(void)
{
	static int	applied = -1;
	int			want = sft_threads > 0 ? sft_threads : openblas_get_num_procs();

	if (want != applied)
	{
		openblas_set_num_threads(want);
		applied = want;
	}
}

static void
SftLeaseCallback(void *arg)
{
	SftModelLeaseRelease((SftModelLease *) arg);
}

/* Give back a pin taken by SftEntryPin when no lease takes it over. */
static void
SftEntryUnpin(SftModelCacheEntry *e)
{
	if (--e->pins == 0 && !e->cached)
		SftEntryFree(e);
}

/*
 * The cache entry for the model row, pinned (pins + 1): the cached one when
 * it still matches the row (and, for an adapter, its base's current entry),
 * else loaded and cached.  Checks the caller may read the weights (of the
 * base too), on a hit as well.  Any ERROR leaves the cache as it was.
 */
static SftModelCacheEntry *
SftEntryPin(const SftModelRow *row)
{
	SftModelCacheEntry *e = SftCacheFind(row->name);
	SftModelCacheEntry *volatile base = NULL;

	if (e && (e->weights != row->weights || e->size_bytes != row->size_bytes ||
			  (e->adapter != NULL) != row->is_adapter))
	{
		SftEntryUncache(e);
		e = NULL;
	}
	SftCheckWeightsReadable(row);
	if (row->is_adapter)
	{
		SftModelRow base_row;

		if (!SftModelFetch(row->parent, &base_row, true) || base_row.is_adapter)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("base model \"%s\" of adapter \"%s\" does not exist",
							row->parent, row->name)));
		base = SftEntryPin(&base_row);
		if (e && e->base != base)
		{
			SftEntryUncache(e);
			e = NULL;
		}
		if (e)
		{
			/* the entry holds its own pin on the base */
			SftEntryUnpin(base);
			base = NULL;
		}
	}

	if (e == NULL)
	{
		/* make room first, so that old and new never sit in memory together needlessly */
		SftCacheShrink(SftMegabytes(sft_model_cache_size_mb),
					   (size_t) row->parameters * sizeof(float));
		if (base)
		{
			PG_TRY();
			{
				e = SftEntryLoadAdapter(row, base);
			}
			PG_CATCH();
			{
				SftEntryUnpin(base);
				PG_RE_THROW();
			}
			PG_END_TRY();
		}
		else
			e = SftEntryLoad(row);
		dlist_push_head(&cache_list, &e->node);
		e->cached = true;
	}
	else
	{
		e->hits++;
		dlist_move_head(&cache_list, &e->node);
	}
	e->pins++;
	e->last_used = GetCurrentTimestamp();
	return e;
}

SftModelLease *
SftModelLeaseAcquire(const char *name, MemoryContext owner)
{
	SftModelRow row;
	SftModelCacheEntry *e;
	SftModelLease *lease;
	char	   *system_prompt;

	SftApplyThreads();
	if (!SftModelFetch(name, &row, true))
	{
		e = SftCacheFind(name);
		if (e)
			SftEntryUncache(e);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	}
	/* allocations that may fail come before the pin */
	lease = MemoryContextAllocZero(owner, sizeof(SftModelLease));
	system_prompt = row.system_prompt ? MemoryContextStrdup(owner, row.system_prompt) : NULL;
	e = SftEntryPin(&row);

	/* nothing below raises: the lease is registered for release */
	lease->system_prompt = system_prompt;
	lease->entry = e;
	lease->name = e->name;
	lease->tokenizer = e->tokenizer;
	lease->config = &e->config;
	lease->model = e->model;
	lease->adapter = e->adapter;
	lease->callback.func = SftLeaseCallback;
	lease->callback.arg = lease;
	MemoryContextRegisterResetCallback(owner, &lease->callback);
	return lease;
}

static void
SftLeaseReturnDecoder(SftModelLease *lease)
{
	SftModelCacheEntry *e = lease->entry;

	if (lease->decoder == NULL)
		return;
	e->lent_bytes -= SftDecoderBytes(&e->config, lease->decoder_seq);
	if (e->cached && (e->spare_decoder == NULL || e->spare_decoder_seq < lease->decoder_seq))
	{
		sft_decoder_free(e->spare_decoder);
		e->spare_decoder = lease->decoder;
		e->spare_decoder_seq = lease->decoder_seq;
		e->spare_decoder_bytes = SftDecoderBytes(&e->config, lease->decoder_seq);
	}
	else
		sft_decoder_free(lease->decoder);
	lease->decoder = NULL;
	lease->decoder_seq = 0;
}

static void
SftLeaseReturnEvaluator(SftModelLease *lease)
{
	SftModelCacheEntry *e = lease->entry;

	if (lease->evaluator == NULL)
		return;
	e->lent_bytes -= SftEvaluatorBytes(e, lease->evaluator_tokens);
	if (e->cached && (e->spare_evaluator == NULL ||
					  e->spare_evaluator_tokens < lease->evaluator_tokens))
	{
		sft_trainer_free(e->spare_evaluator);
		e->spare_evaluator = lease->evaluator;
		e->spare_evaluator_tokens = lease->evaluator_tokens;
		e->spare_evaluator_bytes = SftEvaluatorBytes(e, lease->evaluator_tokens);
	}
	else
		sft_trainer_free(lease->evaluator);
	lease->evaluator = NULL;
	lease->evaluator_tokens = 0;
}

void
SftModelLeaseRelease(SftModelLease *lease)
{
	SftModelCacheEntry *e = lease->entry;

	if (lease->released || e == NULL)
		return;
	lease->released = true;
	SftLeaseReturnDecoder(lease);
	SftLeaseReturnEvaluator(lease);
	e->pins--;
	if (!e->cached && e->pins == 0)
		SftEntryFree(e);
	SftCacheShrink(SftMegabytes(sft_model_cache_size_mb), 0);
}

/*
 * The entry's decode weights in dtype (NULL for f32: the model's own), made
 * on first use and kept, counted, and freed with the model.
 */
static const SftDecodeWeights *
SftEntryDecodeWeights(SftModelCacheEntry *e, SftDType dtype)
{
	SftError	err = {0};

	/* an adapter's base computes the projections: its copies serve every adapter */
	if (e->base)
		e = e->base;
	if (dtype == SFT_DTYPE_F32)
		return NULL;
	if (e->decode_weights[dtype] == NULL)
	{
		if (sft_decode_weights_new(e->model, dtype, &e->decode_weights[dtype], &err) != SFT_OK)
			ereport(ERROR,
					(errcode(SftErrcodeForStatus(err.status)),
					 errmsg("model \"%s\" cannot be decoded in %s: %s", e->name,
							sft_dtype_name(dtype), err.message),
					 errhint("Set sft.generate_dtype to bf16 or f32.")));
		e->model_bytes += sft_decode_weights_bytes(e->decode_weights[dtype]);
	}
	return e->decode_weights[dtype];
}

SftDecoder *
SftModelLeaseDecoder(SftModelLease *lease, int min_seq)
{
	SftModelCacheEntry *e = lease->entry;
	int			max_position = e->config.max_position;
	int			seq;
	SftDecoder *dec = NULL;
	SftError	err = {0};

	Assert(!lease->released);
	if (min_seq < 1 || min_seq > max_position)
		elog(ERROR, "decoder length %d out of range 1..%d", min_seq, max_position);
	if (lease->decoder && lease->decoder_seq >= min_seq)
	{
		sft_decoder_reset(lease->decoder);
		sft_decoder_use_weights(lease->decoder,
								SftEntryDecodeWeights(e, (SftDType) sft_generate_dtype));
		return lease->decoder;
	}
	SftLeaseReturnDecoder(lease);
	if (e->spare_decoder && e->spare_decoder_seq >= min_seq)
	{
		lease->decoder = e->spare_decoder;
		lease->decoder_seq = e->spare_decoder_seq;
		e->spare_decoder = NULL;
		e->spare_decoder_seq = 0;
		e->spare_decoder_bytes = 0;
	}
	else
	{
		/* round up so that the next, slightly longer call can reuse it */
		seq = (int) Min((int64) max_position,
						((int64) min_seq + SFT_DECODER_SEQ_STEP - 1) / SFT_DECODER_SEQ_STEP * SFT_DECODER_SEQ_STEP);
		if (sft_decoder_new(e->model, seq, &dec, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("model \"%s\"", e->name));
		/* the entry's decoders keep its adapter attached for good */
		if (sft_decoder_use_adapter(dec, e->adapter, &err) != SFT_OK)
		{
			sft_decoder_free(dec);
			SftReportCoreError(&err, psprintf("model \"%s\"", e->name));
		}
		lease->decoder = dec;
		lease->decoder_seq = seq;
	}
	e->lent_bytes += SftDecoderBytes(&e->config, lease->decoder_seq);
	sft_decoder_reset(lease->decoder);
	sft_decoder_use_weights(lease->decoder, SftEntryDecodeWeights(e, (SftDType) sft_generate_dtype));
	return lease->decoder;
}

size_t
SftModelLeaseDecoderBytes(const SftModelLease *lease)
{
	return lease->decoder ? SftDecoderBytes(&lease->entry->config, lease->decoder_seq) : 0;
}

SftTrainer *
SftModelLeaseEvaluator(SftModelLease *lease, int max_tokens)
{
	SftModelCacheEntry *e = lease->entry;
	SftTrainer *tr = NULL;
	SftError	err = {0};

	Assert(!lease->released);
	if (lease->evaluator && lease->evaluator_tokens >= max_tokens)
		return lease->evaluator;
	SftLeaseReturnEvaluator(lease);
	if (e->spare_evaluator && e->spare_evaluator_tokens >= max_tokens)
	{
		lease->evaluator = e->spare_evaluator;
		lease->evaluator_tokens = e->spare_evaluator_tokens;
		e->spare_evaluator = NULL;
		e->spare_evaluator_tokens = 0;
		e->spare_evaluator_bytes = 0;
	}
	else
	{
		/* an adapter's: the training forward path over its base, the adapter attached */
		SftTrainerOptions o = {.max_tokens = max_tokens, .adapter = e->adapter};

		if (sft_trainer_create(e->model, &o, &tr, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("model \"%s\"", e->name));
		lease->evaluator = tr;
		lease->evaluator_tokens = max_tokens;
	}
	e->lent_bytes += SftEvaluatorBytes(e, lease->evaluator_tokens);
	return lease->evaluator;
}

/* ---------------------------------------------------------------------------
 * SQL: sft_model_cache(), sft_model_cache_clear()
 * ------------------------------------------------------------------------- */

Datum
sft_model_cache(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	dlist_iter	it;

	InitMaterializedSRF(fcinfo, 0);
	dlist_foreach(it, &cache_list)
	{
		SftModelCacheEntry *e = dlist_container(SftModelCacheEntry, node, it.cur);
		Datum		values[9];
		bool		nulls[9] = {0};

		values[0] = CStringGetTextDatum(e->name);
		values[1] = ObjectIdGetDatum(e->weights);
		values[2] = Int64GetDatum(e->adapter ? (int64) e->adapter->n_params
								  : (int64) sft_model_num_params(e->model));
		values[3] = Int64GetDatum((int64) e->model_bytes);
		values[4] = Int64GetDatum((int64) (e->spare_decoder_bytes + e->spare_evaluator_bytes
										   + e->lent_bytes));
		values[5] = TimestampTzGetDatum(e->loaded_at);
		values[6] = TimestampTzGetDatum(e->last_used);
		values[7] = Int64GetDatum(e->hits);
		values[8] = BoolGetDatum(e->pins > 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
sft_model_cache_clear(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(SftCacheShrink(0, 0));
}
