/*
 * jinja_internal.h: what the Jinja parser (jinja.c) and evaluator
 * (jinja_eval.c) share: the arena, values and the syntax tree.
 */
#ifndef SFT_CORE_JINJA_INTERNAL_H
#define SFT_CORE_JINJA_INTERNAL_H

#include "jinja.h"

/* ---------------------------------------------------------------------------
 * Arena: every node and value lives in one, freed at once; bounded in size.
 * ------------------------------------------------------------------------- */

typedef struct JArenaChunk
{
	struct JArenaChunk *next;
	size_t		used;
	size_t		cap;
	char		data[];
} JArenaChunk;

typedef struct JArena
{
	JArenaChunk *head;
	size_t		total;			/* bytes allocated so far */
	size_t		limit;			/* 0: none */
	int			failed;			/* 1 = out of memory, 2 = over limit */
} JArena;

void	   *jarena_alloc(JArena *a, size_t size);	/* zeroed; NULL sets failed */
void	   *jarena_alloc_raw(JArena *a, size_t size);	/* not zeroed (byte buffers) */
void		jarena_free(JArena *a);

/* ---------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------- */

/* A byte range of a string copied from messages[msg].content (-1: generation block). */
typedef struct JSpan
{
	size_t		off;
	size_t		len;
	int			msg;
} JSpan;

typedef struct JStr
{
	const char *p;
	size_t		n;
	JSpan	   *sp;				/* [nsp] sorted by off, may be NULL */
	int			nsp;
} JStr;

typedef enum JType
{
	JV_UNDEF = 0,
	JV_NONE,
	JV_BOOL,
	JV_INT,
	JV_FLOAT,
	JV_STR,
	JV_LIST,					/* also tuples (JVal.tuple) */
	JV_DICT,
	JV_NS,						/* namespace(): a mutable dict */
	JV_MACRO,
	JV_FUNC,					/* a global function */
	JV_METHOD,					/* a bound method of a value */
	JV_LOOP
} JType;

struct JList;
struct JDict;
struct JMacro;
struct JMethod;
struct JLoop;

typedef struct JVal
{
	uint8_t		t;
	uint8_t		tuple;
	union
	{
		int64_t		i;			/* JV_BOOL, JV_INT, JV_FUNC */
		double		f;
		JStr	   *s;			/* JV_STR; JV_UNDEF: the missing name or NULL */
		struct JList *l;
		struct JDict *d;		/* JV_DICT, JV_NS */
		struct JMacro *m;
		struct JMethod *me;
		struct JLoop *loop;
	}			u;
} JVal;

typedef struct JList
{
	JVal	   *v;
	size_t		n;
	size_t		cap;
} JList;

typedef struct JDict
{
	JVal	   *k;
	JVal	   *v;
	size_t		n;
	size_t		cap;
} JDict;

/* ---------------------------------------------------------------------------
 * Syntax tree
 * ------------------------------------------------------------------------- */

typedef enum JNodeKind
{
	/* statements */
	JN_TEXT,					/* value */
	JN_OUTPUT,					/* a */
	JN_IF,						/* a cond, body, orelse */
	JN_FOR,						/* names targets, a iter, b filter, body, orelse, flag recursive */
	JN_SET,						/* names targets, a value */
	JN_SET_ATTR,				/* name namespace, names[0] attribute, a value */
	JN_SET_BLOCK,				/* names[0], body, b filter chain or NULL */
	JN_MACRO,					/* name, names params, args defaults, body */
	JN_CALL_BLOCK,				/* a call, names params, args defaults, body */
	JN_FILTER_BLOCK,			/* b filter chain, body */
	JN_BREAK,
	JN_CONTINUE,
	JN_GENERATION,				/* body */
	/* expressions */
	JN_CONST,					/* value */
	JN_NAME,					/* name */
	JN_GETATTR,					/* a, name */
	JN_GETITEM,					/* a, b */
	JN_SLICE,					/* a, args[3] (NULL = omitted) */
	JN_CALL,					/* a callee, args (last nkw keyword: names) */
	JN_FILTER,					/* a subject (NULL: block input), name, args/names */
	JN_TEST,					/* a subject, name, args, flag negated */
	JN_BINOP,					/* op, a, b */
	JN_NEG,						/* a */
	JN_POS,						/* a */
	JN_NOT,						/* a */
	JN_AND,						/* a, b */
	JN_OR,						/* a, b */
	JN_COMPARE,					/* a, b, op */
	JN_CONCAT,					/* args */
	JN_CONDEXPR,				/* a cond, b then, c else (NULL: undefined) */
	JN_LIST,					/* args */
	JN_TUPLE,					/* args */
	JN_DICT						/* args: key, value, key, value... */
} JNodeKind;

typedef enum JOp
{
	JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW,
	JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN
} JOp;

typedef struct JNode JNode;

typedef struct JNodeList
{
	JNode	  **v;
	int			n;
} JNodeList;

typedef struct JName
{
	const char *p;
	size_t		n;
} JName;

struct JNode
{
	JNodeKind	kind;
	int			line;
	JNode	   *a;
	JNode	   *b;
	JNode	   *c;
	JNodeList	body;
	JNodeList	orelse;
	JNodeList	args;
	int			nkw;			/* trailing args that are keyword arguments */
	JName		name;
	JName	   *names;			/* [nnames] */
	int			nnames;
	JVal		value;
	int			op;
	int			flag;
};

struct SftJinjaTemplate
{
	JArena		arena;
	JNodeList	body;
	int			has_generation;
};

/* The evaluator (jinja_eval.c). */
int			jinja_name_eq(JName n, const char *s);

#endif							/* SFT_CORE_JINJA_INTERNAL_H */
