/*
 * conversation.c: what makes a valid conversation, and the pure operations
 * behind the SQL conversation functions.
 *
 * Shape rules (the ones chat templates and loss masks rely on):
 *   - at least one message and at least one user message;
 *   - system messages only before the first user message;
 *   - then user and assistant alternate, starting with user;
 *   - for training the last message is an assistant message, for generation
 *     it is a user message; sft_messages() accepts either.
 */
#include "conversation.h"

#include <string.h>
#include <strings.h>

static const char *const role_names[] = {"system", "user", "assistant"};

int
sft_role_parse(const char *name, size_t len)
{
	for (int r = 0; r < 3; r++)
	{
		if (strlen(role_names[r]) == len && strncasecmp(name, role_names[r], len) == 0)
			return r;
	}
	return -1;
}

const char *
sft_role_name(SftRole role)
{
	return (role >= 0 && role <= SFT_ROLE_ASSISTANT) ? role_names[role] : "unknown";
}

SftStatus
sft_conversation_check(const SftConversation *conv, SftConversationUse use, SftError *err)
{
	int			i = 0;
	SftRole		expected = SFT_ROLE_USER;
	const SftMessage *last;

	if (conv->n == 0)
		return sft_error(err, SFT_ERR_INVALID, "conversation is empty");

	while (i < conv->n && conv->messages[i].role == SFT_ROLE_SYSTEM)
		i++;
	if (i == conv->n)
		return sft_error(err, SFT_ERR_INVALID,
						 "conversation has a system message but no user message");

	for (; i < conv->n; i++)
	{
		SftRole		role = conv->messages[i].role;

		if (role == SFT_ROLE_SYSTEM)
			return sft_error(err, SFT_ERR_INVALID,
							 "message %d: system message after the conversation started "
							 "(system messages must come first)", i);
		if (role != expected)
		{
			if (expected == SFT_ROLE_USER && i > 0 && conv->messages[i - 1].role == SFT_ROLE_SYSTEM)
				return sft_error(err, SFT_ERR_INVALID,
								 "message %d: expected a user message after the system prompt, found %s",
								 i, sft_role_name(role));
			if (expected == SFT_ROLE_USER && (i == 0 || conv->messages[i - 1].role == SFT_ROLE_SYSTEM))
				return sft_error(err, SFT_ERR_INVALID,
								 "message %d: conversation must start with a user message, found %s",
								 i, sft_role_name(role));
			return sft_error(err, SFT_ERR_INVALID,
							 "message %d: two consecutive %s messages (user and assistant must alternate)",
							 i, sft_role_name(role));
		}
		expected = (role == SFT_ROLE_USER) ? SFT_ROLE_ASSISTANT : SFT_ROLE_USER;
	}

	last = &conv->messages[conv->n - 1];
	if (use == SFT_CONV_TRAINING && last->role != SFT_ROLE_ASSISTANT)
		return sft_error(err, SFT_ERR_INVALID,
						 "message %d: a training conversation must end with an assistant message, found %s",
						 conv->n - 1, sft_role_name(last->role));
	if (use == SFT_CONV_GENERATION && last->role != SFT_ROLE_USER)
		return sft_error(err, SFT_ERR_INVALID,
						 "message %d: a conversation to answer must end with a user message, found %s",
						 conv->n - 1, sft_role_name(last->role));
	return SFT_OK;
}

int
sft_conversation_turns(const SftConversation *conv)
{
	int			turns = 0;

	for (int i = 1; i < conv->n; i++)
	{
		if (conv->messages[i].role == SFT_ROLE_ASSISTANT &&
			conv->messages[i - 1].role == SFT_ROLE_USER)
			turns++;
	}
	return turns;
}

