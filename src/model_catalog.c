/*
 * model_catalog.c: models as rows of sft_models with their weights in a large
 * object: sft_model_create, sft_model_import, sft_model_export (HF here,
 * GGUF in model_export_gguf.c), sft_model_merge, sft_model_drop, and the
 * lookup/load functions other glue files use.
 *
 * LoRA adapters are models too (lora_adapter.h): parent = their base, the
 * base's config and tokenizer, the adapter column = adapter_config.json, and
 * a large object holding only the adapter tensors (PEFT's
 * adapter_model.safetensors bytes).  They come from sft_model_import of a
 * PEFT directory (base named) or from a LoRA training run
 * (SftModelInsertAdapter), export as PEFT directories, and become full
 * models with sft_model_merge.  A base cannot be dropped while adapters
 * depend on it.
 *
 * Ownership.  The weights large object is created by, and so owned by, the
 * role that creates the model; that role is recorded as the row's owner.
 * Only the owner or a superuser may drop, export or train from a model.
 * Reading the weights (generation, evaluation) goes through the large
 * object's own privileges: its owner may GRANT SELECT on it.  The catalog
 * tables are readable by everyone and written only through catalog.c.
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
#include "catalog.h"
#include "largeobject.h"
#include "model_catalog.h"
#include "progress.h"
#include "server_files.h"
#include "sft.h"
#include "tokenizer.h"

PG_FUNCTION_INFO_V1(sft_model_create);
PG_FUNCTION_INFO_V1(sft_model_import);
PG_FUNCTION_INFO_V1(sft_model_export);
PG_FUNCTION_INFO_V1(sft_model_drop);
PG_FUNCTION_INFO_V1(sft_model_merge);
PG_FUNCTION_INFO_V1(sft_model_set_system);

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
SftModelCheckOwner(const SftModelRow *row, const char *action)
{
	SftCheckOwnership(row->owner, "model", row->name, action);
}

/* ---------------------------------------------------------------------------
 * Lookup
 * ------------------------------------------------------------------------- */

bool
SftModelFetch(const char *name, SftModelRow *row, bool missing_ok)
{
	SftModelRecord rec;
	SftError	err = {0};

	memset(row, 0, sizeof(*row));
	if (!SftCatalogModelRead(name, &rec))
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	}
	row->name = rec.name;
	row->tokenizer = rec.tokenizer;
	row->dtype = rec.dtype;
	row->parent = rec.parent;
	row->run_id = rec.run_id;
	row->owner = rec.owner;
	row->weights = rec.weights;
	row->parameters = rec.parameters;
	row->size_bytes = rec.size_bytes;
	row->config_json = rec.config_json;
	row->system_prompt = rec.system_prompt;
	row->adapter_json = rec.adapter_json;
	row->is_adapter = rec.adapter_json != NULL;
	if (sft_llama_config_parse(row->config_json, strlen(row->config_json),
							   &row->config, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("config of model \"%s\"", name));
	if (row->is_adapter &&
		sft_lora_config_parse(row->adapter_json, strlen(row->adapter_json), &row->lora, NULL,
							  &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("adapter config of model \"%s\"", name));
	return true;
}

SftModel *
SftModelLoadWeights(const SftModelRow *row)
{
	if (row->is_adapter)
		elog(ERROR, "model \"%s\" is an adapter, not a full model", row->name);
	return SftLoReadCheckpoint(row->weights, psprintf("weights of model \"%s\"", row->name),
							   NULL, NULL, NULL, NULL);
}

void
SftModelCheckNameFree(const char *name, int64 except_run)
{
	int64		run_id;

	SftCheckModelName(name);
	if (SftCatalogModelExists(name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name)));
	/* a run holds its output name until it succeeds or is dropped */
	run_id = SftCatalogRunReservingName(name, except_run);
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
	SftModelRecord rec;

	memset(&rec, 0, sizeof(rec));
	rec.name = (char *) name;
	rec.config_json = SftConfigJson(sft_model_config(model));
	rec.tokenizer = (char *) tokenizer;
	rec.parent = (char *) parent;
	rec.run_id = run_id;
	rec.owner = GetUserId();
	rec.parameters = (int64) sft_model_num_params(model);
	rec.size_bytes = size_bytes;
	rec.weights = weights;
	SftCatalogModelInsert(&rec);
}

/* ---------------------------------------------------------------------------
 * Adapters
 * ------------------------------------------------------------------------- */

