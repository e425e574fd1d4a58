/*
 * catalog.h: every read and write of the extension's tables (sft_tokenizers,
 * sft_models, sft_run_table, sft_run_log, sft_run_epochs) and the only code
 * that changes the current role: to the tables' owner for them, and in the
 * training worker to the role that called sft_train.  See catalog.c for the
 * security rule it keeps.
 *
 * The functions take and return plain values: strings are palloc'd in the
 * caller's memory context, "not found" is a false return (the caller words
 * the error), and the caller checks who may do what before calling (it
 * knows the caller's identity; these functions act as the tables' owner).
 */
#ifndef SFT_CATALOG_H
#define SFT_CATALOG_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "utils/jsonb.h"

/* ---------------------------------------------------------------------------
 * The training worker's identity
 * ------------------------------------------------------------------------- */

/*
 * The worker connects as login_role (the run's role when it may log in, else
 * the role the caller authenticated as) and then acts as run_role, so that
 * its reads of the source see that role's privileges and row-level security.
 * No rights beyond the caller's: this lowers or keeps them.
 */
void		SftCatalogActAsRunRole(Oid login_role, Oid run_role);

/* ---------------------------------------------------------------------------
 * Tokenizers
 * ------------------------------------------------------------------------- */

/* A row version: (xmin, ctid) changes whenever the row is written. */
typedef struct SftTokenizerVersion
{
	TransactionId xmin;
	ItemPointerData tid;
} SftTokenizerVersion;

/* What a tokenizer is built from, as stored (text values detoasted). */
typedef struct SftTokenizerRecord
{
	SftTokenizerVersion version;
	text	   *source;			/* tokenizer.json, or vocab.json when merges is set */
	text	   *merges;			/* merges.txt or NULL */
	char	   *config;			/* tokenizer_config.json text or NULL */
	char	   *chat_template;	/* built-in template name, "jinja" or NULL */
	char	   *chat_template_source;	/* the Jinja source when "jinja" */
	char	   *default_system; /* or NULL */
	Oid			owner;
} SftTokenizerRecord;

/* The new row of sft_tokenizer_load/import (NULL pointers store NULL). */
typedef struct SftTokenizerNewRow
{
	const char *name;
	const char *kind;
	int32		vocab_size;
	ArrayType  *special_tokens; /* text[] */
	const char *chat_template;
	const char *chat_template_source;
	const char *end_of_turn_token;
	const char *default_system;
	const char *bos_token;
	const char *eos_token;
	text	   *source;
	text	   *merges;
	Datum		config;			/* jsonb, or (Datum) 0 for NULL */
	Oid			owner;
} SftTokenizerNewRow;

bool		SftCatalogTokenizerVersion(const char *name, SftTokenizerVersion *version);
bool		SftCatalogTokenizerRead(const char *name, SftTokenizerRecord *rec);
bool		SftCatalogTokenizerExists(const char *name);
/* Lock the row for a change (until the transaction ends); false: no row. */
bool		SftCatalogTokenizerLock(const char *name, Oid *owner);
void		SftCatalogTokenizerInsert(const SftTokenizerNewRow *row, SftTokenizerVersion *version);
void		SftCatalogTokenizerDelete(const char *name);
void		SftCatalogTokenizerSetTemplate(const char *name, const char *chat_template,
										   const char *chat_template_source,
										   const char *default_system,
										   const char *end_of_turn_token,
										   SftTokenizerVersion *version);

/*
 * The tokenizer's files for export: source, merges (or NULL) and the
 * tokenizer_config.json text (or NULL) with chat_template set to jinja when
 * jinja is not NULL.  False: no row.
 */
bool		SftCatalogTokenizerFiles(const char *name, const char *jinja, text **source,
									 text **merges, text **config);

/* ---------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------- */

/* A row of sft_models as stored. */
typedef struct SftModelRecord
{
	char	   *name;
	char	   *tokenizer;
	char	   *dtype;
	char	   *parent;			/* NULL for imported/created models */
	int64		run_id;			/* 0 when not produced by a run */
	Oid			owner;
	Oid			weights;
	int64		parameters;
	int64		size_bytes;
	char	   *config_json;
	char	   *system_prompt;	/* sft_model_set_system, or NULL */
	char	   *adapter_json;	/* adapter_config.json text of an adapter, or NULL */
} SftModelRecord;

