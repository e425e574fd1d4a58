/*
 * safetensors.c: reading (validated, bounds-checked, converted to fp32) and
 * writing (fp32, deterministic) of the safetensors format; see safetensors.h
 * for the layout and the rules.
 *
 * Every byte of tensor data is read through a SftReadAtFn at an offset that
 * the header validation has proven to lie inside the source, so no input can
 * make us read outside a buffer or a file: the worst a bad file gets is an
 * error message.  Tensors are read in offset order (sequential I/O), fp32
 * ones straight into the parameter slab, 16-bit ones through a small staging
 * buffer, so loading never holds a second copy of the weights.
 */
#include "safetensors.h"
#include "quant.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

/* 16-bit values converted per staging round: 64 KiB of input. */
#define ST_STAGING_ELEMS 32768
/* Bytes per call of the write callback when streaming tensor data. */
#define ST_WRITE_CHUNK ((size_t) 4 << 20)

/* ---------------------------------------------------------------------------
 * Dtypes and conversions
 * ------------------------------------------------------------------------- */

static const struct
{
	const char *name;
	size_t		size;
}			st_dtypes[SFT_ST_N_DTYPES] = {
	[SFT_ST_BOOL] = {"BOOL", 1},
	[SFT_ST_U8] = {"U8", 1},
	[SFT_ST_I8] = {"I8", 1},
	[SFT_ST_F8_E5M2] = {"F8_E5M2", 1},
	[SFT_ST_F8_E4M3] = {"F8_E4M3", 1},
	[SFT_ST_I16] = {"I16", 2},
	[SFT_ST_U16] = {"U16", 2},
	[SFT_ST_F16] = {"F16", 2},
	[SFT_ST_BF16] = {"BF16", 2},
	[SFT_ST_I32] = {"I32", 4},
	[SFT_ST_U32] = {"U32", 4},
	[SFT_ST_F32] = {"F32", 4},
	[SFT_ST_I64] = {"I64", 8},
	[SFT_ST_U64] = {"U64", 8},
	[SFT_ST_F64] = {"F64", 8},
};

const char *
sft_st_dtype_name(SftStDtype dtype)
{
	return (unsigned) dtype < SFT_ST_N_DTYPES ? st_dtypes[dtype].name : "?";
}

size_t
sft_st_dtype_size(SftStDtype dtype)
{
	return (unsigned) dtype < SFT_ST_N_DTYPES ? st_dtypes[dtype].size : 0;
}


/* ---------------------------------------------------------------------------
 * Header parsing
 * ------------------------------------------------------------------------- */

