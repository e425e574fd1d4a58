/*
 * catalog.c: the extension's tables, and the one place that acts with
 * another role's rights.
 *
 * Users may read the tables (sft_tokenizers, sft_models, sft_run_table,
 * sft_run_log, sft_run_epochs) but not write them: the functions here write
 * them as the tables' owner, after the calling glue has checked what the
 * caller may do.  Code that runs with the owner's rights must not resolve
 * anything a user can create, or a user's own operator or function would
 * run with those rights (the search_path hijack, CVE-2018-1058's class: a
 * `=` operator for bigint in the caller's schema, first in search_path, once
 * made any user superuser through sft_cancel).  So every statement here
 *
 *   - runs as the owner of the tables with SECURITY_RESTRICTED_OPERATION
 *     (as index expressions and SECURITY DEFINER maintenance code do), which
 *     also refuses SET ROLE and similar escapes inside it;
 *   - runs with search_path pinned to "pg_catalog, pg_temp" in a GUC nest
 *     level of its own, so neither the caller's SET, nor a role or database
 *     default (which also reaches background workers), changes what it
 *     resolves to; pg_temp is searched for relations only, never for
 *     operators or functions, and every relation is schema-qualified anyway;
 *   - names relations schema-qualified and uses only pg_catalog operators
 *     and functions, spelled out (OPERATOR(pg_catalog.=), pg_catalog.now()),
 *     so that the statement stays safe even if the pinning were lost;
 *   - restores the role and the settings on every exit, errors included.
 *
 * Reads go through the same path although users could read the tables
 * themselves: one path is one thing to audit, and reading as the owner
 * under a pinned search_path is never less safe than reading as the caller
 * under theirs.  Tokenizer reads serve STABLE, PARALLEL SAFE functions
 * (sft_tokenize, sft_token_count ...): they are read-only SPI calls, with
 * no command counter increment, which a parallel worker could not do (the
 * pinned search_path is a GUC_ACTION_SAVE setting, which parallel mode
 * allows).  Model and run reads take a fresh snapshot instead, so that
 * sft_wait() sees the run its worker just finished.
 *
 * The caller's identity is never used in here: who owns a new row is an
 * argument, and ownership checks happen in the glue before and after.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "catalog.h"

/*
 * The schema of the tables.  The control file installs the extension in
 * public and makes it not relocatable, so the name is fixed.
 */
#define SFT_SCHEMA "public"
#define TOKENIZERS SFT_SCHEMA ".sft_tokenizers"
#define MODELS SFT_SCHEMA ".sft_models"
#define RUNS SFT_SCHEMA ".sft_run_table"
#define RUN_LOG SFT_SCHEMA ".sft_run_log"
#define RUN_EPOCHS SFT_SCHEMA ".sft_run_epochs"

/* The only operators and functions the statements use. */
#define EQ " OPERATOR(pg_catalog.=) "
#define NE " OPERATOR(pg_catalog.<>) "
#define GT " OPERATOR(pg_catalog.>) "
#define PLUS " OPERATOR(pg_catalog.+) "
#define NOW "pg_catalog.now()"

/* ---------------------------------------------------------------------------
 * Acting as the owner
 * ------------------------------------------------------------------------- */

