/*
 * jinja.h: a Jinja engine for Hugging Face chat templates.
 *
 * It renders what transformers' apply_chat_template renders: Jinja2's
 * ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
 * loopcontrols extension (break/continue), the {% generation %} block tag,
 * tojson as json.dumps(x, ensure_ascii=False), the globals raise_exception()
 * and strftime_now(), lenient undefined values and Python's printing of
 * values.  Anything outside that language is refused with an error naming
 * the construct and its line, never rendered differently.
 *
 * A template is untrusted input: parsing and rendering are bounded (nesting
 * depth, evaluation steps, output and memory), never touch files, and check an
 * interrupt callback the caller supplies.
 *
 * Variables come in as a json-c object (messages, add_generation_prompt,
 * bos_token, template kwargs...), or, on the hot path, straight from a parsed
 * conversation (SftJinjaRender.conv) with only the kwargs as JSON.  The renderer also reports where its output
 * came from, for assistant masks: the byte spans copied from the "content"
 * string of each message (through filters and methods that keep characters:
 * trim, strip, split, slicing, concatenation, macro output) and the spans
 * written inside {% generation %} blocks.
 */
#ifndef SFT_CORE_JINJA_H
#define SFT_CORE_JINJA_H

#include <time.h>

#include "common.h"
#include "conversation.h"

typedef struct SftJinjaTemplate SftJinjaTemplate;
struct json_object;

/* Parse (and check) Jinja source; *out is freed with sft_jinja_free. */
SftStatus	sft_jinja_parse(const char *src, size_t len, SftJinjaTemplate **out,
							SftError *err);
void		sft_jinja_free(SftJinjaTemplate *tpl);

typedef struct SftJinjaLimits
{
	size_t		max_output;		/* bytes of rendered text */
	size_t		max_memory;		/* bytes of values built while rendering */
	int64_t		max_steps;		/* evaluation steps (nodes, loop iterations) */
	int			max_depth;		/* macro call and expression nesting */
} SftJinjaLimits;

/* Generous for any chat template, small enough for a backend. */
void		sft_jinja_default_limits(SftJinjaLimits *limits);

/* A byte range of the output: content of message `message`, or a generation block (-1). */
typedef struct SftJinjaSpan
{
	size_t		start;
	size_t		len;
	int			message;
} SftJinjaSpan;

typedef struct SftJinjaSpans
{
	SftJinjaSpan *data;
	size_t		len;
	size_t		cap;
} SftJinjaSpans;

void		sft_jinja_spans_free(SftJinjaSpans *spans);

typedef struct SftJinjaRender
{
	const struct json_object *vars; /* object: the template's variables */

	/*
	 * With conv set, the chat variables are built directly (no JSON): first
	 * bos_token / eos_token (when not NULL), tools and documents as None,
	 * then vars over them (template_kwargs), then messages, the first
	 * conv_upto messages of conv as {role, content} dicts after a system
	 * message `system` when that is not NULL, and add_generation_prompt.
	 * Content spans number the messages as the template sees them.
	 */
	const SftConversation *conv;
	int			conv_upto;
	const char *system;
	size_t		system_len;
	int			add_generation_prompt;
	const char *bos_token;
	const char *eos_token;

	SftJinjaLimits limits;
	/* strftime_now's clock; now_set = 0: the current time */
	int			now_set;
	time_t		now;
	/* called every few thousand steps; non-zero stops with SFT_ERR_LIMIT */
	int			(*interrupt) (void *arg);
	void	   *interrupt_arg;
	/* optional: spans of messages[i].content and of generation blocks */
	SftJinjaSpans *content_spans;
	SftJinjaSpans *generation_spans;
	/* set when the render failed in raise_exception(): the message is the template's */
	int			raised;
} SftJinjaRender;

void		sft_jinja_render_init(SftJinjaRender *r, const struct json_object *vars);

/* Render appending to out (out is reset first). */
SftStatus	sft_jinja_render(const SftJinjaTemplate *tpl, SftJinjaRender *r, SftBuf *out,
							 SftError *err);

/* 1 when the template contains a {% generation %} block. */
int			sft_jinja_has_generation(const SftJinjaTemplate *tpl);

#endif							/* SFT_CORE_JINJA_H */
