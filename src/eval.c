/*
 * eval.c: a model's loss from SQL.
 *
 *   sft_loss(model, messages jsonb, train_on)  -> float8
 *       mean negative log-likelihood (nats) over the conversation's loss-mask
 *       tokens: the assistant replies and the tokens closing them.
 *   sft_eval(model, source, max_length, messages_column, train_on, too_long)
 *       -> (rows, tokens, loss, perplexity) over a table or view.
 *
 * Both compute exactly what training computes: rows are rendered, encoded
 * and masked by the same sft_chat_encode call the training worker makes, and
 * the loss is the trainer's own forward pass (sft_trainer_evaluate, no
 * dropout), so a row's sft_loss is the loss training reports for it and
 * sft_eval over a validation relation is the run's validation loss.  sft_eval
 * weights by tokens, not rows: loss = (sum of every target token's NLL) /
 * (number of target tokens), as the training loss is defined; perplexity is
 * exp(loss).  A sequence's first token is never a target (nothing predicts
 * it).
 *
 * Rows are treated as the training worker treats them: NULL rows are
 * skipped, a value that is not a training conversation is an error naming
 * the row, rows longer than max_length are dropped (too_long = 'drop', the
 * training default) or cut (too_long = 'truncate'), and rows left without
 * target tokens are skipped; skipped rows are counted in a NOTICE.
 *
 * The source is read as the calling role: the name is resolved as the
 * caller sees it, SELECT on the table or on its messages column is checked
 * up front for a clear message, and the rows come through SPI under the
 * caller's privileges and row-level security policies.  Rows are packed into
 * micro-batches of up to max_length tokens (sequences never see each other),
 * and interrupts are checked between batches.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "conversation.h"
#include "core/chat_template.h"
#include "model_cache.h"
#include "sft.h"
#include "tokenizer.h"

PG_FUNCTION_INFO_V1(sft_loss);
PG_FUNCTION_INFO_V1(sft_eval);

/* Evaluator sizes are rounded up to this, so that one serves many calls. */
#define SFT_EVAL_TOKENS_STEP 256
#define SFT_EVAL_FETCH 256

/* ---------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------- */

/* Evaluator size for sequences of up to n tokens, within the model's positions. */
static int
SftEvalTokens(const SftModelLease *lease, int64 n)
{
	int64		rounded = (n + SFT_EVAL_TOKENS_STEP - 1) / SFT_EVAL_TOKENS_STEP * SFT_EVAL_TOKENS_STEP;

	return (int) Max(Min(rounded, (int64) lease->config->max_position), n);
}

/* ---------------------------------------------------------------------------
 * sft_loss(model, messages, train_on)
 * ------------------------------------------------------------------------- */

Datum
sft_loss(PG_FUNCTION_ARGS)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *messages = PG_GETARG_JSONB_P(1);
	SftTrainOn	train_on = SftTrainOnFromName(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_loss",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	SftModelLease *lease;
	const SftTokenizerEntry *entry;
	SftConversation *conv;
	SftEncoded	enc;
	SftError	err = {0};
	SftStatus	st;
	int32	   *ids;
	int32	   *mask;
	int			T;
	int			seq_len;
	SftBatch	batch;
	double		loss_sum = 0;
	int64_t		n_targets = 0;

	lease = SftModelLeaseAcquire(model, cxt);
	entry = SftTokenizerLookup(lease->tokenizer);
	conv = SftConversationFromJsonb(messages, SFT_CONV_TRAINING);

	sft_encoded_init(&enc);
	st = sft_chat_encode(SftTokenizerCallTemplate(entry, NULL), entry->tok, conv, train_on,
						 0, 0, &enc, &err);
	T = (int) enc.ids.len;
	ids = palloc_extended(sizeof(int32) * Max(T, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	mask = palloc_extended(sizeof(int32) * Max(T, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (st == SFT_OK && ids && mask && T > 0)
	{
		memcpy(ids, enc.ids.data, sizeof(int32) * T);
		memcpy(mask, enc.mask.data, sizeof(int32) * T);
	}
	sft_encoded_free(&enc);
	if (st != SFT_OK)
		SftReportCoreError(&err, "messages");
	if (ids == NULL || mask == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for %d tokens", T)));
	if (T > lease->config->max_position)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the conversation has %d tokens, more than the context of model \"%s\" (%d tokens)",
						T, model, lease->config->max_position)));

	seq_len = T;
	batch.n_seqs = 1;
	batch.seq_lens = &seq_len;
	batch.tokens = ids;
	batch.mask = mask;
	if (sft_trainer_evaluate(SftModelLeaseEvaluator(lease, SftEvalTokens(lease, T)), &batch,
							 &loss_sum, &n_targets, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("model \"%s\"", model));
	if (n_targets == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the conversation has no assistant tokens to score")));

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	PG_RETURN_FLOAT8(loss_sum / (double) n_targets);
}

/* ---------------------------------------------------------------------------
 * sft_eval(model, source, max_length, messages_column, train_on, too_long)
 * ------------------------------------------------------------------------- */

/*
 * Resolve the source as the caller sees it; check that the caller may SELECT
 * the column and that it is jsonb.  Returns the qualified, quoted name.
 */
static char *
SftEvalCheckSource(const char *name, const char *column)
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
				 errmsg("source \"%s\" does not exist", name)));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_VIEW &&
		relkind != RELKIND_MATVIEW && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("source \"%s\" is not a table or view", name)));
	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   get_rel_name(relid));
	attnum = get_attnum(relid, column);
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of source %s does not exist", column, qualified),
				 errhint("Name the conversation column with messages_column => '...'.")));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck(relid, attnum, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(relkind), get_rel_name(relid));
	atttype = get_atttype(relid, attnum);
	if (atttype != JSONBOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of source %s is of type %s, not jsonb", column,
						qualified, format_type_be(atttype)),
				 errhint("Cast it in a view: SELECT %s::jsonb AS %s FROM ...",
						 quote_identifier(column), quote_identifier(column))));
	return qualified;
}

