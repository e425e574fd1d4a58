/*
 * jinja_eval.c: renders a parsed Jinja template with Jinja2's semantics as
 * transformers sets it up (see jinja.h).
 *
 * Values are Python's (None, bool, int, float, str, list/tuple, dict) plus
 * Jinja's undefined, namespaces, macros, bound methods and the loop object.
 * They live in one arena per render, bounded by limits.max_memory; nothing is
 * freed before the end, so a value can be shared freely (they are immutable,
 * as in the sandbox: list.append and dict.update are refused, only
 * namespace() attributes change).
 *
 * Scopes follow Jinja2: a for loop body and a macro body have their own
 * frame, so {% set %} inside them does not leak out; if blocks share their
 * parent's frame.
 *
 * Strings carry spans: the byte ranges copied from a message's content (and
 * from {% generation %} blocks) survive slicing, strip/trim, split, ~ and +,
 * and land in the output, which is how assistant masks are derived from the
 * template itself.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* memmem, memrchr */
#endif
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "jinja_internal.h"
#include "unicode.h"

#define JINJA_STEP_CHECK 4096	/* steps between interrupt checks */

/* ---------------------------------------------------------------------------
 * Renderer state
 * ------------------------------------------------------------------------- */

typedef struct JVar
{
	JName		name;
	JVal		val;
} JVar;

typedef struct JFrame
{
	struct JFrame *parent;
	JVar	   *v;
	int			n;
	int			cap;
	int			captured;		/* a macro closes over it: not reused */
} JFrame;

/* Where output goes: the result, or a capture (macro body, set block). */
typedef struct JSink
{
	char	   *p;
	size_t		n;
	size_t		cap;
	JSpan	   *sp;
	int			nsp;
	int			capsp;
} JSink;

typedef struct JMacro
{
	JNode	   *def;			/* JN_MACRO or JN_CALL_BLOCK */
	JFrame	   *closure;
	JVal		caller;			/* the call block's body, or undefined */
} JMacro;

typedef struct JMethod
{
	JVal		self;
	JName		name;
} JMethod;

typedef struct JLoop
{
	int64_t		index0;
	int64_t		length;
	int			depth0;
	JList	   *items;
	JNode	   *def;			/* the recursive for loop */
	JFrame	   *frame;
	JVal		last_changed;
	int			has_changed;
} JLoop;

enum
{
	JF_RANGE = 1, JF_NAMESPACE, JF_DICT, JF_RAISE, JF_STRFTIME, JF_CYCLER_UNSUPPORTED
};

typedef enum JExec
{
	JX_OK = 0, JX_ERR, JX_BREAK, JX_CONTINUE
} JExec;

typedef struct R
{
	JArena		arena;
	SftError   *err;
	SftJinjaRender *opts;
	int64_t		steps;
	int64_t		next_check;		/* steps at which step_slow runs */
	int			depth;
	int			failed;
	JSink	   *sink;
	JFrame	   *globals;
	JVal		pipe;			/* input of a block filter chain */
	int			loop_depth;
} R;

static int
fail(R *r, int line, SftStatus status, const char *fmt,...)
	__attribute__((format(printf, 4, 5)));

static int
fail(R *r, int line, SftStatus status, const char *fmt,...)
{
	char		msg[SFT_ERROR_MESSAGE_SIZE];
	va_list		ap;

	if (r->failed)
		return -1;
	r->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		sft_error(r->err, status, "chat template line %d: %s", line, msg);
	else
		sft_error(r->err, status, "chat template: %s", msg);
	return -1;
}

static int
oom(R *r)
{
	if (r->arena.failed == 2)
		return fail(r, 0, SFT_ERR_LIMIT, "rendering needs more than %zu bytes of memory",
					r->opts->limits.max_memory);
	return fail(r, 0, SFT_ERR_NOMEM, "out of memory while rendering");
}

static void *
ralloc(R *r, size_t size)
{
	void	   *p = jarena_alloc(&r->arena, size);

	if (p == NULL)
		oom(r);
	return p;
}

/*
 * Work done between steps by code that has no renderer at hand (comparing
 * values, searching and copying strings), charged to the step budget at the
 * next step: a template cannot make one step arbitrarily expensive.  Per
 * thread, as a render runs on one thread.
 */
static __thread int64_t jinja_work;

#define CHARGE(bytes) (jinja_work += (int64_t) ((bytes) >> 6) + 1)

static int	step_slow(R *r, int line);

static inline int
step(R *r, int line)
{
	r->steps += 1 + jinja_work;
	jinja_work = 0;
	if (r->steps < r->next_check)
		return 0;
	return step_slow(r, line);
}

/* The budget and the interrupt callback, every JINJA_STEP_CHECK steps. */
static int
step_slow(R *r, int line)
{
	r->next_check = r->steps + JINJA_STEP_CHECK;
	if (r->next_check > r->opts->limits.max_steps + 1)
		r->next_check = r->opts->limits.max_steps + 1;
	if (r->steps > r->opts->limits.max_steps)
		return fail(r, line, SFT_ERR_LIMIT, "rendering takes more than %lld steps",
					(long long) r->opts->limits.max_steps);
	if (r->opts->interrupt && r->opts->interrupt(r->opts->interrupt_arg))
		return fail(r, line, SFT_ERR_LIMIT, "rendering interrupted");
	return 0;
}

/* ---------------------------------------------------------------------------
 * Value construction
 * ------------------------------------------------------------------------- */

static const JVal UNDEF = {JV_UNDEF, 0, {0}};
#define JV_NONE_INIT {JV_NONE, 0, {0}}

static JVal
v_none(void)
{
	JVal		v = {JV_NONE, 0, {0}};

	return v;
}

static JVal
v_bool(int b)
{
	JVal		v = {JV_BOOL, 0, {0}};

	v.u.i = b != 0;
	return v;
}

static JVal
v_int(int64_t i)
{
	JVal		v = {JV_INT, 0, {0}};

	v.u.i = i;
	return v;
}

static JVal
v_float(double f)
{
	JVal		v = {JV_FLOAT, 0, {0}};

	v.u.f = f;
	return v;
}

static JStr *
str_new(R *r, const char *p, size_t n)
{
	JStr	   *s = ralloc(r, sizeof(JStr));

	if (s)
	{
		s->p = p;
		s->n = n;
	}
	return s;
}

/* A string value pointing at p (not copied). */
static int
v_str(R *r, JVal *out, const char *p, size_t n)
{
	JStr	   *s = str_new(r, p, n);

	if (s == NULL)
		return -1;
	out->t = JV_STR;
	out->tuple = 0;
	out->u.s = s;
	return 0;
}

static JVal
v_strval(JStr *s)
{
	JVal		v = {JV_STR, 0, {0}};

	v.u.s = s;
	return v;
}

/* The substring [off, off + len) of s, spans clipped to it. */
static JStr *
str_sub(R *r, const JStr *s, size_t off, size_t len)
{
	JStr	   *out = str_new(r, s->p + off, len);
	int			k = 0;

	if (out == NULL || s->nsp == 0 || len == 0)
		return out;
	out->sp = ralloc(r, s->nsp * sizeof(JSpan));
	if (out->sp == NULL)
		return NULL;
	for (int i = 0; i < s->nsp; i++)
	{
		size_t		a = s->sp[i].off > off ? s->sp[i].off : off;
		size_t		b = s->sp[i].off + s->sp[i].len < off + len ? s->sp[i].off + s->sp[i].len : off + len;

		if (a < b)
		{
			out->sp[k].off = a - off;
			out->sp[k].len = b - a;
			out->sp[k].msg = s->sp[i].msg;
			k++;
		}
	}
	out->nsp = k;
	return out;
}

/* Growable string with spans, in the arena. */
static int
sink_reserve(R *r, JSink *k, size_t extra)
{
	if (k->n + extra > k->cap)
	{
		size_t		cap = k->cap ? k->cap * 2 : (extra > 64 ? extra : 64);
		char	   *p;

		while (cap < k->n + extra)
			cap *= 2;
		p = jarena_alloc_raw(&r->arena, cap);
		if (p == NULL)
			oom(r);
		if (p == NULL)
			return -1;
		if (k->n)
			memcpy(p, k->p, k->n);
		k->p = p;
		k->cap = cap;
	}
	return 0;
}

static int
sink_add_span(R *r, JSink *k, size_t off, size_t len, int msg)
{
	if (len == 0)
		return 0;
	/* merge with the previous span when adjacent and of the same message */
	if (k->nsp > 0 && k->sp[k->nsp - 1].msg == msg &&
		k->sp[k->nsp - 1].off + k->sp[k->nsp - 1].len == off)
	{
		k->sp[k->nsp - 1].len += len;
		return 0;
	}
	if (k->nsp == k->capsp)
	{
		int			cap = k->capsp ? k->capsp * 2 : 8;
		JSpan	   *sp = ralloc(r, cap * sizeof(JSpan));

		if (sp == NULL)
			return -1;
		if (k->nsp)
			memcpy(sp, k->sp, k->nsp * sizeof(JSpan));
		k->sp = sp;
		k->capsp = cap;
	}
	k->sp[k->nsp].off = off;
	k->sp[k->nsp].len = len;
	k->sp[k->nsp].msg = msg;
	k->nsp++;
	return 0;
}

static int
sink_write(R *r, JSink *k, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	CHARGE(n);
	if (k == r->sink && k->n + n > r->opts->limits.max_output)
		return fail(r, 0, SFT_ERR_LIMIT, "rendered text longer than %zu bytes",
					r->opts->limits.max_output);
	if (sink_reserve(r, k, n))
		return -1;
	memcpy(k->p + k->n, p, n);
	k->n += n;
	return 0;
}

static int
sink_write_str(R *r, JSink *k, const JStr *s)
{
	size_t		base = k->n;

	if (sink_write(r, k, s->p, s->n))
		return -1;
	for (int i = 0; i < s->nsp; i++)
		if (sink_add_span(r, k, base + s->sp[i].off, s->sp[i].len, s->sp[i].msg))
			return -1;
	return 0;
}

static JStr *
sink_str(R *r, JSink *k)
{
	JStr	   *s = str_new(r, k->p ? k->p : "", k->n);

	if (s)
	{
		s->sp = k->sp;
		s->nsp = k->nsp;
	}
	return s;
}

static JList *
list_new(R *r, size_t cap)
{
	JList	   *l = ralloc(r, sizeof(JList));

	if (l == NULL)
		return NULL;
	if (cap)
	{
		l->v = ralloc(r, cap * sizeof(JVal));
		if (l->v == NULL)
			return NULL;
		l->cap = cap;
	}
	return l;
}

static int
list_push(R *r, JList *l, JVal v)
{
	if (l->n == l->cap)
	{
		size_t		cap = l->cap ? l->cap * 2 : 4;
		JVal	   *nv = ralloc(r, cap * sizeof(JVal));

		if (nv == NULL)
			return -1;
		if (l->n)
			memcpy(nv, l->v, l->n * sizeof(JVal));
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = v;
	return 0;
}

static JVal
v_list(JList *l, int tuple)
{
	JVal		v = {JV_LIST, 0, {0}};

	v.tuple = tuple;
	v.u.l = l;
	return v;
}

static JDict *
dict_new(R *r)
{
	return ralloc(r, sizeof(JDict));
}

static int	v_eq(const JVal *a, const JVal *b);

static JVal *
dict_find(const JDict *d, const JVal *key)
{
	for (size_t i = 0; i < d->n; i++)
		if (v_eq(&d->k[i], key))
			return &d->v[i];
	return NULL;
}

static JVal *
dict_find_name(const JDict *d, const char *p, size_t n)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->k[i].t == JV_STR && d->k[i].u.s->n == n && memcmp(d->k[i].u.s->p, p, n) == 0)
			return &d->v[i];
	return NULL;
}

static int
dict_set(R *r, JDict *d, JVal key, JVal val)
{
	JVal	   *slot = dict_find(d, &key);

	if (slot)
	{
		*slot = val;
		return 0;
	}
	if (d->n == d->cap)
	{
		size_t		cap = d->cap ? d->cap * 2 : 4;
		JVal	   *k = ralloc(r, cap * sizeof(JVal));
		JVal	   *v = ralloc(r, cap * sizeof(JVal));

		if (k == NULL || v == NULL)
			return -1;
		if (d->n)
		{
			memcpy(k, d->k, d->n * sizeof(JVal));
			memcpy(v, d->v, d->n * sizeof(JVal));
		}
		d->k = k;
		d->v = v;
		d->cap = cap;
	}
	d->k[d->n] = key;
	d->v[d->n] = val;
	d->n++;
	return 0;
}

static JVal
v_dict(JDict *d)
{
	JVal		v = {JV_DICT, 0, {0}};

	v.u.d = d;
	return v;
}

/* ---------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------- */

static JFrame *
frame_new(R *r, JFrame *parent)
{
	JFrame	   *f = ralloc(r, sizeof(JFrame));

	if (f)
		f->parent = parent;
	return f;
}

static int
frame_set(R *r, JFrame *f, JName name, JVal val)
{
	for (int i = 0; i < f->n; i++)
		if (f->v[i].name.n == name.n && memcmp(f->v[i].name.p, name.p, name.n) == 0)
		{
			f->v[i].val = val;
			return 0;
		}
	if (f->n == f->cap)
	{
		int			cap = f->cap ? f->cap * 2 : 8;
		JVar	   *v = ralloc(r, cap * sizeof(JVar));

		if (v == NULL)
			return -1;
		if (f->n)
			memcpy(v, f->v, f->n * sizeof(JVar));
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n].name = name;
	f->v[f->n].val = val;
	f->n++;
	return 0;
}

static int
frame_set_c(R *r, JFrame *f, const char *name, JVal val)
{
	JName		n = {name, strlen(name)};

	return frame_set(r, f, n, val);
}

static JVal *
frame_get(JFrame *f, JName name)
{
	for (; f; f = f->parent)
		for (int i = f->n - 1; i >= 0; i--)
			if (f->v[i].name.n == name.n && memcmp(f->v[i].name.p, name.p, name.n) == 0)
				return &f->v[i].val;
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Python semantics: truth, equality, order, printing
 * ------------------------------------------------------------------------- */

static const char *
type_name(const JVal *v)
{
	switch (v->t)
	{
		case JV_UNDEF:
			return "Undefined";
		case JV_NONE:
			return "NoneType";
		case JV_BOOL:
			return "bool";
		case JV_INT:
			return "int";
		case JV_FLOAT:
			return "float";
		case JV_STR:
			return "str";
		case JV_LIST:
			return v->tuple ? "tuple" : "list";
		case JV_DICT:
			return "dict";
		case JV_NS:
			return "Namespace";
		case JV_MACRO:
			return "Macro";
		case JV_FUNC:
			return "function";
		case JV_METHOD:
			return "builtin_function_or_method";
		case JV_LOOP:
			return "LoopContext";
	}
	return "object";
}

static int
truthy(const JVal *v)
{
	switch (v->t)
	{
		case JV_UNDEF:
		case JV_NONE:
			return 0;
		case JV_BOOL:
		case JV_INT:
			return v->u.i != 0;
		case JV_FLOAT:
			return v->u.f != 0.0;
		case JV_STR:
			return v->u.s->n > 0;
		case JV_LIST:
			return v->u.l->n > 0;
		case JV_DICT:
			return v->u.d->n > 0;
		default:
			return 1;
	}
}

static int
is_numeric(const JVal *v)
{
	return v->t == JV_BOOL || v->t == JV_INT || v->t == JV_FLOAT;
}

static double
as_double(const JVal *v)
{
	return v->t == JV_FLOAT ? v->u.f : (double) v->u.i;
}

/*
 * Values nested deeper than this are not descended into (comparison and
 * printing): a namespace can contain itself, and a loop can wrap a list in a
 * list a million times; no chat template comes near it.
 */
#define JINJA_MAX_VALUE_DEPTH 200

static int	v_eq_depth(const JVal *a, const JVal *b, int depth);

static int
v_eq(const JVal *a, const JVal *b)
{
	return v_eq_depth(a, b, 0);
}

/* Beyond JINJA_MAX_VALUE_DEPTH containers compare as different. */
static int
v_eq_depth(const JVal *a, const JVal *b, int depth)
{
	jinja_work++;
	if (is_numeric(a) && is_numeric(b))
	{
		if (a->t == JV_FLOAT || b->t == JV_FLOAT)
			return as_double(a) == as_double(b);
		return a->u.i == b->u.i;
	}
	if (a->t != b->t)
		return 0;
	switch (a->t)
	{
		case JV_UNDEF:
		case JV_NONE:
			return 1;
		case JV_STR:
			return a->u.s->n == b->u.s->n && memcmp(a->u.s->p, b->u.s->p, a->u.s->n) == 0;
		case JV_LIST:
			if (a->tuple != b->tuple || a->u.l->n != b->u.l->n)
				return 0;
			for (size_t i = 0; i < a->u.l->n; i++)
				if (depth >= JINJA_MAX_VALUE_DEPTH || !v_eq_depth(&a->u.l->v[i], &b->u.l->v[i], depth + 1))
					return 0;
			return 1;
		case JV_DICT:
			if (a->u.d->n != b->u.d->n)
				return 0;
			for (size_t i = 0; i < a->u.d->n; i++)
			{
				JVal	   *o = dict_find(b->u.d, &a->u.d->k[i]);

				if (o == NULL || depth >= JINJA_MAX_VALUE_DEPTH || !v_eq_depth(&a->u.d->v[i], o, depth + 1))
					return 0;
			}
			return 1;
		default:
			return a->u.d == b->u.d;
	}
}

static int	v_order_depth(R *r, int line, const JVal *a, const JVal *b, int *cmp, int depth);

/* Python's <: -1/0/1 in *cmp, or an error for unorderable types. */
static int
v_order(R *r, int line, const JVal *a, const JVal *b, int *cmp)
{
	return v_order_depth(r, line, a, b, cmp, 0);
}

static int
v_order_depth(R *r, int line, const JVal *a, const JVal *b, int *cmp, int depth)
{
	if (is_numeric(a) && is_numeric(b))
	{
		if (a->t == JV_FLOAT || b->t == JV_FLOAT)
		{
			double		x = as_double(a),
						y = as_double(b);

			*cmp = x < y ? -1 : x > y ? 1 : 0;
		}
		else
			*cmp = a->u.i < b->u.i ? -1 : a->u.i > b->u.i ? 1 : 0;
		return 0;
	}
	if (a->t == JV_STR && b->t == JV_STR)
	{
		size_t		n = a->u.s->n < b->u.s->n ? a->u.s->n : b->u.s->n;
		int			c = memcmp(a->u.s->p, b->u.s->p, n);

		/* UTF-8 byte order is code point order, as Python compares */
		*cmp = c < 0 ? -1 : c > 0 ? 1 : a->u.s->n < b->u.s->n ? -1 : a->u.s->n > b->u.s->n ? 1 : 0;
		return 0;
	}
	if (a->t == JV_LIST && b->t == JV_LIST)
	{
		size_t		n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;

		for (size_t i = 0; i < n; i++)
		{
			if (v_eq(&a->u.l->v[i], &b->u.l->v[i]))
				continue;
			if (depth >= JINJA_MAX_VALUE_DEPTH)
				return fail(r, line, SFT_ERR_LIMIT, "comparing values nested deeper than %d",
							JINJA_MAX_VALUE_DEPTH);
			return v_order_depth(r, line, &a->u.l->v[i], &b->u.l->v[i], cmp, depth + 1);
		}
		*cmp = a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n ? 1 : 0;
		return 0;
	}
	return fail(r, line, SFT_ERR_INVALID, "'<' not supported between instances of '%s' and '%s'",
				type_name(a), type_name(b));
}

/* Python's repr(float). */
static void
float_repr(double f, char *buf, size_t size)
{
	char		tmp[64];
	int			prec;
	char	   *e;
	int			exp10;
	char		digits[32];
	int			nd = 0;
	int			neg;

	if (isnan(f))
	{
		snprintf(buf, size, "nan");
		return;
	}
	if (isinf(f))
	{
		snprintf(buf, size, f < 0 ? "-inf" : "inf");
		return;
	}
	if (f == 0)
	{
		snprintf(buf, size, signbit(f) ? "-0.0" : "0.0");
		return;
	}
	/* the shortest digits that read back as f */
	for (prec = 1; prec <= 17; prec++)
	{
		snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, f);
		if (strtod(tmp, NULL) == f)
			break;
	}
	neg = tmp[0] == '-';
	for (char *c = tmp + neg; *c && *c != 'e'; c++)
		if (*c >= '0' && *c <= '9')
			digits[nd++] = *c;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	e = strchr(tmp, 'e');
	exp10 = atoi(e + 1);
	{
		char		out[64];
		size_t		o = 0;

		if (neg)
			out[o++] = '-';
		if (exp10 < -4 || exp10 >= 16)
		{
			out[o++] = digits[0];
			if (nd > 1)
			{
				out[o++] = '.';
				memcpy(out + o, digits + 1, nd - 1);
				o += nd - 1;
			}
			o += snprintf(out + o, sizeof(out) - o, "e%c%02d", exp10 < 0 ? '-' : '+',
						  exp10 < 0 ? -exp10 : exp10);
		}
		else if (exp10 < 0)
		{
			out[o++] = '0';
			out[o++] = '.';
			for (int i = 0; i < -exp10 - 1; i++)
				out[o++] = '0';
			memcpy(out + o, digits, nd);
			o += nd;
		}
		else
		{
			for (int i = 0; i <= exp10; i++)
				out[o++] = i < nd ? digits[i] : '0';
			out[o++] = '.';
			if (nd > exp10 + 1)
			{
				memcpy(out + o, digits + exp10 + 1, nd - exp10 - 1);
				o += nd - exp10 - 1;
			}
			else
				out[o++] = '0';
		}
		out[o] = '\0';
		snprintf(buf, size, "%s", out);
	}
}

