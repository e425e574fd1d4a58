/*
 * test_jinja.c: the Jinja engine's own behaviour (byte parity with Jinja2 on
 * real templates is test/suites/jinja_parity.sh): errors that name the
 * construct and line, the bounds a hostile template runs into, the interrupt
 * callback, and the content / generation spans masks are derived from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>

#include "jinja.h"
#include "tap.h"

static char last_error[SFT_ERROR_MESSAGE_SIZE];
static SftStatus last_status;
static int	last_raised;

/* Render src with vars (JSON text); returns the output or NULL (error in last_error). */
static const char *
render_with(const char *src, const char *vars_json, SftJinjaRender *opts_in,
			SftJinjaSpans *content, SftJinjaSpans *generation)
{
	static SftBuf out;
	SftJinjaTemplate *tpl = NULL;
	SftError	err = {0};
	json_object *vars = json_tokener_parse(vars_json ? vars_json : "{}");
	SftJinjaRender r;
	SftStatus	st;

	last_error[0] = '\0';
	last_raised = 0;
	sft_buf_free(&out);
	sft_buf_init(&out);
	st = sft_jinja_parse(src, strlen(src), &tpl, &err);
	if (st == SFT_OK)
	{
		if (opts_in)
		{
			r = *opts_in;
			r.vars = vars;
		}
		else
			sft_jinja_render_init(&r, vars);
		r.content_spans = content;
		r.generation_spans = generation;
		st = sft_jinja_render(tpl, &r, &out, &err);
		last_raised = r.raised;
	}
	last_status = st;
	sft_jinja_free(tpl);
	json_object_put(vars);
	if (st != SFT_OK)
	{
		snprintf(last_error, sizeof(last_error), "%s", err.message);
		return NULL;
	}
	return out.data ? out.data : "";
}

static const char *
render(const char *src, const char *vars)
{
	return render_with(src, vars, NULL, NULL, NULL);
}

static void
expect(const char *src, const char *vars, const char *want)
{
	const char *got = render(src, vars);

	TAP_OK(got && strcmp(got, want) == 0, "%s -> \"%s\" (got \"%s\"%s%s)", src, want,
		   got ? got : "error", got ? "" : ": ", got ? "" : last_error);
}

static void
expect_error(const char *src, const char *vars, SftStatus status, const char *fragment)
{
	const char *got = render(src, vars);

	TAP_OK(got == NULL && last_status == status && strstr(last_error, fragment) != NULL,
		   "%s fails with %s \"...%s...\" (got %s: %s)", src, sft_status_name(status), fragment,
		   got ? "success" : sft_status_name(last_status), got ? got : last_error);
}

static int
always_interrupt(void *arg)
{
	(*(int *) arg)++;
	return 1;
}

