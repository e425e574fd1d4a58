/*
 * tokenizer.c: the tokenizer catalog, its per-backend cache, and the SQL
 * functions over tokenizers and chat templates (sft_tokenizer_load/import/
 * drop/set_template, sft_tokenize, sft_detokenize, sft_token_count,
 * sft_render, sft_encode, sft_chat_template_jinja), and the tokenizer side
 * of model import/export (SftTokenizerImportDirectory/ExportDirectory).
 *
 * Catalog and privileges
 * ----------------------
 * sft_tokenizers holds one row per tokenizer: the source files as loaded
 * (tokenizer.json text, or vocab.json + merges.txt; tokenizer_config.json as
 * jsonb) plus columns derived from them when the row was written (kind,
 * vocabulary size, special tokens, bos/eos) and the chat template chosen or
 * detected.  Everybody may read it; nobody but the extension owner may write
 * it directly.  The functions here check what the caller may do and then
 * have catalog.c write the row with the table owner's rights:
 *   - loading from client text: whoever may EXECUTE sft_tokenizer_load (PUBLIC
 *     by default; REVOKE it to restrict who may create tokenizers);
 *   - importing from the server's file system: superusers and members of
 *     pg_read_server_files only, as for pg_read_file() on absolute paths;
 *   - changing or dropping a tokenizer: its owner (the loading role), members
 *     of that role, and superusers.
 * The table is marked for pg_dump, so a dump restores every tokenizer.
 *
 * Cache
 * -----
 * Parsing a large tokenizer.json takes a noticeable fraction of a second, so
 * each backend keeps the core tokenizer objects it built, keyed by name.  A
 * table row change sends no invalidation message (only system catalogs do),
 * so an entry remembers the (xmin, ctid) of the row version it was built from
 * and compares them with the catalog once per statement: a changed row (update,
 * drop and reload, restore) has a new xmin or ctid, and the entry is rebuilt
 * from it; a missing row frees the entry.  Within one statement the entry is
 * trusted, so a query calling sft_token_count() on 10,000 rows reads the
 * catalog once.  Core objects are malloc'd (they outlive transactions); an
 * entry owns them and frees them when rebuilt or removed, and every path
 * that builds one frees it again before it can raise an error.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include <sys/stat.h>

#include "catalog.h"
#include "conversation.h"
#include "server_files.h"
#include "sft.h"
#include "tokenizer.h"

PG_FUNCTION_INFO_V1(sft_tokenizer_load);
PG_FUNCTION_INFO_V1(sft_tokenizer_import);
PG_FUNCTION_INFO_V1(sft_tokenizer_drop);
PG_FUNCTION_INFO_V1(sft_tokenizer_set_template);
PG_FUNCTION_INFO_V1(sft_tokenize);
PG_FUNCTION_INFO_V1(sft_detokenize);
PG_FUNCTION_INFO_V1(sft_token_count);
PG_FUNCTION_INFO_V1(sft_token_count_messages);
PG_FUNCTION_INFO_V1(sft_render);
PG_FUNCTION_INFO_V1(sft_encode);
PG_FUNCTION_INFO_V1(sft_chat_template_jinja);

/* ---------------------------------------------------------------------------
 * Catalog access
 * ------------------------------------------------------------------------- */

static void
CheckTokenizerName(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("tokenizer name must be 1 to %d bytes long", NAMEDATALEN - 1)));
}

static void
ReportUnknownTokenizer(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("tokenizer \"%s\" does not exist", name),
			 errhint("Load one with sft_tokenizer_load() or sft_tokenizer_import(); "
					 "SELECT name FROM sft_tokenizers lists them.")));
}

/*
 * Lock the catalog row of name (until the transaction ends) and check that
 * the caller may change it.
 */
static void
LockOwnTokenizer(const char *name)
{
	Oid			owner;

	if (!SftCatalogTokenizerLock(name, &owner))
		ReportUnknownTokenizer(name);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of tokenizer \"%s\"", name),
				 errdetail("Tokenizer \"%s\" belongs to role \"%s\".", name,
						   GetUserNameFromId(owner, false))));
}

/* ---------------------------------------------------------------------------
 * Building core tokenizers
 * ------------------------------------------------------------------------- */

/* The tokenizer's source files, as stored in the catalog row. */
typedef struct TokenizerSource
{
	const char *source;			/* tokenizer.json, or vocab.json when merges != NULL */
	size_t		source_len;
	const char *merges;			/* merges.txt or NULL */
	size_t		merges_len;
	const char *config;			/* tokenizer_config.json or NULL */
	size_t		config_len;
	const char *chat_template;	/* chat_template.jinja beside it, or NULL */
} TokenizerSource;

/* Build the core tokenizer; ERROR (nothing left allocated) when it fails. */
static SftTokenizer *
BuildCoreTokenizer(const TokenizerSource *src, const char *name)
{
	SftTokenizer *tok = NULL;
	SftError	err;
	SftStatus	st;

	sft_error_clear(&err);
	if (src->merges)
		st = sft_tokenizer_from_vocab_merges(src->source, src->source_len,
											 src->merges, src->merges_len, &tok, &err);
	else
		st = sft_tokenizer_from_hf(src->source, src->source_len,
								   src->config, src->config_len, &tok, &err);
	if (st != SFT_OK)
		SftReportCoreError(&err, psprintf("tokenizer \"%s\"", name));
	return tok;
}

