/*
 * conversation.c: the SQL conversation functions (sft_messages,
 * sft_is_conversation, sft_merge_system, sft_turns, sft_truncate_turns,
 * sft_from_sharegpt, sft_from_pair) and the jsonb <-> SftConversation
 * conversion every other glue file uses.
 *
 * Parsing reads the jsonb container directly (no text round trip): message
 * content strings point into the datum, only joined content parts are copied.
 * The rules of what a valid conversation is live in the core
 * (src/core/conversation.c); this file only converts and reports.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "conversation.h"
#include "sft.h"

PG_FUNCTION_INFO_V1(sft_messages);
PG_FUNCTION_INFO_V1(sft_is_conversation);
PG_FUNCTION_INFO_V1(sft_merge_system);
PG_FUNCTION_INFO_V1(sft_turns);
PG_FUNCTION_INFO_V1(sft_truncate_turns);
PG_FUNCTION_INFO_V1(sft_from_sharegpt);
PG_FUNCTION_INFO_V1(sft_from_pair);

/* ---------------------------------------------------------------------------
 * jsonb access helpers
 * ------------------------------------------------------------------------- */

static bool
JsonbIsObject(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
JsonbIsArray(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data) &&
		!JsonContainerIsScalar(v->val.binary.data);
}

/* Value of key in an object container, or NULL. */
static JsonbValue *
JsonbObjectGet(JsonbContainer *obj, const char *key, JsonbValue *result)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), result);
}

/* Root container of a jsonb that must be an array; NULL otherwise. */
static JsonbContainer *
JsonbRootArray(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb) || !JB_ROOT_IS_ARRAY(jb))
		return NULL;
	return &jb->root;
}

void
SftCheckUtf8Database(void)
{
	if (GetDatabaseEncoding() != PG_UTF8)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sft requires a UTF8 database"),
				 errdetail("The current database encoding is %s.",
						   GetDatabaseEncodingName())));
}

/* ---------------------------------------------------------------------------
 * jsonb -> SftConversation
 * ------------------------------------------------------------------------- */

/*
 * Content is a string, or an array of text parts ({"type": "text", "text": ...}
 * with "value" accepted in place of "text", or bare strings); parts are
 * concatenated without a separator, as chat templates render them.
 */
static bool
ParseContent(JsonbValue *content, const char *key, int index, SftMessage *msg,
			 StringInfo problem)
{
	JsonbContainer *parts;
	int			n_parts;
	StringInfoData joined;

	if (content->type == jbvString)
	{
		msg->content = content->val.string.val;
		msg->len = content->val.string.len;
		return true;
	}
	if (!JsonbIsArray(content))
	{
		appendStringInfo(problem, "message %d: \"%s\" must be a string or an array of text parts, not %s",
						 index, key, SftDescribeJsonbValue(content));
		return false;
	}
	parts = content->val.binary.data;
	n_parts = JsonContainerSize(parts);
	if (n_parts == 0)
	{
		appendStringInfo(problem, "message %d: \"%s\" is an empty array of parts", index, key);
		return false;
	}
	initStringInfo(&joined);
	for (int p = 0; p < n_parts; p++)
	{
		JsonbValue *part = getIthJsonbValueFromContainer(parts, p);
		JsonbValue	typev;
		JsonbValue	textv;
		JsonbValue *text;

		if (part->type == jbvString)
		{
			appendBinaryStringInfo(&joined, part->val.string.val, part->val.string.len);
			continue;
		}
		if (!JsonbIsObject(part))
		{
			appendStringInfo(problem, "message %d: content part %d must be an object, not %s",
							 index, p, SftDescribeJsonbValue(part));
			return false;
		}
		if (JsonbObjectGet(part->val.binary.data, "type", &typev) != NULL &&
			!(typev.type == jbvString && typev.val.string.len == 4 &&
			  memcmp(typev.val.string.val, "text", 4) == 0))
		{
			if (typev.type == jbvString)
				appendStringInfo(problem, "message %d: content part %d has type \"%.*s\"; only \"text\" parts are supported",
								 index, p, Min(typev.val.string.len, 64), typev.val.string.val);
			else
				appendStringInfo(problem, "message %d: content part %d: \"type\" must be a string, not %s",
								 index, p, SftDescribeJsonbValue(&typev));
			return false;
		}
		text = JsonbObjectGet(part->val.binary.data, "text", &textv);
		if (text == NULL)
			text = JsonbObjectGet(part->val.binary.data, "value", &textv);
		if (text == NULL)
		{
			appendStringInfo(problem, "message %d: content part %d has no \"text\"", index, p);
			return false;
		}
		if (text->type != jbvString)
		{
			appendStringInfo(problem, "message %d: content part %d: \"text\" must be a string, not %s",
							 index, p, SftDescribeJsonbValue(text));
			return false;
		}
		appendBinaryStringInfo(&joined, text->val.string.val, text->val.string.len);
	}
	msg->content = joined.data;
	msg->len = joined.len;
	return true;
}