int
main(void)
{
	/* --- Python printing and lenient undefined -------------------------- */
	expect("{{ none }} {{ true }} {{ [1, 'a', none] }} {{ {'k': 1.5} }}", NULL,
		   "None True [1, 'a', None] {'k': 1.5}");
	expect("[{{ missing }}][{{ missing | default('d') }}][{{ missing is defined }}]", NULL, "[][d][False]");
	expect("{% for x in missing %}x{% else %}empty{% endfor %}", NULL, "empty");
	expect("{{ m.content }}", "{\"m\": {\"role\": \"user\"}}", "");
	expect("{{ 1e16 }} {{ 0.1 }} {{ 2.0 }} {{ 1 / 4 }}", NULL, "1e+16 0.1 2.0 0.25");
	expect("{{ {'a': 'é\n\"'} | tojson }}", NULL, "{\"a\": \"é\\n\\\"\"}");
	/* keep_trailing_newline is off: one final newline goes */
	expect("a\n", NULL, "a");
	expect("a\n\n", NULL, "a\n");
	/* trim_blocks / lstrip_blocks */
	expect("  {% if true %}\nx\n  {% endif %}\ny", NULL, "x\ny");
	expect("a  {{- ' b ' -}}  c", NULL, "a b c");
	/* scoping: set in a loop does not leak, namespace does */
	expect("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", NULL, "1");
	expect("{% set ns = namespace(x=1) %}{% for i in [1] %}{% set ns.x = 2 %}{% endfor %}{{ ns.x }}", NULL, "2");
	expect("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}", NULL, "012");

	/* --- errors name the construct and the line --------------------------- */
	expect_error("line\n{{ x | nosuchfilter }}", NULL, SFT_ERR_INVALID, "line 2: no filter named 'nosuchfilter'");
	expect_error("{% include 'other.jinja' %}", NULL, SFT_ERR_UNSUPPORTED, "line 1: 'include' needs other template files");
	expect_error("\n\n{% if x %}", NULL, SFT_ERR_INVALID, "line 3: 'if' block is never closed");
	expect_error("{% endfor %}", NULL, SFT_ERR_INVALID, "unexpected 'endfor'");
	expect_error("{{ 'a' ~ }}", NULL, SFT_ERR_INVALID, "line 1: unexpected end of print statement");
	expect_error("{% if false %}{{ x is nosuchtest }}{% endif %}", NULL, SFT_ERR_INVALID, "no test named 'nosuchtest'");
	expect_error("{{ x | truncate(3) }}", NULL, SFT_ERR_UNSUPPORTED, "line 1: the 'truncate' filter is not supported");
	expect_error("{{ 'x'.format(1) }}", NULL, SFT_ERR_UNSUPPORTED, "string method 'format' is not supported");
	expect_error("{{ [1].append(2) }}", NULL, SFT_ERR_INVALID, "'append' of 'list' object is unsafe");
	expect_error("{{ x.y.z }}", NULL, SFT_ERR_INVALID, "'x' is undefined");
	expect_error("{{ 1 + 'a' }}", NULL, SFT_ERR_INVALID, "unsupported operand type(s) for +: 'int' and 'str'");
	expect_error("{{ 1 // 0 }}", NULL, SFT_ERR_INVALID, "division or modulo by zero");
	/* {{ a + b + ... }} prints string operands directly; other sums as Python adds them */
	expect("{{ 'a' + 'b' + 'c' }}|{{ 'x' + ('y' + 'z') }}|{{ 1 + 2 + 3 }}|{{ [1] + [2] + [3] }}", NULL,
		   "abc|xyz|6|[1, 2, 3]");
	expect("{{ 'a' + 'b' + 'c' + 'd' + 'e' + 'f' + 'g' + 'h' + 'i' + 'j' + 'k' + 'l' + 'm' + 'n' + 'o' + 'p' + 'q' + 'r' }}",
		   NULL, "abcdefghijklmnopqr");
	expect("{{ 'n=' + n | string + '.' }}", "{\"n\": 7}", "n=7.");
	expect_error("{{ 'a' + 'b' + 1 }}", NULL, SFT_ERR_INVALID, "can only concatenate str (not \"int\") to str");
	expect_error("{{ 1 + 2 + 'x' }}", NULL, SFT_ERR_INVALID, "unsupported operand type(s) for +: 'int' and 'str'");
	/* left to right: the failing addition stops before a later operand runs */
	expect_error("{{ 'a' + none + raise_exception('later') }}", NULL, SFT_ERR_INVALID,
				 "can only concatenate str (not \"NoneType\") to str");
	expect_error("{{ 'a' + raise_exception('first') + 1 }}", NULL, SFT_ERR_INVALID, "first");
	expect_error("{{ 'a' + missing + 'b' }}", NULL, SFT_ERR_INVALID, "'missing' is undefined");
	expect_error("{% raw %}x{% endraw %}", NULL, SFT_ERR_UNSUPPORTED, "raw block");
	expect_error("{{ 'unterminated }}", NULL, SFT_ERR_INVALID, "unterminated string literal");
	expect_error("{% break %}", NULL, SFT_ERR_INVALID, "'break' outside a for loop");
	expect_error("{{ 9223372036854775807 + 1 }}", NULL, SFT_ERR_UNSUPPORTED, "does not fit in 64 bits");
	expect_error("a\xff", NULL, SFT_ERR_INVALID, "not valid UTF-8 at byte 1");
	/* raise_exception: the template's own message, flagged */
	TAP_OK(render("{{ raise_exception('Bad role: ' ~ r) }}", "{\"r\": \"tool\"}") == NULL &&
		   strcmp(last_error, "Bad role: tool") == 0 && last_raised,
		   "raise_exception carries the template's message verbatim (%s)", last_error);

	/* --- bounds ------------------------------------------------------------ */
	{
		SftJinjaRender r;

		sft_jinja_render_init(&r, NULL);
		r.limits.max_steps = 10000;
		TAP_OK(render_with("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
						   NULL, &r, NULL, NULL) == NULL && last_status == SFT_ERR_LIMIT &&
			   strstr(last_error, "more than 10000 steps"), "nested loops stop at the step budget (%s)", last_error);
		sft_jinja_render_init(&r, NULL);
		r.limits.max_output = 1000;
		TAP_OK(render_with("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", NULL, &r, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT && strstr(last_error, "longer than 1000 bytes"),
			   "output stops at its limit (%s)", last_error);
		sft_jinja_render_init(&r, NULL);
		r.limits.max_memory = 1 << 20;
		TAP_OK(render_with("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
						   NULL, &r, NULL, NULL) == NULL && last_status == SFT_ERR_LIMIT &&
			   strstr(last_error, "memory"), "doubling a string stops at the memory limit (%s)", last_error);
		TAP_OK(render_with("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT && strstr(last_error, "nested deeper"),
			   "unbounded macro recursion stops at the depth limit (%s)", last_error);
		TAP_OK(render_with("{{ 'ab' * 4000000000000 }}", NULL, NULL, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT, "a huge repetition is refused up front (%s)", last_error);
		TAP_OK(render_with("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, NULL, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT && strstr(last_error, "containing itself"),
			   "a namespace that contains itself is refused when printed, not a stack overflow (%s)", last_error);
		TAP_OK(render_with("{% set ns = namespace(l=[]) %}{% for i in range(20000) %}{% set ns.l = [ns.l] %}{% endfor %}"
						   "{{ ns.l == ns.l }}{{ [ns.l] < [ns.l] }}", NULL, NULL, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT, "20000 nested lists compare without a stack overflow (%s)", last_error);
		sft_jinja_render_init(&r, NULL);
		r.limits.max_steps = 1000000;
		TAP_OK(render_with("{% set s = 'a' * 4000000 %}{% for i in range(100000) %}{% if 'b' in s %}x{% endif %}"
						   "{% if s.rfind('ab') > 0 %}y{% endif %}{% endfor %}", NULL, &r, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT && strstr(last_error, "steps"),
			   "searching a 4 MB string in a loop is charged to the step budget (%s)", last_error);
		sft_jinja_render_init(&r, NULL);
		r.limits.max_steps = 1000000;
		TAP_OK(render_with("{% set l = range(100000) | list %}{% for i in range(1000) %}{{ l == l }}{% endfor %}",
						   NULL, &r, NULL, NULL) == NULL && last_status == SFT_ERR_LIMIT,
			   "comparing long lists in a loop is charged to the step budget (%s)", last_error);
		TAP_OK(render_with("{{ range(1000000) | length }}", NULL, NULL, NULL, NULL) == NULL &&
			   strstr(last_error, "range too big"), "range() is capped as in the sandbox (%s)", last_error);
	}
	{
		/* parser nesting: deep parentheses are refused, not a stack overflow */
		static char deep[20000];
		size_t		n = 0;

		n += sprintf(deep + n, "{{ ");
		for (int i = 0; i < 5000; i++)
			deep[n++] = '(';
		deep[n++] = '1';
		for (int i = 0; i < 5000; i++)
			deep[n++] = ')';
		sprintf(deep + n, " }}");
		TAP_OK(render(deep, NULL) == NULL && last_status == SFT_ERR_LIMIT && strstr(last_error, "nesting deeper"),
			   "5000 nested parentheses are refused (%s)", last_error);
	}
	{
		SftJinjaRender r;
		int			calls = 0;

		sft_jinja_render_init(&r, NULL);
		r.interrupt = always_interrupt;
		r.interrupt_arg = &calls;
		TAP_OK(render_with("{% for i in range(100000) %}{{ i }}{% endfor %}", NULL, &r, NULL, NULL) == NULL &&
			   last_status == SFT_ERR_LIMIT && strstr(last_error, "interrupted") && calls == 1,
			   "the interrupt callback stops a long render (%d call, %s)", calls, last_error);
	}
	{
		SftJinjaRender r;

		sft_jinja_render_init(&r, NULL);
		r.now_set = 1;
		r.now = 86400 * 365;	/* 1971-01-01 */
		setenv("TZ", "UTC", 1);
		tzset();
		TAP_OK(render_with("{{ strftime_now('%Y-%m-%d %B') }}", NULL, &r, NULL, NULL) &&
			   strcmp(render_with("{{ strftime_now('%Y-%m-%d %B') }}", NULL, &r, NULL, NULL), "1971-01-01 January") == 0,
			   "strftime_now reads the pinned clock");
		expect_error("{{ strftime_now('%Q') }}", NULL, SFT_ERR_UNSUPPORTED, "directive %Q");
	}

	/* --- spans: content through filters, and generation blocks ------------- */
	{
		SftJinjaSpans content = {0},
					gen = {0};
		const char *vars = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"},"
			"{\"role\": \"assistant\", \"content\": \"  <think>r</think>\\n\\nanswer  \"}]}";
		const char *out = render_with("{% for m in messages %}<{{ m.role }}>"
									  "{% if m.role == 'assistant' %}{% generation %}"
									  "{{ (m.content.split('</think>')[-1] | trim) + '</s>' }}{% endgeneration %}"
									  "{% else %}{{ m.content }}{% endif %}{% endfor %}",
									  vars, NULL, &content, &gen);

		TAP_OK(out && strcmp(out, "<user>hi<assistant>answer</s>") == 0, "span template renders (%s)",
			   out ? out : last_error);
		TAP_OK(content.len == 2 && content.data[0].message == 0 && content.data[0].start == 6 &&
			   content.data[0].len == 2 && content.data[1].message == 1 && content.data[1].start == 19 &&
			   content.data[1].len == 6,
			   "content spans follow split, [-1], trim and + to the output (%zu spans)", content.len);
		TAP_OK(gen.len == 1 && gen.data[0].start == 19 && gen.data[0].len == 10,
			   "the generation block covers its output (%zu spans)", gen.len);
		out = render_with("{% for m in messages %}{{ m.content | upper }}{{ m.content[2:4] }}{% endfor %}",
						  vars, NULL, &content, &gen);
		TAP_OK(out && content.len == 1 && content.data[0].message == 1 && content.data[0].len == 2,
			   "upper() drops provenance, slicing keeps it (%zu spans)", content.len);
		sft_jinja_spans_free(&content);
		sft_jinja_spans_free(&gen);
	}
	/* --- chat variables straight from a conversation (SftJinjaRender.conv) --- */
	{
		SftMessage	m[2] = {{SFT_ROLE_USER, "Hi", 2, false}, {SFT_ROLE_ASSISTANT, "Yo", 2, false}};
		SftConversation conv = {m, 2};
		SftJinjaRender r;
		SftJinjaSpans content = {0};
		const char *got;

		sft_jinja_render_init(&r, NULL);
		r.conv = &conv;
		r.conv_upto = 2;
		r.system = "Sys";
		r.system_len = 3;
		r.add_generation_prompt = 1;
		r.bos_token = "<s>";
		r.eos_token = "</s>";
		got = render_with("{{ bos_token }}{% for x in messages %}[{{ x.role }}:{{ x['content'] }}]{% endfor %}"
						  "{{ eos_token }}{{ add_generation_prompt }}{{ tools }}{{ documents is none }}{{ flag }}",
						  "{\"eos_token\": \"<eot>\", \"flag\": 1}", &r, &content, NULL);
		TAP_OK(got && strcmp(got, "<s>[system:Sys][user:Hi][assistant:Yo]<eot>TrueNoneTrue1") == 0,
			   "conv: system first, kwargs over the special tokens (got \"%s\"%s)", got ? got : "error",
			   got ? "" : last_error);
		TAP_OK(content.len == 3 && content.data[0].message == 0 && content.data[1].message == 1 &&
			   content.data[2].message == 2 && content.data[2].start == 35 && content.data[2].len == 2,
			   "conv: content spans number the messages as the template sees them");
		r.conv_upto = 1;
		r.system = NULL;
		got = render_with("{{ messages | length }}{{ messages[0].items() | list }}", NULL, &r, &content, NULL);
		TAP_OK(got && strcmp(got, "1[('role', 'user'), ('content', 'Hi')]") == 0,
			   "conv: conv_upto messages, keys in jsonb's order (got \"%s\")", got ? got : last_error);
		sft_jinja_spans_free(&content);
	}

	return tap_done();
}
