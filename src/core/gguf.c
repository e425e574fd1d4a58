/*
 * gguf.c: GGUF v3 writer and reader (the format is described in gguf.h).
 *
 * The writer collects key/value pairs already serialized into one buffer and
 * a table of tensors whose fp32 source is converted row by row while the
 * file is written, so an export needs no second copy of the weights.  The
 * reader validates a file held in memory as strictly as llama.cpp's loader
 * (more: duplicate names and overlapping tensors are refused) and is the
 * fuzz target's entry point.
 */
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Types and numbers
 * ------------------------------------------------------------------------- */

static const struct
{
	const char *name;
	SftGgmlType type;
} ggml_types[] = {
	{"f32", SFT_GGML_F32},
	{"f16", SFT_GGML_F16},
	{"bf16", SFT_GGML_BF16},
	{"q8_0", SFT_GGML_Q8_0},
};

SftStatus
sft_ggml_type_from_name(const char *name, SftGgmlType *out, SftError *err)
{
	for (size_t i = 0; i < sizeof(ggml_types) / sizeof(ggml_types[0]); i++)
		if (strcmp(name, ggml_types[i].name) == 0)
		{
			*out = ggml_types[i].type;
			return SFT_OK;
		}
	return sft_error(err, SFT_ERR_INVALID, "unknown dtype \"%s\" (f32, f16, bf16, q8_0 are)", name);
}

const char *
sft_ggml_type_name(SftGgmlType type)
{
	for (size_t i = 0; i < sizeof(ggml_types) / sizeof(ggml_types[0]); i++)
		if (ggml_types[i].type == type)
			return ggml_types[i].name;
	return "unknown";
}

static int
ggml_type_known(uint32_t type)
{
	return type == SFT_GGML_F32 || type == SFT_GGML_F16 || type == SFT_GGML_BF16 ||
		type == SFT_GGML_Q8_0;
}

size_t
sft_ggml_row_bytes(SftGgmlType type, uint64_t n)
{
	switch (type)
	{
		case SFT_GGML_F32:
			return (size_t) n * 4;
		case SFT_GGML_F16:
		case SFT_GGML_BF16:
			return (size_t) n * 2;
		case SFT_GGML_Q8_0:
			return (size_t) (n / SFT_GGUF_QK8_0) * SFT_GGUF_Q8_0_BLOCK_BYTES;
	}
	return 0;
}

static uint32_t
f32_bits(float x)
{
	uint32_t	u;

	memcpy(&u, &x, 4);
	return u;
}

/* ---------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------- */

void
sft_gguf_writer_init(SftGgufWriter *w)
{
	memset(w, 0, sizeof(*w));
	sft_buf_init(&w->kv);
	w->status = SFT_OK;
}

void
sft_gguf_writer_free(SftGgufWriter *w)
{
	for (int i = 0; i < w->n_tensors; i++)
		sft_free(w->tensors[i].name);
	sft_free(w->tensors);
	sft_buf_free(&w->kv);
	memset(w, 0, sizeof(*w));
}

static void
put_bytes(SftGgufWriter *w, const void *p, size_t len)
{
	if (w->status != SFT_OK)
		return;
	if (sft_buf_append(&w->kv, p, len) != SFT_OK)
		w->status = sft_error(&w->error, SFT_ERR_NOMEM, "out of memory building GGUF metadata");
}

static void
put_u32(SftGgufWriter *w, uint32_t v)
{
	unsigned char b[4] = {v, v >> 8, v >> 16, v >> 24};

	put_bytes(w, b, 4);
}

static void
put_u64(SftGgufWriter *w, uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char) (v >> (8 * i));
	put_bytes(w, b, 8);
}

static void
put_string(SftGgufWriter *w, const char *s, size_t len)
{
	put_u64(w, len);
	put_bytes(w, s, len);
}

static void
put_key(SftGgufWriter *w, const char *key, SftGgufValueType type)
{
	put_string(w, key, strlen(key));
	put_u32(w, type);
	w->n_kv++;
}

void
sft_gguf_add_string(SftGgufWriter *w, const char *key, const char *s, size_t len)
{
	put_key(w, key, SFT_GGUF_STRING);
	put_string(w, s, len);
}

