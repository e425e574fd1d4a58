/*
 * test_message_tree.c: threads of message trees (flat and nested), case by
 * case, every malformed shape, and 2,000 random trees against a recursive
 * restatement of the rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message_tree.h"
#include "tap.h"

/* Message spec "id parent role rank": parent "-" at a root, role p/a,
 * rank "-" unranked, an "x" after the rank excluded ("0x", "-x").  The text of a message is its id. */
typedef struct Spec
{
	char		id[16];
	char		parent[16];
	char		role;
	int			rank;
	int			excluded;
} Spec;

static int
parse_specs(const char *src, Spec *specs, SftTreeMessage *msgs)
{
	int			n = 0;
	const char *p = src;

	while (*p)
	{
		char		rank[8];
		int			used = 0;
		Spec	   *s = &specs[n];

		if (sscanf(p, " %15[^ ;] %15[^ ;] %c %7[^ ;]%n", s->id, s->parent, &s->role, rank, &used) < 4)
			break;
		p += used;
		while (*p == ' ' || *p == ';')
			p++;
		s->excluded = strchr(rank, 'x') != NULL;
		s->rank = rank[0] == '-' ? -1 : atoi(rank);
		msgs[n] = (SftTreeMessage) {
			s->id, strlen(s->id),
			strcmp(s->parent, "-") == 0 ? NULL : s->parent, strlen(s->parent),
			s->role == 'p' ? SFT_ROLE_USER : s->role == 'a' ? SFT_ROLE_ASSISTANT : SFT_ROLE_SYSTEM,
			s->id, strlen(s->id),
			s->rank < 0 ? SFT_TREE_UNRANKED : s->rank, s->excluded
		};
		n++;
	}
	return n;
}

typedef struct Collect
{
	char		out[8192];
	int			threads;
	int			stop_after;		/* 0: never stop */
} Collect;

static SftStatus
collect(void *arg, const SftConversation *conv, int last, SftError *err)
{
	Collect    *c = arg;
	size_t		len = strlen(c->out);

	if (c->threads > 0 && len < sizeof(c->out) - 64)
		len += snprintf(c->out + len, sizeof(c->out) - len, " | ");
	for (int k = 0; k < conv->n && len < sizeof(c->out) - 64; k++)
		len += snprintf(c->out + len, sizeof(c->out) - len, "%s%.*s%s", k ? ">" : "",
						(int) conv->messages[k].len, conv->messages[k].content,
						conv->messages[k].role == SFT_ROLE_USER ? "?" : "");
	c->threads++;
	if (c->stop_after && c->threads == c->stop_after)
		return sft_error(err, SFT_ERR_INVALID, "stopped by the sink");
	return SFT_OK;
}

/* Threads of a flat spec as "a?>b | a?>c", or "ERROR: message". */
static const char *
threads_of(const char *src, SftThreads mode)
{
	static Collect c;
	Spec		specs[64];
	SftTreeMessage msgs[64];
	int			n = parse_specs(src, specs, msgs);
	SftMessageTree tree;
	SftError	err = {0};
	SftStatus	st;

	memset(&c, 0, sizeof(c));
	st = sft_message_tree_build(&tree, msgs, n, &err);
	if (st == SFT_OK)
		st = sft_message_tree_threads(&tree, mode, collect, &c, &err);
	sft_message_tree_free(&tree);
	if (st != SFT_OK)
		snprintf(c.out, sizeof(c.out), "ERROR: %s", err.message);
	return c.out;
}

static const char *
nested_threads_of(const char *json, SftThreads mode)
{
	static Collect c;
	SftNestedTree t;
	SftError	err = {0};
	SftStatus	st;

	memset(&c, 0, sizeof(c));
	st = sft_nested_tree_parse(&t, json, strlen(json), &err);
	if (st == SFT_OK)
		st = sft_message_tree_threads(&t.tree, mode, collect, &c, &err);
	sft_nested_tree_free(&t);
	if (st != SFT_OK)
		snprintf(c.out, sizeof(c.out), "ERROR: %s", err.message);
	return c.out;
}

#define EXPECT(got, want, ...) do { \
	const char *got_ = (got); \
	TAP_OK(strcmp(got_, (want)) == 0, __VA_ARGS__); \
	if (strcmp(got_, (want)) != 0) printf("#   got  [%s]\n#   want [%s]\n", got_, (want)); \
} while (0)

static int
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---------------------------------------------------------------------------
 * The rules restated recursively, for random trees.
 * ------------------------------------------------------------------------- */
