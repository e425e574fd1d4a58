/*
 * model_catalog.c: models as rows of sft_models with their weights in a large
 * object: sft_model_create, sft_model_import, sft_model_export,
 * sft_model_drop, and the lookup/load functions other glue files use.
 *
 * Ownership.  The weights large object is created by, and so owned by, the
 * role that creates the model; that role is recorded as the row's owner.
 * Only the owner or a superuser may drop, export or train from a model.
 * Reading the weights (generation, evaluation) goes through the large
 * object's own privileges: its owner may GRANT SELECT on it.  The catalog
 * tables are readable by everyone and written only here and by the training
 * code, acting as the tables' owner (SftBecomeCatalogOwner).
 *
 * Nothing is left behind.  Every function works inside the caller's
 * transaction: a failure rolls back the row and the large objects together;
 * sft_model_drop unlinks the weights and the checkpoints of the producing run
 * in the same transaction that deletes the row.
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "core/llama_config.h"
#include "core/model.h"
#include "core/weights.h"
#include "largeobject.h"
#include "model_catalog.h"
#include "progress.h"
#include "sft.h"
#include "tokenizer.h"
#include "train.h"

PG_FUNCTION_INFO_V1(sft_model_create);
PG_FUNCTION_INFO_V1(sft_model_import);
PG_FUNCTION_INFO_V1(sft_model_export);
PG_FUNCTION_INFO_V1(sft_model_drop);

/* ---------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------- */

static void
SftCheckModelName(const char *name)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must not be empty")));
}

void
SftCheckOwnership(Oid role, const char *kind, const char *name, const char *action)
{
	if (superuser() || has_privs_of_role(GetUserId(), role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s %s \"%s\"", action, kind, name),
			 errdetail("Only the owner of the %s (%s) or a superuser may %s it.",
					   kind, GetUserNameFromId(role, true) ? GetUserNameFromId(role, true) : "a dropped role",
					   action)));
}

void
SftModelCheckOwner(const SftModelRow *row, const char *action)
{
	SftCheckOwnership(row->owner, "model", row->name, action);
}

/* ---------------------------------------------------------------------------
 * Lookup
 * ------------------------------------------------------------------------- */

static char *
SftSpiText(HeapTuple tuple, TupleDesc desc, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	if (isnull)
		return NULL;
	return MemoryContextStrdup(cxt, TextDatumGetCString(d));
}

bool
SftModelFetch(const char *name, SftModelRow *row, bool missing_ok)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		found = false;
	SftError	err = {0};

	memset(row, 0, sizeof(*row));
	values[0] = CStringGetTextDatum(name);
	SPI_connect();
	if (SPI_execute_with_args("SELECT name, tokenizer, dtype, parent, run_id, owner::oid, weights, "
							  "parameters, size_bytes, config::text "
							  "FROM " SFT_SCHEMA ".sft_models WHERE name = $1",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed on sft_models");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		found = true;
		row->name = SftSpiText(tup, desc, 1, cxt);
		row->tokenizer = SftSpiText(tup, desc, 2, cxt);
		row->dtype = SftSpiText(tup, desc, 3, cxt);
		row->parent = SftSpiText(tup, desc, 4, cxt);
		row->run_id = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		if (isnull)
			row->run_id = 0;
		row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		row->weights = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
		row->parameters = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		row->size_bytes = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
		row->config_json = SftSpiText(tup, desc, 10, cxt);
	}
	SPI_finish();

	if (!found)
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	}
	if (sft_llama_config_parse(row->config_json, strlen(row->config_json),
							   &row->config, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("config of model \"%s\"", name));
	return true;
}

SftModel *
SftModelLoadWeights(const SftModelRow *row)
{
	return SftLoReadCheckpoint(row->weights, psprintf("weights of model \"%s\"", row->name),
							   NULL, NULL, NULL, NULL);
}

