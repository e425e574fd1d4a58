/*
 * conversation_tree.c: conversations out of trees of messages (OpenAssistant
 * oasst1/oasst2), the SQL side of src/core/message_tree.c.
 *
 *   sft_from_oasst(source regclass, threads, <column names>)
 *       -> setof (tree_id, last_message_id, messages)
 *     reads a table or view of the flat export (one row per message) AS THE
 *     CALLER through SPI, so privileges and row-level security apply; the
 *     query is built from quoted identifiers only, its rows come sorted by
 *     tree, and each tree is built, checked and read out in a memory context
 *     reset before the next one (memory is bounded by the largest tree).
 *   sft_from_oasst_tree(tree jsonb, threads) -> setof jsonb
 *     one document of the nested export (*.trees.jsonl), parsed by the core.
 *
 * What is kept and in which order is the core's business (message_tree.h);
 * this file converts rows and reports.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "conversation.h"
#include "core/message_tree.h"
#include "sft.h"

PG_FUNCTION_INFO_V1(sft_from_oasst);
PG_FUNCTION_INFO_V1(sft_from_oasst_tree);

#define SFT_TREE_FETCH 10000	/* rows per SPI fetch */

static SftThreads
SftThreadsArg(FunctionCallInfo fcinfo, int argno)
{
	SftThreads	mode;
	SftError	err = {0};

	if (sft_threads_from_name(SftTextArgNotNull(fcinfo, argno, "threads"), &mode, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err.message),
				 errhint("\"all\" yields every root-to-leaf thread, \"top1\" the best-ranked one of each tree.")));
	return mode;
}

/* ---------------------------------------------------------------------------
 * sft_from_oasst_tree(tree jsonb, threads text)
 * ------------------------------------------------------------------------- */

static SftStatus
SftPutConversation(void *arg, const SftConversation *conv, int last, SftError *err)
{
	ReturnSetInfo *rsinfo = arg;
	Datum		value = JsonbPGetDatum(SftConversationToJsonb(conv));
	bool		isnull = false;

	CHECK_FOR_INTERRUPTS();
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	return SFT_OK;
}

