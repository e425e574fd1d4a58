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
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json.h>

#include "jinja.h"

static json_object *vars;

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

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vars = json_tokener_parse(VARS);
	check(vars != NULL);
	return 0;
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
	r.limits.max_steps = 200000;
	r.limits.max_output = 1 << 20;
	r.limits.max_memory = 32 << 20;
	r.limits.max_depth = 32;
	r.now_set = 1;
	r.now = 1751328000;
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
	sft_jinja_free(tpl);
	return 0;
}