void
sft_gguf_add_u32(SftGgufWriter *w, const char *key, uint32_t v)
{
	put_key(w, key, SFT_GGUF_UINT32);
	put_u32(w, v);
}

void
sft_gguf_add_i32(SftGgufWriter *w, const char *key, int32_t v)
{
	put_key(w, key, SFT_GGUF_INT32);
	put_u32(w, (uint32_t) v);
}

void
sft_gguf_add_f32(SftGgufWriter *w, const char *key, float v)
{
	put_key(w, key, SFT_GGUF_FLOAT32);
	put_u32(w, f32_bits(v));
}

void
sft_gguf_add_bool(SftGgufWriter *w, const char *key, int v)
{
	unsigned char b = v ? 1 : 0;

	put_key(w, key, SFT_GGUF_BOOL);
	put_bytes(w, &b, 1);
}

void
sft_gguf_add_string_array(SftGgufWriter *w, const char *key, uint64_t n,
						  const char *const *s, const size_t *len)
{
	put_key(w, key, SFT_GGUF_ARRAY);
	put_u32(w, SFT_GGUF_STRING);
	put_u64(w, n);
	for (uint64_t i = 0; i < n; i++)
		put_string(w, s[i], len[i]);
}

void
sft_gguf_add_f32_array(SftGgufWriter *w, const char *key, uint64_t n, const float *v)
{
	put_key(w, key, SFT_GGUF_ARRAY);
	put_u32(w, SFT_GGUF_FLOAT32);
	put_u64(w, n);
	for (uint64_t i = 0; i < n; i++)
		put_u32(w, f32_bits(v[i]));
}

void
sft_gguf_add_i32_array(SftGgufWriter *w, const char *key, uint64_t n, const int32_t *v)
{
	put_key(w, key, SFT_GGUF_ARRAY);
	put_u32(w, SFT_GGUF_INT32);
	put_u64(w, n);
	for (uint64_t i = 0; i < n; i++)
		put_u32(w, (uint32_t) v[i]);
}

