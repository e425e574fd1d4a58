/*
 * chat_template.c: the built-in chat templates (chatml, llama3, llama2, qwen3), their
 * detection from a tokenizer_config.json Jinja string, and the encoder that
 * produces token ids plus the assistant-only loss mask.
 *
 * Templates: chatml (SmolLM2, Qwen2/2.5), llama3 (Llama 3 Instruct), llama2
 * (Llama 2 chat), qwen3 (chatml with Qwen3's think blocks).
 *
 * Design
 * ------
 * A template is written once, as a walk over the conversation that emits
 * pieces: text pieces and the template's own special tokens, each flagged as
 * part of the reply the model is trained to produce or not.  Two sinks consume
 * the same walk:
 *   - the render sink concatenates the pieces into text (special tokens as
 *     their text), which is sft_render() and what the Jinja reference prints;
 *   - the encode sink gathers consecutive text pieces into one run, tokenizes
 *     each run as a whole (split_special = 0, so special-token text typed by a
 *     user stays plain text) and emits the special tokens by id.
 * Hugging Face's apply_chat_template(tokenize=True) renders the text and
 * tokenizes it after splitting at added tokens; each split is normalised and
 * pre-tokenized on its own.  Splitting at the template's specials is
 * therefore the same segmentation whenever user text holds no added-token
 * text, and the ids are identical (test/suites/template_parity.sh checks
 * this against the reference on real vocabularies).  Where content does
 * spell an added token ("<|im_end|>", Qwen's "<think>"), the reference turns
 * it into that token and we keep it as text: a conversation cannot inject
 * control tokens, at the price of different ids for such rows.  One more
 * case differs: a Metaspace pre-tokenizer with prepend_scheme "first" (newer
 * SentencePiece conversions) prefixes "▁" only at offset 0 of the whole
 * rendered text in the reference, while each run is encoded here as an input
 * of its own; Llama 2 chat's own tokenizer.json (Prepend normalizer, which
 * applies to every split) is not affected.
 *
 * The mask: a token is 1 when its first byte lies inside a trained span.  The
 * trained span of an assistant turn is what the model must generate after the
 * generation prompt, up to and including the token that closes the turn:
 *   chatml  content + <|im_end|>                (the "\n" after it is 0)
 *   llama3  trim(content) + <|eot_id|>
 *   qwen3   [<think>\n{reasoning}\n</think>\n\n] + content + <|im_end|>
 *   llama2  " " + strip(content) + " " + </s>   (the spaces are generated too:
 *           the prompt ends with " [/INST]" and SentencePiece folds the space
 *           into the first content token "▁Hello"; the lone "▁" before </s>
 *           must be learnt or the model never closes its turn)
 * Role headers, system and user text are 0.  With SFT_TRAIN_LAST_ASSISTANT
 * only the final assistant turn's span is trained.
 *
 * Whitespace trimming follows Python's str.strip() (Jinja's trim filter and
 * .strip() are Python's in the transformers reference; JavaScript's trim()
 * differs on U+001C..U+001F, U+0085 and U+FEFF).  Likewise an empty system
 * prompt still gets Llama 2's <<SYS>> block, as in Python ('' != false).
 *
 * The encoder reports n_masked; a training conversation always has at least
 * its final end-of-turn token trained, so zero only happens when max_length
 * cut every reply off, and the caller must not train on such a row
 * (sft_encode raises an error; the training worker counts and skips it).
 */
#include "chat_template.h"
#include "chat_template_internal.h"

#include <string.h>


/* ---------------------------------------------------------------------------
 * Template names and their special tokens
 * ------------------------------------------------------------------------- */

static const char *const template_names[] = {"chatml", "llama3", "llama2", "qwen3"};

#define SFT_TEMPLATE_COUNT 4
#define SFT_TEMPLATE_NAME_LIST "chatml, llama3, llama2, qwen3"

/* The special tokens a template emits, by role in the template. */
typedef enum TemplateSpecial
{
	SPECIAL_TURN_START = 0,		/* <|im_start|>, <|start_header_id|>, <s> */
	SPECIAL_TURN_END,			/* <|im_end|>, <|eot_id|>, </s> */
	SPECIAL_HEADER_END,			/* llama3: <|end_header_id|> */
	SPECIAL_BOS,				/* llama3: <|begin_of_text|> */
	SPECIAL_THINK_START,		/* qwen3: <think> */
	SPECIAL_THINK_END,			/* qwen3: </think> */
	SPECIAL_COUNT
} TemplateSpecial;

static const char *const template_specials[SFT_TEMPLATE_COUNT][SPECIAL_COUNT] = {
	[SFT_TEMPLATE_CHATML] = {"<|im_start|>", "<|im_end|>", NULL, NULL, NULL, NULL},
	[SFT_TEMPLATE_LLAMA3] = {"<|start_header_id|>", "<|eot_id|>", "<|end_header_id|>",
	"<|begin_of_text|>", NULL, NULL},
	[SFT_TEMPLATE_LLAMA2] = {"<s>", "</s>", NULL, NULL, NULL, NULL},
	[SFT_TEMPLATE_QWEN3] = {"<|im_start|>", "<|im_end|>", NULL, NULL, "<think>", "</think>"},
};

static int
template_kind_valid(SftTemplateKind kind)
{
	return kind >= 0 && kind < SFT_TEMPLATE_COUNT;
}

SftStatus
sft_train_on_from_name(const char *name, SftTrainOn *out, SftError *err)
{
	if (strcmp(name, "all_assistant") == 0)
		*out = SFT_TRAIN_ALL_ASSISTANT;
	else if (strcmp(name, "last_assistant") == 0)
		*out = SFT_TRAIN_LAST_ASSISTANT;
	else
		return sft_error(err, SFT_ERR_INVALID, "invalid train_on value \"%s\"", name);
	return SFT_OK;
}

const char *
sft_train_on_name(SftTrainOn train_on)
{
	return train_on == SFT_TRAIN_LAST_ASSISTANT ? "last_assistant" : "all_assistant";
}

SftStatus
sft_template_from_name(const char *name, SftTemplateKind *out, SftError *err)
{
	for (int k = 0; k < SFT_TEMPLATE_COUNT; k++)
	{
		if (strcmp(name, template_names[k]) == 0)
		{
			*out = (SftTemplateKind) k;
			return SFT_OK;
		}
	}
	return sft_error(err, SFT_ERR_INVALID,
					 "unknown chat template \"%s\" (valid names: " SFT_TEMPLATE_NAME_LIST ")",
					 name);
}