/*
 * Parse the array of messages.  key_role/key_content name the fields
 * ("role"/"content", or "from"/"value" for ShareGPT with role_of mapping
 * the sender names).
 */
typedef int (*RoleMapper) (const char *name, int len);

static int
MapChatRole(const char *name, int len)
{
	return sft_role_parse(name, len);
}

/* FastChat's ShareGPT senders; the assistant goes by several names. */
static int
MapShareGptRole(const char *name, int len)
{
	static const struct
	{
		const char *name;
		SftRole		role;
	}			senders[] = {
		{"human", SFT_ROLE_USER}, {"user", SFT_ROLE_USER},
		{"gpt", SFT_ROLE_ASSISTANT}, {"assistant", SFT_ROLE_ASSISTANT},
		{"chatgpt", SFT_ROLE_ASSISTANT}, {"bing", SFT_ROLE_ASSISTANT},
		{"bard", SFT_ROLE_ASSISTANT}, {"model", SFT_ROLE_ASSISTANT},
		{"system", SFT_ROLE_SYSTEM},
	};

	for (int i = 0; i < lengthof(senders); i++)
		if (strlen(senders[i].name) == len && pg_strncasecmp(name, senders[i].name, len) == 0)
			return senders[i].role;
	return -1;
}

static SftConversation *
ParseMessages(Jsonb *jb, const char *key_role, const char *key_content,
			  RoleMapper role_of, const char *valid_roles, StringInfo problem)
{
	JsonbContainer *root = JsonbRootArray(jb);
	SftConversation *conv;
	int			n;

	if (root == NULL)
	{
		appendStringInfo(problem, "a conversation must be a JSON array of messages, not %s",
						 JB_ROOT_IS_SCALAR(jb) ? "a scalar" : "an object");
		return NULL;
	}
	n = JsonContainerSize(root);
	conv = palloc(sizeof(SftConversation));
	conv->n = n;
	conv->messages = palloc0(sizeof(SftMessage) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(root, i);
		JsonbValue	rolev;
		JsonbValue	contentv;
		int			role;

		if (!JsonbIsObject(elem))
		{
			appendStringInfo(problem, "message %d must be an object, not %s", i, SftDescribeJsonbValue(elem));
			return NULL;
		}
		if (JsonbObjectGet(elem->val.binary.data, key_role, &rolev) == NULL)
		{
			appendStringInfo(problem, "message %d has no \"%s\"", i, key_role);
			return NULL;
		}
		if (rolev.type != jbvString)
		{
			appendStringInfo(problem, "message %d: \"%s\" must be a string, not %s",
							 i, key_role, SftDescribeJsonbValue(&rolev));
			return NULL;
		}
		role = role_of(rolev.val.string.val, rolev.val.string.len);
		if (role < 0)
		{
			appendStringInfo(problem, "message %d: unknown %s \"%.*s\" (expected %s)",
							 i, strcmp(key_role, "from") == 0 ? "sender" : key_role, Min(rolev.val.string.len, 64), rolev.val.string.val,
							 valid_roles);
			return NULL;
		}
		conv->messages[i].role = (SftRole) role;
		if (JsonbObjectGet(elem->val.binary.data, key_content, &contentv) == NULL)
		{
			appendStringInfo(problem, "message %d has no \"%s\"", i, key_content);
			return NULL;
		}
		if (!ParseContent(&contentv, key_content, i, &conv->messages[i], problem))
			return NULL;
	}
	return conv;
}

static SftConversation *
CheckedOrNull(SftConversation *conv, SftConversationUse use, StringInfo problem)
{
	SftError	err = {0};

	if (conv == NULL)
		return NULL;
	if (sft_conversation_check(conv, use, &err) != SFT_OK)
	{
		appendStringInfoString(problem, err.message);
		return NULL;
	}
	return conv;
}

SftConversation *
SftConversationTryFromJsonb(Jsonb *jb, SftConversationUse use, char **problem)
{
	StringInfoData why;
	SftConversation *conv;

	initStringInfo(&why);
	conv = CheckedOrNull(ParseMessages(jb, "role", "content", MapChatRole,
									   "system, user or assistant", &why),
						 use, &why);
	*problem = conv ? NULL : why.data;
	return conv;
}

static void
ReportInvalidConversation(const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid conversation: %s", problem)));
}

SftConversation *
SftConversationFromJsonb(Jsonb *jb, SftConversationUse use)
{
	char	   *problem;
	SftConversation *conv = SftConversationTryFromJsonb(jb, use, &problem);

	if (conv == NULL)
		ReportInvalidConversation(problem);
	return conv;
}