/* ---------------------------------------------------------------------------
 * The per-backend cache
 * ------------------------------------------------------------------------- */

static HTAB *TokenizerCache = NULL;

static void
EntryReset(SftTokenizerEntry *entry)
{
	if (entry->tok)
		sft_tokenizer_free(entry->tok);
	sft_free(entry->default_system);
	sft_jinja_free(entry->jinja);
	sft_free(entry->jinja_source);
	entry->tok = NULL;
	entry->default_system = NULL;
	entry->jinja = NULL;
	entry->jinja_source = NULL;
	entry->has_template = false;
	memset(&entry->template, 0, sizeof(entry->template));
	entry->bos_id = entry->eos_id = entry->end_of_turn_id = -1;
	entry->row_xmin = InvalidTransactionId;
	ItemPointerSetInvalid(&entry->row_tid);
	entry->checked_lxid = InvalidLocalTransactionId;
	entry->checked_statement = 0;
	entry->checked_cid = InvalidCommandId;
}

static SftTokenizerEntry *
CacheEntry(const char *name, bool create)
{
	bool		found;
	SftTokenizerEntry *entry;

	if (TokenizerCache == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(SftTokenizerEntry);
		ctl.hcxt = TopMemoryContext;
		TokenizerCache = hash_create("sft tokenizer cache", 16, &ctl,
									 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(TokenizerCache, name, create ? HASH_ENTER : HASH_FIND, &found);
	if (create && !found)
	{
		entry->tok = NULL;
		entry->default_system = NULL;
		entry->jinja = NULL;
		entry->jinja_source = NULL;
		EntryReset(entry);
	}
	return entry;
}

static void
CacheRemove(const char *name)
{
	SftTokenizerEntry *entry = CacheEntry(name, false);

	if (entry)
	{
		EntryReset(entry);
		hash_search(TokenizerCache, name, HASH_REMOVE, NULL);
	}
}

static void
EntryMarkChecked(SftTokenizerEntry *entry, const SftTokenizerVersion *version)
{
	entry->row_xmin = version->xmin;
	entry->row_tid = version->tid;
	entry->checked_lxid = MyProc->lxid;
	entry->checked_statement = GetCurrentStatementStartTimestamp();
	entry->checked_cid = GetCurrentCommandId(false);
}

/* The token id of text in tok, or -1. */
static int32
TokenId(const SftTokenizer *tok, const char *text)
{
	return text ? sft_tokenizer_token_to_id(tok, text, strlen(text)) : -1;
}

/* The chat template's interrupt check: stop rendering when the query is cancelled. */
static int
TemplateInterrupt(void *arg)
{
	return InterruptPending;
}

/* Parse Jinja source; ERROR naming the tokenizer when the engine refuses it. */
static SftJinjaTemplate *
ParseJinja(const char *source, const char *tokname)
{
	SftJinjaTemplate *jinja = NULL;
	SftError	err;

	sft_error_clear(&err);
	if (sft_jinja_parse(source, strlen(source), &jinja, &err) != SFT_OK)
		SftReportCoreError(&err, psprintf("tokenizer \"%s\"", tokname));
	return jinja;
}

/*
 * Set the entry's template: a built-in kind, or the Jinja source (parsed
 * here).  default_system is copied (malloc); nothing raises an error between
 * allocation and assignment, except parsing, which happens first.
 */
static void
EntrySetTemplate(SftTokenizerEntry *entry, bool has_template, SftTemplateKind kind,
				 const char *default_system, const char *jinja_source)
{
	char	   *copy = NULL;
	char	   *source_copy = NULL;
	SftJinjaTemplate *jinja = NULL;

	if (has_template && kind == SFT_TEMPLATE_JINJA)
	{
		jinja = ParseJinja(jinja_source, entry->name);
		source_copy = sft_strndup(jinja_source, strlen(jinja_source));
	}
	if (has_template && default_system)
		copy = sft_strndup(default_system, strlen(default_system));
	if ((has_template && default_system && copy == NULL) || (jinja && source_copy == NULL))
	{
		sft_jinja_free(jinja);
		sft_free(copy);
		sft_free(source_copy);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	sft_free(entry->default_system);
	sft_jinja_free(entry->jinja);
	sft_free(entry->jinja_source);
	entry->default_system = copy;
	entry->jinja = jinja;
	entry->jinja_source = source_copy;
	entry->has_template = has_template;
	memset(&entry->template, 0, sizeof(entry->template));
	entry->end_of_turn_id = -1;
	if (has_template)
	{
		entry->template.kind = kind;
		entry->template.default_system = copy;
		entry->template.default_system_len = copy ? strlen(copy) : 0;
		entry->template.jinja = jinja;
		entry->template.interrupt = TemplateInterrupt;
		if (kind == SFT_TEMPLATE_JINJA)
			entry->end_of_turn_id = sft_template_jinja_end_of_turn_id(&entry->template, entry->tok, NULL);
		else
			entry->end_of_turn_id = sft_template_end_of_turn_id(kind, entry->tok);
	}
}

/*
 * The text of the token a template closes replies with (palloc'd), or NULL:
 * for the catalog's end_of_turn_token column.
 */
static char *
TemplateEndOfTurnText(SftTemplateKind kind, const char *jinja_source, const SftTokenizer *tok,
					  const char *tokname)
{
	SftChatTemplate probe = {0};
	SftJinjaTemplate *parsed = kind == SFT_TEMPLATE_JINJA ? ParseJinja(jinja_source, tokname) : NULL;
	int32		eot;
	size_t		len;
	const char *text;

	probe.kind = kind;
	probe.jinja = parsed;
	eot = kind == SFT_TEMPLATE_JINJA ? sft_template_jinja_end_of_turn_id(&probe, tok, NULL)
		: sft_template_end_of_turn_id(kind, tok);
	sft_jinja_free(parsed);
	text = eot >= 0 ? sft_tokenizer_id_to_token(tok, eot, &len) : NULL;
	return text ? pnstrdup(text, len) : NULL;
}

/* Check a template name against a tokenizer; ERROR when unusable. */
static SftTemplateKind
CheckTemplate(const char *template_name, const SftTokenizer *tok, const char *tokname)
{
	SftTemplateKind kind;
	SftError	err;

	sft_error_clear(&err);
	if (sft_template_from_name(template_name, &kind, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err.message)));
	if (sft_template_check_tokenizer(kind, tok, &err) != SFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tokenizer \"%s\": %s", tokname, err.message)));
	return kind;
}