const char *
sft_template_name(SftTemplateKind kind)
{
	if (kind == SFT_TEMPLATE_JINJA)
		return "jinja";
	return template_kind_valid(kind) ? template_names[kind] : "unknown";
}

const char *
sft_template_name_list(void)
{
	return SFT_TEMPLATE_NAME_LIST;
}

const char *
sft_template_end_of_turn_token(SftTemplateKind kind)
{
	return template_kind_valid(kind) ? template_specials[kind][SPECIAL_TURN_END] : NULL;
}

/* Resolve the template's special tokens in tok; ids[] gets -1 for unused. */
static SftStatus
resolve_specials(SftTemplateKind kind, const SftTokenizer *tok,
				 int32_t ids[SPECIAL_COUNT], SftError *err)
{
	if (!template_kind_valid(kind))
		return sft_error(err, SFT_ERR_INTERNAL, "invalid template kind %d", (int) kind);
	for (int s = 0; s < SPECIAL_COUNT; s++)
	{
		const char *text = template_specials[kind][s];

		ids[s] = -1;
		if (text == NULL)
			continue;
		ids[s] = sft_tokenizer_token_to_id(tok, text, strlen(text));
		if (ids[s] < 0)
			return sft_error(err, SFT_ERR_INVALID,
							 "chat template %s needs the token %s, which the tokenizer does not have",
							 template_names[kind], text);
	}
	return SFT_OK;
}

SftStatus
sft_template_check_tokenizer(SftTemplateKind kind, const SftTokenizer *tok, SftError *err)
{
	int32_t		ids[SPECIAL_COUNT];

	if (kind == SFT_TEMPLATE_JINJA)
		return SFT_OK;			/* a Jinja template names its tokens as text */
	return resolve_specials(kind, tok, ids, err);
}

int32_t
sft_template_end_of_turn_id(SftTemplateKind kind, const SftTokenizer *tok)
{
	const char *text = sft_template_end_of_turn_token(kind);

	return text ? sft_tokenizer_token_to_id(tok, text, strlen(text)) : -1;
}

/* ---------------------------------------------------------------------------
 * Python str.strip()
 * ------------------------------------------------------------------------- */

