/*
 * train_worker.c: the background worker that runs one training run.
 *
 * Life of a worker (one per run and attempt; sft_resume starts a new one):
 *
 *   1. attach to the progress slot the caller reserved; connect to the
 *      caller's database as the run's role (see train.c); wait for the
 *      transaction that queued the run to end; no row then means it rolled
 *      back, and the worker leaves quietly.
 *   2. mark the run running; load the starting weights: the last epoch
 *      checkpoint (weights + AdamW state + step) when resuming, else the base
 *      model.
 *   3. read the source with a cursor, as the run's role (privileges and
 *      row-level security apply), render + tokenize + mask every row; drop or
 *      truncate rows over max_length and count what was dropped.  The rows
 *      are then put in a canonical order (by a hash of their tokens), so the
 *      run does not depend on the order a scan happens to return them in:
 *      a resumed run sees the same data in the same order.
 *   4. train: every epoch a permutation seeded by (seed, epoch); micro-batches
 *      of batch_size sequences packed back to back; grad_accum micro-batches
 *      per optimizer step; learning rate from the schedule.  Interrupts and
 *      the cancel flag are checked between micro-batches.  Progress goes to
 *      shared memory every step and to sft_run_log every log_every steps, in
 *      short transactions of their own.
 *   5. after every epoch: validation loss, a checkpoint large object
 *      (weights + AdamW state), an sft_run_epochs row; older checkpoints are
 *      unlinked (keep = best keeps the best one too).
 *   6. at the end: the output model (the last epoch's weights, or the best
 *      epoch's with keep = best) as a new sft_models row owned by the role.
 *
 * LoRA runs ("lora" option, or a base that is itself an adapter, which is
 * then continued) train an adapter on the frozen base: the checkpoints hold
 * the adapter and its moments only, and the output is an adapter model
 * (parent = the full base) stored through SftModelInsertAdapter.
 *
 * Failure.  Any ERROR is caught at the top, copied and logged, the
 * transaction is aborted, and the message is written into the run row in a
 * fresh transaction; the worker then exits normally (it is never
 * restarted).  A FATAL (pg_terminate_backend, shutdown) or a crash leaves the
 * row running without a slot, which the sft_runs view shows as interrupted.
 *
 * Resuming from a checkpoint restores the weights, both AdamW moments and the
 * step count bit for bit, and the data order is a function of (seed, epoch),
 * so a resumed run computes exactly what the uninterrupted run would have,
 * provided the source returns the same rows and sft.threads is the same (it
 * is stored with the run).  Dropout draws are reseeded from (seed, epoch) at
 * the start of every epoch, so they replay exactly too.
 */
#include "postgres.h"

#include <math.h>
#include <cblas.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "conversation.h"
#include "core/chat_template.h"
#include "core/model.h"
#include "core/checkpoint.h"
#include "largeobject.h"
#include "model_catalog.h"
#include "progress.h"
#include "sft.h"
#include "tokenizer.h"
#include "train.h"
#include "training_rows.h"

/* ---------------------------------------------------------------------------
 * Tokenized data
 * ------------------------------------------------------------------------- */

/* n sequences stored back to back. */
typedef struct SftDataset
{
	int64		n;				/* sequences */
	int64		n_cap;
	int64	   *offsets;		/* [n + 1] start of each sequence in tokens */
	int32	   *tokens;			/* [total] token ids */
	int32	   *mask;			/* [total] 1 = training target */
	int64		total;			/* tokens */
	int64		cap;
	int64		targets;		/* targets that count (a sequence's first token never does) */
} SftDataset;

typedef enum SftRunOutcome
{
	SFT_RUN_GONE = 0,			/* the row vanished (the queuing transaction rolled back) */
	SFT_RUN_SUCCEEDED,
	SFT_RUN_CANCELLED
} SftRunOutcome;

typedef struct SftRun
{
	int64		id;
	SftWorkerArgs args;
	SftTrainOptions opts;
	char	   *source;			/* qualified, quoted */
	char	   *base;
	char	   *output;
	char	   *tokenizer;
	int			threads;
	int			max_memory_mb;	/* the caller's sft.max_memory (the run row's) */
	MemoryContext cxt;			/* lives as long as the run */

	/* where this attempt starts */
	int			start_epoch;	/* 1-based */
	int64		start_step;		/* optimizer steps already taken */
	Oid			resume_checkpoint;	/* InvalidOid: start from the base model */
	int			best_epoch;		/* keep = best: epoch with the lowest validation loss so far */
	double		best_loss;
	Oid			best_checkpoint;
	bool		have_fingerprint;	/* an earlier attempt recorded the data's fingerprint */
	int64		fingerprint;

	SftDataset	train;
	SftDataset	valid;
	SftTrainingRowCounts counts;

	SftModel   *model;			/* full fine-tuning: trained; LoRA: the frozen base */
	SftLoraAdapter *adapter;	/* LoRA runs: the adapter trained, else NULL */
	char	   *base_model;		/* the full model the weights come from (run->base,
								 * or its parent when run->base is an adapter) */
	SftTrainer *trainer;
	float	   *resume_m;		/* [trained] AdamW moments from the checkpoint */
	float	   *resume_v;

	SftRunProgress progress;	/* what we publish */
} SftRun;

static int	SftWorkerSlot = -1;

/* The capacities ds grows to for one more sequence of len tokens. */
static void
SftDatasetGrowth(const SftDataset *ds, int64 len, int64 *n_cap, int64 *cap)
{
	*n_cap = ds->n + 2 > ds->n_cap ? Max(1024, ds->n_cap * 2) : ds->n_cap;
	*cap = ds->total + len > ds->cap ? Max(Max(65536, ds->cap * 2), ds->total + len) : ds->cap;
}