const SftTokenizerEntry *
SftTokenizerLookup(const char *name)
{
	SftTokenizerEntry *entry;
	SftTokenizerVersion version;

	if (strlen(name) == 0 || strlen(name) >= NAMEDATALEN)
		ReportUnknownTokenizer(name);

	entry = CacheEntry(name, true);
	if (entry->tok && entry->checked_lxid == MyProc->lxid &&
		entry->checked_statement == GetCurrentStatementStartTimestamp() &&
		entry->checked_cid == GetCurrentCommandId(false))
		return entry;

	if (!SftCatalogTokenizerVersion(name, &version))
	{
		CacheRemove(name);
		ReportUnknownTokenizer(name);
	}
	if (entry->tok == NULL || !TransactionIdEquals(version.xmin, entry->row_xmin) ||
		!ItemPointerEquals(&version.tid, &entry->row_tid))
	{
		SftTokenizerRecord rec;
		TokenizerSource src;
		SftTemplateKind kind = SFT_TEMPLATE_CHATML;
		SftTokenizer *tok;

		EntryReset(entry);
		if (!SftCatalogTokenizerRead(name, &rec))
		{
			CacheRemove(name);
			ReportUnknownTokenizer(name);
		}
		version = rec.version;
		memset(&src, 0, sizeof(src));
		src.source = VARDATA_ANY(rec.source);
		src.source_len = VARSIZE_ANY_EXHDR(rec.source);
		if (rec.merges)
		{
			src.merges = VARDATA_ANY(rec.merges);
			src.merges_len = VARSIZE_ANY_EXHDR(rec.merges);
		}
		if (rec.config)
		{
			src.config = rec.config;
			src.config_len = strlen(rec.config);
		}

		tok = BuildCoreTokenizer(&src, name);
		if (rec.chat_template && strcmp(rec.chat_template, "jinja") == 0)
			kind = SFT_TEMPLATE_JINJA;
		else if (rec.chat_template)
		{
			SftError	err;

			sft_error_clear(&err);
			if (sft_template_from_name(rec.chat_template, &kind, &err) != SFT_OK ||
				sft_template_check_tokenizer(kind, tok, &err) != SFT_OK)
			{
				sft_tokenizer_free(tok);
				SftReportCoreError(&err, psprintf("tokenizer \"%s\"", name));
			}
		}
		entry->tok = tok;
		entry->bos_id = TokenId(tok, sft_tokenizer_bos_token(tok));
		entry->eos_id = TokenId(tok, sft_tokenizer_eos_token(tok));
		EntrySetTemplate(entry, rec.chat_template != NULL, kind, rec.default_system,
						 rec.chat_template_source);
	}
	EntryMarkChecked(entry, &version);
	return entry;
}

/* sft.template_now: strftime_now's clock in chat templates; empty: the server's. */
static char *sft_template_now = NULL;

void
SftTokenizerInit(void)
{
	DefineCustomStringVariable("sft.template_now",
							   "The time strftime_now() returns in chat templates.",
							   "Empty: the server's clock.  A timestamp makes renders (and so "
							   "training data) reproducible.",
							   &sft_template_now, "", PGC_USERSET, 0, NULL, NULL, NULL);
}

static void
FreeTemplateKwargs(void *arg)
{
	sft_template_kwargs_free((struct json_object *) arg);
}

const SftChatTemplate *
SftTokenizerCallTemplate(const SftTokenizerEntry *entry, Jsonb *kwargs)
{
	SftChatTemplate *tpl = palloc(sizeof(SftChatTemplate));

	*tpl = *SftTokenizerRequireTemplate(entry);
	if (sft_template_now && sft_template_now[0])
	{
		TimestampTz ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
																 CStringGetDatum(sft_template_now),
																 ObjectIdGetDatum(InvalidOid),
																 Int32GetDatum(-1)));

		tpl->now_set = 1;
		tpl->now = timestamptz_to_time_t(ts);
	}
	if (kwargs)
	{
		char	   *text = JsonbToCString(NULL, &kwargs->root, VARSIZE(kwargs));
		struct json_object *obj;
		MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
		SftError	err;

		sft_error_clear(&err);
		if (sft_template_kwargs_parse(text, strlen(text), &obj, &err) != SFT_OK)
			SftReportCoreError(&err, NULL);
		/* freed with the calling context, also on ERROR */
		cb->func = FreeTemplateKwargs;
		cb->arg = obj;
		MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
		tpl->kwargs = obj;
	}
	return tpl;
}