/* Python's str.isspace(): bidi classes WS, B, S and category Zs. */
static int
py_isspace(uint32_t cp)
{
	if (cp <= 0x20)
		return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
	if (cp < 0x85)
		return 0;
	return cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
		(cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
		cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Decode one code point of valid UTF-8 at s (n bytes available). */
static uint32_t
utf8_at(const unsigned char *s, size_t n, size_t *step)
{
	unsigned char c = s[0];
	size_t		len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
	uint32_t	cp;

	if (len > n)
	{
		/* truncated input: treat the byte as an opaque non-space character */
		*step = 1;
		return 0xFFFD;
	}
	*step = len;
	if (len == 1)
		return c;
	cp = c & (0x7F >> len);
	for (size_t i = 1; i < len; i++)
		cp = (cp << 6) | (s[i] & 0x3F);
	return cp;
}

/* The [*start, *end) range of s[0..len) that Python's s.strip() keeps. */
static void
py_strip(const char *s, size_t len, size_t *start, size_t *end)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		b = 0;
	size_t		e = len;
	size_t		step;

	while (b < e && py_isspace(utf8_at(u + b, e - b, &step)))
		b += step;
	while (e > b)
	{
		size_t		p = e - 1;

		while (p > b && (u[p] & 0xC0) == 0x80)
			p--;
		if (!py_isspace(utf8_at(u + p, e - p, &step)) || p + step != e)
			break;
		e = p;
	}
	*start = b;
	*end = e;
}

/* ---------------------------------------------------------------------------
 * Sinks: render to text, or encode to ids + mask
 * ------------------------------------------------------------------------- */

typedef struct TrainRange
{
	size_t		start;			/* byte offsets into the current run */
	size_t		end;
} TrainRange;

typedef struct Sink
{
	int			encode;			/* 0: render into text, 1: tokenize */
	SftError   *err;

	/* render */
	SftBuf	   *text;

	/* encode */
	const SftTokenizer *tok;
	int32_t		special_ids[SPECIAL_COUNT];
	SftBuf		run;			/* text since the last special token */
	TrainRange *ranges;			/* [n_ranges] trained byte ranges of run */
	size_t		n_ranges;
	size_t		cap_ranges;
	SftIntVec	run_ids;		/* [tokens of run] scratch */
	SftIntVec	run_offsets;	/* [tokens of run] scratch */
	SftIntVec  *ids;			/* [T] output ids */
	SftIntVec  *mask;			/* [T] output mask; NULL when only counting */
} Sink;

static void
sink_free(Sink *sink)
{
	sft_buf_free(&sink->run);
	sft_free(sink->ranges);
	sink->ranges = NULL;
	sft_intvec_free(&sink->run_ids);
	sft_intvec_free(&sink->run_offsets);
}

static SftStatus
nomem(SftError *err)
{
	return sft_error(err, SFT_ERR_NOMEM, "out of memory while applying the chat template");
}

static SftStatus
emit_text(Sink *sink, const char *s, size_t len, int train)
{
	if (len == 0)
		return SFT_OK;
	if (!sink->encode)
		return sft_buf_append(sink->text, s, len) == SFT_OK ? SFT_OK : nomem(sink->err);

	if (train && sink->mask)
	{
		size_t		start = sink->run.len;

		if (sink->n_ranges > 0 && sink->ranges[sink->n_ranges - 1].end == start)
			sink->ranges[sink->n_ranges - 1].end = start + len;
		else
		{
			if (sink->n_ranges == sink->cap_ranges)
			{
				size_t		cap = sink->cap_ranges ? sink->cap_ranges * 2 : 8;
				TrainRange *r = sft_realloc(sink->ranges, cap * sizeof(TrainRange));

				if (r == NULL)
					return nomem(sink->err);
				sink->ranges = r;
				sink->cap_ranges = cap;
			}
			sink->ranges[sink->n_ranges].start = start;
			sink->ranges[sink->n_ranges].end = start + len;
			sink->n_ranges++;
		}
	}
	return sft_buf_append(&sink->run, s, len) == SFT_OK ? SFT_OK : nomem(sink->err);
}

static SftStatus
emit_cstr(Sink *sink, const char *s, int train)
{
	return emit_text(sink, s, strlen(s), train);
}

/* Tokenize the pending text run and append its ids and mask bits. */
static SftStatus
flush_run(Sink *sink)
{
	SftStatus	st;
	size_t		r = 0;

	if (sink->run.len == 0)
		return SFT_OK;
	if (sink->run.len > INT32_MAX)
		return sft_error(sink->err, SFT_ERR_LIMIT,
						 "a text run of %zu bytes between special tokens is too long to tokenize",
						 sink->run.len);
	sink->run_ids.len = 0;
	sink->run_offsets.len = 0;
	st = sft_tokenizer_encode(sink->tok, sink->run.data, sink->run.len, 0,
							  &sink->run_ids, sink->mask ? &sink->run_offsets : NULL,
							  sink->err);
	if (st != SFT_OK)
		return st;
	for (size_t k = 0; k < sink->run_ids.len; k++)
	{
		if (sft_intvec_push(sink->ids, sink->run_ids.data[k]) != SFT_OK)
			return nomem(sink->err);
		if (sink->mask)
		{
			/* offsets are non-decreasing: walk the sorted ranges once */
			size_t		off = (size_t) sink->run_offsets.data[k];
			int			bit;

			while (r < sink->n_ranges && sink->ranges[r].end <= off)
				r++;
			bit = r < sink->n_ranges && sink->ranges[r].start <= off;
			if (sft_intvec_push(sink->mask, bit) != SFT_OK)
				return nomem(sink->err);
		}
	}
	sink->run.len = 0;
	sink->n_ranges = 0;
	return SFT_OK;
}

static SftStatus
emit_special(Sink *sink, TemplateSpecial which, const char *text, int train)
{
	SftStatus	st;

	if (!sink->encode)
		return sft_buf_append_str(sink->text, text) == SFT_OK ? SFT_OK : nomem(sink->err);
	if ((st = flush_run(sink)) != SFT_OK)
		return st;
	if (sft_intvec_push(sink->ids, sink->special_ids[which]) != SFT_OK)
		return nomem(sink->err);
	if (sink->mask && sft_intvec_push(sink->mask, train ? 1 : 0) != SFT_OK)
		return nomem(sink->err);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * The templates
 * ------------------------------------------------------------------------- */

#define TRY(expr) do { SftStatus st_ = (expr); if (st_ != SFT_OK) return st_; } while (0)

/*
 * Whether message i is trained under train_on (last: index of final
 * assistant); an assistant message marked "weight": 0 never is.
 */
static int
trained(const SftConversation *conv, int i, SftTrainOn train_on, int last_assistant)
{
	if (conv->messages[i].role != SFT_ROLE_ASSISTANT || conv->messages[i].no_loss)
		return 0;
	return train_on == SFT_TRAIN_ALL_ASSISTANT || i == last_assistant;
}

/*
 * chatml (SmolLM2, Qwen2/2.5):
 *   [<|im_start|>system\n{default_system}<|im_end|>\n]   when no system message
 *   <|im_start|>{role}\n{content}<|im_end|>\n             per message
 *   <|im_start|>assistant\n                               generation prompt
 */
static SftStatus
walk_chatml(const SftChatTemplate *tpl, const SftConversation *conv,
			int add_generation_prompt, SftTrainOn train_on, int last_assistant, Sink *sink)
{
	const char *start = template_specials[SFT_TEMPLATE_CHATML][SPECIAL_TURN_START];
	const char *end = template_specials[SFT_TEMPLATE_CHATML][SPECIAL_TURN_END];

	if (tpl->default_system && conv->messages[0].role != SFT_ROLE_SYSTEM)
	{
		TRY(emit_special(sink, SPECIAL_TURN_START, start, 0));
		TRY(emit_cstr(sink, "system\n", 0));
		TRY(emit_text(sink, tpl->default_system, tpl->default_system_len, 0));
		TRY(emit_special(sink, SPECIAL_TURN_END, end, 0));
		TRY(emit_cstr(sink, "\n", 0));
	}
	for (int i = 0; i < conv->n; i++)
	{
		const SftMessage *m = &conv->messages[i];
		int			train = trained(conv, i, train_on, last_assistant);

		TRY(emit_special(sink, SPECIAL_TURN_START, start, 0));
		TRY(emit_cstr(sink, sft_role_name(m->role), 0));
		TRY(emit_cstr(sink, "\n", 0));
		TRY(emit_text(sink, m->content, m->len, train));
		TRY(emit_special(sink, SPECIAL_TURN_END, end, train));
		TRY(emit_cstr(sink, "\n", 0));
	}
	if (add_generation_prompt)
	{
		TRY(emit_special(sink, SPECIAL_TURN_START, start, 0));
		TRY(emit_cstr(sink, "assistant\n", 0));
	}
	return SFT_OK;
}

/*
 * llama3 (Meta Llama 3 Instruct):
 *   <|begin_of_text|>                                     before the first message
 *   <|start_header_id|>{role}<|end_header_id|>\n\n{trim(content)}<|eot_id|>
 *   <|start_header_id|>assistant<|end_header_id|>\n\n     generation prompt
 * A default system prompt is inserted as a first system message.
 */
static SftStatus
llama3_message(Sink *sink, const char *role, const char *content, size_t len,
			   int first, int train)
{
	const char *const *sp = template_specials[SFT_TEMPLATE_LLAMA3];
	size_t		b,
				e;

	py_strip(content, len, &b, &e);
	if (first)
		TRY(emit_special(sink, SPECIAL_BOS, sp[SPECIAL_BOS], 0));
	TRY(emit_special(sink, SPECIAL_TURN_START, sp[SPECIAL_TURN_START], 0));
	TRY(emit_cstr(sink, role, 0));
	TRY(emit_special(sink, SPECIAL_HEADER_END, sp[SPECIAL_HEADER_END], 0));
	TRY(emit_cstr(sink, "\n\n", 0));
	TRY(emit_text(sink, content + b, e - b, train));
	TRY(emit_special(sink, SPECIAL_TURN_END, sp[SPECIAL_TURN_END], train));
	return SFT_OK;
}

static SftStatus
walk_llama3(const SftChatTemplate *tpl, const SftConversation *conv,
			int add_generation_prompt, SftTrainOn train_on, int last_assistant, Sink *sink)
{
	const char *const *sp = template_specials[SFT_TEMPLATE_LLAMA3];
	int			first = 1;

	if (tpl->default_system && conv->messages[0].role != SFT_ROLE_SYSTEM)
	{
		TRY(llama3_message(sink, "system", tpl->default_system, tpl->default_system_len, 1, 0));
		first = 0;
	}
	for (int i = 0; i < conv->n; i++)
	{
		const SftMessage *m = &conv->messages[i];

		TRY(llama3_message(sink, sft_role_name(m->role), m->content, m->len, first,
						   trained(conv, i, train_on, last_assistant)));
		first = 0;
	}
	if (add_generation_prompt)
	{
		TRY(emit_special(sink, SPECIAL_TURN_START, sp[SPECIAL_TURN_START], 0));
		TRY(emit_cstr(sink, "assistant", 0));
		TRY(emit_special(sink, SPECIAL_HEADER_END, sp[SPECIAL_HEADER_END], 0));
		TRY(emit_cstr(sink, "\n\n", 0));
	}
	return SFT_OK;
}

/*
 * llama2 (Meta Llama 2 chat):
 *   <s>[INST] {strip(user)} [/INST]                       per user message
 *   " " {strip(assistant)} " " </s>                       per assistant message
 * The system prompt (or the default one) becomes
 * "<<SYS>>\n{system}\n<</SYS>>\n\n" in front of the first user message, and
 * the strip() applies to that whole string, as in the reference.  The
 * reference has no generation prompt: a prompt already ends with " [/INST]".
 */
static SftStatus
walk_llama2(const SftChatTemplate *tpl, const SftConversation *conv,
			SftTrainOn train_on, int last_assistant, Sink *sink)
{
	const char *const *sp = template_specials[SFT_TEMPLATE_LLAMA2];
	const char *system = NULL;
	size_t		system_len = 0;
	int			first = 0;
	SftBuf		joined;
	SftStatus	st = SFT_OK;

	if (conv->messages[0].role == SFT_ROLE_SYSTEM)
	{
		if (conv->n > 1 && conv->messages[1].role == SFT_ROLE_SYSTEM)
			return sft_error(sink->err, SFT_ERR_INVALID,
							 "message 1: the llama2 template takes one system message "
							 "(merge them with sft_merge_system)");
		system = conv->messages[0].content;
		system_len = conv->messages[0].len;
		first = 1;
	}
	else if (tpl->default_system)
	{
		system = tpl->default_system;
		system_len = tpl->default_system_len;
	}

	sft_buf_init(&joined);
	for (int i = first; i < conv->n && st == SFT_OK; i++)
	{
		const SftMessage *m = &conv->messages[i];
		const char *content = m->content;
		size_t		len = m->len;
		size_t		b,
					e;

		if (i == first && system)
		{
			if (sft_buf_append_str(&joined, "<<SYS>>\n") != SFT_OK ||
				sft_buf_append(&joined, system, system_len) != SFT_OK ||
				sft_buf_append_str(&joined, "\n<</SYS>>\n\n") != SFT_OK ||
				sft_buf_append(&joined, m->content, m->len) != SFT_OK)
			{
				st = nomem(sink->err);
				break;
			}
			content = joined.data;
			len = joined.len;
		}
		py_strip(content, len, &b, &e);
		if (m->role == SFT_ROLE_USER)
		{
			if ((st = emit_special(sink, SPECIAL_TURN_START, sp[SPECIAL_TURN_START], 0)) != SFT_OK ||
				(st = emit_cstr(sink, "[INST] ", 0)) != SFT_OK ||
				(st = emit_text(sink, content + b, e - b, 0)) != SFT_OK ||
				(st = emit_cstr(sink, " [/INST]", 0)) != SFT_OK)
				break;
		}
		else
		{
			int			train = trained(conv, i, train_on, last_assistant);

			if ((st = emit_cstr(sink, " ", train)) != SFT_OK ||
				(st = emit_text(sink, content + b, e - b, train)) != SFT_OK ||
				(st = emit_cstr(sink, " ", train)) != SFT_OK ||
				(st = emit_special(sink, SPECIAL_TURN_END, sp[SPECIAL_TURN_END], train)) != SFT_OK)
				break;
		}
	}
	sft_buf_free(&joined);
	return st;
}

/*
 * qwen3 (Qwen3's own template, without tools): chatml, except for assistant
 * turns.  A reply's "<think>...</think>" part is cut off; the reply after the
 * last user query gets a think block back, holding that reasoning (empty when
 * there was none): "<|im_start|>assistant\n<think>\n{reasoning}\n</think>\n\n
 * {reply}<|im_end|>\n".  Earlier replies keep only their answer.  The "last
 * user query" skips user messages that are entirely a <tool_response>, as
 * the reference does.  The think block is part of the trained reply.
 */

/* Last occurrence of needle in s[0..len), or NULL. */
static const char *
find_last(const char *s, size_t len, const char *needle)
{
	size_t		n = strlen(needle);
	const char *hit = NULL;

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(s + i, needle, n) == 0)
			hit = s + i;
	return hit;
}

static const char *
find_first(const char *s, size_t len, const char *needle)
{
	size_t		n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(s + i, needle, n) == 0)
			return s + i;
	return NULL;
}