/* Bytes of ds's arrays at capacities n_cap (offsets) and cap (tokens, mask). */
static Size
SftDatasetBytesAt(int64 n_cap, int64 cap)
{
	return (Size) n_cap * sizeof(int64) + (Size) cap * 2 * sizeof(int32);
}

static void
SftDatasetAppend(SftDataset *ds, MemoryContext cxt, const int32 *ids, const int32 *mask,
				 int64 len, int64 targets)
{
	int64		n_cap,
				cap;

	SftDatasetGrowth(ds, len, &n_cap, &cap);
	if (n_cap != ds->n_cap)
	{
		ds->offsets = ds->offsets ?
			repalloc_huge(ds->offsets, n_cap * sizeof(int64)) :
			MemoryContextAllocHuge(cxt, n_cap * sizeof(int64));
		ds->n_cap = n_cap;
		if (ds->n == 0)
			ds->offsets[0] = 0;
	}
	if (cap != ds->cap)
	{
		ds->tokens = ds->tokens ?
			repalloc_huge(ds->tokens, cap * sizeof(int32)) :
			MemoryContextAllocHuge(cxt, cap * sizeof(int32));
		ds->mask = ds->mask ?
			repalloc_huge(ds->mask, cap * sizeof(int32)) :
			MemoryContextAllocHuge(cxt, cap * sizeof(int32));
		ds->cap = cap;
	}
	memcpy(ds->tokens + ds->total, ids, len * sizeof(int32));
	memcpy(ds->mask + ds->total, mask, len * sizeof(int32));
	ds->total += len;
	ds->n++;
	ds->offsets[ds->n] = ds->total;
	ds->targets += targets;
}

static inline int64
SftSeqLen(const SftDataset *ds, int64 i)
{
	return ds->offsets[i + 1] - ds->offsets[i];
}

/* FNV-1a over a sequence's ids and mask: its place in the canonical order. */
static uint64
SftSeqHash(const SftDataset *ds, int64 i)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);

	for (int64 t = ds->offsets[i]; t < ds->offsets[i + 1]; t++)
	{
		uint32		x = (uint32) ds->tokens[t] * 2u + (uint32) (ds->mask[t] != 0);

		for (int b = 0; b < 4; b++)
		{
			h ^= (x >> (8 * b)) & 0xff;
			h *= UINT64CONST(0x100000001b3);
		}
	}
	return h;
}

typedef struct SftSeqKey
{
	uint64		hash;
	int64		len;
	int64		index;
} SftSeqKey;

static const SftDataset *SftCompareDataset;	/* for ties in qsort */

static int
SftSeqKeyCompare(const void *a, const void *b)
{
	const SftSeqKey *x = a;
	const SftSeqKey *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	/* equal hash and length: compare contents so even collisions order the same */
	{
		const SftDataset *ds = SftCompareDataset;
		int			c = memcmp(ds->tokens + ds->offsets[x->index],
							   ds->tokens + ds->offsets[y->index], x->len * sizeof(int32));

		if (c == 0)
			c = memcmp(ds->mask + ds->offsets[x->index],
					   ds->mask + ds->offsets[y->index], x->len * sizeof(int32));
		return c;
	}
}

/*
 * Rebuild ds from a subset of its sequences (selected[i] true), in canonical
 * order, into a new dataset.
 */
static void
SftDatasetSelect(const SftDataset *ds, const SftSeqKey *order, const bool *selected,
				 MemoryContext cxt, SftDataset *out)
{
	memset(out, 0, sizeof(*out));
	for (int64 k = 0; k < ds->n; k++)
	{
		int64		i = order[k].index;
		int64		targets = 0;

		if (selected && !selected[i])
			continue;
		for (int64 t = ds->offsets[i] + 1; t < ds->offsets[i + 1]; t++)
			targets += ds->mask[t] != 0;
		SftDatasetAppend(out, cxt, ds->tokens + ds->offsets[i], ds->mask + ds->offsets[i],
						 SftSeqLen(ds, i), targets);
	}
}

static SftSeqKey *
SftCanonicalOrder(const SftDataset *ds)
{
	SftSeqKey  *keys = palloc_extended(Max(ds->n, 1) * sizeof(SftSeqKey), MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < ds->n; i++)
	{
		keys[i].hash = SftSeqHash(ds, i);
		keys[i].len = SftSeqLen(ds, i);
		keys[i].index = i;
	}
	SftCompareDataset = ds;
	qsort(keys, ds->n, sizeof(SftSeqKey), SftSeqKeyCompare);
	return keys;
}

/*
 * One number for a run's data: the training rows' hashes in canonical order,
 * then the validation relation's (a resumed run must see the same).
 */
static int64
SftFingerprint(const SftSeqKey *order, int64 n, const SftDataset *valid)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);

	for (int64 k = 0; k < n; k++)
		h = (h ^ order[k].hash) * UINT64CONST(0x100000001b3);
	if (valid)
	{
		SftSeqKey  *vorder = SftCanonicalOrder(valid);

		h = (h ^ UINT64CONST(0x5d)) * UINT64CONST(0x100000001b3);
		for (int64 k = 0; k < valid->n; k++)
			h = (h ^ vorder[k].hash) * UINT64CONST(0x100000001b3);
		pfree(vorder);
	}
	return (int64) h;
}

