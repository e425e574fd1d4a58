/*
 * message_tree.c: trees of messages (OpenAssistant exports) and their
 * threads; the rules are in message_tree.h.
 *
 * Building sorts every message once by (parent, rank, id, input order), which
 * gives each node its children in sibling order as a linked list; threads are
 * then read out with an explicit stack, so neither a deep chain nor a wide
 * fan-out costs more than the arrays sized at build time.
 */
#include "message_tree.h"

#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

SftStatus
sft_threads_from_name(const char *name, SftThreads *out, SftError *err)
{
	if (strcmp(name, "all") == 0)
		*out = SFT_THREADS_ALL;
	else if (strcmp(name, "top1") == 0)
		*out = SFT_THREADS_TOP1;
	else
		return sft_error(err, SFT_ERR_INVALID,
						 "invalid threads value \"%.64s\" (expected \"all\" or \"top1\")", name);
	return SFT_OK;
}

int
sft_tree_role_parse(const char *name, size_t len)
{
	if ((len == 8 && strncasecmp(name, "prompter", 8) == 0) ||
		(len == 4 && strncasecmp(name, "user", 4) == 0))
		return SFT_ROLE_USER;
	if (len == 9 && strncasecmp(name, "assistant", 9) == 0)
		return SFT_ROLE_ASSISTANT;
	return -1;
}

/* ---------------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------------- */

/* How an error names message i: by id when there is one, else by index. */
static void
describe_message(const SftTreeMessage *m, int i, char *buf, size_t size)
{
	if (m->id != NULL)
		snprintf(buf, size, "message \"%.*s\"", (int) (m->id_len > 64 ? 64 : m->id_len), m->id);
	else
		snprintf(buf, size, "message %d", i);
}

typedef struct SiblingKey
{
	int			parent;
	int			index;
	const SftTreeMessage *m;
} SiblingKey;

static int
compare_siblings(const void *a, const void *b)
{
	const SiblingKey *x = a;
	const SiblingKey *y = b;
	size_t		common;
	int			c;

	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	if (x->m->rank != y->m->rank)
		return x->m->rank < y->m->rank ? -1 : 1;
	if (x->m->id != NULL && y->m->id != NULL)
	{
		common = x->m->id_len < y->m->id_len ? x->m->id_len : y->m->id_len;
		c = memcmp(x->m->id, y->m->id, common);
		if (c != 0)
			return c;
		if (x->m->id_len != y->m->id_len)
			return x->m->id_len < y->m->id_len ? -1 : 1;
	}
	return x->index < y->index ? -1 : (x->index > y->index);
}

static uint64_t
hash_id(const char *s, size_t len)
{
	uint64_t	h = 1469598103934665603ULL;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
	return h;
}

static bool
same_id(const SftTreeMessage *m, const char *id, size_t len)
{
	return m->id_len == len && memcmp(m->id, id, len) == 0;
}