const SftChatTemplate *
SftTokenizerRequireTemplate(const SftTokenizerEntry *entry)
{
	if (!entry->has_template)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tokenizer \"%s\" has no chat template", entry->name),
				 errhint("Choose one with sft_tokenizer_set_template('%s', 'chatml'); "
						 "built-in templates: %s.", entry->name, sft_template_name_list())));
	return &entry->template;
}

/* ---------------------------------------------------------------------------
 * Creating catalog rows
 * ------------------------------------------------------------------------- */

/* What sft_tokenizer_load/import report about a new row. */
typedef struct TokenizerSummary
{
	const char *kind;
	int32		vocab_size;
	const char *template_name;	/* NULL: none detected */
	const char *default_system; /* NULL: none */
} TokenizerSummary;

/* Make "name" a new catalog row from src, owned by the current user. */
static void
CreateTokenizer(const char *name, const TokenizerSource *src, TokenizerSummary *summary)
{
	SftTokenizer *volatile tok;
	SftTokenizerNewRow row;
	SftTokenizerVersion version;
	int			n_special;
	Datum	   *specials;
	ArrayType  *special_array;
	const char *jinja;
	volatile bool has_template = false;
	volatile SftTemplateKind kind = SFT_TEMPLATE_CHATML;
	char	   *volatile default_system = NULL;
	char	   *volatile jinja_source = NULL;
	volatile Datum config_jsonb = (Datum) 0;

	CheckTokenizerName(name);
	memset(summary, 0, sizeof(*summary));

	/* jsonb input checks the config before anything is allocated outside palloc */
	if (src->config)
		config_jsonb = DirectFunctionCall1(jsonb_in,
										   CStringGetDatum(pnstrdup(src->config, src->config_len)));

	tok = BuildCoreTokenizer(src, name);
	PG_TRY();
	{
		const char *bos = sft_tokenizer_bos_token(tok);
		const char *eos = sft_tokenizer_eos_token(tok);

		summary->kind = pstrdup(sft_tokenizer_kind_name(sft_tokenizer_kind(tok)));
		summary->vocab_size = sft_tokenizer_vocab_size(tok);
		n_special = sft_tokenizer_special_count(tok);
		specials = palloc(sizeof(Datum) * Max(n_special, 1));
		for (int i = 0; i < n_special; i++)
		{
			size_t		len;
			const char *s = sft_tokenizer_id_to_token(tok, sft_tokenizer_special_id(tok, i), &len);

			specials[i] = PointerGetDatum(cstring_to_text_with_len(s ? s : "", s ? (int) len : 0));
		}
		special_array = construct_array(specials, n_special, TEXTOID, -1, false, TYPALIGN_INT);

		/*
		 * The model's own chat template (chat_template.jinja, else
		 * tokenizer_config.json's): rendered by the Jinja engine, unless it is
		 * one of the built-in templates, recognised and proven to render
		 * identically on the probe conversations (the fast path).
		 */
		jinja = src->chat_template ? src->chat_template : sft_tokenizer_chat_template(tok);
		if (jinja)
		{
			SftJinjaTemplate *parsed = NULL;
			SftError	err;

			sft_error_clear(&err);
			if (sft_jinja_parse(jinja, strlen(jinja), &parsed, &err) != SFT_OK)
				ereport(NOTICE,
						(errmsg("tokenizer \"%s\": its chat template cannot be used: %s", name, err.message),
						 errhint("Choose one with sft_tokenizer_set_template(); built-in "
								 "templates: %s.", sft_template_name_list())));
			else
			{
				char	   *detected_system = NULL;
				SftTemplateKind builtin;

				has_template = true;
				if (sft_template_detect(jinja, strlen(jinja), &builtin, &detected_system) &&
					sft_template_check_tokenizer(builtin, tok, &err) == SFT_OK &&
					sft_template_matches_jinja(builtin, detected_system, parsed, tok))
				{
					kind = builtin;
					default_system = detected_system ? pstrdup(detected_system) : NULL;
				}
				else
					kind = SFT_TEMPLATE_JINJA;
				sft_free(detected_system);
				sft_jinja_free(parsed);
				if (kind == SFT_TEMPLATE_JINJA)
					jinja_source = pstrdup(jinja);
			}
		}

		if (SftCatalogTokenizerExists(name))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("tokenizer \"%s\" already exists", name),
					 errhint("Drop it first with sft_tokenizer_drop('%s').", name)));

		row.name = name;
		row.kind = summary->kind;
		row.vocab_size = summary->vocab_size;
		row.special_tokens = special_array;
		row.chat_template = has_template ? sft_template_name(kind) : NULL;
		row.chat_template_source = jinja_source;
		row.end_of_turn_token = NULL;
		row.default_system = default_system;
		row.bos_token = bos;
		row.eos_token = eos;
		/* the end-of-turn token the template closes replies with */
		if (has_template)
			row.end_of_turn_token = TemplateEndOfTurnText(kind, jinja_source, tok, name);
		row.source = cstring_to_text_with_len(src->source, (int) src->source_len);
		row.merges = src->merges ? cstring_to_text_with_len(src->merges, (int) src->merges_len) : NULL;
		row.config = src->config ? config_jsonb : (Datum) 0;
		row.owner = GetUserId();
		SftCatalogTokenizerInsert(&row, &version);

		/* seed the cache with what was just built: no second parse */
		{
			SftTokenizerEntry *entry = CacheEntry(name, true);

			EntryReset(entry);
			entry->tok = tok;
			tok = NULL;			/* owned by the cache from here on */
			entry->bos_id = TokenId(entry->tok, bos);
			entry->eos_id = TokenId(entry->tok, eos);
			EntrySetTemplate(entry, has_template, kind, default_system, jinja_source);
			EntryMarkChecked(entry, &version);
		}
	}
	PG_CATCH();
	{
		if (tok)
			sft_tokenizer_free(tok);
		PG_RE_THROW();
	}
	PG_END_TRY();

	summary->template_name = has_template ? sft_template_name(kind) : NULL;
	summary->default_system = default_system;
}

