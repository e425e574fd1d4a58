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

#endif							/* SFT_H */
