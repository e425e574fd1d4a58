/*
 * sfterror.c: converting core errors (SftError) into ereport().
 */
#include "postgres.h"

#include "sft.h"

int
SftErrcodeForStatus(SftStatus status)
{
	switch (status)
	{
		case SFT_OK:
		case SFT_ERR_INTERNAL:
			return ERRCODE_INTERNAL_ERROR;
		case SFT_ERR_INVALID:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case SFT_ERR_FORMAT:
			return ERRCODE_DATA_CORRUPTED;
		case SFT_ERR_UNSUPPORTED:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case SFT_ERR_LIMIT:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case SFT_ERR_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case SFT_ERR_IO:
			return ERRCODE_IO_ERROR;
	}
	return ERRCODE_INTERNAL_ERROR;
}

void
SftReportCoreError(const SftError *err, const char *context)
{
	const char *message = err->message[0] ? err->message : sft_status_name(err->status);

	if (context)
		ereport(ERROR,
				(errcode(SftErrcodeForStatus(err->status)),
				 errmsg("%s: %s", context, message)));
	ereport(ERROR,
			(errcode(SftErrcodeForStatus(err->status)),
			 errmsg("%s", message)));
}