/* Python's s.strip('\n') pieces: what lstrip/rstrip keep. */
static void
lstrip_newlines(const char **s, size_t *len)
{
	while (*len > 0 && **s == '\n')
	{
		(*s)++;
		(*len)--;
	}
}

static void
rstrip_newlines(const char *s, size_t *len)
{
	while (*len > 0 && s[*len - 1] == '\n')
		(*len)--;
}

static int
has_affixes(const char *s, size_t len, const char *prefix, const char *suffix)
{
	size_t		p = strlen(prefix);
	size_t		q = strlen(suffix);

	return len >= p && len >= q && memcmp(s, prefix, p) == 0 && memcmp(s + len - q, suffix, q) == 0;
}

static SftStatus
walk_qwen3(const SftChatTemplate *tpl, const SftConversation *conv,
		   int add_generation_prompt, SftTrainOn train_on, int last_assistant, Sink *sink)
{
	const char *const *sp = template_specials[SFT_TEMPLATE_QWEN3];
	int			first = 0;
	int			last_query = conv->n - 1;

	if (conv->messages[0].role == SFT_ROLE_SYSTEM || tpl->default_system)
	{
		int			explicit = conv->messages[0].role == SFT_ROLE_SYSTEM;

		TRY(emit_special(sink, SPECIAL_TURN_START, sp[SPECIAL_TURN_START], 0));
		TRY(emit_cstr(sink, "system\n", 0));
		TRY(emit_text(sink, explicit ? conv->messages[0].content : tpl->default_system,
					  explicit ? conv->messages[0].len : tpl->default_system_len, 0));
		TRY(emit_special(sink, SPECIAL_TURN_END, sp[SPECIAL_TURN_END], 0));
		TRY(emit_cstr(sink, "\n", 0));
		first = explicit;
	}
	for (int i = conv->n - 1; i >= 0; i--)
	{
		const SftMessage *m = &conv->messages[i];

		if (m->role == SFT_ROLE_USER &&
			!has_affixes(m->content, m->len, "<tool_response>", "</tool_response>"))
		{
			last_query = i;
			break;
		}
	}

	for (int i = first; i < conv->n; i++)
	{
		const SftMessage *m = &conv->messages[i];
		int			train = trained(conv, i, train_on, last_assistant);
		const char *content = m->content;
		size_t		len = m->len;
		const char *reasoning = "";
		size_t		reasoning_len = 0;
		const char *end_think;

		TRY(emit_special(sink, SPECIAL_TURN_START, sp[SPECIAL_TURN_START], 0));
		TRY(emit_cstr(sink, sft_role_name(m->role), 0));
		TRY(emit_cstr(sink, "\n", 0));
		if (m->role != SFT_ROLE_ASSISTANT)
		{
			TRY(emit_text(sink, content, len, 0));
			TRY(emit_special(sink, SPECIAL_TURN_END, sp[SPECIAL_TURN_END], 0));
			TRY(emit_cstr(sink, "\n", 0));
			continue;
		}

		end_think = find_last(m->content, m->len, "</think>");
		if (end_think)
		{
			/* content.split('</think>')[-1].lstrip('\n') */
			const char *before_end = find_first(m->content, m->len, "</think>");
			const char *start_think;

			content = end_think + strlen("</think>");
			len = (size_t) (m->content + m->len - content);
			lstrip_newlines(&content, &len);
			/* .split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
			reasoning = m->content;
			reasoning_len = (size_t) (before_end - m->content);
			rstrip_newlines(reasoning, &reasoning_len);
			start_think = find_last(reasoning, reasoning_len, "<think>");
			if (start_think)
			{
				const char *after = start_think + strlen("<think>");

				reasoning_len -= (size_t) (after - reasoning);
				reasoning = after;
			}
			lstrip_newlines(&reasoning, &reasoning_len);
		}

		if (i > last_query && (i == conv->n - 1 || reasoning_len > 0))
		{
			/* reasoning_content.strip('\n'), content.lstrip('\n') */
			lstrip_newlines(&reasoning, &reasoning_len);
			rstrip_newlines(reasoning, &reasoning_len);
			lstrip_newlines(&content, &len);
			TRY(emit_special(sink, SPECIAL_THINK_START, sp[SPECIAL_THINK_START], train));
			TRY(emit_cstr(sink, "\n", train));
			TRY(emit_text(sink, reasoning, reasoning_len, train));
			TRY(emit_cstr(sink, "\n", train));
			TRY(emit_special(sink, SPECIAL_THINK_END, sp[SPECIAL_THINK_END], train));
			TRY(emit_cstr(sink, "\n\n", train));
		}
		TRY(emit_text(sink, content, len, train));
		TRY(emit_special(sink, SPECIAL_TURN_END, sp[SPECIAL_TURN_END], train));
		TRY(emit_cstr(sink, "\n", 0));
	}
	if (add_generation_prompt)
	{
		TRY(emit_special(sink, SPECIAL_TURN_START, sp[SPECIAL_TURN_START], 0));
		TRY(emit_cstr(sink, "assistant\n", 0));
	}
	return SFT_OK;
}