/* Python's str.isprintable() for one code point, closely enough for repr(). */
static int
py_printable(uint32_t cp)
{
	if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD)
		return 0;
	if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
		(cp >= 0x205F && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 ||
		cp == 0xFEFF || (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0xE000 && cp <= 0xF8FF) ||
		(cp >= 0xFFF9 && cp <= 0xFFFB) || cp >= 0xF0000)
		return 0;
	return 1;
}

static int	v_print_depth(R *r, JSink *k, const JVal *v, int repr, int depth);

static int
v_print(R *r, JSink *k, const JVal *v, int repr)
{
	return v_print_depth(r, k, v, repr, 0);
}

static int
str_repr(R *r, JSink *k, const JStr *s)
{
	char		q = '\'';
	size_t		i = 0;

	if (memchr(s->p, '\'', s->n) && !memchr(s->p, '"', s->n))
		q = '"';
	if (sink_write(r, k, &q, 1))
		return -1;
	while (i < s->n)
	{
		size_t		len;
		uint32_t	cp = sft_utf8_decode((const unsigned char *) s->p + i, &len);
		char		esc[16];
		const char *out = esc;
		size_t		olen;

		if (cp == '\\' || cp == (uint32_t) q)
		{
			esc[0] = '\\';
			esc[1] = (char) cp;
			olen = 2;
		}
		else if (cp == '\n' || cp == '\r' || cp == '\t')
		{
			esc[0] = '\\';
			esc[1] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
			olen = 2;
		}
		else if (!py_printable(cp))
			olen = snprintf(esc, sizeof(esc), cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
		else
		{
			out = s->p + i;
			olen = len;
		}
		if (sink_write(r, k, out, olen))
			return -1;
		i += len;
	}
	return sink_write(r, k, &q, 1);
}

/* str(v) (repr = 0) or repr(v) into k, as Python prints them. */
static int
v_print_depth(R *r, JSink *k, const JVal *v, int repr, int depth)
{
	char		buf[64];

	if (depth > JINJA_MAX_VALUE_DEPTH)
		return fail(r, 0, SFT_ERR_LIMIT, "printing a value nested deeper than %d (or containing itself)",
					JINJA_MAX_VALUE_DEPTH);
	switch (v->t)
	{
		case JV_UNDEF:
			return 0;
		case JV_NONE:
			return sink_write(r, k, "None", 4);
		case JV_BOOL:
			return v->u.i ? sink_write(r, k, "True", 4) : sink_write(r, k, "False", 5);
		case JV_INT:
			return sink_write(r, k, buf, snprintf(buf, sizeof(buf), "%lld", (long long) v->u.i));
		case JV_FLOAT:
			float_repr(v->u.f, buf, sizeof(buf));
			return sink_write(r, k, buf, strlen(buf));
		case JV_STR:
			return repr ? str_repr(r, k, v->u.s) : sink_write_str(r, k, v->u.s);
		case JV_LIST:
			if (sink_write(r, k, v->tuple ? "(" : "[", 1))
				return -1;
			for (size_t i = 0; i < v->u.l->n; i++)
			{
				if (i > 0 && sink_write(r, k, ", ", 2))
					return -1;
				if (step(r, 0) || v_print_depth(r, k, &v->u.l->v[i], 1, depth + 1))
					return -1;
			}
			if (v->tuple && v->u.l->n == 1 && sink_write(r, k, ",", 1))
				return -1;
			return sink_write(r, k, v->tuple ? ")" : "]", 1);
		case JV_DICT:
		case JV_NS:
			if (v->t == JV_NS && sink_write(r, k, "<Namespace ", 11))
				return -1;
			if (sink_write(r, k, "{", 1))
				return -1;
			for (size_t i = 0; i < v->u.d->n; i++)
			{
				if (i > 0 && sink_write(r, k, ", ", 2))
					return -1;
				if (step(r, 0) || v_print_depth(r, k, &v->u.d->k[i], 1, depth + 1) || sink_write(r, k, ": ", 2) ||
					v_print_depth(r, k, &v->u.d->v[i], 1, depth + 1))
					return -1;
			}
			if (sink_write(r, k, "}", 1))
				return -1;
			return v->t == JV_NS ? sink_write(r, k, ">", 1) : 0;
		default:
			return fail(r, 0, SFT_ERR_UNSUPPORTED, "printing a %s value is not supported", type_name(v));
	}
}

/* str(v) as a string value (strings are returned as they are, spans kept). */
static int
v_to_str(R *r, const JVal *v, JVal *out)
{
	JSink		k = {0};
	JStr	   *s;

	if (v->t == JV_STR)
	{
		*out = *v;
		return 0;
	}
	if (v_print(r, &k, v, 0))
		return -1;
	s = sink_str(r, &k);
	if (s == NULL)
		return -1;
	*out = v_strval(s);
	return 0;
}

/* json.dumps(v, ensure_ascii=False, indent, sort_keys) */
static int
json_dump(R *r, JSink *k, const JVal *v, int indent, int level, int sort_keys,
		  const char *item_sep, const char *key_sep, int line)
{
	char		buf[64];

	if (step(r, line))
		return -1;
	if (level > 200)
		return fail(r, line, SFT_ERR_LIMIT, "tojson: value nested deeper than 200");
	switch (v->t)
	{
		case JV_NONE:
			return sink_write(r, k, "null", 4);
		case JV_BOOL:
			return v->u.i ? sink_write(r, k, "true", 4) : sink_write(r, k, "false", 5);
		case JV_INT:
			return sink_write(r, k, buf, snprintf(buf, sizeof(buf), "%lld", (long long) v->u.i));
		case JV_FLOAT:
			if (isnan(v->u.f))
				return sink_write(r, k, "NaN", 3);
			if (isinf(v->u.f))
				return v->u.f < 0 ? sink_write(r, k, "-Infinity", 9) : sink_write(r, k, "Infinity", 8);
			float_repr(v->u.f, buf, sizeof(buf));
			return sink_write(r, k, buf, strlen(buf));
		case JV_STR:
			{
				const JStr *s = v->u.s;
				size_t		run = 0;

				if (sink_write(r, k, "\"", 1))
					return -1;
				for (size_t i = 0; i < s->n; i++)
				{
					unsigned char c = (unsigned char) s->p[i];
					const char *esc = NULL;
					char		u[8];

					if (c == '"')
						esc = "\\\"";
					else if (c == '\\')
						esc = "\\\\";
					else if (c == '\n')
						esc = "\\n";
					else if (c == '\r')
						esc = "\\r";
					else if (c == '\t')
						esc = "\\t";
					else if (c == '\b')
						esc = "\\b";
					else if (c == '\f')
						esc = "\\f";
					else if (c < 0x20)
					{
						snprintf(u, sizeof(u), "\\u%04x", c);
						esc = u;
					}
					if (esc == NULL)
						continue;
					if (sink_write(r, k, s->p + run, i - run) || sink_write(r, k, esc, strlen(esc)))
						return -1;
					run = i + 1;
				}
				if (sink_write(r, k, s->p + run, s->n - run))
					return -1;
				return sink_write(r, k, "\"", 1);
			}
		case JV_LIST:
		case JV_DICT:
		case JV_NS:
			{
				int			is_list = v->t == JV_LIST;
				size_t		n = is_list ? v->u.l->n : v->u.d->n;
				size_t	   *order = NULL;

				if (n == 0)
					return sink_write(r, k, is_list ? "[]" : "{}", 2);
				if (sink_write(r, k, is_list ? "[" : "{", 1))
					return -1;
				if (!is_list)
				{
					order = ralloc(r, n * sizeof(size_t));
					if (order == NULL)
						return -1;
					for (size_t i = 0; i < n; i++)
					{
						if (v->u.d->k[i].t != JV_STR && v->u.d->k[i].t != JV_INT &&
							v->u.d->k[i].t != JV_BOOL && v->u.d->k[i].t != JV_NONE &&
							v->u.d->k[i].t != JV_FLOAT)
							return fail(r, line, SFT_ERR_INVALID,
										"tojson: keys must be str, int, float, bool or None, not %s",
										type_name(&v->u.d->k[i]));
						order[i] = i;
					}
					if (sort_keys)
						for (size_t i = 1; i < n; i++)
							for (size_t j = i; j > 0; j--)
							{
								int			c;

								if (v_order(r, line, &v->u.d->k[order[j - 1]], &v->u.d->k[order[j]], &c))
									return -1;
								if (c <= 0)
									break;
								size_t		t = order[j];

								order[j] = order[j - 1];
								order[j - 1] = t;
							}
				}
				for (size_t i = 0; i < n; i++)
				{
					if (i > 0 && sink_write(r, k, item_sep, strlen(item_sep)))
						return -1;
					if (indent >= 0)
					{
						if (sink_write(r, k, "\n", 1))
							return -1;
						for (int s = 0; s < indent * (level + 1); s++)
							if (sink_write(r, k, " ", 1))
								return -1;
					}
					if (is_list)
					{
						if (json_dump(r, k, &v->u.l->v[i], indent, level + 1, sort_keys, item_sep, key_sep, line))
							return -1;
						continue;
					}
					{
						const JVal *key = &v->u.d->k[order[i]];

						if (key->t == JV_STR)
						{
							if (json_dump(r, k, key, indent, level + 1, sort_keys, item_sep, key_sep, line))
								return -1;
						}
						else
						{
							/* non-string keys print as JSON strings of their JSON form */
							JSink		t = {0};
							JStr	   *ks;
							JVal		kv;

							if (json_dump(r, &t, key, -1, 0, 0, ", ", ": ", line) || (ks = sink_str(r, &t)) == NULL)
								return -1;
							kv = v_strval(ks);
							if (json_dump(r, k, &kv, -1, 0, 0, ", ", ": ", line))
								return -1;
						}
						if (sink_write(r, k, key_sep, strlen(key_sep)) ||
							json_dump(r, k, &v->u.d->v[order[i]], indent, level + 1, sort_keys, item_sep, key_sep, line))
							return -1;
					}
				}
				if (indent >= 0)
				{
					if (sink_write(r, k, "\n", 1))
						return -1;
					for (int s = 0; s < indent * level; s++)
						if (sink_write(r, k, " ", 1))
							return -1;
				}
				return sink_write(r, k, is_list ? "]" : "}", 1);
			}
		default:
			return fail(r, line, SFT_ERR_INVALID, "tojson: Object of type %s is not JSON serializable",
						type_name(v));
	}
}

/* ---------------------------------------------------------------------------
 * Variables from json-c
 * ------------------------------------------------------------------------- */

static int
from_json(R *r, const json_object *j, JVal *out, int message, int depth)
{
	if (depth > 100)
		return fail(r, 0, SFT_ERR_LIMIT, "template variables nested deeper than 100");
	switch (json_object_get_type(j))
	{
		case json_type_null:
			*out = v_none();
			return 0;
		case json_type_boolean:
			*out = v_bool(json_object_get_boolean(j));
			return 0;
		case json_type_int:
			*out = v_int(json_object_get_int64(j));
			return 0;
		case json_type_double:
			*out = v_float(json_object_get_double(j));
			return 0;
		case json_type_string:
			return v_str(r, out, json_object_get_string((json_object *) j),
						 json_object_get_string_len(j));
		case json_type_array:
			{
				size_t		n = json_object_array_length(j);
				JList	   *l = list_new(r, n);

				if (l == NULL)
					return -1;
				for (size_t i = 0; i < n; i++)
					if (from_json(r, json_object_array_get_idx(j, i), &l->v[i], -1, depth + 1))
						return -1;
				l->n = n;
				*out = v_list(l, 0);
				return 0;
			}
		case json_type_object:
			{
				JDict	   *d = dict_new(r);

				if (d == NULL)
					return -1;
				json_object_object_foreach((json_object *) j, key, val)
				{
					JVal		k,
								v;

					if (v_str(r, &k, key, strlen(key)) || from_json(r, val, &v, -1, depth + 1))
						return -1;
					/* the content string of message i carries its provenance */
					if (message >= 0 && v.t == JV_STR && strcmp(key, "content") == 0 && v.u.s->n > 0)
					{
						v.u.s->sp = ralloc(r, sizeof(JSpan));
						if (v.u.s->sp == NULL)
							return -1;
						v.u.s->sp[0].off = 0;
						v.u.s->sp[0].len = v.u.s->n;
						v.u.s->sp[0].msg = message;
						v.u.s->nsp = 1;
					}
					if (dict_set(r, d, k, v))
						return -1;
				}
				*out = v_dict(d);
				return 0;
			}
	}
	return fail(r, 0, SFT_ERR_INTERNAL, "unknown JSON type");
}

/* ---------------------------------------------------------------------------
 * Strings: Python's methods
 * ------------------------------------------------------------------------- */

static int
py_isspace_cp(uint32_t cp)
{
	return (cp >= 0x1C && cp <= 0x1F) || sft_unicode_is_space(cp);
}

/* Does code point cp occur in chars (UTF-8)? NULL chars: whitespace. */
static int
strip_match(uint32_t cp, const JStr *chars)
{
	size_t		i = 0;

	if (chars == NULL)
		return py_isspace_cp(cp);
	while (i < chars->n)
	{
		size_t		len;

		if (sft_utf8_decode((const unsigned char *) chars->p + i, &len) == cp)
			return 1;
		i += len;
	}
	return 0;
}

/* strip (ends: 1 left, 2 right, 3 both) */
static JStr *
str_strip(R *r, const JStr *s, const JStr *chars, int ends)
{
	size_t		a = 0,
				b = s->n;

	CHARGE(s->n * (chars ? chars->n + 1 : 1));
	if (ends & 1)
		while (a < b)
		{
			size_t		len;
			uint32_t	cp = sft_utf8_decode((const unsigned char *) s->p + a, &len);

			if (!strip_match(cp, chars))
				break;
			a += len;
		}
	if (ends & 2)
		while (b > a)
		{
			size_t		start = b - 1;
			size_t		len;

			while (start > a && ((unsigned char) s->p[start] & 0xC0) == 0x80)
				start--;
			if (!strip_match(sft_utf8_decode((const unsigned char *) s->p + start, &len), chars))
				break;
			b = start;
		}
	return str_sub(r, s, a, b - a);
}

/* memmem is linear in glibc (two-way); the scan is charged to the budget. */
static const char *
mem_find(const char *h, size_t hn, const char *n, size_t nn)
{
	if (nn == 0)
		return h;
	if (nn > hn)
		return NULL;
	CHARGE(hn);
	return memmem(h, hn, n, nn);
}

/* Last occurrence; each candidate position costs the needle's length. */
static const char *
mem_rfind(const char *h, size_t hn, const char *n, size_t nn)
{
	if (nn == 0)
		return h + hn;
	if (nn > hn)
		return NULL;
	for (size_t i = hn - nn + 1; i-- > 0;)
	{
		const char *c = memrchr(h, n[0], i + 1);

		if (c == NULL)
			return NULL;
		i = (size_t) (c - h);
		CHARGE(nn);
		if (memcmp(c, n, nn) == 0)
			return c;
	}
	return NULL;
}

/* s.split(sep, maxsplit) / s.rsplit(); sep NULL: runs of whitespace */
static int
str_split(R *r, int line, const JStr *s, const JStr *sep, int64_t maxsplit, int from_right, JVal *out)
{
	JList	   *l = list_new(r, 0);

	if (l == NULL)
		return -1;
	if (sep && sep->n == 0)
		return fail(r, line, SFT_ERR_INVALID, "split: empty separator");
	CHARGE(s->n);
	if (sep == NULL)
	{
		size_t		i = 0;
		JList	   *parts = l;

		/* collect words, then keep maxsplit from the chosen end */
		size_t		starts[1] = {0};

		(void) starts;
		while (i < s->n)
		{
			size_t		len;
			size_t		start;

			while (i < s->n && py_isspace_cp(sft_utf8_decode((const unsigned char *) s->p + i, &len)))
				i += len;
			if (i >= s->n)
				break;
			start = i;
			if (!from_right && maxsplit >= 0 && (int64_t) parts->n == maxsplit)
			{
				/* the rest, with its trailing whitespace stripped */
				JStr	   *rest = str_strip(r, str_sub(r, s, start, s->n - start), NULL, 2);

				if (rest == NULL || list_push(r, parts, v_strval(rest)))
					return -1;
				break;
			}
			while (i < s->n && !py_isspace_cp(sft_utf8_decode((const unsigned char *) s->p + i, &len)))
				i += len;
			{
				JStr	   *w = str_sub(r, s, start, i - start);

				if (w == NULL || list_push(r, parts, v_strval(w)))
					return -1;
			}
		}
		if (from_right && maxsplit >= 0 && (int64_t) parts->n > maxsplit + 1)
			return fail(r, line, SFT_ERR_UNSUPPORTED, "rsplit() with maxsplit and no separator is not supported");
		*out = v_list(l, 0);
		return 0;
	}
	if (!from_right)
	{
		size_t		pos = 0;

		for (;;)
		{
			const char *hit = (maxsplit < 0 || (int64_t) l->n < maxsplit) ?
				mem_find(s->p + pos, s->n - pos, sep->p, sep->n) : NULL;
			size_t		end = hit ? (size_t) (hit - s->p) : s->n;
			JStr	   *part = str_sub(r, s, pos, end - pos);

			if (part == NULL || list_push(r, l, v_strval(part)))
				return -1;
			if (hit == NULL)
				break;
			pos = end + sep->n;
			if (step(r, line))
				return -1;
		}
	}
	else
	{
		size_t		end = s->n;
		JList	   *rev = list_new(r, 0);

		if (rev == NULL)
			return -1;
		for (;;)
		{
			const char *hit = (maxsplit < 0 || (int64_t) rev->n < maxsplit) ?
				mem_rfind(s->p, end, sep->p, sep->n) : NULL;
			size_t		start = hit ? (size_t) (hit - s->p) + sep->n : 0;
			JStr	   *part = str_sub(r, s, start, end - start);

			if (part == NULL || list_push(r, rev, v_strval(part)))
				return -1;
			if (hit == NULL)
				break;
			end = (size_t) (hit - s->p);
			if (step(r, line))
				return -1;
		}
		for (size_t i = rev->n; i-- > 0;)
			if (list_push(r, l, rev->v[i]))
				return -1;
	}
	*out = v_list(l, 0);
	return 0;
}

/* s.replace(old, new, count) */
static int
str_replace(R *r, int line, const JStr *s, const JStr *old, const JStr *new_, int64_t count, JVal *out)
{
	JSink		k = {0};
	size_t		pos = 0;
	int64_t		done = 0;

	if (old->n == 0)
	{
		/* Python inserts new between every character (and at both ends) */
		size_t		i = 0;

		while (count < 0 || done < count)
		{
			size_t		len = i < s->n ? sft_utf8_len((unsigned char) s->p[i]) : 0;

			if (sink_write_str(r, &k, new_))
				return -1;
			done++;
			if (i >= s->n)
				break;
			if (sink_write(r, &k, s->p + i, len))
				return -1;
			i += len;
		}
		if (sink_write(r, &k, s->p + i, s->n - i))
			return -1;
	}
	else
	{
		for (;;)
		{
			const char *hit = (count < 0 || done < count) ?
				mem_find(s->p + pos, s->n - pos, old->p, old->n) : NULL;
			size_t		end = hit ? (size_t) (hit - s->p) : s->n;
			JStr	   *part = str_sub(r, s, pos, end - pos);

			if (part == NULL || sink_write_str(r, &k, part))
				return -1;
			if (hit == NULL)
				break;
			if (sink_write_str(r, &k, new_))
				return -1;
			done++;
			pos = end + old->n;
			if (step(r, line))
				return -1;
		}
	}
	{
		JStr	   *res = sink_str(r, &k);

		if (res == NULL)
			return -1;
		*out = v_strval(res);
	}
	return 0;
}

/* Case mapping: ASCII, Latin-1, Greek and Cyrillic; other scripts error out. */
static int
case_map(uint32_t cp, int upper, uint32_t *out)
{
	if (cp < 0x80)
	{
		if (upper && cp >= 'a' && cp <= 'z')
			cp -= 32;
		else if (!upper && cp >= 'A' && cp <= 'Z')
			cp += 32;
		*out = cp;
		return 0;
	}
	if (cp >= 0xC0 && cp <= 0xFE && cp != 0xD7 && cp != 0xF7 && cp != 0xDF)
	{
		if (upper && cp >= 0xE0)
			cp -= 32;
		else if (!upper && cp < 0xE0)
			cp += 32;
		*out = cp;
		return 0;
	}
	if (cp >= 0x391 && cp <= 0x3C9 && cp != 0x3A2 && cp != 0x3C2)
	{
		if (upper && cp >= 0x3B1)
			cp -= 32;
		else if (!upper && cp <= 0x3A9)
			cp += 32;
		*out = cp;
		return 0;
	}
	if (cp >= 0x410 && cp <= 0x44F)
	{
		if (upper && cp >= 0x430)
			cp -= 32;
		else if (!upper && cp < 0x430)
			cp += 32;
		*out = cp;
		return 0;
	}
	/* characters without case (CJK, emoji, punctuation...) */
	if ((cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0xD7FF) ||
		(cp >= 0xF900 && cp <= 0xFFFF && !(cp >= 0xFF21 && cp <= 0xFF5A)) || cp >= 0x1F000 ||
		(cp >= 0x80 && cp < 0xC0 && cp != 0xB5) || cp == 0xD7 || cp == 0xF7 ||
		(cp >= 0x600 && cp <= 0x10FF) || (cp >= 0x20000))
	{
		*out = cp;
		return 0;
	}
	return -1;
}

/* mode: 0 lower, 1 upper, 2 capitalize (first upper, rest lower), 3 str.title(), 4 Jinja title */
static int
str_case(R *r, int line, const JStr *s, int mode, JVal *out)
{
	char	   *buf = ralloc(r, s->n + 1);
	size_t		i = 0,
				o = 0;
	int			prev_cased = 0;

	CHARGE(s->n);
	int			word_start = 1;

	if (buf == NULL)
		return -1;
	while (i < s->n)
	{
		size_t		len;
		uint32_t	cp = sft_utf8_decode((const unsigned char *) s->p + i, &len);
		uint32_t	mapped;
		int			upper;
		uint32_t	lo;

		if (mode == 0 || mode == 1)
			upper = mode;
		else if (mode == 2)
			upper = i == 0;
		else if (mode == 3)
			upper = !prev_cased;
		else
			upper = word_start;
		if (case_map(cp, upper, &mapped))
			return fail(r, line, SFT_ERR_UNSUPPORTED,
						"changing the case of U+%04X is not supported", cp);
		if (mode == 3)
		{
			uint32_t	up;

			case_map(cp, 0, &lo);
			case_map(cp, 1, &up);
			prev_cased = lo != up;
		}
		if (mode == 4)
			word_start = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' ||
				py_isspace_cp(cp);
		o += sft_utf8_encode(mapped, buf + o);
		i += len;
	}
	return v_str(r, out, buf, o);
}

/* Number of code points (Python's len of a str). */
static size_t
str_chars(const JStr *s)
{
	size_t		n = 0;

	for (size_t i = 0; i < s->n; i++)
		if (((unsigned char) s->p[i] & 0xC0) != 0x80)
			n++;
	return n;
}

/* Byte offset of code point index ci (ci <= number of code points). */
static size_t
str_byte_at(const JStr *s, size_t ci)
{
	size_t		i = 0;

	while (ci > 0 && i < s->n)
	{
		i += sft_utf8_len((unsigned char) s->p[i]);
		ci--;
	}
	return i;
}

/* ---------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------- */

static int	eval(R *r, JNode *n, JFrame *f, JVal *out);
static JExec exec_body(R *r, JNodeList *body, JFrame *f);

/* Evaluated call arguments. */
typedef struct JArgs
{
	JVal	   *pos;
	int			npos;
	JVal	   *kw;
	JName	   *kwnames;
	int			nkw;
} JArgs;

static int
eval_args(R *r, JNode *n, JFrame *f, JArgs *a)
{
	int			total = n->args.n;

	memset(a, 0, sizeof(*a));
	a->npos = total - n->nkw;
	a->nkw = n->nkw;
	a->kwnames = n->names;
	if (total == 0)
		return 0;
	a->pos = ralloc(r, total * sizeof(JVal));
	if (a->pos == NULL)
		return -1;
	a->kw = a->pos + a->npos;
	for (int i = 0; i < total; i++)
		if (eval(r, n->args.v[i], f, &a->pos[i]))
			return -1;
	return 0;
}

/*
 * Fetch argument `name` (or positional index pos) of a call; *out is left as
 * is (the default) when absent.  Returns 1 when found.
 */
static int
arg_get(const JArgs *a, int pos, const char *name, JVal *out)
{
	if (pos >= 0 && pos < a->npos)
	{
		*out = a->pos[pos];
		return 1;
	}
	for (int i = 0; i < a->nkw; i++)
		if (jinja_name_eq(a->kwnames[i], name))
		{
			*out = a->kw[i];
			return 1;
		}
	return 0;
}

/* Reject arguments a function does not take: max positional and known keywords. */
static int
args_check(R *r, int line, const JArgs *a, const char *what, int max_pos, const char *const *kws)
{
	if (a->npos > max_pos)
		return fail(r, line, SFT_ERR_INVALID, "%s takes at most %d positional argument%s (%d given)",
					what, max_pos, max_pos == 1 ? "" : "s", a->npos);
	for (int i = 0; i < a->nkw; i++)
	{
		int			ok = 0;

		for (int k = 0; kws && kws[k]; k++)
			if (jinja_name_eq(a->kwnames[i], kws[k]))
				ok = 1;
		if (!ok)
			return fail(r, line, SFT_ERR_INVALID, "%s got an unexpected keyword argument '%.*s'",
						what, (int) a->kwnames[i].n, a->kwnames[i].p);
	}
	return 0;
}

static int
need_str(R *r, int line, const JVal *v, const char *what)
{
	if (v->t != JV_STR)
		return fail(r, line, SFT_ERR_INVALID, "%s: expected a string, got %s", what, type_name(v));
	return 0;
}

static int
need_int(R *r, int line, const JVal *v, const char *what)
{
	if (v->t != JV_INT && v->t != JV_BOOL)
		return fail(r, line, SFT_ERR_INVALID, "%s: expected an integer, got %s", what, type_name(v));
	return 0;
}

static int
undefined_error(R *r, int line, const JVal *v, const char *what)
{
	if (v->u.s)
		return fail(r, line, SFT_ERR_INVALID, "'%.*s' is undefined%s%s", (int) v->u.s->n, v->u.s->p,
					what ? " " : "", what ? what : "");
	return fail(r, line, SFT_ERR_INVALID, "undefined value%s%s", what ? " " : "", what ? what : "");
}

static JVal
v_undef_named(R *r, const char *p, size_t n)
{
	JVal		v = UNDEF;

	v.u.s = str_new(r, p, n);
	return v;
}

/* Items of an iterable: list as is, dict keys, string characters; undefined is empty. */
static int
iter_items(R *r, int line, const JVal *v, JList **out)
{
	switch (v->t)
	{
		case JV_LIST:
			*out = v->u.l;
			return 0;
		case JV_UNDEF:
			*out = list_new(r, 0);
			return *out ? 0 : -1;
		case JV_DICT:
		case JV_NS:
			{
				JList	   *l = list_new(r, v->u.d->n);

				if (l == NULL)
					return -1;
				memcpy(l->v, v->u.d->k, v->u.d->n * sizeof(JVal));
				l->n = v->u.d->n;
				*out = l;
				return 0;
			}
		case JV_STR:
			{
				const JStr *s = v->u.s;
				JList	   *l = list_new(r, s->n);

				if (l == NULL)
					return -1;
				for (size_t i = 0; i < s->n;)
				{
					size_t		len = sft_utf8_len((unsigned char) s->p[i]);
					JStr	   *c = str_sub(r, s, i, len);

					if (c == NULL)
						return -1;
					l->v[l->n++] = v_strval(c);
					i += len;
				}
				*out = l;
				return 0;
			}
		default:
			return fail(r, line, SFT_ERR_INVALID, "'%s' object is not iterable", type_name(v));
	}
}

static int
v_len(R *r, int line, const JVal *v, int64_t *out)
{
	switch (v->t)
	{
		case JV_STR:
			*out = (int64_t) str_chars(v->u.s);
			return 0;
		case JV_LIST:
			*out = (int64_t) v->u.l->n;
			return 0;
		case JV_DICT:
		case JV_NS:
			*out = (int64_t) v->u.d->n;
			return 0;
		case JV_UNDEF:
			*out = 0;
			return 0;
		default:
			return fail(r, line, SFT_ERR_INVALID, "object of type '%s' has no len()", type_name(v));
	}
}

static const char *const STR_METHODS[] = {
	"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "replace",
	"upper", "lower", "title", "capitalize", "find", "rfind", "count", "join", "splitlines",
	"isdigit", "isspace", "isalpha", "isalnum", "islower", "isupper", "index", "format",
	"removeprefix", "removesuffix", "partition", "rpartition", "zfill", "center", "ljust", "rjust",
	"swapcase", "casefold", "encode", "expandtabs", "isnumeric", "isdecimal", "istitle",
	"isidentifier", "isprintable", "isascii", "maketrans", "translate", "format_map", NULL
};
static const char *const DICT_METHODS[] = {
	"get", "items", "keys", "values", "copy", "update", "pop", "popitem", "setdefault",
	"clear", "fromkeys", NULL
};
static const char *const LIST_METHODS[] = {
	"index", "count", "copy", "append", "extend", "insert", "pop", "remove", "reverse",
	"sort", "clear", NULL
};

static int
in_names(JName n, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (jinja_name_eq(n, names[i]))
			return 1;
	return 0;
}

static int
bound_method(R *r, JVal self, JName name, JVal *out)
{
	JMethod    *m = ralloc(r, sizeof(JMethod));

	if (m == NULL)
		return -1;
	m->self = self;
	m->name = name;
	out->t = JV_METHOD;
	out->tuple = 0;
	out->u.me = m;
	return 0;
}

/* The loop object's attributes. */
static int
loop_attr(R *r, int line, JVal loopv, JName name, JVal *out)
{
	JLoop	   *L = loopv.u.loop;

	if (jinja_name_eq(name, "index"))
		*out = v_int(L->index0 + 1);
	else if (jinja_name_eq(name, "index0"))
		*out = v_int(L->index0);
	else if (jinja_name_eq(name, "revindex"))
		*out = v_int(L->length - L->index0);
	else if (jinja_name_eq(name, "revindex0"))
		*out = v_int(L->length - L->index0 - 1);
	else if (jinja_name_eq(name, "first"))
		*out = v_bool(L->index0 == 0);
	else if (jinja_name_eq(name, "last"))
		*out = v_bool(L->index0 == L->length - 1);
	else if (jinja_name_eq(name, "length"))
		*out = v_int(L->length);
	else if (jinja_name_eq(name, "depth"))
		*out = v_int(L->depth0 + 1);
	else if (jinja_name_eq(name, "depth0"))
		*out = v_int(L->depth0);
	else if (jinja_name_eq(name, "previtem"))
		*out = L->index0 > 0 ? L->items->v[L->index0 - 1] : v_undef_named(r, "previtem", 8);
	else if (jinja_name_eq(name, "nextitem"))
		*out = L->index0 + 1 < L->length ? L->items->v[L->index0 + 1] : v_undef_named(r, "nextitem", 8);
	else if (jinja_name_eq(name, "cycle") || jinja_name_eq(name, "changed"))
		return bound_method(r, loopv, name, out);
	else
		*out = v_undef_named(r, name.p, name.n);
	return 0;
}

/* x.name: Jinja tries the attribute (methods of str/dict/list) first, then x["name"]. */
static int
get_attr(R *r, int line, JVal obj, JName name, JVal *out)
{
	switch (obj.t)
	{
		case JV_UNDEF:
			{
				char		what[96];

				snprintf(what, sizeof(what), "(reading its attribute '%.*s')",
						 (int) (name.n > 40 ? 40 : name.n), name.p);
				return undefined_error(r, line, &obj, what);
			}
		case JV_DICT:
			if (in_names(name, DICT_METHODS))
				return bound_method(r, obj, name, out);
			/* fall through */
		case JV_NS:
			{
				JVal	   *v = dict_find_name(obj.u.d, name.p, name.n);

				*out = v ? *v : v_undef_named(r, name.p, name.n);
				return 0;
			}
		case JV_STR:
			if (in_names(name, STR_METHODS))
				return bound_method(r, obj, name, out);
			break;
		case JV_LIST:
			if (in_names(name, LIST_METHODS))
				return bound_method(r, obj, name, out);
			break;
		case JV_LOOP:
			return loop_attr(r, line, obj, name, out);
		case JV_INT:
		case JV_FLOAT:
			if (jinja_name_eq(name, "real"))
			{
				*out = obj;
				return 0;
			}
			break;
		default:
			break;
	}
	*out = v_undef_named(r, name.p, name.n);
	return 0;
}

/* x[key]: Jinja tries the item first, then the attribute; missing is undefined. */
static int
get_item(R *r, int line, JVal obj, JVal key, JVal *out)
{
	switch (obj.t)
	{
		case JV_UNDEF:
			return undefined_error(r, line, &obj, "(subscripted)");
		case JV_DICT:
		case JV_NS:
			{
				JVal	   *v = dict_find(obj.u.d, &key);

				if (v)
				{
					*out = *v;
					return 0;
				}
				break;
			}
		case JV_LIST:
			if (key.t == JV_INT || key.t == JV_BOOL)
			{
				int64_t		i = key.u.i;

				if (i < 0)
					i += (int64_t) obj.u.l->n;
				if (i >= 0 && i < (int64_t) obj.u.l->n)
				{
					*out = obj.u.l->v[i];
					return 0;
				}
				*out = UNDEF;
				return 0;
			}
			break;
		case JV_STR:
			if (key.t == JV_INT || key.t == JV_BOOL)
			{
				int64_t		nchars = (int64_t) str_chars(obj.u.s);
				int64_t		i = key.u.i;

				if (i < 0)
					i += nchars;
				if (i >= 0 && i < nchars)
				{
					size_t		b = str_byte_at(obj.u.s, (size_t) i);
					JStr	   *c = str_sub(r, obj.u.s, b, sft_utf8_len((unsigned char) obj.u.s->p[b]));

					if (c == NULL)
						return -1;
					*out = v_strval(c);
					return 0;
				}
				*out = UNDEF;
				return 0;
			}
			break;
		case JV_LOOP:
			break;
		default:
			break;
	}
	if (key.t == JV_STR)
	{
		JName		nm = {key.u.s->p, key.u.s->n};

		return get_attr(r, line, obj, nm, out);
	}
	*out = UNDEF;
	return 0;
}

/* Python slice indices for a sequence of length len. */
static int
slice_indices(R *r, int line, JVal *parts, int64_t len, int64_t *start, int64_t *stop, int64_t *stepv)
{
	int64_t		st = 1;

	if (parts[2].t != JV_NONE && parts[2].t != JV_UNDEF)
	{
		if (need_int(r, line, &parts[2], "slice step"))
			return -1;
		st = parts[2].u.i;
		if (st == 0)
			return fail(r, line, SFT_ERR_INVALID, "slice step cannot be zero");
	}
	for (int k = 0; k < 2; k++)
	{
		int64_t    *dst = k == 0 ? start : stop;
		JVal	   *p = &parts[k];

		if (p->t == JV_NONE || p->t == JV_UNDEF)
			*dst = k == 0 ? (st > 0 ? 0 : len - 1) : (st > 0 ? len : -1 - len);
		else
		{
			if (need_int(r, line, p, "slice index"))
				return -1;
			*dst = p->u.i;
			if (*dst < 0)
				*dst += len;
		}
		if (st > 0)
			*dst = *dst < 0 ? 0 : *dst > len ? len : *dst;
		else
			*dst = *dst < -1 ? -1 : *dst > len - 1 ? len - 1 : *dst;
	}
	*stepv = st;
	return 0;
}

static int
eval_slice(R *r, JNode *n, JFrame *f, JVal *out)
{
	JVal		obj;
	JVal		parts[3] = {JV_NONE_INIT, JV_NONE_INIT, JV_NONE_INIT};
	int64_t		start = 0,
				stop = 0,
				st = 1,
				len;

	if (eval(r, n->a, f, &obj))
		return -1;
	for (int k = 0; k < 3; k++)
		if (n->args.v[k] && eval(r, n->args.v[k], f, &parts[k]))
			return -1;
	if (obj.t == JV_UNDEF)
		return undefined_error(r, n->line, &obj, "(sliced)");
	if (obj.t != JV_LIST && obj.t != JV_STR)
		return fail(r, n->line, SFT_ERR_INVALID, "'%s' object is not subscriptable", type_name(&obj));
	len = obj.t == JV_LIST ? (int64_t) obj.u.l->n : (int64_t) str_chars(obj.u.s);
	if (slice_indices(r, n->line, parts, len, &start, &stop, &st))
		return -1;
	if (obj.t == JV_STR && st == 1)
	{
		size_t		a = str_byte_at(obj.u.s, (size_t) start);
		size_t		b = stop > start ? str_byte_at(obj.u.s, (size_t) stop) : a;
		JStr	   *s = str_sub(r, obj.u.s, a, b - a);

		if (s == NULL)
			return -1;
		*out = v_strval(s);
		return 0;
	}
	{
		JList	   *src;
		JList	   *l = list_new(r, 0);

		if (l == NULL || iter_items(r, n->line, &obj, &src))
			return -1;
		for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st)
			if (list_push(r, l, src->v[i]))
				return -1;
		if (obj.t == JV_LIST)
		{
			*out = v_list(l, obj.tuple);
			return 0;
		}
		{
			JSink		k = {0};
			JStr	   *s;

			for (size_t i = 0; i < l->n; i++)
				if (sink_write_str(r, &k, l->v[i].u.s))
					return -1;
			s = sink_str(r, &k);
			if (s == NULL)
				return -1;
			*out = v_strval(s);
		}
	}
	return 0;
}