static void
SftDatasetFree(SftDataset *ds)
{
	if (ds->offsets)
		pfree(ds->offsets);
	if (ds->tokens)
		pfree(ds->tokens);
	if (ds->mask)
		pfree(ds->mask);
	memset(ds, 0, sizeof(*ds));
}

/* Fisher-Yates with the run's generator: the same (seed, stream) gives the same order. */
static void
SftShuffle(int64 *perm, int64 n, int64 seed, uint64 stream)
{
	SftRng		rng;

	sft_rng_seed(&rng, (uint64) seed ^ (stream * UINT64CONST(0x9E3779B97F4A7C15)));
	for (int64 i = 0; i < n; i++)
		perm[i] = i;
	for (int64 i = n - 1; i > 0; i--)
	{
		int64		j = (int64) (sft_rng_next(&rng) % (uint64) (i + 1));
		int64		tmp = perm[i];

		perm[i] = perm[j];
		perm[j] = tmp;
	}
}

/* Streams of the generator (the epoch number is the stream of its shuffle). */
#define SFT_STREAM_VALIDATION_SPLIT UINT64CONST(0xFFFFFFFF)

/* ---------------------------------------------------------------------------
 * Catalog access in short transactions
 * ------------------------------------------------------------------------- */

static void
SftBeginTransaction(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static MemoryContext SftWorkerContext = NULL;	/* the run's, current between transactions */

static void
SftCommitTransaction(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* commit leaves TopMemoryContext current: work between transactions in the run's */
	MemoryContextSwitchTo(SftWorkerContext);
}

/* A worker that never sleeps must look for the postmaster's death itself. */
static void
SftCheckPostmaster(void)
{
	if (!PostmasterIsAlive())
		proc_exit(1);
}

static void
SftPublish(SftRun *run, SftRunPhase phase)
{
	run->progress.phase = phase;
	SftProgressPublish(SftWorkerSlot, &run->progress);
}

/* ---------------------------------------------------------------------------
 * 1-2. The run row, the starting weights
 * ------------------------------------------------------------------------- */

/* Read and claim the run row.  False when it is not there to run. */
static bool
SftRunClaim(SftRun *run)
{
	SftRunSpec	spec;
	SftEpochCheckpoint last;
	SftEpochCheckpoint best;
	MemoryContext old;

	SftBeginTransaction();
	if (!SftCatalogRunRead(run->id, true, &spec) || strcmp(spec.status, "queued") != 0)
	{
		SftCommitTransaction();
		return false;
	}
	old = MemoryContextSwitchTo(run->cxt);
	run->source = pstrdup(spec.source);
	run->base = pstrdup(spec.base);
	run->output = pstrdup(spec.output);
	run->tokenizer = pstrdup(spec.tokenizer);
	run->threads = spec.threads;
	run->max_memory_mb = spec.max_memory_mb;
	SftTrainOptionsParse(&run->opts, spec.epochs, spec.learning_rate, spec.max_length,
						 spec.batch_size, spec.options);
	MemoryContextSwitchTo(old);
	run->fingerprint = spec.fingerprint;
	run->have_fingerprint = spec.have_fingerprint;

	/* Where to start: the newest epoch that still has its checkpoint. */
	run->start_epoch = 1;
	run->start_step = 0;
	run->resume_checkpoint = InvalidOid;
	run->best_epoch = 0;
	run->best_loss = INFINITY;
	run->best_checkpoint = InvalidOid;
	if (run->args.resume)
	{
		if (SftCatalogRunLastCheckpoint(run->id, &last))
		{
			run->start_epoch = last.epoch + 1;
			run->start_step = last.step;
			run->resume_checkpoint = last.checkpoint;
		}
		if (run->opts.keep_best && SftCatalogRunBestCheckpoint(run->id, &best))
		{
			run->best_epoch = best.epoch;
			run->best_loss = best.validation_loss;
			run->best_checkpoint = best.checkpoint;
		}
		/* What came after the checkpoint is redone: forget its log and epochs. */
		SftCatalogRunForgetAfter(run->id, run->start_step, run->start_epoch - 1);
	}
	SftCatalogRunStarted(run->id, run->start_step, run->start_epoch - 1);
	SftCommitTransaction();
	return true;
}

/*
 * The frozen base (LoRA) or the weights to train (full fine-tuning), and for
 * LoRA runs the adapter: from the checkpoint when resuming, the adapter
 * model itself when training from one (it is continued), else PEFT's
 * initialisation from the run's seed.
 */
static void
SftLoadStartingWeights(SftRun *run)
{
	SftModelRow row;
	SftModelRow base_row;
	MemoryContext old;

	SftBeginTransaction();
	SftModelFetch(run->base, &row, false);
	old = MemoryContextSwitchTo(run->cxt);
	run->base_model = pstrdup(row.is_adapter ? row.parent : row.name);
	MemoryContextSwitchTo(old);
	if (row.is_adapter)
		SftModelFetch(run->base_model, &base_row, false);
	else
		base_row = row;
	if (OidIsValid(run->resume_checkpoint))
	{
		int64		step;
		const char *what = psprintf("checkpoint of training run %lld", (long long) run->id);

		if (run->opts.lora)
		{
			run->model = SftModelLoadWeights(&base_row);
			run->adapter = SftLoReadAdapterCheckpoint(run->resume_checkpoint,
													  sft_model_config(run->model), what,
													  &run->resume_m, &run->resume_v, &step);
		}
		else
			run->model = SftLoReadCheckpoint(run->resume_checkpoint, what,
											 &run->resume_m, &run->resume_v, &step, NULL);
		if (step != run->start_step || run->resume_m == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("checkpoint of training run %lld does not match its epoch row (step %lld, expected %lld, optimizer state %s)",
							(long long) run->id, (long long) step, (long long) run->start_step,
							run->resume_m ? "present" : "missing")));
	}
	else
	{
		run->model = SftModelLoadWeights(&base_row);
		if (row.is_adapter)
		{
			SftError	err = {0};

			run->adapter = SftModelLoadAdapter(&row);
			/* the run's settings (dropout may differ) over the adapter's shape */
			run->adapter->config.dropout = run->opts.lora_config.dropout;
			if (sft_lora_config_validate(&run->adapter->config, &err) != SFT_OK)
				SftReportCoreError(&err, psprintf("adapter \"%s\"", run->base));
		}
		else if (run->opts.lora)
		{
			SftError	err = {0};

			if (sft_lora_adapter_new(&run->opts.lora_config, sft_model_config(run->model),
									 &run->adapter, &err) != SFT_OK)
				SftReportCoreError(&err, "creating the adapter");
			sft_lora_init_peft(run->adapter, (uint64) run->opts.seed);
		}
	}
	SftCommitTransaction();
}