SftStatus
sft_conversation_merge_system(const SftConversation *conv,
							  const char *separator, size_t separator_len,
							  SftConversation *out, char **merged, SftError *err)
{
	size_t		total = 0;
	int			n_system = 0;
	int			first_user = -1;
	char	   *text;
	char	   *p;
	int			n_out = 0;

	out->messages = NULL;
	out->n = 0;
	*merged = NULL;

	for (int i = 0; i < conv->n; i++)
	{
		const SftMessage *m = &conv->messages[i];

		if (m->role == SFT_ROLE_SYSTEM)
		{
			total += m->len + separator_len;
			n_system++;
		}
		else if (m->role == SFT_ROLE_USER && first_user < 0)
			first_user = i;
	}
	if (n_system > 0 && first_user < 0)
		return sft_error(err, SFT_ERR_INVALID,
						 "conversation has a system prompt but no user message to fold it into");

	out->messages = sft_calloc(conv->n > 0 ? conv->n : 1, sizeof(SftMessage));
	if (out->messages == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory merging system prompt");

	if (n_system == 0)
	{
		memcpy(out->messages, conv->messages, conv->n * sizeof(SftMessage));
		out->n = conv->n;
		return SFT_OK;
	}

	total += conv->messages[first_user].len;
	text = sft_alloc(total + 1);
	if (text == NULL)
	{
		sft_free(out->messages);
		out->messages = NULL;
		return sft_error(err, SFT_ERR_NOMEM, "out of memory merging system prompt");
	}
	p = text;
	for (int i = 0; i < conv->n; i++)
	{
		const SftMessage *m = &conv->messages[i];

		if (m->role != SFT_ROLE_SYSTEM)
			continue;
		memcpy(p, m->content, m->len);
		p += m->len;
		memcpy(p, separator, separator_len);
		p += separator_len;
	}
	memcpy(p, conv->messages[first_user].content, conv->messages[first_user].len);
	p += conv->messages[first_user].len;
	*p = '\0';

	for (int i = 0; i < conv->n; i++)
	{
		if (conv->messages[i].role == SFT_ROLE_SYSTEM)
			continue;
		out->messages[n_out] = conv->messages[i];
		if (i == first_user)
		{
			out->messages[n_out].content = text;
			out->messages[n_out].len = (size_t) (p - text);
		}
		n_out++;
	}
	out->n = n_out;
	*merged = text;
	return SFT_OK;
}

int
sft_conversation_truncate_turns(const SftConversation *conv, int max_turns)
{
	int			turns = 0;

	for (int i = 0; i < conv->n; i++)
	{
		SftRole		role = conv->messages[i].role;

		/* A user message opens exchange number turns + 1. */
		if (role == SFT_ROLE_USER && turns >= max_turns)
			return i;
		if (role == SFT_ROLE_ASSISTANT)
			turns++;
	}
	return conv->n;
}

/* ---------------------------------------------------------------------------
 * Placeholders
 * ------------------------------------------------------------------------- */

SftStatus
sft_text_fill(const char *text, size_t len, const SftReplacement *r, int n,
			  SftBuf *out, int *replaced, SftError *err)
{
	size_t		copied = 0;		/* text[0..copied) is in out */
	size_t		i = 0;

	*replaced = 0;
	while (i < len)
	{
		int			best = -1;

		for (int k = 0; k < n; k++)
			if (r[k].from_len <= len - i && r[k].from[0] == text[i] &&
				memcmp(text + i, r[k].from, r[k].from_len) == 0 &&
				(best < 0 || r[k].from_len > r[best].from_len))
				best = k;
		if (best < 0)
		{
			i++;
			continue;
		}
		if (sft_buf_append(out, text + copied, i - copied) != SFT_OK ||
			sft_buf_append(out, r[best].to, r[best].to_len) != SFT_OK)
			return sft_error(err, SFT_ERR_NOMEM, "out of memory filling placeholders");
		i += r[best].from_len;
		copied = i;
		(*replaced)++;
	}
	if (sft_buf_append(out, text + copied, len - copied) != SFT_OK)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory filling placeholders");
	return SFT_OK;
}

static bool
is_upper_placeholder_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool
is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '.' || c == '-';
}

/* Length of the placeholder starting at s[0], or 0. */
static size_t
placeholder_at(const char *s, size_t len)
{
	size_t		j;

	if (len >= 5 && s[0] == '<' && s[1] == '|' && s[2] >= 'A' && s[2] <= 'Z')
	{
		for (j = 3; j < len && is_upper_placeholder_char(s[j]); j++)
			;
		if (j + 1 < len && s[j] == '|' && s[j + 1] == '>')
			return j + 2;
		return 0;
	}
	if (len >= 5 && s[0] == '{' && s[1] == '{')
	{
		j = 2;
		while (j < len && s[j] == ' ')
			j++;
		if (j >= len || !((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_'))
			return 0;
		while (j < len && is_word_char(s[j]))
			j++;
		while (j < len && s[j] == ' ')
			j++;
		if (j + 1 < len && s[j] == '}' && s[j + 1] == '}')
			return j + 2;
	}
	return 0;
}

SftStatus
sft_placeholder_scan(const char *text, size_t len, SftSpanSink found, void *arg)
{
	size_t		i = 0;

	while (i < len)
	{
		size_t		n = (text[i] == '<' || text[i] == '{') ? placeholder_at(text + i, len - i) : 0;

		if (n == 0)
		{
			i++;
			continue;
		}
		SftStatus	st = found(arg, text + i, n);

		if (st != SFT_OK)
			return st;
		i += n;
	}
	return SFT_OK;
}