static int
concat_str(R *r, const JVal *a, const JVal *b, JVal *out)
{
	JSink		k = {0};
	JStr	   *s;

	/* one exact allocation: concatenation is the commonest operation in templates */
	if (sink_reserve(r, &k, a->u.s->n + b->u.s->n) ||
		sink_write_str(r, &k, a->u.s) || sink_write_str(r, &k, b->u.s))
		return -1;
	s = sink_str(r, &k);
	if (s == NULL)
		return -1;
	*out = v_strval(s);
	return 0;
}

static const char *
op_symbol(int op)
{
	static const char *const sym[] = {"+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "in", "not in"};

	return sym[op];
}

static int
binop_error(R *r, int line, int op, const JVal *a, const JVal *b)
{
	if (a->t == JV_UNDEF)
		return undefined_error(r, line, a, NULL);
	if (b->t == JV_UNDEF)
		return undefined_error(r, line, b, NULL);
	if (op == JOP_ADD && a->t == JV_STR)
		return fail(r, line, SFT_ERR_INVALID, "can only concatenate str (not \"%s\") to str",
					type_name(b));
	return fail(r, line, SFT_ERR_INVALID, "unsupported operand type(s) for %s: '%s' and '%s'",
				op_symbol(op), type_name(a), type_name(b));
}

static int
arith(R *r, int line, int op, JVal a, JVal b, JVal *out)
{
	if (op == JOP_ADD)
	{
		if (a.t == JV_STR && b.t == JV_STR)
			return concat_str(r, &a, &b, out);
		if (a.t == JV_LIST && b.t == JV_LIST && a.tuple == b.tuple)
		{
			JList	   *l = list_new(r, a.u.l->n + b.u.l->n);

			if (l == NULL)
				return -1;
			if (a.u.l->n)
				memcpy(l->v, a.u.l->v, a.u.l->n * sizeof(JVal));
			if (b.u.l->n)
				memcpy(l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(JVal));
			l->n = a.u.l->n + b.u.l->n;
			*out = v_list(l, a.tuple);
			return 0;
		}
	}
	if (op == JOP_MUL && ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL)))
	{
		JVal		t = a;

		a = b;
		b = t;
	}
	if (op == JOP_MUL && (a.t == JV_INT || a.t == JV_BOOL) && (b.t == JV_STR || b.t == JV_LIST))
	{
		int64_t		times = a.u.i < 0 ? 0 : a.u.i;
		size_t		unit = b.t == JV_STR ? b.u.s->n : b.u.l->n * sizeof(JVal);

		if (unit > 0 && (uint64_t) times > r->opts->limits.max_memory / unit)
			return fail(r, line, SFT_ERR_LIMIT, "repetition result too large");
		if (b.t == JV_STR)
		{
			JSink		k = {0};
			JStr	   *s;

			for (int64_t i = 0; i < times; i++)
				if (sink_write(r, &k, b.u.s->p, b.u.s->n))
					return -1;
			s = sink_str(r, &k);
			if (s == NULL)
				return -1;
			*out = v_strval(s);
			return 0;
		}
		{
			JList	   *l = list_new(r, 0);

			if (l == NULL)
				return -1;
			for (int64_t i = 0; i < times; i++)
				for (size_t j = 0; j < b.u.l->n; j++)
					if (list_push(r, l, b.u.l->v[j]))
						return -1;
			*out = v_list(l, b.tuple);
			return 0;
		}
	}
	if (op == JOP_MOD && a.t == JV_STR)
		return fail(r, line, SFT_ERR_UNSUPPORTED, "printf-style string formatting (%%) is not supported");
	if (!is_numeric(&a) || !is_numeric(&b))
		return binop_error(r, line, op, &a, &b);
	if (a.t != JV_FLOAT && b.t != JV_FLOAT && op != JOP_DIV)
	{
		int64_t		x = a.u.i,
					y = b.u.i,
					z;

		switch (op)
		{
			case JOP_ADD:
				if (__builtin_add_overflow(x, y, &z))
					goto overflow;
				break;
			case JOP_SUB:
				if (__builtin_sub_overflow(x, y, &z))
					goto overflow;
				break;
			case JOP_MUL:
				if (__builtin_mul_overflow(x, y, &z))
					goto overflow;
				break;
			case JOP_FLOORDIV:
			case JOP_MOD:
				if (y == 0)
					return fail(r, line, SFT_ERR_INVALID, "integer division or modulo by zero");
				if (x == INT64_MIN && y == -1)
					goto overflow;
				{
					int64_t		q = x / y,
								m = x % y;

					if (m != 0 && ((m < 0) != (y < 0)))
					{
						q--;
						m += y;
					}
					z = op == JOP_FLOORDIV ? q : m;
				}
				break;
			case JOP_POW:
				if (y < 0)
				{
					*out = v_float(pow((double) x, (double) y));
					return 0;
				}
				z = 1;
				for (int64_t i = 0; i < y; i++)
				{
					if (__builtin_mul_overflow(z, x, &z))
						goto overflow;
					if (z == 0 || z == 1)
						break;
				}
				if (z == 1 && x == -1 && (y % 2))
					z = -1;
				break;
			default:
				return fail(r, line, SFT_ERR_INTERNAL, "bad operator");
		}
		*out = v_int(z);
		return 0;
overflow:
		return fail(r, line, SFT_ERR_UNSUPPORTED, "integer result does not fit in 64 bits");
	}
	{
		double		x = as_double(&a),
					y = as_double(&b),
					z;

		switch (op)
		{
			case JOP_ADD:
				z = x + y;
				break;
			case JOP_SUB:
				z = x - y;
				break;
			case JOP_MUL:
				z = x * y;
				break;
			case JOP_DIV:
				if (y == 0)
					return fail(r, line, SFT_ERR_INVALID, "division by zero");
				z = x / y;
				break;
			case JOP_FLOORDIV:
			case JOP_MOD:
				if (y == 0)
					return fail(r, line, SFT_ERR_INVALID, "float division or modulo by zero");
				{
					double		m = fmod(x, y);

					if (m != 0 && ((m < 0) != (y < 0)))
						m += y;
					z = op == JOP_MOD ? m : floor((x - m) / y + 0.5);
					if (op == JOP_FLOORDIV)
						z = floor(x / y);
				}
				break;
			case JOP_POW:
				z = pow(x, y);
				break;
			default:
				return fail(r, line, SFT_ERR_INTERNAL, "bad operator");
		}
		*out = v_float(z);
		return 0;
	}
}

