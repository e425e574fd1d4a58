/*
 * tokenizer.h: the tokenizer catalog (sft_tokenizers) and its per-backend
 * cache, for every glue file that tokenizes (SQL functions, the training
 * worker, generation).
 *
 * Usage, in any backend or background worker, inside a transaction with an
 * active snapshot (the lookup reads the catalog through SPI):
 *
 *     const SftTokenizerEntry *entry = SftTokenizerLookup(name);
 *     const SftChatTemplate *tpl = SftTokenizerRequireTemplate(entry);
 *     sft_chat_encode(tpl, entry->tok, conv, ..., &enc, &err);
 *
 * The entry and everything it points to stay valid until the next lookup of
 * the same name in a later command or transaction, which reloads the entry
 * when the catalog row changed (and frees the old core objects).  Callers
 * that run for many transactions look the name up again in each one instead
 * of keeping the pointer.
 */
#ifndef SFT_TOKENIZER_GLUE_H
#define SFT_TOKENIZER_GLUE_H

#include "postgres.h"

#include "access/transam.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/itemptr.h"
#include "utils/jsonb.h"

#include "core/chat_template.h"
#include "core/tokenizer.h"

typedef struct SftTokenizerEntry
{
	char		name[NAMEDATALEN];	/* hash key: the catalog name */
	SftTokenizer *tok;			/* core tokenizer (malloc'd, owned by the cache) */
	bool		has_template;	/* false: no chat template chosen */
	SftChatTemplate template;	/* valid when has_template */
	char	   *default_system; /* malloc'd; template.default_system points here */
	SftJinjaTemplate *jinja;	/* the parsed Jinja template (kind jinja), owned here */
	char	   *jinja_source;	/* malloc'd: its source */
	/*
	 * A built-in template's imported Jinja source, parsed when a call passes
	 * template_kwargs (which the fast path cannot read); owned here, NULL
	 * until then
	 */
	SftJinjaTemplate *kwargs_jinja;
	int32		bos_id;			/* tokenizer_config's bos_token, -1 when none */
	int32		eos_id;			/* tokenizer_config's eos_token, -1 when none */
	int32		end_of_turn_id; /* the template's turn-closing token, -1 without template */

	/* which catalog row version the entry was built from */
	TransactionId row_xmin;
	ItemPointerData row_tid;
	/* when it was last compared with the catalog: once per statement */
	LocalTransactionId checked_lxid;
	TimestampTz checked_statement;	/* statement start time */
	CommandId	checked_cid;
} SftTokenizerEntry;

/*
 * The cached tokenizer of that name, (re)loaded from the catalog when its row
 * changed since the last lookup.  ERROR (undefined_object) for unknown names.
 */
const SftTokenizerEntry *SftTokenizerLookup(const char *name);

/* The entry's chat template; ERROR with a hint when none was chosen. */
const SftChatTemplate *SftTokenizerRequireTemplate(const SftTokenizerEntry *entry);

/*
 * The chosen chat template as Jinja (the imported source when it renders
 * as the entry's template, else our own Jinja form), palloc'd; NULL when no
 * template was chosen.  ERROR when it has no Jinja form (qwen3 without its
 * imported source).
 */
char	   *SftTokenizerChatJinja(const SftTokenizerEntry *entry);

/*
 * What one call (or training run) adds to the template: template_kwargs and
 * strftime_now's clock.
 */
typedef struct SftTemplateCall
{
	struct json_object *kwargs; /* NULL: none; freed with the memory context it was made in */
	bool		now_set;		/* false: the server's clock */
	time_t		now;
} SftTemplateCall;

/*
 * Check the call's template_kwargs (a jsonb object or NULL) and read its
 * clock: now_text (a timestamp, e.g. a run's recorded template_now) when not
 * NULL, else sft.template_now.  ERROR when the kwargs are not an object or
 * set messages / add_generation_prompt, or the clock is not a timestamp.
 * Called before any work, so bad arguments fail first.
 */
void		SftTemplateCallMake(SftTemplateCall *call, Jsonb *kwargs, const char *now_text);

/* The entry's template for one call (palloc'd copy); ERROR without a template. */
const SftChatTemplate *SftTokenizerApplyCall(const SftTokenizerEntry *entry,
											 const SftTemplateCall *call);
void		SftTemplateCallApply(SftChatTemplate *tpl, const SftTemplateCall *call);

/* SftTemplateCallMake(kwargs, NULL) then SftTokenizerApplyCall. */
const SftChatTemplate *SftTokenizerCallTemplate(const SftTokenizerEntry *entry, Jsonb *kwargs);

/*
 * A timestamp as strftime_now's clock; ERROR naming `what` when it is not a
 * date and time.  SftTemplateNowText is its canonical text (UTC, explicit
 * offset), as runs record it.
 */
time_t		SftTemplateNowFromText(const char *text, const char *what);
char	   *SftTemplateNowText(time_t t);

/* Define sft.template_now (from _PG_init). */
void		SftTokenizerInit(void);

/* For the model catalog: a model directory carries its tokenizer files. */
bool		SftTokenizerExists(const char *name);
int32		SftTokenizerVocabSize(const char *name);	/* max id + 1; ERROR if unknown */

/*
 * Create tokenizer "name" from tokenizer.json (+ tokenizer_config.json) or
 * vocab.json + merges.txt in an absolute server directory, owned by the
 * current user.  ERROR unless the user has pg_read_server_files privileges.
 */
void		SftTokenizerImportDirectory(const char *name, const char *directory);

/*
 * Write the tokenizer's source files into an existing absolute directory;
 * returns the written paths (palloc'd char *).  The chosen chat template (and
 * default system prompt) is written into tokenizer_config.json as Jinja, so
 * that Hugging Face renders conversations as sft_render() does.  ERROR unless
 * the user has pg_write_server_files privileges.
 */
List	   *SftTokenizerExportDirectory(const char *name, const char *directory);

#endif							/* SFT_TOKENIZER_GLUE_H */