void
sft_gguf_add_tensor(SftGgufWriter *w, const char *name, int n_dims, const uint64_t *ne,
					SftGgmlType type, const float *data,
					void (*fill_row) (const void *arg, uint64_t row, float *out),
					const void *fill_arg)
{
	SftGgufTensorOut *t;

	if (w->status != SFT_OK)
		return;
	if (n_dims < 1 || n_dims > SFT_GGUF_MAX_DIMS)
	{
		w->status = sft_error(&w->error, SFT_ERR_INTERNAL, "tensor %s: %d dimensions", name, n_dims);
		return;
	}
	if (type == SFT_GGML_Q8_0 && ne[0] % SFT_GGUF_QK8_0 != 0)
	{
		w->status = sft_error(&w->error, SFT_ERR_INVALID,
							  "tensor %s: q8_0 needs rows of a multiple of %d values, got %llu",
							  name, SFT_GGUF_QK8_0, (unsigned long long) ne[0]);
		return;
	}
	if (w->n_tensors == w->cap_tensors)
	{
		int			cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
		SftGgufTensorOut *grown = sft_realloc(w->tensors, sizeof(*grown) * cap);

		if (grown == NULL)
		{
			w->status = sft_error(&w->error, SFT_ERR_NOMEM, "out of memory");
			return;
		}
		w->tensors = grown;
		w->cap_tensors = cap;
	}
	t = &w->tensors[w->n_tensors];
	memset(t, 0, sizeof(*t));
	t->name = sft_strndup(name, strlen(name));
	if (t->name == NULL)
	{
		w->status = sft_error(&w->error, SFT_ERR_NOMEM, "out of memory");
		return;
	}
	t->n_dims = n_dims;
	for (int d = 0; d < SFT_GGUF_MAX_DIMS; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->type = type;
	t->data = data;
	t->fill_row = fill_row;
	t->fill_arg = fill_arg;
	w->n_tensors++;
}

static uint64_t
align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

static uint64_t
tensor_rows(const SftGgufTensorOut *t)
{
	return t->ne[1] * t->ne[2] * t->ne[3];
}

static uint64_t
tensor_bytes(const SftGgufTensorOut *t)
{
	return (uint64_t) sft_ggml_row_bytes(t->type, t->ne[0]) * tensor_rows(t);
}

static void
convert_row(SftGgmlType type, const float *x, uint64_t n, unsigned char *out)
{
	switch (type)
	{
		case SFT_GGML_F32:
			memcpy(out, x, n * 4);	/* the core runs on little-endian hosts */
			break;
		case SFT_GGML_F16:
			for (uint64_t i = 0; i < n; i++)
			{
				uint16_t	h = sft_f32_to_f16(x[i]);

				out[2 * i] = (unsigned char) (h & 0xff);
				out[2 * i + 1] = (unsigned char) (h >> 8);
			}
			break;
		case SFT_GGML_BF16:		/* quant.c's layouts are ggml's (little-endian host) */
			sft_quantize_row(SFT_DTYPE_BF16, x, out, (int64_t) n);
			break;
		case SFT_GGML_Q8_0:
			sft_quantize_row(SFT_DTYPE_Q8_0, x, out, (int64_t) n);
			break;
	}
}

#define GGUF_CHUNK_BYTES ((size_t) 4 << 20)

SftStatus
sft_gguf_write(SftGgufWriter *w, SftWriteFn write, void *ctx, SftError *err)
{
	SftGgufWriter head;
	SftStatus	st;
	uint64_t	data_off = 0;
	static const unsigned char zeros[SFT_GGUF_DEFAULT_ALIGNMENT];
	unsigned char *chunk = NULL;
	float	   *row = NULL;
	size_t		max_row_bytes = 0;
	uint64_t	max_ne0 = 0;

	if (w->status != SFT_OK)
	{
		if (err)
			*err = w->error;
		return w->status;
	}

	/* header + key/values + tensor infos, built in one buffer */
	sft_gguf_writer_init(&head);
	put_bytes(&head, "GGUF", 4);
	put_u32(&head, SFT_GGUF_VERSION);
	put_u64(&head, (uint64_t) w->n_tensors);
	put_u64(&head, w->n_kv);
	put_bytes(&head, w->kv.data, w->kv.len);
	for (int i = 0; i < w->n_tensors; i++)
	{
		SftGgufTensorOut *t = &w->tensors[i];

		t->offset = data_off;
		data_off = align_up(data_off + tensor_bytes(t), SFT_GGUF_DEFAULT_ALIGNMENT);
		put_string(&head, t->name, strlen(t->name));
		put_u32(&head, (uint32_t) t->n_dims);
		for (int d = 0; d < t->n_dims; d++)
			put_u64(&head, t->ne[d]);
		put_u32(&head, t->type);
		put_u64(&head, t->offset);
		if (sft_ggml_row_bytes(t->type, t->ne[0]) > max_row_bytes)
			max_row_bytes = sft_ggml_row_bytes(t->type, t->ne[0]);
		if (t->ne[0] > max_ne0)
			max_ne0 = t->ne[0];
	}
	put_bytes(&head, zeros, (size_t) (align_up(head.kv.len, SFT_GGUF_DEFAULT_ALIGNMENT) - head.kv.len));
	if (head.status != SFT_OK)
	{
		st = head.status;
		if (err)
			*err = head.error;
		sft_gguf_writer_free(&head);
		return st;
	}
	st = write(ctx, head.kv.data, head.kv.len, err);
	sft_gguf_writer_free(&head);
	if (st != SFT_OK)
		return st;

	/* the data region: rows converted into a chunk, written when it fills */
	chunk = sft_alloc(GGUF_CHUNK_BYTES > max_row_bytes ? GGUF_CHUNK_BYTES : max_row_bytes);
	row = sft_alloc(sizeof(float) * (max_ne0 ? max_ne0 : 1));
	if (chunk == NULL || row == NULL)
	{
		sft_free(chunk);
		sft_free(row);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory writing GGUF");
	}
	for (int i = 0; i < w->n_tensors && st == SFT_OK; i++)
	{
		SftGgufTensorOut *t = &w->tensors[i];
		size_t		rb = sft_ggml_row_bytes(t->type, t->ne[0]);
		size_t		used = 0;
		uint64_t	pad = align_up(tensor_bytes(t), SFT_GGUF_DEFAULT_ALIGNMENT) - tensor_bytes(t);

		for (uint64_t r = 0; r < tensor_rows(t) && st == SFT_OK; r++)
		{
			const float *src;

			if (t->fill_row)
			{
				t->fill_row(t->fill_arg, r, row);
				src = row;
			}
			else
				src = t->data + r * t->ne[0];
			if (used + rb > GGUF_CHUNK_BYTES && used > 0)
			{
				st = write(ctx, chunk, used, err);
				used = 0;
			}
			convert_row(t->type, src, t->ne[0], chunk + used);
			used += rb;
		}
		if (st == SFT_OK && used > 0)
			st = write(ctx, chunk, used, err);
		if (st == SFT_OK && pad > 0)
			st = write(ctx, zeros, (size_t) pad, err);
	}
	sft_free(chunk);
	sft_free(row);
	return st;
}

/* ---------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------- */

typedef struct Cursor
{
	const unsigned char *data;
	size_t		len;
	size_t		pos;
} Cursor;

static SftStatus
need(Cursor *c, uint64_t n, const char *what, SftError *err)
{
	if (n > c->len - c->pos)
		return sft_error(err, SFT_ERR_FORMAT, "GGUF truncated at byte %zu reading %s", c->pos, what);
	return SFT_OK;
}

static SftStatus
get_u32(Cursor *c, uint32_t *v, const char *what, SftError *err)
{
	SftStatus	st = need(c, 4, what, err);

	if (st != SFT_OK)
		return st;
	*v = (uint32_t) c->data[c->pos] | (uint32_t) c->data[c->pos + 1] << 8 |
		(uint32_t) c->data[c->pos + 2] << 16 | (uint32_t) c->data[c->pos + 3] << 24;
	c->pos += 4;
	return SFT_OK;
}

static SftStatus
get_u64(Cursor *c, uint64_t *v, const char *what, SftError *err)
{
	SftStatus	st = need(c, 8, what, err);

	if (st != SFT_OK)
		return st;
	*v = 0;
	for (int i = 7; i >= 0; i--)
		*v = *v << 8 | c->data[c->pos + i];
	c->pos += 8;
	return SFT_OK;
}

static SftStatus
get_string(Cursor *c, const char **s, uint64_t *len, const char *what, SftError *err)
{
	SftStatus	st;
	size_t		at = c->pos;

	if ((st = get_u64(c, len, what, err)) != SFT_OK || (st = need(c, *len, what, err)) != SFT_OK)
		return st;
	*s = (const char *) c->data + c->pos;
	if (sft_utf8_invalid_offset(*s, (size_t) *len) != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT, "GGUF %s at byte %zu is not valid UTF-8", what, at);
	c->pos += (size_t) *len;
	return SFT_OK;
}

static size_t
scalar_size(uint32_t type)
{
	switch (type)
	{
		case SFT_GGUF_UINT8:
		case SFT_GGUF_INT8:
		case SFT_GGUF_BOOL:
			return 1;
		case SFT_GGUF_UINT16:
		case SFT_GGUF_INT16:
			return 2;
		case SFT_GGUF_UINT32:
		case SFT_GGUF_INT32:
		case SFT_GGUF_FLOAT32:
			return 4;
		case SFT_GGUF_UINT64:
		case SFT_GGUF_INT64:
		case SFT_GGUF_FLOAT64:
			return 8;
	}
	return 0;
}

static SftStatus
get_value(Cursor *c, uint32_t type, SftGgufValue *v, const char *key, SftError *err)
{
	SftStatus	st;

	memset(v, 0, sizeof(*v));
	v->type = (SftGgufValueType) type;
	v->count = 1;
	if (type == SFT_GGUF_STRING)
	{
		const char *s;

		if ((st = get_string(c, &s, &v->len, "string value", err)) != SFT_OK)
			return st;
		v->data = (const unsigned char *) s;
		return SFT_OK;
	}
	if (type == SFT_GGUF_ARRAY)
	{
		uint32_t	et;

		if ((st = get_u32(c, &et, "array type", err)) != SFT_OK ||
			(st = get_u64(c, &v->count, "array length", err)) != SFT_OK)
			return st;
		if (et >= SFT_GGUF_N_VALUE_TYPES || et == SFT_GGUF_ARRAY)
			return sft_error(err, SFT_ERR_FORMAT, "GGUF key %s: array element type %u is not supported",
							 key, et);
		v->elem_type = (SftGgufValueType) et;
		v->data = c->data + c->pos;
		if (et == SFT_GGUF_STRING)
		{
			for (uint64_t i = 0; i < v->count; i++)
			{
				const char *s;
				uint64_t	len;

				if ((st = get_string(c, &s, &len, "array string", err)) != SFT_OK)
					return st;
			}
			return SFT_OK;
		}
		if (v->count > (c->len - c->pos) / scalar_size(et))
			return sft_error(err, SFT_ERR_FORMAT, "GGUF key %s: array of %llu elements runs past the end",
							 key, (unsigned long long) v->count);
		c->pos += (size_t) (v->count * scalar_size(et));
		return SFT_OK;
	}
	if (type >= SFT_GGUF_N_VALUE_TYPES)
		return sft_error(err, SFT_ERR_FORMAT, "GGUF key %s: unknown value type %u", key, type);
	if ((st = need(c, scalar_size(type), "value", err)) != SFT_OK)
		return st;
	v->data = c->data + c->pos;
	if (type == SFT_GGUF_BOOL && v->data[0] > 1)
		return sft_error(err, SFT_ERR_FORMAT, "GGUF key %s: bool value %u", key, v->data[0]);
	c->pos += scalar_size(type);
	return SFT_OK;
}

static int
name_eq(const char *a, uint64_t alen, const char *b, uint64_t blen)
{
	return alen == blen && memcmp(a, b, (size_t) alen) == 0;
}

static int
cmp_offset(const void *a, const void *b)
{
	const SftGgufTensorIn *x = *(const SftGgufTensorIn * const *) a;
	const SftGgufTensorIn *y = *(const SftGgufTensorIn * const *) b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static uint32_t
read_u32_at(const unsigned char *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

SftStatus
sft_gguf_parse(const unsigned char *data, size_t len, SftGgufFile *out, SftError *err)
{
	Cursor		c = {data, len, 0};
	SftGgufFile f;
	SftStatus	st;
	uint32_t	magic;
	size_t		data_start;
	SftGgufTensorIn **order = NULL;

	memset(out, 0, sizeof(*out));
	memset(&f, 0, sizeof(f));
	f.alignment = SFT_GGUF_DEFAULT_ALIGNMENT;
	if ((st = get_u32(&c, &magic, "magic", err)) != SFT_OK)
		return st;
	if (memcmp(data, "GGUF", 4) != 0)
		return sft_error(err, SFT_ERR_FORMAT, "not a GGUF file (bad magic)");
	if ((st = get_u32(&c, &f.version, "version", err)) != SFT_OK ||
		(st = get_u64(&c, &f.n_tensors, "tensor count", err)) != SFT_OK ||
		(st = get_u64(&c, &f.n_kv, "key/value count", err)) != SFT_OK)
		return st;
	if (f.version != SFT_GGUF_VERSION)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF version %u is not supported (3 is)", f.version);
	/* every pair takes at least 12 bytes, every tensor info at least 28 */
	if (f.n_kv > (len - c.pos) / 12 || f.n_tensors > (len - c.pos) / 28)
		return sft_error(err, SFT_ERR_FORMAT, "GGUF counts (%llu keys, %llu tensors) exceed the file",
						 (unsigned long long) f.n_kv, (unsigned long long) f.n_tensors);
	f.kv = sft_calloc(f.n_kv ? f.n_kv : 1, sizeof(SftGgufKv));
	f.tensors = sft_calloc(f.n_tensors ? f.n_tensors : 1, sizeof(SftGgufTensorIn));
	order = sft_calloc(f.n_tensors ? f.n_tensors : 1, sizeof(*order));
	if (f.kv == NULL || f.tensors == NULL || order == NULL)
	{
		st = sft_error(err, SFT_ERR_NOMEM, "out of memory reading GGUF");
		goto fail;
	}
	for (uint64_t i = 0; i < f.n_kv; i++)
	{
		SftGgufKv  *kv = &f.kv[i];
		uint32_t	type;
		char		key[64];

		if ((st = get_string(&c, &kv->key, &kv->key_len, "key", err)) != SFT_OK ||
			(st = get_u32(&c, &type, "value type", err)) != SFT_OK)
			goto fail;
		snprintf(key, sizeof(key), "%.*s", (int) (kv->key_len < 60 ? kv->key_len : 60), kv->key);
		for (uint64_t j = 0; j < i; j++)
			if (name_eq(f.kv[j].key, f.kv[j].key_len, kv->key, kv->key_len))
			{
				st = sft_error(err, SFT_ERR_FORMAT, "GGUF key %s appears twice", key);
				goto fail;
			}
		if ((st = get_value(&c, type, &kv->value, key, err)) != SFT_OK)
			goto fail;
		if (name_eq(kv->key, kv->key_len, "general.alignment", 17))
		{
			uint32_t	a;

			if (type != SFT_GGUF_UINT32)
			{
				st = sft_error(err, SFT_ERR_FORMAT, "GGUF general.alignment must be a u32");
				goto fail;
			}
			a = read_u32_at(kv->value.data);
			if (a == 0 || (a & (a - 1)) != 0)
			{
				st = sft_error(err, SFT_ERR_FORMAT, "GGUF general.alignment %u is not a power of two", a);
				goto fail;
			}
			f.alignment = a;
		}
	}
	for (uint64_t i = 0; i < f.n_tensors; i++)
	{
		SftGgufTensorIn *t = &f.tensors[i];
		uint32_t	n_dims;
		uint64_t	n = 1;

		if ((st = get_string(&c, &t->name, &t->name_len, "tensor name", err)) != SFT_OK ||
			(st = get_u32(&c, &n_dims, "tensor dimensions", err)) != SFT_OK)
			goto fail;
		if (n_dims < 1 || n_dims > SFT_GGUF_MAX_DIMS)
		{
			st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor %llu has %u dimensions (1 to 4 allowed)",
						   (unsigned long long) i, n_dims);
			goto fail;
		}
		t->n_dims = (int) n_dims;
		for (int d = 0; d < SFT_GGUF_MAX_DIMS; d++)
			t->ne[d] = 1;
		for (int d = 0; d < t->n_dims; d++)
		{
			if ((st = get_u64(&c, &t->ne[d], "tensor dimension", err)) != SFT_OK)
				goto fail;
			if (t->ne[d] == 0 || t->ne[d] > ((uint64_t) 1 << 40) || n > ((uint64_t) 1 << 50) / t->ne[d])
			{
				st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor %llu: dimension %llu out of range",
							   (unsigned long long) i, (unsigned long long) t->ne[d]);
				goto fail;
			}
			n *= t->ne[d];
		}
		if ((st = get_u32(&c, &t->type, "tensor type", err)) != SFT_OK ||
			(st = get_u64(&c, &t->offset, "tensor offset", err)) != SFT_OK)
			goto fail;
		if (!ggml_type_known(t->type))
		{
			st = sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF tensor %llu: type %u is not supported (f32, f16, bf16, q8_0 are)",
						   (unsigned long long) i, t->type);
			goto fail;
		}
		if (t->type == SFT_GGML_Q8_0 && t->ne[0] % SFT_GGUF_QK8_0 != 0)
		{
			st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor %llu: q8_0 rows of %llu values", (unsigned long long) i,
						   (unsigned long long) t->ne[0]);
			goto fail;
		}
		if (t->offset % f.alignment != 0)
		{
			st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor %llu: offset %llu is not aligned to %llu",
						   (unsigned long long) i, (unsigned long long) t->offset,
						   (unsigned long long) f.alignment);
			goto fail;
		}
		t->nbytes = (uint64_t) sft_ggml_row_bytes((SftGgmlType) t->type, t->ne[0]) * (n / t->ne[0]);
		for (uint64_t j = 0; j < i; j++)
			if (name_eq(f.tensors[j].name, f.tensors[j].name_len, t->name, t->name_len))
			{
				st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor name %.*s appears twice",
							   (int) (t->name_len < 60 ? t->name_len : 60), t->name);
				goto fail;
			}
		order[i] = t;
	}
	data_start = (size_t) align_up(c.pos, f.alignment);
	if (data_start > len && f.n_tensors > 0)
	{
		st = sft_error(err, SFT_ERR_FORMAT, "GGUF data region starts past the end of the file");
		goto fail;
	}
	qsort(order, (size_t) f.n_tensors, sizeof(*order), cmp_offset);
	for (uint64_t i = 0; i < f.n_tensors; i++)
	{
		SftGgufTensorIn *t = order[i];
		uint64_t	avail = len - data_start;

		if (t->offset > avail || t->nbytes > avail - t->offset)
		{
			st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor %.*s runs past the end of the file",
						   (int) (t->name_len < 60 ? t->name_len : 60), t->name);
			goto fail;
		}
		if (i > 0 && order[i - 1]->offset + order[i - 1]->nbytes > t->offset)
		{
			st = sft_error(err, SFT_ERR_FORMAT, "GGUF tensor %.*s overlaps another",
						   (int) (t->name_len < 60 ? t->name_len : 60), t->name);
			goto fail;
		}
		t->data = data + data_start + t->offset;
	}
	sft_free(order);
	*out = f;
	return SFT_OK;

