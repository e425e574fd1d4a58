/*
 * fuzz_jinja.c: libFuzzer target for the Jinja engine (src/core/jinja.c,
 * jinja_eval.c).  A chat template is outside input: it comes from the
 * tokenizer_config.json files users import and from sft_tokenizer_set_template.
 *
 * The input is the template source, parsed and (when it parses) rendered with
 * a fixed set of variables in the shapes templates see (messages with system,
 * user, assistant and tool turns, tool calls, tools, special tokens,
 * add_generation_prompt), under small limits so that every run is quick.
 * Checks: parse and render never crash (the sanitizers) and either succeed or
 * fail with a message; the output is valid UTF-8; every content and
 * generation span lies inside the output and names an existing message.
 * Then the chat path: the same template rendered with variables built
 * straight from a conversation (SftJinjaRender.conv, how chat templates
 * render) and with the same variables as JSON must give the same text and
 * spans (or both fail; a budget may run out on one side only, as the two
 * build their variables with different amounts of memory and work).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json.h>

#include "jinja.h"

static json_object *vars;
static json_object *chat_vars;	/* CHAT_VARS: the conversation below, as JSON */
static json_object *chat_kwargs;	/* CHAT_KWARGS */

static void
check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static const char VARS[] =
	"{\"messages\": ["
	"{\"role\": \"system\", \"content\": \"Be brief.\"},"
	"{\"role\": \"user\", \"content\": \"  Hi \\u00e9\\n\"},"
	"{\"role\": \"assistant\", \"content\": \"<think>\\nplan\\n</think>\\n\\nHello!\"},"
	"{\"role\": \"user\", \"content\": \"Weather?\"},"
	"{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"call12345\", \"type\": \"function\","
	" \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
	"{\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\": \"{\\\"t\\\": 21}\"},"
	"{\"role\": \"assistant\", \"content\": \"21 \\u00b0C\"}],"
	"\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\":"
	" {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}],"
	"\"documents\": null, \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
	"\"enable_thinking\": false, \"n\": 3, \"f\": 2.5}";

static const char CHAT_KWARGS[] =
	"{\"enable_thinking\": false, \"n\": 3, \"eos_token\": \"<eot>\", \"tools\": [{\"name\": \"t\"}]}";
static const char CHAT_VARS[] =
	"{\"bos_token\": \"<s>\", \"eos_token\": \"<eot>\", \"tools\": [{\"name\": \"t\"}], \"documents\": null,"
	"\"enable_thinking\": false, \"n\": 3, \"messages\": ["
	"{\"role\": \"system\", \"content\": \"Be brief.\"},"
	"{\"role\": \"user\", \"content\": \"  Hi \\u00e9\\n\"},"
	"{\"role\": \"assistant\", \"content\": \"<think>\\nplan\\n</think>\\n\\nHello!\"},"
	"{\"role\": \"user\", \"content\": \"\"},"
	"{\"role\": \"assistant\", \"content\": \"21 \\u00b0C\"}],"
	"\"add_generation_prompt\": false}";
static SftMessage chat_messages[] = {
	{SFT_ROLE_USER, "  Hi \xc3\xa9\n", 8, false},
	{SFT_ROLE_ASSISTANT, "<think>\nplan\n</think>\n\nHello!", 29, false},
	{SFT_ROLE_USER, "", 0, false},
	{SFT_ROLE_ASSISTANT, "21 \xc2\xb0" "C", 6, false},
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vars = json_tokener_parse(VARS);
	chat_vars = json_tokener_parse(CHAT_VARS);
	chat_kwargs = json_tokener_parse(CHAT_KWARGS);
	check(vars != NULL && chat_vars != NULL && chat_kwargs != NULL);
	return 0;
}

static void
limit(SftJinjaRender *r)
{
	r->limits.max_steps = 200000;
	r->limits.max_output = 1 << 20;
	r->limits.max_memory = 32 << 20;
	r->limits.max_depth = 32;
	r->now_set = 1;
	r->now = 1751328000;
}

