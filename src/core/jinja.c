/*
 * jinja.c: the Jinja lexer and parser (the evaluator is jinja_eval.c).
 *
 * The lexer follows Jinja2's with trim_blocks and lstrip_blocks on, as
 * transformers configures it:
 *   - a single newline at the very end of the source is dropped
 *     (keep_trailing_newline is off) and "\r\n" / "\r" in text become "\n";
 *   - "{%-" / "{{-" / "{#-" strip all whitespace before the tag, "-%}" /
 *     "-}}" / "-#}" all whitespace after it;
 *   - lstrip_blocks: spaces and tabs between the start of a line and a block
 *     or comment tag are dropped (not before "{{", not with "{%+");
 *   - trim_blocks: the first newline after a block or comment tag is dropped.
 * The parser builds the tree of jinja_internal.h with Jinja2's operator
 * precedence: inline if < or < and < not < comparisons (in, not in) < ~ <
 * + - < * / // % < ** < unary - + < filters | tests is < postfix . [] ().
 * Nesting is bounded so that a hostile template cannot exhaust the stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"
#include "unicode.h"

#define JINJA_MAX_NESTING 200	/* parser recursion (expressions and blocks) */

/* ---------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------- */

void *
jarena_alloc(JArena *a, size_t size)
{
	void	   *p = jarena_alloc_raw(a, size);

	if (p)
		memset(p, 0, size);
	return p;
}

#define JARENA_CHUNK 65536		/* bytes of a standard chunk, header included */

/*
 * One standard chunk kept from the last arena freed: a render starts in it
 * instead of asking malloc for 64 kB (and giving it back) every time, which
 * dominated short renders.  Rendering runs in one thread per process (a
 * backend), like the step counter of the evaluator.
 */
static JArenaChunk *jarena_spare = NULL;

void *
jarena_alloc_raw(JArena *a, size_t size)
{
	JArenaChunk *c = a->head;
	void	   *p;

	size = (size + 15) & ~(size_t) 15;
	if (size == 0)
		size = 16;
	if (c == NULL || c->cap - c->used < size)
	{
		size_t		cap = size > JARENA_CHUNK - sizeof(JArenaChunk) ? size : JARENA_CHUNK - sizeof(JArenaChunk);

		if (a->limit && a->total + cap > a->limit)
		{
			a->failed = 2;
			return NULL;
		}
		if (jarena_spare && cap == jarena_spare->cap)
		{
			c = jarena_spare;
			jarena_spare = NULL;
		}
		else
			c = sft_alloc(sizeof(JArenaChunk) + cap);
		if (c == NULL)
		{
			a->failed = 1;
			return NULL;
		}
		c->next = a->head;
		c->used = 0;
		c->cap = cap;
		a->head = c;
		a->total += cap;
	}
	p = c->data + c->used;
	c->used += size;
	return p;
}

void
jarena_free(JArena *a)
{
	JArenaChunk *c = a->head;

	while (c)
	{
		JArenaChunk *next = c->next;

		if (jarena_spare == NULL && c->cap == JARENA_CHUNK - sizeof(JArenaChunk))
			jarena_spare = c;
		else
			sft_free(c);
		c = next;
	}
	a->head = NULL;
	a->total = 0;
}

int
jinja_name_eq(JName n, const char *s)
{
	size_t		len = strlen(s);

	return n.n == len && memcmp(n.p, s, len) == 0;
}

/* ---------------------------------------------------------------------------
 * Lexer
 * ------------------------------------------------------------------------- */

typedef enum JTokKind
{
	JT_TEXT,
	JT_VAR_BEGIN,
	JT_VAR_END,
	JT_BLOCK_BEGIN,
	JT_BLOCK_END,
	JT_NAME,
	JT_STRING,
	JT_INT,
	JT_FLOAT,
	JT_OP,
	JT_EOF
} JTokKind;

typedef struct JTok
{
	JTokKind	kind;
	int			line;
	const char *p;				/* source text (names, operators) or decoded text */
	size_t		n;
	int64_t		ival;
	double		fval;
} JTok;

typedef struct JParser
{
	JArena	   *arena;
	SftError   *err;
	const char *src;
	size_t		len;
	JTok	   *toks;
	size_t		ntok;
	size_t		captok;
	size_t		pos;
	int			depth;
	int			has_generation;
	int			failed;
} JParser;

static int
parse_fail(JParser *ps, int line, SftStatus status, const char *fmt,...)
	__attribute__((format(printf, 4, 5)));

static int
parse_fail(JParser *ps, int line, SftStatus status, const char *fmt,...)
{
	char		msg[SFT_ERROR_MESSAGE_SIZE];
	va_list		ap;

	if (ps->failed)
		return -1;
	ps->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sft_error(ps->err, status, "chat template line %d: %s", line, msg);
	return -1;
}

static int
nomem(JParser *ps)
{
	return parse_fail(ps, 0, ps->arena->failed == 2 ? SFT_ERR_LIMIT : SFT_ERR_NOMEM,
					  "out of memory while parsing");
}

static int
push_tok(JParser *ps, JTokKind kind, int line, const char *p, size_t n)
{
	if (ps->ntok == ps->captok)
	{
		size_t		cap = ps->captok ? ps->captok * 2 : 256;
		JTok	   *t = sft_realloc(ps->toks, cap * sizeof(JTok));

		if (t == NULL)
			return parse_fail(ps, line, SFT_ERR_NOMEM, "out of memory while lexing");
		ps->toks = t;
		ps->captok = cap;
	}
	memset(&ps->toks[ps->ntok], 0, sizeof(JTok));
	ps->toks[ps->ntok].kind = kind;
	ps->toks[ps->ntok].line = line;
	ps->toks[ps->ntok].p = p;
	ps->toks[ps->ntok].n = n;
	ps->ntok++;
	return 0;
}

/* Python's str.isspace() for one code point (Unicode White_Space plus 0x1C-0x1F). */
static int
py_isspace(uint32_t cp)
{
	return (cp >= 0x1C && cp <= 0x1F) || sft_unicode_is_space(cp);
}

/* Byte length of the whitespace run at s[0..n) (Python's \s). */
static size_t
space_run(const char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		size_t		k;
		uint32_t	cp;

		if (sft_utf8_len((unsigned char) s[i]) > n - i)
			break;
		cp = sft_utf8_decode((const unsigned char *) s + i, &k);
		if (!py_isspace(cp))
			break;
		i += k;
	}
	return i;
}

/* Length of s[0..n) without its trailing whitespace (Python's rstrip()). */
static size_t
rstrip_len(const char *s, size_t n)
{
	size_t		end = n;

	while (end > 0)
	{
		size_t		start = end - 1;
		size_t		k;

		while (start > 0 && ((unsigned char) s[start] & 0xC0) == 0x80 && end - start < 4)
			start--;
		if (sft_utf8_len((unsigned char) s[start]) != end - start)
			break;
		if (!py_isspace(sft_utf8_decode((const unsigned char *) s + start, &k)))
			break;
		end = start;
	}
	return end;
}

/* Text with "\r\n" and "\r" turned into "\n", copied into the arena. */
static int
push_text(JParser *ps, int line, const char *p, size_t n)
{
	char	   *out;
	size_t		o = 0;

	if (n == 0)
		return 0;
	if (memchr(p, '\r', n) == NULL)
		return push_tok(ps, JT_TEXT, line, p, n);
	out = jarena_alloc(ps->arena, n);
	if (out == NULL)
		return nomem(ps);
	for (size_t i = 0; i < n; i++)
	{
		if (p[i] == '\r')
		{
			out[o++] = '\n';
			if (i + 1 < n && p[i + 1] == '\n')
				i++;
		}
		else
			out[o++] = p[i];
	}
	return push_tok(ps, JT_TEXT, line, out, o);
}

static int
count_lines(const char *p, size_t n)
{
	int			lines = 0;

	for (size_t i = 0; i < n; i++)
		if (p[i] == '\n')
			lines++;
	return lines;
}