typedef struct RandTree
{
	int			n;
	int			parent[40];
	int			rank[40];		/* -1 unranked */
	int			excluded[40];
	int			role[40];
	char		id[40][8];
} RandTree;

static int
ref_before(const RandTree *t, int a, int b)
{
	long		ra = t->rank[a] < 0 ? 1000000 : t->rank[a];
	long		rb = t->rank[b] < 0 ? 1000000 : t->rank[b];
	int			c;

	if (ra != rb)
		return ra < rb;
	c = strcmp(t->id[a], t->id[b]);
	return c != 0 ? c < 0 : a < b;
}

/* Children of p that are kept, in sibling order (p = -1: roots). */
static int
ref_children(const RandTree *t, int p, int *out)
{
	int			k = 0;

	for (int i = 0; i < t->n; i++)
	{
		int			answered = t->role[i] == SFT_ROLE_ASSISTANT;

		if (t->parent[i] != p || t->excluded[i])
			continue;
		for (int c = 0; c < t->n && !answered; c++)
			answered = t->parent[c] == i && !t->excluded[c];
		if (!answered)
			continue;
		out[k++] = i;
	}
	for (int a = 1; a < k; a++)
		for (int b = a; b > 0 && ref_before(t, out[b], out[b - 1]); b--)
		{
			int			x = out[b];

			out[b] = out[b - 1];
			out[b - 1] = x;
		}
	return k;
}

static void
ref_walk(const RandTree *t, int node, SftThreads mode, char *prefix, char *out)
{
	int			kids[40];
	int			k = ref_children(t, node, kids);
	size_t		len = strlen(prefix);

	if (k == 0)
	{
		if (out[0])
			strcat(out, " | ");
		strcat(out, prefix);
		return;
	}
	for (int j = 0; j < (mode == SFT_THREADS_TOP1 ? 1 : k); j++)
	{
		sprintf(prefix + len, "%s%s%s", len ? ">" : "", t->id[kids[j]],
				t->role[kids[j]] == SFT_ROLE_USER ? "?" : "");
		ref_walk(t, kids[j], mode, prefix, out);
		prefix[len] = '\0';
	}
}

static void
ref_threads(const RandTree *t, SftThreads mode, char *out)
{
	int			roots[40];
	int			k = ref_children(t, -1, roots);
	char		prefix[1024];

	out[0] = '\0';
	for (int j = 0; j < k; j++)
	{
		sprintf(prefix, "%s?", t->id[roots[j]]);
		ref_walk(t, roots[j], mode, prefix, out);
	}
}

static void
random_trees(void)
{
	SftRng		rng;
	int			mismatches = 0;
	int			threads = 0;

	sft_rng_seed(&rng, 16);
	for (int trial = 0; trial < 2000; trial++)
	{
		RandTree	t;
		SftTreeMessage msgs[40];
		char		want[8192];

		t.n = 1 + (int) (sft_rng_next(&rng) % 30);
		for (int i = 0; i < t.n; i++)
		{
			/* parents come earlier; some extra roots; ids shuffled letters */
			t.parent[i] = (i == 0 || sft_rng_next(&rng) % 12 == 0) ? -1 : (int) (sft_rng_next(&rng) % i);
			t.role[i] = t.parent[i] < 0 ? SFT_ROLE_USER
				: t.role[t.parent[i]] == SFT_ROLE_USER ? SFT_ROLE_ASSISTANT : SFT_ROLE_USER;
			t.rank[i] = sft_rng_next(&rng) % 3 == 0 ? -1 : (int) (sft_rng_next(&rng) % 3);
			t.excluded[i] = sft_rng_next(&rng) % 9 == 0;
			snprintf(t.id[i], sizeof(t.id[i]), "%c%d", 'a' + (int) (sft_rng_next(&rng) % 3), i);
		}
		for (int i = 0; i < t.n; i++)
			msgs[i] = (SftTreeMessage) {
				t.id[i], strlen(t.id[i]),
				t.parent[i] < 0 ? NULL : t.id[t.parent[i]], t.parent[i] < 0 ? 0 : strlen(t.id[t.parent[i]]),
				t.role[i], t.id[i], strlen(t.id[i]),
				t.rank[i] < 0 ? SFT_TREE_UNRANKED : t.rank[i], t.excluded[i]
			};
		for (int mode = 0; mode < 2; mode++)
		{
			Collect		c;
			SftMessageTree tree;
			SftError	err = {0};

			memset(&c, 0, sizeof(c));
			/* input order reversed half of the time: the order must not matter */
			if (trial % 2)
			{
				SftTreeMessage rev[40];

				for (int i = 0; i < t.n; i++)
					rev[i] = msgs[t.n - 1 - i];
				memcpy(msgs, rev, sizeof(SftTreeMessage) * t.n);
			}
			if (sft_message_tree_build(&tree, msgs, t.n, &err) != SFT_OK ||
				sft_message_tree_threads(&tree, (SftThreads) mode, collect, &c, &err) != SFT_OK)
				snprintf(c.out, sizeof(c.out), "ERROR: %s", err.message);
			sft_message_tree_free(&tree);
			ref_threads(&t, (SftThreads) mode, want);
			threads += c.threads;
			if (strcmp(c.out, want) != 0 && mismatches++ < 3)
				printf("#   trial %d mode %d\n#   got  [%s]\n#   want [%s]\n", trial, mode, c.out, want);
		}
	}
	TAP_OK(mismatches == 0, "2,000 random trees, both modes, either input order: the threads "
		   "the recursive restatement gives (%d threads, %d mismatches)", threads, mismatches);
}

