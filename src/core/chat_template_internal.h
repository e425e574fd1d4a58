/*
 * chat_template_internal.h: the Jinja path of the chat templates
 * (chat_template_jinja.c), called by chat_template.c for templates of kind
 * SFT_TEMPLATE_JINJA.
 */
#ifndef SFT_CORE_CHAT_TEMPLATE_INTERNAL_H
#define SFT_CORE_CHAT_TEMPLATE_INTERNAL_H

#include "chat_template.h"

SftStatus	sft_chat_jinja_render(const SftChatTemplate *tpl, const SftTokenizer *tok,
								  const SftConversation *conv, int add_generation_prompt,
								  SftBuf *out, SftError *err);
SftStatus	sft_chat_jinja_encode(const SftChatTemplate *tpl, const SftTokenizer *tok,
								  const SftConversation *conv, SftTrainOn train_on,
								  int add_generation_prompt, SftIntVec *ids, SftIntVec *mask,
								  SftError *err);

#endif							/* SFT_CORE_CHAT_TEMPLATE_INTERNAL_H */