/* A string literal at s (quote included); decoded into the token. */
static int
lex_string(JParser *ps, size_t *pos, int *line)
{
	const char *s = ps->src;
	char		q = s[*pos];
	size_t		i = *pos + 1;
	char	   *out;
	size_t		o = 0;
	int			start_line = *line;

	for (size_t j = i;; j++)
	{
		if (j >= ps->len)
			return parse_fail(ps, start_line, SFT_ERR_INVALID, "unterminated string literal");
		if (s[j] == '\\')
		{
			j++;
			continue;
		}
		if (s[j] == q)
			break;
	}
	out = jarena_alloc(ps->arena, ps->len - i + 1);
	if (out == NULL)
		return nomem(ps);
	while (s[i] != q)
	{
		char		c = s[i];

		if (c == '\n')
			(*line)++;
		if (c == '\r')
		{
			out[o++] = '\n';
			if (s[i + 1] == '\n')
				i++;
			i++;
			continue;
		}
		if (c != '\\')
		{
			out[o++] = c;
			i++;
			continue;
		}
		c = s[++i];
		i++;
		switch (c)
		{
			case 'n':
				out[o++] = '\n';
				break;
			case 't':
				out[o++] = '\t';
				break;
			case 'r':
				out[o++] = '\r';
				break;
			case '\\':
			case '\'':
			case '"':
				out[o++] = c;
				break;
			case '\n':
				(*line)++;
				break;			/* a line continuation */
			case 'a':
				out[o++] = '\a';
				break;
			case 'b':
				out[o++] = '\b';
				break;
			case 'f':
				out[o++] = '\f';
				break;
			case 'v':
				out[o++] = '\v';
				break;
			case '0':
				out[o++] = '\0';
				break;
			case 'x':
			case 'u':
			case 'U':
				{
					int			digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
					uint32_t	cp = 0;

					for (int d = 0; d < digits; d++, i++)
					{
						char		h = s[i];

						if (h >= '0' && h <= '9')
							cp = cp * 16 + (h - '0');
						else if (h >= 'a' && h <= 'f')
							cp = cp * 16 + (h - 'a' + 10);
						else if (h >= 'A' && h <= 'F')
							cp = cp * 16 + (h - 'A' + 10);
						else
							return parse_fail(ps, *line, SFT_ERR_INVALID,
											  "truncated \\%c escape in a string literal", c);
					}
					if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
						return parse_fail(ps, *line, SFT_ERR_INVALID,
										  "escape \\%c in a string literal is not a valid code point", c);
					o += sft_utf8_encode(cp, out + o);
					break;
				}
			default:
				/* Python keeps unknown escapes as written */
				out[o++] = '\\';
				i--;
				break;
		}
	}
	*pos = i + 1;
	if (push_tok(ps, JT_STRING, start_line, out, o))
		return -1;
	return 0;
}

static int
is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Tokens inside {{ }} or {% %} from *pos up to and including the end tag. */
static int
lex_tag(JParser *ps, size_t *pos, int *line, int block, int *trim_after)
{
	const char *s = ps->src;
	size_t		n = ps->len;
	size_t		i = *pos;
	int			balance = 0;

	for (;;)
	{
		size_t		ws = 0;

		while (i + ws < n && (s[i + ws] == ' ' || s[i + ws] == '\t' || s[i + ws] == '\n' ||
							  s[i + ws] == '\r' || s[i + ws] == '\f' || s[i + ws] == '\v'))
		{
			if (s[i + ws] == '\n')
				(*line)++;
			ws++;
		}
		i += ws;
		if (i >= n)
			return parse_fail(ps, *line, SFT_ERR_INVALID, "unexpected end of template: %s not closed",
							  block ? "{%" : "{{");
		/* the end tag, with its optional whitespace-control sign */
		{
			char		close = block ? '%' : '}';
			int			sign = (s[i] == '-' || s[i] == '+') && i + 2 < n + 0 && s[i + 1] == close && s[i + 2] == '}';

			if (balance == 0 && (sign || (s[i] == close && i + 1 < n && s[i + 1] == '}')))
			{
				*trim_after = sign && s[i] == '-' ? 2 : (block && !(sign && s[i] == '+')) ? 1 : 0;
				if (push_tok(ps, block ? JT_BLOCK_END : JT_VAR_END, *line, s + i, 0))
					return -1;
				*pos = i + (sign ? 3 : 2);
				return 0;
			}
		}
		if (s[i] == '\'' || s[i] == '"')
		{
			if (lex_string(ps, &i, line))
				return -1;
			continue;
		}
		if (is_name_start(s[i]))
		{
			size_t		j = i;

			while (j < n && (is_name_start(s[j]) || is_digit(s[j])))
				j++;
			if (push_tok(ps, JT_NAME, *line, s + i, j - i))
				return -1;
			i = j;
			continue;
		}
		if (is_digit(s[i]))
		{
			size_t		j = i;
			int			is_float = 0;
			char		buf[128];
			size_t		b = 0;

			while (j < n && (is_digit(s[j]) || s[j] == '_'))
				j++;
			if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1]))
			{
				is_float = 1;
				j++;
				while (j < n && (is_digit(s[j]) || s[j] == '_'))
					j++;
			}
			if (j < n && (s[j] == 'e' || s[j] == 'E') &&
				((j + 1 < n && is_digit(s[j + 1])) ||
				 (j + 2 < n && (s[j + 1] == '+' || s[j + 1] == '-') && is_digit(s[j + 2]))))
			{
				is_float = 1;
				j += 2;
				while (j < n && is_digit(s[j]))
					j++;
			}
			for (size_t k = i; k < j && b < sizeof(buf) - 1; k++)
				if (s[k] != '_')
					buf[b++] = s[k];
			buf[b] = '\0';
			if (j - i >= sizeof(buf) - 1)
				return parse_fail(ps, *line, SFT_ERR_LIMIT, "number literal too long");
			if (push_tok(ps, is_float ? JT_FLOAT : JT_INT, *line, s + i, j - i))
				return -1;
			if (is_float)
				ps->toks[ps->ntok - 1].fval = strtod(buf, NULL);
			else
			{
				char	   *end;
				unsigned long long v;

				v = strtoull(buf, &end, 10);
				if (b > 18 && (v > INT64_MAX || b > 19))
					return parse_fail(ps, *line, SFT_ERR_UNSUPPORTED,
									  "integer literal %s does not fit in 64 bits", buf);
				ps->toks[ps->ntok - 1].ival = (int64_t) v;
			}
			i = j;
			continue;
		}
		{
			static const char *const ops2[] = {"**", "//", "==", "!=", "<=", ">=", NULL};
			static const char ops1[] = "+-*/%~<>=()[]{},.:|";
			size_t		len = 0;

			for (int k = 0; ops2[k]; k++)
				if (i + 1 < n && s[i] == ops2[k][0] && s[i + 1] == ops2[k][1])
					len = 2;
			if (len == 0 && strchr(ops1, s[i]) != NULL && s[i] != '\0')
				len = 1;
			if (len == 0)
				return parse_fail(ps, *line, SFT_ERR_INVALID, "unexpected character '%c'", s[i]);
			if (len == 1 && (s[i] == '(' || s[i] == '[' || s[i] == '{'))
				balance++;
			if (len == 1 && (s[i] == ')' || s[i] == ']' || s[i] == '}') && balance > 0)
				balance--;
			if (push_tok(ps, JT_OP, *line, s + i, len))
				return -1;
			i += len;
		}
	}
}

/* Position of the next "{{", "{%" or "{#" at or after from, or len. */
static size_t
next_tag(const char *s, size_t len, size_t from)
{
	for (size_t i = from; i + 1 < len; i++)
		if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#'))
			return i;
	return len;
}

