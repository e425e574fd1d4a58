/*
 * sft.h: declarations shared by the PostgreSQL glue files (src/ but not src/core/).
 * The glue is thin: it checks arguments, converts between SQL values and core
 * structures, and turns core errors into ereport().
 */
#ifndef SFT_H
#define SFT_H

#include "postgres.h"

#include "common.h"

/*
 * Raise a core error as an ERROR with a fitting SQLSTATE.  context, when not
 * NULL, is prefixed to the message ("tokenizer \"x\": ...").
 */
void		SftReportCoreError(const SftError *err, const char *context) pg_attribute_noreturn();
int			SftErrcodeForStatus(SftStatus status);

/* Argument helpers shared by the SQL functions. */
#include "fmgr.h"
#include "utils/jsonb.h"
#include "core/chat_template.h"

/* ERROR "<argname> must not be NULL" unless the argument is set. */
void		SftArgNotNull(FunctionCallInfo fcinfo, int argno, const char *argname);
/* The text argument as a C string; NULL is an ERROR naming it. */
char	   *SftTextArgNotNull(FunctionCallInfo fcinfo, int argno, const char *argname);
/* 'all_assistant' / 'last_assistant'; anything else is an ERROR with a hint. */
SftTrainOn	SftTrainOnFromName(const char *name);
/* "a string", "a number", "an object" ... for error messages. */
const char *SftDescribeJsonbValue(const JsonbValue *v);

/*
 * ERROR unless the current user has the privileges of role (the owner of a
 * model, run or tokenizer) or is a superuser: "permission denied to <action>
 * <kind> "<name>"".
 */
void		SftCheckOwnership(Oid role, const char *kind, const char *name,
							  const char *action);

/* sft.max_memory in MB: what a model or a training run may plan to use (train.c). */
extern int	sft_max_memory_mb;

#endif							/* SFT_H */
