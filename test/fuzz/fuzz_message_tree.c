/*
 * fuzz_message_tree.c: libFuzzer target for message trees.
 *
 * An input starting with '{' is a document of the nested export
 * (*.trees.jsonl), parsed and read out in both modes; then the same messages
 * are rebuilt from ids (as the flat export gives them) and must yield exactly
 * the same threads.  Any other input is a flat tree, 4 bytes per message
 * (parent, role and exclusion bits, rank, id), so that orphans, cycles,
 * duplicate ids and role errors are reached.
 * Checks: no crash, no leak; every thread starts with a user message, ends
 * with an assistant message and alternates; top1 gives at most as many
 * threads as all, and at most one per root.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message_tree.h"

static void
check(int cond)
{
	if (!cond)
		__builtin_trap();
}

typedef struct Threads
{
	int			count;
	uint64_t	digest;			/* order-sensitive hash of every thread */
} Threads;

static SftStatus
sink(void *arg, const SftConversation *conv, int last, SftError *err)
{
	Threads    *t = arg;

	check(conv->n >= 2);
	check(conv->messages[0].role == SFT_ROLE_USER);
	check(conv->messages[conv->n - 1].role == SFT_ROLE_ASSISTANT);
	for (int k = 1; k < conv->n; k++)
		check(conv->messages[k].role != conv->messages[k - 1].role);
	t->count++;
	for (int k = 0; k < conv->n; k++)
	{
		const SftMessage *m = &conv->messages[k];

		for (size_t b = 0; b < m->len; b++)
			t->digest = (t->digest ^ (unsigned char) m->content[b]) * 1099511628211ULL;
		t->digest = (t->digest ^ (0x100u + m->role)) * 1099511628211ULL;
	}
	t->digest = (t->digest ^ 0x200u) * 1099511628211ULL;
	return SFT_OK;
}

static int
roots_of(const SftMessageTree *tree)
{
	int			n = 0;

	for (int r = tree->first_root; r >= 0; r = tree->next_sibling[r])
		n++;
	return n;
}

static void
both_modes(SftMessageTree *tree, Threads *all, Threads *top1)
{
	SftError	err = {0};

	memset(all, 0, sizeof(*all));
	memset(top1, 0, sizeof(*top1));
	check(sft_message_tree_threads(tree, SFT_THREADS_ALL, sink, all, &err) == SFT_OK);
	check(sft_message_tree_threads(tree, SFT_THREADS_TOP1, sink, top1, &err) == SFT_OK);
	check(top1->count <= all->count);
	check(top1->count <= roots_of(tree));
}

static void
fuzz_nested(const uint8_t *data, size_t size)
{
	SftNestedTree nested;
	SftError	err = {0};
	Threads		all,
				top1;

	if (sft_nested_tree_parse(&nested, (const char *) data, size, &err) == SFT_OK)
	{
		int			n = nested.n;
		SftTreeMessage *flat = malloc(sizeof(SftTreeMessage) * (n > 0 ? n : 1));
		char	   *ids = malloc((size_t) (n > 0 ? n : 1) * 16);
		SftMessageTree rebuilt;
		Threads		all2,
					top2;

		both_modes(&nested.tree, &all, &top1);
		/*
		 * The flat form of the same tree, linked by ids "#<index>" (the
		 * original ids may repeat or be missing, which the nested form
		 * allows).  Those ids sort in input order, so the threads are the
		 * same ones, in the same order when the originals had no ids.
		 */
		for (int i = 0; i < n; i++)
		{
			flat[i] = nested.msgs[i];
			snprintf(ids + (size_t) i * 16, 16, "#%09d", i);
			flat[i].id = ids + (size_t) i * 16;
			flat[i].id_len = strlen(flat[i].id);
			flat[i].parent_id = nested.parent[i] < 0 ? NULL : ids + (size_t) nested.parent[i] * 16;
			flat[i].parent_len = nested.parent[i] < 0 ? 0 : strlen(flat[i].parent_id);
		}
		check(sft_message_tree_build(&rebuilt, flat, n, &err) == SFT_OK);
		both_modes(&rebuilt, &all2, &top2);
		check(all2.count == all.count);
		check(top2.count == top1.count);
		{
			int			any_id = 0;

			for (int i = 0; i < n; i++)
				any_id |= nested.msgs[i].id != NULL;
			if (!any_id)
				check(all2.digest == all.digest && top2.digest == top1.digest);
		}
		sft_message_tree_free(&rebuilt);
		free(flat);
		free(ids);
	}
	else
		check(err.status != SFT_OK && err.message[0] != '\0');
	sft_nested_tree_free(&nested);
}

static void
fuzz_flat(const uint8_t *data, size_t size)
{
	int			n = (int) (size / 4);
	SftTreeMessage *msgs = malloc(sizeof(SftTreeMessage) * (n > 0 ? n : 1));
	char	   *ids = malloc((size_t) (n > 0 ? n : 1) * 8);
	SftMessageTree tree;
	SftError	err = {0};
	Threads		all,
				top1;

	for (int i = 0; i < n; i++)
	{
		const uint8_t *b = data + 4 * i;

		snprintf(ids + (size_t) i * 8, 8, "%u", b[3]);
		msgs[i].id = ids + (size_t) i * 8;
		msgs[i].id_len = strlen(msgs[i].id);
		if (b[0] == 0xff)
			msgs[i].parent_id = NULL, msgs[i].parent_len = 0;
		else
		{
			/* the id of some message, or one that exists nowhere */
			int			p = b[0] % (n + 1);

			msgs[i].parent_id = p < n ? ids + (size_t) p * 8 : "none";
			msgs[i].parent_len = 0;	/* set below, once every id is written */
		}
		msgs[i].role = (b[1] & 1) ? SFT_ROLE_ASSISTANT : SFT_ROLE_USER;
		if ((b[1] & 0x30) == 0x30)
			msgs[i].role = SFT_ROLE_SYSTEM;
		msgs[i].excluded = (b[1] & 2) != 0;
		msgs[i].rank = (b[1] & 4) ? SFT_TREE_UNRANKED : b[2];
		msgs[i].text = (const char *) b;
		msgs[i].text_len = 4;
	}
	for (int i = 0; i < n; i++)
		if (msgs[i].parent_id)
			msgs[i].parent_len = strlen(msgs[i].parent_id);
	if (sft_message_tree_build(&tree, msgs, n, &err) == SFT_OK)
		both_modes(&tree, &all, &top1);
	else
		check(err.message[0] != '\0');
	sft_message_tree_free(&tree);
	free(msgs);
	free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == '{')
		fuzz_nested(data, size);
	else
		fuzz_flat(data, size);
	return 0;
}