Datum
sft_from_oasst_tree(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	SftThreads	mode = SftThreadsArg(fcinfo, 1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *json;
	SftNestedTree nested;
	SftError	err = {0};
	SftStatus	st;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	json = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	st = sft_nested_tree_parse(&nested, json, strlen(json), &err);
	PG_TRY();
	{
		if (st == SFT_OK)
			st = sft_message_tree_threads(&nested.tree, mode, SftPutConversation, rsinfo, &err);
	}
	PG_FINALLY();
	{
		sft_nested_tree_free(&nested);
	}
	PG_END_TRY();
	if (st != SFT_OK)
		SftReportCoreError(&err, "invalid message tree");
	return (Datum) 0;
}

/* ---------------------------------------------------------------------------
 * sft_from_oasst(source regclass, threads text, column names...)
 * ------------------------------------------------------------------------- */

/* The column arguments, in SQL argument order (argument 2 onwards). */
enum
{
	COL_TREE, COL_ID, COL_PARENT, COL_ROLE, COL_TEXT, COL_RANK, COL_DELETED, COL_REVIEW,
	N_COLUMNS
};
static const struct
{
	const char *arg;			/* argument name */
	const char *cast;			/* what the column is read as */
	bool		optional;		/* NULL: the export has no such column */
}			SftOasstColumns[N_COLUMNS] = {
	{"tree_column", "text", false},
	{"id_column", "text", false},
	{"parent_column", "text", false},
	{"role_column", "text", false},
	{"text_column", "text", false},
	{"rank_column", "float8", true},
	{"deleted_column", "bool", true},
	{"review_column", "bool", true},
};

/* One tree's rows as the core wants them, strings copied into tree_cxt. */
typedef struct SftTreeRows
{
	MemoryContext row_cxt;		/* reset per row: detoasting, finished threads */
	MemoryContext tree_cxt;
	char	   *tree_id;
	SftTreeMessage *msgs;
	int			n;
	int			cap;
	ReturnSetInfo *rsinfo;
} SftTreeRows;

static SftStatus
SftPutThread(void *arg, const SftConversation *conv, int last, SftError *err)
{
	SftTreeRows *rows = arg;
	const SftTreeMessage *m = &rows->msgs[last];
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	CHECK_FOR_INTERRUPTS();
	values[0] = CStringGetTextDatum(rows->tree_id);
	values[1] = PointerGetDatum(cstring_to_text_with_len(m->id, m->id_len));
	values[2] = JsonbPGetDatum(SftConversationToJsonb(conv));
	tuplestore_putvalues(rows->rsinfo->setResult, rows->rsinfo->setDesc, values, nulls);
	return SFT_OK;
}

static void
SftFlushTree(SftTreeRows *rows, SftThreads mode)
{
	SftMessageTree tree;
	SftError	err = {0};
	SftStatus	st;

	if (rows->n == 0)
		return;
	st = sft_message_tree_build(&tree, rows->msgs, rows->n, &err);
	PG_TRY();
	{
		if (st == SFT_OK)
			st = sft_message_tree_threads(&tree, mode, SftPutThread, rows, &err);
	}
	PG_FINALLY();
	{
		sft_message_tree_free(&tree);
	}
	PG_END_TRY();
	if (st != SFT_OK)
		SftReportCoreError(&err, psprintf("tree \"%s\"", rows->tree_id));
	MemoryContextReset(rows->tree_cxt);
	rows->tree_id = NULL;
	rows->msgs = NULL;
	rows->n = rows->cap = 0;
}

/* A text column of the deformed row, copied (NULL for SQL NULL). */
static char *
SftColumnText(const Datum *values, const bool *nulls, int col, size_t *len)
{
	text	   *t;

	if (nulls[col])
		return NULL;
	t = DatumGetTextPP(values[col]);
	*len = VARSIZE_ANY_EXHDR(t);
	return pnstrdup(VARDATA_ANY(t), *len);
}

/* One SPI row into rows (which it may flush first when the tree changes). */
static void
SftAddRow(SftTreeRows *rows, HeapTuple tuple, TupleDesc desc, const bool *present,
		  SftThreads mode, const char *source)
{
	MemoryContext old;
	SftTreeMessage *m;
	size_t		len;
	char	   *tree_id;
	char	   *role;
	Datum		values[N_COLUMNS];
	bool		nulls[N_COLUMNS];

	MemoryContextReset(rows->row_cxt);
	old = MemoryContextSwitchTo(rows->row_cxt);
	/* one pass over the tuple (attribute by attribute would rescan it) */
	heap_deform_tuple(tuple, desc, values, nulls);
	if (nulls[COL_TREE])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source %s has a row whose tree id is NULL", source)));
	tree_id = TextDatumGetCString(values[COL_TREE]);
	if (rows->tree_id != NULL && strcmp(rows->tree_id, tree_id) != 0)
		SftFlushTree(rows, mode);

	MemoryContextSwitchTo(rows->tree_cxt);
	if (rows->tree_id == NULL)
		rows->tree_id = pstrdup(tree_id);
	if (rows->n == rows->cap)
	{
		rows->cap = rows->cap ? rows->cap * 2 : 16;
		if ((Size) rows->cap * sizeof(SftTreeMessage) > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("tree \"%s\" has too many messages", rows->tree_id)));
		rows->msgs = rows->msgs ? repalloc(rows->msgs, sizeof(SftTreeMessage) * rows->cap)
			: palloc(sizeof(SftTreeMessage) * rows->cap);
	}
	m = &rows->msgs[rows->n];
	memset(m, 0, sizeof(*m));
	m->rank = SFT_TREE_UNRANKED;
	m->id = SftColumnText(values, nulls, COL_ID, &m->id_len);
	if (m->id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tree \"%s\": a message id is NULL", rows->tree_id)));
	m->parent_id = SftColumnText(values, nulls, COL_PARENT, &m->parent_len);
	role = SftColumnText(values, nulls, COL_ROLE, &len);
	if (role == NULL || sft_tree_role_parse(role, len) < 0)
		ereport(ERROR,
				(errcode(role ? ERRCODE_INVALID_PARAMETER_VALUE : ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tree \"%s\": message \"%s\" has %s%s%s", rows->tree_id, m->id,
						role ? "role \"" : "a NULL role", role ? role : "", role ? "\"" : ""),
				 errhint("Roles are prompter (or user) and assistant.")));
	m->role = (SftRole) sft_tree_role_parse(role, len);
	m->text = SftColumnText(values, nulls, COL_TEXT, &m->text_len);
	if (m->text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tree \"%s\": message \"%s\" has a NULL text", rows->tree_id, m->id)));
	if (present[COL_RANK])
	{
		if (!nulls[COL_RANK] && !isnan(DatumGetFloat8(values[COL_RANK])))
		{
			double		rank = DatumGetFloat8(values[COL_RANK]);

			if (rank < 0 || rank != floor(rank) || rank >= (double) INT64_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("tree \"%s\": message \"%s\" has rank %g; a rank is a whole number, 0 or more (NULL or NaN when unranked)",
								rows->tree_id, m->id, rank)));
			m->rank = (int64_t) rank;
		}
	}
	if (present[COL_DELETED])
	{
		m->excluded |= !nulls[COL_DELETED] && DatumGetBool(values[COL_DELETED]);
	}
	if (present[COL_REVIEW])
	{
		m->excluded |= !nulls[COL_REVIEW] && !DatumGetBool(values[COL_REVIEW]);
	}
	rows->n++;
	MemoryContextSwitchTo(old);
}