static Datum
SummaryRecord(FunctionCallInfo fcinfo, const char *name, const TokenizerSummary *summary)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, true, true};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(summary->kind);
	values[2] = Int32GetDatum(summary->vocab_size);
	if (summary->template_name)
	{
		values[3] = CStringGetTextDatum(summary->template_name);
		nulls[3] = false;
	}
	if (summary->default_system)
	{
		values[4] = CStringGetTextDatum(summary->default_system);
		nulls[4] = false;
	}
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

static const char *
ArgText(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

Datum
sft_tokenizer_load(PG_FUNCTION_ARGS)
{
	const char *name = ArgText(fcinfo, 0, "name");
	TokenizerSource src;
	TokenizerSummary summary;
	text	   *json;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tokenizer_json must not be NULL")));
	memset(&src, 0, sizeof(src));
	json = PG_GETARG_TEXT_PP(1);
	src.source = VARDATA_ANY(json);
	src.source_len = VARSIZE_ANY_EXHDR(json);
	if (!PG_ARGISNULL(2))
	{
		text	   *config = PG_GETARG_TEXT_PP(2);

		src.config = VARDATA_ANY(config);
		src.config_len = VARSIZE_ANY_EXHDR(config);
	}
	CreateTokenizer(name, &src, &summary);
	PG_RETURN_DATUM(SummaryRecord(fcinfo, name, &summary));
}

/* ---------------------------------------------------------------------------
 * Import from and export to the server's file system
 * ------------------------------------------------------------------------- */

static void
ImportDirectory(const char *name, const char *directory, TokenizerSummary *summary)
{
	TokenizerSource src;
	char	   *dir;
	char	   *path;

	SftRequireServerFiles(SFT_SERVER_FILES_READ, "import a tokenizer from the server's file system",
						  "Send the file contents from the client with sft_tokenizer_load().");
	CheckTokenizerName(name);
	dir = SftServerDirectory(directory, false);

	memset(&src, 0, sizeof(src));
	path = psprintf("%s/tokenizer.json", dir);
	if (SftServerFileExists(path))
	{
		src.source = SftReadServerTextFile(path, &src.source_len);
		path = psprintf("%s/tokenizer_config.json", dir);
		if (SftServerFileExists(path))
			src.config = SftReadServerTextFile(path, &src.config_len);
		/* newer checkpoints keep the template in its own file, which wins */
		path = psprintf("%s/chat_template.jinja", dir);
		if (SftServerFileExists(path))
		{
			size_t		len;

			src.chat_template = SftReadServerTextFile(path, &len);
			if (strlen(src.chat_template) != len)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("file \"%s\" contains a NUL byte", path)));
		}
	}
	else
	{
		char	   *merges_path = psprintf("%s/merges.txt", dir);

		path = psprintf("%s/vocab.json", dir);
		if (!SftServerFileExists(path) || !SftServerFileExists(merges_path))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("directory \"%s\" has neither tokenizer.json nor vocab.json and merges.txt",
							dir)));
		src.source = SftReadServerTextFile(path, &src.source_len);
		src.merges = SftReadServerTextFile(merges_path, &src.merges_len);
	}
	CreateTokenizer(name, &src, summary);
}

void
SftTokenizerImportDirectory(const char *name, const char *directory)
{
	TokenizerSummary summary;

	ImportDirectory(name, directory, &summary);
}

Datum
sft_tokenizer_import(PG_FUNCTION_ARGS)
{
	const char *name = ArgText(fcinfo, 0, "name");
	const char *dir = ArgText(fcinfo, 1, "directory");
	TokenizerSummary summary;

	ImportDirectory(name, dir, &summary);
	PG_RETURN_DATUM(SummaryRecord(fcinfo, name, &summary));
}

/*
 * The Jinja chat_template that renders as the entry's template: the one of
 * the stored tokenizer_config.json when it detects as exactly that (so a
 * published template is written back verbatim), else our own Jinja form.
 * NULL without a template.  qwen3 has no own form: ERROR, or NULL with a
 * WARNING when warn_only.
 */
