/*
 * message_tree.h: conversations stored as trees of messages (OpenAssistant
 * oasst1/oasst2), and the threads read out of them.
 *
 * A tree is a set of messages, each with an optional parent; the root is a
 * prompt (role prompter/user), replies alternate assistant/prompter.  A
 * thread is a path from a root down to a leaf; it becomes one conversation.
 *
 * What is kept (the same rules for the flat table export and the nested
 * *.trees.jsonl export, and for the recursive CTE the README documents):
 *   - an excluded message (deleted, or rejected in review) is dropped with
 *     its whole subtree;
 *   - a prompter message with no kept assistant reply is dropped too, so
 *     every thread ends with an assistant reply (a question nobody answered
 *     teaches nothing);
 *   - "all" yields every root-to-leaf path of what is left; "top1" follows,
 *     from each root, the best-ranked kept child at every step.
 * Siblings are ordered by rank (0 = best; unranked after every ranked one),
 * then by message id (bytewise), then by input order: threads come out in
 * that depth-first order and top1 picks the first.
 *
 * Malformed trees are errors, named by message id: a duplicate id, a parent
 * that is not in the tree (an orphan), a cycle, a root that is not a prompt,
 * two consecutive messages of one role.  Nothing recurses: a chain of a
 * million messages is walked with explicit stacks.
 */
#ifndef SFT_CORE_MESSAGE_TREE_H
#define SFT_CORE_MESSAGE_TREE_H

#include <stdbool.h>

#include "common.h"
#include "conversation.h"

#define SFT_TREE_UNRANKED INT64_MAX

typedef struct SftTreeMessage
{
	const char *id;				/* message id, not NUL-terminated */
	size_t		id_len;
	const char *parent_id;		/* NULL at a root */
	size_t		parent_len;
	SftRole		role;			/* SFT_ROLE_USER or SFT_ROLE_ASSISTANT */
	const char *text;			/* UTF-8, not NUL-terminated */
	size_t		text_len;
	int64_t		rank;			/* 0 = best among siblings; SFT_TREE_UNRANKED */
	bool		excluded;		/* deleted or rejected: dropped with its subtree */
} SftTreeMessage;

typedef enum SftThreads
{
	SFT_THREADS_ALL = 0,		/* every root-to-leaf path */
	SFT_THREADS_TOP1			/* the best-ranked path from each root */
} SftThreads;

/* "all" / "top1"; SFT_ERR_INVALID otherwise. */
SftStatus	sft_threads_from_name(const char *name, SftThreads *out, SftError *err);

/* "prompter" or "user" -> user, "assistant" -> assistant; -1 otherwise. */
int			sft_tree_role_parse(const char *name, size_t len);

typedef struct SftMessageTree
{
	const SftTreeMessage *msgs; /* [n], borrowed */
	int			n;
	int		   *parent;			/* [n] index of the parent, -1 at a root */
	int		   *first_child;	/* [n] first child in sibling order, -1 if none */
	int		   *next_sibling;	/* [n] next sibling in order, -1 if last */
	int			first_root;		/* first root in sibling order, -1 if none */
	bool	   *kept;			/* [n] survives the rules above (ancestors aside) */
	int		   *path;			/* [n] scratch: the thread being emitted */
	SftMessage *thread;			/* [n] scratch: its messages */
} SftMessageTree;

/*
 * Link msgs[0..n) by their parent ids and check the tree (see above).  The
 * tree borrows msgs and their strings; free it with sft_message_tree_free
 * (also after an error).  A tree of zero messages is valid and has no thread.
 */
SftStatus	sft_message_tree_build(SftMessageTree *tree, const SftTreeMessage *msgs, int n,
								   SftError *err);

/*
 * The same when the parents are already known as indices (parent[i] = -1 at a
 * root), as the nested export gives them.  ids may be NULL for all messages;
 * errors then name the message by index.
 */
SftStatus	sft_message_tree_build_linked(SftMessageTree *tree, const SftTreeMessage *msgs,
										  const int *parent, int n, SftError *err);

void		sft_message_tree_free(SftMessageTree *tree);

/*
 * Called once per thread: conv holds its messages in order (root first,
 * strings borrowed from the tree), last the index of its final message.  A
 * status other than SFT_OK stops the walk and is returned.
 */
typedef SftStatus (*SftThreadSink) (void *arg, const SftConversation *conv, int last,
									SftError *err);

SftStatus	sft_message_tree_threads(SftMessageTree *tree, SftThreads mode,
									 SftThreadSink sink, void *arg, SftError *err);

/* ---------------------------------------------------------------------------
 * The nested export (*.trees.jsonl): one JSON object per tree,
 *   {"message_tree_id": ..., "prompt": {"message_id": ..., "role": "prompter",
 *    "text": ..., "rank": null, "deleted": false, "review_result": true,
 *    "replies": [{...}, ...]}, ...}
 * "prompt" is required; in each message "role" and "text" are required,
 * "message_id" (string) is optional, "rank" is an integer or null,
 * "deleted" and "review_result" booleans or null (review_result false
 * excludes), "replies" an array of messages or null; other keys are ignored.
 * Errors name the message by its path (prompt.replies[2].replies[0]).
 * ------------------------------------------------------------------------- */
#define SFT_NESTED_TREE_MAX_DEPTH 1000	/* messages from root to leaf */

typedef struct SftNestedTree
{
	void	   *json;			/* the parsed document (json-c), owned */
	SftTreeMessage *msgs;		/* [n] */
	int		   *parent;			/* [n] */
	int			n;
	SftMessageTree tree;
} SftNestedTree;

/* Parse and build; free with sft_nested_tree_free (also after an error). */
SftStatus	sft_nested_tree_parse(SftNestedTree *out, const char *json, size_t len,
								  SftError *err);
void		sft_nested_tree_free(SftNestedTree *nested);

#endif							/* SFT_CORE_MESSAGE_TREE_H */