/* ---------------------------------------------------------------------------
 * 3. Reading the source
 * ------------------------------------------------------------------------- */

/*
 * The datasets a run reads into, and the run.  All of them are held at once
 * at the peak of loading, together with their canonical-order copies (no
 * larger: the same rows or fewer) and the sort keys (SftSeqKey) plus the
 * held-out split's permutation and flags (8 + 2 bytes) per row.
 */
typedef struct SftReadTarget
{
	SftRun	   *run;
	SftDataset *ds;				/* the one being read */
	const SftDataset *other;	/* the one read before it, or NULL */
	const SftModel *model;		/* its config sizes the trainer */
} SftReadTarget;

#define SFT_LOAD_BYTES_PER_ROW (sizeof(SftSeqKey) + sizeof(int64) + 2 * sizeof(bool))

static SftTrainDataSize
SftLoadSize(const SftDataset *ds, int64 n_cap, int64 cap, const SftDataset *other, bool complete)
{
	SftTrainDataSize size;

	size.rows = ds->n + (other ? other->n : 0);
	size.tokens = ds->total + (other ? other->total : 0);
	size.bytes = 2 * SftDatasetBytesAt(n_cap, cap) + (Size) ds->n * SFT_LOAD_BYTES_PER_ROW;
	if (other)
		size.bytes += 2 * SftDatasetBytesAt(other->n_cap, other->cap) +
			(Size) other->n * SFT_LOAD_BYTES_PER_ROW;
	size.complete = complete;
	return size;
}

static void
SftAppendRow(void *arg, const int32 *ids, const int32 *mask, int64 len, int64 targets)
{
	SftReadTarget *target = arg;
	int64		n_cap,
				cap;

	/* sft.max_memory holds before the data grows, not after */
	SftDatasetGrowth(target->ds, len, &n_cap, &cap);
	if (n_cap != target->ds->n_cap || cap != target->ds->cap)
	{
		SftTrainDataSize size = SftLoadSize(target->ds, n_cap, cap, target->other, false);

		size.rows++;
		size.tokens += len;
		SftTrainCheckMemory(sft_model_config(target->model), target->run->base,
							&target->run->opts, target->run->max_memory_mb, &size);
	}
	SftDatasetAppend(target->ds, target->run->cxt, ids, mask, len, targets);
}

/* Every 64 rows: interrupts, the postmaster, progress; false on cancel. */
static bool
SftReadPoll(void *arg, const SftTrainingRowCounts *counts)
{
	SftReadTarget *target = arg;

	CHECK_FOR_INTERRUPTS();
	SftCheckPostmaster();
	target->run->progress.rows_read = counts->read;
	SftPublish(target->run, SFT_PHASE_LOADING);
	return !SftProgressCancelRequested(SftWorkerSlot);
}

static void
SftReadRelation(SftRun *run, const char *relation, const SftTokenizerEntry *entry,
				const SftChatTemplate *tpl, SftDataset *ds, const SftDataset *other,
				SftTrainingRowCounts *counts)
{
	SftTrainingRowRules rules;
	SftReadTarget target = {run, ds, other, run->model};

	rules.entry = entry;
	rules.tpl = tpl;
	rules.train_on = run->opts.train_on;
	rules.max_length = run->opts.max_length;
	rules.truncate = run->opts.truncate;
	SftTrainingRowsRead(relation, run->opts.messages_column, &rules,
						SftAppendRow, SftReadPoll, &target, counts);
}