/* ---------------------------------------------------------------------------
 * SftConversation -> jsonb
 * ------------------------------------------------------------------------- */

static void
PushString(JsonbParseState **state, JsonbIteratorToken token, const char *s, size_t len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = (int) len;
	pushJsonbValue(state, token, &v);
}

static Jsonb *
ConversationPrefixToJsonb(const SftConversation *conv, int n)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < n; i++)
	{
		const SftMessage *m = &conv->messages[i];
		const char *role = sft_role_name(m->role);

		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		PushString(&state, WJB_KEY, "role", 4);
		PushString(&state, WJB_VALUE, role, strlen(role));
		PushString(&state, WJB_KEY, "content", 7);
		PushString(&state, WJB_VALUE, m->content, m->len);
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	result = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(result);
}

Jsonb *
SftConversationToJsonb(const SftConversation *conv)
{
	return ConversationPrefixToJsonb(conv, conv->n);
}

/* ---------------------------------------------------------------------------
 * SQL functions
 * ------------------------------------------------------------------------- */

Datum
sft_messages(PG_FUNCTION_ARGS)
{
	SftCheckUtf8Database();
	PG_RETURN_JSONB_P(SftConversationToJsonb(
						  SftConversationFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY)));
}

Datum
sft_is_conversation(PG_FUNCTION_ARGS)
{
	char	   *problem;

	PG_RETURN_BOOL(SftConversationTryFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY,
											   &problem) != NULL);
}

Datum
sft_merge_system(PG_FUNCTION_ARGS)
{
	SftConversation *conv;
	text	   *separator = PG_GETARG_TEXT_PP(1);
	SftConversation merged;
	char	   *merged_text;
	SftError	err = {0};
	Jsonb	   *volatile result = NULL;

	SftCheckUtf8Database();
	conv = SftConversationFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY);
	if (sft_conversation_merge_system(conv, VARDATA_ANY(separator),
									  VARSIZE_ANY_EXHDR(separator),
									  &merged, &merged_text, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(err.status == SFT_ERR_NOMEM ? ERRCODE_OUT_OF_MEMORY
						 : ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid conversation: %s", err.message)));
	PG_TRY();
	{
		result = SftConversationToJsonb(&merged);
	}
	PG_FINALLY();
	{
		sft_free(merged.messages);
		sft_free(merged_text);
	}
	PG_END_TRY();
	PG_RETURN_JSONB_P(result);
}

Datum
sft_turns(PG_FUNCTION_ARGS)
{
	SftConversation *conv = SftConversationFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY);

	PG_RETURN_INT32(sft_conversation_turns(conv));
}

Datum
sft_truncate_turns(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	int32		max_turns = PG_GETARG_INT32(1);
	SftConversation *conv;

	if (max_turns < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_turns must be at least 1, not %d", max_turns)));
	SftCheckUtf8Database();
	conv = SftConversationFromJsonb(jb, SFT_CONV_ANY);
	PG_RETURN_JSONB_P(ConversationPrefixToJsonb(conv,
												sft_conversation_truncate_turns(conv, max_turns)));
}

Datum
sft_from_sharegpt(PG_FUNCTION_ARGS)
{
	StringInfoData why;
	SftConversation *conv;

	SftCheckUtf8Database();
	initStringInfo(&why);
	conv = CheckedOrNull(ParseMessages(PG_GETARG_JSONB_P(0), "from", "value",
									   MapShareGptRole,
									   "human, gpt or system; also user, assistant, chatgpt, bing, bard, model",
									   &why),
						 SFT_CONV_ANY, &why);
	if (conv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid ShareGPT conversation: %s", why.data)));
	PG_RETURN_JSONB_P(SftConversationToJsonb(conv));
}

Datum
sft_from_pair(PG_FUNCTION_ARGS)
{
	SftMessage	messages[3];
	SftConversation conv = {messages, 0};
	const char *names[] = {"prompt", "response"};

	SftCheckUtf8Database();
	for (int i = 0; i < 2; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", names[i])));
	if (!PG_ARGISNULL(2))
	{
		text	   *system = PG_GETARG_TEXT_PP(2);

		messages[conv.n++] = (SftMessage) {SFT_ROLE_SYSTEM, VARDATA_ANY(system), VARSIZE_ANY_EXHDR(system)};
	}
	for (int i = 0; i < 2; i++)
	{
		text	   *t = PG_GETARG_TEXT_PP(i);

		messages[conv.n++] = (SftMessage) {i == 0 ? SFT_ROLE_USER : SFT_ROLE_ASSISTANT,
			VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)};
	}
	PG_RETURN_JSONB_P(SftConversationToJsonb(&conv));
}