static char *
EntryJinja(const SftTokenizerEntry *entry, bool warn_only)
{
	const char *stored = sft_tokenizer_chat_template(entry->tok);
	SftBuf		buf;
	SftError	err;
	char	   *result;

	if (!entry->has_template)
		return NULL;
	if (entry->template.kind == SFT_TEMPLATE_JINJA)
		return pstrdup(entry->jinja_source);
	if (stored)
	{
		SftTemplateKind kind;
		char	   *system = NULL;
		bool		same = false;

		if (sft_template_detect(stored, strlen(stored), &kind, &system) &&
			kind == entry->template.kind)
			same = (system == NULL && entry->default_system == NULL) ||
				(system && entry->default_system && strcmp(system, entry->default_system) == 0);
		sft_free(system);
		if (same)
			return pstrdup(stored);
	}
	sft_buf_init(&buf);
	sft_error_clear(&err);
	if (sft_template_jinja(&entry->template, &buf, &err) != SFT_OK)
	{
		sft_buf_free(&buf);
		ereport(warn_only ? WARNING : ERROR,
				(errcode(SftErrcodeForStatus(err.status)),
				 errmsg("tokenizer \"%s\": %s", entry->name, err.message),
				 warn_only ? errdetail("The exported tokenizer_config.json keeps the chat_template it was imported with.") : 0));
		return NULL;
	}
	PG_TRY();
	{
		result = pnstrdup(buf.data, buf.len);
	}
	PG_CATCH();
	{
		sft_buf_free(&buf);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_buf_free(&buf);
	return result;
}

Datum
sft_chat_template_jinja(PG_FUNCTION_ARGS)
{
	const SftTokenizerEntry *entry = SftTokenizerLookup(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *jinja;

	SftTokenizerRequireTemplate(entry);
	jinja = EntryJinja(entry, false);
	PG_RETURN_TEXT_P(cstring_to_text(jinja));
}

char *
SftTokenizerChatJinja(const SftTokenizerEntry *entry)
{
	return EntryJinja(entry, false);
}

bool
SftTokenizerExists(const char *name)
{
	return SftCatalogTokenizerExists(name);
}

int32
SftTokenizerVocabSize(const char *name)
{
	return sft_tokenizer_vocab_size(SftTokenizerLookup(name)->tok);
}

List *
SftTokenizerExportDirectory(const char *name, const char *directory)
{
	char	   *jinja;
	char	   *dir;
	text	   *source;
	text	   *merges;
	text	   *config;
	List	   *files = NIL;

	SftRequireServerFiles(SFT_SERVER_FILES_WRITE, "write tokenizer files to the server's file system",
						  NULL);
	dir = SftServerDirectory(directory, false);
	/* the chosen template goes into the config, so that HF renders as we do */
	jinja = EntryJinja(SftTokenizerLookup(name), true);
	if (!SftCatalogTokenizerFiles(name, jinja, &source, &merges, &config))
		ReportUnknownTokenizer(name);
	if (merges == NULL)
	{
		char	   *path = psprintf("%s/tokenizer.json", dir);

		SftWriteServerFile(path, VARDATA_ANY(source), VARSIZE_ANY_EXHDR(source));
		files = lappend(files, path);
	}
	else
	{
		char	   *vocab_path = psprintf("%s/vocab.json", dir);
		char	   *merges_path = psprintf("%s/merges.txt", dir);

		SftWriteServerFile(vocab_path, VARDATA_ANY(source), VARSIZE_ANY_EXHDR(source));
		SftWriteServerFile(merges_path, VARDATA_ANY(merges), VARSIZE_ANY_EXHDR(merges));
		files = lappend(files, vocab_path);
		files = lappend(files, merges_path);
	}
	if (config)
	{
		char	   *path = psprintf("%s/tokenizer_config.json", dir);

		SftWriteServerFile(path, VARDATA_ANY(config), VARSIZE_ANY_EXHDR(config));
		files = lappend(files, path);
	}
	return files;
}

/* ---------------------------------------------------------------------------
 * Changing and dropping
 * ------------------------------------------------------------------------- */

Datum
sft_tokenizer_drop(PG_FUNCTION_ARGS)
{
	const char *name = ArgText(fcinfo, 0, "name");

	LockOwnTokenizer(name);
	SftCatalogTokenizerDelete(name);
	CacheRemove(name);
	PG_RETURN_VOID();
}

Datum
sft_tokenizer_set_template(PG_FUNCTION_ARGS)
{
	const char *name = ArgText(fcinfo, 0, "name");
	const char *template_name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *default_system = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	SftTokenizerEntry *entry;
	SftTemplateKind kind = SFT_TEMPLATE_CHATML;
	SftTokenizerVersion version;
	const char *source = NULL;
	char	   *end_of_turn = NULL;

	if (template_name == NULL && default_system != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a default system prompt needs a chat template")));
	if (default_system &&
		sft_utf8_invalid_offset(default_system, strlen(default_system)) != (size_t) -1)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("default system prompt is not valid UTF-8")));

	/* ownership first, then whether the template fits the tokenizer */
	LockOwnTokenizer(name);
	entry = (SftTokenizerEntry *) SftTokenizerLookup(name);
	if (template_name)
	{
		SftError	err;

		sft_error_clear(&err);
		if (sft_template_from_name(template_name, &kind, &err) == SFT_OK)
			kind = CheckTemplate(template_name, entry->tok, name);
		else if (strstr(template_name, "{{") || strstr(template_name, "{%"))
		{
			/* Jinja source: refused here when the engine cannot render it */
			if (default_system)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a default system prompt goes with a built-in template"),
						 errhint("Write the default system prompt into the Jinja template.")));
			kind = SFT_TEMPLATE_JINJA;
			source = template_name;
			if (strlen(template_name) > 1024 * 1024)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("chat template source longer than 1 MB")));
			sft_jinja_free(ParseJinja(source, name));
		}
		else
			CheckTemplate(template_name, entry->tok, name);
		end_of_turn = TemplateEndOfTurnText(kind, source, entry->tok, name);
	}
	SftCatalogTokenizerSetTemplate(name, template_name ? sft_template_name(kind) : NULL, source,
								   default_system, end_of_turn, &version);
	/* same source: keep the tokenizer, move the entry to the new row version */
	EntrySetTemplate(entry, template_name != NULL, kind, default_system, source);
	EntryMarkChecked(entry, &version);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------------
 * Tokenizing
 * ------------------------------------------------------------------------- */