static void
SftLoadData(SftRun *run)
{
	const SftTokenizerEntry *entry;
	SftChatTemplate tpl;
	SftTemplateCall call;
	SftDataset	all = {0};
	SftDataset	valid_all = {0};
	SftTrainingRowCounts vcounts = {0};
	SftSeqKey  *order;
	int64		fingerprint;
	SftRunCounts counts;
	SftTrainDataSize loaded;
	TimestampTz load_start = GetCurrentTimestamp();

	SftPublish(run, SFT_PHASE_LOADING);
	SftBeginTransaction();
	entry = SftTokenizerLookup(run->tokenizer);
	/* the run's recorded template_kwargs and clock, never this session's settings */
	SftTemplateCallMake(&call, run->opts.template_kwargs, run->opts.template_now);
	if (run->opts.template_name)
	{
		SftError	err = {0};
		SftTemplateKind kind;

		if (sft_template_from_name(run->opts.template_name, &kind, &err) != SFT_OK)
			SftReportCoreError(&err, "template");
		if (sft_template_check_tokenizer(kind, entry->tok, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("tokenizer \"%s\"", run->tokenizer));
		if (entry->has_template && entry->template.kind == kind)
			tpl = *SftTokenizerApplyCall(entry, &call);	/* kwargs read as the functions read them */
		else
		{
			/* the bare built-in reads no variables: only qwen3's published form would */
			if (kind == SFT_TEMPLATE_QWEN3 && !sft_template_kwargs_empty(call.kwargs))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("option \"template\": the built-in qwen3 cannot read option \"template_kwargs\""),
						 errhint("Leave out \"template\" to render the tokenizer's own Qwen3 template, which reads them.")));
			memset(&tpl, 0, sizeof(tpl));
			tpl.kind = kind;
			SftTemplateCallApply(&tpl, &call);
		}
	}
	else
		tpl = *SftTokenizerApplyCall(entry, &call);

	/* As the run's role: its privileges and row-level security decide what it sees. */
	SftReadRelation(run, run->source, entry, &tpl, &all, NULL, &run->counts);
	if (run->opts.validation && !SftProgressCancelRequested(SftWorkerSlot))
		SftReadRelation(run, run->opts.validation, entry, &tpl, &valid_all, &all, &vcounts);
	SftCommitTransaction();
	if (SftProgressCancelRequested(SftWorkerSlot))
		return;
	/*
	 * The whole data, before its ordered copies and the trainer are
	 * allocated; what loading holds at its peak may stay resident (freed
	 * heap memory), so the trainer is counted on top of it.
	 */
	loaded = SftLoadSize(&all, all.n_cap, all.cap, &valid_all, true);
	SftTrainCheckMemory(sft_model_config(run->model), run->base, &run->opts,
						run->max_memory_mb, &loaded);

	/* Canonical order, then the held-out split (both functions of the data and the seed). */
	order = SftCanonicalOrder(&all);
	fingerprint = SftFingerprint(order, all.n, valid_all.n > 0 ? &valid_all : NULL);
	if (OidIsValid(run->resume_checkpoint) && run->have_fingerprint && fingerprint != run->fingerprint)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the rows of %s changed since training run %lld started", run->source,
						(long long) run->id),
				 errdetail("Resuming from a checkpoint needs the same conversations (fingerprint %lld, now %lld).",
						   (long long) run->fingerprint, (long long) fingerprint),
				 errhint("Restore the rows, or start a new run from the model you want.")));
	if (run->opts.validation_fraction > 0 && all.n > 0)
	{
		int64		n_valid = (int64) floor(run->opts.validation_fraction * all.n + 0.5);
		int64	   *perm = palloc_extended(all.n * sizeof(int64), MCXT_ALLOC_HUGE);
		bool	   *is_train = palloc_extended(all.n * sizeof(bool), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		bool	   *is_valid = palloc_extended(all.n * sizeof(bool), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

		if (n_valid < 1)
			n_valid = 1;
		if (n_valid >= all.n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("validation_fraction %g leaves no training rows out of %lld usable rows",
							run->opts.validation_fraction, (long long) all.n)));
		/* perm is over canonical positions, so the split does not depend on scan order */
		SftShuffle(perm, all.n, run->opts.seed, SFT_STREAM_VALIDATION_SPLIT);
		for (int64 k = 0; k < all.n; k++)
		{
			int64		i = order[perm[k]].index;

			if (k < n_valid)
				is_valid[i] = true;
			else
				is_train[i] = true;
		}
		SftDatasetSelect(&all, order, is_train, run->cxt, &run->train);
		SftDatasetSelect(&all, order, is_valid, run->cxt, &run->valid);
		pfree(perm);
		pfree(is_train);
		pfree(is_valid);
	}
	else
	{
		SftDatasetSelect(&all, order, NULL, run->cxt, &run->train);
		if (run->opts.validation)
		{
			SftSeqKey  *vorder = SftCanonicalOrder(&valid_all);

			SftDatasetSelect(&valid_all, vorder, NULL, run->cxt, &run->valid);
			pfree(vorder);
		}
	}
	pfree(order);
	SftDatasetFree(&all);
	SftDatasetFree(&valid_all);

	/* The counts go into the run row now, so that a run with nothing to train on shows why. */
	counts.rows_read = run->counts.read;
	counts.rows_used = run->train.n;
	counts.rows_too_long = run->counts.too_long;
	counts.rows_truncated = run->counts.truncated;
	counts.rows_no_assistant = run->counts.no_assistant;
	counts.rows_null = run->counts.null;
	counts.validation_rows = run->valid.n;
	counts.tokens = run->train.total;
	counts.target_tokens = run->train.targets;
	counts.load_seconds = (double) (GetCurrentTimestamp() - load_start) / USECS_PER_SEC;
	counts.fingerprint = fingerprint;
	SftBeginTransaction();
	SftCatalogRunSetCounts(run->id, &counts);
	SftCommitTransaction();

	if (run->train.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no usable training rows in %s", run->source),
				 errdetail("%lld rows read: %lld NULL, %lld longer than max_length %d, %lld without assistant tokens.",
						   (long long) run->counts.read, (long long) run->counts.null,
						   (long long) run->counts.too_long, run->opts.max_length,
						   (long long) run->counts.no_assistant),
				 errhint("Check the source's rows (and its privileges and row-level security for the role), raise max_length, or set the \"too_long\" option to \"truncate\".")));
	if (run->opts.validation && run->valid.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no usable validation rows in %s", run->opts.validation),
				 errdetail("%lld rows read: %lld NULL, %lld longer than max_length %d, %lld without assistant tokens.",
						   (long long) vcounts.read, (long long) vcounts.null,
						   (long long) vcounts.too_long, run->opts.max_length,
						   (long long) vcounts.no_assistant)));
}