static int
same_spans(const SftJinjaSpans *a, const SftJinjaSpans *b)
{
	if (a->len != b->len)
		return 0;
	for (size_t i = 0; i < a->len; i++)
		if (a->data[i].start != b->data[i].start || a->data[i].len != b->data[i].len ||
			a->data[i].message != b->data[i].message)
			return 0;
	return 1;
}

/* The chat path against the JSON path, on the same variables. */
static void
check_chat_path(const SftJinjaTemplate *tpl)
{
	SftConversation conv = {chat_messages, 4};
	SftJinjaRender a,
				b;
	SftJinjaSpans ca = {0},
				cb = {0},
				ga = {0},
				gb = {0};
	SftBuf		oa,
				ob;
	SftError	ea = {0},
				eb = {0};
	SftStatus	sa,
				sb;

	sft_buf_init(&oa);
	sft_buf_init(&ob);
	sft_jinja_render_init(&a, chat_vars);
	limit(&a);
	a.content_spans = &ca;
	a.generation_spans = &ga;
	sa = sft_jinja_render(tpl, &a, &oa, &ea);
	sft_jinja_render_init(&b, chat_kwargs);
	limit(&b);
	b.conv = &conv;
	b.conv_upto = 4;
	b.system = "Be brief.";
	b.system_len = 9;
	b.bos_token = "<s>";
	b.eos_token = "</s>";
	b.content_spans = &cb;
	b.generation_spans = &gb;
	sb = sft_jinja_render(tpl, &b, &ob, &eb);
	if (sa == SFT_OK && sb == SFT_OK)
		check(oa.len == ob.len && (oa.len == 0 || memcmp(oa.data, ob.data, oa.len) == 0) &&
			  same_spans(&ca, &cb) && same_spans(&ga, &gb));
	else if (sa != SFT_ERR_LIMIT && sb != SFT_ERR_LIMIT && sa != SFT_ERR_NOMEM && sb != SFT_ERR_NOMEM)
		check(sa == sb && strcmp(ea.message, eb.message) == 0);
	sft_jinja_spans_free(&ca);
	sft_jinja_spans_free(&cb);
	sft_jinja_spans_free(&ga);
	sft_jinja_spans_free(&gb);
	sft_buf_free(&oa);
	sft_buf_free(&ob);
}

static void
check_spans(const SftJinjaSpans *spans, size_t out_len, int content)
{
	for (size_t i = 0; i < spans->len; i++)
	{
		check(spans->data[i].start + spans->data[i].len <= out_len);
		check(spans->data[i].len > 0);
		if (content)
			check(spans->data[i].message >= 0 && spans->data[i].message < 7);
		else
			check(spans->data[i].message == -1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	SftJinjaTemplate *tpl = NULL;
	SftError	err = {0};
	SftJinjaRender r;
	SftJinjaSpans content = {0},
				generation = {0};
	SftBuf		out;

	if (sft_jinja_parse((const char *) data, size, &tpl, &err) != SFT_OK)
	{
		check(tpl == NULL && err.message[0] != '\0');
		return 0;
	}
	sft_buf_init(&out);
	sft_jinja_render_init(&r, vars);
	limit(&r);
	r.content_spans = &content;
	r.generation_spans = &generation;
	if (sft_jinja_render(tpl, &r, &out, &err) == SFT_OK)
	{
		check(out.len <= r.limits.max_output);
		check(sft_utf8_invalid_offset(out.data ? out.data : "", out.len) == (size_t) -1);
		check_spans(&content, out.len, 1);
		check_spans(&generation, out.len, 0);
	}
	else
		check(err.message[0] != '\0' && out.len == 0);
	sft_jinja_spans_free(&content);
	sft_jinja_spans_free(&generation);
	sft_buf_free(&out);
	check_chat_path(tpl);
	sft_jinja_free(tpl);
	return 0;
}
