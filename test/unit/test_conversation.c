/*
 * test_conversation.c: the core conversation rules, checked case by case and
 * against a brute-force restatement of the rules on every role sequence of up
 * to 7 messages.
 */
#include <stdio.h>
#include <string.h>

#include "conversation.h"
#include "tap.h"

static SftConversation
make(const char *roles, SftMessage *buf)
{
	SftConversation c = {buf, (int) strlen(roles)};

	for (int i = 0; i < c.n; i++)
	{
		memset(&buf[i], 0, sizeof(buf[i]));
		buf[i].role = roles[i] == 's' ? SFT_ROLE_SYSTEM : roles[i] == 'u' ? SFT_ROLE_USER : SFT_ROLE_ASSISTANT;
		buf[i].content = roles[i] == 's' ? "sys" : roles[i] == 'u' ? "question" : "answer";
		buf[i].len = strlen(buf[i].content);
	}
	return c;
}

static SftStatus
collect_span(void *arg, const char *span, size_t len)
{
	char	   *out = arg;
	size_t		used = strlen(out);

	snprintf(out + used, 256 - used, "[%.*s]", (int) len, span);
	return SFT_OK;
}

/* The rules restated as a pattern: s* u (a u)* a? */
static int
valid_by_pattern(const char *r)
{
	size_t		i = strspn(r, "s");
	char		want = 'u';

	if (r[i] == '\0')
		return 0;
	for (; r[i]; i++)
	{
		if (r[i] != want)
			return 0;
		want = want == 'u' ? 'a' : 'u';
	}
	return 1;
}