/* A chain of n messages with a dead-end reply at every step. */
static void
deep_chain(void)
{
	int			n = 200000;
	SftTreeMessage *msgs = malloc(sizeof(SftTreeMessage) * n);
	char	   *ids = malloc((size_t) n * 8);
	SftMessageTree tree;
	SftError	err = {0};
	Collect		c;
	SftStatus	st;

	for (int i = 0; i < n; i++)
	{
		snprintf(ids + (size_t) i * 8, 8, "%d", i);
		msgs[i] = (SftTreeMessage) {
			ids + (size_t) i * 8, strlen(ids + (size_t) i * 8),
			i ? ids + (size_t) (i - 1) * 8 : NULL, i ? strlen(ids + (size_t) (i - 1) * 8) : 0,
			i % 2 ? SFT_ROLE_ASSISTANT : SFT_ROLE_USER, "t", 1, SFT_TREE_UNRANKED, false
		};
	}
	memset(&c, 0, sizeof(c));
	st = sft_message_tree_build(&tree, msgs, n, &err);
	if (st == SFT_OK)
		st = sft_message_tree_threads(&tree, SFT_THREADS_TOP1, collect, &c, &err);
	TAP_OK(st == SFT_OK && c.threads == 1 && tree.path[n - 1] == n - 1,
		   "a chain of 200,000 messages: one thread, no recursion (%s)", err.message);
	sft_message_tree_free(&tree);
	/* a cycle closing the chain: the last message becomes the first one's parent */
	msgs[0].parent_id = msgs[n - 1].id;
	msgs[0].parent_len = msgs[n - 1].id_len;
	st = sft_message_tree_build(&tree, msgs, n, &err);
	TAP_OK(st == SFT_ERR_INVALID && strstr(err.message, "cycle") != NULL,
		   "a cycle of 200,000 messages is found: %s", err.message);
	sft_message_tree_free(&tree);
	free(msgs);
	free(ids);
}

