/*
 * sfterror.c: converting core errors (SftError) into ereport(), and the
 * argument and ownership checks every SQL function shares.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

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

void
SftArgNotNull(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
}

char *
SftTextArgNotNull(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	SftArgNotNull(fcinfo, argno, argname);
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

SftTrainOn
SftTrainOnFromName(const char *name)
{
	SftTrainOn	train_on;
	SftError	err = {0};

	if (sft_train_on_from_name(name, &train_on, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err.message),
				 errhint("Valid values are \"all_assistant\" and \"last_assistant\".")));
	return train_on;
}

const char *
SftDescribeJsonbValue(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			if (JsonContainerIsScalar(v->val.binary.data))
				return "a scalar";
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		case jbvArray:
			return "an array";
		case jbvObject:
			return "an object";
		default:
			return "a value";
	}
}

void
SftCheckOwnership(Oid role, const char *kind, const char *name, const char *action)
{
	if (superuser() || has_privs_of_role(GetUserId(), role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s %s \"%s\"", action, kind, name),
			 errdetail("Only the owner of the %s (%s) or a superuser may %s it.",
					   kind, GetUserNameFromId(role, true) ? GetUserNameFromId(role, true) : "a dropped role",
					   action)));
}