bool		SftCatalogModelRead(const char *name, SftModelRecord *rec);
bool		SftCatalogModelExists(const char *name);
/* Lock the row for a change (until the transaction ends); false: no row. */
bool		SftCatalogModelLock(const char *name);
/* rec->dtype is not stored (the column default applies). */
void		SftCatalogModelInsert(const SftModelRecord *rec);
/* Names of the adapter models whose base (parent) is base, sorted. */
List	   *SftCatalogModelAdapters(const char *base);
/* Set (NULL: remove) the model's system prompt; false: no row. */
bool		SftCatalogModelSetSystem(const char *name, const char *system_prompt);
/* Delete the row; with run_id, forget the checkpoints of that run too. */
void		SftCatalogModelDelete(const char *name, int64 run_id);

/* ---------------------------------------------------------------------------
 * Runs
 * ------------------------------------------------------------------------- */

/* What sft_train stores; the worker reads it back (SftCatalogRunClaim). */
typedef struct SftRunSpec
{
	Oid			owner;
	char	   *status;			/* as stored */
	char	   *source;
	char	   *base;
	char	   *output;
	char	   *tokenizer;
	int			threads;
	int			max_memory_mb;	/* sft.max_memory of the caller of sft_train */
	int			epochs;
	double		learning_rate;
	int			max_length;
	int			batch_size;
	Jsonb	   *options;
	bool		have_fingerprint;
	int64		fingerprint;
	char	   *error;			/* NULL unless failed */
} SftRunSpec;

/* What loading the data found (sft_run_table's row counters). */
typedef struct SftRunCounts
{
	int64		rows_read;
	int64		rows_used;
	int64		rows_too_long;
	int64		rows_truncated;
	int64		rows_no_assistant;
	int64		rows_null;
	int64		validation_rows;
	int64		tokens;
	int64		target_tokens;
	double		load_seconds;
	int64		fingerprint;
} SftRunCounts;

/* An sft_run_epochs row with its checkpoint. */
typedef struct SftEpochCheckpoint
{
	int			epoch;
	int64		step;
	double		validation_loss;	/* NaN when NULL */
	Oid			checkpoint;
} SftEpochCheckpoint;

int64		SftCatalogRunInsert(const SftRunSpec *spec);
/*
 * Read a run (owner, status, output, error and the spec).  for_update locks
 * the row until the transaction ends.  False: no row.
 */
bool		SftCatalogRunRead(int64 run_id, bool for_update, SftRunSpec *spec);
/* The run that will produce model name, other than except_run; 0: none. */
int64		SftCatalogRunReservingName(const char *name, int64 except_run);
/* Ids of the runs queued or running (as stored) from base model name. */
List	   *SftCatalogRunsFromBase(const char *name);
/* Checkpoint OIDs of a run's epochs (the large objects still kept). */
List	   *SftCatalogRunCheckpoints(int64 run_id);
void		SftCatalogRunRequeue(int64 run_id);
void		SftCatalogRunDelete(int64 run_id);

/* The training worker's writes, in the order a run makes them. */
bool		SftCatalogRunLastCheckpoint(int64 run_id, SftEpochCheckpoint *out);
bool		SftCatalogRunBestCheckpoint(int64 run_id, SftEpochCheckpoint *out);
/* Forget the log after step and the epochs after epoch (what a resume redoes). */
void		SftCatalogRunForgetAfter(int64 run_id, int64 step, int epoch);
void		SftCatalogRunStarted(int64 run_id, int64 steps_done, int epochs_done);
void		SftCatalogRunSetCounts(int64 run_id, const SftRunCounts *counts);
void		SftCatalogRunSetSteps(int64 run_id, int64 steps);
void		SftCatalogRunLogStep(int64 run_id, int64 step, int epoch, double loss, double lr,
								 double grad_norm, double tokens_per_s);
/* validation_loss NaN stores NULL. */
void		SftCatalogRunEpochInsert(int64 run_id, int epoch, int64 step, double train_loss,
									 double validation_loss, Oid checkpoint);
void		SftCatalogRunForgetCheckpoint(int64 run_id, Oid checkpoint);
void		SftCatalogRunEpochDone(int64 run_id, int epoch, int64 step, double train_loss);
/* status: succeeded, failed or cancelled; error NULL unless failed. */
void		SftCatalogRunFinish(int64 run_id, const char *status, const char *error);

#endif							/* SFT_CATALOG_H */