static int
lex(JParser *ps)
{
	const char *s = ps->src;
	size_t		n = ps->len;
	size_t		pos = 0;
	int			line = 1;
	int			trim_after = 0; /* 1: trim_blocks newline, 2: all whitespace */

	/* keep_trailing_newline=False drops one final newline */
	if (n > 0 && s[n - 1] == '\n')
		n--;
	if (n > 0 && s[n - 1] == '\r')
		n--;
	ps->len = n;
	while (pos < n)
	{
		size_t		tag = next_tag(s, n, pos);
		size_t		text_start = pos;
		size_t		text_end = tag;
		char		kind;
		char		sign;

		if (trim_after == 2)
			text_start += space_run(s + text_start, text_end - text_start);
		else if (trim_after == 1 && text_start < text_end)
		{
			if (s[text_start] == '\n')
				text_start++;
			else if (s[text_start] == '\r')
				text_start += (text_start + 1 < text_end && s[text_start + 1] == '\n') ? 2 : 1;
		}
		trim_after = 0;
		if (tag >= n)
		{
			if (push_text(ps, line, s + text_start, text_end - text_start))
				return -1;
			line += count_lines(s + pos, n - pos);
			break;
		}
		kind = s[tag + 1];
		sign = tag + 2 < n ? s[tag + 2] : 0;
		if (sign == '-')
			text_end = text_start + rstrip_len(s + text_start, text_end - text_start);
		else if (sign != '+' && kind != '{')
		{
			/* lstrip_blocks: blanks between the line start and the tag */
			size_t		l = text_end;

			while (l > text_start && s[l - 1] != '\n' && s[l - 1] != '\r')
				l--;
			if ((l > text_start || text_start == 0 || s[text_start - 1] == '\n' ||
				 s[text_start - 1] == '\r') && l < text_end &&
				space_run(s + l, text_end - l) == text_end - l)
				text_end = l;
		}
		if (push_text(ps, line, s + text_start, text_end - text_start))
			return -1;
		line += count_lines(s + pos, tag - pos);
		pos = tag + 2 + (sign == '-' || sign == '+');
		if (kind == '#')
		{
			size_t		end = pos;

			while (end + 1 < n && !(s[end] == '#' && s[end + 1] == '}'))
				end++;
			if (end + 1 >= n)
				return parse_fail(ps, line, SFT_ERR_INVALID, "unterminated comment");
			trim_after = (end > pos && s[end - 1] == '-') ? 2 : 1;
			line += count_lines(s + pos, end - pos);
			pos = end + 2;
			continue;
		}
		if (kind == '%')
		{
			/* {% raw %}...{% endraw %}: the text in between is kept as written */
			size_t		k = pos;

			while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n'))
				k++;
			if (n - k >= 3 && memcmp(s + k, "raw", 3) == 0 && !(k + 3 < n && (is_name_start(s[k + 3]) || is_digit(s[k + 3]))))
				return parse_fail(ps, line, SFT_ERR_UNSUPPORTED, "the raw block is not supported");
		}
		if (push_tok(ps, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, line, s + tag, 0))
			return -1;
		if (lex_tag(ps, &pos, &line, kind == '%', &trim_after))
			return -1;
	}
	return push_tok(ps, JT_EOF, line, s + n, 0);
}

/* ---------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------- */

static JTok *
peek(JParser *ps)
{
	return &ps->toks[ps->pos];
}

static JTok *
peek_at(JParser *ps, size_t k)
{
	size_t		i = ps->pos + k;

	return &ps->toks[i < ps->ntok ? i : ps->ntok - 1];
}

static JTok *
advance(JParser *ps)
{
	JTok	   *t = &ps->toks[ps->pos];

	if (t->kind != JT_EOF)
		ps->pos++;
	return t;
}

static int
tok_is(const JTok *t, JTokKind kind, const char *text)
{
	if (t->kind != kind)
		return 0;
	if (text == NULL)
		return 1;
	return t->n == strlen(text) && memcmp(t->p, text, t->n) == 0;
}

static int
is_op(JParser *ps, const char *op)
{
	return tok_is(peek(ps), JT_OP, op);
}

static int
is_name(JParser *ps, const char *name)
{
	return tok_is(peek(ps), JT_NAME, name);
}

static const char *
tok_desc(const JTok *t, char *buf, size_t size)
{
	switch (t->kind)
	{
		case JT_EOF:
			return "end of template";
		case JT_BLOCK_END:
			return "end of statement block";
		case JT_VAR_END:
			return "end of print statement";
		case JT_TEXT:
			return "template text";
		case JT_STRING:
			return "string literal";
		case JT_INT:
		case JT_FLOAT:
			return "number";
		default:
			snprintf(buf, size, "'%.*s'", (int) (t->n > 40 ? 40 : t->n), t->p);
			return buf;
	}
}

static int
expect_op(JParser *ps, const char *op)
{
	char		buf[64];

	if (is_op(ps, op))
	{
		advance(ps);
		return 0;
	}
	return parse_fail(ps, peek(ps)->line, SFT_ERR_INVALID, "expected '%s', got %s", op,
					  tok_desc(peek(ps), buf, sizeof(buf)));
}

static int
expect_block_end(JParser *ps, const char *what)
{
	char		buf[64];

	if (peek(ps)->kind == JT_BLOCK_END)
	{
		advance(ps);
		return 0;
	}
	return parse_fail(ps, peek(ps)->line, SFT_ERR_INVALID, "expected end of '%s' statement, got %s",
					  what, tok_desc(peek(ps), buf, sizeof(buf)));
}

static JNode *
new_node(JParser *ps, JNodeKind kind, int line)
{
	JNode	   *n = jarena_alloc(ps->arena, sizeof(JNode));

	if (n == NULL)
	{
		nomem(ps);
		return NULL;
	}
	n->kind = kind;
	n->line = line;
	return n;
}

/* Growable node lists in the arena (old arrays are left behind: bounded waste). */
typedef struct NodeVec
{
	JNode	  **v;
	int			n;
	int			cap;
} NodeVec;

static int
vec_push(JParser *ps, NodeVec *vec, JNode *node)
{
	if (vec->n == vec->cap)
	{
		int			cap = vec->cap ? vec->cap * 2 : 4;
		JNode	  **v = jarena_alloc(ps->arena, cap * sizeof(JNode *));

		if (v == NULL)
			return nomem(ps);
		if (vec->n)
			memcpy(v, vec->v, vec->n * sizeof(JNode *));
		vec->v = v;
		vec->cap = cap;
	}
	vec->v[vec->n++] = node;
	return 0;
}

static JNodeList
vec_list(NodeVec *vec)
{
	JNodeList	l = {vec->v, vec->n};

	return l;
}

typedef struct NameVec
{
	JName	   *v;
	int			n;
	int			cap;
} NameVec;

static int
name_push(JParser *ps, NameVec *vec, JName name)
{
	if (vec->n == vec->cap)
	{
		int			cap = vec->cap ? vec->cap * 2 : 4;
		JName	   *v = jarena_alloc(ps->arena, cap * sizeof(JName));

		if (v == NULL)
			return nomem(ps);
		if (vec->n)
			memcpy(v, vec->v, vec->n * sizeof(JName));
		vec->v = v;
		vec->cap = cap;
	}
	vec->v[vec->n++] = name;
	return 0;
}

static JName
tok_name(const JTok *t)
{
	JName		n = {t->p, t->n};

	return n;
}

static int
expect_name(JParser *ps, JName *out, const char *what)
{
	char		buf[64];

	out->p = NULL;
	out->n = 0;
	if (peek(ps)->kind != JT_NAME)
		return parse_fail(ps, peek(ps)->line, SFT_ERR_INVALID, "expected %s, got %s", what,
						  tok_desc(peek(ps), buf, sizeof(buf)));
	*out = tok_name(advance(ps));
	return 0;
}