int
main(void)
{
	SftMessage	buf[16];
	SftError	err = {0};
	SftConversation c;
	char		roles[8];
	int			mismatches = 0;
	int			checked = 0;

	TAP_OK(sft_role_parse("User", 4) == SFT_ROLE_USER, "roles are case-insensitive");
	TAP_OK(sft_role_parse("users", 5) == -1 && sft_role_parse("", 0) == -1, "unknown roles are -1");

	c = make("", buf);
	TAP_OK(sft_conversation_check(&c, SFT_CONV_ANY, &err) == SFT_ERR_INVALID &&
		   strstr(err.message, "empty") != NULL, "empty conversation: %s", err.message);
	sft_error_clear(&err);
	c = make("uu", buf);
	TAP_OK(sft_conversation_check(&c, SFT_CONV_ANY, &err) == SFT_ERR_INVALID &&
		   strstr(err.message, "message 1") != NULL, "error names the index: %s", err.message);
	sft_error_clear(&err);
	c = make("ua", buf);
	TAP_OK(sft_conversation_check(&c, SFT_CONV_TRAINING, &err) == SFT_OK, "ua is a training conversation");
	TAP_OK(sft_conversation_check(&c, SFT_CONV_GENERATION, &err) == SFT_ERR_INVALID, "ua is not a prompt");
	sft_error_clear(&err);
	c = make("uau", buf);
	TAP_OK(sft_conversation_check(&c, SFT_CONV_GENERATION, &err) == SFT_OK, "uau is a prompt");
	TAP_OK(sft_conversation_check(&c, SFT_CONV_TRAINING, &err) == SFT_ERR_INVALID, "uau is not a training conversation");
	TAP_OK(sft_conversation_turns(&c) == 1, "uau has one turn");

	/* Every sequence over {s,u,a} up to length 7 against the pattern. */
	for (int n = 0; n <= 7; n++)
	{
		int			total = 1;

		for (int k = 0; k < n; k++)
			total *= 3;
		for (int code = 0; code < total; code++)
		{
			int			x = code;

			for (int k = 0; k < n; k++, x /= 3)
				roles[k] = "sua"[x % 3];
			roles[n] = '\0';
			c = make(roles, buf);
			sft_error_clear(&err);
			if ((sft_conversation_check(&c, SFT_CONV_ANY, &err) == SFT_OK) != valid_by_pattern(roles))
				mismatches++;
			checked++;
		}
	}
	TAP_OK(mismatches == 0, "check agrees with the pattern s* u (a u)* a? on %d sequences", checked);

	/* Merge: two systems folded, in order, into the first user message. */
	{
		SftConversation merged;
		char	   *text;

		c = make("ssuaua", buf);
		TAP_OK(sft_conversation_merge_system(&c, " | ", 3, &merged, &text, &err) == SFT_OK &&
			   merged.n == 4 && merged.messages[0].role == SFT_ROLE_USER &&
			   merged.messages[0].len == strlen("sys | sys | question") &&
			   memcmp(merged.messages[0].content, "sys | sys | question", merged.messages[0].len) == 0 &&
			   merged.messages[3].content == buf[5].content,
			   "merge folds both system prompts into the first user message");
		sft_free(merged.messages);
		sft_free(text);
		c = make("s", buf);
		sft_error_clear(&err);
		TAP_OK(sft_conversation_merge_system(&c, "\n", 1, &merged, &text, &err) == SFT_ERR_INVALID &&
			   merged.messages == NULL && text == NULL, "system without user is an error, nothing allocated");
		c = make("ua", buf);
		TAP_OK(sft_conversation_merge_system(&c, "\n", 1, &merged, &text, &err) == SFT_OK &&
			   text == NULL && merged.n == 2, "no system prompt: unchanged");
		sft_free(merged.messages);
	}

	/* Truncation keeps system messages and whole exchanges. */
	c = make("suauaua", buf);
	TAP_OK(sft_conversation_truncate_turns(&c, 1) == 3, "1 turn of suauaua keeps sua");
	TAP_OK(sft_conversation_truncate_turns(&c, 2) == 5, "2 turns keep suaua");
	TAP_OK(sft_conversation_truncate_turns(&c, 9) == 7, "more turns than present keeps all");
	c = make("uau", buf);
	TAP_OK(sft_conversation_truncate_turns(&c, 2) == 3, "a trailing prompt inside the limit is kept");
	TAP_OK(sft_conversation_truncate_turns(&c, 1) == 2, "a trailing prompt beyond the limit is cut");

	/* UTF-8 validation. */
	TAP_OK(sft_utf8_invalid_offset("h\xc3\xa9llo", 6) == (size_t) -1, "valid UTF-8");
	TAP_OK(sft_utf8_invalid_offset("ab\xc3", 3) == 2, "truncated sequence found at its offset");
	TAP_OK(sft_utf8_invalid_offset("\xed\xa0\x80", 3) == 0, "surrogates rejected");
	TAP_OK(sft_utf8_invalid_offset("\xc0\xaf", 2) == 0, "overlong rejected");
	/* Placeholders: one pass, the longest key, spans of both styles. */
	{
		SftReplacement r[] = {{"<|A|>", 5, "x", 1}, {"<|A", 3, "?", 1}, {"a", 1, "b", 1}, {"b", 1, "a", 1}};
		SftBuf		out;
		int			n = 0;
		char		spans[256] = "";

		sft_buf_init(&out);
		TAP_OK(sft_text_fill("ab<|A|><|A", 10, r, 4, &out, &n, NULL) == SFT_OK &&
			   out.len == 4 && memcmp(out.data, "bax?", 4) == 0 && n == 4,
			   "fill: one pass, longest key first (%.*s, %d)", (int) out.len, out.data, n);
		sft_buf_free(&out);
		sft_buf_init(&out);
		TAP_OK(sft_text_fill("", 0, r, 4, &out, &n, NULL) == SFT_OK && out.len == 0 && n == 0,
			   "fill: empty text");
		sft_buf_free(&out);
		sft_placeholder_scan("<|im_end|><|MODEL_NAME|>{{ name }}{{9}}<|A{{x}", 45, collect_span, spans);
		TAP_OK(strcmp(spans, "[<|MODEL_NAME|>][{{ name }}]") == 0, "placeholder spans: %s", spans);
		spans[0] = '\0';
		sft_placeholder_scan("<|AB|", 5, collect_span, spans);
		TAP_OK(spans[0] == '\0', "an unclosed span at the end is not read past the end");
	}
	return tap_done();
}