static SftStatus
walk(const SftChatTemplate *tpl, const SftConversation *conv, int add_generation_prompt,
	 SftTrainOn train_on, Sink *sink)
{
	int			last_assistant = -1;

	for (int i = 0; i < conv->n; i++)
		if (conv->messages[i].role == SFT_ROLE_ASSISTANT)
			last_assistant = i;

	switch (tpl->kind)
	{
		case SFT_TEMPLATE_CHATML:
			return walk_chatml(tpl, conv, add_generation_prompt, train_on, last_assistant, sink);
		case SFT_TEMPLATE_LLAMA3:
			return walk_llama3(tpl, conv, add_generation_prompt, train_on, last_assistant, sink);
		case SFT_TEMPLATE_LLAMA2:
			return walk_llama2(tpl, conv, train_on, last_assistant, sink);
		case SFT_TEMPLATE_QWEN3:
			return walk_qwen3(tpl, conv, add_generation_prompt, train_on, last_assistant, sink);
		case SFT_TEMPLATE_JINJA:
			break;				/* rendered by the engine, never walked */
	}
	return sft_error(sink->err, SFT_ERR_INTERNAL, "invalid template kind %d", (int) tpl->kind);
}

/* ---------------------------------------------------------------------------
 * Public entry points
 * ------------------------------------------------------------------------- */

static SftStatus
check_content(const SftConversation *conv, SftError *err)
{
	for (int i = 0; i < conv->n; i++)
	{
		size_t		bad = sft_utf8_invalid_offset(conv->messages[i].content,
												  conv->messages[i].len);

		if (bad != (size_t) -1)
			return sft_error(err, SFT_ERR_INVALID,
							 "message %d: content is not valid UTF-8 (byte %zu)", i, bad);
	}
	return SFT_OK;
}

SftStatus
sft_chat_render(const SftChatTemplate *tpl, const SftTokenizer *tok,
				const SftConversation *conv, int add_generation_prompt,
				SftBuf *out, SftError *err)
{
	Sink		sink;

	TRY(sft_conversation_check(conv, SFT_CONV_ANY, err));
	TRY(check_content(conv, err));
	if (tpl->kind == SFT_TEMPLATE_JINJA)
		return sft_chat_jinja_render(tpl, tok, conv, add_generation_prompt, out, err);
	memset(&sink, 0, sizeof(sink));
	sink.err = err;
	sink.text = out;
	return walk(tpl, conv, add_generation_prompt, SFT_TRAIN_ALL_ASSISTANT, &sink);
}

void
sft_encoded_init(SftEncoded *enc)
{
	sft_intvec_init(&enc->ids);
	sft_intvec_init(&enc->mask);
	enc->truncated = 0;
	enc->n_masked = 0;
}

void
sft_encoded_free(SftEncoded *enc)
{
	sft_intvec_free(&enc->ids);
	sft_intvec_free(&enc->mask);
	enc->truncated = 0;
	enc->n_masked = 0;
}

