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
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

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
 * "weight" of an assistant message (OpenAI's fine-tuning format): 1, the
 * default, trains on it as train_on says; 0 never does (a reply kept as
 * context only, such as the prompt part of a prompt-completion row).
 */
static bool
ParseWeight(JsonbContainer *message, int index, SftMessage *msg, StringInfo problem)
{
	JsonbValue	weightv;
	char	   *digits;
	double		weight;

	/* like any other extra key, a weight elsewhere is dropped */
	if (msg->role != SFT_ROLE_ASSISTANT ||
		JsonbObjectGet(message, "weight", &weightv) == NULL || weightv.type == jbvNull)
		return true;
	if (weightv.type != jbvNumeric)
	{
		appendStringInfo(problem, "message %d: \"weight\" must be 0 or 1, not %s",
						 index, SftDescribeJsonbValue(&weightv));
		return false;
	}
	digits = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(weightv.val.numeric)));
	weight = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(weightv.val.numeric)));
	if (weight != 0 && weight != 1)
	{
		appendStringInfo(problem, "message %d: \"weight\" must be 0 or 1, not %s", index, digits);
		return false;
	}
	msg->no_loss = weight == 0;
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
		if (!ParseWeight(elem->val.binary.data, i, &conv->messages[i], problem))
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
		if (m->no_loss)
		{
			JsonbValue	zero;

			zero.type = jbvNumeric;
			zero.val.numeric = int64_to_numeric(0);
			PushString(&state, WJB_KEY, "weight", 6);
			pushJsonbValue(&state, WJB_VALUE, &zero);
		}
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

/* ---------------------------------------------------------------------------
 * Turn lists (UltraChat's "data"): alternating messages from bare strings
 * ------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(sft_from_turns);
PG_FUNCTION_INFO_V1(sft_from_turns_array);

/*
 * system (optional) + turns alternating from first_role.  A conversation
 * starts with the user, so a leading assistant turn (first_role 'assistant':
 * a greeting before the first question) is dropped, as FastChat's loaders
 * drop a first message that is not from the human.
 */
static Jsonb *
TurnsToConversation(FunctionCallInfo fcinfo, const char **turns, const size_t *lens, int n)
{
	char	   *first_role = SftTextArgNotNull(fcinfo, 1, "first_role");
	SftRole		role;
	SftConversation conv;
	int			skip;
	SftError	err = {0};

	if (strcmp(first_role, "user") == 0)
		role = SFT_ROLE_USER;
	else if (strcmp(first_role, "assistant") == 0)
		role = SFT_ROLE_ASSISTANT;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid first_role \"%s\"", first_role),
				 errhint("Valid values are \"user\" and \"assistant\".")));
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid turn list: it is empty")));
	skip = role == SFT_ROLE_ASSISTANT ? 1 : 0;
	conv.messages = palloc0(sizeof(SftMessage) * (n + 1));
	conv.n = 0;
	if (!PG_ARGISNULL(2))
	{
		text	   *system = PG_GETARG_TEXT_PP(2);

		conv.messages[conv.n++] = (SftMessage) {SFT_ROLE_SYSTEM, VARDATA_ANY(system), VARSIZE_ANY_EXHDR(system)};
	}
	for (int i = skip; i < n; i++)
		conv.messages[conv.n++] = (SftMessage) {(i - skip) % 2 == 0 ? SFT_ROLE_USER : SFT_ROLE_ASSISTANT,
			turns[i], lens[i]};
	if (n == skip)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid turn list: its only turn is the assistant's, and a conversation starts with the user")));
	if (sft_conversation_check(&conv, SFT_CONV_ANY, &err) != SFT_OK)
		ReportInvalidConversation(err.message);
	return SftConversationToJsonb(&conv);
}

Datum
sft_from_turns(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb;
	JsonbContainer *root;
	const char **turns;
	size_t	   *lens;
	int			n;

	SftCheckUtf8Database();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	jb = PG_GETARG_JSONB_P(0);
	root = JsonbRootArray(jb);
	if (root == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid turn list: it must be a JSON array of strings, not %s",
						JB_ROOT_IS_SCALAR(jb) ? "a scalar" : "an object")));
	n = JsonContainerSize(root);
	turns = palloc(sizeof(char *) * Max(n, 1));
	lens = palloc(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(root, i);

		if (v->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid turn list: turn %d must be a string, not %s", i,
							SftDescribeJsonbValue(v))));
		turns[i] = v->val.string.val;
		lens[i] = v->val.string.len;
	}
	PG_RETURN_JSONB_P(TurnsToConversation(fcinfo, turns, lens, n));
}

