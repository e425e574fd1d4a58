/*
 * train.h: what the caller side of training (train.c: sft_train, sft_wait,
 * sft_cancel, sft_resume ...) and the background worker (train_worker.c)
 * share: the validated run options and the GUCs.  The run tables are read
 * and written through catalog.h.
 */
#ifndef SFT_TRAIN_H
#define SFT_TRAIN_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "core/chat_template.h"
#include "core/lora_adapter.h"
#include "core/model.h"

/* GUCs (defined in SftTrainInit). */
extern int	sft_max_concurrent_runs;
extern int	sft_threads;

/* Called from _PG_init: GUCs and shared memory hooks. */
void		SftTrainInit(void);

/*
 * Everything that decides what a run does.  The effective options (every key,
 * defaults filled in) are stored as jsonb with the run; the worker parses
 * that stored copy with the same code, so what runs is what the row says.
 */
typedef struct SftTrainOptions
{
	int			epochs;
	double		learning_rate;
	int			max_length;		/* tokens per sequence */
	int			batch_size;		/* sequences per micro-batch */
	int			grad_accum;		/* micro-batches per optimizer step */
	SftLrSchedule lr_schedule;
	double		warmup_ratio;	/* fraction of all steps spent warming up */
	double		min_lr_ratio;	/* floor of the decay, times learning_rate */
	double		weight_decay;
	double		dropout;
	double		max_grad_norm;	/* 0: no clipping */
	int64		seed;
	char	   *validation;		/* qualified relation name, or NULL */
	double		validation_fraction;	/* of the source held out, 0: none */
	char	   *messages_column;
	char	   *template_name;	/* NULL: the tokenizer's own template */
	Jsonb	   *template_kwargs;	/* extra template variables, NULL: none */
	char	   *template_now;	/* strftime_now's clock (canonical text), NULL: not yet pinned */
	SftTrainOn	train_on;
	bool		truncate;		/* too_long = truncate (else drop) */
	bool		keep_best;		/* keep = best (else last) */
	int			log_every;		/* optimizer steps between log rows */
	bool		lora;			/* train an adapter (lora_config) on a frozen base */
	SftLoraConfig lora_config;
	bool		checkpoint_activations;
} SftTrainOptions;

/*
 * Fill opts from the four SQL arguments and the options object.  Every
 * unknown key and every bad value is an ERROR naming it.  relation names are
 * taken as given (the caller resolves them).
 */
void		SftTrainOptionsParse(SftTrainOptions *opts, int epochs, double learning_rate,
								 int max_length, int batch_size, Jsonb *options);

/*
 * Pin strftime_now's clock of a new run when the options did not: to
 * sft.template_now when set, else to the current time, so that a resumed
 * run renders its data exactly as the first attempt did.
 */
void		SftTrainOptionsPinClock(SftTrainOptions *opts);

/* The effective options as jsonb (every key). */
Jsonb	   *SftTrainOptionsToJsonb(const SftTrainOptions *opts);

/*
 * The tokenized data a run holds while it loads and trains (train_worker.c
 * sizes it; all zero before the data is read).
 */
typedef struct SftTrainDataSize
{
	int64		rows;			/* sequences kept so far */
	int64		tokens;			/* their tokens */
	Size		bytes;			/* memory the worker holds for them at its peak */
	bool		complete;		/* every row has been read */
} SftTrainDataSize;

/*
 * ERROR unless a run of opts on model config cfg (named base) fits limit_mb:
 * the trainer (parameters, gradients, AdamW moments, activations, as the core
 * sizes them), the micro-batch buffers and the data.  sft_train checks with
 * no data and the caller's sft.max_memory; the worker checks again with the
 * same limit (stored with the run) while and after it reads the rows, before
 * it allocates the trainer.
 */
void		SftTrainCheckMemory(const SftLlamaConfig *cfg, const char *base,
								const SftTrainOptions *opts, int limit_mb,
								const SftTrainDataSize *data);

/* Background worker entry point (bgw_function_name). */
PGDLLEXPORT void SftTrainWorkerMain(Datum main_arg);

/* What the caller hands the worker in bgw_extra. */
typedef struct SftWorkerArgs
{
	Oid			dboid;
	Oid			run_role;		/* privileges and RLS of this role */
	Oid			login_role;		/* role the connection is made as */
	TransactionId creator_xid;	/* the worker starts once this commits */
	int			slot;			/* progress slot reserved for the run */
	bool		resume;
} SftWorkerArgs;

#endif							/* SFT_TRAIN_H */