/* Tokenize conv through the template into ids (and mask when not NULL). */
static SftStatus
encode_into(const SftChatTemplate *tpl, const SftTokenizer *tok,
			const SftConversation *conv, SftTrainOn train_on, int add_generation_prompt,
			SftIntVec *ids, SftIntVec *mask, SftError *err)
{
	Sink		sink;
	SftStatus	st;

	if (tpl->kind == SFT_TEMPLATE_JINJA)
		return sft_chat_jinja_encode(tpl, tok, conv, train_on, add_generation_prompt, ids, mask, err);
	memset(&sink, 0, sizeof(sink));
	sink.encode = 1;
	sink.err = err;
	sink.tok = tok;
	sink.ids = ids;
	sink.mask = mask;
	sft_buf_init(&sink.run);
	sft_intvec_init(&sink.run_ids);
	sft_intvec_init(&sink.run_offsets);
	st = resolve_specials(tpl->kind, tok, sink.special_ids, err);
	if (st == SFT_OK)
		st = walk(tpl, conv, add_generation_prompt, train_on, &sink);
	if (st == SFT_OK)
		st = flush_run(&sink);
	sink_free(&sink);
	return st;
}

SftStatus
sft_chat_encode(const SftChatTemplate *tpl, const SftTokenizer *tok,
				const SftConversation *conv, SftTrainOn train_on,
				int add_generation_prompt, int max_length,
				SftEncoded *out, SftError *err)
{
	SftStatus	st;

	if (train_on != SFT_TRAIN_ALL_ASSISTANT && train_on != SFT_TRAIN_LAST_ASSISTANT)
		return sft_error(err, SFT_ERR_INVALID, "invalid train_on value %d", (int) train_on);
	TRY(sft_conversation_check(conv, add_generation_prompt ? SFT_CONV_GENERATION
							   : SFT_CONV_TRAINING, err));
	TRY(check_content(conv, err));

	out->ids.len = 0;
	out->mask.len = 0;
	out->truncated = 0;
	out->n_masked = 0;
	st = encode_into(tpl, tok, conv, train_on, add_generation_prompt,
					 &out->ids, &out->mask, err);
	if (st != SFT_OK)
		return st;
	if (max_length > 0 && out->ids.len > (size_t) max_length)
	{
		out->ids.len = (size_t) max_length;
		out->mask.len = (size_t) max_length;
		out->truncated = 1;
	}
	for (size_t t = 0; t < out->mask.len; t++)
		out->n_masked += out->mask.data[t];
	return SFT_OK;
}

SftStatus
sft_chat_token_count(const SftChatTemplate *tpl, const SftTokenizer *tok,
					 const SftConversation *conv, int add_generation_prompt,
					 int64_t *count, SftError *err)
{
	SftIntVec	ids;
	SftStatus	st;

	TRY(sft_conversation_check(conv, SFT_CONV_ANY, err));
	TRY(check_content(conv, err));
	sft_intvec_init(&ids);
	st = encode_into(tpl, tok, conv, SFT_TRAIN_ALL_ASSISTANT, add_generation_prompt,
					 &ids, NULL, err);
	*count = (int64_t) ids.len;
	sft_intvec_free(&ids);
	return st;
}

/* ---------------------------------------------------------------------------
 * Detection from tokenizer_config.json's Jinja chat_template
 *
 * No Jinja engine: the template is brought to a canonical form (whitespace
 * outside string literals dropped, whitespace-control dashes dropped,
 * whitespace-only text between tags dropped, escapes in literals decoded,
 * adjacent literals joined by "+" merged, message.role written
 * message['role']) and must contain every fragment that defines one of our
 * templates, and none of the fragments of known variants that render
 * differently.  An unrecognised template is reported as such; the caller then
 * asks the user to choose a template by name.
 * ------------------------------------------------------------------------- */

typedef struct Canonical
{
	SftBuf		text;
	/* decoded string literals, each NUL-terminated, after merging */
	char	  **literals;
	int			n_literals;
	int			cap_literals;
} Canonical;

static void
canonical_free(Canonical *c)
{
	sft_buf_free(&c->text);
	for (int i = 0; i < c->n_literals; i++)
		sft_free(c->literals[i]);
	sft_free(c->literals);
	c->literals = NULL;
	c->n_literals = c->cap_literals = 0;
}

static int
is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Decode the literal starting at s[*i] (a quote); appends its content to out. */
static int
decode_literal(const char *s, size_t len, size_t *i, SftBuf *out)
{
	char		quote = s[*i];
	size_t		p = *i + 1;

	while (p < len && s[p] != quote)
	{
		char		ch = s[p];

		if (ch == '\\' && p + 1 < len)
		{
			char		esc = s[p + 1];
			char		dec;

			switch (esc)
			{
				case 'n':
					dec = '\n';
					break;
				case 't':
					dec = '\t';
					break;
				case 'r':
					dec = '\r';
					break;
				case '\\':
				case '\'':
				case '"':
					dec = esc;
					break;
				default:
					/* keep unknown escapes as written */
					if (sft_buf_append(out, s + p, 2) != SFT_OK)
						return -1;
					p += 2;
					continue;
			}
			if (sft_buf_append(out, &dec, 1) != SFT_OK)
				return -1;
			p += 2;
			continue;
		}
		if (sft_buf_append(out, &ch, 1) != SFT_OK)
			return -1;
		p++;
	}
	*i = p < len ? p + 1 : len;
	return 0;
}

static int
push_literal(Canonical *c, const char *s, size_t len)
{
	char	   *copy;

	if (c->n_literals == c->cap_literals)
	{
		int			cap = c->cap_literals ? c->cap_literals * 2 : 16;
		char	  **l = sft_realloc(c->literals, (size_t) cap * sizeof(char *));

		if (l == NULL)
			return -1;
		c->literals = l;
		c->cap_literals = cap;
	}
	copy = sft_strndup(s, len);
	if (copy == NULL)
		return -1;
	c->literals[c->n_literals++] = copy;
	return 0;
}

