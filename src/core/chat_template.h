/*
 * chat_template.h: built-in chat templates (no Jinja engine) and the
 * assistant-only loss mask.
 *
 * A template renders a conversation into text with special tokens at fixed
 * places; encoding splits the rendered text at the template's own special
 * tokens only (user content that looks like a special token stays plain
 * text), tokenizes the text runs between them exactly as Hugging Face would,
 * and marks with 1 every token of assistant content plus the token that
 * closes the assistant turn (<|im_end|>, <|eot_id|>, </s>); role headers,
 * system and user text are 0.
 */
#ifndef SFT_CORE_CHAT_TEMPLATE_H
#define SFT_CORE_CHAT_TEMPLATE_H

#include "common.h"
#include "conversation.h"
#include "tokenizer.h"

typedef enum SftTemplateKind
{
	SFT_TEMPLATE_CHATML = 0,	/* SmolLM2, Qwen */
	SFT_TEMPLATE_LLAMA3,
	SFT_TEMPLATE_LLAMA2,
	SFT_TEMPLATE_QWEN3			/* chatml with Qwen3's think blocks */
} SftTemplateKind;

typedef enum SftTrainOn
{
	SFT_TRAIN_ALL_ASSISTANT = 0,
	SFT_TRAIN_LAST_ASSISTANT
} SftTrainOn;

/* "all_assistant" / "last_assistant"; anything else is SFT_ERR_INVALID. */
SftStatus	sft_train_on_from_name(const char *name, SftTrainOn *out, SftError *err);
const char *sft_train_on_name(SftTrainOn train_on);

typedef struct SftChatTemplate
{
	SftTemplateKind kind;
	const char *default_system;	/* inserted when no system message; NULL: none */
	size_t		default_system_len;
} SftChatTemplate;

/* "chatml" / "llama3" / "llama2" / "qwen3"; unknown is SFT_ERR_INVALID listing the names. */
SftStatus	sft_template_from_name(const char *name, SftTemplateKind *out, SftError *err);
const char *sft_template_name(SftTemplateKind kind);
const char *sft_template_name_list(void);	/* "chatml, llama3, llama2, qwen3" */

/*
 * The special token that closes an assistant turn (<|im_end|>, <|eot_id|>,
 * </s>): generation stops there and its mask bit is 1.  The id is -1 when the
 * tokenizer lacks it.
 */
const char *sft_template_end_of_turn_token(SftTemplateKind kind);
int32_t		sft_template_end_of_turn_id(SftTemplateKind kind, const SftTokenizer *tok);

/* SFT_ERR_INVALID naming the first special token of the template tok lacks. */
SftStatus	sft_template_check_tokenizer(SftTemplateKind kind, const SftTokenizer *tok,
										 SftError *err);

/*
 * Recognise a tokenizer_config.json Jinja chat_template.  Returns 1 and sets
 * kind (and, for templates that embed one, the default system prompt as a
 * newly allocated string in *default_system, else NULL) when recognised.
 */
int			sft_template_detect(const char *jinja, size_t len, SftTemplateKind *kind,
								char **default_system);

/*
 * A Jinja chat_template that renders as tpl does (default system prompt
 * included), appended to out, for tokenizer_config.json files we write;
 * sft_template_detect() recognises it.  qwen3 is SFT_ERR_UNSUPPORTED (only
 * Qwen3's own template, kept as imported, renders it).
 */
SftStatus	sft_template_jinja(const SftChatTemplate *tpl, SftBuf *out, SftError *err);

SftStatus	sft_chat_render(const SftChatTemplate *tpl, const SftTokenizer *tok,
							const SftConversation *conv, int add_generation_prompt,
							SftBuf *out, SftError *err);

typedef struct SftEncoded
{
	SftIntVec	ids;			/* [T] token ids */
	SftIntVec	mask;			/* [T] 1 = token counts in the loss */
	int			truncated;		/* 1 when max_length cut tokens off */
	int			n_masked;		/* number of 1s in mask */
} SftEncoded;

void		sft_encoded_init(SftEncoded *enc);
void		sft_encoded_free(SftEncoded *enc);

/*
 * max_length <= 0: no limit (longer sequences are cut and truncated set).
 * The conversation is checked for training (ends with an assistant message),
 * or for generation when add_generation_prompt is set.  out is reset first;
 * n_masked == 0 (possible only after truncation) is for the caller to report.
 */
SftStatus	sft_chat_encode(const SftChatTemplate *tpl, const SftTokenizer *tok,
							const SftConversation *conv, SftTrainOn train_on,
							int add_generation_prompt, int max_length,
							SftEncoded *out, SftError *err);

/*
 * Number of tokens of the rendered conversation (any valid shape), exactly
 * the ids sft_chat_encode would produce without a length limit.
 */
SftStatus	sft_chat_token_count(const SftChatTemplate *tpl, const SftTokenizer *tok,
								 const SftConversation *conv, int add_generation_prompt,
								 int64_t *count, SftError *err);

#endif							/* SFT_CORE_CHAT_TEMPLATE_H */