SftLoraAdapter *
SftModelLoadAdapter(const SftModelRow *row)
{
	if (!row->is_adapter)
		elog(ERROR, "model \"%s\" is not an adapter", row->name);
	return SftLoReadAdapter(row->weights, &row->lora, &row->config,
							psprintf("adapter of model \"%s\"", row->name));
}

/* The base an adapter is created for: a full model the adapter fits. */
static void
SftCheckAdapterBase(const SftModelRow *base, const SftLoraAdapter *adapter)
{
	SftError	err = {0};

	if (base->is_adapter)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" is an adapter, not a base model", base->name),
				 errhint("Merge it first with sft_model_merge('%s', 'new name').", base->name)));
	if (sft_lora_adapter_check_base(adapter, &base->config, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("adapter for base model \"%s\"", base->name));
}

int64
SftModelInsertAdapter(const char *name, const char *base, const SftLoraAdapter *adapter,
					  int64 run_id)
{
	SftModelRow base_row;
	SftModelRecord rec;
	SftBuf		json;
	SftError	err = {0};

	SftModelCheckNameFree(name, run_id);
	SftModelFetch(base, &base_row, false);
	/* a concurrent sft_model_drop of the base waits for us, then sees the adapter */
	if (!SftCatalogModelLock(base))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", base)));
	SftCheckAdapterBase(&base_row, adapter);
	sft_buf_init(&json);
	if (sft_lora_config_to_json(&adapter->config, base, &json, &err) != SFT_OK)
	{
		sft_buf_free(&json);
		SftReportCoreError(&err, "adapter config");
	}
	memset(&rec, 0, sizeof(rec));
	rec.adapter_json = pnstrdup(json.data, json.len);
	sft_buf_free(&json);
	rec.name = (char *) name;
	rec.config_json = base_row.config_json;
	rec.tokenizer = base_row.tokenizer;
	rec.parent = (char *) base;
	rec.run_id = run_id;
	rec.owner = GetUserId();
	rec.parameters = (int64) adapter->n_params;
	rec.weights = SftLoWriteAdapter(adapter, &rec.size_bytes);
	SftCatalogModelInsert(&rec);
	return rec.parameters;
}

/* Parameters a model of this config has (the core counts them). */
int64
SftConfigParameterCount(const SftLlamaConfig *cfg)
{
	return (int64) sft_llama_config_num_params(cfg);
}

/* A model's (or adapter's) parameters must fit sft.max_memory before we allocate them. */
static void
SftCheckParameterMemory(int64 parameters, const char *name)
{
	double		need_mb = (double) parameters * sizeof(float) / (1024.0 * 1024.0);

	if (need_mb > (double) sft_max_memory_mb)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model \"%s\" would need about %.0f MB, more than sft.max_memory (%d MB)",
						name, need_mb, sft_max_memory_mb)));
}

/*
 * A new model's row and weights (no run; parent NULL for a base), after
 * checking the tokenizer covers its vocabulary.  Frees model on every path;
 * returns its parameter count.
 */