/* int4[] from a core vector; frees the vector, also when palloc fails. */
static ArrayType *
IntVecToArray(SftIntVec *vec)
{
	ArrayType  *volatile result = NULL;

	PG_TRY();
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(vec->len, 1));

		for (size_t i = 0; i < vec->len; i++)
			elems[i] = Int32GetDatum(vec->data[i]);
		result = construct_array(elems, (int) vec->len, INT4OID, sizeof(int32), true,
								 TYPALIGN_INT);
	}
	PG_CATCH();
	{
		sft_intvec_free(vec);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_intvec_free(vec);
	return result;
}

static const char *
TokenizerNameArg(FunctionCallInfo fcinfo, int argno)
{
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

Datum
sft_tokenize(PG_FUNCTION_ARGS)
{
	const char *name = TokenizerNameArg(fcinfo, 0);
	text	   *input = PG_GETARG_TEXT_PP(1);
	bool		split_special = PG_ARGISNULL(2) ? false : PG_GETARG_BOOL(2);
	const SftTokenizerEntry *entry = SftTokenizerLookup(name);
	SftIntVec	ids;
	SftError	err;

	sft_intvec_init(&ids);
	sft_error_clear(&err);
	if (sft_tokenizer_encode(entry->tok, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input),
							 split_special, &ids, NULL, &err) != SFT_OK)
	{
		sft_intvec_free(&ids);
		SftReportCoreError(&err, NULL);
	}
	PG_RETURN_ARRAYTYPE_P(IntVecToArray(&ids));
}

Datum
sft_token_count(PG_FUNCTION_ARGS)
{
	const char *name = TokenizerNameArg(fcinfo, 0);
	text	   *input = PG_GETARG_TEXT_PP(1);
	const SftTokenizerEntry *entry = SftTokenizerLookup(name);
	SftIntVec	ids;
	SftError	err;
	size_t		count;

	sft_intvec_init(&ids);
	sft_error_clear(&err);
	if (sft_tokenizer_encode(entry->tok, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input),
							 0, &ids, NULL, &err) != SFT_OK)
	{
		sft_intvec_free(&ids);
		SftReportCoreError(&err, NULL);
	}
	count = ids.len;
	sft_intvec_free(&ids);
	PG_RETURN_INT32((int32) count);
}

Datum
sft_detokenize(PG_FUNCTION_ARGS)
{
	const char *name = TokenizerNameArg(fcinfo, 0);
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(1);
	bool		skip_special = PG_ARGISNULL(2) ? false : PG_GETARG_BOOL(2);
	const SftTokenizerEntry *entry = SftTokenizerLookup(name);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32	   *ids;
	SftBuf		out;
	SftError	err;
	text	   *result = NULL;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("token ids must be a one-dimensional array")));
	deconstruct_array(array, INT4OID, sizeof(int32), true, TYPALIGN_INT, &elems, &nulls, &n);
	ids = palloc(sizeof(int32) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("token id %d is NULL", i + 1)));
		ids[i] = DatumGetInt32(elems[i]);
	}
	sft_buf_init(&out);
	sft_error_clear(&err);
	if (sft_tokenizer_decode(entry->tok, ids, (size_t) n, skip_special, &out, &err) != SFT_OK)
	{
		sft_buf_free(&out);
		SftReportCoreError(&err, NULL);
	}
	PG_TRY();
	{
		/* decoding byte tokens can produce invalid UTF-8: text must not hold it */
		if (out.len > 0 && !pg_verify_mbstr(PG_UTF8, out.data, (int) out.len, true))
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("token ids decode to invalid UTF-8"),
					 errhint("The ids probably cut a multi-byte character in two.")));
		result = cstring_to_text_with_len(out.data ? out.data : "", (int) out.len);
	}
	PG_CATCH();
	{
		sft_buf_free(&out);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_buf_free(&out);
	PG_RETURN_TEXT_P(result);
}

/* ---------------------------------------------------------------------------
 * Conversations through the chat template
 * ------------------------------------------------------------------------- */