Datum
sft_from_turns_array(PG_FUNCTION_ARGS)
{
	ArrayType  *array;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	const char **turns;
	size_t	   *lens;

	SftCheckUtf8Database();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	array = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("invalid turn list: a one-dimensional text array is expected, not %d dimensions",
						ARR_NDIM(array))));
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	turns = palloc(sizeof(char *) * Max(n, 1));
	lens = palloc(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("invalid turn list: turn %d is NULL", i)));
		t = DatumGetTextPP(elems[i]);
		turns[i] = VARDATA_ANY(t);
		lens[i] = VARSIZE_ANY_EXHDR(t);
	}
	PG_RETURN_JSONB_P(TurnsToConversation(fcinfo, turns, lens, n));
}

/* ---------------------------------------------------------------------------
 * Placeholders and identity system prompts
 * ------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(sft_fill);
PG_FUNCTION_INFO_V1(sft_placeholders);
PG_FUNCTION_INFO_V1(sft_add_system);

Datum
sft_fill(PG_FUNCTION_ARGS)
{
	SftConversation *conv;
	Jsonb	   *values = PG_GETARG_JSONB_P(1);
	SftReplacement *repl;
	int			n = 0;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			key_len = 0;

	SftCheckUtf8Database();
	conv = SftConversationFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY);
	if (JB_ROOT_IS_SCALAR(values) || !JB_ROOT_IS_OBJECT(values))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("replacements must be a JSON object of placeholder -> text, not %s",
						JB_ROOT_IS_SCALAR(values) ? "a scalar" : "an array")));
	repl = palloc(sizeof(SftReplacement) * Max(JB_ROOT_COUNT(values), 1));
	it = JsonbIteratorInit(&values->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = v.val.string.val;
			key_len = v.val.string.len;
			if (key_len == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("replacements: a placeholder must not be the empty string")));
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("replacements: the value of \"%.*s\" must be a string, not %s",
								Min(key_len, 64), key, SftDescribeJsonbValue(&v))));
			repl[n++] = (SftReplacement) {key, key_len, v.val.string.val, v.val.string.len};
		}
	}
	for (int i = 0; i < conv->n; i++)
	{
		SftBuf		out;
		SftError	err = {0};
		int			replaced;

		sft_buf_init(&out);
		if (sft_text_fill(conv->messages[i].content, conv->messages[i].len, repl, n,
						  &out, &replaced, &err) != SFT_OK)
		{
			sft_buf_free(&out);
			SftReportCoreError(&err, NULL);
		}
		if (replaced > 0)
		{
			conv->messages[i].content = pnstrdup(out.data, out.len);
			conv->messages[i].len = out.len;
		}
		sft_buf_free(&out);
	}
	PG_RETURN_JSONB_P(SftConversationToJsonb(conv));
}

typedef struct SftSpan
{
	const char *s;
	size_t		len;
} SftSpan;

typedef struct SftSpanList
{
	SftSpan    *spans;
	int			n;
	int			cap;
} SftSpanList;

static SftStatus
SftCollectSpan(void *arg, const char *span, size_t len)
{
	SftSpanList *list = arg;

	if (list->n == list->cap)
	{
		list->cap *= 2;
		list->spans = repalloc(list->spans, sizeof(SftSpan) * list->cap);
	}
	list->spans[list->n++] = (SftSpan) {span, len};
	return SFT_OK;
}

static int
SftCompareSpans(const void *a, const void *b)
{
	const SftSpan *x = a;
	const SftSpan *y = b;
	int			c = memcmp(x->s, y->s, Min(x->len, y->len));

	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* The distinct placeholder spans of every message, sorted (byte order). */