/* ---------------------------------------------------------------------------
 * 4-5. Training
 * ------------------------------------------------------------------------- */

typedef struct SftBatchBuffers
{
	int		   *seq_lens;		/* [batch_size] */
	int32	   *tokens;			/* [batch_size * max_length] */
	int32	   *mask;			/* [batch_size * max_length] */
} SftBatchBuffers;

/* Pack sequences perm[from .. to) of ds into one micro-batch. */
static void
SftFillBatch(const SftDataset *ds, const int64 *perm, int64 from, int64 to,
			 SftBatchBuffers *buf, SftBatch *batch)
{
	int64		T = 0;

	for (int64 k = from; k < to; k++)
	{
		int64		i = perm ? perm[k] : k;
		int64		len = SftSeqLen(ds, i);

		memcpy(buf->tokens + T, ds->tokens + ds->offsets[i], len * sizeof(int32));
		memcpy(buf->mask + T, ds->mask + ds->offsets[i], len * sizeof(int32));
		buf->seq_lens[k - from] = (int) len;
		T += len;
	}
	batch->n_seqs = (int) (to - from);
	batch->seq_lens = buf->seq_lens;
	batch->tokens = buf->tokens;
	batch->mask = buf->mask;
}

static double
SftValidationLoss(SftRun *run, SftBatchBuffers *buf)
{
	double		loss_sum = 0;
	int64		targets = 0;
	int			B = run->opts.batch_size;

	for (int64 from = 0; from < run->valid.n; from += B)
	{
		SftBatch	batch;
		double		ls;
		int64_t		nt;
		SftError	err = {0};

		SftFillBatch(&run->valid, NULL, from, Min(from + B, run->valid.n), buf, &batch);
		if (sft_trainer_evaluate(run->trainer, &batch, &ls, &nt, &err) != SFT_OK)
			SftReportCoreError(&err, "validation");
		loss_sum += ls;
		targets += nt;
		CHECK_FOR_INTERRUPTS();
	}
	return targets > 0 ? loss_sum / targets : NAN;
}

static void
SftLogStep(SftRun *run, int64 step, int epoch, double loss, double lr, double grad_norm,
		   double tokens_per_s)
{
	SftBeginTransaction();
	SftCatalogRunLogStep(run->id, step, epoch, loss, lr, grad_norm, tokens_per_s);
	SftCommitTransaction();
}

/* Checkpoint OIDs of this run's epochs other than keep1/keep2, unlinked and forgotten. */
static void
SftPruneCheckpoints(SftRun *run, Oid keep1, Oid keep2)
{
	ListCell   *lc;

	foreach(lc, SftCatalogRunCheckpoints(run->id))
	{
		Oid			oid = lfirst_oid(lc);

		if (oid == keep1 || oid == keep2)
			continue;
		/* the run's role created (owns) them */
		SftLoUnlink(oid);
		SftCatalogRunForgetCheckpoint(run->id, oid);
	}
}

static void
SftEndEpoch(SftRun *run, int epoch, int64 step, double train_loss, double valid_loss)
{
	SftCheckpointState state;
	char	   *meta = psprintf("{\"run\": %lld, \"epoch\": %d, \"step\": %lld}",
								(long long) run->id, epoch, (long long) step);
	Oid			checkpoint;
	int64		size;

	memset(&state, 0, sizeof(state));
	state.adam_m = sft_trainer_adam_m(run->trainer);
	state.adam_v = sft_trainer_adam_v(run->trainer);
	state.step = step;
	state.meta_json = meta;

	SftPublish(run, SFT_PHASE_CHECKPOINTING);
	SftBeginTransaction();
	/* a LoRA run's checkpoint: the adapter and its moments, not the frozen base */
	checkpoint = run->adapter ? SftLoWriteAdapterCheckpoint(run->adapter, &state, &size)
		: SftLoWriteCheckpoint(run->model, &state, &size);
	SftCatalogRunEpochInsert(run->id, epoch, step, train_loss, valid_loss, checkpoint);
	if (run->opts.keep_best && !isnan(valid_loss) && valid_loss < run->best_loss)
	{
		run->best_loss = valid_loss;
		run->best_epoch = epoch;
		run->best_checkpoint = checkpoint;
	}
	/* Keep the newest (resume) and, with keep = best, the best one (output). */
	SftPruneCheckpoints(run, checkpoint, run->opts.keep_best ? run->best_checkpoint : InvalidOid);
	SftCatalogRunEpochDone(run->id, epoch, step, train_loss);
	SftCommitTransaction();
}