static int
contains(R *r, int line, JVal item, JVal seq, int *out)
{
	switch (seq.t)
	{
		case JV_STR:
			if (item.t != JV_STR)
				return fail(r, line, SFT_ERR_INVALID, "'in <string>' requires string as left operand, not %s",
							type_name(&item));
			*out = mem_find(seq.u.s->p, seq.u.s->n, item.u.s->p, item.u.s->n) != NULL;
			return 0;
		case JV_LIST:
			*out = 0;
			for (size_t i = 0; i < seq.u.l->n; i++)
				if (v_eq(&seq.u.l->v[i], &item))
				{
					*out = 1;
					break;
				}
			return 0;
		case JV_DICT:
		case JV_NS:
			*out = dict_find(seq.u.d, &item) != NULL;
			return 0;
		case JV_UNDEF:
			*out = 0;
			return 0;
		default:
			return fail(r, line, SFT_ERR_INVALID, "argument of type '%s' is not iterable", type_name(&seq));
	}
}

static int
compare(R *r, int line, int op, JVal a, JVal b, JVal *out)
{
	int			c = 0;
	int			res = 0;

	switch (op)
	{
		case JOP_EQ:
			*out = v_bool(v_eq(&a, &b));
			return 0;
		case JOP_NE:
			*out = v_bool(!v_eq(&a, &b));
			return 0;
		case JOP_IN:
		case JOP_NOTIN:
			if (contains(r, line, a, b, &res))
				return -1;
			*out = v_bool(op == JOP_IN ? res : !res);
			return 0;
		default:
			if (a.t == JV_UNDEF)
				return undefined_error(r, line, &a, "(compared)");
			if (b.t == JV_UNDEF)
				return undefined_error(r, line, &b, "(compared)");
			if (v_order(r, line, &a, &b, &c))
				return -1;
			*out = v_bool(op == JOP_LT ? c < 0 : op == JOP_LE ? c <= 0 : op == JOP_GT ? c > 0 : c >= 0);
			return 0;
	}
}

/* ---------------------------------------------------------------------------
 * Tests (x is name)
 * ------------------------------------------------------------------------- */

