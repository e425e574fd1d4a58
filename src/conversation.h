/*
 * conversation.h: jsonb <-> SftConversation, for every glue file that takes a
 * conversation argument.
 */
#ifndef SFT_CONVERSATION_GLUE_H
#define SFT_CONVERSATION_GLUE_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "core/conversation.h"

/*
 * Parse and check a conversation (see src/core/conversation.c for the rules).
 * Raises ERROR naming the message index.  Content strings point into jb or
 * into palloc'd memory of the current context.
 */
SftConversation *SftConversationFromJsonb(Jsonb *jb, SftConversationUse use);

/* The same without raising: NULL, and *problem set to the reason. */
SftConversation *SftConversationTryFromJsonb(Jsonb *jb, SftConversationUse use,
											 char **problem);

/* The normalised jsonb form: [{"role": ..., "content": ...}, ...]. */
Jsonb	   *SftConversationToJsonb(const SftConversation *conv);

/* ERROR unless the database encoding is UTF8 (conversations are UTF-8 text). */
void		SftCheckUtf8Database(void);

#endif							/* SFT_CONVERSATION_GLUE_H */