void
SftModelCheckNameFree(const char *name, int64 except_run)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	bool		model_exists;
	int64		run_id = 0;

	SftCheckModelName(name);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(except_run);
	SPI_connect();
	if (SPI_execute_with_args("SELECT 1 FROM " SFT_SCHEMA ".sft_models WHERE name = $1",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed on sft_models");
	model_exists = SPI_processed > 0;
	if (!model_exists)
	{
		/*
		 * A run that will produce this name holds it from sft_train() until
		 * it succeeds or is dropped: resuming it must not find the name
		 * taken.  Runs a crash interrupted still hold it (they can resume).
		 */
		if (SPI_execute_with_args("SELECT id FROM " SFT_SCHEMA ".sft_run_table "
								  "WHERE output = $1 AND status <> 'succeeded' AND id <> $2 "
								  "ORDER BY id LIMIT 1",
								  2, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_with_args failed on sft_run_table");
		if (SPI_processed > 0)
		{
			bool		isnull;

			run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
		}
	}
	SPI_finish();
	if (model_exists)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name)));
	if (run_id != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model name \"%s\" is reserved by training run %lld", name,
						(long long) run_id),
				 errdetail("The run will create this model when it finishes."),
				 errhint("Resume the run with sft_resume(%lld), or drop it with sft_run_drop(%lld).",
						 (long long) run_id, (long long) run_id)));
}

/* ---------------------------------------------------------------------------
 * Inserting a model row
 * ------------------------------------------------------------------------- */

/* Config of a model as normalised config.json text (what the row stores). */
static char *
SftConfigJson(const SftLlamaConfig *cfg)
{
	SftBuf		buf;
	SftError	err = {0};
	char	   *result;

	sft_buf_init(&buf);
	if (sft_llama_config_to_json(cfg, &buf, &err) != SFT_OK)
	{
		sft_buf_free(&buf);
		SftReportCoreError(&err, "model config");
	}
	result = pnstrdup(buf.data, buf.len);
	sft_buf_free(&buf);
	return result;
}

/* ERROR unless the model's vocabulary covers every id the tokenizer can produce. */
static void
SftCheckVocabCovers(const SftLlamaConfig *cfg, const char *tokenizer)
{
	int32		tok_vocab = SftTokenizerVocabSize(tokenizer);

	if (cfg->vocab_size < tok_vocab)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vocab_size %d does not cover tokenizer \"%s\", whose ids go up to %d",
						cfg->vocab_size, tokenizer, tok_vocab - 1),
				 errhint("Set vocab_size to at least %d.", tok_vocab)));
}

/*
 * Write the model's weights into a new large object owned by the current
 * user and insert its row.  parent/run_id may be NULL/0.
 */
void
SftModelInsert(const char *name, const char *tokenizer, const SftModel *model,
			   const char *parent, int64 run_id, Oid weights, int64 size_bytes)
{
	const SftLlamaConfig *cfg = sft_model_config(model);
	Oid			argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, OIDOID,
	INT8OID, INT8OID, OIDOID};
	Datum		values[9];
	char		nulls[9] = "         ";
	SftUserSwitch sw;
	Oid			owner = GetUserId();

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(SftConfigJson(cfg));
	values[2] = CStringGetTextDatum(tokenizer);
	if (parent)
		values[3] = CStringGetTextDatum(parent);
	else
		nulls[3] = 'n';
	values[4] = Int64GetDatum(run_id);
	if (run_id == 0)
		nulls[4] = 'n';
	values[5] = ObjectIdGetDatum(owner);
	values[6] = Int64GetDatum((int64) sft_model_num_params(model));
	values[7] = Int64GetDatum(size_bytes);
	values[8] = ObjectIdGetDatum(weights);

	SPI_connect();
	SftBecomeCatalogOwner(&sw);
	if (SPI_execute_with_args("INSERT INTO " SFT_SCHEMA ".sft_models "
							  "(name, config, tokenizer, parent, run_id, owner, parameters, "
							  "size_bytes, weights) "
							  "VALUES ($1, $2::jsonb, $3, $4, $5, $6::regrole, $7, $8, $9)",
							  9, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into sft_models");
	SftRestoreUser(&sw);
	SPI_finish();
}

/* Parameters a Llama model of this config has (embedding, layers, final norm, untied head). */
int64
SftConfigParameterCount(const SftLlamaConfig *cfg)
{
	int64		C = cfg->hidden_size;
	int64		q = (int64) cfg->n_heads * cfg->head_dim;
	int64		kv = (int64) cfg->n_kv_heads * cfg->head_dim;
	int64		per_layer = 2 * C + C * q + 2 * C * kv + q * C + 3 * C * (int64) cfg->intermediate_size;
	int64		embed = (int64) cfg->vocab_size * C;

	return embed * (cfg->tie_word_embeddings ? 1 : 2) + (int64) cfg->n_layers * per_layer + C;
}

/* A model's parameters must fit sft.max_memory before we allocate them. */
static void
SftCheckModelMemory(const SftLlamaConfig *cfg, const char *name)
{
	double		need_mb = (double) SftConfigParameterCount(cfg) * sizeof(float) / (1024.0 * 1024.0);

	if (need_mb > (double) sft_max_memory_mb)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model \"%s\" would need about %.0f MB, more than sft.max_memory (%d MB)",
						name, need_mb, sft_max_memory_mb)));
}

