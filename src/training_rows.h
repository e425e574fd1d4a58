/*
 * training_rows.h: the one path from a table or view of conversations to
 * encoded, masked training rows.  Training (the worker, for its source and
 * validation relations) and sft_eval both go through it, so a row is checked,
 * rendered, encoded, masked, dropped or counted the same way wherever it is
 * scored.
 */
#ifndef SFT_TRAINING_ROWS_H
#define SFT_TRAINING_ROWS_H

#include "postgres.h"

#include "core/chat_template.h"
#include "tokenizer.h"

/*
 * Resolve a relation name as the calling role sees it and check, up front,
 * that it is a table or view, that the role may SELECT the conversation
 * column and that the column is jsonb.  what names the relation in messages
 * ("source", "validation relation").  Returns the schema-qualified, quoted
 * name to read.
 */
char	   *SftTrainingSourceCheck(const char *name, const char *column, const char *what);

/* What became of the rows read, for the caller's report. */
typedef struct SftTrainingRowCounts
{
	int64		read;			/* rows the cursor returned */
	int64		null;			/* NULL conversation: skipped */
	int64		too_long;		/* dropped: over max_length (too_long = drop) */
	int64		truncated;		/* kept, cut to max_length (too_long = truncate) */
	int64		no_assistant;	/* skipped: no target token left */
	int64		used;			/* handed to the consumer */
} SftTrainingRowCounts;

/* How rows become token sequences. */
typedef struct SftTrainingRowRules
{
	const SftTokenizerEntry *entry;
	const SftChatTemplate *tpl;
	SftTrainOn	train_on;
	int			max_length;
	bool		truncate;		/* too_long = 'truncate' (else 'drop') */
} SftTrainingRowRules;

/*
 * Consumer of one encoded row: ids/mask of len tokens with targets > 0 target
 * tokens (a sequence's first token never counts).  The arrays are reused for
 * the next row: copy what is kept.
 */
typedef void (*SftTrainingRowFn) (void *arg, const int32 *ids, const int32 *mask,
								  int64 len, int64 targets);

/*
 * Called every 64 rows and after each fetch with the counts so far: the place
 * to check interrupts and publish progress.  Returning false stops reading
 * (a cancelled run).  May be NULL.
 */
typedef bool (*SftTrainingRowPoll) (void *arg, const SftTrainingRowCounts *counts);

/*
 * Read column of relation (as returned by SftTrainingSourceCheck) through SPI
 * under the current role's privileges and row-level security, encode each row
 * by rules and hand it to consume.  A value that is not a training
 * conversation is an ERROR naming the row.  counts is added to.
 */
void		SftTrainingRowsRead(const char *relation, const char *column,
								const SftTrainingRowRules *rules,
								SftTrainingRowFn consume, SftTrainingRowPoll poll, void *arg,
								SftTrainingRowCounts *counts);

#endif							/* SFT_TRAINING_ROWS_H */