static bool
SftTrainLoop(SftRun *run)
{
	const SftTrainOptions *o = &run->opts;
	int64		n = run->train.n;
	int64		n_micro = (n + o->batch_size - 1) / o->batch_size;
	int64		steps_per_epoch = (n_micro + o->grad_accum - 1) / o->grad_accum;
	int64		total_steps = steps_per_epoch * o->epochs;
	int64		warmup_steps = (int64) ceil(o->warmup_ratio * (double) total_steps);
	int64		step = run->start_step;
	int64	   *perm = MemoryContextAllocHuge(run->cxt, Max(n, 1) * sizeof(int64));
	SftBatchBuffers buf;
	SftAdamWConfig adamw;
	TimestampTz t0 = GetCurrentTimestamp();
	double		train_seconds = 0;
	int64		tokens_done = 0;
	SftError	err = {0};

	buf.seq_lens = MemoryContextAlloc(run->cxt, o->batch_size * sizeof(int));
	buf.tokens = MemoryContextAllocHuge(run->cxt, (Size) o->batch_size * o->max_length * sizeof(int32));
	buf.mask = MemoryContextAllocHuge(run->cxt, (Size) o->batch_size * o->max_length * sizeof(int32));
	adamw = sft_adamw_config(o->weight_decay, o->max_grad_norm);

	if (step != (run->start_epoch - 1) * steps_per_epoch)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the source of training run %lld changed: the checkpoint is at step %lld, but %d epochs of %lld rows make %lld steps",
						(long long) run->id, (long long) step, run->start_epoch - 1,
						(long long) n, (long long) ((run->start_epoch - 1) * steps_per_epoch)),
				 errhint("Resuming needs the same rows; start a new run instead.")));

	run->progress.epochs = o->epochs;
	run->progress.steps = total_steps;
	run->progress.step = step;
	run->progress.eta_seconds = -1;

	SftBeginTransaction();
	SftCatalogRunSetSteps(run->id, total_steps);
	SftCommitTransaction();

	for (int epoch = run->start_epoch; epoch <= o->epochs; epoch++)
	{
		double		epoch_loss = 0;
		int64		epoch_targets = 0;
		double		valid_loss = NAN;

		run->progress.epoch = epoch;
		SftShuffle(perm, n, o->seed, (uint64) epoch);
		/* dropout draws restart every epoch: a resumed epoch replays them exactly */
		sft_trainer_set_dropout_seed(run->trainer,
									 (uint64) o->seed ^ ((uint64) epoch * UINT64CONST(0xD1B54A32D192ED03)));
		for (int64 s = 0; s < steps_per_epoch; s++)
		{
			double		step_loss = 0;
			int64		step_targets = 0;
			double		lr;
			double		grad_norm = 0;
			TimestampTz ts = GetCurrentTimestamp();

			for (int a = 0; a < o->grad_accum; a++)
			{
				int64		micro = s * o->grad_accum + a;
				int64		from = micro * o->batch_size;
				SftBatch	batch;
				double		ls;
				int64_t		nt;

				if (micro >= n_micro)
					break;
				SftFillBatch(&run->train, perm, from, Min(from + o->batch_size, n), &buf, &batch);
				if (sft_trainer_accumulate(run->trainer, &batch, &ls, &nt, &err) != SFT_OK)
					SftReportCoreError(&err, psprintf("training step %lld", (long long) step + 1));
				step_loss += ls;
				step_targets += nt;
				for (int i = 0; i < batch.n_seqs; i++)
					tokens_done += batch.seq_lens[i];

				CHECK_FOR_INTERRUPTS();
				SftCheckPostmaster();
				if (SftProgressCancelRequested(SftWorkerSlot))
					return false;
			}
			lr = sft_lr_at(o->lr_schedule, o->learning_rate, step, total_steps,
						   warmup_steps, o->min_lr_ratio);
			if (sft_trainer_step(run->trainer, step_targets, &adamw, lr, &grad_norm, &err) != SFT_OK)
				SftReportCoreError(&err, psprintf("optimizer step %lld", (long long) step + 1));
			step++;
			epoch_loss += step_loss;
			epoch_targets += step_targets;

			train_seconds += (double) (GetCurrentTimestamp() - ts) / USECS_PER_SEC;
			run->progress.step = step;
			run->progress.loss = step_targets > 0 ? step_loss / step_targets : NAN;
			run->progress.lr = lr;
			run->progress.grad_norm = grad_norm;
			run->progress.tokens_per_s = train_seconds > 0 ? tokens_done / train_seconds : 0;
			run->progress.eta_seconds = (double) (GetCurrentTimestamp() - t0) / USECS_PER_SEC /
				(double) (step - run->start_step) * (double) (total_steps - step);
			SftPublish(run, SFT_PHASE_TRAINING);
			if (step % o->log_every == 0 || step == total_steps)
				SftLogStep(run, step, epoch, run->progress.loss, lr, grad_norm,
						   run->progress.tokens_per_s);
		}
		if (run->valid.n > 0)
		{
			SftPublish(run, SFT_PHASE_VALIDATING);
			valid_loss = SftValidationLoss(run, &buf);
		}
		SftEndEpoch(run, epoch, step, epoch_targets > 0 ? epoch_loss / epoch_targets : NAN, valid_loss);
		if (SftProgressCancelRequested(SftWorkerSlot) && epoch < o->epochs)
			return false;
	}
	return true;
}

/* ---------------------------------------------------------------------------
 * 6. The output model
 * ------------------------------------------------------------------------- */