int
main(void)
{
	SftThreads	mode;
	const char *got;
	char		deep[64 * 1024];
	size_t		len = 0;

	/* names */
	TAP_OK(sft_threads_from_name("all", &mode, NULL) == SFT_OK && mode == SFT_THREADS_ALL, "threads 'all'");
	TAP_OK(sft_threads_from_name("top1", &mode, NULL) == SFT_OK && mode == SFT_THREADS_TOP1, "threads 'top1'");
	TAP_OK(sft_threads_from_name("best", &mode, NULL) == SFT_ERR_INVALID, "threads 'best' is refused");
	TAP_OK(sft_tree_role_parse("prompter", 8) == SFT_ROLE_USER && sft_tree_role_parse("user", 4) == SFT_ROLE_USER &&
		   sft_tree_role_parse("assistant", 9) == SFT_ROLE_ASSISTANT && sft_tree_role_parse("system", 6) == -1,
		   "roles: prompter/user -> user, assistant; system refused");

	/* the oasst shape: one prompt, ranked replies, follow-ups */
	const char *tree = "r - p -; a1 r a 1; a0 r a 0; p1 a0 p 0; b1 p1 a -; a2 r a -";

	EXPECT(threads_of(tree, SFT_THREADS_ALL), "r?>a0>p1?>b1 | r?>a1 | r?>a2",
		   "all threads, in rank order (unranked last)");
	EXPECT(threads_of(tree, SFT_THREADS_TOP1), "r?>a0>p1?>b1", "top1 follows rank 0 at every step");
	EXPECT(threads_of("r - p -; a0 r a 0x; p1 a0 p -; b1 p1 a -; a1 r a 1", SFT_THREADS_TOP1), "r?>a1",
		   "a deleted best reply drops its subtree; top1 takes the next");
	EXPECT(threads_of("r - p -; a0 r a 0; p1 a0 p -; b1 p1 a -x", SFT_THREADS_ALL), "r?>a0",
		   "a prompt whose only reply is excluded is dropped: the thread ends at the assistant");
	EXPECT(threads_of("r - p -; a0 r a 0; p1 a0 p -", SFT_THREADS_ALL), "r?>a0",
		   "an unanswered follow-up is dropped");
	EXPECT(threads_of("r - p -", SFT_THREADS_ALL), "", "an unanswered prompt yields no thread");
	EXPECT(threads_of("r - p -x; a0 r a 0", SFT_THREADS_ALL), "", "an excluded root drops the tree");
	EXPECT(threads_of("", SFT_THREADS_ALL), "", "an empty tree yields nothing");
	EXPECT(threads_of("r - p -; b r a -; a r a -", SFT_THREADS_ALL), "r?>a | r?>b",
		   "unranked siblings in id order");
	EXPECT(threads_of("r - p -; b r a 0; a r a 0", SFT_THREADS_TOP1), "r?>a", "rank ties broken by id");
	EXPECT(threads_of("r - p -; x r a -; s - p -; y s a -", SFT_THREADS_TOP1), "r?>x | s?>y",
		   "two roots: one top1 thread each");
	EXPECT(threads_of("a0 r a 0; r - p -", SFT_THREADS_ALL), "r?>a0", "a child listed before its parent");

	/* malformed trees */
	got = threads_of("r - p -; a0 r a -; a0 r a -", SFT_THREADS_ALL);
	TAP_OK(starts_with(got, "ERROR: message \"a0\" appears more than once"), "duplicate id: %s", got);
	got = threads_of("r - p -; a0 zz a -", SFT_THREADS_ALL);
	TAP_OK(starts_with(got, "ERROR: message \"a0\" is an orphan: its parent \"zz\""), "orphan: %s", got);
	got = threads_of("r - p -; a0 r a -; x y a -; y x p -", SFT_THREADS_ALL);
	TAP_OK(starts_with(got, "ERROR: message \"") && strstr(got, "in a cycle") != NULL, "cycle: %s", got);
	got = threads_of("x x p -", SFT_THREADS_ALL);
	TAP_OK(strstr(got, "\"x\" is in a cycle") != NULL, "a message that is its own parent: %s", got);
	got = threads_of("r - a -", SFT_THREADS_ALL);
	TAP_OK(starts_with(got, "ERROR: message \"r\" is a root but an assistant message"), "assistant root: %s", got);
	got = threads_of("r - p -; a r a -; b a a -", SFT_THREADS_ALL);
	TAP_OK(starts_with(got, "ERROR: message \"b\": a assistant message replies to a assistant")
		   || strstr(got, "must alternate") != NULL, "assistant after assistant: %s", got);
	got = threads_of("r - s -", SFT_THREADS_ALL);
	TAP_OK(strstr(got, "role must be prompter or assistant") != NULL, "system role refused: %s", got);

	/* the sink stops the walk */
	{
		Spec		specs[8];
		SftTreeMessage msgs[8];
		int			n = parse_specs(tree, specs, msgs);
		SftMessageTree t;
		SftError	err = {0};
		Collect		c;

		memset(&c, 0, sizeof(c));
		c.stop_after = 2;
		sft_message_tree_build(&t, msgs, n, &err);
		TAP_OK(sft_message_tree_threads(&t, SFT_THREADS_ALL, collect, &c, &err) == SFT_ERR_INVALID &&
			   c.threads == 2, "a sink error stops the walk and is returned");
		sft_message_tree_free(&t);
	}

	/* the nested export */
	const char *nested =
		"{\"message_tree_id\": \"t1\", \"prompt\": {\"message_id\": \"r\", \"role\": \"prompter\", \"text\": \"Hi\","
		" \"rank\": null, \"deleted\": false, \"review_result\": true, \"replies\": ["
		"  {\"message_id\": \"a1\", \"role\": \"assistant\", \"text\": \"Second\", \"rank\": 1, \"replies\": []},"
		"  {\"message_id\": \"a0\", \"role\": \"assistant\", \"text\": \"Best\", \"rank\": 0, \"replies\": ["
		"     {\"role\": \"prompter\", \"text\": \"More?\", \"replies\": [{\"role\": \"assistant\", \"text\": \"Yes\"}]}]},"
		"  {\"message_id\": \"a2\", \"role\": \"assistant\", \"text\": \"Spam\", \"rank\": 2, \"review_result\": false},"
		"  {\"message_id\": \"a3\", \"role\": \"assistant\", \"text\": \"Gone\", \"deleted\": true}]}}";

	EXPECT(nested_threads_of(nested, SFT_THREADS_ALL), "Hi?>Best>More?\?>Yes | Hi?>Second",
		   "nested: all threads, rejected and deleted replies dropped");
	EXPECT(nested_threads_of(nested, SFT_THREADS_TOP1), "Hi?>Best>More?\?>Yes", "nested: top1");
	EXPECT(nested_threads_of("{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": null}}",
							 SFT_THREADS_ALL), "", "nested: an unanswered prompt yields nothing");
	{
		static const struct
		{
			const char *json;
			const char *error;
		}			bad[] = {
			{"[1]", "a tree must be a JSON object"},
			{"{\"x\": 1}", "a tree has no \"prompt\""},
			{"{\"prompt\": 3}", "prompt must be an object"},
			{"{\"prompt\": {\"text\": \"Q\"}}", "prompt: \"role\" must be a string"},
			{"{\"prompt\": {\"role\": \"assistant\", \"text\": \"Q\"}}", "prompt: the prompt must have role prompter"},
			{"{\"prompt\": {\"role\": \"prompter\"}}", "prompt: \"text\" must be a string"},
			{"{\"prompt\": {\"role\": \"bot\", \"text\": \"Q\"}}", "prompt: unknown role \"bot\""},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": {}}}", "prompt: \"replies\" must be an array"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": [{\"role\": \"assistant\", \"text\": \"A\"}, "
			 "{\"role\": \"prompter\", \"text\": \"B\"}]}}", "prompt.replies[1]: a prompter message replies to a prompter message"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": [{\"role\": \"assistant\", \"text\": \"A\", \"rank\": 0.5}]}}",
			 "prompt.replies[0]: \"rank\" must be an integer"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": [{\"role\": \"assistant\", \"text\": \"A\", \"rank\": -1}]}}",
			 "prompt.replies[0]: \"rank\" must be 0 or more"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"deleted\": \"no\"}}", "prompt: \"deleted\" must be a boolean"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"review_result\": 1}}", "prompt: \"review_result\" must be a boolean"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"message_id\": 7}}", "prompt: \"message_id\" must be a string"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"Q\", \"replies\": [5]}}", "prompt.replies[0] must be an object"},
			{"{\"prompt\": ", "not valid JSON"},
			{"{\"prompt\": {}} x", "not valid JSON"},
			{"{\"prompt\": {\"role\": \"prompter\", \"text\": \"\xff\"}}", "invalid UTF-8 at byte"},
		};

		for (int i = 0; i < (int) (sizeof(bad) / sizeof(bad[0])); i++)
		{
			got = nested_threads_of(bad[i].json, SFT_THREADS_ALL);
			TAP_OK(starts_with(got, "ERROR: ") && strstr(got, bad[i].error) != NULL,
				   "nested error %d: %s", i, got);
		}
	}
	/* a thread deeper than the limit is refused, cleanly */
	len += snprintf(deep + len, sizeof(deep) - len, "{\"prompt\": ");
	for (int d = 0; d < SFT_NESTED_TREE_MAX_DEPTH + 1; d++)
		len += snprintf(deep + len, sizeof(deep) - len, "{\"role\": \"%s\", \"text\": \"t\", \"replies\": [",
						d % 2 ? "assistant" : "prompter");
	for (int d = 0; d < SFT_NESTED_TREE_MAX_DEPTH + 1; d++)
		len += snprintf(deep + len, sizeof(deep) - len, "]}");
	snprintf(deep + len, sizeof(deep) - len, "}");
	got = nested_threads_of(deep, SFT_THREADS_ALL);
	TAP_OK(starts_with(got, "ERROR: ") && strstr(got, "deeper than 1000") != NULL, "too deep: %.120s", got);

	deep_chain();
	random_trees();
	return tap_done();
}