/* Printable, bounded copy of an outside name for an error message. */
static const char *
shown_name(char *dst, size_t size, const char *src)
{
	size_t		i = 0;

	for (; src[i] != '\0' && i + 4 < size; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	if (src[i] != '\0')
	{
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
	return dst;
}

#define SHOWN(s) shown_name(shown, sizeof(shown), (s))

static int
compare_by_offset(const void *a, const void *b)
{
	const SftStTensor *x = a;
	const SftStTensor *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

void
sft_st_header_free(SftStHeader *header)
{
	if (header == NULL)
		return;
	for (int i = 0; i < header->n_tensors; i++)
		sft_free(header->tensors[i].name);
	sft_free(header->tensors);
	memset(header, 0, sizeof(*header));
}

/* A non-negative JSON integer (json-c saturates beyond int64: still caught). */
static int
json_uint(json_object *v, uint64_t *out)
{
	int64_t		x;

	if (v == NULL || !json_object_is_type(v, json_type_int))
		return 0;
	x = json_object_get_int64(v);
	if (x < 0)
		return 0;
	*out = (uint64_t) x;
	return 1;
}

static SftStatus
parse_metadata(json_object *meta, SftError *err)
{
	char		shown[80];

	if (!json_object_is_type(meta, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: \"__metadata__\" must be an object of strings");
	json_object_object_foreach(meta, key, val)
	{
		if (val == NULL || !json_object_is_type(val, json_type_string))
			return sft_error(err, SFT_ERR_FORMAT,
							 "safetensors header: __metadata__ \"%s\" must be a string",
							 SHOWN(key));
	}
	return SFT_OK;
}

/* One "name": {dtype, shape, data_offsets} entry; t->name is already set. */
static SftStatus
parse_entry(json_object *entry, uint64_t data_len, SftStTensor *t, SftError *err)
{
	json_object *dtype = NULL;
	json_object *shape = NULL;
	json_object *offsets = NULL;
	const char *dtype_name;
	uint64_t	bytes;
	size_t		itemsize;
	size_t		ndim;
	char		shown[80];
	char		shown_dtype[24];

	if (!json_object_is_type(entry, json_type_object))
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\" must be an object", SHOWN(t->name));
	json_object_object_foreach(entry, key, val)
	{
		if (strcmp(key, "dtype") == 0)
			dtype = val;
		else if (strcmp(key, "shape") == 0)
			shape = val;
		else if (strcmp(key, "data_offsets") == 0)
			offsets = val;
		else
		{
			char		shown_key[40];

			return sft_error(err, SFT_ERR_FORMAT,
							 "safetensors header: tensor \"%s\" has an unknown key \"%s\"",
							 SHOWN(t->name), shown_name(shown_key, sizeof(shown_key), key));
		}
	}
	if (dtype == NULL || shape == NULL || offsets == NULL)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\" lacks \"%s\"", SHOWN(t->name),
						 dtype == NULL ? "dtype" : shape == NULL ? "shape" : "data_offsets");

	/* dtype */
	if (!json_object_is_type(dtype, json_type_string))
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\": dtype must be a string",
						 SHOWN(t->name));
	dtype_name = json_object_get_string(dtype);
	t->dtype = SFT_ST_N_DTYPES;
	for (int d = 0; d < SFT_ST_N_DTYPES; d++)
		if (strcmp(dtype_name, st_dtypes[d].name) == 0)
			t->dtype = (SftStDtype) d;
	if (t->dtype == SFT_ST_N_DTYPES)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\" has an unknown dtype \"%s\"",
						 SHOWN(t->name), shown_name(shown_dtype, sizeof(shown_dtype), dtype_name));
	itemsize = st_dtypes[t->dtype].size;

	/* shape: numel is bounded by the data region, so no product can overflow */
	if (!json_object_is_type(shape, json_type_array))
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\": shape must be a list of integers",
						 SHOWN(t->name));
	ndim = json_object_array_length(shape);
	if (ndim > SFT_ST_MAX_NDIM)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\" has %zu dimensions (at most %d)",
						 SHOWN(t->name), ndim, SFT_ST_MAX_NDIM);
	t->ndim = (int) ndim;
	t->numel = 1;
	for (size_t i = 0; i < ndim; i++)
	{
		if (!json_uint(json_object_array_get_idx(shape, i), &t->shape[i]))
			return sft_error(err, SFT_ERR_FORMAT,
							 "safetensors header: tensor \"%s\": shape[%zu] must be a non-negative integer",
							 SHOWN(t->name), i);
	}
	for (size_t i = 0; i < ndim; i++)
	{
		if (t->shape[i] == 0)
		{
			t->numel = 0;
			break;
		}
		if (t->numel > data_len / t->shape[i])
			return sft_error(err, SFT_ERR_FORMAT,
							 "safetensors header: tensor \"%s\" has more elements than the data region has bytes",
							 SHOWN(t->name));
		t->numel *= t->shape[i];
	}

	/* data_offsets */
	if (!json_object_is_type(offsets, json_type_array) ||
		json_object_array_length(offsets) != 2 ||
		!json_uint(json_object_array_get_idx(offsets, 0), &t->begin) ||
		!json_uint(json_object_array_get_idx(offsets, 1), &t->end))
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\": data_offsets must be two non-negative integers",
						 SHOWN(t->name));
	if (t->begin > t->end || t->end > data_len)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\": data_offsets [%llu, %llu] lie outside the data region of %llu bytes%s",
						 SHOWN(t->name), (unsigned long long) t->begin,
						 (unsigned long long) t->end, (unsigned long long) data_len,
						 t->begin <= t->end ? " (is the file truncated?)" : "");
	bytes = t->end - t->begin;
	if (t->numel > data_len / itemsize || t->numel * itemsize != bytes)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: tensor \"%s\": %llu elements of %s need %llu bytes but data_offsets span %llu",
						 SHOWN(t->name), (unsigned long long) t->numel, st_dtypes[t->dtype].name,
						 (unsigned long long) (t->numel * itemsize), (unsigned long long) bytes);
	return SFT_OK;
}