/* Canonicalize a tag's inside s[0..len) (between the delimiters). */
static int
canonical_tag(Canonical *c, const char *s, size_t len)
{
	size_t		i = 0;
	SftBuf		lit;
	int			rc = 0;

	sft_buf_init(&lit);
	while (i < len && rc == 0)
	{
		char		ch = s[i];

		if (is_ws(ch))
		{
			i++;
			continue;
		}
		if (ch == '\'' || ch == '"')
		{
			/* a literal, merged with the literals that follow it via "+" */
			lit.len = 0;
			if (decode_literal(s, len, &i, &lit) != 0)
			{
				rc = -1;
				break;
			}
			for (;;)
			{
				size_t		j = i;

				while (j < len && is_ws(s[j]))
					j++;
				if (j >= len || s[j] != '+')
					break;
				j++;
				while (j < len && is_ws(s[j]))
					j++;
				if (j >= len || (s[j] != '\'' && s[j] != '"'))
					break;
				i = j;
				if (decode_literal(s, len, &i, &lit) != 0)
				{
					rc = -1;
					break;
				}
			}
			if (rc != 0)
				break;
			if (sft_buf_append(&c->text, "'", 1) != SFT_OK ||
				(lit.len && sft_buf_append(&c->text, lit.data, lit.len) != SFT_OK) ||
				sft_buf_append(&c->text, "'", 1) != SFT_OK ||
				push_literal(c, lit.len ? lit.data : "", lit.len) != 0)
				rc = -1;
			continue;
		}
		if (sft_buf_append(&c->text, &ch, 1) != SFT_OK)
			rc = -1;
		i++;
	}
	sft_buf_free(&lit);
	return rc;
}

static int
canonicalize(const char *s, size_t len, Canonical *c)
{
	size_t		i = 0;

	memset(c, 0, sizeof(*c));
	sft_buf_init(&c->text);
	while (i < len)
	{
		if (i + 1 < len && s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#'))
		{
			char		kind = s[i + 1];
			char		close = kind == '{' ? '}' : kind;
			size_t		b = i + 2;
			size_t		e = b;

			/* find the closing delimiter, skipping string literals */
			while (e + 1 < len && !(s[e] == close && s[e + 1] == '}'))
			{
				if (kind != '#' && (s[e] == '\'' || s[e] == '"'))
				{
					char		q = s[e++];

					while (e < len && s[e] != q)
						e += (s[e] == '\\' && e + 1 < len) ? 2 : 1;
				}
				e++;
			}
			if (e + 1 >= len)
				e = len;		/* unterminated tag: take the rest */
			if (kind != '#')
			{
				size_t		ib = b;
				size_t		ie = e < len ? e : len;

				if (ib < ie && (s[ib] == '-' || s[ib] == '+'))
					ib++;
				if (ie > ib && (s[ie - 1] == '-' || s[ie - 1] == '+'))
					ie--;
				if (sft_buf_append(&c->text, s + i, 2) != SFT_OK ||
					canonical_tag(c, s + ib, ie - ib) != 0)
					return -1;
				if (e < len && sft_buf_append(&c->text, s + e, 2) != SFT_OK)
					return -1;
			}
			i = e < len ? e + 2 : len;
			continue;
		}
		else
		{
			/* raw text up to the next tag; whitespace-only text is dropped */
			size_t		e = i;
			int			blank = 1;

			while (e < len && !(e + 1 < len && s[e] == '{' &&
								(s[e + 1] == '{' || s[e + 1] == '%' || s[e + 1] == '#')))
			{
				if (!is_ws(s[e]))
					blank = 0;
				e++;
			}
			if (!blank && sft_buf_append(&c->text, s + i, e - i) != SFT_OK)
				return -1;
			i = e;
		}
	}
	if (c->text.data == NULL && sft_buf_append(&c->text, "", 0) != SFT_OK)
		return -1;

	/* message.role / message.content -> message['role'] / message['content'] */
	{
		static const char *const from[] = {"message.role", "message.content"};
		static const char *const to[] = {"message['role']", "message['content']"};

		for (int k = 0; k < 2; k++)
		{
			char	   *hit;

			while ((hit = strstr(c->text.data, from[k])) != NULL)
			{
				SftBuf		rewritten;
				size_t		at = (size_t) (hit - c->text.data);

				sft_buf_init(&rewritten);
				if (sft_buf_append(&rewritten, c->text.data, at) != SFT_OK ||
					sft_buf_append_str(&rewritten, to[k]) != SFT_OK ||
					sft_buf_append_str(&rewritten, hit + strlen(from[k])) != SFT_OK)
				{
					sft_buf_free(&rewritten);
					return -1;
				}
				sft_buf_free(&c->text);
				c->text = rewritten;
			}
		}
	}
	return 0;
}

typedef struct TemplateSignature
{
	SftTemplateKind kind;
	const char *required[6];	/* Jinja fragments that must all appear */
	const char *forbidden[3];	/* plain substrings of variants we do not render */
} TemplateSignature;

/*
 * The fragments are the parts of each reference template that decide the
 * rendered text; writing them in any Jinja spacing is fine since both sides
 * are canonicalized.
 */
static const TemplateSignature signatures[] = {
	{SFT_TEMPLATE_CHATML,
		{"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}",
			"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}", NULL},
		/* Qwen3 adds think blocks to assistant turns; tools change the system turn */
	{"<think>", "reasoning_content", NULL}},
	{SFT_TEMPLATE_LLAMA3,
		{"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
			" + message['content'] | trim + '<|eot_id|>' %}",
			"{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}",
			"{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
		NULL},
		/* Llama 3.1 and later put dates and tool text into the system turn */
	{"Cutting Knowledge Date", NULL}},
	{SFT_TEMPLATE_LLAMA2,
		{"{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}",
			"{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
			"{{ ' ' + content.strip() + ' ' + eos_token }}",
		NULL},
	{NULL}},
	{SFT_TEMPLATE_QWEN3,
		{"{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
			"{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}",
			"{%- if loop.index0 > ns.last_query_index %}{%- if loop.last or (not loop.last and reasoning_content) %}",
			"{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n')"
			" + '\\n</think>\\n\\n' + content.lstrip('\\n') }}",
			"{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}",
		NULL},
	{NULL}},
};

/* The bare expression of a "{{ ... }}" fragment, for matching inside tags. */
static int
contains_expression(const Canonical *tpl, const char *fragment)
{
	Canonical	frag;
	int			found = 0;
	size_t		n;

	if (canonicalize(fragment, strlen(fragment), &frag) != 0)
		return -1;
	n = frag.text.len;
	if (n >= 4 && strncmp(frag.text.data, "{{", 2) == 0 &&
		strcmp(frag.text.data + n - 2, "}}") == 0)
	{
		frag.text.data[n - 2] = '\0';
		found = strstr(tpl->text.data, frag.text.data + 2) != NULL;
	}
	else
		found = strstr(tpl->text.data, frag.text.data) != NULL;
	canonical_free(&frag);
	return found;
}

/* chatml: the literal "<|im_start|>system\n{prompt}<|im_end|>\n" gives the default. */
static char *
chatml_default_system(const Canonical *c)
{
	static const char head[] = "<|im_start|>system\n";
	static const char tail[] = "<|im_end|>";

	for (int i = 0; i < c->n_literals; i++)
	{
		const char *lit = c->literals[i];
		const char *end;

		if (strncmp(lit, head, sizeof(head) - 1) != 0)
			continue;
		lit += sizeof(head) - 1;
		end = strstr(lit, tail);
		if (end == NULL || end == lit)
			continue;
		if (strcmp(end, "<|im_end|>") != 0 && strcmp(end, "<|im_end|>\n") != 0)
			continue;
		return sft_strndup(lit, (size_t) (end - lit));
	}
	return NULL;
}

/*
 * The form sft_template_jinja() writes for llama3/llama2 defaults: a system
 * message put in front when the conversation has none.
 */
#define DEFAULT_MESSAGE_HEAD "{%ifmessages[0]['role']!='system'%}{%setmessages=[{'role':'system','content':'"
#define DEFAULT_MESSAGE_TAIL "'}]+messages%}"

static char *
inserted_default_system(const Canonical *c)
{
	const char *head = strstr(c->text.data, DEFAULT_MESSAGE_HEAD);
	const char *tail;

	if (head == NULL)
		return NULL;
	head += strlen(DEFAULT_MESSAGE_HEAD);
	tail = strstr(head, DEFAULT_MESSAGE_TAIL);
	return tail ? sft_strndup(head, (size_t) (tail - head)) : NULL;
}

int
sft_template_detect(const char *jinja, size_t len, SftTemplateKind *kind,
					char **default_system)
{
	Canonical	c;
	int			found = 0;

	*default_system = NULL;
	if (jinja == NULL || canonicalize(jinja, len, &c) != 0)
		return 0;
	for (size_t s = 0; s < sizeof(signatures) / sizeof(signatures[0]) && !found; s++)
	{
		const TemplateSignature *sig = &signatures[s];
		int			ok = 1;

		for (int f = 0; f < 6 && sig->required[f] && ok; f++)
			ok = contains_expression(&c, sig->required[f]) == 1;
		for (int f = 0; f < 3 && sig->forbidden[f] && ok; f++)
			ok = strstr(c.text.data, sig->forbidden[f]) == NULL;
		if (!ok)
			continue;
		*kind = sig->kind;
		found = 1;
		if (sig->kind == SFT_TEMPLATE_CHATML || sig->kind == SFT_TEMPLATE_QWEN3)
			*default_system = chatml_default_system(&c);
		else
			*default_system = inserted_default_system(&c);
	}
	canonical_free(&c);
	return found;
}

/* ---------------------------------------------------------------------------
 * Writing a template back as Jinja (for exported tokenizer_config.json)
 *
 * The texts below are the published templates' logic written for our
 * renderer's behaviour; test/suites/template_parity.sh renders them with
 * Python's Jinja2 and compares with sft_render().  Detection recognises them,
 * default system prompt included, so an export imports back unchanged.
 * ------------------------------------------------------------------------- */

static const char jinja_chatml_head[] =
"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
"{{ '<|im_start|>system\\n";
static const char jinja_chatml_body_default[] =
"<|im_end|>\\n' }}{% endif %}";
static const char jinja_chatml_loop[] =
"{% for message in messages %}";
static const char jinja_chatml_rest[] =
"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const char jinja_llama3[] =
"{% set loop_messages = messages %}{% for message in loop_messages %}"
"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
" + message['content'] | trim + '<|eot_id|>' %}"
"{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
"{{ content }}{% endfor %}"
"{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static const char jinja_llama2[] =
"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
"{% set system_message = messages[0]['content'] %}{% else %}"
"{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
"{% for message in loop_messages %}"
"{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
"{% if loop.index0 == 0 and system_message != false %}"
"{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
"{% else %}{% set content = message['content'] %}{% endif %}"
"{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
"{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
"{% endif %}{% endfor %}";

/* text as the inside of a Jinja '...' literal */
static SftStatus
append_jinja_literal(SftBuf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		const char *esc = NULL;
		char		c = s[i];

		switch (c)
		{
			case '\\':
				esc = "\\\\";
				break;
			case '\'':
				esc = "\\'";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
		}
		if ((esc ? sft_buf_append_str(out, esc) : sft_buf_append(out, &c, 1)) != SFT_OK)
			return SFT_ERR_NOMEM;
	}
	return SFT_OK;
}

