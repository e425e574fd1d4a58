/*
 * chat_template_jinja.c: conversations through a Jinja chat template (kind
 * SFT_TEMPLATE_JINJA): rendering, encoding and the assistant mask.  The
 * public entry points are chat_template.c's (sft_chat_render, sft_chat_encode,
 * sft_chat_token_count), which hand Jinja templates to the functions here;
 * see chat_template.h for the rules.
 *
 * Why the mask is derived this way: what a model must learn to produce for an
 * assistant turn is exactly what follows the generation prompt, up to the
 * token that closes the turn.  Rendering the conversation before the turn
 * with add_generation_prompt gives that prompt as the template itself writes
 * it (a header, Qwen3's empty think block when thinking is off...), and the
 * engine's content spans (jinja.h) say where the message's content landed and
 * so where the turn's text ends, whatever the template did to it (trim,
 * Qwen3's think-block rewriting of earlier turns).  A template that writes
 * {% generation %} blocks says it directly, as transformers'
 * return_assistant_tokens_mask reads them.
 */
#include <string.h>

#include <json.h>

#include "chat_template.h"
#include "chat_template_internal.h"


static SftStatus
nomem(SftError *err)
{
	return sft_error(err, SFT_ERR_NOMEM, "out of memory while applying the chat template");
}

SftStatus
sft_template_kwargs_check(const struct json_object *kwargs, SftError *err)
{
	if (kwargs == NULL)
		return SFT_OK;
	if (!json_object_is_type((json_object *) kwargs, json_type_object))
		return sft_error(err, SFT_ERR_INVALID, "template_kwargs must be a JSON object");
	json_object_object_foreach((json_object *) kwargs, key, val)
	{
		(void) val;
		if (strcmp(key, "messages") == 0 || strcmp(key, "add_generation_prompt") == 0)
			return sft_error(err, SFT_ERR_INVALID,
							 "template_kwargs cannot set \"%s\" (it comes from the conversation and the call)",
							 key);
	}
	return SFT_OK;
}

SftStatus
sft_template_kwargs_parse(const char *json, size_t len, struct json_object **out, SftError *err)
{
	json_tokener *tk = json_tokener_new();
	json_object *obj;
	SftStatus	st;

	*out = NULL;
	if (tk == NULL)
		return nomem(err);
	obj = json_tokener_parse_ex(tk, json, (int) len);
	json_tokener_free(tk);
	if (obj == NULL)
		return sft_error(err, SFT_ERR_INVALID, "template_kwargs is not valid JSON");
	st = sft_template_kwargs_check(obj, err);
	if (st != SFT_OK)
	{
		json_object_put(obj);
		return st;
	}
	*out = obj;
	return SFT_OK;
}

void
sft_template_kwargs_free(struct json_object *kwargs)
{
	json_object_put(kwargs);
}

int
sft_template_kwargs_empty(const struct json_object *kwargs)
{
	return kwargs == NULL || json_object_object_length((json_object *) kwargs) == 0;
}

/*
 * Render messages [0, upto) of conv (the default system prompt first when
 * the conversation has none) with the template's variables, built by the
 * engine straight from the conversation: special tokens, then
 * template_kwargs over them, as transformers does.  *first is the index in
 * the messages list of conv->messages[0].
 */
static SftStatus
render_conv(const SftChatTemplate *tpl, const SftTokenizer *tok, const SftConversation *conv,
			int upto, int add_generation_prompt, SftBuf *out, SftJinjaSpans *content,
			SftJinjaSpans *generation, int *first, SftError *err)
{
	SftJinjaRender r;
	int			has_system = conv->n > 0 && conv->messages[0].role == SFT_ROLE_SYSTEM;
	SftStatus	st = sft_template_kwargs_check(tpl->kwargs, err);

	if (st != SFT_OK)
		return st;
	if (tpl->jinja == NULL)
		return sft_error(err, SFT_ERR_INTERNAL, "Jinja chat template without its parsed form");
	sft_jinja_render_init(&r, tpl->kwargs);
	r.conv = conv;
	r.conv_upto = upto;
	*first = 0;
	if (!has_system && tpl->default_system)
	{
		r.system = tpl->default_system;
		r.system_len = tpl->default_system_len;
		*first = 1;
	}
	r.add_generation_prompt = add_generation_prompt;
	r.bos_token = sft_tokenizer_bos_token(tok);
	r.eos_token = sft_tokenizer_eos_token(tok);
	r.now_set = tpl->now_set;
	r.now = tpl->now;
	r.interrupt = tpl->interrupt;
	r.interrupt_arg = tpl->interrupt_arg;
	r.content_spans = content;
	r.generation_spans = generation;
	return sft_jinja_render(tpl->jinja, &r, out, err);
}