SftStatus
sft_st_parse_header(const char *json, size_t len, uint64_t data_len, SftStHeader *out,
					SftError *err)
{
	json_tokener *tok;
	json_object *root = NULL;
	enum json_tokener_error jerr;
	const char *nul;
	size_t		consumed;
	size_t		bad;
	size_t		count;
	SftStatus	st = SFT_OK;
	char		shown[80];

	memset(out, 0, sizeof(*out));
	if (len > SFT_ST_MAX_HEADER)
		return sft_error(err, SFT_ERR_LIMIT,
						 "safetensors header of %zu bytes exceeds the limit of %llu", len,
						 (unsigned long long) SFT_ST_MAX_HEADER);
	if ((nul = memchr(json, '\0', len)) != NULL)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: NUL byte at header offset %zu", (size_t) (nul - json));
	if ((bad = sft_utf8_invalid_offset(json, len)) != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: invalid UTF-8 at header offset %zu", bad);
	if (len == 0 || json[0] != '{')
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header must be a JSON object starting with '{'");

	tok = json_tokener_new();
	if (tok == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory parsing a safetensors header");
	root = json_tokener_parse_ex(tok, json, (int) len);
	jerr = json_tokener_get_error(tok);
	consumed = tok->char_offset;
	json_tokener_free(tok);
	if (root == NULL || jerr != json_tokener_success)
	{
		json_object_put(root);
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors header: invalid JSON near header offset %zu: %s", consumed,
						 jerr == json_tokener_continue ? "unexpected end of header"
						 : json_tokener_error_desc(jerr));
	}
	for (; consumed < len; consumed++)
		if (strchr(" \t\r\n", json[consumed]) == NULL)
		{
			json_object_put(root);
			return sft_error(err, SFT_ERR_FORMAT,
							 "safetensors header: unexpected data after the JSON object at header offset %zu",
							 consumed);
		}
	if (!json_object_is_type(root, json_type_object))
	{
		json_object_put(root);
		return sft_error(err, SFT_ERR_FORMAT, "safetensors header must be a JSON object");
	}

	count = (size_t) json_object_object_length(root);
	out->tensors = sft_calloc(count ? count : 1, sizeof(SftStTensor));
	if (out->tensors == NULL)
	{
		json_object_put(root);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for %zu safetensors entries", count);
	}
	out->data_start = 8 + (uint64_t) len;
	out->data_len = data_len;
	{
		json_object_object_foreach(root, key, val)
		{
			SftStTensor *t;

			if (strcmp(key, "__metadata__") == 0)
			{
				if ((st = parse_metadata(val, err)) != SFT_OK)
					break;
				continue;
			}
			t = &out->tensors[out->n_tensors];
			t->name = sft_strndup(key, strlen(key));
			if (t->name == NULL)
			{
				st = sft_error(err, SFT_ERR_NOMEM, "out of memory for safetensors names");
				break;
			}
			out->n_tensors++;
			if (val == NULL)
			{
				st = sft_error(err, SFT_ERR_FORMAT,
							   "safetensors header: tensor \"%s\" must be an object, not null",
							   SHOWN(key));
				break;
			}
			if ((st = parse_entry(val, data_len, t, err)) != SFT_OK)
				break;
		}
	}
	json_object_put(root);
	if (st != SFT_OK)
	{
		sft_st_header_free(out);
		return st;
	}

	/*
	 * Sorted by offset, the tensors must tile the data region: each begins
	 * where the previous ended and the last ends at the end of the data.
	 * This also catches a name given twice in the JSON object (the parser
	 * keeps one of them, so the other's bytes become a gap).
	 */
	qsort(out->tensors, out->n_tensors, sizeof(SftStTensor), compare_by_offset);
	{
		uint64_t	expected = 0;

		for (int i = 0; i < out->n_tensors; i++)
		{
			const SftStTensor *t = &out->tensors[i];

			if (t->begin < expected)
			{
				char		shown_prev[80];

				st = sft_error(err, SFT_ERR_FORMAT,
							   "safetensors header: tensor \"%s\" (bytes %llu..%llu) overlaps tensor \"%s\"",
							   SHOWN(t->name), (unsigned long long) t->begin,
							   (unsigned long long) t->end,
							   shown_name(shown_prev, sizeof(shown_prev), out->tensors[i - 1].name));
				break;
			}
			if (t->begin > expected)
			{
				st = sft_error(err, SFT_ERR_FORMAT,
							   "safetensors header: bytes %llu..%llu of the data region belong to no tensor (before \"%s\")",
							   (unsigned long long) expected, (unsigned long long) t->begin,
							   SHOWN(t->name));
				break;
			}
			expected = t->end;
		}
		if (st == SFT_OK && expected != data_len)
			st = sft_error(err, SFT_ERR_FORMAT,
						   "safetensors: the tensors cover %llu bytes but the data region has %llu",
						   (unsigned long long) expected, (unsigned long long) data_len);
	}
	if (st != SFT_OK)
		sft_st_header_free(out);
	return st;
}

SftStatus
sft_st_read_header(SftReadAtFn read_at, void *ctx, uint64_t file_size, SftStHeader *out,
				   SftError *err)
{
	unsigned char prefix[8];
	uint64_t	header_len = 0;
	char	   *json;
	SftStatus	st;

	memset(out, 0, sizeof(*out));
	if (file_size < 8)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors: file of %llu bytes is too short for the 8-byte header length",
						 (unsigned long long) file_size);
	if ((st = read_at(ctx, 0, prefix, 8, err)) != SFT_OK)
		return st;
	for (int i = 7; i >= 0; i--)
		header_len = (header_len << 8) | prefix[i];
	if (header_len > file_size - 8)
		return sft_error(err, SFT_ERR_FORMAT,
						 "safetensors: header length %llu runs past the end of the file (%llu bytes)",
						 (unsigned long long) header_len, (unsigned long long) file_size);
	if (header_len > SFT_ST_MAX_HEADER)
		return sft_error(err, SFT_ERR_LIMIT,
						 "safetensors: header length %llu exceeds the limit of %llu",
						 (unsigned long long) header_len, (unsigned long long) SFT_ST_MAX_HEADER);
	json = sft_alloc((size_t) header_len + 1);
	if (json == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for a safetensors header of %llu bytes",
						 (unsigned long long) header_len);
	st = read_at(ctx, 8, json, (size_t) header_len, err);
	if (st == SFT_OK)
	{
		json[header_len] = '\0';
		st = sft_st_parse_header(json, (size_t) header_len, file_size - 8 - header_len, out, err);
	}
	sft_free(json);
	return st;
}