static int
apply_test(R *r, int line, JName name, JVal v, const JArgs *a, int *out)
{
	JVal		arg = UNDEF;
	int			has_arg = arg_get(a, 0, "value", &arg);

	if (jinja_name_eq(name, "defined"))
		*out = v.t != JV_UNDEF;
	else if (jinja_name_eq(name, "undefined"))
		*out = v.t == JV_UNDEF;
	else if (jinja_name_eq(name, "none"))
		*out = v.t == JV_NONE;
	else if (jinja_name_eq(name, "string"))
		*out = v.t == JV_STR;
	else if (jinja_name_eq(name, "mapping"))
		*out = v.t == JV_DICT;
	else if (jinja_name_eq(name, "iterable"))
		*out = v.t == JV_LIST || v.t == JV_DICT || v.t == JV_STR || v.t == JV_UNDEF;
	else if (jinja_name_eq(name, "sequence"))
		*out = v.t == JV_LIST || v.t == JV_DICT || v.t == JV_STR || v.t == JV_UNDEF;
	else if (jinja_name_eq(name, "number"))
		*out = is_numeric(&v);
	else if (jinja_name_eq(name, "integer"))
		*out = v.t == JV_INT;
	else if (jinja_name_eq(name, "float"))
		*out = v.t == JV_FLOAT;
	else if (jinja_name_eq(name, "boolean"))
		*out = v.t == JV_BOOL;
	else if (jinja_name_eq(name, "true"))
		*out = v.t == JV_BOOL && v.u.i;
	else if (jinja_name_eq(name, "false"))
		*out = v.t == JV_BOOL && !v.u.i;
	else if (jinja_name_eq(name, "callable"))
		*out = v.t == JV_MACRO || v.t == JV_FUNC || v.t == JV_METHOD;
	else if (jinja_name_eq(name, "odd") || jinja_name_eq(name, "even"))
	{
		if (need_int(r, line, &v, "odd/even test"))
			return -1;
		*out = (v.u.i % 2 != 0) == (name.p[0] == 'o');
	}
	else if (jinja_name_eq(name, "divisibleby"))
	{
		if (!has_arg && !arg_get(a, 0, "num", &arg))
			return fail(r, line, SFT_ERR_INVALID, "test 'divisibleby' needs an argument");
		if (need_int(r, line, &v, "divisibleby") || need_int(r, line, &arg, "divisibleby"))
			return -1;
		if (arg.u.i == 0)
			return fail(r, line, SFT_ERR_INVALID, "integer division or modulo by zero");
		*out = v.u.i % arg.u.i == 0;
	}
	else if (jinja_name_eq(name, "lower") || jinja_name_eq(name, "upper"))
	{
		JVal		m;

		if (need_str(r, line, &v, "lower/upper test"))
			return -1;
		if (str_case(r, line, v.u.s, name.p[0] == 'u', &m))
			return -1;
		*out = v_eq(&m, &v);
	}
	else if (jinja_name_eq(name, "sameas"))
		*out = v.t == arg.t && (v.t == JV_NONE || v.t == JV_UNDEF ? 1 :
								v.t == JV_BOOL ? v.u.i == arg.u.i : memcmp(&v.u, &arg.u, sizeof(v.u)) == 0);
	else
	{
		static const char *const cmp_names[][2] = {
			{"equalto", "=="}, {"eq", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="},
			{"lt", "<"}, {"lessthan", "<"}, {"<", "<"}, {"le", "<="}, {"<=", "<="},
			{"gt", ">"}, {"greaterthan", ">"}, {">", ">"}, {"ge", ">="}, {">=", ">="},
			{"in", "in"}
		};
		static const int ops[] = {JOP_EQ, JOP_EQ, JOP_EQ, JOP_NE, JOP_NE, JOP_LT, JOP_LT, JOP_LT,
		JOP_LE, JOP_LE, JOP_GT, JOP_GT, JOP_GT, JOP_GE, JOP_GE, JOP_IN};

		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
			if (jinja_name_eq(name, cmp_names[i][0]))
			{
				JVal		res;

				if (!has_arg && !arg_get(a, 0, "other", &arg) && !arg_get(a, 0, "seq", &arg))
					return fail(r, line, SFT_ERR_INVALID, "test '%s' needs an argument", cmp_names[i][0]);
				if (compare(r, line, ops[i], v, arg, &res))
					return -1;
				*out = (int) res.u.i;
				return 0;
			}
		return fail(r, line, SFT_ERR_UNSUPPORTED, "unknown test '%.*s'", (int) name.n, name.p);
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * Filters
 * ------------------------------------------------------------------------- */

/* The value of attribute path "a.b" (or an integer index) of v, as Jinja's attribute= arguments. */
static int
attr_path(R *r, int line, JVal v, const JVal *attr, JVal *out)
{
	if (attr->t == JV_INT)
		return get_item(r, line, v, *attr, out);
	if (attr->t != JV_STR)
		return fail(r, line, SFT_ERR_INVALID, "attribute must be a string, not %s", type_name(attr));
	{
		const JStr *s = attr->u.s;
		size_t		start = 0;

		*out = v;
		for (size_t i = 0; i <= s->n; i++)
			if (i == s->n || s->p[i] == '.')
			{
				JVal		key;
				int			digits = i > start;

				for (size_t j = start; j < i; j++)
					if (s->p[j] < '0' || s->p[j] > '9')
						digits = 0;
				if (digits)
					key = v_int(strtoll(s->p + start, NULL, 10));
				else if (v_str(r, &key, s->p + start, i - start))
					return -1;
				if (out->t == JV_UNDEF)
					return 0;
				if (get_item(r, line, *out, key, out))
					return -1;
				start = i + 1;
			}
	}
	return 0;
}

static int	apply_filter(R *r, int line, JName name, JVal v, const JArgs *a, JVal *out);

/* select / reject / selectattr / rejectattr */
static int
filter_select(R *r, int line, JVal v, const JArgs *a, int by_attr, int keep, JVal *out)
{
	JList	   *items;
	JList	   *res = list_new(r, 0);
	JVal		attr = UNDEF;
	JVal		testname = UNDEF;
	int			first_arg = by_attr ? 1 : 0;

	if (res == NULL || iter_items(r, line, &v, &items))
		return -1;
	if (by_attr && (a->npos < 1 || a->pos[0].t != JV_STR))
		return fail(r, line, SFT_ERR_INVALID, "%s needs an attribute name", keep ? "selectattr" : "rejectattr");
	if (by_attr)
		attr = a->pos[0];
	if (a->npos > first_arg)
	{
		testname = a->pos[first_arg];
		if (need_str(r, line, &testname, "test name"))
			return -1;
	}
	for (size_t i = 0; i < items->n; i++)
	{
		JVal		x = items->v[i];
		int			ok;

		if (step(r, line))
			return -1;
		if (by_attr && attr_path(r, line, x, &attr, &x))
			return -1;
		if (testname.t == JV_STR)
		{
			JArgs		ta = *a;
			JName		tn = {testname.u.s->p, testname.u.s->n};

			ta.pos = a->pos + first_arg + 1;
			ta.npos = a->npos - first_arg - 1;
			if (apply_test(r, line, tn, x, &ta, &ok))
				return -1;
		}
		else
			ok = truthy(&x);
		if (ok == keep && list_push(r, res, items->v[i]))
			return -1;
	}
	*out = v_list(res, 0);
	return 0;
}

/* sort key comparison for sort/dictsort/unique: case-insensitive strings unless asked */
static int
key_cmp(R *r, int line, JVal x, JVal y, int case_sensitive, int *c)
{
	if (!case_sensitive && x.t == JV_STR && y.t == JV_STR)
	{
		JVal		lx,
					ly;

		if (str_case(r, line, x.u.s, 0, &lx) || str_case(r, line, y.u.s, 0, &ly))
			return -1;
		return v_order(r, line, &lx, &ly, c);
	}
	return v_order(r, line, &x, &y, c);
}

/* A stable insertion sort of l by keys (both n long), so errors are reported, not crashed on. */
static int
sort_by_keys(R *r, int line, JVal *vals, JVal *keys, size_t n, int case_sensitive, int reverse)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0; j--)
		{
			int			c;
			JVal		t;

			if (step(r, line) || key_cmp(r, line, keys[j - 1], keys[j], case_sensitive, &c))
				return -1;
			if (reverse ? c >= 0 : c <= 0)
				break;
			t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
			t = vals[j];
			vals[j] = vals[j - 1];
			vals[j - 1] = t;
		}
	return 0;
}

static int
filter_sort(R *r, int line, JVal v, const JArgs *a, JVal *out)
{
	static const char *const kws[] = {"reverse", "case_sensitive", "attribute", NULL};
	JVal		reverse = v_bool(0),
				cs = v_bool(0),
				attr = UNDEF;
	JList	   *items;
	JVal	   *vals,
			   *keys;

	if (args_check(r, line, a, "sort", 3, kws) || iter_items(r, line, &v, &items))
		return -1;
	arg_get(a, 0, "reverse", &reverse);
	arg_get(a, 1, "case_sensitive", &cs);
	arg_get(a, 2, "attribute", &attr);
	vals = ralloc(r, (items->n + 1) * sizeof(JVal));
	keys = ralloc(r, (items->n + 1) * sizeof(JVal));
	if (vals == NULL || keys == NULL)
		return -1;
	for (size_t i = 0; i < items->n; i++)
	{
		vals[i] = items->v[i];
		keys[i] = items->v[i];
		if (attr.t != JV_UNDEF && attr_path(r, line, vals[i], &attr, &keys[i]))
			return -1;
	}
	if (sort_by_keys(r, line, vals, keys, items->n, truthy(&cs), truthy(&reverse)))
		return -1;
	{
		JList	   *l = list_new(r, 0);

		if (l == NULL)
			return -1;
		l->v = vals;
		l->n = items->n;
		l->cap = items->n + 1;
		*out = v_list(l, 0);
	}
	return 0;
}

/* tuple (k, v) */
static int
pair(R *r, JVal k, JVal v, JVal *out)
{
	JList	   *l = list_new(r, 2);

	if (l == NULL)
		return -1;
	l->v[0] = k;
	l->v[1] = v;
	l->n = 2;
	*out = v_list(l, 1);
	return 0;
}

static int
dict_items(R *r, JVal v, JVal *out)
{
	JList	   *l = list_new(r, v.u.d->n);

	if (l == NULL)
		return -1;
	for (size_t i = 0; i < v.u.d->n; i++)
		if (pair(r, v.u.d->k[i], v.u.d->v[i], &l->v[i]))
			return -1;
	l->n = v.u.d->n;
	*out = v_list(l, 0);
	return 0;
}

static int
filter_join(R *r, int line, JVal v, const JArgs *a, JVal *out)
{
	static const char *const kws[] = {"d", "attribute", NULL};
	JVal		sep = UNDEF,
				attr = UNDEF;
	JList	   *items;
	JSink		k = {0};
	JStr	   *s;

	if (args_check(r, line, a, "join", 2, kws) || iter_items(r, line, &v, &items))
		return -1;
	arg_get(a, 0, "d", &sep);
	arg_get(a, 1, "attribute", &attr);
	if (sep.t != JV_UNDEF && v_to_str(r, &sep, &sep))
		return -1;
	for (size_t i = 0; i < items->n; i++)
	{
		JVal		x = items->v[i];

		if (step(r, line))
			return -1;
		if (attr.t != JV_UNDEF && attr_path(r, line, x, &attr, &x))
			return -1;
		if (i > 0 && sep.t == JV_STR && sink_write_str(r, &k, sep.u.s))
			return -1;
		if (x.t == JV_STR ? sink_write_str(r, &k, x.u.s) : v_print(r, &k, &x, 0))
			return -1;
	}
	s = sink_str(r, &k);
	if (s == NULL)
		return -1;
	*out = v_strval(s);
	return 0;
}

static int
filter_indent(R *r, int line, JVal v, const JArgs *a, JVal *out)
{
	static const char *const kws[] = {"width", "first", "blank", NULL};
	JVal		width = v_int(4),
				first = v_bool(0),
				blank = v_bool(0);
	JStr		pad = {"", 0, NULL, 0};
	JSink		k = {0};
	size_t		pos = 0;
	int			lineno = 0;
	JStr	   *s;
	char	   *spaces = NULL;

	if (args_check(r, line, a, "indent", 3, kws) || v_to_str(r, &v, &v))
		return -1;
	arg_get(a, 0, "width", &width);
	arg_get(a, 1, "first", &first);
	arg_get(a, 2, "blank", &blank);
	if (width.t == JV_STR)
		pad = *width.u.s;
	else
	{
		if (need_int(r, line, &width, "indent width"))
			return -1;
		if (width.u.i < 0 || width.u.i > 4096)
			return fail(r, line, SFT_ERR_LIMIT, "indent width out of range");
		spaces = ralloc(r, (size_t) width.u.i + 1);
		if (spaces == NULL)
			return -1;
		memset(spaces, ' ', (size_t) width.u.i);
		pad.p = spaces;
		pad.n = (size_t) width.u.i;
	}
	/* Jinja: lines are split on \n, the indent goes after each newline */
	while (pos <= v.u.s->n)
	{
		const char *nl = memchr(v.u.s->p + pos, '\n', v.u.s->n - pos);
		size_t		end = nl ? (size_t) (nl - v.u.s->p) : v.u.s->n;
		int			is_blank = end == pos;
		JStr	   *part = str_sub(r, v.u.s, pos, end - pos);

		if (part == NULL)
			return -1;
		if ((lineno > 0 || truthy(&first)) && (truthy(&blank) || !is_blank) &&
			sink_write(r, &k, pad.p, pad.n))
			return -1;
		if (sink_write_str(r, &k, part))
			return -1;
		if (nl == NULL)
			break;
		if (sink_write(r, &k, "\n", 1))
			return -1;
		pos = end + 1;
		lineno++;
		if (step(r, line))
			return -1;
	}
	s = sink_str(r, &k);
	if (s == NULL)
		return -1;
	*out = v_strval(s);
	return 0;
}

static int
parse_int_str(const JStr *s, int64_t *out)
{
	char		buf[64];
	size_t		n = 0;
	char	   *end;

	for (size_t i = 0; i < s->n && n < sizeof(buf) - 1; i++)
		if (s->p[i] != '_')
			buf[n++] = s->p[i];
	buf[n] = '\0';
	{
		char	   *b = buf;

		while (*b == ' ' || *b == '\t' || *b == '\n')
			b++;
		errno = 0;
		*out = strtoll(b, &end, 10);
		while (*end == ' ' || *end == '\t' || *end == '\n')
			end++;
		return end != b && *end == '\0' && errno == 0 ? 0 : -1;
	}
}

static int
apply_filter(R *r, int line, JName name, JVal v, const JArgs *a, JVal *out)
{
	if (jinja_name_eq(name, "safe") || (jinja_name_eq(name, "string") && v.t == JV_STR))
	{
		*out = v;
		return 0;
	}
	if (v.t == JV_UNDEF && !jinja_name_eq(name, "default") && !jinja_name_eq(name, "d") &&
		!jinja_name_eq(name, "length") && !jinja_name_eq(name, "count") &&
		!jinja_name_eq(name, "string") && !jinja_name_eq(name, "list") &&
		!jinja_name_eq(name, "join") && !jinja_name_eq(name, "tojson") &&
		!jinja_name_eq(name, "trim") && !jinja_name_eq(name, "upper") &&
		!jinja_name_eq(name, "lower") && !jinja_name_eq(name, "selectattr") &&
		!jinja_name_eq(name, "rejectattr") && !jinja_name_eq(name, "select") &&
		!jinja_name_eq(name, "reject") && !jinja_name_eq(name, "map") &&
		!jinja_name_eq(name, "int") && !jinja_name_eq(name, "float") &&
		!jinja_name_eq(name, "capitalize") && !jinja_name_eq(name, "title") &&
		!jinja_name_eq(name, "first") && !jinja_name_eq(name, "last") &&
		!jinja_name_eq(name, "reverse") && !jinja_name_eq(name, "e") &&
		!jinja_name_eq(name, "escape") && !jinja_name_eq(name, "indent") &&
		!jinja_name_eq(name, "replace") && !jinja_name_eq(name, "unique") &&
		!jinja_name_eq(name, "sort") && !jinja_name_eq(name, "wordcount"))
		return undefined_error(r, line, &v, NULL);
	if (jinja_name_eq(name, "default") || jinja_name_eq(name, "d"))
	{
		static const char *const kws[] = {"default_value", "boolean", NULL};
		JVal		dflt,
					boolean = v_bool(0);

		if (v_str(r, &dflt, "", 0) || args_check(r, line, a, "default", 2, kws))
			return -1;
		arg_get(a, 0, "default_value", &dflt);
		arg_get(a, 1, "boolean", &boolean);
		*out = (v.t == JV_UNDEF || (truthy(&boolean) && !truthy(&v))) ? dflt : v;
		return 0;
	}
	if (jinja_name_eq(name, "length") || jinja_name_eq(name, "count"))
	{
		int64_t		n = 0;

		if (args_check(r, line, a, "length", 0, NULL) || v_len(r, line, &v, &n))
			return -1;
		*out = v_int(n);
		return 0;
	}
	if (jinja_name_eq(name, "string"))
		return v_to_str(r, &v, out);
	if (jinja_name_eq(name, "tojson"))
	{
		static const char *const kws[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
		JVal		ascii = v_bool(0),
					indent = v_none(),
					seps = v_none(),
					sort_keys = v_bool(0);
		const char *item_sep = ", ",
				   *key_sep = ": ";
		int			ind = -1;
		JSink		k = {0};
		JStr	   *s;

		if (args_check(r, line, a, "tojson", 4, kws))
			return -1;
		arg_get(a, 0, "ensure_ascii", &ascii);
		arg_get(a, 1, "indent", &indent);
		arg_get(a, 2, "separators", &seps);
		arg_get(a, 3, "sort_keys", &sort_keys);
		if (truthy(&ascii))
			return fail(r, line, SFT_ERR_UNSUPPORTED, "tojson(ensure_ascii=true) is not supported");
		if (indent.t == JV_INT)
		{
			if (indent.u.i < 0 || indent.u.i > 64)
				return fail(r, line, SFT_ERR_LIMIT, "tojson indent out of range");
			ind = (int) indent.u.i;
			item_sep = ",";
		}
		else if (indent.t != JV_NONE)
			return fail(r, line, SFT_ERR_UNSUPPORTED, "tojson indent must be an integer or none");
		if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == JV_STR && seps.u.l->v[1].t == JV_STR)
		{
			item_sep = sft_strndup(seps.u.l->v[0].u.s->p, seps.u.l->v[0].u.s->n);
			key_sep = NULL;
			{
				/* copies into the arena so they are freed with it */
				char	   *i_s = ralloc(r, seps.u.l->v[0].u.s->n + 1);
				char	   *k_s = ralloc(r, seps.u.l->v[1].u.s->n + 1);

				sft_free((void *) item_sep);
				if (i_s == NULL || k_s == NULL)
					return -1;
				memcpy(i_s, seps.u.l->v[0].u.s->p, seps.u.l->v[0].u.s->n);
				memcpy(k_s, seps.u.l->v[1].u.s->p, seps.u.l->v[1].u.s->n);
				item_sep = i_s;
				key_sep = k_s;
			}
		}
		else if (seps.t != JV_NONE)
			return fail(r, line, SFT_ERR_INVALID, "tojson separators must be a pair of strings");
		if (json_dump(r, &k, &v, ind, 0, truthy(&sort_keys), item_sep, key_sep, line))
			return -1;
		s = sink_str(r, &k);
		if (s == NULL)
			return -1;
		*out = v_strval(s);
		return 0;
	}
	if (jinja_name_eq(name, "trim"))
	{
		JVal		chars = v_none();
		JStr	   *s;

		if (args_check(r, line, a, "trim", 1, (const char *const[]) {"chars", NULL}))
			return -1;
		arg_get(a, 0, "chars", &chars);
		if (v_to_str(r, &v, &v))
			return -1;
		if (chars.t != JV_NONE && need_str(r, line, &chars, "trim"))
			return -1;
		s = str_strip(r, v.u.s, chars.t == JV_STR ? chars.u.s : NULL, 3);
		if (s == NULL)
			return -1;
		*out = v_strval(s);
		return 0;
	}
	if (jinja_name_eq(name, "upper") || jinja_name_eq(name, "lower") ||
		jinja_name_eq(name, "capitalize") || jinja_name_eq(name, "title"))
	{
		int			mode = name.p[0] == 'l' ? 0 : name.p[0] == 'u' ? 1 : name.p[0] == 'c' ? 2 : 4;

		if (args_check(r, line, a, "case filter", 0, NULL) || v_to_str(r, &v, &v))
			return -1;
		return str_case(r, line, v.u.s, mode, out);
	}
	if (jinja_name_eq(name, "replace"))
	{
		JVal		old = UNDEF,
					new_ = UNDEF,
					count = v_none();

		if (args_check(r, line, a, "replace", 3, (const char *const[]) {"old", "new", "count", NULL}))
			return -1;
		arg_get(a, 0, "old", &old);
		arg_get(a, 1, "new", &new_);
		arg_get(a, 2, "count", &count);
		if (v_to_str(r, &v, &v) || v_to_str(r, &old, &old) || v_to_str(r, &new_, &new_))
			return -1;
		if (count.t != JV_NONE && need_int(r, line, &count, "replace count"))
			return -1;
		return str_replace(r, line, v.u.s, old.u.s, new_.u.s, count.t == JV_NONE ? -1 : count.u.i, out);
	}
	if (jinja_name_eq(name, "select") || jinja_name_eq(name, "reject") ||
		jinja_name_eq(name, "selectattr") || jinja_name_eq(name, "rejectattr"))
		return filter_select(r, line, v, a, name.n > 6, name.p[0] == 's', out);
	if (jinja_name_eq(name, "map"))
	{
		JList	   *items;
		JList	   *res;
		JVal		attr = UNDEF,
					dflt = UNDEF;
		int			has_attr = 0;

		for (int i = 0; i < a->nkw; i++)
			if (jinja_name_eq(a->kwnames[i], "attribute"))
			{
				attr = a->kw[i];
				has_attr = 1;
			}
			else if (jinja_name_eq(a->kwnames[i], "default"))
				dflt = a->kw[i];
			else
				return fail(r, line, SFT_ERR_INVALID, "map got an unexpected keyword argument '%.*s'",
							(int) a->kwnames[i].n, a->kwnames[i].p);
		if (!has_attr && (a->npos < 1 || a->pos[0].t != JV_STR))
			return fail(r, line, SFT_ERR_INVALID, "map needs a filter name or attribute=");
		if (iter_items(r, line, &v, &items) || (res = list_new(r, items->n)) == NULL)
			return -1;
		for (size_t i = 0; i < items->n; i++)
		{
			JVal		x = items->v[i];

			if (step(r, line))
				return -1;
			if (has_attr)
			{
				if (attr_path(r, line, x, &attr, &x))
					return -1;
				if (x.t == JV_UNDEF && dflt.t != JV_UNDEF)
					x = dflt;
			}
			else
			{
				JArgs		fa = *a;
				JName		fn = {a->pos[0].u.s->p, a->pos[0].u.s->n};

				fa.pos = a->pos + 1;
				fa.npos = a->npos - 1;
				if (apply_filter(r, line, fn, x, &fa, &x))
					return -1;
			}
			res->v[res->n++] = x;
		}
		*out = v_list(res, 0);
		return 0;
	}
	if (jinja_name_eq(name, "first") || jinja_name_eq(name, "last"))
	{
		JList	   *items;

		if (args_check(r, line, a, name.p, 0, NULL) || iter_items(r, line, &v, &items))
			return -1;
		*out = items->n == 0 ? UNDEF : items->v[name.p[0] == 'f' ? 0 : items->n - 1];
		return 0;
	}
	if (jinja_name_eq(name, "list"))
	{
		JList	   *items;

		if (args_check(r, line, a, "list", 0, NULL) || iter_items(r, line, &v, &items))
			return -1;
		*out = v_list(items, 0);
		return 0;
	}
	if (jinja_name_eq(name, "reverse"))
	{
		JList	   *items,
				   *res;

		if (args_check(r, line, a, "reverse", 0, NULL))
			return -1;
		if (v.t == JV_STR)
		{
			char	   *buf = ralloc(r, v.u.s->n + 1);
			size_t		o = v.u.s->n;

			if (buf == NULL)
				return -1;
			for (size_t i = 0; i < v.u.s->n;)
			{
				size_t		len = sft_utf8_len((unsigned char) v.u.s->p[i]);

				o -= len;
				memcpy(buf + o, v.u.s->p + i, len);
				i += len;
			}
			return v_str(r, out, buf, v.u.s->n);
		}
		if (iter_items(r, line, &v, &items) || (res = list_new(r, items->n)) == NULL)
			return -1;
		for (size_t i = 0; i < items->n; i++)
			res->v[i] = items->v[items->n - 1 - i];
		res->n = items->n;
		*out = v_list(res, 0);
		return 0;
	}
	if (jinja_name_eq(name, "int"))
	{
		JVal		dflt = v_int(0);

		if (args_check(r, line, a, "int", 2, (const char *const[]) {"default", "base", NULL}))
			return -1;
		arg_get(a, 0, "default", &dflt);
		if (v.t == JV_INT || v.t == JV_BOOL)
			*out = v_int(v.u.i);
		else if (v.t == JV_FLOAT)
			*out = isfinite(v.u.f) && fabs(v.u.f) < 9.2e18 ? v_int((int64_t) v.u.f) : dflt;
		else if (v.t == JV_STR)
		{
			int64_t		i;

			if (parse_int_str(v.u.s, &i) == 0)
				*out = v_int(i);
			else
			{
				char		buf[64];
				char	   *end;
				double		d;
				size_t		n = v.u.s->n < sizeof(buf) - 1 ? v.u.s->n : sizeof(buf) - 1;

				memcpy(buf, v.u.s->p, n);
				buf[n] = '\0';
				d = strtod(buf, &end);
				*out = (end != buf && *end == '\0' && isfinite(d) && fabs(d) < 9.2e18) ? v_int((int64_t) d) : dflt;
			}
		}
		else
			*out = dflt;
		return 0;
	}
	if (jinja_name_eq(name, "float"))
	{
		JVal		dflt = v_float(0.0);

		if (args_check(r, line, a, "float", 1, (const char *const[]) {"default", NULL}))
			return -1;
		arg_get(a, 0, "default", &dflt);
		if (is_numeric(&v))
			*out = v_float(as_double(&v));
		else if (v.t == JV_STR)
		{
			char		buf[64];
			char	   *end;
			double		d;
			size_t		n = v.u.s->n < sizeof(buf) - 1 ? v.u.s->n : sizeof(buf) - 1;

			memcpy(buf, v.u.s->p, n);
			buf[n] = '\0';
			d = strtod(buf, &end);
			*out = end != buf && *end == '\0' ? v_float(d) : dflt;
		}
		else
			*out = dflt;
		return 0;
	}
	if (jinja_name_eq(name, "abs"))
	{
		if (v.t == JV_INT || v.t == JV_BOOL)
		{
			if (v.u.i == INT64_MIN)
				return fail(r, line, SFT_ERR_UNSUPPORTED, "integer result does not fit in 64 bits");
			*out = v_int(v.u.i < 0 ? -v.u.i : v.u.i);
		}
		else if (v.t == JV_FLOAT)
			*out = v_float(fabs(v.u.f));
		else
			return fail(r, line, SFT_ERR_INVALID, "bad operand type for abs(): '%s'", type_name(&v));
		return 0;
	}
	if (jinja_name_eq(name, "items"))
	{
		if (v.t != JV_DICT)
			return fail(r, line, SFT_ERR_INVALID, "items: expected a mapping, got %s", type_name(&v));
		return dict_items(r, v, out);
	}
	if (jinja_name_eq(name, "dictsort"))
	{
		static const char *const kws[] = {"case_sensitive", "by", "reverse", NULL};
		JVal		cs = v_bool(0),
					by = UNDEF,
					reverse = v_bool(0);
		JVal		items;
		JVal	   *keys;
		int			by_value = 0;

		if (args_check(r, line, a, "dictsort", 3, kws))
			return -1;
		if (v.t != JV_DICT)
			return fail(r, line, SFT_ERR_INVALID, "dictsort: expected a mapping, got %s", type_name(&v));
		arg_get(a, 0, "case_sensitive", &cs);
		arg_get(a, 1, "by", &by);
		arg_get(a, 2, "reverse", &reverse);
		if (by.t == JV_STR && by.u.s->n == 5 && memcmp(by.u.s->p, "value", 5) == 0)
			by_value = 1;
		else if (by.t != JV_UNDEF && !(by.t == JV_STR && by.u.s->n == 3 && memcmp(by.u.s->p, "key", 3) == 0))
			return fail(r, line, SFT_ERR_INVALID, "dictsort: you can only sort by either \"key\" or \"value\"");
		if (dict_items(r, v, &items))
			return -1;
		keys = ralloc(r, (items.u.l->n + 1) * sizeof(JVal));
		if (keys == NULL)
			return -1;
		for (size_t i = 0; i < items.u.l->n; i++)
			keys[i] = items.u.l->v[i].u.l->v[by_value];
		if (sort_by_keys(r, line, items.u.l->v, keys, items.u.l->n, truthy(&cs), truthy(&reverse)))
			return -1;
		*out = items;
		return 0;
	}
	if (jinja_name_eq(name, "sort"))
		return filter_sort(r, line, v, a, out);
	if (jinja_name_eq(name, "unique"))
	{
		static const char *const kws[] = {"case_sensitive", "attribute", NULL};
		JVal		cs = v_bool(0),
					attr = UNDEF;
		JList	   *items,
				   *res,
				   *seen;

		if (args_check(r, line, a, "unique", 2, kws) || iter_items(r, line, &v, &items))
			return -1;
		arg_get(a, 0, "case_sensitive", &cs);
		arg_get(a, 1, "attribute", &attr);
		if ((res = list_new(r, 0)) == NULL || (seen = list_new(r, 0)) == NULL)
			return -1;
		for (size_t i = 0; i < items->n; i++)
		{
			JVal		key = items->v[i];
			int			dup = 0;

			if (attr.t != JV_UNDEF && attr_path(r, line, key, &attr, &key))
				return -1;
			if (!truthy(&cs) && key.t == JV_STR && str_case(r, line, key.u.s, 0, &key))
				return -1;
			for (size_t j = 0; j < seen->n && !dup; j++)
				dup = v_eq(&seen->v[j], &key);
			if (step(r, line))
				return -1;
			if (!dup && (list_push(r, seen, key) || list_push(r, res, items->v[i])))
				return -1;
		}
		*out = v_list(res, 0);
		return 0;
	}
	if (jinja_name_eq(name, "join"))
		return filter_join(r, line, v, a, out);
	if (jinja_name_eq(name, "indent"))
		return filter_indent(r, line, v, a, out);
	if (jinja_name_eq(name, "sum") || jinja_name_eq(name, "min") || jinja_name_eq(name, "max"))
	{
		JList	   *items;
		JVal		acc = v_int(0);
		JVal		attr = UNDEF;

		if (iter_items(r, line, &v, &items))
			return -1;
		for (int i = 0; i < a->nkw; i++)
			if (jinja_name_eq(a->kwnames[i], "attribute"))
				attr = a->kw[i];
			else if (name.p[1] == 'u' && jinja_name_eq(a->kwnames[i], "start"))
				acc = a->kw[i];
			else
				return fail(r, line, SFT_ERR_UNSUPPORTED, "%s: keyword argument '%.*s' is not supported",
							name.p, (int) a->kwnames[i].n, a->kwnames[i].p);
		if (a->npos > 0)
			attr = a->pos[0];
		if (name.p[1] != 'u' && items->n == 0)
		{
			*out = UNDEF;
			return 0;
		}
		for (size_t i = 0; i < items->n; i++)
		{
			JVal		x = items->v[i];

			if (attr.t != JV_UNDEF && attr_path(r, line, x, &attr, &x))
				return -1;
			if (name.p[1] == 'u')
			{
				if (arith(r, line, JOP_ADD, acc, x, &acc))
					return -1;
			}
			else if (i == 0)
				acc = x;
			else
			{
				int			c;

				if (key_cmp(r, line, x, acc, 0, &c))
					return -1;
				if (name.p[1] == 'i' ? c < 0 : c > 0)
					acc = x;
			}
		}
		*out = acc;
		return 0;
	}
	if (jinja_name_eq(name, "round"))
	{
		JVal		prec = v_int(0),
					method = UNDEF;
		double		x,
					m;

		arg_get(a, 0, "precision", &prec);
		arg_get(a, 1, "method", &method);
		if (!is_numeric(&v) || need_int(r, line, &prec, "round precision"))
			return fail(r, line, SFT_ERR_INVALID, "round: expected a number");
		if (method.t != JV_UNDEF)
			return fail(r, line, SFT_ERR_UNSUPPORTED, "round(method=...) is not supported");
		if (prec.u.i != 0)
			return fail(r, line, SFT_ERR_UNSUPPORTED, "round with a precision is not supported");
		x = as_double(&v);
		/* Python's round(x, 0): halves to even */
		m = nearbyint(x);
		*out = v_float(m);
		return 0;
	}
	if (jinja_name_eq(name, "wordcount"))
	{
		JVal		parts;

		if (v_to_str(r, &v, &v) || str_split(r, line, v.u.s, NULL, -1, 0, &parts))
			return -1;
		*out = v_int((int64_t) parts.u.l->n);
		return 0;
	}
	if (jinja_name_eq(name, "batch") || jinja_name_eq(name, "slice") ||
		jinja_name_eq(name, "center") || jinja_name_eq(name, "format") ||
		jinja_name_eq(name, "truncate") || jinja_name_eq(name, "wordwrap") ||
		jinja_name_eq(name, "striptags") || jinja_name_eq(name, "urlencode") ||
		jinja_name_eq(name, "urlize") || jinja_name_eq(name, "xmlattr") ||
		jinja_name_eq(name, "pprint") || jinja_name_eq(name, "filesizeformat") ||
		jinja_name_eq(name, "groupby") || jinja_name_eq(name, "attr") ||
		jinja_name_eq(name, "e") || jinja_name_eq(name, "escape") ||
		jinja_name_eq(name, "forceescape") || jinja_name_eq(name, "random"))
		return fail(r, line, SFT_ERR_UNSUPPORTED, "the '%.*s' filter is not supported", (int) name.n, name.p);
	return fail(r, line, SFT_ERR_INVALID, "no filter named '%.*s'", (int) (name.n > 40 ? 40 : name.n), name.p);
}

/* ---------------------------------------------------------------------------
 * Calls: methods, globals, macros
 * ------------------------------------------------------------------------- */

static int
str_method(R *r, int line, JVal self, JName name, const JArgs *a, JVal *out)
{
	const JStr *s = self.u.s;

	if (jinja_name_eq(name, "strip") || jinja_name_eq(name, "lstrip") || jinja_name_eq(name, "rstrip"))
	{
		JVal		chars = v_none();
		JStr	   *res;

		if (args_check(r, line, a, name.p, 1, NULL))
			return -1;
		arg_get(a, 0, "chars", &chars);
		if (chars.t != JV_NONE && need_str(r, line, &chars, name.p))
			return -1;
		res = str_strip(r, s, chars.t == JV_STR ? chars.u.s : NULL,
						name.p[0] == 'l' ? 1 : name.p[0] == 'r' ? 2 : 3);
		if (res == NULL)
			return -1;
		*out = v_strval(res);
		return 0;
	}
	if (jinja_name_eq(name, "split") || jinja_name_eq(name, "rsplit"))
	{
		JVal		sep = v_none(),
					maxsplit = v_int(-1);

		if (args_check(r, line, a, name.p, 2, (const char *const[]) {"sep", "maxsplit", NULL}))
			return -1;
		arg_get(a, 0, "sep", &sep);
		arg_get(a, 1, "maxsplit", &maxsplit);
		if ((sep.t != JV_NONE && need_str(r, line, &sep, name.p)) || need_int(r, line, &maxsplit, name.p))
			return -1;
		return str_split(r, line, s, sep.t == JV_STR ? sep.u.s : NULL, maxsplit.u.i, name.p[0] == 'r', out);
	}
	if (jinja_name_eq(name, "startswith") || jinja_name_eq(name, "endswith"))
	{
		JVal		pre = UNDEF;
		int			ends = name.p[0] == 'e';
		int			res = 0;

		if (args_check(r, line, a, name.p, 1, NULL) || !arg_get(a, 0, "", &pre))
			return fail(r, line, SFT_ERR_INVALID, "%s takes one argument", name.p);
		if (pre.t == JV_LIST && pre.tuple)
		{
			for (size_t i = 0; i < pre.u.l->n && !res; i++)
			{
				const JVal *p = &pre.u.l->v[i];

				if (need_str(r, line, p, name.p))
					return -1;
				res = p->u.s->n <= s->n &&
					memcmp(s->p + (ends ? s->n - p->u.s->n : 0), p->u.s->p, p->u.s->n) == 0;
			}
		}
		else
		{
			if (need_str(r, line, &pre, name.p))
				return -1;
			res = pre.u.s->n <= s->n &&
				memcmp(s->p + (ends ? s->n - pre.u.s->n : 0), pre.u.s->p, pre.u.s->n) == 0;
		}
		*out = v_bool(res);
		return 0;
	}
	if (jinja_name_eq(name, "replace"))
	{
		JVal		old = UNDEF,
					new_ = UNDEF,
					count = v_int(-1);

		if (args_check(r, line, a, "replace", 3, (const char *const[]) {"count", NULL}) || a->npos < 2)
			return fail(r, line, SFT_ERR_INVALID, "replace takes two or three arguments");
		arg_get(a, 0, "", &old);
		arg_get(a, 1, "", &new_);
		arg_get(a, 2, "count", &count);
		if (need_str(r, line, &old, "replace") || need_str(r, line, &new_, "replace") ||
			need_int(r, line, &count, "replace"))
			return -1;
		return str_replace(r, line, s, old.u.s, new_.u.s, count.u.i, out);
	}
	if (jinja_name_eq(name, "upper") || jinja_name_eq(name, "lower") ||
		jinja_name_eq(name, "title") || jinja_name_eq(name, "capitalize"))
	{
		int			mode = name.p[0] == 'l' ? 0 : name.p[0] == 'u' ? 1 : name.p[0] == 'c' ? 2 : 3;

		if (args_check(r, line, a, name.p, 0, NULL))
			return -1;
		return str_case(r, line, s, mode, out);
	}
	if (jinja_name_eq(name, "find") || jinja_name_eq(name, "rfind") ||
		jinja_name_eq(name, "count") || jinja_name_eq(name, "index"))
	{
		JVal		sub = UNDEF;
		const char *hit;

		if (args_check(r, line, a, name.p, 1, NULL) || !arg_get(a, 0, "", &sub) ||
			need_str(r, line, &sub, name.p))
			return fail(r, line, SFT_ERR_INVALID, "%s takes one string argument", name.p);
		if (name.p[0] == 'c')
		{
			int64_t		n = 0;
			size_t		pos = 0;

			if (sub.u.s->n == 0)
			{
				*out = v_int((int64_t) str_chars(s) + 1);
				return 0;
			}
			while ((hit = mem_find(s->p + pos, s->n - pos, sub.u.s->p, sub.u.s->n)) != NULL)
			{
				n++;
				pos = (size_t) (hit - s->p) + sub.u.s->n;
			}
			*out = v_int(n);
			return 0;
		}
		hit = name.p[0] == 'r' ? mem_rfind(s->p, s->n, sub.u.s->p, sub.u.s->n) :
			mem_find(s->p, s->n, sub.u.s->p, sub.u.s->n);
		if (hit == NULL && name.p[0] == 'i')
			return fail(r, line, SFT_ERR_INVALID, "substring not found");
		if (hit == NULL)
			*out = v_int(-1);
		else
		{
			JStr		prefix = {s->p, (size_t) (hit - s->p), NULL, 0};

			*out = v_int((int64_t) str_chars(&prefix));
		}
		return 0;
	}
	if (jinja_name_eq(name, "join"))
	{
		JArgs		ja = {0};
		JVal		seq;

		if (a->npos != 1 || a->nkw)
			return fail(r, line, SFT_ERR_INVALID, "join takes one argument");
		seq = a->pos[0];
		ja.pos = &self;
		ja.npos = 1;
		{
			JList	   *items;

			if (iter_items(r, line, &seq, &items))
				return -1;
			for (size_t i = 0; i < items->n; i++)
				if (need_str(r, line, &items->v[i], "join"))
					return -1;
		}
		return filter_join(r, line, seq, &ja, out);
	}
	if (jinja_name_eq(name, "removeprefix") || jinja_name_eq(name, "removesuffix"))
	{
		JVal		fix = UNDEF;
		int			suffix = name.p[6] == 's';
		JStr	   *res;

		if (args_check(r, line, a, name.p, 1, NULL) || !arg_get(a, 0, "", &fix) ||
			need_str(r, line, &fix, name.p))
			return fail(r, line, SFT_ERR_INVALID, "%s takes one string argument", name.p);
		if (fix.u.s->n <= s->n && memcmp(s->p + (suffix ? s->n - fix.u.s->n : 0), fix.u.s->p, fix.u.s->n) == 0)
			res = str_sub(r, s, suffix ? 0 : fix.u.s->n, s->n - fix.u.s->n);
		else
			res = str_sub(r, s, 0, s->n);
		if (res == NULL)
			return -1;
		*out = v_strval(res);
		return 0;
	}
	if (jinja_name_eq(name, "splitlines"))
	{
		JList	   *l = list_new(r, 0);
		size_t		pos = 0;

		if (l == NULL || args_check(r, line, a, name.p, 0, NULL))
			return -1;
		while (pos < s->n)
		{
			size_t		end = pos;
			size_t		skip;
			JStr	   *part;

			while (end < s->n && s->p[end] != '\n' && s->p[end] != '\r')
				end++;
			skip = end < s->n ? (s->p[end] == '\r' && end + 1 < s->n && s->p[end + 1] == '\n' ? 2 : 1) : 0;
			part = str_sub(r, s, pos, end - pos);
			if (part == NULL || list_push(r, l, v_strval(part)))
				return -1;
			pos = end + skip;
		}
		*out = v_list(l, 0);
		return 0;
	}
	if (jinja_name_eq(name, "isdigit") || jinja_name_eq(name, "isspace") ||
		jinja_name_eq(name, "isalpha") || jinja_name_eq(name, "isalnum") ||
		jinja_name_eq(name, "islower") || jinja_name_eq(name, "isupper"))
	{
		int			res = s->n > 0;
		int			cased = 0;

		for (size_t i = 0; i < s->n; i++)
		{
			unsigned char c = (unsigned char) s->p[i];

			if (c >= 0x80 && !jinja_name_eq(name, "isspace"))
				return fail(r, line, SFT_ERR_UNSUPPORTED, "%s on non-ASCII text is not supported", name.p);
			switch (name.p[2])
			{
				case 'd':
					res &= c >= '0' && c <= '9';
					break;
				case 's':
					{
						size_t		len;

						if (!py_isspace_cp(sft_utf8_decode((const unsigned char *) s->p + i, &len)))
							res = 0;
						i += len - 1;
						break;
					}
				case 'a':
					if (name.p[4] == 'n')
						res &= (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
					else
						res &= (c | 32) >= 'a' && (c | 32) <= 'z';
					break;
				case 'l':
					if (c >= 'A' && c <= 'Z')
						res = 0;
					cased |= c >= 'a' && c <= 'z';
					break;
				case 'u':
					if (c >= 'a' && c <= 'z')
						res = 0;
					cased |= c >= 'A' && c <= 'Z';
					break;
			}
		}
		if (name.p[2] == 'l' || name.p[2] == 'u')
			res = res && cased;
		*out = v_bool(res);
		return 0;
	}
	return fail(r, line, SFT_ERR_UNSUPPORTED, "the string method '%.*s' is not supported",
				(int) name.n, name.p);
}

static int
dict_method(R *r, int line, JVal self, JName name, const JArgs *a, JVal *out)
{
	if (jinja_name_eq(name, "get"))
	{
		JVal		key = UNDEF,
					dflt = v_none();
		JVal	   *v;

		if (args_check(r, line, a, "get", 2, NULL) || !arg_get(a, 0, "", &key))
			return fail(r, line, SFT_ERR_INVALID, "get takes one or two arguments");
		arg_get(a, 1, "", &dflt);
		v = dict_find(self.u.d, &key);
		*out = v ? *v : dflt;
		return 0;
	}
	if (jinja_name_eq(name, "items"))
	{
		if (args_check(r, line, a, "items", 0, NULL))
			return -1;
		return dict_items(r, self, out);
	}
	if (jinja_name_eq(name, "keys") || jinja_name_eq(name, "values"))
	{
		JList	   *l = list_new(r, self.u.d->n);

		if (l == NULL || args_check(r, line, a, name.p, 0, NULL))
			return -1;
		memcpy(l->v, name.p[0] == 'k' ? self.u.d->k : self.u.d->v, self.u.d->n * sizeof(JVal));
		l->n = self.u.d->n;
		*out = v_list(l, 0);
		return 0;
	}
	if (jinja_name_eq(name, "copy"))
	{
		*out = self;
		return 0;
	}
	return fail(r, line, SFT_ERR_INVALID, "access to attribute '%.*s' of 'dict' object is unsafe",
				(int) name.n, name.p);
}

static int
call_method(R *r, int line, JMethod *m, const JArgs *a, JVal *out)
{
	switch (m->self.t)
	{
		case JV_STR:
			return str_method(r, line, m->self, m->name, a, out);
		case JV_DICT:
			return dict_method(r, line, m->self, m->name, a, out);
		case JV_LIST:
			if (jinja_name_eq(m->name, "index") || jinja_name_eq(m->name, "count"))
			{
				JVal		x = UNDEF;
				int64_t		n = 0;

				if (a->npos != 1 || a->nkw)
					return fail(r, line, SFT_ERR_INVALID, "%s takes one argument", m->name.p);
				x = a->pos[0];
				for (size_t i = 0; i < m->self.u.l->n; i++)
					if (v_eq(&m->self.u.l->v[i], &x))
					{
						if (m->name.p[0] == 'i')
						{
							*out = v_int((int64_t) i);
							return 0;
						}
						n++;
					}
				if (m->name.p[0] == 'i')
					return fail(r, line, SFT_ERR_INVALID, "value is not in list");
				*out = v_int(n);
				return 0;
			}
			if (jinja_name_eq(m->name, "copy"))
			{
				*out = m->self;
				return 0;
			}
			return fail(r, line, SFT_ERR_INVALID, "access to attribute '%.*s' of 'list' object is unsafe",
						(int) m->name.n, m->name.p);
		case JV_LOOP:
			{
				JLoop	   *L = m->self.u.loop;

				if (jinja_name_eq(m->name, "cycle"))
				{
					if (a->npos == 0)
						return fail(r, line, SFT_ERR_INVALID, "no items for cycling given");
					*out = a->pos[L->index0 % a->npos];
					return 0;
				}
				/* loop.changed(value) */
				{
					JList	   *l = list_new(r, a->npos);
					JVal		now;

					if (l == NULL)
						return -1;
					memcpy(l->v, a->pos, a->npos * sizeof(JVal));
					l->n = a->npos;
					now = v_list(l, 0);
					*out = v_bool(!L->has_changed || !v_eq(&L->last_changed, &now));
					L->last_changed = now;
					L->has_changed = 1;
					return 0;
				}
			}
		default:
			return fail(r, line, SFT_ERR_INTERNAL, "bad method receiver");
	}
}

static int	call_macro(R *r, int line, JMacro *m, const JArgs *a, JVal *out);
static JExec exec_for(R *r, JNode *n, JFrame *f, JVal iterable, int depth0);

static int
strftime_now(R *r, int line, const JArgs *a, JVal *out)
{
	JVal		fmt = UNDEF;
	time_t		now = r->opts->now_set ? r->opts->now : time(NULL);
	struct tm	tm;
	char	   *fmtz;
	char	   *buf;
	size_t		n;

	if (a->npos != 1 || a->nkw || a->pos[0].t != JV_STR)
		return fail(r, line, SFT_ERR_INVALID, "strftime_now takes one string argument");
	fmt = a->pos[0];
	if (fmt.u.s->n > 256)
		return fail(r, line, SFT_ERR_LIMIT, "strftime_now format longer than 256 bytes");
	/* only the directives C and Python agree on */
	for (size_t i = 0; i < fmt.u.s->n; i++)
		if (fmt.u.s->p[i] == '%')
		{
			char		c = i + 1 < fmt.u.s->n ? fmt.u.s->p[i + 1] : 0;

			if (c == 0 || strchr("aAbBcdHIjmMpSUwWxXyYzZ%", c) == NULL)
				return fail(r, line, SFT_ERR_UNSUPPORTED, "strftime_now: the directive %%%c is not supported", c ? c : ' ');
			i++;
		}
	if (localtime_r(&now, &tm) == NULL)
		return fail(r, line, SFT_ERR_INVALID, "strftime_now: the clock is out of range");
	fmtz = ralloc(r, fmt.u.s->n + 1);
	buf = ralloc(r, 4096);
	if (fmtz == NULL || buf == NULL)
		return -1;
	memcpy(fmtz, fmt.u.s->p, fmt.u.s->n);
	n = strftime(buf, 4096, fmtz, &tm);
	return v_str(r, out, buf, n);
}

static int
call_func(R *r, int line, int fn, const JArgs *a, JVal *out)
{
	switch (fn)
	{
		case JF_RAISE:
			{
				JVal		msg = UNDEF;
				JVal		s;

				arg_get(a, 0, "message", &msg);
				if (v_to_str(r, &msg, &s))
					return -1;
				if (r->failed)
					return -1;
				r->failed = 1;
				r->opts->raised = 1;
				sft_error(r->err, SFT_ERR_INVALID, "%.*s", (int) (s.u.s->n > 400 ? 400 : s.u.s->n), s.u.s->p);
				return -1;
			}
		case JF_STRFTIME:
			return strftime_now(r, line, a, out);
		case JF_RANGE:
			{
				int64_t		lo = 0,
							hi,
							st = 1;
				JList	   *l;

				if (a->nkw || a->npos < 1 || a->npos > 3)
					return fail(r, line, SFT_ERR_INVALID, "range takes one to three integer arguments");
				for (int i = 0; i < a->npos; i++)
					if (need_int(r, line, &a->pos[i], "range"))
						return -1;
				if (a->npos == 1)
					hi = a->pos[0].u.i;
				else
				{
					lo = a->pos[0].u.i;
					hi = a->pos[1].u.i;
					if (a->npos == 3)
						st = a->pos[2].u.i;
				}
				if (st == 0)
					return fail(r, line, SFT_ERR_INVALID, "range() arg 3 must not be zero");
				{
					/* the sandbox caps ranges at 100000 items (MAX_RANGE) */
					double		count = st > 0 ? ceil(((double) hi - lo) / st) : ceil(((double) lo - hi) / -st);

					if (count > 100000)
						return fail(r, line, SFT_ERR_LIMIT, "range too big (the sandbox allows 100000 items)");
					if (count < 0)
						count = 0;
					l = list_new(r, (size_t) count);
					if (l == NULL)
						return -1;
					for (int64_t i = 0; i < (int64_t) count; i++)
						l->v[l->n++] = v_int(lo + i * st);
				}
				*out = v_list(l, 0);
				return 0;
			}
		case JF_NAMESPACE:
		case JF_DICT:
			{
				JDict	   *d = dict_new(r);

				if (d == NULL)
					return -1;
				if (a->npos > 1)
					return fail(r, line, SFT_ERR_INVALID, "%s takes at most one positional argument",
								fn == JF_DICT ? "dict" : "namespace");
				if (a->npos == 1)
				{
					if (a->pos[0].t != JV_DICT)
						return fail(r, line, SFT_ERR_UNSUPPORTED, "%s(x) needs a mapping",
									fn == JF_DICT ? "dict" : "namespace");
					for (size_t i = 0; i < a->pos[0].u.d->n; i++)
						if (dict_set(r, d, a->pos[0].u.d->k[i], a->pos[0].u.d->v[i]))
							return -1;
				}
				for (int i = 0; i < a->nkw; i++)
				{
					JVal		k;

					if (v_str(r, &k, a->kwnames[i].p, a->kwnames[i].n) || dict_set(r, d, k, a->kw[i]))
						return -1;
				}
				*out = v_dict(d);
				if (fn == JF_NAMESPACE)
					out->t = JV_NS;
				return 0;
			}
		default:
			return fail(r, line, SFT_ERR_UNSUPPORTED, "this global function is not supported");
	}
}

static int
call_value(R *r, int line, JVal callee, const JArgs *a, JVal *out, JName what)
{
	switch (callee.t)
	{
		case JV_MACRO:
			return call_macro(r, line, callee.u.m, a, out);
		case JV_FUNC:
			return call_func(r, line, (int) callee.u.i, a, out);
		case JV_METHOD:
			return call_method(r, line, callee.u.me, a, out);
		case JV_LOOP:
			{
				/* loop(items) in a recursive for loop */
				JLoop	   *L = callee.u.loop;
				JSink		k = {0};
				JSink	   *saved = r->sink;
				JExec		x;
				JStr	   *s;

				if (L->def == NULL)
					return fail(r, line, SFT_ERR_INVALID, "loop() is only callable in a recursive for loop");
				if (a->npos != 1 || a->nkw)
					return fail(r, line, SFT_ERR_INVALID, "loop() takes one argument");
				if (++r->depth > r->opts->limits.max_depth)
					return fail(r, line, SFT_ERR_LIMIT, "recursion deeper than %d", r->opts->limits.max_depth);
				r->sink = &k;
				x = exec_for(r, L->def, L->frame, a->pos[0], L->depth0 + 1);
				r->sink = saved;
				r->depth--;
				if (x == JX_ERR)
					return -1;
				s = sink_str(r, &k);
				if (s == NULL)
					return -1;
				*out = v_strval(s);
				return 0;
			}
		case JV_UNDEF:
			{
				char		buf[96];

				snprintf(buf, sizeof(buf), "(called)");
				if (callee.u.s == NULL && what.n)
					callee.u.s = str_new(r, what.p, what.n);
				return undefined_error(r, line, &callee, buf);
			}
		default:
			return fail(r, line, SFT_ERR_INVALID, "'%s' object is not callable", type_name(&callee));
	}
}

static int
call_macro(R *r, int line, JMacro *m, const JArgs *a, JVal *out)
{
	JNode	   *def = m->def;
	JFrame	   *f;
	JSink		k = {0};
	JSink	   *saved = r->sink;
	JExec		x;
	JStr	   *s;
	int			saved_loop = r->loop_depth;

	if (++r->depth > r->opts->limits.max_depth)
		return fail(r, line, SFT_ERR_LIMIT, "macro calls nested deeper than %d", r->opts->limits.max_depth);
	f = frame_new(r, m->closure);
	if (f == NULL)
		return -1;
	if (a->npos > def->nnames)
		return fail(r, line, SFT_ERR_INVALID, "macro '%.*s' takes at most %d arguments (%d given)",
					(int) def->name.n, def->name.p, def->nnames, a->npos);
	for (int i = 0; i < def->nnames; i++)
	{
		JVal		v = UNDEF;

		if (!arg_get(a, i, "", &v))
		{
			int			found = 0;

			for (int k2 = 0; k2 < a->nkw; k2++)
				if (a->kwnames[k2].n == def->names[i].n &&
					memcmp(a->kwnames[k2].p, def->names[i].p, def->names[i].n) == 0)
				{
					v = a->kw[k2];
					found = 1;
				}
			if (!found && def->args.v[i] != NULL && eval(r, def->args.v[i], f, &v))
				return -1;
			if (!found && def->args.v[i] == NULL)
				v = v_undef_named(r, def->names[i].p, def->names[i].n);
		}
		if (frame_set(r, f, def->names[i], v))
			return -1;
	}
	for (int k2 = 0; k2 < a->nkw; k2++)
	{
		int			known = 0;

		for (int i = 0; i < def->nnames; i++)
			if (a->kwnames[k2].n == def->names[i].n &&
				memcmp(a->kwnames[k2].p, def->names[i].p, def->names[i].n) == 0)
				known = 1;
		if (!known)
			return fail(r, line, SFT_ERR_INVALID, "macro '%.*s' has no argument '%.*s'",
						(int) def->name.n, def->name.p, (int) a->kwnames[k2].n, a->kwnames[k2].p);
	}
	if (m->caller.t == JV_MACRO && frame_set_c(r, f, "caller", m->caller))
		return -1;
	r->sink = &k;
	r->loop_depth = 0;
	x = exec_body(r, &def->body, f);
	r->sink = saved;
	r->loop_depth = saved_loop;
	r->depth--;
	if (x == JX_ERR)
		return -1;
	s = sink_str(r, &k);
	if (s == NULL)
		return -1;
	*out = v_strval(s);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Expressions
 * ------------------------------------------------------------------------- */

static int
eval(R *r, JNode *n, JFrame *f, JVal *out)
{
	int			rc = 0;

	if (step(r, n->line))
		return -1;
	if (++r->depth > r->opts->limits.max_depth + 256)
		return fail(r, n->line, SFT_ERR_LIMIT, "expression nested too deeply");
	switch (n->kind)
	{
		case JN_CONST:
			*out = n->value;
			break;
		case JN_NAME:
			{
				JVal	   *v = frame_get(f, n->name);

				*out = v ? *v : v_undef_named(r, n->name.p, n->name.n);
				break;
			}
		case JN_GETATTR:
			{
				JVal		obj;

				rc = eval(r, n->a, f, &obj);
				if (rc == 0)
					rc = get_attr(r, n->line, obj, n->name, out);
				break;
			}
		case JN_GETITEM:
			{
				JVal		obj,
							key;

				rc = eval(r, n->a, f, &obj);
				if (rc == 0)
					rc = eval(r, n->b, f, &key);
				if (rc == 0)
					rc = get_item(r, n->line, obj, key, out);
				break;
			}
		case JN_SLICE:
			rc = eval_slice(r, n, f, out);
			break;
		case JN_CALL:
			{
				JVal		callee;
				JArgs		a;
				JName		what = {0};

				if (n->a->kind == JN_NAME)
					what = n->a->name;
				rc = eval(r, n->a, f, &callee);
				if (rc == 0)
					rc = eval_args(r, n, f, &a);
				if (rc == 0)
					rc = call_value(r, n->line, callee, &a, out, what);
				break;
			}
		case JN_FILTER:
			{
				JVal		subject;
				JArgs		a;

				if (n->a)
					rc = eval(r, n->a, f, &subject);
				else
					subject = r->pipe;
				if (rc == 0)
					rc = eval_args(r, n, f, &a);
				if (rc == 0)
					rc = apply_filter(r, n->line, n->name, subject, &a, out);
				break;
			}
		case JN_TEST:
			{
				JVal		subject;
				JArgs		a;
				int			res;

				rc = eval(r, n->a, f, &subject);
				if (rc == 0)
					rc = eval_args(r, n, f, &a);
				if (rc == 0)
					rc = apply_test(r, n->line, n->name, subject, &a, &res);
				if (rc == 0)
					*out = v_bool(n->flag ? !res : res);
				break;
			}
		case JN_BINOP:
			{
				JVal		a,
							b;

				rc = eval(r, n->a, f, &a);
				if (rc == 0)
					rc = eval(r, n->b, f, &b);
				if (rc == 0)
					rc = arith(r, n->line, n->op, a, b, out);
				break;
			}
		case JN_NEG:
		case JN_POS:
			{
				JVal		a;

				rc = eval(r, n->a, f, &a);
				if (rc == 0)
				{
					if (a.t == JV_INT || a.t == JV_BOOL)
					{
						if (n->kind == JN_NEG && a.u.i == INT64_MIN)
							rc = fail(r, n->line, SFT_ERR_UNSUPPORTED, "integer result does not fit in 64 bits");
						else
							*out = v_int(n->kind == JN_NEG ? -a.u.i : a.u.i);
					}
					else if (a.t == JV_FLOAT)
						*out = v_float(n->kind == JN_NEG ? -a.u.f : a.u.f);
					else if (a.t == JV_UNDEF)
						rc = undefined_error(r, n->line, &a, NULL);
					else
						rc = fail(r, n->line, SFT_ERR_INVALID, "bad operand type for unary %s: '%s'",
								  n->kind == JN_NEG ? "-" : "+", type_name(&a));
				}
				break;
			}
		case JN_NOT:
			{
				JVal		a;

				rc = eval(r, n->a, f, &a);
				if (rc == 0)
					*out = v_bool(!truthy(&a));
				break;
			}
		case JN_AND:
		case JN_OR:
			rc = eval(r, n->a, f, out);
			if (rc == 0 && (n->kind == JN_AND ? truthy(out) : !truthy(out)))
				rc = eval(r, n->b, f, out);
			break;
		case JN_COMPARE:
			{
				JVal		a,
							b;

				rc = eval(r, n->a, f, &a);
				if (rc == 0)
					rc = eval(r, n->b, f, &b);
				if (rc == 0)
					rc = compare(r, n->line, n->op, a, b, out);
				break;
			}
		case JN_CONCAT:
			{
				JSink		k = {0};
				JStr	   *s;

				for (int i = 0; i < n->args.n && rc == 0; i++)
				{
					JVal		v;

					rc = eval(r, n->args.v[i], f, &v);
					if (rc == 0)
						rc = v.t == JV_STR ? sink_write_str(r, &k, v.u.s) : v_print(r, &k, &v, 0);
				}
				if (rc == 0)
				{
					s = sink_str(r, &k);
					if (s == NULL)
						rc = -1;
					else
						*out = v_strval(s);
				}
				break;
			}
		case JN_CONDEXPR:
			{
				JVal		c;

				rc = eval(r, n->a, f, &c);
				if (rc == 0)
				{
					if (truthy(&c))
						rc = eval(r, n->b, f, out);
					else if (n->c)
						rc = eval(r, n->c, f, out);
					else
						*out = UNDEF;
				}
				break;
			}
		case JN_LIST:
		case JN_TUPLE:
			{
				JList	   *l = list_new(r, n->args.n);

				if (l == NULL)
				{
					rc = -1;
					break;
				}
				for (int i = 0; i < n->args.n && rc == 0; i++)
					rc = eval(r, n->args.v[i], f, &l->v[i]);
				l->n = n->args.n;
				*out = v_list(l, n->kind == JN_TUPLE);
				break;
			}
		case JN_DICT:
			{
				JDict	   *d = dict_new(r);

				if (d == NULL)
				{
					rc = -1;
					break;
				}
				for (int i = 0; i + 1 < n->args.n && rc == 0; i += 2)
				{
					JVal		k,
								v;

					rc = eval(r, n->args.v[i], f, &k);
					if (rc == 0)
						rc = eval(r, n->args.v[i + 1], f, &v);
					if (rc == 0 && (k.t == JV_LIST && !k.tuple))
						rc = fail(r, n->line, SFT_ERR_INVALID, "unhashable type: 'list'");
					if (rc == 0 && (k.t == JV_DICT))
						rc = fail(r, n->line, SFT_ERR_INVALID, "unhashable type: 'dict'");
					if (rc == 0)
						rc = dict_set(r, d, k, v);
				}
				*out = v_dict(d);
				break;
			}
		default:
			rc = fail(r, n->line, SFT_ERR_INTERNAL, "statement evaluated as an expression");
	}
	r->depth--;
	return r->failed ? -1 : rc;
}

/* ---------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------- */

/* Bind the names of a for/set target to v (unpacking when there are several). */
static int
bind_targets(R *r, int line, JFrame *f, JName *names, int nnames, JVal v)
{
	JList	   *items;

	if (nnames == 1)
		return frame_set(r, f, names[0], v);
	if (v.t != JV_LIST && v.t != JV_STR && v.t != JV_DICT)
		return fail(r, line, SFT_ERR_INVALID, "cannot unpack non-iterable %s object", type_name(&v));
	if (iter_items(r, line, &v, &items))
		return -1;
	if ((int) items->n != nnames)
		return fail(r, line, SFT_ERR_INVALID, "cannot unpack %zu values into %d names", items->n, nnames);
	for (int i = 0; i < nnames; i++)
		if (frame_set(r, f, names[i], items->v[i]))
			return -1;
	return 0;
}

static JExec
exec_for(R *r, JNode *n, JFrame *f, JVal iterable, int depth0)
{
	JList	   *items;
	JList	   *kept;
	JLoop	   *L;
	JVal		loopv = {JV_LOOP, 0, {0}};
	int			any = 0;
	JFrame	   *body_frame = NULL;
	JVal	   *outer_loop;
	JName		loop_name = {"loop", 4};

	if (iterable.t == JV_DICT && 0)
		return JX_ERR;
	if (iter_items(r, n->line, &iterable, &items))
		return JX_ERR;
	/* the "if" of a for loop filters items before loop.* counts them */
	kept = items;
	if (n->b)
	{
		kept = list_new(r, 0);
		if (kept == NULL)
			return JX_ERR;
		for (size_t i = 0; i < items->n; i++)
		{
			JFrame	   *tf = frame_new(r, f);
			JVal		c;

			if (tf == NULL || bind_targets(r, n->line, tf, n->names, n->nnames, items->v[i]) ||
				eval(r, n->b, tf, &c))
				return JX_ERR;
			if (truthy(&c) && list_push(r, kept, items->v[i]))
				return JX_ERR;
		}
	}
	L = ralloc(r, sizeof(JLoop));
	if (L == NULL)
		return JX_ERR;
	L->items = kept;
	L->length = (int64_t) kept->n;
	L->depth0 = depth0;
	L->def = n->flag ? n : NULL;
	L->frame = f;
	loopv.u.loop = L;
	outer_loop = frame_get(f, loop_name);
	(void) outer_loop;
	for (size_t i = 0; i < kept->n; i++)
	{
		JExec		x;

		if (step(r, n->line))
			return JX_ERR;
		/* each iteration starts with an empty scope; reuse the last one unless captured */
		if (body_frame == NULL || body_frame->captured)
		{
			body_frame = frame_new(r, f);
			if (body_frame == NULL)
				return JX_ERR;
		}
		else
			body_frame->n = 0;
		L->index0 = (int64_t) i;
		if (frame_set(r, body_frame, loop_name, loopv) ||
			bind_targets(r, n->line, body_frame, n->names, n->nnames, kept->v[i]))
			return JX_ERR;
		any = 1;
		r->loop_depth++;
		x = exec_body(r, &n->body, body_frame);
		r->loop_depth--;
		if (x == JX_ERR)
			return JX_ERR;
		if (x == JX_BREAK)
			break;
	}
	if (!any && n->orelse.n)
		return exec_body(r, &n->orelse, f) == JX_ERR ? JX_ERR : JX_OK;
	return JX_OK;
}

static int
output(R *r, int line, JVal v)
{
	if (v.t == JV_STR)
		return sink_write_str(r, r->sink, v.u.s);
	if (v.t == JV_MACRO || v.t == JV_FUNC || v.t == JV_METHOD || v.t == JV_LOOP)
		return fail(r, line, SFT_ERR_UNSUPPORTED, "printing a %s is not supported", type_name(&v));
	return v_print(r, r->sink, &v, 0);
}

/*
 * {{ a + b + c ... }}, how chatml templates print a message: string
 * operands go to the output one after the other instead of being
 * concatenated into ever longer new strings first.  The result is the same
 * text with the same spans, and the order of evaluation and errors is that
 * of the nested additions: operands are evaluated left to right, and from
 * the first one that is not a string on, the additions are done by arith()
 * as eval() would.
 */
#define OUTPUT_SUM_MAX 16

static int
output_sum(R *r, JNode *out, JFrame *f)
{
	JNode	   *n = out->a;
	JNode	   *leaves[OUTPUT_SUM_MAX];
	JNode	   *adds[OUTPUT_SUM_MAX];	/* adds[i]: the addition whose right operand is leaves[i] */
	JVal		vals[OUTPUT_SUM_MAX];
	JNode	   *x = n;
	int			k = 0;
	int			nv = 0;
	JVal		acc;

	/* the left spine ((l0 + l1) + l2) + ...; a longer chain keeps its head nested */
	while (x->kind == JN_BINOP && x->op == JOP_ADD && k < OUTPUT_SUM_MAX - 1)
	{
		adds[k] = x;
		leaves[k++] = x->b;
		x = x->a;
	}
	adds[k] = NULL;
	leaves[k++] = x;
	for (int i = k - 1; i >= 0; i--)
	{
		JVal		v;

		if (eval(r, leaves[i], f, &v))
			return -1;
		if (v.t == JV_STR && nv == k - 1 - i)
		{
			vals[nv++] = v;
			continue;
		}
		/* not all strings: add up what came so far, then go on as eval() does */
		acc = vals[0];
		for (int j = 1; j < nv; j++)
			if (arith(r, adds[k - 1 - j]->line, JOP_ADD, acc, vals[j], &acc))
				return -1;
		if (nv == 0)
			acc = v;
		else if (arith(r, adds[i]->line, JOP_ADD, acc, v, &acc))
			return -1;
		for (int j = i - 1; j >= 0; j--)
		{
			if (eval(r, leaves[j], f, &v) || arith(r, adds[j]->line, JOP_ADD, acc, v, &acc))
				return -1;
		}
		return output(r, out->line, acc);
	}
	for (int j = 0; j < nv; j++)
		if (sink_write_str(r, r->sink, vals[j].u.s))
			return -1;
	return 0;
}

static JExec
exec_node(R *r, JNode *n, JFrame *f)
{
	JVal		v;

	if (step(r, n->line))
		return JX_ERR;
	switch (n->kind)
	{
		case JN_TEXT:
			return sink_write(r, r->sink, n->value.u.s->p, n->value.u.s->n) ? JX_ERR : JX_OK;
		case JN_OUTPUT:
			if (n->a->kind == JN_BINOP && n->a->op == JOP_ADD)
				return output_sum(r, n, f) ? JX_ERR : JX_OK;
			if (eval(r, n->a, f, &v) || output(r, n->line, v))
				return JX_ERR;
			return JX_OK;
		case JN_IF:
			if (eval(r, n->a, f, &v))
				return JX_ERR;
			return exec_body(r, truthy(&v) ? &n->body : &n->orelse, f);
		case JN_FOR:
			if (eval(r, n->a, f, &v))
				return JX_ERR;
			return exec_for(r, n, f, v, 0);
		case JN_SET:
			if (eval(r, n->a, f, &v) || bind_targets(r, n->line, f, n->names, n->nnames, v))
				return JX_ERR;
			return JX_OK;
		case JN_SET_ATTR:
			{
				JVal	   *ns = frame_get(f, n->name);
				JVal		key;

				if (ns == NULL || ns->t != JV_NS)
					return fail(r, n->line, SFT_ERR_INVALID, "cannot assign attribute on non-namespace object '%.*s'",
								(int) n->name.n, n->name.p), JX_ERR;
				if (eval(r, n->a, f, &v) || v_str(r, &key, n->names[0].p, n->names[0].n) ||
					dict_set(r, ns->u.d, key, v))
					return JX_ERR;
				return JX_OK;
			}
		case JN_SET_BLOCK:
		case JN_FILTER_BLOCK:
			{
				JSink		k = {0};
				JSink	   *saved = r->sink;
				JExec		x;
				JStr	   *s;

				r->sink = &k;
				x = exec_body(r, &n->body, f);
				r->sink = saved;
				if (x == JX_ERR || (s = sink_str(r, &k)) == NULL)
					return JX_ERR;
				v = v_strval(s);
				if (n->b)
				{
					JVal		saved_pipe = r->pipe;

					r->pipe = v;
					if (eval(r, n->b, f, &v))
						return JX_ERR;
					r->pipe = saved_pipe;
				}
				if (n->kind == JN_SET_BLOCK)
					return frame_set(r, f, n->names[0], v) ? JX_ERR : JX_OK;
				return output(r, n->line, v) ? JX_ERR : JX_OK;
			}
		case JN_MACRO:
			{
				JMacro	   *m = ralloc(r, sizeof(JMacro));

				if (m == NULL)
					return JX_ERR;
				m->def = n;
				m->closure = f;
				f->captured = 1;
				v.t = JV_MACRO;
				v.u.m = m;
				return frame_set(r, f, n->name, v) ? JX_ERR : JX_OK;
			}
		case JN_CALL_BLOCK:
			{
				JVal		callee;
				JArgs		a;
				JMacro	   *caller = ralloc(r, sizeof(JMacro));
				JMacro	   *with_caller = ralloc(r, sizeof(JMacro));

				if (caller == NULL || with_caller == NULL || eval(r, n->a->a, f, &callee) ||
					eval_args(r, n->a, f, &a))
					return JX_ERR;
				if (callee.t != JV_MACRO)
					return fail(r, n->line, SFT_ERR_INVALID, "a call block needs a macro, not %s",
								type_name(&callee)), JX_ERR;
				caller->def = n;
				caller->closure = f;
				f->captured = 1;
				*with_caller = *callee.u.m;
				with_caller->caller.t = JV_MACRO;
				with_caller->caller.u.m = caller;
				if (call_macro(r, n->line, with_caller, &a, &v) || output(r, n->line, v))
					return JX_ERR;
				return JX_OK;
			}
		case JN_BREAK:
		case JN_CONTINUE:
			if (r->loop_depth == 0)
				return fail(r, n->line, SFT_ERR_INVALID, "'%s' outside a for loop",
							n->kind == JN_BREAK ? "break" : "continue"), JX_ERR;
			return n->kind == JN_BREAK ? JX_BREAK : JX_CONTINUE;
		case JN_GENERATION:
			{
				size_t		start = r->sink->n;
				JExec		x = exec_body(r, &n->body, f);

				if (x == JX_ERR || sink_add_span(r, r->sink, start, r->sink->n - start, -1))
					return JX_ERR;
				return x;
			}
		default:
			return fail(r, n->line, SFT_ERR_INTERNAL, "expression executed as a statement"), JX_ERR;
	}
}

static JExec
exec_body(R *r, JNodeList *body, JFrame *f)
{
	for (int i = 0; i < body->n; i++)
	{
		JExec		x = exec_node(r, body->v[i], f);

		if (x != JX_OK)
			return x;
	}
	return JX_OK;
}

/* ---------------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------------- */

void
sft_jinja_default_limits(SftJinjaLimits *limits)
{
	limits->max_output = 32 * 1024 * 1024;
	limits->max_memory = 128 * 1024 * 1024;
	limits->max_steps = 50 * 1000 * 1000;
	limits->max_depth = 64;
}

void
sft_jinja_render_init(SftJinjaRender *r, const struct json_object *vars)
{
	memset(r, 0, sizeof(*r));
	r->vars = vars;
	sft_jinja_default_limits(&r->limits);
}

void
sft_jinja_spans_free(SftJinjaSpans *spans)
{
	sft_free(spans->data);
	spans->data = NULL;
	spans->len = spans->cap = 0;
}

static SftStatus
spans_push(SftJinjaSpans *s, size_t start, size_t len, int msg)
{
	if (s->len == s->cap)
	{
		size_t		cap = s->cap ? s->cap * 2 : 16;
		SftJinjaSpan *d = sft_realloc(s->data, cap * sizeof(SftJinjaSpan));

		if (d == NULL)
			return SFT_ERR_NOMEM;
		s->data = d;
		s->cap = cap;
	}
	s->data[s->len].start = start;
	s->data[s->len].len = len;
	s->data[s->len].message = msg;
	s->len++;
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Chat variables straight from a parsed conversation
 * ------------------------------------------------------------------------- */

static int
set_str_c(R *r, JFrame *f, const char *name, const char *value, size_t len)
{
	JVal		v;

	return v_str(r, &v, value, len) || frame_set_c(r, f, name, v);
}

/* bos_token, eos_token, tools and documents: what template_kwargs may override. */
static int
set_chat_specials(R *r, JFrame *f, const SftJinjaRender *opts)
{
	if (opts->bos_token && set_str_c(r, f, "bos_token", opts->bos_token, strlen(opts->bos_token)))
		return -1;
	if (opts->eos_token && set_str_c(r, f, "eos_token", opts->eos_token, strlen(opts->eos_token)))
		return -1;
	return frame_set_c(r, f, "tools", v_none()) || frame_set_c(r, f, "documents", v_none());
}

/* One {role, content} dict; the content carries its provenance (message msg). */
typedef struct ChatMessage
{
	JDict		d;
	JVal		k[2];
	JVal		v[2];
	JStr		s[4];			/* the keys, the role, the content */
	JSpan		sp;
} ChatMessage;

static int
chat_message(R *r, const char *role, const char *content, size_t len, int msg, JVal *out)
{
	/* one allocation for the dict, its keys, values and strings */
	ChatMessage *m = ralloc(r, sizeof(ChatMessage));

	if (m == NULL)
		return -1;
	m->s[0].p = "role";
	m->s[0].n = 4;
	m->s[1].p = role;
	m->s[1].n = strlen(role);
	m->s[2].p = "content";
	m->s[2].n = 7;
	m->s[3].p = content;
	m->s[3].n = len;
	if (len > 0)
	{
		m->sp.off = 0;
		m->sp.len = len;
		m->sp.msg = msg;
		m->s[3].sp = &m->sp;
		m->s[3].nsp = 1;
	}
	for (int i = 0; i < 2; i++)
	{
		m->k[i] = v_strval(&m->s[2 * i]);
		m->v[i] = v_strval(&m->s[2 * i + 1]);
	}
	m->d.k = m->k;
	m->d.v = m->v;
	m->d.n = m->d.cap = 2;
	*out = v_dict(&m->d);
	return 0;
}

/* messages and add_generation_prompt, after template_kwargs (which cannot set them). */
static int
set_chat_messages(R *r, JFrame *f, const SftJinjaRender *opts)
{
	int			first = opts->system ? 1 : 0;
	int			upto = opts->conv_upto;
	JList	   *l;

	if (upto < 0 || upto > opts->conv->n)
		return fail(r, 0, SFT_ERR_INTERNAL, "conv_upto %d outside the conversation", upto);
	l = list_new(r, (size_t) (upto + first));
	if (l == NULL)
		return -1;
	if (opts->system &&
		chat_message(r, "system", opts->system, opts->system_len, 0, &l->v[0]))
		return -1;
	for (int i = 0; i < upto; i++)
	{
		const SftMessage *m = &opts->conv->messages[i];

		if (chat_message(r, sft_role_name(m->role), m->content, m->len, i + first, &l->v[i + first]))
			return -1;
	}
	l->n = (size_t) (upto + first);
	return frame_set_c(r, f, "messages", v_list(l, 0)) ||
		frame_set_c(r, f, "add_generation_prompt", v_bool(opts->add_generation_prompt != 0));
}

/*
 * The global functions, the outermost frame of every render: built once
 * (templates never write to it: set and macro bind in the frames below).
 */
static JFrame *
global_frame(void)
{
	static JVar vars[] = {
		{{"range", 5}, {JV_FUNC, 0, {.i = JF_RANGE}}},
		{{"namespace", 9}, {JV_FUNC, 0, {.i = JF_NAMESPACE}}},
		{{"dict", 4}, {JV_FUNC, 0, {.i = JF_DICT}}},
		{{"raise_exception", 15}, {JV_FUNC, 0, {.i = JF_RAISE}}},
		{{"strftime_now", 12}, {JV_FUNC, 0, {.i = JF_STRFTIME}}},
	};
	static JFrame frame = {NULL, vars, (int) (sizeof(vars) / sizeof(vars[0])),
	(int) (sizeof(vars) / sizeof(vars[0])), 1};

	return &frame;
}

SftStatus
sft_jinja_render(const SftJinjaTemplate *tpl, SftJinjaRender *opts, SftBuf *out, SftError *err)
{
	R			r;
	JSink		top = {0};
	JFrame	   *globals;
	JFrame	   *frame;
	SftStatus	status = SFT_OK;

	memset(&r, 0, sizeof(r));
	jinja_work = 0;
	r.err = err;
	r.opts = opts;
	r.arena.limit = opts->limits.max_memory;
	r.sink = &top;
	opts->raised = 0;
	out->len = 0;
	if (out->data)
		out->data[0] = '\0';
	if (opts->content_spans)
		opts->content_spans->len = 0;
	if (opts->generation_spans)
		opts->generation_spans->len = 0;
	globals = global_frame();
	r.globals = globals;
	/* the caller's variables shadow the globals, as render(**kwargs) does */
	frame = frame_new(&r, globals);
	if (frame == NULL)
		goto done;
	if (opts->conv && set_chat_specials(&r, frame, opts))
		goto done;
	if (opts->vars)
	{
		if (!json_object_is_type((json_object *) opts->vars, json_type_object))
		{
			fail(&r, 0, SFT_ERR_INVALID, "template variables must be a JSON object");
			goto done;
		}
		json_object_object_foreach((json_object *) opts->vars, key, val)
		{
			JVal		v;
			JName		nm = {key, strlen(key)};

			if (strcmp(key, "messages") == 0 && json_object_is_type(val, json_type_array))
			{
				size_t		n = json_object_array_length(val);
				JList	   *l = list_new(&r, n);

				if (l == NULL)
					goto done;
				for (size_t i = 0; i < n; i++)
					if (from_json(&r, json_object_array_get_idx(val, i), &l->v[i], (int) i, 1))
						goto done;
				l->n = n;
				v = v_list(l, 0);
			}
			else if (from_json(&r, val, &v, -1, 0))
				goto done;
			if (frame_set(&r, frame, nm, v))
				goto done;
		}
	}
	if (opts->conv && set_chat_messages(&r, frame, opts))
		goto done;
	if (exec_body(&r, (JNodeList *) &tpl->body, frame) == JX_ERR)
		goto done;
	if (sft_buf_append(out, top.p ? top.p : "", top.n) != SFT_OK)
	{
		fail(&r, 0, SFT_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (int i = 0; i < top.nsp; i++)
	{
		SftJinjaSpans *dst = top.sp[i].msg >= 0 ? opts->content_spans : opts->generation_spans;

		if (dst && spans_push(dst, top.sp[i].off, top.sp[i].len, top.sp[i].msg) != SFT_OK)
		{
			fail(&r, 0, SFT_ERR_NOMEM, "out of memory");
			goto done;
		}
	}
done:
	if (r.failed)
		status = err ? err->status : SFT_ERR_INVALID;
	else if (r.arena.failed)
	{
		oom(&r);
		status = err ? err->status : SFT_ERR_NOMEM;
	}
	if (status != SFT_OK)
		out->len = 0;
	jarena_free(&r.arena);
	return status;
}