static Oid
CatalogOwner(void)
{
	Oid			nsp = get_namespace_oid(SFT_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("sft_run_table", nsp) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"sft\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION sft.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* A statement's result, copied into the caller's memory context. */
typedef struct CatalogRows
{
	uint64		n;
	HeapTuple  *rows;
	TupleDesc	desc;
} CatalogRows;

/* A statement: its SQL and parameters (nulls as SPI wants them: 'n' or ' '). */
typedef struct CatalogStatement
{
	const char *sql;
	int			nargs;
	Oid			types[16];
	Datum		values[16];
	char		nulls[17];
} CatalogStatement;

void
SftCatalogActAsRunRole(Oid login_role, Oid run_role)
{
	if (run_role != login_role)
		SetUserIdAndSecContext(run_role, SECURITY_LOCAL_USERID_CHANGE);
}

static void
StmtInit(CatalogStatement *st, const char *sql)
{
	memset(st, 0, sizeof(*st));
	st->sql = sql;
}

static void
StmtArg(CatalogStatement *st, Oid type, Datum value, bool isnull)
{
	/* a statement with more parameters than fit is a bug: fail, never overflow */
	if (st->nargs >= lengthof(st->types))
		elog(ERROR, "catalog statement has more than %d parameters: %s",
			 (int) lengthof(st->types), st->sql);
	st->types[st->nargs] = type;
	st->values[st->nargs] = isnull ? (Datum) 0 : value;
	st->nulls[st->nargs] = isnull ? 'n' : ' ';
	st->nargs++;
}

static void
StmtText(CatalogStatement *st, const char *s)
{
	StmtArg(st, TEXTOID, s ? CStringGetTextDatum(s) : (Datum) 0, s == NULL);
}

static void
StmtInt8(CatalogStatement *st, int64 v)
{
	StmtArg(st, INT8OID, Int64GetDatum(v), false);
}

/*
 * Execute one statement as the tables' owner (see the header comment).
 * read_only: a plain SELECT in the current snapshot, callable from
 * parallel-safe functions; otherwise SPI takes a fresh snapshot.  Returns the rows processed; with rows, the result rows too.
 */
static uint64
CatalogExec(const CatalogStatement *st, bool read_only, int expected, CatalogRows *rows)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	Oid			owner = CatalogOwner();
	Oid			saved_user;
	int			saved_context;
	int			nestlevel;
	volatile bool ok = false;
	uint64		processed = 0;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		int			rc;

		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_with_args(st->sql, st->nargs, (Oid *) st->types, (Datum *) st->values,
								   st->nulls, read_only, 0);
		if (rc != expected)
			elog(ERROR, "sft catalog statement failed (%s): %s", SPI_result_code_string(rc),
				 st->sql);
		processed = SPI_processed;
		if (rows)
		{
			MemoryContext spi_cxt = MemoryContextSwitchTo(caller_cxt);

			rows->n = SPI_processed;
			rows->desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
			rows->rows = palloc(sizeof(HeapTuple) * Max(SPI_processed, 1));
			for (uint64 i = 0; i < SPI_processed; i++)
				rows->rows[i] = heap_copytuple(SPI_tuptable->vals[i]);
			MemoryContextSwitchTo(spi_cxt);
		}
		SPI_finish();
		ok = true;
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(ok, nestlevel);
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
	return processed;
}

static Datum
RowDatum(const CatalogRows *r, uint64 i, int col, bool *isnull)
{
	return heap_getattr(r->rows[i], col, r->desc, isnull);
}

/* A text column as a C string, NULL for SQL NULL. */
static char *
RowString(const CatalogRows *r, uint64 i, int col)
{
	bool		isnull;
	Datum		d = RowDatum(r, i, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* A text column detoasted, NULL for SQL NULL. */
static text *
RowText(const CatalogRows *r, uint64 i, int col)
{
	bool		isnull;
	Datum		d = RowDatum(r, i, col, &isnull);

	return isnull ? NULL : DatumGetTextPP(d);
}

static int64
RowInt64(const CatalogRows *r, uint64 i, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = RowDatum(r, i, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

static int32
RowInt32(const CatalogRows *r, uint64 i, int col)
{
	bool		isnull;
	Datum		d = RowDatum(r, i, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

static double
RowFloat8(const CatalogRows *r, uint64 i, int col)
{
	bool		isnull;
	Datum		d = RowDatum(r, i, col, &isnull);

	return isnull ? NAN : DatumGetFloat8(d);
}

static Oid
RowOid(const CatalogRows *r, uint64 i, int col)
{
	bool		isnull;
	Datum		d = RowDatum(r, i, col, &isnull);

	return isnull ? InvalidOid : DatumGetObjectId(d);
}

static void
RowVersion(const CatalogRows *r, uint64 i, int xmin_col, SftTokenizerVersion *v)
{
	bool		isnull;

	v->xmin = DatumGetTransactionId(RowDatum(r, i, xmin_col, &isnull));
	v->tid = *(ItemPointer) DatumGetPointer(RowDatum(r, i, xmin_col + 1, &isnull));
}

/* ---------------------------------------------------------------------------
 * Tokenizers
 * ------------------------------------------------------------------------- */

bool
SftCatalogTokenizerVersion(const char *name, SftTokenizerVersion *version)
{
	CatalogStatement st;
	CatalogRows r;

	StmtInit(&st, "SELECT xmin, ctid FROM " TOKENIZERS " WHERE name" EQ "$1");
	StmtText(&st, name);
	if (CatalogExec(&st, true, SPI_OK_SELECT, &r) == 0)
		return false;
	RowVersion(&r, 0, 1, version);
	return true;
}

bool
SftCatalogTokenizerRead(const char *name, SftTokenizerRecord *rec)
{
	CatalogStatement st;
	CatalogRows r;

	memset(rec, 0, sizeof(*rec));
	StmtInit(&st, "SELECT xmin, ctid, source, merges, config::pg_catalog.text, chat_template, "
			 "default_system, owner::pg_catalog.oid, chat_template_source FROM " TOKENIZERS
			 " WHERE name" EQ "$1");
	StmtText(&st, name);
	if (CatalogExec(&st, true, SPI_OK_SELECT, &r) == 0)
		return false;
	RowVersion(&r, 0, 1, &rec->version);
	rec->source = RowText(&r, 0, 3);
	rec->merges = RowText(&r, 0, 4);
	rec->config = RowString(&r, 0, 5);
	rec->chat_template = RowString(&r, 0, 6);
	rec->default_system = RowString(&r, 0, 7);
	rec->owner = RowOid(&r, 0, 8);
	rec->chat_template_source = RowString(&r, 0, 9);
	return true;
}

bool
SftCatalogTokenizerExists(const char *name)
{
	CatalogStatement st;

	StmtInit(&st, "SELECT 1 FROM " TOKENIZERS " WHERE name" EQ "$1");
	StmtText(&st, name);
	return CatalogExec(&st, true, SPI_OK_SELECT, NULL) > 0;
}

bool
SftCatalogTokenizerLock(const char *name, Oid *owner)
{
	CatalogStatement st;
	CatalogRows r;

	StmtInit(&st, "SELECT owner::pg_catalog.oid FROM " TOKENIZERS " WHERE name" EQ "$1 FOR UPDATE");
	StmtText(&st, name);
	if (CatalogExec(&st, false, SPI_OK_SELECT, &r) == 0)
		return false;
	*owner = RowOid(&r, 0, 1);
	return true;
}

void
SftCatalogTokenizerInsert(const SftTokenizerNewRow *row, SftTokenizerVersion *version)
{
	CatalogStatement st;
	CatalogRows r;

	StmtInit(&st, "INSERT INTO " TOKENIZERS " (name, kind, vocab_size, special_tokens, "
			 "chat_template, default_system, bos_token, eos_token, source, merges, config, owner, "
			 "chat_template_source, end_of_turn_token) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING xmin, ctid");
	StmtText(&st, row->name);
	StmtText(&st, row->kind);
	StmtArg(&st, INT4OID, Int32GetDatum(row->vocab_size), false);
	StmtArg(&st, TEXTARRAYOID, PointerGetDatum(row->special_tokens), false);
	StmtText(&st, row->chat_template);
	StmtText(&st, row->default_system);
	StmtText(&st, row->bos_token);
	StmtText(&st, row->eos_token);
	StmtArg(&st, TEXTOID, PointerGetDatum(row->source), false);
	StmtArg(&st, TEXTOID, PointerGetDatum(row->merges), row->merges == NULL);
	StmtArg(&st, JSONBOID, row->config, row->config == (Datum) 0);
	StmtArg(&st, REGROLEOID, ObjectIdGetDatum(row->owner), false);
	StmtText(&st, row->chat_template_source);
	StmtText(&st, row->end_of_turn_token);
	CatalogExec(&st, false, SPI_OK_INSERT_RETURNING, &r);
	RowVersion(&r, 0, 1, version);
}

void
SftCatalogTokenizerDelete(const char *name)
{
	CatalogStatement st;

	StmtInit(&st, "DELETE FROM " TOKENIZERS " WHERE name" EQ "$1");
	StmtText(&st, name);
	CatalogExec(&st, false, SPI_OK_DELETE, NULL);
}

void
SftCatalogTokenizerSetTemplate(const char *name, const char *chat_template,
							   const char *chat_template_source, const char *default_system,
							   const char *end_of_turn_token, SftTokenizerVersion *version)
{
	CatalogStatement st;
	CatalogRows r;

	StmtInit(&st, "UPDATE " TOKENIZERS " SET chat_template = $2, default_system = $3, "
			 "chat_template_source = $4, end_of_turn_token = $5 "
			 "WHERE name" EQ "$1 RETURNING xmin, ctid");
	StmtText(&st, name);
	StmtText(&st, chat_template);
	StmtText(&st, default_system);
	StmtText(&st, chat_template_source);
	StmtText(&st, end_of_turn_token);
	if (CatalogExec(&st, false, SPI_OK_UPDATE_RETURNING, &r) != 1)
		elog(ERROR, "tokenizer \"%s\" vanished while it was locked", name);
	RowVersion(&r, 0, 1, version);
}

bool
SftCatalogTokenizerFiles(const char *name, const char *jinja, text **source, text **merges,
						 text **config)
{
	CatalogStatement st;
	CatalogRows r;

	StmtInit(&st, "SELECT source, merges, CASE WHEN $2::pg_catalog.text IS NULL "
			 "THEN config::pg_catalog.text "
			 "ELSE (COALESCE(config, '{}'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) "
			 "pg_catalog.jsonb_build_object('chat_template', $2::pg_catalog.text))::pg_catalog.text END "
			 "FROM " TOKENIZERS " WHERE name" EQ "$1");
	StmtText(&st, name);
	StmtText(&st, jinja);
	if (CatalogExec(&st, true, SPI_OK_SELECT, &r) == 0)
		return false;
	*source = RowText(&r, 0, 1);
	*merges = RowText(&r, 0, 2);
	*config = RowText(&r, 0, 3);
	return true;
}

/* ---------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------- */

bool
SftCatalogModelRead(const char *name, SftModelRecord *rec)
{
	CatalogStatement st;
	CatalogRows r;

	memset(rec, 0, sizeof(*rec));
	StmtInit(&st, "SELECT name, tokenizer, dtype, parent, run_id, owner::pg_catalog.oid, weights, "
			 "parameters, size_bytes, config::pg_catalog.text, system_prompt, "
			 "adapter::pg_catalog.text FROM " MODELS
			 " WHERE name" EQ "$1");
	StmtText(&st, name);
	if (CatalogExec(&st, false, SPI_OK_SELECT, &r) == 0)
		return false;
	rec->name = RowString(&r, 0, 1);
	rec->tokenizer = RowString(&r, 0, 2);
	rec->dtype = RowString(&r, 0, 3);
	rec->parent = RowString(&r, 0, 4);
	rec->run_id = RowInt64(&r, 0, 5, 0);
	rec->owner = RowOid(&r, 0, 6);
	rec->weights = RowOid(&r, 0, 7);
	rec->parameters = RowInt64(&r, 0, 8, 0);
	rec->size_bytes = RowInt64(&r, 0, 9, 0);
	rec->config_json = RowString(&r, 0, 10);
	rec->system_prompt = RowString(&r, 0, 11);
	rec->adapter_json = RowString(&r, 0, 12);
	return true;
}

bool
SftCatalogModelExists(const char *name)
{
	CatalogStatement st;

	StmtInit(&st, "SELECT 1 FROM " MODELS " WHERE name" EQ "$1");
	StmtText(&st, name);
	return CatalogExec(&st, false, SPI_OK_SELECT, NULL) > 0;
}

bool
SftCatalogModelLock(const char *name)
{
	CatalogStatement st;

	StmtInit(&st, "SELECT 1 FROM " MODELS " WHERE name" EQ "$1 FOR UPDATE");
	StmtText(&st, name);
	return CatalogExec(&st, false, SPI_OK_SELECT, NULL) > 0;
}

void
SftCatalogModelInsert(const SftModelRecord *rec)
{
	CatalogStatement st;

	StmtInit(&st, "INSERT INTO " MODELS " (name, config, tokenizer, parent, run_id, owner, "
			 "parameters, size_bytes, weights, adapter) "
			 "VALUES ($1, $2::pg_catalog.jsonb, $3, $4, $5, $6, $7, $8, $9, $10::pg_catalog.jsonb)");
	StmtText(&st, rec->name);
	StmtText(&st, rec->config_json);
	StmtText(&st, rec->tokenizer);
	StmtText(&st, rec->parent);
	StmtArg(&st, INT8OID, Int64GetDatum(rec->run_id), rec->run_id == 0);
	StmtArg(&st, REGROLEOID, ObjectIdGetDatum(rec->owner), false);
	StmtInt8(&st, rec->parameters);
	StmtInt8(&st, rec->size_bytes);
	StmtArg(&st, OIDOID, ObjectIdGetDatum(rec->weights), false);
	StmtText(&st, rec->adapter_json);
	CatalogExec(&st, false, SPI_OK_INSERT, NULL);
}

List *
SftCatalogModelAdapters(const char *base)
{
	CatalogStatement st;
	CatalogRows r;
	List	   *names = NIL;

	StmtInit(&st, "SELECT name FROM " MODELS " WHERE parent" EQ "$1 AND adapter IS NOT NULL "
			 "ORDER BY name");
	StmtText(&st, base);
	CatalogExec(&st, false, SPI_OK_SELECT, &r);
	for (uint64 i = 0; i < r.n; i++)
		names = lappend(names, RowString(&r, i, 1));
	return names;
}

bool
SftCatalogModelSetSystem(const char *name, const char *system_prompt)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " MODELS " SET system_prompt = $2 WHERE name" EQ "$1");
	StmtText(&st, name);
	StmtText(&st, system_prompt);
	return CatalogExec(&st, false, SPI_OK_UPDATE, NULL) > 0;
}

void
SftCatalogModelDelete(const char *name, int64 run_id)
{
	CatalogStatement st;

	StmtInit(&st, "DELETE FROM " MODELS " WHERE name" EQ "$1");
	StmtText(&st, name);
	CatalogExec(&st, false, SPI_OK_DELETE, NULL);
	if (run_id != 0)
	{
		StmtInit(&st, "UPDATE " RUN_EPOCHS " SET checkpoint = NULL "
				 "WHERE run_id" EQ "$1 AND checkpoint IS NOT NULL");
		StmtInt8(&st, run_id);
		CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
	}
}

/* ---------------------------------------------------------------------------
 * Runs
 * ------------------------------------------------------------------------- */

int64
SftCatalogRunInsert(const SftRunSpec *spec)
{
	CatalogStatement st;
	CatalogRows r;

	StmtInit(&st, "INSERT INTO " RUNS " (owner, source, base, output, epochs, learning_rate, "
			 "max_length, batch_size, options, threads, max_memory_mb, tokenizer) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id");
	StmtArg(&st, REGROLEOID, ObjectIdGetDatum(spec->owner), false);
	StmtText(&st, spec->source);
	StmtText(&st, spec->base);
	StmtText(&st, spec->output);
	StmtArg(&st, INT4OID, Int32GetDatum(spec->epochs), false);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(spec->learning_rate), false);
	StmtArg(&st, INT4OID, Int32GetDatum(spec->max_length), false);
	StmtArg(&st, INT4OID, Int32GetDatum(spec->batch_size), false);
	StmtArg(&st, JSONBOID, JsonbPGetDatum(spec->options), false);
	StmtArg(&st, INT4OID, Int32GetDatum(spec->threads), false);
	StmtArg(&st, INT4OID, Int32GetDatum(spec->max_memory_mb), false);
	StmtText(&st, spec->tokenizer);
	if (CatalogExec(&st, false, SPI_OK_INSERT_RETURNING, &r) != 1)
		elog(ERROR, "could not insert into sft_run_table");
	return RowInt64(&r, 0, 1, 0);
}

bool
SftCatalogRunRead(int64 run_id, bool for_update, SftRunSpec *spec)
{
	CatalogStatement st;
	CatalogRows r;
	bool		isnull;

	memset(spec, 0, sizeof(*spec));
	/* Locking needs UPDATE on the table, which only its owner has. */
	StmtInit(&st, for_update ?
			 "SELECT owner::pg_catalog.oid, status, source, base, output, tokenizer, threads, epochs, "
			 "learning_rate, max_length, batch_size, options, data_fingerprint, error, max_memory_mb "
			 "FROM " RUNS " WHERE id" EQ "$1 FOR UPDATE" :
			 "SELECT owner::pg_catalog.oid, status, source, base, output, tokenizer, threads, epochs, "
			 "learning_rate, max_length, batch_size, options, data_fingerprint, error, max_memory_mb "
			 "FROM " RUNS " WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	if (CatalogExec(&st, false, SPI_OK_SELECT, &r) == 0)
		return false;
	spec->owner = RowOid(&r, 0, 1);
	spec->status = RowString(&r, 0, 2);
	spec->source = RowString(&r, 0, 3);
	spec->base = RowString(&r, 0, 4);
	spec->output = RowString(&r, 0, 5);
	spec->tokenizer = RowString(&r, 0, 6);
	spec->threads = RowInt32(&r, 0, 7);
	spec->epochs = RowInt32(&r, 0, 8);
	spec->learning_rate = RowFloat8(&r, 0, 9);
	spec->max_length = RowInt32(&r, 0, 10);
	spec->batch_size = RowInt32(&r, 0, 11);
	spec->options = DatumGetJsonbPCopy(RowDatum(&r, 0, 12, &isnull));
	spec->fingerprint = DatumGetInt64(RowDatum(&r, 0, 13, &isnull));
	spec->have_fingerprint = !isnull;
	spec->error = RowString(&r, 0, 14);
	spec->max_memory_mb = RowInt32(&r, 0, 15);
	return true;
}

int64
SftCatalogRunReservingName(const char *name, int64 except_run)
{
	CatalogStatement st;
	CatalogRows r;

	/*
	 * A run that will produce this name holds it from sft_train() until it
	 * succeeds or is dropped; runs a crash interrupted still hold it (they
	 * can resume).
	 */
	StmtInit(&st, "SELECT id FROM " RUNS " WHERE output" EQ "$1 AND status" NE "'succeeded' "
			 "AND id" NE "$2 ORDER BY id LIMIT 1");
	StmtText(&st, name);
	StmtInt8(&st, except_run);
	if (CatalogExec(&st, false, SPI_OK_SELECT, &r) == 0)
		return 0;
	return RowInt64(&r, 0, 1, 0);
}

List *
SftCatalogRunsFromBase(const char *name)
{
	CatalogStatement st;
	CatalogRows r;
	List	   *ids = NIL;

	StmtInit(&st, "SELECT id FROM " RUNS " WHERE base" EQ "$1 "
			 "AND (status" EQ "'queued' OR status" EQ "'running') ORDER BY id");
	StmtText(&st, name);
	CatalogExec(&st, false, SPI_OK_SELECT, &r);
	for (uint64 i = 0; i < r.n; i++)
	{
		int64	   *id = palloc(sizeof(int64));

		*id = RowInt64(&r, i, 1, 0);
		ids = lappend(ids, id);
	}
	return ids;
}

List *
SftCatalogRunCheckpoints(int64 run_id)
{
	CatalogStatement st;
	CatalogRows r;
	List	   *oids = NIL;

	StmtInit(&st, "SELECT checkpoint FROM " RUN_EPOCHS
			 " WHERE run_id" EQ "$1 AND checkpoint IS NOT NULL ORDER BY epoch");
	StmtInt8(&st, run_id);
	CatalogExec(&st, false, SPI_OK_SELECT, &r);
	for (uint64 i = 0; i < r.n; i++)
		oids = lappend_oid(oids, RowOid(&r, i, 1));
	return oids;
}

void
SftCatalogRunRequeue(int64 run_id)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUNS " SET status = 'queued', error = NULL, finished = NULL "
			 "WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunDelete(int64 run_id)
{
	CatalogStatement st;

	/* the log and epoch rows go with it (ON DELETE CASCADE) */
	StmtInit(&st, "DELETE FROM " RUNS " WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	CatalogExec(&st, false, SPI_OK_DELETE, NULL);
}

static bool
RunEpochCheckpoint(const char *sql, int64 run_id, SftEpochCheckpoint *out)
{
	CatalogStatement st;
	CatalogRows r;

	memset(out, 0, sizeof(*out));
	StmtInit(&st, sql);
	StmtInt8(&st, run_id);
	if (CatalogExec(&st, false, SPI_OK_SELECT, &r) == 0)
		return false;
	out->epoch = RowInt32(&r, 0, 1);
	out->step = RowInt64(&r, 0, 2, 0);
	out->validation_loss = RowFloat8(&r, 0, 3);
	out->checkpoint = RowOid(&r, 0, 4);
	return true;
}

bool
SftCatalogRunLastCheckpoint(int64 run_id, SftEpochCheckpoint *out)
{
	return RunEpochCheckpoint("SELECT epoch, step, validation_loss, checkpoint FROM " RUN_EPOCHS
							  " WHERE run_id" EQ "$1 AND checkpoint IS NOT NULL "
							  "ORDER BY epoch DESC LIMIT 1", run_id, out);
}

bool
SftCatalogRunBestCheckpoint(int64 run_id, SftEpochCheckpoint *out)
{
	return RunEpochCheckpoint("SELECT epoch, step, validation_loss, checkpoint FROM " RUN_EPOCHS
							  " WHERE run_id" EQ "$1 AND checkpoint IS NOT NULL "
							  "AND validation_loss IS NOT NULL "
							  "ORDER BY validation_loss, epoch LIMIT 1", run_id, out);
}

void
SftCatalogRunForgetAfter(int64 run_id, int64 step, int epoch)
{
	CatalogStatement st;

	StmtInit(&st, "DELETE FROM " RUN_LOG " WHERE run_id" EQ "$1 AND step" GT "$2");
	StmtInt8(&st, run_id);
	StmtInt8(&st, step);
	CatalogExec(&st, false, SPI_OK_DELETE, NULL);
	StmtInit(&st, "DELETE FROM " RUN_EPOCHS " WHERE run_id" EQ "$1 AND epoch" GT "$2");
	StmtInt8(&st, run_id);
	StmtArg(&st, INT4OID, Int32GetDatum(epoch), false);
	CatalogExec(&st, false, SPI_OK_DELETE, NULL);
}

void
SftCatalogRunStarted(int64 run_id, int64 steps_done, int epochs_done)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUNS " SET status = 'running', started = " NOW ", finished = NULL, "
			 "error = NULL, attempts = attempts" PLUS "1, steps_done = $2, epochs_done = $3 "
			 "WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	StmtInt8(&st, steps_done);
	StmtArg(&st, INT4OID, Int32GetDatum(epochs_done), false);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunSetCounts(int64 run_id, const SftRunCounts *c)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUNS " SET rows_read = $2, rows_used = $3, rows_too_long = $4, "
			 "rows_truncated = $5, rows_no_assistant = $6, rows_null = $7, validation_rows = $8, "
			 "tokens = $9, target_tokens = $10, load_seconds = $11, data_fingerprint = $12 "
			 "WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	StmtInt8(&st, c->rows_read);
	StmtInt8(&st, c->rows_used);
	StmtInt8(&st, c->rows_too_long);
	StmtInt8(&st, c->rows_truncated);
	StmtInt8(&st, c->rows_no_assistant);
	StmtInt8(&st, c->rows_null);
	StmtInt8(&st, c->validation_rows);
	StmtInt8(&st, c->tokens);
	StmtInt8(&st, c->target_tokens);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(c->load_seconds), false);
	StmtInt8(&st, c->fingerprint);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunSetSteps(int64 run_id, int64 steps)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUNS " SET steps = $2 WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	StmtInt8(&st, steps);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunLogStep(int64 run_id, int64 step, int epoch, double loss, double lr,
					 double grad_norm, double tokens_per_s)
{
	CatalogStatement st;

	StmtInit(&st, "INSERT INTO " RUN_LOG " (run_id, step, epoch, loss, learning_rate, grad_norm, "
			 "tokens_per_s) VALUES ($1, $2, $3, $4, $5, $6, $7)");
	StmtInt8(&st, run_id);
	StmtInt8(&st, step);
	StmtArg(&st, INT4OID, Int32GetDatum(epoch), false);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(loss), false);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(lr), false);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(grad_norm), false);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(tokens_per_s), false);
	CatalogExec(&st, false, SPI_OK_INSERT, NULL);
	StmtInit(&st, "UPDATE " RUNS " SET steps_done = $2 WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	StmtInt8(&st, step);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunEpochInsert(int64 run_id, int epoch, int64 step, double train_loss,
						 double validation_loss, Oid checkpoint)
{
	CatalogStatement st;

	StmtInit(&st, "INSERT INTO " RUN_EPOCHS " (run_id, epoch, step, train_loss, validation_loss, "
			 "checkpoint) VALUES ($1, $2, $3, $4, $5, $6)");
	StmtInt8(&st, run_id);
	StmtArg(&st, INT4OID, Int32GetDatum(epoch), false);
	StmtInt8(&st, step);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(train_loss), false);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(validation_loss), isnan(validation_loss));
	StmtArg(&st, OIDOID, ObjectIdGetDatum(checkpoint), false);
	CatalogExec(&st, false, SPI_OK_INSERT, NULL);
}

void
SftCatalogRunForgetCheckpoint(int64 run_id, Oid checkpoint)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUN_EPOCHS " SET checkpoint = NULL "
			 "WHERE run_id" EQ "$1 AND checkpoint" EQ "$2");
	StmtInt8(&st, run_id);
	StmtArg(&st, OIDOID, ObjectIdGetDatum(checkpoint), false);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunEpochDone(int64 run_id, int epoch, int64 step, double train_loss)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUNS " SET epochs_done = $2, steps_done = $3, final_loss = $4 "
			 "WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	StmtArg(&st, INT4OID, Int32GetDatum(epoch), false);
	StmtInt8(&st, step);
	StmtArg(&st, FLOAT8OID, Float8GetDatum(train_loss), false);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}

void
SftCatalogRunFinish(int64 run_id, const char *status, const char *error)
{
	CatalogStatement st;

	StmtInit(&st, "UPDATE " RUNS " SET status = $2, error = $3, finished = " NOW
			 " WHERE id" EQ "$1");
	StmtInt8(&st, run_id);
	StmtText(&st, status);
	StmtText(&st, error);
	CatalogExec(&st, false, SPI_OK_UPDATE, NULL);
}