static JNode *parse_expr(JParser *ps);
static JNode *parse_or(JParser *ps);
static JNode *parse_unary(JParser *ps, int with_filter);
static JNode *parse_primary(JParser *ps);
static JNode *parse_postfix(JParser *ps, JNode *node);
static JNode *parse_filter_expr(JParser *ps, JNode *node);

static int
enter(JParser *ps)
{
	if (++ps->depth > JINJA_MAX_NESTING)
		return parse_fail(ps, peek(ps)->line, SFT_ERR_LIMIT, "template nesting deeper than %d",
						  JINJA_MAX_NESTING);
	return 0;
}

/* (args, name=value, ...) after the opening parenthesis was consumed. */
static int
parse_call_args(JParser *ps, JNode *call)
{
	NodeVec		args = {0};
	NameVec		names = {0};

	while (!is_op(ps, ")"))
	{
		JNode	   *arg;

		if (args.n > 0 && expect_op(ps, ","))
			return -1;
		if (is_op(ps, ")"))
			break;
		if (is_op(ps, "*") || is_op(ps, "**"))
			return parse_fail(ps, peek(ps)->line, SFT_ERR_UNSUPPORTED,
							  "*args and **kwargs in calls are not supported");
		if (peek(ps)->kind == JT_NAME && tok_is(peek_at(ps, 1), JT_OP, "="))
		{
			JName		nm = tok_name(advance(ps));

			advance(ps);
			arg = parse_expr(ps);
			if (arg == NULL || name_push(ps, &names, nm) || vec_push(ps, &args, arg))
				return -1;
			continue;
		}
		if (names.n > 0)
			return parse_fail(ps, peek(ps)->line, SFT_ERR_INVALID,
							  "positional argument follows keyword argument");
		arg = parse_expr(ps);
		if (arg == NULL || vec_push(ps, &args, arg))
			return -1;
	}
	advance(ps);
	call->args = vec_list(&args);
	call->nkw = names.n;
	call->names = names.v;
	call->nnames = names.n;
	return 0;
}

static JNode *
parse_tuple_or_expr(JParser *ps, int allow_empty_paren)
{
	/* after '(' : (), (x), (x,), (x, y) */
	NodeVec		items = {0};
	int			line = peek(ps)->line;
	int			trailing_comma = 0;

	while (!is_op(ps, ")"))
	{
		JNode	   *e = parse_expr(ps);

		if (e == NULL || vec_push(ps, &items, e))
			return NULL;
		trailing_comma = 0;
		if (!is_op(ps, ","))
			break;
		advance(ps);
		trailing_comma = 1;
	}
	if (expect_op(ps, ")"))
		return NULL;
	if (items.n == 1 && !trailing_comma)
		return items.v[0];
	{
		JNode	   *t = new_node(ps, JN_TUPLE, line);

		if (t)
			t->args = vec_list(&items);
		(void) allow_empty_paren;
		return t;
	}
}

static JNode *
parse_primary(JParser *ps)
{
	JTok	   *t = peek(ps);
	JNode	   *node;
	char		buf[64];

	if (enter(ps))
		return NULL;
	switch (t->kind)
	{
		case JT_NAME:
			advance(ps);
			if (tok_is(t, JT_NAME, "true") || tok_is(t, JT_NAME, "True") ||
				tok_is(t, JT_NAME, "false") || tok_is(t, JT_NAME, "False"))
			{
				node = new_node(ps, JN_CONST, t->line);
				if (node)
				{
					node->value.t = JV_BOOL;
					node->value.u.i = t->p[0] == 't' || t->p[0] == 'T';
				}
			}
			else if (tok_is(t, JT_NAME, "none") || tok_is(t, JT_NAME, "None"))
			{
				node = new_node(ps, JN_CONST, t->line);
				if (node)
					node->value.t = JV_NONE;
			}
			else
			{
				node = new_node(ps, JN_NAME, t->line);
				if (node)
					node->name = tok_name(t);
			}
			break;
		case JT_STRING:
			{
				JStr	   *s;

				advance(ps);
				node = new_node(ps, JN_CONST, t->line);
				s = jarena_alloc(ps->arena, sizeof(JStr));
				if (node == NULL || s == NULL)
				{
					nomem(ps);
					return NULL;
				}
				s->p = t->p;
				s->n = t->n;
				/* adjacent string literals concatenate, as in Python */
				while (peek(ps)->kind == JT_STRING)
				{
					JTok	   *u = advance(ps);
					char	   *cat = jarena_alloc(ps->arena, s->n + u->n + 1);

					if (cat == NULL)
					{
						nomem(ps);
						return NULL;
					}
					memcpy(cat, s->p, s->n);
					memcpy(cat + s->n, u->p, u->n);
					s->p = cat;
					s->n += u->n;
				}
				node->value.t = JV_STR;
				node->value.u.s = s;
				break;
			}
		case JT_INT:
		case JT_FLOAT:
			advance(ps);
			node = new_node(ps, JN_CONST, t->line);
			if (node && t->kind == JT_INT)
			{
				node->value.t = JV_INT;
				node->value.u.i = t->ival;
			}
			else if (node)
			{
				node->value.t = JV_FLOAT;
				node->value.u.f = t->fval;
			}
			break;
		case JT_OP:
			if (tok_is(t, JT_OP, "("))
			{
				advance(ps);
				node = parse_tuple_or_expr(ps, 1);
				break;
			}
			if (tok_is(t, JT_OP, "["))
			{
				NodeVec		items = {0};

				advance(ps);
				node = new_node(ps, JN_LIST, t->line);
				if (node == NULL)
					return NULL;
				while (!is_op(ps, "]"))
				{
					JNode	   *e;

					if (items.n > 0 && expect_op(ps, ","))
						return NULL;
					if (is_op(ps, "]"))
						break;
					e = parse_expr(ps);
					if (e == NULL || vec_push(ps, &items, e))
						return NULL;
				}
				advance(ps);
				node->args = vec_list(&items);
				break;
			}
			if (tok_is(t, JT_OP, "{"))
			{
				NodeVec		items = {0};

				advance(ps);
				node = new_node(ps, JN_DICT, t->line);
				if (node == NULL)
					return NULL;
				while (!is_op(ps, "}"))
				{
					JNode	   *k,
							   *v;

					if (items.n > 0 && expect_op(ps, ","))
						return NULL;
					if (is_op(ps, "}"))
						break;
					k = parse_expr(ps);
					if (k == NULL || expect_op(ps, ":"))
						return NULL;
					v = parse_expr(ps);
					if (v == NULL || vec_push(ps, &items, k) || vec_push(ps, &items, v))
						return NULL;
				}
				advance(ps);
				node->args = vec_list(&items);
				break;
			}
			/* fall through */
		default:
			parse_fail(ps, t->line, SFT_ERR_INVALID, "unexpected %s in an expression",
					   tok_desc(t, buf, sizeof(buf)));
			return NULL;
	}
	ps->depth--;
	return node;
}