static int64
SftModelStoreNew(const char *name, const char *tokenizer, SftModel *model, const char *parent)
{
	int64		params;

	PG_TRY();
	{
		int64		size_bytes;
		Oid			weights;

		SftCheckVocabCovers(sft_model_config(model), tokenizer);
		weights = SftLoWriteCheckpoint(model, NULL, &size_bytes);
		SftModelInsert(name, tokenizer, model, parent, 0, weights, size_bytes);
		params = (int64) sft_model_num_params(model);
	}
	PG_CATCH();
	{
		sft_model_free(model);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_model_free(model);
	return params;
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
	SftCheckParameterMemory(SftConfigParameterCount(&cfg), name);

	if (sft_model_new(&cfg, &model, &err) != SFT_OK)
		SftReportCoreError(&err, "creating model");
	sft_model_init_random(model, seed);
	PG_RETURN_INT64(SftModelStoreNew(name, tokenizer, model, NULL));
}

/* ---------------------------------------------------------------------------
 * sft_model_import(name, directory, base)
 * ------------------------------------------------------------------------- */

/*
 * A PEFT adapter directory, for the base model named base: the caller must
 * own the base (adapters are models trained from it, and a base cannot be
 * dropped while adapters depend on it); the adapter's shapes are checked
 * against the base's config.  Tokenizer files in the directory are not
 * read: an adapter uses its base's tokenizer.
 */
static int64
SftModelImportAdapter(const char *name, const char *dir, const char *base)
{
	SftModelRow base_row;
	SftLoraAdapter *adapter = NULL;
	SftError	err = {0};
	int64		params;

	SftModelFetch(base, &base_row, false);
	SftModelCheckOwner(&base_row, "import adapters of");
	if (sft_peft_load_dir(dir, &base_row.config, &adapter, NULL, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("importing \"%s\" for base model \"%s\"", dir, base));
	PG_TRY();
	{
		SftCheckParameterMemory((int64) adapter->n_params, name);
		params = SftModelInsertAdapter(name, base, adapter, 0);
	}
	PG_FINALLY();
	{
		sft_lora_adapter_free(adapter);
	}
	PG_END_TRY();
	return params;
}

Datum
sft_model_import(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	char	   *dir = SftTextArgNotNull(fcinfo, 1, "directory");
	char	   *base = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *tokenizer;
	SftError	err = {0};
	SftModel   *model = NULL;

	SftRequireServerFiles(SFT_SERVER_FILES_READ, "import models from server files", NULL);
	SftModelCheckNameFree(name, 0);
	dir = SftServerDirectory(dir, false);

	if (sft_peft_dir_detect(dir))
	{
		if (base == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" is a PEFT adapter directory: the base model must be named", dir),
					 errhint("Pass the imported base model: sft_model_import('%s', '%s', base => '...').",
							 name, dir)));
		PG_RETURN_INT64(SftModelImportAdapter(name, dir, base));
	}
	if (base != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("base is only for PEFT adapter directories, and \"%s\" has no adapter_config.json",
						dir)));

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
	PG_RETURN_INT64(SftModelStoreNew(name, tokenizer, model, NULL));
}

/* ---------------------------------------------------------------------------
 * sft_model_export(name, directory, format => 'hf' | 'gguf', dtype)
 * ------------------------------------------------------------------------- */

/* The HF directory: fp32 safetensors, config.json, the tokenizer files. */
static List *
SftModelExportHf(const SftModelRow *row, const char *dir)
{
	SftModel   *model;
	SftError	err = {0};
	List	   *files = NIL;

	model = SftModelLoadWeights(row);
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
	return list_concat(files, SftTokenizerExportDirectory(row->tokenizer, dir));
}

/*
 * A PEFT directory: adapter_config.json (base_model_name_or_path = the
 * base's name) and adapter_model.safetensors, the large object's bytes
 * (the writer is deterministic, so reading and writing again reproduces
 * them exactly).
 */
static List *
SftModelExportAdapter(const SftModelRow *row, const char *dir)
{
	SftLoraAdapter *adapter;
	SftError	err = {0};

	adapter = SftModelLoadAdapter(row);
	PG_TRY();
	{
		if (sft_peft_save_dir(adapter, row->parent, dir, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("exporting to \"%s\"", dir));
	}
	PG_FINALLY();
	{
		sft_lora_adapter_free(adapter);
	}
	PG_END_TRY();
	return list_make2(psprintf("%s/adapter_config.json", dir),
					  psprintf("%s/adapter_model.safetensors", dir));
}

Datum
sft_model_export(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	char	   *dir = SftTextArgNotNull(fcinfo, 1, "directory");
	char	   *format = SftTextArgNotNull(fcinfo, 2, "format");
	char	   *dtype = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	SftModelRow row;
	List	   *files;
	Datum	   *elems;
	int			n;
	ListCell   *lc;

	if (strcmp(format, "hf") != 0 && strcmp(format, "gguf") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown export format \"%s\"", format),
				 errhint("Use 'hf' (a Hugging Face directory) or 'gguf' (llama.cpp, Ollama).")));
	if (strcmp(format, "hf") == 0 && dtype && strcmp(dtype, "f32") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("format 'hf' writes f32 weights, not \"%s\"", dtype),
				 errhint("dtype f16, bf16 and q8_0 are for format 'gguf'.")));
	SftRequireServerFiles(SFT_SERVER_FILES_WRITE, "export models to server files", NULL);
	SftModelFetch(name, &row, false);
	SftModelCheckOwner(&row, "export");
	dir = SftServerDirectory(dir, true);

	if (row.is_adapter && strcmp(format, "hf") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" is an adapter, which exports as a PEFT directory (format 'hf') only",
						name),
				 errhint("Merge it into a full model with sft_model_merge('%s', 'new name') and export that.",
						 name)));
	if (row.is_adapter)
		files = SftModelExportAdapter(&row, dir);
	else if (strcmp(format, "gguf") == 0)
		files = SftModelExportGguf(&row, dir, dtype ? dtype : "f16");
	else
		files = SftModelExportHf(&row, dir);

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
	List	   *checkpoints = NIL;
	ListCell   *lc;
	int64		busy_run = 0;

	SftModelFetch(name, &row, false);
	SftModelCheckOwner(&row, "drop");

	/* Lock the row: a concurrent drop or a run starting from it waits for us. */
	if (!SftCatalogModelLock(name))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));

	/* Adapters compute with their base's weights. */
	{
		List	   *adapters = SftCatalogModelAdapters(name);

		if (adapters != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("model \"%s\" is the base of %d adapter%s: %s%s", name,
							list_length(adapters), list_length(adapters) == 1 ? "" : "s",
							(char *) linitial(adapters), list_length(adapters) > 1 ? ", ..." : ""),
					 errhint("Drop the adapters first with sft_model_drop('%s'), or make full models of them with sft_model_merge('%s', 'new name').",
							 (char *) linitial(adapters), (char *) linitial(adapters))));
	}

	/* A run still going from this model reads its weights when it (re)starts. */
	foreach(lc, SftCatalogRunsFromBase(name))
	{
		int64		id = *(int64 *) lfirst(lc);

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
		checkpoints = SftCatalogRunCheckpoints(row.run_id);
	SftCatalogModelDelete(name, row.run_id);

	/* As the caller: lo_unlink checks that the caller owns them (or is superuser). */
	SftLoUnlink(row.weights);
	foreach(lc, checkpoints)
		SftLoUnlink(lfirst_oid(lc));
	PG_RETURN_BOOL(true);
}

