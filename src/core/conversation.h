/*
 * conversation.h: a chat conversation as the core sees it, and the pure
 * operations on it behind the SQL conversation functions (validation, system
 * merge, turn counting and truncation).
 *
 * The glue converts jsonb into an SftConversation (roles parsed, content parts
 * already joined into one UTF-8 string per message) and converts results back;
 * everything that decides what a valid conversation is lives here.
 */
#ifndef SFT_CORE_CONVERSATION_H
#define SFT_CORE_CONVERSATION_H

#include <stdbool.h>

#include "common.h"

typedef enum SftRole
{
	SFT_ROLE_SYSTEM = 0,
	SFT_ROLE_USER,
	SFT_ROLE_ASSISTANT
} SftRole;

typedef struct SftMessage
{
	SftRole		role;
	const char *content;		/* UTF-8, not necessarily NUL-terminated */
	size_t		len;			/* bytes of content */
	bool		no_loss;		/* an assistant message never trained on ("weight": 0) */
} SftMessage;

typedef struct SftConversation
{
	SftMessage *messages;		/* [n] */
	int			n;
} SftConversation;

/* How strictly a conversation is checked. */
typedef enum SftConversationUse
{
	SFT_CONV_ANY = 0,			/* shape only: roles in order, non-empty */
	SFT_CONV_GENERATION,		/* may end with a user message */
	SFT_CONV_TRAINING			/* must end with an assistant message */
} SftConversationUse;

/* "system" / "user" / "assistant" (case-insensitive); -1 when unknown. */
int			sft_role_parse(const char *name, size_t len);
const char *sft_role_name(SftRole role);

/*
 * Structural checks shared by every function: at least one message; system
 * messages only before the first user message; after that user and assistant
 * alternate, starting with user.  Errors name the message index (0-based).
 */
SftStatus	sft_conversation_check(const SftConversation *conv,
								   SftConversationUse use, SftError *err);

/* Number of user messages answered by an assistant message. */
int			sft_conversation_turns(const SftConversation *conv);

/*
 * Fold every system message (in order, joined by separator) into the first
 * user message: "<system>" + separator + "<user>".  out->messages is newly
 * allocated; *merged holds the new first-user text (NULL when there was no
 * system message).  The caller frees both with sft_free.  A system prompt with
 * no user message to fold it into is SFT_ERR_INVALID.
 */
SftStatus	sft_conversation_merge_system(const SftConversation *conv,
										  const char *separator, size_t separator_len,
										  SftConversation *out, char **merged,
										  SftError *err);

/*
 * Length of the prefix that keeps the leading system messages and the first
 * max_turns user->assistant exchanges (max_turns >= 0).  A trailing user
 * message inside the limit is kept, so a prompt awaiting its answer survives.
 */
int			sft_conversation_truncate_turns(const SftConversation *conv, int max_turns);

/* ---------------------------------------------------------------------------
 * Placeholders (hard-coded identity data: "I am <|MODEL_NAME|>, made by
 * {{author}}").
 * ------------------------------------------------------------------------- */

typedef struct SftReplacement
{
	const char *from;			/* literal text, not empty */
	size_t		from_len;
	const char *to;
	size_t		to_len;
} SftReplacement;

/*
 * Append text with every occurrence of each from replaced by its to, in one
 * left-to-right pass: replaced text is never rescanned (a value may contain a
 * key), and where several keys match at one position the longest wins.
 * *replaced counts the replacements.
 */
SftStatus	sft_text_fill(const char *text, size_t len, const SftReplacement *r, int n,
						  SftBuf *out, int *replaced, SftError *err);

/*
 * The placeholder-looking spans of text, left to right: <|UPPER_CASE|>
 * (letters A-Z, digits, underscores, starting with a letter; lower-case
 * special tokens such as <|im_end|> are not placeholders) and {{word}} (a
 * letter or underscore, then letters, digits, underscores, dots or dashes;
 * spaces allowed inside the braces).  found is called with each span;
 * a status other than SFT_OK stops the scan and is returned.
 */
typedef SftStatus (*SftSpanSink) (void *arg, const char *span, size_t len);
SftStatus	sft_placeholder_scan(const char *text, size_t len, SftSpanSink found, void *arg);

#endif							/* SFT_CORE_CONVERSATION_H */