/* x.name, x[key], x[a:b:c], x(args) */
static JNode *
parse_postfix(JParser *ps, JNode *node)
{
	while (node)
	{
		JTok	   *t = peek(ps);

		if (tok_is(t, JT_OP, "."))
		{
			JNode	   *g;

			advance(ps);
			if (peek(ps)->kind == JT_INT)
			{
				/* x.0 is x[0] */
				JTok	   *it = advance(ps);
				JNode	   *k = new_node(ps, JN_CONST, it->line);

				g = new_node(ps, JN_GETITEM, t->line);
				if (g == NULL || k == NULL)
					return NULL;
				k->value.t = JV_INT;
				k->value.u.i = it->ival;
				g->a = node;
				g->b = k;
				node = g;
				continue;
			}
			g = new_node(ps, JN_GETATTR, t->line);
			if (g == NULL || expect_name(ps, &g->name, "an attribute name after '.'"))
				return NULL;
			g->a = node;
			node = g;
		}
		else if (tok_is(t, JT_OP, "["))
		{
			JNode	   *parts[3] = {NULL, NULL, NULL};
			int			colons = 0;

			advance(ps);
			if (enter(ps))
				return NULL;
			for (;;)
			{
				if (is_op(ps, ":"))
				{
					if (++colons > 2)
						return parse_fail(ps, t->line, SFT_ERR_INVALID, "too many ':' in a slice"), NULL;
					advance(ps);
					continue;
				}
				if (is_op(ps, "]"))
					break;
				if (parts[colons] != NULL)
				{
					parse_fail(ps, t->line, SFT_ERR_INVALID, "expected ']' or ':' in a subscript");
					return NULL;
				}
				parts[colons] = parse_expr(ps);
				if (parts[colons] == NULL)
					return NULL;
				if (colons == 0 && is_op(ps, ","))
				{
					parse_fail(ps, t->line, SFT_ERR_UNSUPPORTED, "tuple subscripts are not supported");
					return NULL;
				}
			}
			advance(ps);
			ps->depth--;
			if (colons == 0)
			{
				JNode	   *g = new_node(ps, JN_GETITEM, t->line);

				if (g == NULL)
					return NULL;
				if (parts[0] == NULL)
					return parse_fail(ps, t->line, SFT_ERR_INVALID, "empty subscript"), NULL;
				g->a = node;
				g->b = parts[0];
				node = g;
			}
			else
			{
				JNode	   *g = new_node(ps, JN_SLICE, t->line);
				JNode	  **v = jarena_alloc(ps->arena, 3 * sizeof(JNode *));

				if (g == NULL || v == NULL)
					return nomem(ps), NULL;
				memcpy(v, parts, sizeof(parts));
				g->a = node;
				g->args.v = v;
				g->args.n = 3;
				node = g;
			}
		}
		else if (tok_is(t, JT_OP, "("))
		{
			JNode	   *c = new_node(ps, JN_CALL, t->line);

			advance(ps);
			if (c == NULL || enter(ps) || parse_call_args(ps, c))
				return NULL;
			ps->depth--;
			c->a = node;
			node = c;
		}
		else
			break;
	}
	return node;
}

/*
 * Filters and tests are resolved when the template is parsed, as Jinja2
 * compiles them: an unknown name refuses the template even in a branch that
 * never runs; a Jinja2 builtin we do not implement is named as such.
 */
static const char *const FILTERS[] = {
	"abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "indent", "int",
	"items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
	"rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
	"string", "sum", "title", "tojson", "trim", "unique", "upper", "wordcount", NULL
};
static const char *const FILTERS_UNSUPPORTED[] = {
	"attr", "batch", "center", "e", "escape", "filesizeformat", "forceescape", "format",
	"groupby", "pprint", "random", "slice", "striptags", "truncate", "urlencode", "urlize",
	"wordwrap", "xmlattr", NULL
};
static const char *const TESTS[] = {
	"boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float",
	"ge", "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt",
	"mapping", "ne", "none", "number", "odd", "sameas", "sequence", "string", "true",
	"undefined", "upper", NULL
};
static const char *const TESTS_UNSUPPORTED[] = {"escaped", "filter", "test", NULL};

static int
check_known(JParser *ps, int line, JName name, const char *const *known,
			const char *const *unsupported, const char *what)
{
	for (int i = 0; known[i]; i++)
		if (jinja_name_eq(name, known[i]))
			return 0;
	for (int i = 0; unsupported[i]; i++)
		if (jinja_name_eq(name, unsupported[i]))
			return parse_fail(ps, line, SFT_ERR_UNSUPPORTED, "the '%s' %s is not supported",
							  unsupported[i], what);
	return parse_fail(ps, line, SFT_ERR_INVALID, "no %s named '%.*s'", what,
					  (int) (name.n > 40 ? 40 : name.n), name.p);
}

/* x | filter(args) ..., x is [not] test [arg] */
static JNode *
parse_filter_expr(JParser *ps, JNode *node)
{
	while (node)
	{
		JTok	   *t = peek(ps);

		if (tok_is(t, JT_OP, "|"))
		{
			JNode	   *f = new_node(ps, JN_FILTER, t->line);

			advance(ps);
			if (f == NULL || expect_name(ps, &f->name, "a filter name after '|'") ||
				check_known(ps, t->line, f->name, FILTERS, FILTERS_UNSUPPORTED, "filter"))
				return NULL;
			while (is_op(ps, ".") && peek_at(ps, 1)->kind == JT_NAME)
				return parse_fail(ps, t->line, SFT_ERR_UNSUPPORTED, "dotted filter names are not supported"), NULL;
			if (is_op(ps, "("))
			{
				advance(ps);
				if (enter(ps) || parse_call_args(ps, f))
					return NULL;
				ps->depth--;
			}
			f->a = node;
			node = f;
			node = parse_postfix(ps, node);
		}
		else if (tok_is(t, JT_NAME, "is"))
		{
			JNode	   *test = new_node(ps, JN_TEST, t->line);

			advance(ps);
			if (test == NULL)
				return NULL;
			if (is_name(ps, "not"))
			{
				advance(ps);
				test->flag = 1;
			}
			if (is_name(ps, "none") || is_name(ps, "true") || is_name(ps, "false"))
				test->name = tok_name(advance(ps));
			else if (expect_name(ps, &test->name, "a test name after 'is'"))
				return NULL;
			if (check_known(ps, t->line, test->name, TESTS, TESTS_UNSUPPORTED, "test"))
				return NULL;
			if (is_op(ps, "("))
			{
				advance(ps);
				if (enter(ps) || parse_call_args(ps, test))
					return NULL;
				ps->depth--;
			}
			else
			{
				JTok	   *a = peek(ps);

				/* a single argument without parentheses: "is divisibleby 3" */
				if ((a->kind == JT_NAME && !tok_is(a, JT_NAME, "else") && !tok_is(a, JT_NAME, "or") &&
					 !tok_is(a, JT_NAME, "and") && !tok_is(a, JT_NAME, "if") &&
					 !tok_is(a, JT_NAME, "in") && !tok_is(a, JT_NAME, "not") &&
					 !tok_is(a, JT_NAME, "is") && !tok_is(a, JT_NAME, "recursive")) ||
					a->kind == JT_STRING || a->kind == JT_INT || a->kind == JT_FLOAT ||
					tok_is(a, JT_OP, "[") || tok_is(a, JT_OP, "{") || tok_is(a, JT_OP, "-"))
				{
					JNode	   *arg;
					JNode	  **v;

					if (tok_is(a, JT_OP, "-"))
						return parse_fail(ps, a->line, SFT_ERR_UNSUPPORTED,
										  "a negative test argument needs parentheses"), NULL;
					arg = parse_postfix(ps, parse_primary(ps));
					v = jarena_alloc(ps->arena, sizeof(JNode *));
					if (arg == NULL || v == NULL)
						return nomem(ps), NULL;
					v[0] = arg;
					test->args.v = v;
					test->args.n = 1;
				}
			}
			test->a = node;
			node = test;
		}
		else
			break;
	}
	return node;
}

static JNode *
parse_unary(JParser *ps, int with_filter)
{
	JTok	   *t = peek(ps);
	JNode	   *node;

	if (enter(ps))
		return NULL;
	if (tok_is(t, JT_OP, "-") || tok_is(t, JT_OP, "+"))
	{
		advance(ps);
		node = new_node(ps, t->p[0] == '-' ? JN_NEG : JN_POS, t->line);
		if (node == NULL || (node->a = parse_unary(ps, 0)) == NULL)
			return NULL;
	}
	else
		node = parse_postfix(ps, parse_primary(ps));
	if (with_filter)
		node = parse_filter_expr(ps, node);
	ps->depth--;
	return node;
}

static JNode *
binop(JParser *ps, int line, int op, JNode *a, JNode *b)
{
	JNode	   *n;

	if (a == NULL || b == NULL)
		return NULL;
	n = new_node(ps, JN_BINOP, line);
	if (n)
	{
		n->op = op;
		n->a = a;
		n->b = b;
	}
	return n;
}