/* ---------------------------------------------------------------------------
 * sft_model_create(name, tokenizer, config jsonb, seed bigint default null)
 * ------------------------------------------------------------------------- */

Datum
sft_model_create(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	char	   *tokenizer = SftTextArgNotNull(fcinfo, 1, "tokenizer");
	Jsonb	   *config;
	char	   *config_text;
	uint64		seed;
	SftLlamaConfig cfg;
	SftError	err = {0};
	SftModel   *model = NULL;
	int64		params = 0;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("config must not be NULL")));
	config = PG_GETARG_JSONB_P(2);
	if (!PG_ARGISNULL(3))
		seed = (uint64) PG_GETARG_INT64(3);
	else if (!pg_strong_random(&seed, sizeof(seed)))
		seed = (uint64) GetCurrentTimestamp() ^ ((uint64) MyProcPid << 32);

	SftModelCheckNameFree(name, 0);
	if (!JB_ROOT_IS_OBJECT(config) || JB_ROOT_IS_SCALAR(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("config must be a JSON object like Hugging Face's config.json")));
	config_text = JsonbToCString(NULL, &config->root, VARSIZE(config));
	if (sft_llama_config_parse(config_text, strlen(config_text), &cfg, &err) != SFT_OK)
		SftReportCoreError(&err, NULL);
	if (sft_llama_config_validate(&cfg, &err) != SFT_OK)
		SftReportCoreError(&err, NULL);
	SftCheckVocabCovers(&cfg, tokenizer);
	SftCheckModelMemory(&cfg, name);

	if (sft_model_new(&cfg, &model, &err) != SFT_OK)
		SftReportCoreError(&err, "creating model");
	PG_TRY();
	{
		int64		size_bytes;
		Oid			weights;

		sft_model_init_random(model, seed);
		weights = SftLoWriteCheckpoint(model, NULL, &size_bytes);
		SftModelInsert(name, tokenizer, model, NULL, 0, weights, size_bytes);
		params = (int64) sft_model_num_params(model);
	}
	PG_FINALLY();
	{
		sft_model_free(model);
	}
	PG_END_TRY();
	PG_RETURN_INT64(params);
}

/* ---------------------------------------------------------------------------
 * sft_model_import(name, directory)
 * ------------------------------------------------------------------------- */

static void
SftCheckServerFileRole(Oid role, const char *rolename, const char *action)
{
	if (superuser() || has_privs_of_role(GetUserId(), role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s", action),
			 errdetail("Only superusers and members of %s may %s.", rolename, action)));
}

static void
SftCheckDirectory(const char *dir)
{
	struct stat st;

	if (!is_absolute_path(dir))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("directory must be an absolute path: \"%s\"", dir)));
	if (stat(dir, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access directory \"%s\": %m", dir)));
	if (!S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a directory", dir)));
}