/* ---------------------------------------------------------------------------
 * sft_model_merge(adapter, output)
 * ------------------------------------------------------------------------- */

/*
 * A full model computing what base + adapter compute: the base's weights
 * with W += s B A on every adapted projection, its tokenizer, parent = the
 * adapter.  The merged weights hold the base's, so the caller must own both
 * (as for exporting either).
 */
Datum
sft_model_merge(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "adapter");
	char	   *output = SftTextArgNotNull(fcinfo, 1, "output");
	SftModelRow row;
	SftModelRow base_row;
	SftLoraAdapter *adapter;
	SftModel   *model = NULL;
	SftError	err = {0};

	SftModelFetch(name, &row, false);
	if (!row.is_adapter)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" is not an adapter", name),
				 errdetail("sft_model_merge makes a full model of a LoRA adapter and its base.")));
	SftModelCheckOwner(&row, "merge");
	SftModelFetch(row.parent, &base_row, false);
	SftModelCheckOwner(&base_row, "merge adapters into");
	SftModelCheckNameFree(output, 0);
	SftCheckParameterMemory(base_row.parameters + row.parameters, output);

	adapter = SftModelLoadAdapter(&row);
	PG_TRY();
	{
		model = SftModelLoadWeights(&base_row);
		if (sft_lora_merge(model, adapter, &err) != SFT_OK)
			SftReportCoreError(&err, psprintf("merging adapter \"%s\"", name));
	}
	PG_CATCH();
	{
		sft_model_free(model);
		sft_lora_adapter_free(adapter);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_lora_adapter_free(adapter);
	PG_RETURN_INT64(SftModelStoreNew(output, base_row.tokenizer, model, name));
}

/* ---------------------------------------------------------------------------
 * sft_model_set_system(name, system_prompt)
 * ------------------------------------------------------------------------- */

/*
 * The other way to give a model its identity (besides training on identity
 * conversations): a system prompt stored with the model and rendered by
 * sft_generate when the conversation brings none.  It takes precedence over
 * the tokenizer's default_system, which belongs to the template, not to a
 * model.  Training and evaluation render the data as it is.
 */
Datum
sft_model_set_system(PG_FUNCTION_ARGS)
{
	char	   *name = SftTextArgNotNull(fcinfo, 0, "name");
	char	   *system_prompt = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	SftModelRow row;

	if (system_prompt && system_prompt[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("system prompt must not be empty"),
				 errhint("Pass NULL to remove the model's system prompt.")));
	if (system_prompt &&
		sft_utf8_invalid_offset(system_prompt, strlen(system_prompt)) != (size_t) -1)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("system prompt is not valid UTF-8")));
	SftModelFetch(name, &row, false);
	SftModelCheckOwner(&row, "change");
	if (!SftCatalogModelLock(name) || !SftCatalogModelSetSystem(name, system_prompt))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	PG_RETURN_VOID();
}
