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
#include "training_rows.h"

PG_FUNCTION_INFO_V1(sft_loss);
PG_FUNCTION_INFO_V1(sft_eval);

/* Evaluator sizes are rounded up to this, so that one serves many calls. */
#define SFT_EVAL_TOKENS_STEP 256

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
 * sft_loss(model, messages, train_on, template_kwargs)
 * ------------------------------------------------------------------------- */

/* The template_kwargs argument (NULL: none) with sft.template_now, checked before any work. */
static void
SftEvalTemplateCall(FunctionCallInfo fcinfo, int argno, SftTemplateCall *call)
{
	SftTemplateCallMake(call, PG_ARGISNULL(argno) ? NULL : PG_GETARG_JSONB_P(argno), NULL);
}

Datum
sft_loss(PG_FUNCTION_ARGS)
{
	char	   *model;
	Jsonb	   *messages;
	SftTrainOn	train_on;
	MemoryContext cxt;
	MemoryContext old;
	SftTemplateCall call;
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

	/* NULL model, conversation or train_on: NULL, as a strict function would */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	messages = PG_GETARG_JSONB_P(1);
	train_on = SftTrainOnFromName(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_loss", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	SftEvalTemplateCall(fcinfo, 3, &call);
	lease = SftModelLeaseAcquire(model, cxt);
	entry = SftTokenizerLookup(lease->tokenizer);
	conv = SftConversationFromJsonb(messages, SFT_CONV_TRAINING);

	sft_encoded_init(&enc);
	st = sft_chat_encode(SftTokenizerApplyCall(entry, &call), entry->tok, conv, train_on,
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
 * sft_eval(model, source, max_length, messages_column, train_on, too_long,
 *          template_kwargs)
 * ------------------------------------------------------------------------- */

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
	SftTrainingRowCounts rows;
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

/* What the row reader feeds: the batch and the model scoring it. */
typedef struct SftEvalState
{
	SftModelLease *lease;
	SftTrainer *evaluator;
	SftEvalBatch *batch;
	SftEvalTotals *totals;
} SftEvalState;

/* One encoded row into the batch, flushing it first when the row does not fit. */
static void
SftEvalAddRow(void *arg, const int32 *ids, const int32 *mask, int64 len, int64 targets)
{
	SftEvalState *st = arg;
	SftEvalBatch *b = st->batch;

	if (b->n_tokens + len > b->capacity)
		SftEvalFlush(st->lease, st->evaluator, b, st->totals);
	memcpy(b->tokens + b->n_tokens, ids, sizeof(int32) * len);
	memcpy(b->mask + b->n_tokens, mask, sizeof(int32) * len);
	b->seq_lens[b->n_seqs++] = (int) len;
	b->n_tokens += (int) len;
}

Datum
sft_eval(PG_FUNCTION_ARGS)
{
	char	   *model = SftTextArgNotNull(fcinfo, 0, "model");
	char	   *source = SftTextArgNotNull(fcinfo, 1, "source");
	char	   *column = SftTextArgNotNull(fcinfo, 3, "messages_column");
	SftTrainOn	train_on = SftTrainOnFromName(SftTextArgNotNull(fcinfo, 4, "train_on"));
	char	   *too_long = SftTextArgNotNull(fcinfo, 5, "too_long");
	SftTemplateCall call;
	bool		truncate;
	int			max_length;
	char	   *qualified;
	MemoryContext cxt,
				old;
	SftModelLease *lease;
	SftTrainer *evaluator;
	SftTrainingRowRules rules;
	SftEvalState st;
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
	qualified = SftTrainingSourceCheck(source, column, "source");

	cxt = AllocSetContextCreate(CurrentMemoryContext, "sft_eval", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	SftEvalTemplateCall(fcinfo, 6, &call);
	lease = SftModelLeaseAcquire(model, cxt);
	if (max_length > lease->config->max_position)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_length %d is beyond the context of model \"%s\" (%d tokens)",
						max_length, model, lease->config->max_position)));
	evaluator = SftModelLeaseEvaluator(lease, max_length);
	b.capacity = max_length;
	b.seq_lens = palloc(sizeof(int) * max_length);
	b.tokens = palloc(sizeof(int32) * max_length);
	b.mask = palloc(sizeof(int32) * max_length);

	rules.entry = SftTokenizerLookup(lease->tokenizer);
	rules.tpl = SftTokenizerApplyCall(rules.entry, &call);
	rules.train_on = train_on;
	rules.max_length = max_length;
	rules.truncate = truncate;
	st.lease = lease;
	st.evaluator = evaluator;
	st.batch = &b;
	st.totals = &totals;
	SftTrainingRowsRead(qualified, column, &rules, SftEvalAddRow, NULL, &st, &totals.rows);
	SftEvalFlush(lease, evaluator, &b, &totals);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);

	if (totals.rows.null + totals.rows.too_long + totals.rows.no_assistant > 0)
		ereport(NOTICE,
				(errmsg("sft_eval skipped %lld of %lld rows of %s: %lld NULL, %lld longer than max_length %d, %lld without assistant tokens",
						(long long) (totals.rows.null + totals.rows.too_long + totals.rows.no_assistant),
						(long long) totals.rows.read, qualified, (long long) totals.rows.null,
						(long long) totals.rows.too_long, max_length,
						(long long) totals.rows.no_assistant)));

	values[0] = Int64GetDatum(totals.rows.used);
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