Datum
sft_model_import(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	char	   *dir = SftTextArgNotNull(fcinfo, 1, "directory");
	char	   *tokenizer;
	SftError	err = {0};
	SftModel   *model = NULL;
	int64		params = 0;

	SftCheckServerFileRole(ROLE_PG_READ_SERVER_FILES, "pg_read_server_files",
						   "import models from server files");
	SftModelCheckNameFree(name, 0);
	SftCheckDirectory(dir);

	/*
	 * The tokenizer files travel with the model: import them under the
	 * model's name unless a tokenizer of that name exists already (then that
	 * one is used, e.g. when the same directory is imported twice under
	 * different model names... or the user loaded it before).
	 */
	tokenizer = name;
	if (!SftTokenizerExists(tokenizer))
		SftTokenizerImportDirectory(tokenizer, dir);

	if (sft_hf_load_dir(dir, &model, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("importing \"%s\"", dir));
	PG_TRY();
	{
		int64		size_bytes;
		Oid			weights;

		SftCheckVocabCovers(sft_model_config(model), tokenizer);
		weights = SftLoWriteCheckpoint(model, NULL, &size_bytes);
		SftModelInsert(name, tokenizer, model, NULL, 0, weights, size_bytes);
		params = (int64) sft_model_num_params(model);
	}
	PG_FINALLY();
	{
		sft_model_free(model);
	}
	PG_END_TRY();
	PG_RETURN_INT64(params);
}

/* ---------------------------------------------------------------------------
 * sft_model_export(name, directory)
 * ------------------------------------------------------------------------- */

Datum
sft_model_export(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	char	   *dir = SftTextArgNotNull(fcinfo, 1, "directory");
	SftModelRow row;
	SftModel   *model;
	SftError	err = {0};
	List	   *files = NIL;
	Datum	   *elems;
	int			n;
	ListCell   *lc;

	SftCheckServerFileRole(ROLE_PG_WRITE_SERVER_FILES, "pg_write_server_files",
						   "export models to server files");
	SftModelFetch(name, &row, false);
	SftModelCheckOwner(&row, "export");
	if (!is_absolute_path(dir))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("directory must be an absolute path: \"%s\"", dir)));
	if (pg_mkdir_p(pstrdup(dir), pg_dir_create_mode) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	SftCheckDirectory(dir);

	model = SftModelLoadWeights(&row);
	PG_TRY();
	{
		if (sft_hf_save_dir(model, dir, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("exporting to \"%s\"", dir));
	}
	PG_FINALLY();
	{
		sft_model_free(model);
	}
	PG_END_TRY();
	files = lappend(files, psprintf("%s/config.json", dir));
	files = lappend(files, psprintf("%s/model.safetensors", dir));
	files = list_concat(files, SftTokenizerExportDirectory(row.tokenizer, dir));

	n = list_length(files);
	elems = palloc(sizeof(Datum) * n);
	n = 0;
	foreach(lc, files)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* ---------------------------------------------------------------------------
 * sft_model_drop(name)
 * ------------------------------------------------------------------------- */

Datum
sft_model_drop(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	SftModelRow row;
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	SftUserSwitch sw;
	List	   *checkpoints = NIL;
	ListCell   *lc;
	int64		busy_run = 0;
	MemoryContext outer_cxt = CurrentMemoryContext;

	SftModelFetch(name, &row, false);
	SftModelCheckOwner(&row, "drop");

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(row.run_id);
	SPI_connect();

	/* Lock the row (as the tables' owner: users cannot lock catalog rows themselves). */
	SftBecomeCatalogOwner(&sw);
	if (SPI_execute_with_args("SELECT 1 FROM " SFT_SCHEMA ".sft_models WHERE name = $1 FOR UPDATE",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	SftRestoreUser(&sw);

	/* A run still going from this model reads its weights when it (re)starts. */
	if (SPI_execute_with_args("SELECT id FROM " SFT_SCHEMA ".sft_run_table "
							  "WHERE base = $1 AND status IN ('queued', 'running')",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed on sft_run_table");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));

		if (SftProgressIsActive(id, MyDatabaseId))
		{
			busy_run = id;
			break;
		}
	}
	if (busy_run != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("model \"%s\" is the base of active training run %lld", name,
						(long long) busy_run),
				 errhint("Wait for the run with sft_wait(%lld) or stop it with sft_cancel(%lld).",
						 (long long) busy_run, (long long) busy_run)));

	/* Checkpoints of the run that produced the model go with it. */
	if (row.run_id != 0)
	{
		MemoryContext spi_cxt;

		if (SPI_execute_with_args("SELECT checkpoint FROM " SFT_SCHEMA ".sft_run_epochs "
								  "WHERE run_id = $2 AND checkpoint IS NOT NULL",
								  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_with_args failed on sft_run_epochs");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 1, &isnull));

			/* the list must outlive SPI_finish */
			spi_cxt = MemoryContextSwitchTo(outer_cxt);
			checkpoints = lappend_oid(checkpoints, oid);
			MemoryContextSwitchTo(spi_cxt);
		}
	}

	SftBecomeCatalogOwner(&sw);
	if (SPI_execute_with_args("DELETE FROM " SFT_SCHEMA ".sft_models WHERE name = $1",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from sft_models");
	if (row.run_id != 0 &&
		SPI_execute_with_args("UPDATE " SFT_SCHEMA ".sft_run_epochs SET checkpoint = NULL "
							  "WHERE run_id = $2 AND checkpoint IS NOT NULL",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update sft_run_epochs");
	SftRestoreUser(&sw);
	SPI_finish();

	/* As the caller: lo_unlink checks that the caller owns them (or is superuser). */
	SftLoUnlink(row.weights);
	foreach(lc, checkpoints)
		SftLoUnlink(lfirst_oid(lc));
	PG_RETURN_BOOL(true);
}