/* ---------------------------------------------------------------------------
 * Loading tensors into the model
 * ------------------------------------------------------------------------- */

/* Names the loader skips on purpose (see safetensors.h). */
static int
is_rotary_buffer(const char *name)
{
	const char *p;

	if (strcmp(name, "model.rotary_emb.inv_freq") == 0)
		return 1;
	if (strncmp(name, "model.layers.", 13) != 0)
		return 0;
	p = name + 13;
	if (*p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	return strcmp(p, ".self_attn.rotary_emb.inv_freq") == 0;
}

/*
 * Model tensor names sorted once, for a binary search per file tensor
 * (thousands of tensors in deep models).
 */
typedef struct NamedIndex
{
	const char *name;			/* the model's HF tensor name */
	int			index;			/* its position in the tensor table */
} NamedIndex;

typedef struct NameIndex
{
	NamedIndex *entries;		/* [count] sorted by name */
	int			count;
} NameIndex;

static int
compare_named(const void *a, const void *b)
{
	return strcmp(((const NamedIndex *) a)->name, ((const NamedIndex *) b)->name);
}

static SftStatus
name_index_build(NameIndex *idx, const SftModel *model, SftError *err)
{
	idx->count = sft_model_tensor_count(model);
	idx->entries = sft_alloc(sizeof(NamedIndex) * (size_t) (idx->count ? idx->count : 1));
	if (idx->entries == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory for the tensor name index");
	for (int i = 0; i < idx->count; i++)
	{
		idx->entries[i].name = sft_model_tensor(model, i)->name;
		idx->entries[i].index = i;
	}
	qsort(idx->entries, idx->count, sizeof(NamedIndex), compare_named);
	return SFT_OK;
}

/* The model tensor index of name, or -1. */
static int
name_index_find(const NameIndex *idx, const char *name)
{
	NamedIndex	key = {name, -1};
	const NamedIndex *hit = bsearch(&key, idx->entries, idx->count, sizeof(NamedIndex),
									compare_named);

	return hit ? hit->index : -1;
}

static void
format_shape(char *dst, size_t size, int ndim, const uint64_t *shape)
{
	size_t		used = 0;

	used += snprintf(dst, size, "[");
	for (int i = 0; i < ndim && used < size; i++)
		used += snprintf(dst + used, size - used, "%s%llu", i ? ", " : "",
						 (unsigned long long) shape[i]);
	if (used < size)
		snprintf(dst + used, size - used, "]");
}

/* The header entry agrees with the model tensor (shape, loadable dtype). */
static SftStatus
check_against_model(const SftStTensor *t, const SftParamTensor *p, SftError *err)
{
	uint64_t	want[2] = {(uint64_t) p->shape[0], (uint64_t) p->shape[1]};
	int			same = t->ndim == p->ndim;
	char		have_s[128];
	char		want_s[64];
	char		shown[80];

	for (int i = 0; same && i < p->ndim; i++)
		same = t->shape[i] == want[i];
	if (!same)
	{
		format_shape(have_s, sizeof(have_s), t->ndim, t->shape);
		format_shape(want_s, sizeof(want_s), p->ndim, want);
		return sft_error(err, SFT_ERR_INVALID,
						 "tensor \"%s\" has shape %s but config.json implies %s",
						 SHOWN(t->name), have_s, want_s);
	}
	if (t->dtype != SFT_ST_F32 && t->dtype != SFT_ST_BF16 && t->dtype != SFT_ST_F16)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "tensor \"%s\" has dtype %s; only F32, BF16 and F16 weights can be loaded",
						 SHOWN(t->name), st_dtypes[t->dtype].name);
	return SFT_OK;
}

static SftStatus
check_finite(const float *x, size_t n, size_t first_index, const char *name, SftError *err)
{
	int			all_finite = 1;
	char		shown[80];

	/* One branch-free pass the compiler vectorises; search only on failure. */
	for (size_t i = 0; i < n; i++)
		all_finite &= isfinite(x[i]) ? 1 : 0;
	if (all_finite)
		return SFT_OK;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return sft_error(err, SFT_ERR_INVALID,
							 "tensor \"%s\" holds a non-finite value (%g) at element %zu",
							 SHOWN(name), (double) x[i], first_index + i);
	return SFT_OK;
}

/* Read one tensor (validated offsets) into dst [numel] as fp32. */
static SftStatus
load_one(const SftStHeader *h, const SftStTensor *t, SftReadAtFn read_at, void *ctx,
		 float *dst, uint16_t *staging, SftError *err)
{
	uint64_t	offset = h->data_start + t->begin;
	SftStatus	st;

	if (t->dtype == SFT_ST_F32)
	{
		/* Straight into the slab, in bounded pieces so a callback can stream. */
		for (size_t done = 0; done < t->numel;)
		{
			size_t		n = t->numel - done;

			if (n > ST_WRITE_CHUNK / sizeof(float))
				n = ST_WRITE_CHUNK / sizeof(float);
			if ((st = read_at(ctx, offset + done * sizeof(float), dst + done,
							  n * sizeof(float), err)) != SFT_OK)
				return st;
			if ((st = check_finite(dst + done, n, done, t->name, err)) != SFT_OK)
				return st;
			done += n;
		}
		return SFT_OK;
	}
	for (size_t done = 0; done < t->numel;)
	{
		size_t		n = t->numel - done;

		if (n > ST_STAGING_ELEMS)
			n = ST_STAGING_ELEMS;
		if ((st = read_at(ctx, offset + done * 2, staging, n * 2, err)) != SFT_OK)
			return st;
		if (t->dtype == SFT_ST_BF16)
			for (size_t i = 0; i < n; i++)
				dst[done + i] = sft_bf16_to_f32(staging[i]);
		else
			for (size_t i = 0; i < n; i++)
				dst[done + i] = sft_f16_to_f32(staging[i]);
		if ((st = check_finite(dst + done, n, done, t->name, err)) != SFT_OK)
			return st;
		done += n;
	}
	return SFT_OK;
}

SftStatus
sft_st_read_f32(const SftStHeader *h, const SftStTensor *t, SftReadAtFn read_at, void *ctx,
				float *dst, SftError *err)
{
	uint16_t   *staging = NULL;
	SftStatus	st;
	char		shown[80];

	if (t->dtype != SFT_ST_F32 && t->dtype != SFT_ST_BF16 && t->dtype != SFT_ST_F16)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "tensor \"%s\" has dtype %s; only F32, BF16 and F16 weights can be loaded",
						 SHOWN(t->name), st_dtypes[t->dtype].name);
	if (t->dtype != SFT_ST_F32 &&
		(staging = sft_alloc(ST_STAGING_ELEMS * sizeof(uint16_t))) == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory loading safetensors");
	st = load_one(h, t, read_at, ctx, dst, staging, err);
	sft_free(staging);
	return st;
}

SftStatus
sft_st_load_tensors(const SftStHeader *h, SftReadAtFn read_at, void *ctx, SftModel *model,
					uint8_t *seen, SftError *err)
{
	const SftLlamaConfig *cfg = sft_model_config(model);
	float	   *params = sft_model_params(model);
	NameIndex	idx;
	int		   *target;			/* [n_tensors] model tensor index, or -1: skip */
	uint16_t   *staging = NULL;
	SftStatus	st = SFT_OK;
	char		shown[80];

	if ((st = name_index_build(&idx, model, err)) != SFT_OK)
		return st;
	target = sft_alloc(sizeof(int) * (size_t) (h->n_tensors ? h->n_tensors : 1));
	if (target == NULL)
	{
		sft_free(idx.entries);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory loading safetensors");
	}

	/* Match and check every entry before reading any data. */
	for (int i = 0; i < h->n_tensors && st == SFT_OK; i++)
	{
		const SftStTensor *t = &h->tensors[i];
		int			m = name_index_find(&idx, t->name);

		target[i] = m;
		if (m >= 0)
		{
			if (seen[m])
				st = sft_error(err, SFT_ERR_INVALID, "tensor \"%s\" appears more than once",
							   SHOWN(t->name));
			else if ((st = check_against_model(t, sft_model_tensor(model, m), err)) == SFT_OK)
				seen[m] = 1;
		}
		else if (is_rotary_buffer(t->name))
			continue;
		else if (strcmp(t->name, "lm_head.weight") == 0 && cfg->tie_word_embeddings)
		{
			uint64_t	v = (uint64_t) cfg->vocab_size;
			uint64_t	c = (uint64_t) cfg->hidden_size;

			if (t->ndim != 2 || t->shape[0] != v || t->shape[1] != c)
				st = sft_error(err, SFT_ERR_INVALID,
							   "tensor \"lm_head.weight\" (ignored: tie_word_embeddings is true) has a shape other than [%llu, %llu]",
							   (unsigned long long) v, (unsigned long long) c);
		}
		else
			st = sft_error(err, SFT_ERR_INVALID,
						   "tensor \"%s\" is not part of a LlamaForCausalLM with this config.json",
						   SHOWN(t->name));
	}
	if (st == SFT_OK)
	{
		staging = sft_alloc(ST_STAGING_ELEMS * sizeof(uint16_t));
		if (staging == NULL)
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory loading safetensors");
	}
	for (int i = 0; i < h->n_tensors && st == SFT_OK; i++)
		if (target[i] >= 0)
			st = load_one(h, &h->tensors[i], read_at, ctx,
						  params + sft_model_tensor(model, target[i])->offset, staging, err);
	sft_free(staging);
	sft_free(target);
	sft_free(idx.entries);
	return st;
}

SftStatus
sft_st_check_complete(const SftModel *model, const uint8_t *seen, SftError *err)
{
	int			n = sft_model_tensor_count(model);
	int			missing = 0;

	for (int i = 0; i < n; i++)
		missing += !seen[i];
	for (int i = 0; i < n; i++)
		if (!seen[i])
			return sft_error(err, SFT_ERR_INVALID,
							 "tensor \"%s\" is missing from the weights (%d of %d tensors missing)",
							 sft_model_tensor(model, i)->name, missing, n);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * A buffer as a source
 * ------------------------------------------------------------------------- */

SftStatus
sft_st_buffer_read_at(void *ctx, uint64_t offset, void *dst, size_t len, SftError *err)
{
	const SftStBufferSource *src = ctx;

	if (offset > src->len || len > src->len - offset)
		return sft_error(err, SFT_ERR_FORMAT,
						 "read of %zu bytes at offset %llu runs past the end of the data (%zu bytes)",
						 len, (unsigned long long) offset, src->len);
	memcpy(dst, src->data + offset, len);
	return SFT_OK;
}

SftStatus
sft_safetensors_load_buffer(const void *data, size_t len, SftModel *model, SftError *err)
{
	SftStBufferSource src = {data, len};
	SftStHeader header;
	uint8_t    *seen;
	SftStatus	st;

	seen = sft_calloc((size_t) sft_model_tensor_count(model) + 1, 1);
	if (seen == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory loading safetensors");
	st = sft_st_read_header(sft_st_buffer_read_at, &src, len, &header, err);
	if (st == SFT_OK)
	{
		st = sft_st_load_tensors(&header, sft_st_buffer_read_at, &src, model, seen, err);
		if (st == SFT_OK)
			st = sft_st_check_complete(model, seen, err);
		sft_st_header_free(&header);
	}
	sft_free(seen);
	return st;
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

SftStatus
sft_st_write(const SftStWriteTensor *tensors, int n, SftWriteFn write, void *ctx,
			 SftError *err)
{
	SftBuf		header;
	uint64_t	offset = 0;
	unsigned char prefix[8];
	SftStatus	st = SFT_OK;
	char		entry[SFT_TENSOR_NAME_MAX + 160];

	sft_buf_init(&header);
	if (sft_buf_append_str(&header, "{\"__metadata__\":{\"format\":\"pt\"}") != SFT_OK)
		st = SFT_ERR_NOMEM;
	for (int i = 0; i < n && st == SFT_OK; i++)
	{
		const SftStWriteTensor *t = &tensors[i];
		uint64_t	bytes = (uint64_t) t->numel * sizeof(float);
		int			len;

		if (t->ndim == 2)
			len = snprintf(entry, sizeof(entry),
						   ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
						   t->name, (long long) t->shape[0], (long long) t->shape[1],
						   (unsigned long long) offset, (unsigned long long) (offset + bytes));
		else
			len = snprintf(entry, sizeof(entry),
						   ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
						   t->name, (long long) t->shape[0],
						   (unsigned long long) offset, (unsigned long long) (offset + bytes));
		if (len < 0 || (size_t) len >= sizeof(entry))
		{
			sft_buf_free(&header);
			return sft_error(err, SFT_ERR_INTERNAL, "safetensors entry for %s is too long",
							 t->name);
		}
		if (sft_buf_append(&header, entry, (size_t) len) != SFT_OK)
			st = SFT_ERR_NOMEM;
		offset += bytes;
	}
	if (st == SFT_OK && sft_buf_append_str(&header, "}") != SFT_OK)
		st = SFT_ERR_NOMEM;
	/* Pad with spaces so the data region starts 8-byte aligned. */
	while (st == SFT_OK && (8 + header.len) % 8 != 0)
		if (sft_buf_append_str(&header, " ") != SFT_OK)
			st = SFT_ERR_NOMEM;
	if (st != SFT_OK)
	{
		sft_buf_free(&header);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory writing the safetensors header");
	}

	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char) ((uint64_t) header.len >> (8 * i));
	st = write(ctx, prefix, 8, err);
	if (st == SFT_OK)
		st = write(ctx, header.data, header.len, err);
	sft_buf_free(&header);
	for (int i = 0; i < n && st == SFT_OK; i++)
	{
		const char *data = (const char *) tensors[i].data;
		size_t		bytes = tensors[i].numel * sizeof(float);

		for (size_t done = 0; done < bytes && st == SFT_OK;)
		{
			size_t		chunk = bytes - done < ST_WRITE_CHUNK ? bytes - done : ST_WRITE_CHUNK;

			st = write(ctx, data + done, chunk, err);
			done += chunk;
		}
	}
	return st;
}

SftStatus
sft_safetensors_write(const SftModel *model, SftWriteFn write, void *ctx, SftError *err)
{
	/* Only read through this pointer: the accessor is not const-qualified. */
	const float *params = sft_model_params((SftModel *) model);
	int			n = sft_model_tensor_count(model);
	SftStWriteTensor *tensors;
	SftStatus	st;

	tensors = sft_alloc(sizeof(SftStWriteTensor) * (size_t) (n ? n : 1));
	if (tensors == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory writing safetensors");
	for (int i = 0; i < n; i++)
	{
		const SftParamTensor *t = sft_model_tensor(model, i);

		tensors[i].name = t->name;
		tensors[i].ndim = t->ndim;
		tensors[i].shape[0] = t->shape[0];
		tensors[i].shape[1] = t->ndim == 2 ? t->shape[1] : 0;
		tensors[i].numel = t->numel;
		tensors[i].data = params + t->offset;
	}
	st = sft_st_write(tensors, n, write, ctx, err);
	sft_free(tensors);
	return st;
}