SftStatus
sft_chat_jinja_render(const SftChatTemplate *tpl, const SftTokenizer *tok,
					  const SftConversation *conv, int add_generation_prompt,
					  SftBuf *out, SftError *err)
{
	int			first;

	return render_conv(tpl, tok, conv, conv->n, add_generation_prompt, out, NULL, NULL, &first, err);
}

/* ---------------------------------------------------------------------------
 * Special tokens the template wrote
 * ------------------------------------------------------------------------- */

/* Is byte offset p inside one of the (sorted) content spans? cursor speeds up the walk. */
static int
in_content(const SftJinjaSpans *spans, size_t p, size_t *cursor)
{
	while (*cursor < spans->len && spans->data[*cursor].start + spans->data[*cursor].len <= p)
		(*cursor)++;
	return *cursor < spans->len && spans->data[*cursor].start <= p;
}

/* A trained byte range [start, end) of the rendered text. */
typedef struct Range
{
	size_t		start;
	size_t		end;
} Range;

/*
 * Tokenize text: special tokens the template wrote become their ids, the runs
 * between them are encoded as plain text (so special-token text inside a
 * message's content stays text); mask bits from the sorted ranges.
 */
static SftStatus
tokenize_rendered(const SftTokenizer *tok, const SftBuf *text, const SftJinjaSpans *content,
				  const Range *ranges, size_t n_ranges, SftIntVec *ids, SftIntVec *mask, SftError *err)
{
	size_t		run = 0;
	size_t		cursor = 0;
	size_t		r = 0;
	SftIntVec	run_ids,
				run_offsets;
	SftStatus	st = SFT_OK;
	const char *s = text->data ? text->data : "";
	sft_intvec_init(&run_ids);
	sft_intvec_init(&run_offsets);
	for (size_t p = 0; p <= text->len && st == SFT_OK;)
	{
		int32_t		id = -1;
		size_t		len = 0;

		if (p < text->len && !in_content(content, p, &cursor))
			len = sft_tokenizer_special_at(tok, s + p, text->len - p, &id);
		if (len == 0 && p < text->len)
		{
			p++;
			continue;
		}
		/* flush the run [run, p) */
		if (p > run)
		{
			if (p - run > INT32_MAX)
			{
				st = sft_error(err, SFT_ERR_LIMIT, "a text run of %zu bytes is too long to tokenize", p - run);
				break;
			}
			run_ids.len = 0;
			run_offsets.len = 0;
			st = sft_tokenizer_encode(tok, s + run, p - run, 0, &run_ids, mask ? &run_offsets : NULL, err);
			for (size_t k = 0; st == SFT_OK && k < run_ids.len; k++)
			{
				if (sft_intvec_push(ids, run_ids.data[k]) != SFT_OK)
					st = nomem(err);
				else if (mask)
				{
					size_t		off = run + (size_t) run_offsets.data[k];

					while (r < n_ranges && ranges[r].end <= off)
						r++;
					if (sft_intvec_push(mask, r < n_ranges && ranges[r].start <= off) != SFT_OK)
						st = nomem(err);
				}
			}
		}
		if (st != SFT_OK || p >= text->len)
			break;
		if (sft_intvec_push(ids, id) != SFT_OK)
			st = nomem(err);
		else if (mask)
		{
			while (r < n_ranges && ranges[r].end <= p)
				r++;
			if (sft_intvec_push(mask, r < n_ranges && ranges[r].start <= p) != SFT_OK)
				st = nomem(err);
		}
		p += len;
		run = p;
	}
	sft_intvec_free(&run_ids);
	sft_intvec_free(&run_offsets);
	return st;
}

/* ---------------------------------------------------------------------------
 * The mask
 * ------------------------------------------------------------------------- */