fail:
	sft_free(order);
	sft_gguf_file_free(&f);
	return st;
}

void
sft_gguf_file_free(SftGgufFile *f)
{
	sft_free(f->kv);
	sft_free(f->tensors);
	memset(f, 0, sizeof(*f));
}

const SftGgufKv *
sft_gguf_find_kv(const SftGgufFile *f, const char *key)
{
	for (uint64_t i = 0; i < f->n_kv; i++)
		if (name_eq(f->kv[i].key, f->kv[i].key_len, key, strlen(key)))
			return &f->kv[i];
	return NULL;
}

const SftGgufTensorIn *
sft_gguf_find_tensor(const SftGgufFile *f, const char *name)
{
	for (uint64_t i = 0; i < f->n_tensors; i++)
		if (name_eq(f->tensors[i].name, f->tensors[i].name_len, name, strlen(name)))
			return &f->tensors[i];
	return NULL;
}

SftStatus
sft_gguf_strings(const SftGgufValue *v, const char **s, uint64_t *len, SftError *err)
{
	const unsigned char *p = v->data;

	if (v->type == SFT_GGUF_STRING)
	{
		s[0] = (const char *) v->data;
		len[0] = v->len;
		return SFT_OK;
	}
	if (v->type != SFT_GGUF_ARRAY || v->elem_type != SFT_GGUF_STRING)
		return sft_error(err, SFT_ERR_INVALID, "GGUF value is not a string array");
	/* the parser checked every length: walk them again */
	for (uint64_t i = 0; i < v->count; i++)
	{
		uint64_t	n = 0;

		for (int b = 7; b >= 0; b--)
			n = n << 8 | p[b];
		s[i] = (const char *) p + 8;
		len[i] = n;
		p += 8 + n;
	}
	return SFT_OK;
}