Datum
sft_placeholders(PG_FUNCTION_ARGS)
{
	SftConversation *conv;
	SftSpanList list;
	Datum	   *elems;
	int			n = 0;

	SftCheckUtf8Database();
	conv = SftConversationFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY);
	list.cap = 8;
	list.n = 0;
	list.spans = palloc(sizeof(SftSpan) * list.cap);
	for (int i = 0; i < conv->n; i++)
		sft_placeholder_scan(conv->messages[i].content, conv->messages[i].len, SftCollectSpan, &list);
	qsort(list.spans, list.n, sizeof(SftSpan), SftCompareSpans);
	elems = palloc(sizeof(Datum) * Max(list.n, 1));
	for (int i = 0; i < list.n; i++)
		if (i == 0 || SftCompareSpans(&list.spans[i - 1], &list.spans[i]) != 0)
			elems[n++] = PointerGetDatum(cstring_to_text_with_len(list.spans[i].s, list.spans[i].len));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum
sft_add_system(PG_FUNCTION_ARGS)
{
	SftConversation *conv;
	text	   *system = PG_GETARG_TEXT_PP(1);
	SftConversation with;

	SftCheckUtf8Database();
	conv = SftConversationFromJsonb(PG_GETARG_JSONB_P(0), SFT_CONV_ANY);
	if (conv->messages[0].role == SFT_ROLE_SYSTEM)
		PG_RETURN_JSONB_P(SftConversationToJsonb(conv));
	with.n = conv->n + 1;
	with.messages = palloc(sizeof(SftMessage) * with.n);
	with.messages[0] = (SftMessage) {SFT_ROLE_SYSTEM, VARDATA_ANY(system), VARSIZE_ANY_EXHDR(system)};
	memcpy(with.messages + 1, conv->messages, sizeof(SftMessage) * conv->n);
	PG_RETURN_JSONB_P(SftConversationToJsonb(&with));
}

/* ---------------------------------------------------------------------------
 * Prompt-completion rows (TRL) and Alpaca rows
 * ------------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(sft_from_prompt_completion);
PG_FUNCTION_INFO_V1(sft_from_alpaca);

/*
 * One side of a prompt-completion row: a JSON string (one message of
 * string_role) or an array of messages, parsed by the common parser and not
 * yet checked (only the joined conversation is).
 */
static SftConversation *
ParsePromptOrCompletion(Jsonb *jb, SftRole string_role, const char *side)
{
	StringInfoData why;
	SftConversation *conv;
	JsonbValue	scalar;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, &scalar) || scalar.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid prompt-completion row: %s must be a string or an array of messages, not %s",
							side, SftDescribeJsonbValue(&scalar))));
		conv = palloc(sizeof(SftConversation));
		conv->n = 1;
		conv->messages = palloc0(sizeof(SftMessage));
		conv->messages[0] = (SftMessage) {string_role, scalar.val.string.val, scalar.val.string.len};
		return conv;
	}
	initStringInfo(&why);
	conv = ParseMessages(jb, "role", "content", MapChatRole, "system, user or assistant", &why);
	if (conv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid prompt-completion row: %s: %s", side, why.data)));
	if (conv->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid prompt-completion row: %s is an empty array", side)));
	return conv;
}

/*
 * prompt ++ completion.  The loss is on the completion only: assistant
 * messages of the prompt (earlier turns given as context) get "weight": 0,
 * so every train_on setting leaves them out of the loss mask.
 */
Datum
sft_from_prompt_completion(PG_FUNCTION_ARGS)
{
	SftConversation *prompt;
	SftConversation *completion;
	SftConversation conv;
	SftError	err = {0};

	SftCheckUtf8Database();
	prompt = ParsePromptOrCompletion(PG_GETARG_JSONB_P(0), SFT_ROLE_USER, "prompt");
	completion = ParsePromptOrCompletion(PG_GETARG_JSONB_P(1), SFT_ROLE_ASSISTANT, "completion");
	conv.n = prompt->n + completion->n;
	conv.messages = palloc(sizeof(SftMessage) * conv.n);
	memcpy(conv.messages, prompt->messages, sizeof(SftMessage) * prompt->n);
	memcpy(conv.messages + prompt->n, completion->messages, sizeof(SftMessage) * completion->n);
	for (int i = 0; i < prompt->n; i++)
		if (conv.messages[i].role == SFT_ROLE_ASSISTANT)
			conv.messages[i].no_loss = true;
	for (int i = prompt->n; i < conv.n; i++)
		if (conv.messages[i].role != SFT_ROLE_ASSISTANT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid prompt-completion row: completion message %d is a %s message; a completion holds the assistant's reply",
							i - prompt->n, sft_role_name(conv.messages[i].role))));
	if (sft_conversation_check(&conv, SFT_CONV_TRAINING, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid prompt-completion row: %s", err.message),
				 errdetail("Message indexes count the prompt's messages, then the completion's.")));
	PG_RETURN_JSONB_P(SftConversationToJsonb(&conv));
}