static JNode *
parse_pow(JParser *ps)
{
	JNode	   *left = parse_unary(ps, 1);

	while (left && is_op(ps, "**"))
	{
		int			line = advance(ps)->line;

		left = binop(ps, line, JOP_POW, left, parse_unary(ps, 1));
	}
	return left;
}

static JNode *
parse_math2(JParser *ps)
{
	JNode	   *left = parse_pow(ps);

	while (left)
	{
		int			op;

		if (is_op(ps, "*"))
			op = JOP_MUL;
		else if (is_op(ps, "/"))
			op = JOP_DIV;
		else if (is_op(ps, "//"))
			op = JOP_FLOORDIV;
		else if (is_op(ps, "%"))
			op = JOP_MOD;
		else
			break;
		{
			int			line = advance(ps)->line;

			left = binop(ps, line, op, left, parse_pow(ps));
		}
	}
	return left;
}

static JNode *
parse_math1(JParser *ps)
{
	JNode	   *left = parse_math2(ps);

	while (left && (is_op(ps, "+") || is_op(ps, "-")))
	{
		int			op = is_op(ps, "+") ? JOP_ADD : JOP_SUB;
		int			line = advance(ps)->line;

		left = binop(ps, line, op, left, parse_math2(ps));
	}
	return left;
}

static JNode *
parse_concat(JParser *ps)
{
	JNode	   *first = parse_math1(ps);
	NodeVec		parts = {0};
	JNode	   *node;

	if (first == NULL || !is_op(ps, "~"))
		return first;
	node = new_node(ps, JN_CONCAT, peek(ps)->line);
	if (node == NULL || vec_push(ps, &parts, first))
		return NULL;
	while (is_op(ps, "~"))
	{
		JNode	   *e;

		advance(ps);
		e = parse_math1(ps);
		if (e == NULL || vec_push(ps, &parts, e))
			return NULL;
	}
	node->args = vec_list(&parts);
	return node;
}

/* a < b, and chains a < b < c meaning (a < b) and (b < c) */
static JNode *
parse_compare(JParser *ps)
{
	JNode	   *left = parse_concat(ps);
	JNode	   *result = left;
	int			chained = 0;

	while (left)
	{
		int			op;
		JTok	   *t = peek(ps);
		JNode	   *right;
		JNode	   *cmp;

		if (tok_is(t, JT_OP, "=="))
			op = JOP_EQ;
		else if (tok_is(t, JT_OP, "!="))
			op = JOP_NE;
		else if (tok_is(t, JT_OP, "<"))
			op = JOP_LT;
		else if (tok_is(t, JT_OP, "<="))
			op = JOP_LE;
		else if (tok_is(t, JT_OP, ">"))
			op = JOP_GT;
		else if (tok_is(t, JT_OP, ">="))
			op = JOP_GE;
		else if (tok_is(t, JT_NAME, "in"))
			op = JOP_IN;
		else if (tok_is(t, JT_NAME, "not") && tok_is(peek_at(ps, 1), JT_NAME, "in"))
		{
			advance(ps);
			op = JOP_NOTIN;
		}
		else
			break;
		advance(ps);
		right = parse_concat(ps);
		if (right == NULL)
			return NULL;
		cmp = new_node(ps, JN_COMPARE, t->line);
		if (cmp == NULL)
			return NULL;
		cmp->op = op;
		cmp->a = left;
		cmp->b = right;
		if (chained)
		{
			JNode	   *both = new_node(ps, JN_AND, t->line);

			if (both == NULL)
				return NULL;
			both->a = result;
			both->b = cmp;
			result = both;
		}
		else
			result = cmp;
		chained = 1;
		left = right;
	}
	return left ? result : NULL;
}

static JNode *
parse_not(JParser *ps)
{
	if (is_name(ps, "not"))
	{
		int			line = advance(ps)->line;
		JNode	   *n = new_node(ps, JN_NOT, line);

		if (n == NULL || enter(ps) || (n->a = parse_not(ps)) == NULL)
			return NULL;
		ps->depth--;
		return n;
	}
	return parse_compare(ps);
}

static JNode *
parse_and(JParser *ps)
{
	JNode	   *left = parse_not(ps);

	while (left && is_name(ps, "and"))
	{
		int			line = advance(ps)->line;
		JNode	   *n = new_node(ps, JN_AND, line);

		if (n == NULL)
			return NULL;
		n->a = left;
		n->b = parse_not(ps);
		if (n->b == NULL)
			return NULL;
		left = n;
	}
	return left;
}

static JNode *
parse_or(JParser *ps)
{
	JNode	   *left = parse_and(ps);

	while (left && is_name(ps, "or"))
	{
		int			line = advance(ps)->line;
		JNode	   *n = new_node(ps, JN_OR, line);

		if (n == NULL)
			return NULL;
		n->a = left;
		n->b = parse_and(ps);
		if (n->b == NULL)
			return NULL;
		left = n;
	}
	return left;
}

/* a if cond else b (else optional: undefined) */
static JNode *
parse_expr(JParser *ps)
{
	JNode	   *node;

	if (enter(ps))
		return NULL;
	node = parse_or(ps);
	while (node && is_name(ps, "if"))
	{
		int			line = advance(ps)->line;
		JNode	   *c = new_node(ps, JN_CONDEXPR, line);

		if (c == NULL || (c->a = parse_or(ps)) == NULL)
			return NULL;
		c->b = node;
		if (is_name(ps, "else"))
		{
			advance(ps);
			if ((c->c = parse_expr(ps)) == NULL)
				return NULL;
		}
		node = c;
	}
	ps->depth--;
	return node;
}

/* expr or a, b (a tuple without parentheses), as in set and for targets/values */
static JNode *
parse_expr_tuple(JParser *ps)
{
	JNode	   *first = parse_expr(ps);
	NodeVec		items = {0};
	JNode	   *t;

	if (first == NULL || !is_op(ps, ","))
		return first;
	t = new_node(ps, JN_TUPLE, first->line);
	if (t == NULL || vec_push(ps, &items, first))
		return NULL;
	while (is_op(ps, ","))
	{
		JNode	   *e;

		advance(ps);
		if (peek(ps)->kind == JT_BLOCK_END || peek(ps)->kind == JT_VAR_END)
			break;
		e = parse_expr(ps);
		if (e == NULL || vec_push(ps, &items, e))
			return NULL;
	}
	t->args = vec_list(&items);
	return t;
}