SftStatus
sft_gguf_tensor_to_f32(const SftGgufTensorIn *t, float *out, SftError *err)
{
	uint64_t	n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];

	switch (t->type)
	{
		case SFT_GGML_F32:
			memcpy(out, t->data, (size_t) n * 4);
			return SFT_OK;
		case SFT_GGML_F16:
		case SFT_GGML_BF16:
			for (uint64_t i = 0; i < n; i++)
			{
				uint16_t	h = (uint16_t) (t->data[2 * i] | t->data[2 * i + 1] << 8);

				out[i] = t->type == SFT_GGML_F16 ? sft_f16_to_f32(h) : sft_bf16_to_f32(h);
			}
			return SFT_OK;
		case SFT_GGML_Q8_0:
			/* the file's alignment may be 1: copy each block to an aligned one */
			for (uint64_t b = 0; b < n / SFT_GGUF_QK8_0; b++)
			{
				SftBlockQ8_0 blk;

				memcpy(&blk, t->data + b * SFT_GGUF_Q8_0_BLOCK_BYTES, sizeof(blk));
				sft_dequantize_row(SFT_DTYPE_Q8_0, &blk, out + b * SFT_GGUF_QK8_0, SFT_GGUF_QK8_0);
			}
			return SFT_OK;
	}
	return sft_error(err, SFT_ERR_INTERNAL, "GGUF tensor type %u", t->type);
}