static void
SftSaveOutput(SftRun *run)
{
	SftModel   *volatile best = NULL;
	SftLoraAdapter *volatile best_adapter = NULL;
	Oid			weights;
	int64		size;
	volatile Oid last_checkpoint = InvalidOid;
	bool		use_best;

	SftPublish(run, SFT_PHASE_SAVING);
	/* done with the trainer: the best epoch's weights may take its place */
	sft_trainer_free(run->trainer);
	run->trainer = NULL;
	SftBeginTransaction();
	use_best = run->opts.keep_best && OidIsValid(run->best_checkpoint) &&
		run->best_epoch != run->opts.epochs;
	if (use_best && run->adapter)
		best_adapter = SftLoReadAdapterCheckpoint(run->best_checkpoint, sft_model_config(run->model),
												  "best checkpoint", NULL, NULL, NULL);
	else if (use_best)
		best = SftLoReadCheckpoint(run->best_checkpoint, "best checkpoint", NULL, NULL, NULL, NULL);
	PG_TRY();
	{
		if (run->adapter)
		{
			/* the training dropout is a setting of the run, stored as PEFT does */
			SftModelInsertAdapter(run->output, run->base_model,
								  best_adapter ? best_adapter : run->adapter, run->id);
		}
		else
		{
			weights = SftLoWriteCheckpoint(best ? best : run->model, NULL, &size);
			SftModelInsert(run->output, run->tokenizer, best ? best : run->model, run->base,
						   run->id, weights, size);
		}
	}
	PG_FINALLY();
	{
		if (best)
			sft_model_free(best);
		if (best_adapter)
			sft_lora_adapter_free(best_adapter);
	}
	PG_END_TRY();

	/* The last epoch's checkpoint stays (sft_model_drop removes it with the model). */
	{
		SftEpochCheckpoint last;

		if (SftCatalogRunLastCheckpoint(run->id, &last))
			last_checkpoint = last.checkpoint;
	}
	SftPruneCheckpoints(run, last_checkpoint, InvalidOid);
	SftCatalogRunFinish(run->id, "succeeded", NULL);
	SftCommitTransaction();
}

/* ---------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------- */

static void
SftRecordEnd(int64 run_id, const char *status, const char *error)
{
	SftBeginTransaction();
	SftCatalogRunFinish(run_id, status, error);
	SftCommitTransaction();
}

static SftRunOutcome
SftRunMain(SftRun *run)
{
	SftError	err = {0};

	if (!SftRunClaim(run))
		return SFT_RUN_GONE;
	run->progress.run_id = run->id;
	run->progress.dboid = run->args.dboid;
	run->progress.epochs = run->opts.epochs;
	run->progress.epoch = run->start_epoch - 1;
	run->progress.started = GetCurrentTimestamp();
	run->progress.eta_seconds = -1;

	/* BLAS threads belong to this process alone (never set in the postmaster). */
	if (run->threads > 0)
		openblas_set_num_threads(run->threads);

	SftLoadStartingWeights(run);
	SftLoadData(run);
	if (SftProgressCancelRequested(SftWorkerSlot))
		return SFT_RUN_CANCELLED;

	{
		SftTrainerOptions topts = {
			.max_tokens = run->opts.batch_size * run->opts.max_length,
			.dropout = (float) run->opts.dropout,
			.seed = (uint64) run->opts.seed,
			.checkpoint_activations = run->opts.checkpoint_activations,
			.adapter = run->adapter
		};

		if (sft_trainer_create(run->model, &topts, &run->trainer, &err) != SFT_OK)
			SftReportCoreError(&err, "creating the trainer");
	}
	if (run->resume_m)
	{
		sft_trainer_adopt_adam(run->trainer, run->resume_m, run->resume_v, run->start_step);
		run->resume_m = run->resume_v = NULL;
	}

	if (run->start_epoch <= run->opts.epochs && !SftTrainLoop(run))
		return SFT_RUN_CANCELLED;
	SftSaveOutput(run);
	return SFT_RUN_SUCCEEDED;
}

static void
SftWorkerReleaseSlot(int code, Datum arg)
{
	SftProgressRelease(DatumGetInt32(arg));
}

void
SftTrainWorkerMain(Datum main_arg)
{
	SftRun	   *run;
	SftRunOutcome outcome = SFT_RUN_GONE;
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	cxt = AllocSetContextCreate(TopMemoryContext, "sft training run", ALLOCSET_DEFAULT_SIZES);
	run = MemoryContextAllocZero(cxt, sizeof(SftRun));
	run->cxt = cxt;
	SftWorkerContext = cxt;
	MemoryContextSwitchTo(cxt);
	run->id = DatumGetInt64(main_arg);
	memcpy(&run->args, MyBgworkerEntry->bgw_extra, sizeof(SftWorkerArgs));

	if (!SftProgressAttach(run->args.slot, run->id, run->args.dboid))
		proc_exit(0);
	SftWorkerSlot = run->args.slot;
	before_shmem_exit(SftWorkerReleaseSlot, Int32GetDatum(run->args.slot));

	BackgroundWorkerInitializeConnectionByOid(run->args.dboid, run->args.login_role, 0);
	SftCatalogActAsRunRole(run->args.login_role, run->args.run_role);
	pgstat_report_activity(STATE_RUNNING, psprintf("sft training run %lld", (long long) run->id));

	/* The run row becomes visible when the transaction that queued it commits. */
	if (TransactionIdIsValid(run->args.creator_xid))
	{
		StartTransactionCommand();
		XactLockTableWait(run->args.creator_xid, NULL, NULL, XLTW_None);
		CommitTransactionCommand();
	}

	PG_TRY();
	{
		outcome = SftRunMain(run);
		if (outcome == SFT_RUN_CANCELLED)
			SftRecordEnd(run->id, "cancelled", NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		char	   *message;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RESUME_INTERRUPTS();

		message = edata->detail ? psprintf("%s. %s", edata->message, edata->detail)
			: pstrdup(edata->message);
		SftRecordEnd(run->id, "failed", message);
	}
	PG_END_TRY();

	if (run->trainer)
		sft_trainer_free(run->trainer);
	if (run->adapter)
		sft_lora_adapter_free(run->adapter);
	if (run->model)
		sft_model_free(run->model);
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
