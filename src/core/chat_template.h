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

#include <time.h>

#include "common.h"
#include "conversation.h"
#include "jinja.h"
#include "tokenizer.h"

typedef enum SftTemplateKind
{
	SFT_TEMPLATE_CHATML = 0,	/* SmolLM2, Qwen */
	SFT_TEMPLATE_LLAMA3,
	SFT_TEMPLATE_LLAMA2,
	SFT_TEMPLATE_QWEN3,			/* chatml with Qwen3's think blocks */
	SFT_TEMPLATE_JINJA			/* any Jinja chat template (chat_template_jinja.c) */
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

	/* SFT_TEMPLATE_JINJA only (the caller owns these) */
	const SftJinjaTemplate *jinja;	/* the parsed template */
	const struct json_object *kwargs;	/* template_kwargs object, or NULL */
	int			now_set;		/* strftime_now's clock: pinned when set */
	time_t		now;
	int			(*interrupt) (void *arg);	/* checked while rendering */
	void	   *interrupt_arg;
} SftChatTemplate;

/*
 * "chatml" / "llama3" / "llama2" / "qwen3"; unknown is SFT_ERR_INVALID listing
 * the names.  sft_template_name(SFT_TEMPLATE_JINJA) is "jinja", which is not
 * a name sft_template_from_name accepts (a Jinja template is its source).
 */
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

/* ---------------------------------------------------------------------------
 * Jinja templates (chat_template_jinja.c)
 *
 * A template of kind SFT_TEMPLATE_JINJA renders as transformers'
 * apply_chat_template: variables messages (role, content), add_generation_prompt,
 * tools and documents (None unless template_kwargs sets them), bos_token and
 * eos_token from tokenizer_config.json, then template_kwargs.  Encoding splits
 * the text at the tokenizer's special tokens the template wrote (special-token
 * text inside a message's content stays plain text) and tokenizes the runs in
 * between as Hugging Face does; nothing is added (a template that writes BOS
 * gets one BOS).  The mask: the spans of {% generation %} blocks when the
 * template has them; otherwise, per assistant message, from the end of the
 * rendering of the conversation before it with the generation prompt (when
 * that is a prefix of the whole text; else from its content) to the end of
 * its content as rendered, plus the special token the template writes right
 * after it (whitespace in between included).  An assistant message whose
 * content the template does not copy into the text is refused.
 * ------------------------------------------------------------------------- */

/* kwargs must be an object without messages / add_generation_prompt. */
SftStatus	sft_template_kwargs_check(const struct json_object *kwargs, SftError *err);

/* template_kwargs from JSON text (checked as above); freed with sft_template_kwargs_free. */
SftStatus	sft_template_kwargs_parse(const char *json, size_t len, struct json_object **out,
									  SftError *err);
void		sft_template_kwargs_free(struct json_object *kwargs);

/* 1 when kwargs is NULL or an object without keys. */
int			sft_template_kwargs_empty(const struct json_object *kwargs);

/*
 * The special token the template closes an assistant turn with (found by
 * rendering a probe conversation), else tokenizer_config's eos token; -1
 * when neither exists.
 */
int32_t		sft_template_jinja_end_of_turn_id(const SftChatTemplate *tpl, const SftTokenizer *tok,
											  SftError *err);

/*
 * 1 when built-in template `kind` (with default_system) renders exactly as the
 * Jinja template on a set of probe conversations, so the fast path may stand
 * in for it.
 */
int			sft_template_matches_jinja(SftTemplateKind kind, const char *default_system,
									   const SftJinjaTemplate *jinja, const SftTokenizer *tok);

#endif							/* SFT_CORE_CHAT_TEMPLATE_H */
