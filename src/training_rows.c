/*
 * training_rows.c: relation -> encoded training rows, shared by the training
 * worker and sft_eval (see training_rows.h).
 *
 * Rows are read as the role running the code: the caller for sft_eval, the
 * run's role in the worker.  Its privileges and row-level security decide
 * what it sees; the check up front only turns a missing privilege into a
 * clear message before any work starts.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "conversation.h"
#include "sft.h"
#include "training_rows.h"

#define SFT_ROWS_FETCH 256

char *
SftTrainingSourceCheck(const char *name, const char *column, const char *what)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	Oid			relid = RangeVarGetRelid(rv, AccessShareLock, true);
	char		relkind;
	AttrNumber	attnum;
	Oid			atttype;
	char	   *qualified;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("%s \"%s\" does not exist", what, name)));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_VIEW &&
		relkind != RELKIND_MATVIEW && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s \"%s\" is not a table or view", what, name)));
	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   get_rel_name(relid));
	attnum = get_attnum(relid, column);
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of %s %s does not exist", column, what, qualified),
				 errhint("Name the conversation column with messages_column.")));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck(relid, attnum, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(relkind), get_rel_name(relid));
	atttype = get_atttype(relid, attnum);
	if (atttype != JSONBOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of %s %s is of type %s, not jsonb", column, what,
						qualified, format_type_be(atttype)),
				 errhint("Cast it in a view: SELECT %s::jsonb AS %s FROM ...",
						 quote_identifier(column), quote_identifier(column))));
	return qualified;
}

/*
 * One row: rendered, encoded and masked, then dropped or counted, or handed
 * to the consumer.  enc is core memory owned by the reader.
 */
static void
SftTrainingRowEncode(Jsonb *messages, const char *relation, const char *column,
					 const SftTrainingRowRules *rules, SftEncoded *enc,
					 SftTrainingRowFn consume, void *arg, SftTrainingRowCounts *counts)
{
	SftConversation *conv;
	char	   *problem = NULL;
	SftError	err = {0};
	int64		targets = 0;

	conv = SftConversationTryFromJsonb(messages, SFT_CONV_TRAINING, &problem);
	if (conv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("row %lld of %s is not a training conversation: %s",
						(long long) counts->read, relation, problem),
				 errhint("Filter the rows in a view, e.g. WHERE sft_is_conversation(%s).",
						 quote_identifier(column))));
	if (sft_chat_encode(rules->tpl, rules->entry->tok, conv, rules->train_on, 0,
						rules->truncate ? rules->max_length : 0, enc, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("row %lld of %s", (long long) counts->read, relation));
	if ((int64) enc->ids.len > rules->max_length)
	{
		counts->too_long++;
		return;
	}
	if (enc->truncated)
		counts->truncated++;
	/* a sequence's first token is never a target (nothing predicts it) */
	for (size_t t = 1; t < enc->ids.len; t++)
		targets += enc->mask.data[t] != 0;
	if (targets == 0)
	{
		counts->no_assistant++;
		return;
	}
	counts->used++;
	consume(arg, enc->ids.data, enc->mask.data, (int64) enc->ids.len, targets);
}

void
SftTrainingRowsRead(const char *relation, const char *column, const SftTrainingRowRules *rules,
					SftTrainingRowFn consume, SftTrainingRowPoll poll, void *arg,
					SftTrainingRowCounts *counts)
{
	char	   *query = psprintf("SELECT %s FROM %s", quote_identifier(column), relation);
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "sft training row",
												  ALLOCSET_DEFAULT_SIZES);
	SftEncoded	enc;
	Portal		portal;
	bool		stop = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* read-only: the relation is only read, under the current role's rights */
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	sft_encoded_init(&enc);
	PG_TRY();
	{
		while (!stop)
		{
			SPI_cursor_fetch(portal, true, SFT_ROWS_FETCH);
			if (SPI_processed == 0)
				break;
			for (uint64 r = 0; r < SPI_processed && !stop; r++)
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
				MemoryContext old;

				counts->read++;
				if ((counts->read & 63) == 0 && poll && !poll(arg, counts))
					stop = true;
				if (isnull)
				{
					counts->null++;
					continue;
				}
				old = MemoryContextSwitchTo(row_cxt);
				SftTrainingRowEncode(DatumGetJsonbP(d), relation, column, rules, &enc,
									 consume, arg, counts);
				MemoryContextSwitchTo(old);
				MemoryContextReset(row_cxt);
			}
			SPI_freetuptable(SPI_tuptable);
			CHECK_FOR_INTERRUPTS();
			if (poll && !poll(arg, counts))
				stop = true;
		}
	}
	PG_FINALLY();
	{
		sft_encoded_free(&enc);
	}
	PG_END_TRY();
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(row_cxt);
}