static int
ascii_space(char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* End of the turn whose text ends at `end`: through whitespace and the special token after it. */
static size_t
turn_end(const SftTokenizer *tok, const SftBuf *text, size_t end)
{
	size_t		p = end;
	int32_t		id;
	size_t		len;

	while (p < text->len && ascii_space(text->data[p]))
		p++;
	len = sft_tokenizer_special_at(tok, text->data + p, text->len - p, &id);
	return len ? p + len : end;
}

static SftStatus
assistant_ranges(const SftChatTemplate *tpl, const SftTokenizer *tok, const SftConversation *conv,
				 SftTrainOn train_on, const SftBuf *full, const SftJinjaSpans *content, int first,
				 Range **out, size_t *n_out, SftError *err)
{
	Range	   *ranges = sft_calloc(conv->n + 1, sizeof(Range));
	size_t		n = 0;
	int			last_assistant = -1;
	SftBuf		prefix;
	SftStatus	st = SFT_OK;

	if (ranges == NULL)
		return nomem(err);
	sft_buf_init(&prefix);
	for (int i = 0; i < conv->n; i++)
		if (conv->messages[i].role == SFT_ROLE_ASSISTANT)
			last_assistant = i;
	for (int i = 0; i < conv->n && st == SFT_OK; i++)
	{
		int			msg = i + first;
		size_t		cstart = (size_t) -1,
					cend = 0;
		size_t		start;
		int			pfirst;

		if (conv->messages[i].role != SFT_ROLE_ASSISTANT || conv->messages[i].no_loss)
			continue;
		if (train_on == SFT_TRAIN_LAST_ASSISTANT && i != last_assistant)
			continue;
		for (size_t k = 0; k < content->len; k++)
			if (content->data[k].message == msg)
			{
				if (content->data[k].start < cstart)
					cstart = content->data[k].start;
				if (content->data[k].start + content->data[k].len > cend)
					cend = content->data[k].start + content->data[k].len;
			}
		/* where the turn starts: after the generation prompt, when the template is consistent */
		prefix.len = 0;
		start = (size_t) -1;
		if (render_conv(tpl, tok, conv, i, 1, &prefix, NULL, NULL, &pfirst, err) == SFT_OK &&
			prefix.len <= full->len && memcmp(prefix.data ? prefix.data : "", full->data, prefix.len) == 0)
			start = prefix.len;
		else if (err && err->status == SFT_ERR_LIMIT)
			st = err->status;
		else
			sft_error_clear(err);
		if (st != SFT_OK)
			break;
		if (cstart == (size_t) -1)
		{
			/*
			 * no content copied: only an empty reply (or one a trim made empty)
			 * after a consistent prompt can be located
			 */
			int			blank = 1;

			for (size_t b = 0; b < conv->messages[i].len; b++)
				if (!ascii_space(conv->messages[i].content[b]))
					blank = 0;
			if (!blank || start == (size_t) -1)
			{
				st = sft_error(err, SFT_ERR_UNSUPPORTED,
							   "the chat template does not write the content of assistant message %d as given "
							   "(it is transformed or left out), so its tokens cannot be masked for training; "
							   "use a template with {%% generation %%} blocks", i);
				break;
			}
			cstart = cend = start;
		}
		if (start == (size_t) -1 || start > cstart)
			start = cstart;
		if (n > 0 && start < ranges[n - 1].end)
			start = ranges[n - 1].end;
		ranges[n].start = start;
		ranges[n].end = turn_end(tok, full, cend);
		if (ranges[n].end > ranges[n].start)
			n++;
	}
	sft_buf_free(&prefix);
	if (st != SFT_OK)
	{
		sft_free(ranges);
		return st;
	}
	*out = ranges;
	*n_out = n;
	return SFT_OK;
}

SftStatus
sft_chat_jinja_encode(const SftChatTemplate *tpl, const SftTokenizer *tok,
					  const SftConversation *conv, SftTrainOn train_on,
					  int add_generation_prompt, SftIntVec *ids, SftIntVec *mask, SftError *err)
{
	SftBuf		text;
	SftJinjaSpans content = {0},
				generation = {0};
	Range	   *ranges = NULL;
	size_t		n_ranges = 0;
	int			first;
	SftStatus	st;

	sft_buf_init(&text);
	st = render_conv(tpl, tok, conv, conv->n, add_generation_prompt, &text, &content,
					 mask ? &generation : NULL, &first, err);
	if (st == SFT_OK && mask)
	{
		if (sft_jinja_has_generation(tpl->jinja))
		{
			/*
			 * {% generation %} blocks: the k-th is the k-th assistant message's
			 * when the counts agree (so "weight": 0 and last_assistant can
			 * pick); otherwise all of them, or the last one
			 */
			int			n_assistant = 0,
						last_assistant = -1,
						any_no_loss = 0,
						k = 0;

			for (int i = 0; i < conv->n; i++)
				if (conv->messages[i].role == SFT_ROLE_ASSISTANT)
				{
					n_assistant++;
					last_assistant = i;
					any_no_loss |= conv->messages[i].no_loss;
				}
			ranges = sft_calloc(generation.len + 1, sizeof(Range));
			if (ranges == NULL)
				st = nomem(err);
			else if ((size_t) n_assistant == generation.len)
			{
				for (int i = 0; i < conv->n; i++)
				{
					if (conv->messages[i].role != SFT_ROLE_ASSISTANT)
						continue;
					if (!conv->messages[i].no_loss &&
						(train_on == SFT_TRAIN_ALL_ASSISTANT || i == last_assistant))
					{
						ranges[n_ranges].start = generation.data[k].start;
						ranges[n_ranges].end = generation.data[k].start + generation.data[k].len;
						n_ranges++;
					}
					k++;
				}
			}
			else if (any_no_loss)
				st = sft_error(err, SFT_ERR_UNSUPPORTED,
							   "the chat template writes %zu {%% generation %%} blocks for %d assistant messages, "
							   "so the one of a message marked \"weight\": 0 cannot be told apart",
							   generation.len, n_assistant);
			else
			{
				size_t		from = train_on == SFT_TRAIN_LAST_ASSISTANT && generation.len > 0 ? generation.len - 1 : 0;

				for (size_t g = from; g < generation.len; g++)
				{
					ranges[n_ranges].start = generation.data[g].start;
					ranges[n_ranges].end = generation.data[g].start + generation.data[g].len;
					n_ranges++;
				}
			}
		}
		else
			st = assistant_ranges(tpl, tok, conv, train_on, &text, &content, first, &ranges, &n_ranges, err);
	}
	if (st == SFT_OK)
		st = tokenize_rendered(tok, &text, &content, ranges, n_ranges, ids, mask, err);
	sft_free(ranges);
	sft_jinja_spans_free(&content);
	sft_jinja_spans_free(&generation);
	sft_buf_free(&text);
	return st;
}

/* ---------------------------------------------------------------------------
 * Probes: the end-of-turn token, and whether a built-in template is the same
 * ------------------------------------------------------------------------- */

int32_t
sft_template_jinja_end_of_turn_id(const SftChatTemplate *tpl, const SftTokenizer *tok, SftError *err)
{
	SftMessage	m[2] = {{SFT_ROLE_USER, "Hi", 2}, {SFT_ROLE_ASSISTANT, "Hello", 5}};
	SftConversation conv = {m, 2};
	SftBuf		text;
	SftJinjaSpans content = {0};
	int			first;
	int32_t		id = -1;

	sft_buf_init(&text);
	if (render_conv(tpl, tok, &conv, 2, 0, &text, &content, NULL, &first, err) == SFT_OK)
	{
		for (size_t k = 0; k < content.len; k++)
			if (content.data[k].message == first + 1)
			{
				size_t		p = content.data[k].start + content.data[k].len;
				size_t		len;
				while (p < text.len && ascii_space(text.data[p]))
					p++;
				len = sft_tokenizer_special_at(tok, text.data + p, text.len - p, &id);
				if (len == 0)
					id = -1;
			}
	}
	else
		sft_error_clear(err);
	sft_jinja_spans_free(&content);
	sft_buf_free(&text);
	return id >= 0 ? id : sft_tokenizer_eos_id(tok);
}

int
sft_template_matches_jinja(SftTemplateKind kind, const char *default_system,
						   const SftJinjaTemplate *jinja, const SftTokenizer *tok)
{
	static const char *const contents[] = {
		"Hello!", "  spaced  ", "line one\nline two\n\n", "\nlead", "", "emoji \xF0\x9F\x98\x80 \xE6\xBC\xA2",
		"<think>\nplan\n</think>\n\nanswer", "\xE3\x80\x80wide\xE3\x80\x80", "x"
	};
	SftChatTemplate builtin = {0},
				j = {0};
	SftBuf		a,
				b;
	SftError	err = {0};
	int			same = 1;
	int			k = 0;

	builtin.kind = kind;
	builtin.default_system = default_system;
	builtin.default_system_len = default_system ? strlen(default_system) : 0;
	/* a detected default system prompt is written in the Jinja source itself */
	j.kind = SFT_TEMPLATE_JINJA;
	j.jinja = jinja;
	sft_buf_init(&a);
	sft_buf_init(&b);
	/* system or not, one to three turns, generation prompt on and off */
	for (int shape = 0; shape < 12 && same; shape++)
	{
		SftMessage	m[7];
		SftConversation conv = {m, 0};
		int			turns = 1 + shape % 3;
		int			gen = (shape / 3) % 2;

		if (shape % 4 == 0)
			m[conv.n++] = (SftMessage) {SFT_ROLE_SYSTEM, contents[k % 9], strlen(contents[k % 9])}, k++;
		for (int t = 0; t < turns; t++)
		{
			m[conv.n++] = (SftMessage) {SFT_ROLE_USER, contents[k % 9], strlen(contents[k % 9])}, k++;
			m[conv.n++] = (SftMessage) {SFT_ROLE_ASSISTANT, contents[k % 9], strlen(contents[k % 9])}, k++;
		}
		if (gen)
			conv.n--;
		a.len = b.len = 0;
		if (sft_chat_render(&builtin, tok, &conv, gen, &a, &err) != SFT_OK ||
			sft_chat_render(&j, tok, &conv, gen, &b, &err) != SFT_OK ||
			a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
			same = 0;
	}
	sft_buf_free(&a);
	sft_buf_free(&b);
	return same;
}