/* The template_kwargs argument (jsonb or NULL) at argno. */
static Jsonb *
KwargsArg(FunctionCallInfo fcinfo, int argno)
{
	return PG_NARGS() > argno && !PG_ARGISNULL(argno) ? PG_GETARG_JSONB_P(argno) : NULL;
}

Datum
sft_token_count_messages(PG_FUNCTION_ARGS)
{
	const char *name;
	Jsonb	   *messages;
	const SftTokenizerEntry *entry;
	const SftChatTemplate *tpl;
	SftConversation *conv;
	SftError	err;
	int64		count;

	/* NULL tokenizer or conversation: NULL, as a strict function would */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	name = TokenizerNameArg(fcinfo, 0);
	messages = PG_GETARG_JSONB_P(1);
	entry = SftTokenizerLookup(name);
	tpl = SftTokenizerCallTemplate(entry, KwargsArg(fcinfo, 2));
	conv = SftConversationFromJsonb(messages, SFT_CONV_ANY);

	sft_error_clear(&err);
	if (sft_chat_token_count(tpl, entry->tok, conv, 0, &count, &err) != SFT_OK)
		SftReportCoreError(&err, NULL);
	if (count > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("conversation has more than %d tokens", PG_INT32_MAX)));
	PG_RETURN_INT32((int32) count);
}

Datum
sft_render(PG_FUNCTION_ARGS)
{
	const char *name;
	Jsonb	   *messages;
	bool		add_generation_prompt;
	const SftTokenizerEntry *entry;
	const SftChatTemplate *tpl;
	SftConversation *conv;
	SftBuf		out;
	SftError	err;
	text	   *result = NULL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	name = TokenizerNameArg(fcinfo, 0);
	messages = PG_GETARG_JSONB_P(1);
	add_generation_prompt = PG_GETARG_BOOL(2);
	entry = SftTokenizerLookup(name);
	tpl = SftTokenizerCallTemplate(entry, KwargsArg(fcinfo, 3));
	conv = SftConversationFromJsonb(messages, SFT_CONV_ANY);

	sft_buf_init(&out);
	sft_error_clear(&err);
	if (sft_chat_render(tpl, entry->tok, conv, add_generation_prompt, &out, &err) != SFT_OK)
	{
		sft_buf_free(&out);
		SftReportCoreError(&err, NULL);
	}
	PG_TRY();
	{
		result = cstring_to_text_with_len(out.data ? out.data : "", (int) out.len);
	}
	PG_CATCH();
	{
		sft_buf_free(&out);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_buf_free(&out);
	PG_RETURN_TEXT_P(result);
}

Datum
sft_encode(PG_FUNCTION_ARGS)
{
	const char *name;
	Jsonb	   *messages;
	volatile int32 max_length = 0;
	SftTrainOn	train_on;
	const SftTokenizerEntry *entry;
	const SftChatTemplate *tpl;
	SftConversation *conv;
	SftEncoded	enc;
	SftError	err;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	HeapTuple	volatile tuple = NULL;

	/* NULL tokenizer or conversation: NULL row, as a strict function would */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	name = TokenizerNameArg(fcinfo, 0);
	messages = PG_GETARG_JSONB_P(1);
	if (!PG_ARGISNULL(2))
	{
		max_length = PG_GETARG_INT32(2);
		if (max_length <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_length must be positive, not %d", max_length),
					 errhint("Pass NULL for no limit.")));
	}
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("train_on must not be NULL"),
				 errhint("Valid values are \"all_assistant\" and \"last_assistant\".")));
	train_on = SftTrainOnFromName(text_to_cstring(PG_GETARG_TEXT_PP(3)));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	entry = SftTokenizerLookup(name);
	tpl = SftTokenizerCallTemplate(entry, KwargsArg(fcinfo, 4));
	conv = SftConversationFromJsonb(messages, SFT_CONV_TRAINING);

	sft_encoded_init(&enc);
	sft_error_clear(&err);
	if (sft_chat_encode(tpl, entry->tok, conv, train_on, 0, max_length, &enc, &err) != SFT_OK)
	{
		sft_encoded_free(&enc);
		SftReportCoreError(&err, NULL);
	}
	PG_TRY();
	{
		/* an all-zero mask would train on nothing while looking fine: refuse it */
		if (enc.n_masked == 0 && max_length == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("conversation has no assistant tokens to train on"),
					 errdetail("Its %zu tokens are all context: the assistant messages it would train on have \"weight\": 0.",
							   enc.ids.len),
					 errhint("Give the assistant message to learn \"weight\": 1, or leave the row out of the training set.")));
		if (enc.n_masked == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("conversation has no assistant tokens to train on within max_length %d",
							max_length),
					 errdetail("The prompt alone is at least %zu tokens long.", enc.ids.len),
					 errhint("Raise max_length, or filter rows with sft_token_count().")));
		values[0] = PointerGetDatum(IntVecToArray(&enc.ids));
		values[1] = PointerGetDatum(IntVecToArray(&enc.mask));
		values[2] = BoolGetDatum(enc.truncated != 0);
		tuple = heap_form_tuple(BlessTupleDesc(desc), values, nulls);
	}
	PG_CATCH();
	{
		sft_encoded_free(&enc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sft_encoded_free(&enc);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
