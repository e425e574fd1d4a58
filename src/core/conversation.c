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