/* Rows packed back to back, up to capacity tokens. */
typedef struct SftEvalBatch
{
	int			capacity;		/* tokens */
	int			n_seqs;
	int			n_tokens;
	int		   *seq_lens;		/* [capacity] (a sequence has at least one token) */
	int32	   *tokens;			/* [capacity] */
	int32	   *mask;			/* [capacity] */
} SftEvalBatch;

typedef struct SftEvalTotals
{
	int64		rows_read;
	int64		rows_scored;
	int64		rows_null;
	int64		rows_too_long;
	int64		rows_truncated;
	int64		rows_no_target;
	double		loss_sum;
	int64		targets;
} SftEvalTotals;

static void
SftEvalFlush(SftModelLease *lease, SftTrainer *evaluator, SftEvalBatch *b, SftEvalTotals *totals)
{
	SftBatch	batch;
	double		loss_sum = 0;
	int64_t		n_targets = 0;
	SftError	err = {0};

	if (b->n_seqs == 0)
		return;
	CHECK_FOR_INTERRUPTS();
	batch.n_seqs = b->n_seqs;
	batch.seq_lens = b->seq_lens;
	batch.tokens = b->tokens;
	batch.mask = b->mask;
	if (sft_trainer_evaluate(evaluator, &batch, &loss_sum, &n_targets, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("model \"%s\"", lease->name));
	totals->loss_sum += loss_sum;
	totals->targets += n_targets;
	b->n_seqs = 0;
	b->n_tokens = 0;
}

/*
 * Encode one row into the batch (flushing it first when the row does not
 * fit), or count why it is skipped.  enc is core memory owned by the caller.
 */
static void
SftEvalRow(Jsonb *messages, const SftTokenizerEntry *entry, const SftChatTemplate *tpl,
		   SftTrainOn train_on, bool truncate, const char *source, SftEncoded *enc,
		   SftModelLease *lease, SftTrainer *evaluator, SftEvalBatch *b, SftEvalTotals *totals)
{
	SftConversation *conv;
	char	   *problem = NULL;
	SftError	err = {0};
	int			T;
	int64		targets = 0;

	conv = SftConversationTryFromJsonb(messages, SFT_CONV_TRAINING, &problem);
	if (conv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("row %lld of %s is not a training conversation: %s",
						(long long) totals->rows_read, source, problem),
				 errhint("Filter the rows in a view, e.g. WHERE sft_is_conversation(messages).")));
	if (sft_chat_encode(tpl, entry->tok, conv, train_on, 0, truncate ? b->capacity : 0,
						enc, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("row %lld of %s", (long long) totals->rows_read, source));
	T = (int) enc->ids.len;
	if (T > b->capacity)
	{
		totals->rows_too_long++;
		return;
	}
	if (enc->truncated)
		totals->rows_truncated++;
	for (int t = 1; t < T; t++)
		targets += enc->mask.data[t] != 0;
	if (targets == 0)
	{
		totals->rows_no_target++;
		return;
	}
	if (b->n_tokens + T > b->capacity)
		SftEvalFlush(lease, evaluator, b, totals);
	memcpy(b->tokens + b->n_tokens, enc->ids.data, sizeof(int32) * T);
	memcpy(b->mask + b->n_tokens, enc->mask.data, sizeof(int32) * T);
	b->seq_lens[b->n_seqs++] = T;
	b->n_tokens += T;
	totals->rows_scored++;
}

static void
SftEvalRead(const char *query, const char *source, SftModelLease *lease,
			const SftTokenizerEntry *entry, SftTrainOn train_on, bool truncate,
			SftTrainer *evaluator, SftEvalBatch *b, SftEvalTotals *totals)
{
	const SftChatTemplate *tpl = SftTokenizerCallTemplate(entry, NULL);
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_eval row",
												  ALLOCSET_DEFAULT_SIZES);
	SftEncoded	enc;
	Portal		portal;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* read-only: the source is only read, under the caller's privileges */
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	sft_encoded_init(&enc);
	PG_TRY();
	{
		for (;;)
		{
			SPI_cursor_fetch(portal, true, SFT_EVAL_FETCH);
			if (SPI_processed == 0)
				break;
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
				MemoryContext old;

				totals->rows_read++;
				if (isnull)
				{
					totals->rows_null++;
					continue;
				}
				old = MemoryContextSwitchTo(row_cxt);
				SftEvalRow(DatumGetJsonbP(d), entry, tpl, train_on, truncate, source, &enc,
						   lease, evaluator, b, totals);
				MemoryContextSwitchTo(old);
				MemoryContextReset(row_cxt);
			}
			SPI_freetuptable(SPI_tuptable);
			CHECK_FOR_INTERRUPTS();
		}
		SftEvalFlush(lease, evaluator, b, totals);
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

Datum
sft_eval(PG_FUNCTION_ARGS)
{
	char	   *model = SftTextArgNotNull(fcinfo, 0, "model");
	char	   *source = SftTextArgNotNull(fcinfo, 1, "source");
	char	   *column = SftTextArgNotNull(fcinfo, 3, "messages_column");
	SftTrainOn	train_on = SftTrainOnFromName(SftTextArgNotNull(fcinfo, 4, "train_on"));
	char	   *too_long = SftTextArgNotNull(fcinfo, 5, "too_long");
	bool		truncate;
	int			max_length;
	char	   *qualified;
	MemoryContext cxt,
				old;
	SftModelLease *lease;
	const SftTokenizerEntry *entry;
	SftTrainer *evaluator;
	SftEvalBatch b = {0};
	SftEvalTotals totals = {0};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_length must not be NULL")));
	max_length = PG_GETARG_INT32(2);
	if (max_length < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_length must be at least 2, not %d", max_length)));
	if (strcmp(too_long, "drop") == 0)
		truncate = false;
	else if (strcmp(too_long, "truncate") == 0)
		truncate = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("too_long must be 'drop' or 'truncate', not '%s'", too_long)));
	qualified = SftEvalCheckSource(source, column);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_eval", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	lease = SftModelLeaseAcquire(model, cxt);
	if (max_length > lease->config->max_position)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_length %d is beyond the context of model \"%s\" (%d tokens)",
						max_length, model, lease->config->max_position)));
	entry = SftTokenizerLookup(lease->tokenizer);
	evaluator = SftModelLeaseEvaluator(lease, max_length);
	b.capacity = max_length;
	b.seq_lens = palloc(sizeof(int) * max_length);
	b.tokens = palloc(sizeof(int32) * max_length);
	b.mask = palloc(sizeof(int32) * max_length);

	SftEvalRead(psprintf("SELECT %s FROM %s", quote_identifier(column), qualified),
				qualified, lease, entry, train_on, truncate, evaluator, &b, &totals);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);

	if (totals.rows_null + totals.rows_too_long + totals.rows_no_target > 0)
		ereport(NOTICE,
				(errmsg("sft_eval skipped %lld of %lld rows of %s: %lld NULL, %lld longer than max_length %d, %lld without assistant tokens",
						(long long) (totals.rows_null + totals.rows_too_long + totals.rows_no_target),
						(long long) totals.rows_read, qualified, (long long) totals.rows_null,
						(long long) totals.rows_too_long, max_length,
						(long long) totals.rows_no_target)));

	values[0] = Int64GetDatum(totals.rows_scored);
	values[1] = Int64GetDatum(totals.targets);
	if (totals.targets > 0)
	{
		double		loss = totals.loss_sum / (double) totals.targets;

		values[2] = Float8GetDatum(loss);
		values[3] = Float8GetDatum(exp(loss));
	}
	else
		nulls[2] = nulls[3] = true;
	InitMaterializedSRF(fcinfo, 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