SftStatus
sft_template_jinja(const SftChatTemplate *tpl, SftBuf *out, SftError *err)
{
	SftStatus	st = SFT_OK;

	switch (tpl->kind)
	{
		case SFT_TEMPLATE_CHATML:
			if (tpl->default_system)
			{
				if (sft_buf_append_str(out, jinja_chatml_head) != SFT_OK ||
					append_jinja_literal(out, tpl->default_system, tpl->default_system_len) != SFT_OK ||
					sft_buf_append_str(out, jinja_chatml_body_default) != SFT_OK)
					st = SFT_ERR_NOMEM;
			}
			else if (sft_buf_append_str(out, jinja_chatml_loop) != SFT_OK)
				st = SFT_ERR_NOMEM;
			if (st == SFT_OK && sft_buf_append_str(out, jinja_chatml_rest) != SFT_OK)
				st = SFT_ERR_NOMEM;
			break;
		case SFT_TEMPLATE_LLAMA3:
		case SFT_TEMPLATE_LLAMA2:
			if (tpl->default_system &&
				(sft_buf_append_str(out, "{% if messages[0]['role'] != 'system' %}"
									"{% set messages = [{'role': 'system', 'content': '") != SFT_OK ||
				 append_jinja_literal(out, tpl->default_system, tpl->default_system_len) != SFT_OK ||
				 sft_buf_append_str(out, "'}] + messages %}{% endif %}") != SFT_OK))
				st = SFT_ERR_NOMEM;
			if (st == SFT_OK &&
				sft_buf_append_str(out, tpl->kind == SFT_TEMPLATE_LLAMA3 ? jinja_llama3 : jinja_llama2) != SFT_OK)
				st = SFT_ERR_NOMEM;
			break;
		case SFT_TEMPLATE_QWEN3:
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "the qwen3 template has no built-in Jinja form: only Qwen3's own "
							 "template, as imported, can be written back");
		default:
			return sft_error(err, SFT_ERR_INTERNAL, "invalid template kind %d", (int) tpl->kind);
	}
	if (st != SFT_OK)
		return sft_error(err, st, "out of memory while writing the chat template");
	return SFT_OK;
}