/* The relation's qualified, quoted name, once it is known to be readable rows. */
static char *
SftTreeSource(Oid relid)
{
	char		relkind = get_rel_relkind(relid);
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source relation %u does not exist", relid)));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_VIEW &&
		relkind != RELKIND_MATVIEW && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("source \"%s\" is not a table or view", name)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
}

Datum
sft_from_oasst(PG_FUNCTION_ARGS)
{
	Oid			relid;
	SftThreads	mode;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *names[N_COLUMNS];
	bool		present[N_COLUMNS];
	char	   *source;
	StringInfoData query;
	SftTreeRows rows = {0};
	Portal		portal;

	SftCheckUtf8Database();
	SftArgNotNull(fcinfo, 0, "source");
	relid = PG_GETARG_OID(0);
	mode = SftThreadsArg(fcinfo, 1);
	source = SftTreeSource(relid);

	/* SELECT <tree>::text, ..., NULL::float8 for absent optional columns */
	initStringInfo(&query);
	appendStringInfoString(&query, "SELECT ");
	for (int c = 0; c < N_COLUMNS; c++)
	{
		AttrNumber	attnum;

		present[c] = !PG_ARGISNULL(2 + c);
		if (!present[c])
		{
			if (!SftOasstColumns[c].optional)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("%s must not be NULL", SftOasstColumns[c].arg)));
			appendStringInfo(&query, "%sNULL::pg_catalog.%s", c ? ", " : "", SftOasstColumns[c].cast);
			continue;
		}
		names[c] = text_to_cstring(PG_GETARG_TEXT_PP(2 + c));
		attnum = get_attnum(relid, names[c]);
		if (attnum == InvalidAttrNumber || attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of source %s does not exist", names[c], source),
					 errhint(SftOasstColumns[c].optional
							 ? "Name the column with %s => '...', or pass NULL when the source has none."
							 : "Name the column with %s => '...'.", SftOasstColumns[c].arg)));
		appendStringInfo(&query, "%s%s::pg_catalog.%s", c ? ", " : "",
						 quote_identifier(names[c]), SftOasstColumns[c].cast);
	}
	/* "C" collation: rows of one tree are adjacent whatever the column's collation */
	appendStringInfo(&query, " FROM %s ORDER BY %s::pg_catalog.text COLLATE pg_catalog.\"C\"",
					 source, quote_identifier(names[COL_TREE]));

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	rows.rsinfo = rsinfo;
	rows.tree_cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_from_oasst tree",
										  ALLOCSET_DEFAULT_SIZES);
	rows.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_from_oasst row",
										 ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	portal = SPI_cursor_open_with_args(NULL, query.data, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, SFT_TREE_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
			SftAddRow(&rows, SPI_tuptable->vals[r], SPI_tuptable->tupdesc, present, mode, source);
		SPI_freetuptable(SPI_tuptable);
	}
	SftFlushTree(&rows, mode);
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(rows.tree_cxt);
	MemoryContextDelete(rows.row_cxt);
	return (Datum) 0;
}