/* parent[i] from the parent ids, through an open-addressing table of ids. */
static SftStatus
resolve_parents(const SftTreeMessage *msgs, int n, int *parent, SftError *err)
{
	size_t		cap = 16;
	int		   *slots;
	char		who[96];

	while (cap < (size_t) n * 2)
		cap *= 2;
	slots = sft_alloc(cap * sizeof(int));
	if (slots == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory indexing %d messages", n);
	for (size_t s = 0; s < cap; s++)
		slots[s] = -1;
	for (int i = 0; i < n; i++)
	{
		size_t		s;

		if (msgs[i].id == NULL)
		{
			sft_free(slots);
			return sft_error(err, SFT_ERR_INVALID, "message %d has no id", i);
		}
		for (s = hash_id(msgs[i].id, msgs[i].id_len) & (cap - 1); slots[s] >= 0; s = (s + 1) & (cap - 1))
			if (same_id(&msgs[slots[s]], msgs[i].id, msgs[i].id_len))
			{
				describe_message(&msgs[i], i, who, sizeof(who));
				sft_free(slots);
				return sft_error(err, SFT_ERR_INVALID, "%s appears more than once in its tree", who);
			}
		slots[s] = i;
	}
	for (int i = 0; i < n; i++)
	{
		const SftTreeMessage *m = &msgs[i];
		size_t		s;

		parent[i] = -1;
		if (m->parent_id == NULL)
			continue;
		for (s = hash_id(m->parent_id, m->parent_len) & (cap - 1); slots[s] >= 0; s = (s + 1) & (cap - 1))
			if (same_id(&msgs[slots[s]], m->parent_id, m->parent_len))
				break;
		if (slots[s] < 0)
		{
			describe_message(m, i, who, sizeof(who));
			sft_free(slots);
			return sft_error(err, SFT_ERR_INVALID,
							 "%s is an orphan: its parent \"%.*s\" is not in its tree", who,
							 (int) (m->parent_len > 64 ? 64 : m->parent_len), m->parent_id);
		}
		parent[i] = slots[s];
	}
	sft_free(slots);
	return SFT_OK;
}

static SftStatus
link_tree(SftMessageTree *tree, SftError *err)
{
	const SftTreeMessage *msgs = tree->msgs;
	int			n = tree->n;
	SiblingKey *keys;
	int		   *last_child;
	int			last_root = -1;
	int			reached = 0;
	char		who[96];

	/* children in sibling order */
	keys = sft_alloc(sizeof(SiblingKey) * (n > 0 ? n : 1));
	last_child = sft_alloc(sizeof(int) * (n > 0 ? n : 1));
	if (keys == NULL || last_child == NULL)
	{
		sft_free(keys);
		sft_free(last_child);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory sorting %d messages", n);
	}
	for (int i = 0; i < n; i++)
	{
		keys[i] = (SiblingKey) {tree->parent[i], i, &msgs[i]};
		tree->first_child[i] = tree->next_sibling[i] = last_child[i] = -1;
	}
	qsort(keys, n, sizeof(SiblingKey), compare_siblings);
	for (int k = 0; k < n; k++)
	{
		int			i = keys[k].index;
		int			p = keys[k].parent;

		if (p < 0)
		{
			if (last_root < 0)
				tree->first_root = i;
			else
				tree->next_sibling[last_root] = i;
			last_root = i;
		}
		else
		{
			if (last_child[p] < 0)
				tree->first_child[p] = i;
			else
				tree->next_sibling[last_child[p]] = i;
			last_child[p] = i;
		}
	}
	sft_free(keys);
	sft_free(last_child);

	/* every message reachable from a root, or some parent chain is a cycle */
	memset(tree->kept, 0, sizeof(bool) * (size_t) (n > 0 ? n : 1));	/* scratch: reached */
	for (int r = tree->first_root; r >= 0; r = tree->next_sibling[r])
	{
		int			depth = 0;

		tree->path[0] = r;
		tree->kept[r] = true;
		reached++;
		while (depth >= 0)
		{
			int			c = tree->first_child[tree->path[depth]];

			if (c >= 0)
			{
				tree->path[++depth] = c;
				tree->kept[c] = true;
				reached++;
				continue;
			}
			while (depth > 0 && tree->next_sibling[tree->path[depth]] < 0)
				depth--;
			if (depth == 0)
				break;
			tree->path[depth] = tree->next_sibling[tree->path[depth]];
			tree->kept[tree->path[depth]] = true;
			reached++;
		}
	}
	if (reached < n)
	{
		/*
		 * Some parent chain never reaches a root.  n steps up from a message
		 * not reached always land inside its cycle: name a message of it.
		 */
		for (int i = 0; i < n; i++)
		{
			int			a = i;

			if (tree->kept[i])
				continue;
			for (int step = 0; step < n && a >= 0; step++)
				a = tree->parent[a];
			if (a >= 0)
			{
				describe_message(&msgs[a], a, who, sizeof(who));
				return sft_error(err, SFT_ERR_INVALID,
								 "%s is in a cycle of parent links (a tree has none)", who);
			}
		}
		return sft_error(err, SFT_ERR_INTERNAL, "message tree: unreachable messages but no cycle");
	}

	/* roles: a root is a prompt, replies alternate */
	for (int i = 0; i < n; i++)
	{
		int			p = tree->parent[i];

		if (msgs[i].role != SFT_ROLE_USER && msgs[i].role != SFT_ROLE_ASSISTANT)
		{
			describe_message(&msgs[i], i, who, sizeof(who));
			return sft_error(err, SFT_ERR_INVALID, "%s: role must be prompter or assistant", who);
		}
		if (p < 0 && msgs[i].role != SFT_ROLE_USER)
		{
			describe_message(&msgs[i], i, who, sizeof(who));
			return sft_error(err, SFT_ERR_INVALID,
							 "%s is a root but an assistant message (a tree starts with a prompt)", who);
		}
		if (p >= 0 && msgs[p].role == msgs[i].role)
		{
			describe_message(&msgs[i], i, who, sizeof(who));
			return sft_error(err, SFT_ERR_INVALID,
							 "%s: a %s message replies to a %s message (prompter and assistant must alternate)",
							 who, msgs[i].role == SFT_ROLE_USER ? "prompter" : "assistant",
							 msgs[p].role == SFT_ROLE_USER ? "prompter" : "assistant");
		}
	}

	/* kept: not excluded, and a prompt only with a kept reply */
	for (int i = 0; i < n; i++)
	{
		tree->kept[i] = !msgs[i].excluded;
		if (tree->kept[i] && msgs[i].role == SFT_ROLE_USER)
		{
			bool		answered = false;

			for (int c = tree->first_child[i]; c >= 0 && !answered; c = tree->next_sibling[c])
				answered = !msgs[c].excluded;
			tree->kept[i] = answered;
		}
	}
	return SFT_OK;
}

static SftStatus
alloc_tree(SftMessageTree *tree, const SftTreeMessage *msgs, int n, SftError *err)
{
	size_t		m = n > 0 ? (size_t) n : 1;

	memset(tree, 0, sizeof(*tree));
	tree->msgs = msgs;
	tree->n = n;
	tree->first_root = -1;
	if (n < 0)
		return sft_error(err, SFT_ERR_INVALID, "negative message count");
	tree->parent = sft_alloc(sizeof(int) * m);
	tree->first_child = sft_alloc(sizeof(int) * m);
	tree->next_sibling = sft_alloc(sizeof(int) * m);
	tree->kept = sft_alloc(sizeof(bool) * m);
	tree->path = sft_alloc(sizeof(int) * m);
	tree->thread = sft_alloc(sizeof(SftMessage) * m);
	if (!tree->parent || !tree->first_child || !tree->next_sibling || !tree->kept ||
		!tree->path || !tree->thread)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for a tree of %d messages", n);
	return SFT_OK;
}

SftStatus
sft_message_tree_build(SftMessageTree *tree, const SftTreeMessage *msgs, int n, SftError *err)
{
	SftStatus	st = alloc_tree(tree, msgs, n, err);

	if (st == SFT_OK)
		st = resolve_parents(msgs, n, tree->parent, err);
	if (st == SFT_OK)
		st = link_tree(tree, err);
	return st;
}

SftStatus
sft_message_tree_build_linked(SftMessageTree *tree, const SftTreeMessage *msgs,
							  const int *parent, int n, SftError *err)
{
	SftStatus	st = alloc_tree(tree, msgs, n, err);

	if (st != SFT_OK)
		return st;
	for (int i = 0; i < n; i++)
	{
		if (parent[i] < -1 || parent[i] >= n || parent[i] == i)
			return sft_error(err, SFT_ERR_INVALID, "message %d: parent index %d out of range",
							 i, parent[i]);
		tree->parent[i] = parent[i];
	}
	return link_tree(tree, err);
}

void
sft_message_tree_free(SftMessageTree *tree)
{
	sft_free(tree->parent);
	sft_free(tree->first_child);
	sft_free(tree->next_sibling);
	sft_free(tree->kept);
	sft_free(tree->path);
	sft_free(tree->thread);
	memset(tree, 0, sizeof(*tree));
}

/* ---------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------- */

static int
first_kept(const SftMessageTree *tree, int i)
{
	while (i >= 0 && !tree->kept[i])
		i = tree->next_sibling[i];
	return i;
}

static SftStatus
emit_thread(SftMessageTree *tree, int len, SftThreadSink sink, void *arg, SftError *err)
{
	SftConversation conv = {tree->thread, len};

	for (int k = 0; k < len; k++)
	{
		const SftTreeMessage *m = &tree->msgs[tree->path[k]];

		tree->thread[k] = (SftMessage) {m->role, m->text, m->text_len};
	}
	return sink(arg, &conv, tree->path[len - 1], err);
}

SftStatus
sft_message_tree_threads(SftMessageTree *tree, SftThreads mode, SftThreadSink sink, void *arg,
						 SftError *err)
{
	for (int r = first_kept(tree, tree->first_root); r >= 0;
		 r = first_kept(tree, tree->next_sibling[r]))
	{
		int			depth = 0;

		tree->path[0] = r;
		for (;;)
		{
			int			c = first_kept(tree, tree->first_child[tree->path[depth]]);
			SftStatus	st;

			if (c >= 0)
			{
				tree->path[++depth] = c;
				continue;
			}
			st = emit_thread(tree, depth + 1, sink, arg, err);
			if (st != SFT_OK)
				return st;
			if (mode == SFT_THREADS_TOP1)
				break;
			/* backtrack to the deepest message with a kept next sibling */
			while (depth > 0 && first_kept(tree, tree->next_sibling[tree->path[depth]]) < 0)
				depth--;
			if (depth == 0)
				break;
			tree->path[depth] = first_kept(tree, tree->next_sibling[tree->path[depth]]);
		}
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * The nested export
 * ------------------------------------------------------------------------- */

typedef struct NestedFrame
{
	json_object *msg;
	int			parent;
	int			sibling;		/* index in the parent's replies */
	int			depth;			/* 1 at the root */
} NestedFrame;

/* Where message i sits: prompt.replies[a].replies[b]..., the tail if long. */
static void
nested_path(const int *parent, const int *sibling, int i, char *buf, size_t size)
{
	char		tail[256];
	size_t		pos = sizeof(tail) - 1;
	bool		cut = false;

	tail[pos] = '\0';
	for (; i >= 0 && parent[i] >= 0; i = parent[i])
	{
		char		part[32];
		size_t		len = (size_t) snprintf(part, sizeof(part), ".replies[%d]", sibling[i]);

		if (len > pos)
		{
			cut = true;
			break;
		}
		pos -= len;
		memcpy(tail + pos, part, len);
	}
	snprintf(buf, size, "%s%s", cut ? "prompt.(...)" : "prompt", tail + pos);
}

static SftStatus
nested_grow(SftNestedTree *t, int *cap, int **sibling, SftError *err)
{
	int			new_cap = *cap * 2;
	SftTreeMessage *msgs;
	int		   *parent;
	int		   *sib;

	if (*cap > (1 << 28))
		return sft_error(err, SFT_ERR_LIMIT, "a tree of more than %d messages", 1 << 28);
	msgs = sft_realloc(t->msgs, sizeof(SftTreeMessage) * new_cap);
	if (msgs)
		t->msgs = msgs;
	parent = sft_realloc(t->parent, sizeof(int) * new_cap);
	if (parent)
		t->parent = parent;
	sib = sft_realloc(*sibling, sizeof(int) * new_cap);
	if (sib)
		*sibling = sib;
	if (!msgs || !parent || !sib)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory reading a tree");
	*cap = new_cap;
	return SFT_OK;
}

/* One message's own fields (not its replies) into m; the role checked. */
static SftStatus
nested_message(json_object *msg, SftTreeMessage *m, SftRole parent_role, bool root,
			   const char *where, SftError *err)
{
	json_object *v;
	int			role;

	if (!json_object_is_type(msg, json_type_object))
		return sft_error(err, SFT_ERR_INVALID, "%s must be an object", where);
	memset(m, 0, sizeof(*m));
	m->rank = SFT_TREE_UNRANKED;
	if (!json_object_object_get_ex(msg, "role", &v) || !json_object_is_type(v, json_type_string))
		return sft_error(err, SFT_ERR_INVALID, "%s: \"role\" must be a string", where);
	role = sft_tree_role_parse(json_object_get_string(v), json_object_get_string_len(v));
	if (role < 0)
		return sft_error(err, SFT_ERR_INVALID, "%s: unknown role \"%.64s\" (expected prompter or assistant)",
						 where, json_object_get_string(v));
	m->role = (SftRole) role;
	if (root && m->role != SFT_ROLE_USER)
		return sft_error(err, SFT_ERR_INVALID, "%s: the prompt must have role prompter, not assistant", where);
	if (!root && m->role == parent_role)
		return sft_error(err, SFT_ERR_INVALID,
						 "%s: a %s message replies to a %s message (prompter and assistant must alternate)",
						 where, role == SFT_ROLE_USER ? "prompter" : "assistant",
						 parent_role == SFT_ROLE_USER ? "prompter" : "assistant");
	if (!json_object_object_get_ex(msg, "text", &v) || !json_object_is_type(v, json_type_string))
		return sft_error(err, SFT_ERR_INVALID, "%s: \"text\" must be a string", where);
	m->text = json_object_get_string(v);
	m->text_len = json_object_get_string_len(v);
	if (json_object_object_get_ex(msg, "message_id", &v) && v != NULL)
	{
		if (!json_object_is_type(v, json_type_string))
			return sft_error(err, SFT_ERR_INVALID, "%s: \"message_id\" must be a string", where);
		m->id = json_object_get_string(v);
		m->id_len = json_object_get_string_len(v);
	}
	if (json_object_object_get_ex(msg, "rank", &v) && v != NULL)
	{
		if (!json_object_is_type(v, json_type_int))
			return sft_error(err, SFT_ERR_INVALID, "%s: \"rank\" must be an integer or null", where);
		m->rank = json_object_get_int64(v);
		if (m->rank < 0 || m->rank == SFT_TREE_UNRANKED)
			return sft_error(err, SFT_ERR_INVALID, "%s: \"rank\" must be 0 or more", where);
	}
	if (json_object_object_get_ex(msg, "deleted", &v) && v != NULL)
	{
		if (!json_object_is_type(v, json_type_boolean))
			return sft_error(err, SFT_ERR_INVALID, "%s: \"deleted\" must be a boolean or null", where);
		m->excluded |= json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(msg, "review_result", &v) && v != NULL)
	{
		if (!json_object_is_type(v, json_type_boolean))
			return sft_error(err, SFT_ERR_INVALID, "%s: \"review_result\" must be a boolean or null", where);
		m->excluded |= !json_object_get_boolean(v);
	}
	return SFT_OK;
}

static SftStatus
nested_walk(SftNestedTree *t, json_object *prompt, SftError *err)
{
	int			cap = 16;
	int		   *sibling = sft_alloc(sizeof(int) * cap);
	NestedFrame *stack = NULL;
	size_t		stack_len = 0;
	size_t		stack_cap = 0;
	SftStatus	st = SFT_OK;
	char		where[300];

	t->msgs = sft_alloc(sizeof(SftTreeMessage) * cap);
	t->parent = sft_alloc(sizeof(int) * cap);
	if (!sibling || !t->msgs || !t->parent)
	{
		sft_free(sibling);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory reading a tree");
	}
	stack_cap = 64;
	stack = sft_alloc(sizeof(NestedFrame) * stack_cap);
	if (stack == NULL)
	{
		sft_free(sibling);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory reading a tree");
	}
	stack[stack_len++] = (NestedFrame) {prompt, -1, 0, 1};
	while (stack_len > 0 && st == SFT_OK)
	{
		NestedFrame f = stack[--stack_len];
		int			i = t->n;
		json_object *replies;

		if (i == cap && (st = nested_grow(t, &cap, &sibling, err)) != SFT_OK)
			break;
		t->parent[i] = f.parent;
		sibling[i] = f.sibling;
		t->n++;
		nested_path(t->parent, sibling, i, where, sizeof(where));
		if (f.depth > SFT_NESTED_TREE_MAX_DEPTH)
		{
			st = sft_error(err, SFT_ERR_LIMIT, "%s: a thread deeper than %d messages",
						   where, SFT_NESTED_TREE_MAX_DEPTH);
			break;
		}
		st = nested_message(f.msg, &t->msgs[i], f.parent >= 0 ? t->msgs[f.parent].role : SFT_ROLE_USER,
							f.parent < 0, where, err);
		if (st != SFT_OK)
			break;
		if (!json_object_object_get_ex(f.msg, "replies", &replies) || replies == NULL)
			continue;
		if (!json_object_is_type(replies, json_type_array))
		{
			st = sft_error(err, SFT_ERR_INVALID, "%s: \"replies\" must be an array or null", where);
			break;
		}
		/* pushed last to first, so that they are read in order */
		for (int k = (int) json_object_array_length(replies) - 1; k >= 0; k--)
		{
			if (stack_len == stack_cap)
			{
				NestedFrame *grown = sft_realloc(stack, sizeof(NestedFrame) * stack_cap * 2);

				if (grown == NULL)
				{
					st = sft_error(err, SFT_ERR_NOMEM, "out of memory reading a tree");
					break;
				}
				stack = grown;
				stack_cap *= 2;
			}
			stack[stack_len++] = (NestedFrame) {json_object_array_get_idx(replies, k), i, k, f.depth + 1};
		}
	}
	sft_free(stack);
	sft_free(sibling);
	return st;
}

SftStatus
sft_nested_tree_parse(SftNestedTree *out, const char *json, size_t len, SftError *err)
{
	json_tokener *tok;
	json_object *doc;
	json_object *prompt;
	enum json_tokener_error jerr;
	size_t		bad;
	SftStatus	st;

	memset(out, 0, sizeof(*out));
	if (len > (size_t) 1 << 30)
		return sft_error(err, SFT_ERR_LIMIT, "a tree document of more than 1 GB");
	if ((bad = sft_utf8_invalid_offset(json, len)) != (size_t) -1)
		return sft_error(err, SFT_ERR_INVALID, "invalid UTF-8 at byte %zu", bad);
	/* two JSON levels per message (the object and its replies array) */
	tok = json_tokener_new_ex(2 * SFT_NESTED_TREE_MAX_DEPTH + 8);
	if (tok == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory parsing a tree");
	doc = json_tokener_parse_ex(tok, json, (int) len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_success && tok->char_offset < (int) len)
	{
		for (size_t k = tok->char_offset; k < len; k++)
			if (strchr(" \t\r\n", json[k]) == NULL || json[k] == '\0')
			{
				jerr = json_tokener_error_parse_unexpected;
				break;
			}
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success)
	{
		json_object_put(doc);
		if (jerr == json_tokener_error_depth)
			return sft_error(err, SFT_ERR_LIMIT, "a tree nested deeper than %d messages",
							 SFT_NESTED_TREE_MAX_DEPTH);
		return sft_error(err, SFT_ERR_INVALID, "not valid JSON (%s)",
						 jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr));
	}
	out->json = doc;
	if (!json_object_is_type(doc, json_type_object))
		return sft_error(err, SFT_ERR_INVALID, "a tree must be a JSON object with a \"prompt\"");
	if (!json_object_object_get_ex(doc, "prompt", &prompt) || prompt == NULL)
		return sft_error(err, SFT_ERR_INVALID, "a tree has no \"prompt\"");
	st = nested_walk(out, prompt, err);
	if (st == SFT_OK)
		st = sft_message_tree_build_linked(&out->tree, out->msgs, out->parent, out->n, err);
	return st;
}

void
sft_nested_tree_free(SftNestedTree *nested)
{
	sft_message_tree_free(&nested->tree);
	sft_free(nested->msgs);
	sft_free(nested->parent);
	if (nested->json)
		json_object_put(nested->json);
	memset(nested, 0, sizeof(*nested));
}