/*
 * Alpaca: [system], history pairs, then instruction and input joined by
 * separator (a newline by default, as LLaMA-Factory's Alpaca converter joins
 * them; an empty or NULL input adds nothing), answered by output.
 */
Datum
sft_from_alpaca(PG_FUNCTION_ARGS)
{
	const char *names[] = {"instruction", NULL, "output"};
	text	   *instruction;
	text	   *separator;
	SftConversation conv;
	StringInfoData query;
	int			n_history = 0;
	JsonbContainer *history = NULL;
	SftError	err = {0};

	SftCheckUtf8Database();
	for (int i = 0; i < 3; i++)
		if (names[i] && PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be NULL", names[i])));
	separator = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);
	if (separator == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("separator must not be NULL")));
	if (!PG_ARGISNULL(4))
	{
		Jsonb	   *jb = PG_GETARG_JSONB_P(4);

		history = JsonbRootArray(jb);
		if (history == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Alpaca row: history must be an array of [instruction, response] pairs, not %s",
							JB_ROOT_IS_SCALAR(jb) ? "a scalar" : "an object")));
		n_history = JsonContainerSize(history);
	}
	conv.messages = palloc0(sizeof(SftMessage) * (2 * n_history + 3));
	conv.n = 0;
	if (!PG_ARGISNULL(3))
	{
		text	   *system = PG_GETARG_TEXT_PP(3);

		conv.messages[conv.n++] = (SftMessage) {SFT_ROLE_SYSTEM, VARDATA_ANY(system), VARSIZE_ANY_EXHDR(system)};
	}
	for (int h = 0; h < n_history; h++)
	{
		JsonbValue *pair = getIthJsonbValueFromContainer(history, h);

		if (!JsonbIsArray(pair) || JsonContainerSize(pair->val.binary.data) != 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Alpaca row: history item %d must be an [instruction, response] pair, not %s",
							h, SftDescribeJsonbValue(pair))));
		for (int k = 0; k < 2; k++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(pair->val.binary.data, k);

			if (v->type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid Alpaca row: history item %d: the %s must be a string, not %s",
								h, k == 0 ? "instruction" : "response", SftDescribeJsonbValue(v))));
			conv.messages[conv.n++] = (SftMessage) {k == 0 ? SFT_ROLE_USER : SFT_ROLE_ASSISTANT,
				v->val.string.val, v->val.string.len};
		}
	}
	instruction = PG_GETARG_TEXT_PP(0);
	initStringInfo(&query);
	appendBinaryStringInfo(&query, VARDATA_ANY(instruction), VARSIZE_ANY_EXHDR(instruction));
	if (!PG_ARGISNULL(1) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) > 0)
	{
		text	   *input = PG_GETARG_TEXT_PP(1);

		if (query.len > 0)
			appendBinaryStringInfo(&query, VARDATA_ANY(separator), VARSIZE_ANY_EXHDR(separator));
		appendBinaryStringInfo(&query, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input));
	}
	conv.messages[conv.n++] = (SftMessage) {SFT_ROLE_USER, query.data, query.len};
	{
		text	   *output = PG_GETARG_TEXT_PP(2);

		conv.messages[conv.n++] = (SftMessage) {SFT_ROLE_ASSISTANT, VARDATA_ANY(output), VARSIZE_ANY_EXHDR(output)};
	}
	if (sft_conversation_check(&conv, SFT_CONV_TRAINING, &err) != SFT_OK)
		ReportInvalidConversation(err.message);
	PG_RETURN_JSONB_P(SftConversationToJsonb(&conv));
}