/* Names of a for/set target: x, or x, y, or (x, y). */
static int
parse_targets(JParser *ps, NameVec *names)
{
	int			paren = 0;

	if (is_op(ps, "("))
	{
		advance(ps);
		paren = 1;
	}
	for (;;)
	{
		JName		nm;

		if (expect_name(ps, &nm, "a variable name") || name_push(ps, names, nm))
			return -1;
		if (!is_op(ps, ","))
			break;
		advance(ps);
		if (paren && is_op(ps, ")"))
			break;
	}
	if (paren && expect_op(ps, ")"))
		return -1;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------- */

/*
 * Parse statements until a block tag whose name is one of ends (NULL-ended);
 * leaves the parser on that name (after "{%").  At the top level ends is
 * NULL and the end of the template closes the list.
 */
static int	parse_body(JParser *ps, NodeVec *out, const char *const *ends, const char *opener,
					   int opener_line);

static int
at_end_tag(JParser *ps, const char *const *ends)
{
	JTok	   *t = peek_at(ps, 1);

	if (peek(ps)->kind != JT_BLOCK_BEGIN || ends == NULL)
		return 0;
	for (int i = 0; ends[i]; i++)
		if (tok_is(t, JT_NAME, ends[i]))
			return 1;
	return 0;
}

/* Macro and call-block parameters: (a, b=default, ...) */
static int
parse_params(JParser *ps, JNode *node)
{
	NameVec		names = {0};
	NodeVec		defaults = {0};

	if (expect_op(ps, "("))
		return -1;
	while (!is_op(ps, ")"))
	{
		JName		nm;
		JNode	   *def = NULL;

		if (names.n > 0 && expect_op(ps, ","))
			return -1;
		if (is_op(ps, ")"))
			break;
		if (expect_name(ps, &nm, "a parameter name"))
			return -1;
		if (is_op(ps, "="))
		{
			advance(ps);
			if ((def = parse_expr(ps)) == NULL)
				return -1;
		}
		else if (defaults.n > 0 && defaults.v[defaults.n - 1] != NULL)
			return parse_fail(ps, peek(ps)->line, SFT_ERR_INVALID,
							  "parameter without a default follows one with a default");
		if (name_push(ps, &names, nm) || vec_push(ps, &defaults, def))
			return -1;
	}
	advance(ps);
	node->names = names.v;
	node->nnames = names.n;
	node->args = vec_list(&defaults);
	return 0;
}

/* A filter chain for {% filter %} and {% set x | f %}: subject is the block's text. */
static JNode *
parse_filter_chain(JParser *ps)
{
	JNode	   *node = NULL;

	do
	{
		JNode	   *f = new_node(ps, JN_FILTER, peek(ps)->line);

		if (f == NULL || expect_name(ps, &f->name, "a filter name") ||
			check_known(ps, f->line, f->name, FILTERS, FILTERS_UNSUPPORTED, "filter"))
			return NULL;
		if (is_op(ps, "("))
		{
			advance(ps);
			if (parse_call_args(ps, f))
				return NULL;
		}
		f->a = node;
		node = f;
	} while (is_op(ps, "|") && advance(ps));
	return node;
}

static JNode *
parse_statement(JParser *ps)
{
	JTok	   *kw;
	int			line;
	JNode	   *node;
	char		buf[64];

	advance(ps);				/* {% */
	kw = peek(ps);
	line = kw->line;
	if (kw->kind != JT_NAME)
	{
		parse_fail(ps, line, SFT_ERR_INVALID, "expected a statement name after '{%%', got %s",
				   tok_desc(kw, buf, sizeof(buf)));
		return NULL;
	}
	advance(ps);
	if (tok_is(kw, JT_NAME, "if"))
	{
		JNode	   *top = new_node(ps, JN_IF, line);
		JNode	   *cur = top;
		static const char *const ends[] = {"elif", "else", "endif", NULL};

		if (top == NULL || (top->a = parse_expr(ps)) == NULL || expect_block_end(ps, "if"))
			return NULL;
		for (;;)
		{
			NodeVec		body = {0};
			JTok	   *end;

			if (parse_body(ps, &body, ends, "if", line))
				return NULL;
			cur->body = vec_list(&body);
			end = advance(ps);
			if (tok_is(end, JT_NAME, "elif"))
			{
				JNode	   *n = new_node(ps, JN_IF, end->line);
				JNode	  **v = jarena_alloc(ps->arena, sizeof(JNode *));

				if (n == NULL || v == NULL)
					return nomem(ps), NULL;
				if ((n->a = parse_expr(ps)) == NULL || expect_block_end(ps, "elif"))
					return NULL;
				/* the elif is the else branch of the test before it */
				v[0] = n;
				cur->orelse.v = v;
				cur->orelse.n = 1;
				cur = n;
				continue;
			}
			if (tok_is(end, JT_NAME, "else"))
			{
				NodeVec		orelse = {0};
				static const char *const endif[] = {"endif", NULL};

				if (expect_block_end(ps, "else") || parse_body(ps, &orelse, endif, "if", line))
					return NULL;
				advance(ps);
				cur->orelse = vec_list(&orelse);
			}
			if (expect_block_end(ps, "endif"))
				return NULL;
			break;
		}
		return top;
	}
	if (tok_is(kw, JT_NAME, "for"))
	{
		NameVec		names = {0};
		NodeVec		body = {0};
		static const char *const ends[] = {"else", "endfor", NULL};

		node = new_node(ps, JN_FOR, line);
		if (node == NULL || parse_targets(ps, &names))
			return NULL;
		if (!is_name(ps, "in"))
			return parse_fail(ps, line, SFT_ERR_INVALID, "expected 'in' in a for statement"), NULL;
		advance(ps);
		/* the iterable: an expression without inline if (its "if" filters the loop) */
		if ((node->a = parse_or(ps)) == NULL)
			return NULL;
		if (is_op(ps, ","))
			return parse_fail(ps, line, SFT_ERR_UNSUPPORTED, "iterating over a bare tuple is not supported"), NULL;
		if (is_name(ps, "if"))
		{
			advance(ps);
			if ((node->b = parse_expr(ps)) == NULL)
				return NULL;
		}
		if (is_name(ps, "recursive"))
		{
			advance(ps);
			node->flag = 1;
		}
		if (expect_block_end(ps, "for") || parse_body(ps, &body, ends, "for", line))
			return NULL;
		node->names = names.v;
		node->nnames = names.n;
		node->body = vec_list(&body);
		if (tok_is(advance(ps), JT_NAME, "else"))
		{
			NodeVec		orelse = {0};
			static const char *const endfor[] = {"endfor", NULL};

			if (expect_block_end(ps, "else") || parse_body(ps, &orelse, endfor, "for", line))
				return NULL;
			advance(ps);
			node->orelse = vec_list(&orelse);
		}
		if (expect_block_end(ps, "endfor"))
			return NULL;
		return node;
	}
	if (tok_is(kw, JT_NAME, "set"))
	{
		NameVec		names = {0};

		if (peek(ps)->kind == JT_NAME && tok_is(peek_at(ps, 1), JT_OP, "."))
		{
			node = new_node(ps, JN_SET_ATTR, line);
			if (node == NULL)
				return NULL;
			node->name = tok_name(advance(ps));
			advance(ps);
			{
				JName		attr;

				if (expect_name(ps, &attr, "an attribute name") || name_push(ps, &names, attr))
					return NULL;
			}
			node->names = names.v;
			node->nnames = 1;
			if (expect_op(ps, "=") || (node->a = parse_expr(ps)) == NULL || expect_block_end(ps, "set"))
				return NULL;
			return node;
		}
		if (parse_targets(ps, &names))
			return NULL;
		if (is_op(ps, "="))
		{
			advance(ps);
			node = new_node(ps, JN_SET, line);
			if (node == NULL || (node->a = parse_expr_tuple(ps)) == NULL || expect_block_end(ps, "set"))
				return NULL;
			node->names = names.v;
			node->nnames = names.n;
			return node;
		}
		if (names.n != 1)
			return parse_fail(ps, line, SFT_ERR_INVALID, "a set block assigns one name"), NULL;
		node = new_node(ps, JN_SET_BLOCK, line);
		if (node == NULL)
			return NULL;
		node->names = names.v;
		node->nnames = 1;
		if (is_op(ps, "|"))
		{
			advance(ps);
			if ((node->b = parse_filter_chain(ps)) == NULL)
				return NULL;
		}
		{
			NodeVec		body = {0};
			static const char *const ends[] = {"endset", NULL};

			if (expect_block_end(ps, "set") || parse_body(ps, &body, ends, "set", line))
				return NULL;
			advance(ps);
			node->body = vec_list(&body);
			if (expect_block_end(ps, "endset"))
				return NULL;
		}
		return node;
	}
	if (tok_is(kw, JT_NAME, "macro") || tok_is(kw, JT_NAME, "call"))
	{
		int			is_macro = kw->p[0] == 'm';
		NodeVec		body = {0};
		static const char *const endmacro[] = {"endmacro", NULL};
		static const char *const endcall[] = {"endcall", NULL};

		node = new_node(ps, is_macro ? JN_MACRO : JN_CALL_BLOCK, line);
		if (node == NULL)
			return NULL;
		if (is_macro)
		{
			if (expect_name(ps, &node->name, "a macro name") || parse_params(ps, node))
				return NULL;
		}
		else
		{
			if (is_op(ps, "(") && parse_params(ps, node))
				return NULL;
			if ((node->a = parse_expr(ps)) == NULL)
				return NULL;
			if (node->a->kind != JN_CALL)
				return parse_fail(ps, line, SFT_ERR_INVALID, "expected a macro call in a call block"), NULL;
		}
		if (expect_block_end(ps, is_macro ? "macro" : "call") ||
			parse_body(ps, &body, is_macro ? endmacro : endcall, is_macro ? "macro" : "call", line))
			return NULL;
		advance(ps);
		if (is_macro && peek(ps)->kind == JT_NAME)
			advance(ps);		/* {% endmacro name %} */
		node->body = vec_list(&body);
		if (expect_block_end(ps, is_macro ? "endmacro" : "endcall"))
			return NULL;
		return node;
	}
	if (tok_is(kw, JT_NAME, "filter"))
	{
		NodeVec		body = {0};
		static const char *const ends[] = {"endfilter", NULL};

		node = new_node(ps, JN_FILTER_BLOCK, line);
		if (node == NULL || (node->b = parse_filter_chain(ps)) == NULL ||
			expect_block_end(ps, "filter") || parse_body(ps, &body, ends, "filter", line))
			return NULL;
		advance(ps);
		node->body = vec_list(&body);
		if (expect_block_end(ps, "endfilter"))
			return NULL;
		return node;
	}
	if (tok_is(kw, JT_NAME, "generation"))
	{
		NodeVec		body = {0};
		static const char *const ends[] = {"endgeneration", NULL};

		node = new_node(ps, JN_GENERATION, line);
		if (node == NULL || expect_block_end(ps, "generation") ||
			parse_body(ps, &body, ends, "generation", line))
			return NULL;
		advance(ps);
		node->body = vec_list(&body);
		ps->has_generation = 1;
		if (expect_block_end(ps, "endgeneration"))
			return NULL;
		return node;
	}
	if (tok_is(kw, JT_NAME, "break") || tok_is(kw, JT_NAME, "continue"))
	{
		node = new_node(ps, kw->p[0] == 'b' ? JN_BREAK : JN_CONTINUE, line);
		if (node == NULL || expect_block_end(ps, kw->p[0] == 'b' ? "break" : "continue"))
			return NULL;
		return node;
	}
	if (tok_is(kw, JT_NAME, "include") || tok_is(kw, JT_NAME, "import") ||
		tok_is(kw, JT_NAME, "from") || tok_is(kw, JT_NAME, "extends") ||
		tok_is(kw, JT_NAME, "block"))
		return parse_fail(ps, line, SFT_ERR_UNSUPPORTED,
						  "'%.*s' needs other template files, which a chat template cannot load",
						  (int) kw->n, kw->p), NULL;
	if (tok_is(kw, JT_NAME, "with") || tok_is(kw, JT_NAME, "autoescape") ||
		tok_is(kw, JT_NAME, "do") || tok_is(kw, JT_NAME, "trans"))
		return parse_fail(ps, line, SFT_ERR_UNSUPPORTED, "the '%.*s' statement is not supported",
						  (int) kw->n, kw->p), NULL;
	return parse_fail(ps, line, SFT_ERR_INVALID, "unknown statement '%.*s'",
					  (int) (kw->n > 40 ? 40 : kw->n), kw->p), NULL;
}

static int
parse_body(JParser *ps, NodeVec *out, const char *const *ends, const char *opener, int opener_line)
{
	if (enter(ps))
		return -1;
	for (;;)
	{
		JTok	   *t = peek(ps);
		JNode	   *node = NULL;

		if (t->kind == JT_EOF)
		{
			if (ends == NULL)
				break;
		{
			int			last = 0;

			while (ends[last + 1])
				last++;
			return parse_fail(ps, opener_line, SFT_ERR_INVALID,
							  "'%s' block is never closed (expected '%s')", opener, ends[last]);
		}
		}
		if (t->kind == JT_TEXT)
		{
			advance(ps);
			node = new_node(ps, JN_TEXT, t->line);
			JStr	   *s = jarena_alloc(ps->arena, sizeof(JStr));

			if (node == NULL || s == NULL)
				return nomem(ps);
			s->p = t->p;
			s->n = t->n;
			node->value.t = JV_STR;
			node->value.u.s = s;
		}
		else if (t->kind == JT_VAR_BEGIN)
		{
			advance(ps);
			node = new_node(ps, JN_OUTPUT, t->line);
			if (node == NULL || (node->a = parse_expr_tuple(ps)) == NULL)
				return -1;
			if (peek(ps)->kind != JT_VAR_END)
			{
				char		buf[64];

				return parse_fail(ps, peek(ps)->line, SFT_ERR_INVALID,
								  "expected end of print statement '}}', got %s",
								  tok_desc(peek(ps), buf, sizeof(buf)));
			}
			advance(ps);
		}
		else if (t->kind == JT_BLOCK_BEGIN)
		{
			if (at_end_tag(ps, ends))
			{
				advance(ps);	/* leave the parser on the end tag's name */
				break;
			}
			{
				JTok	   *kw = peek_at(ps, 1);
				static const char *const closers[] = {"endif", "endfor", "endset", "endmacro",
					"endcall", "endfilter", "endgeneration", "elif", "else", NULL};

				for (int i = 0; closers[i]; i++)
					if (tok_is(kw, JT_NAME, closers[i]))
						return parse_fail(ps, kw->line, SFT_ERR_INVALID, "unexpected '%s'%s%s",
										  closers[i], opener ? " inside " : "", opener ? opener : "");
			}
			node = parse_statement(ps);
			if (node == NULL)
				return -1;
		}
		else
		{
			char		buf[64];

			return parse_fail(ps, t->line, SFT_ERR_INTERNAL, "unexpected token %s",
							  tok_desc(t, buf, sizeof(buf)));
		}
		if (vec_push(ps, out, node))
			return -1;
	}
	ps->depth--;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------------- */

SftStatus
sft_jinja_parse(const char *src, size_t len, SftJinjaTemplate **out, SftError *err)
{
	SftJinjaTemplate *tpl;
	JParser		ps;
	NodeVec		body = {0};
	char	   *copy;
	size_t		bad;

	*out = NULL;
	bad = sft_utf8_invalid_offset(src, len);
	if (bad != (size_t) -1)
		return sft_error(err, SFT_ERR_INVALID, "chat template is not valid UTF-8 at byte %zu", bad);
	if (memchr(src, '\0', len) != NULL)
		return sft_error(err, SFT_ERR_INVALID, "chat template contains a NUL byte");
	tpl = sft_calloc(1, sizeof(SftJinjaTemplate));
	if (tpl == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	memset(&ps, 0, sizeof(ps));
	ps.arena = &tpl->arena;
	ps.err = err;
	/* the tree points into the source: keep a copy */
	copy = jarena_alloc(&tpl->arena, len + 1);
	if (copy == NULL)
	{
		sft_jinja_free(tpl);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	memcpy(copy, src, len);
	ps.src = copy;
	ps.len = len;
	if (lex(&ps) == 0 && parse_body(&ps, &body, NULL, NULL, 1) == 0)
	{
		tpl->body = vec_list(&body);
		tpl->has_generation = ps.has_generation;
	}
	sft_free(ps.toks);
	if (ps.failed)
	{
		sft_jinja_free(tpl);
		return err ? err->status : SFT_ERR_INVALID;
	}
	*out = tpl;
	return SFT_OK;
}

void
sft_jinja_free(SftJinjaTemplate *tpl)
{
	if (tpl == NULL)
		return;
	jarena_free(&tpl->arena);
	sft_free(tpl);
}

int
sft_jinja_has_generation(const SftJinjaTemplate *tpl)
{
	return tpl->has_generation;
}
