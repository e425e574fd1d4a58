/*
 * test_weights.c: safetensors reading and writing (F32/BF16/F16, sharded
 * directories, every kind of damaged file), byte-exact round trips, and the
 * checkpoint format (round trip with AdamW state, corruption detection).
 *
 * Test files are built here byte by byte from an entry list, so each
 * corruption is one edit of a valid file.
 */
#define _GNU_SOURCE				/* memmem */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "quant.h"
#include "safetensors.h"
#include "tap.h"

/* A tiny untied model: C=8, L=2, NH=4, NKV=2, HD=2 (C / NH), F=12, V=16. */
static const char *TINY_UNTIED =
"{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
" \"num_key_value_heads\": 2, \"intermediate_size\": 12, \"vocab_size\": 16,"
" \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": false}";
static const char *TINY_TIED =
"{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
" \"num_key_value_heads\": 2, \"intermediate_size\": 12, \"vocab_size\": 16,"
" \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true}";

static char tmp_root[256];

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

static SftModel *
new_model(const char *config_json, uint64_t seed)
{
	SftLlamaConfig cfg;
	SftModel   *model = NULL;
	SftError	err;
	SftRng		rng;
	float	   *p;

	sft_error_clear(&err);
	if (sft_llama_config_parse(config_json, strlen(config_json), &cfg, &err) != SFT_OK ||
		sft_model_new(&cfg, &model, &err) != SFT_OK)
	{
		printf("# cannot build the test model: %s\n", err.message);
		exit(1);
	}
	/* Distinct values everywhere (norms too), so any misplaced byte shows. */
	sft_rng_seed(&rng, seed);
	p = sft_model_params(model);
	for (size_t i = 0; i < sft_model_num_params(model); i++)
		p[i] = sft_rng_normal(&rng);
	return model;
}

static int
same_params(SftModel *a, SftModel *b)
{
	return sft_model_num_params(a) == sft_model_num_params(b) &&
		memcmp(sft_model_params(a), sft_model_params(b),
			   sft_model_num_params(a) * sizeof(float)) == 0;
}

/* One header entry of a hand-made file. */
typedef struct Ent
{
	char		name[128];
	char		dtype[16];
	char		shape[64];		/* JSON list text */
	long long	begin;
	long long	end;
} Ent;

/* One F32 entry per model tensor, in table order, back to back. */
static int
model_entries(SftModel *model, Ent *e)
{
	int			n = sft_model_tensor_count(model);
	long long	off = 0;

	for (int i = 0; i < n; i++)
	{
		const SftParamTensor *t = sft_model_tensor(model, i);

		snprintf(e[i].name, sizeof(e[i].name), "%s", t->name);
		snprintf(e[i].dtype, sizeof(e[i].dtype), "F32");
		if (t->ndim == 2)
			snprintf(e[i].shape, sizeof(e[i].shape), "[%lld, %lld]",
					 (long long) t->shape[0], (long long) t->shape[1]);
		else
			snprintf(e[i].shape, sizeof(e[i].shape), "[%lld]", (long long) t->shape[0]);
		e[i].begin = off;
		e[i].end = off + (long long) t->numel * 4;
		off = e[i].end;
	}
	return n;
}

static int
find_ent(Ent *e, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(e[i].name, name) == 0)
			return i;
	return -1;
}

static long long
dtype_bytes(const char *dtype)
{
	if (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0)
		return 2;
	if (strcmp(dtype, "I64") == 0 || strcmp(dtype, "F64") == 0)
		return 8;
	return 4;
}

/* Offsets recomputed back to back from each entry's dtype and shape text. */
static void
relayout(Ent *e, int n, long long *len)
{
	long long	off = 0;

	for (int i = 0; i < n; i++)
	{
		long long	numel = 1;
		const char *p = e[i].shape;

		while (*p)
		{
			if (*p >= '0' && *p <= '9')
			{
				numel *= strtoll(p, (char **) &p, 10);
				continue;
			}
			p++;
		}
		e[i].begin = off;
		e[i].end = off + numel * dtype_bytes(e[i].dtype);
		off = e[i].end;
	}
	*len = off;
}

/*
 * A file: 8-byte length, header (entries plus extra JSON members, if any),
 * then data_len bytes of data (zeros when data is NULL).
 */
static void
build_file(SftBuf *out, const Ent *e, int n, const char *extra, const void *data,
		   size_t data_len)
{
	SftBuf		h;
	char		line[1024];
	unsigned char prefix[8];

	sft_buf_init(&h);
	sft_buf_append_str(&h, "{");
	if (extra)
	{
		sft_buf_append_str(&h, extra);
		if (n > 0)
			sft_buf_append_str(&h, ",");
	}
	for (int i = 0; i < n; i++)
	{
		snprintf(line, sizeof(line),
				 "%s\"%s\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%lld, %lld]}",
				 i ? ", " : "", e[i].name, e[i].dtype, e[i].shape, e[i].begin, e[i].end);
		sft_buf_append_str(&h, line);
	}
	sft_buf_append_str(&h, "}");
	sft_buf_init(out);
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char) ((uint64_t) h.len >> (8 * i));
	sft_buf_append(out, (char *) prefix, 8);
	sft_buf_append(out, h.data, h.len);
	sft_buf_reserve(out, data_len);
	if (data)
		memcpy(out->data + out->len, data, data_len);
	else
		memset(out->data + out->len, 0, data_len);
	out->len += data_len;
	sft_buf_free(&h);
}

static long long
data_end(const Ent *e, int n)
{
	long long	end = 0;

	for (int i = 0; i < n; i++)
		if (e[i].end > end)
			end = e[i].end;
	return end;
}

/* Load buf into a fresh model of config; expect status and needle in the message. */
static void
expect_load(const SftBuf *buf, const char *config, SftStatus want, const char *needle,
			const char *what)
{
	SftModel   *model = new_model(config, 99);
	SftError	err;
	SftStatus	st;

	sft_error_clear(&err);
	st = sft_safetensors_load_buffer(buf->data, buf->len, model, &err);
	TAP_OK(st == want && strstr(err.message, needle) != NULL,
		   "%s -> %s (got %s: %s)", what, sft_status_name(want), sft_status_name(st), err.message);
	sft_model_free(model);
}

/* The entries of a tiny untied model, edited by the caller, zero data. */
static void
expect_edit(void (*edit) (Ent *e, int *n, long long *len), const char *extra, SftStatus want,
			const char *needle, const char *what)
{
	SftModel   *model = new_model(TINY_UNTIED, 1);
	Ent			e[64];
	int			n = model_entries(model, e);
	long long	len;
	SftBuf		buf;

	len = data_end(e, n);
	if (edit)
		edit(e, &n, &len);
	build_file(&buf, e, n, extra, NULL, (size_t) len);
	expect_load(&buf, TINY_UNTIED, want, needle, what);
	sft_buf_free(&buf);
	sft_model_free(model);
}

static void
write_file(const char *path, const void *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
	{
		printf("# cannot write %s\n", path);
		exit(1);
	}
}

static int
read_file(const char *path, SftBuf *out)
{
	FILE	   *f = fopen(path, "rb");
	char		chunk[65536];
	size_t		n;

	sft_buf_init(out);
	if (f == NULL)
		return 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sft_buf_append(out, chunk, n);
	fclose(f);
	return 1;
}

static void
make_dir(char *path, size_t size, const char *name)
{
	snprintf(path, size, "%s/%s", tmp_root, name);
	mkdir(path, 0755);
}

static void
write_text(const char *dir, const char *name, const char *text)
{
	char		path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_file(path, text, strlen(text));
}

/* ---------------------------------------------------------------------------
 * Conversions
 * ------------------------------------------------------------------------- */

static void
test_conversions(void)
{
	int			bad = 0;

	/* Every fp16 pattern against an independent formula. */
	for (uint32_t h = 0; h < 65536; h++)
	{
		int			sign = (h >> 15) ? -1 : 1;
		int			exponent = (h >> 10) & 0x1f;
		int			mantissa = h & 0x3ff;
		float		got = sft_f16_to_f32((uint16_t) h);
		float		want;

		if (exponent == 0)
			want = (float) (sign * ldexp(mantissa, -24));
		else if (exponent == 31)
			want = mantissa ? NAN : sign * INFINITY;
		else
			want = (float) (sign * ldexp(1024 + mantissa, exponent - 25));
		if (isnan(want) ? !isnan(got) : (got != want || signbit(got) != signbit(want)))
			bad++;
	}
	TAP_OK(bad == 0, "fp16 -> fp32 exact for all 65536 patterns (%d wrong)", bad);
	TAP_OK(sft_f16_to_f32(0x3c00) == 1.0f && sft_f16_to_f32(0xc000) == -2.0f &&
		   sft_f16_to_f32(0x7bff) == 65504.0f && sft_f16_to_f32(0x0001) == ldexpf(1, -24),
		   "fp16 landmarks: 1, -2, 65504, smallest subnormal");
	bad = 0;
	for (uint32_t b = 0; b < 65536; b++)
	{
		uint32_t	bits = b << 16;
		float		want;
		float		got = sft_bf16_to_f32((uint16_t) b);

		memcpy(&want, &bits, 4);
		if (memcmp(&want, &got, 4) != 0)
			bad++;
	}
	TAP_OK(bad == 0 && sft_bf16_to_f32(0x3f80) == 1.0f && sft_bf16_to_f32(0xc0a0) == -5.0f,
		   "bf16 -> fp32 is the upper half, all patterns (%d wrong)", bad);
	TAP_OK(strcmp(sft_st_dtype_name(SFT_ST_BF16), "BF16") == 0 &&
		   sft_st_dtype_size(SFT_ST_F64) == 8 && sft_st_dtype_size(SFT_ST_F8_E4M3) == 1,
		   "dtype names and sizes");
}

/* ---------------------------------------------------------------------------
 * Round trips through safetensors buffers
 * ------------------------------------------------------------------------- */

static void
test_round_trip(const char *config, const char *label)
{
	SftModel   *a = new_model(config, 7);
	SftModel   *b = new_model(config, 8);
	SftBuf		first;
	SftBuf		second;
	SftError	err;
	SftStatus	st;

	sft_buf_init(&first);
	sft_buf_init(&second);
	sft_error_clear(&err);
	st = sft_safetensors_write(a, sft_buf_write, &first, &err);
	TAP_OK(st == SFT_OK && first.len > 8, "%s: write safetensors (%s)", label, err.message);
	TAP_OK(first.data[8] == '{' && (first.len - sft_model_num_params(a) * 4) % 8 == 0,
		   "%s: header starts with '{' and data is 8-byte aligned", label);
	TAP_OK(memmem(first.data, first.len, "\"__metadata__\":{\"format\":\"pt\"}", 30) != NULL,
		   "%s: metadata format pt", label);
	st = sft_safetensors_load_buffer(first.data, first.len, b, &err);
	TAP_OK(st == SFT_OK && same_params(a, b), "%s: load gives the same fp32 values (%s)", label,
		   err.message);
	st = sft_safetensors_write(b, sft_buf_write, &second, &err);
	TAP_OK(st == SFT_OK && second.len == first.len &&
		   memcmp(first.data, second.data, first.len) == 0,
		   "%s: load then save reproduces the file byte for byte", label);
	sft_buf_free(&first);
	sft_buf_free(&second);
	sft_model_free(a);
	sft_model_free(b);
}

/* A file written "by someone else": reversed order, BF16/F16/F32 mixed. */
static void
test_foreign_dtypes(void)
{
	SftModel   *ref = new_model(TINY_UNTIED, 3);
	SftModel   *got = new_model(TINY_UNTIED, 4);
	const float *p = sft_model_params(ref);
	int			n = sft_model_tensor_count(ref);
	Ent			e[64];
	Ent			rev[64];
	unsigned char *data;
	size_t		off = 0;
	SftBuf		file;
	SftError	err;
	SftStatus	st;
	SftRng		rng;

	model_entries(ref, e);
	data = calloc(sft_model_num_params(ref), 4);
	sft_rng_seed(&rng, 5);

	/*
	 * Tensor i gets dtype F32, BF16 or F16 by i % 3; reference values are
	 * made representable in that dtype so the expected fp32 is exact.
	 */
	for (int k = 0; k < n; k++)
	{
		int			i = n - 1 - k;	/* data region in reverse table order */
		const SftParamTensor *t = sft_model_tensor(ref, i);
		float	   *dst = sft_model_params(ref) + t->offset;
		int			kind = i % 3;
		size_t		item = kind == 0 ? 4 : 2;

		rev[k] = e[i];
		snprintf(rev[k].dtype, sizeof(rev[k].dtype), "%s",
				 kind == 0 ? "F32" : kind == 1 ? "BF16" : "F16");
		rev[k].begin = (long long) off;
		rev[k].end = (long long) (off + t->numel * item);
		for (size_t j = 0; j < t->numel; j++)
		{
			if (kind == 0)
				memcpy(data + off + 4 * j, &dst[j], 4);
			else if (kind == 1)
			{
				uint32_t	bits;
				uint16_t	b16;

				memcpy(&bits, &dst[j], 4);
				b16 = (uint16_t) (bits >> 16);
				dst[j] = sft_bf16_to_f32(b16);
				memcpy(data + off + 2 * j, &b16, 2);
			}
			else
			{
				/* random finite fp16 patterns incl. subnormals */
				uint16_t	h16;

				do
					h16 = (uint16_t) sft_rng_next(&rng);
				while (((h16 >> 10) & 0x1f) == 0x1f);
				dst[j] = sft_f16_to_f32(h16);
				memcpy(data + off + 2 * j, &h16, 2);
			}
		}
		off += t->numel * item;
	}
	(void) p;
	build_file(&file, rev, n, "\"__metadata__\": {\"format\": \"pt\", \"note\": \"x\"}", data, off);
	sft_error_clear(&err);
	st = sft_safetensors_load_buffer(file.data, file.len, got, &err);
	TAP_OK(st == SFT_OK && same_params(ref, got),
		   "reversed order, mixed F32/BF16/F16 file loads exactly (%s)", err.message);
	sft_buf_free(&file);
	free(data);
	sft_model_free(ref);
	sft_model_free(got);
}

/* ---------------------------------------------------------------------------
 * Damaged and unexpected files
 * ------------------------------------------------------------------------- */

static void edit_dtype_i64(Ent *e, int *n, long long *len) { snprintf(e[0].dtype, 16, "I64"); relayout(e, *n, len); }
static void edit_dtype_unknown(Ent *e, int *n, long long *len) { snprintf(e[1].dtype, 16, "Q4"); }
static void edit_dtype_f64(Ent *e, int *n, long long *len) { snprintf(e[1].dtype, 16, "F64"); }
static void edit_shape(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[8, 16]"); }
static void edit_ndim(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[128]"); }
static void edit_ndim3(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[16, 8, 1]"); }
static void edit_size_mismatch(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[16, 7]"); }
static void edit_beyond(Ent *e, int *n, long long *len) { e[*n - 1].end += 4; }
static void edit_begin_after_end(Ent *e, int *n, long long *len) { long long t = e[2].begin; e[2].begin = e[2].end; e[2].end = t; }
static void edit_overlap(Ent *e, int *n, long long *len) { e[2].begin -= 4; e[2].end -= 4; }
static void edit_gap(Ent *e, int *n, long long *len) { for (int i = 3; i < *n; i++) { e[i].begin += 8; e[i].end += 8; } *len += 8; }
static void edit_trailing(Ent *e, int *n, long long *len) { *len += 4; }
static void edit_missing(Ent *e, int *n, long long *len) { *len -= e[*n - 1].end - e[*n - 1].begin; (*n)--; }
static void edit_unknown_tensor(Ent *e, int *n, long long *len) { Ent x = e[0]; snprintf(x.name, 128, "model.layers.0.self_attn.q_proj.bias"); snprintf(x.shape, 64, "[2]"); x.begin = *len; x.end = *len + 8; e[(*n)++] = x; *len += 8; }
static void edit_rotary(Ent *e, int *n, long long *len) { Ent x = e[0]; snprintf(x.name, 128, "model.layers.1.self_attn.rotary_emb.inv_freq"); snprintf(x.shape, 64, "[1]"); x.begin = *len; x.end = *len + 4; e[(*n)++] = x; x.begin += 4; x.end += 4; snprintf(x.name, 128, "model.rotary_emb.inv_freq"); e[(*n)++] = x; *len += 8; }
static void edit_rotary_bad(Ent *e, int *n, long long *len) { Ent x = e[0]; snprintf(x.name, 128, "model.layers.x.self_attn.rotary_emb.inv_freq"); snprintf(x.shape, 64, "[1]"); x.begin = *len; x.end = *len + 4; e[(*n)++] = x; *len += 4; }
static void edit_duplicate_name(Ent *e, int *n, long long *len) { snprintf(e[3].name, 128, "%s", e[2].name); }
static void edit_negative_dim(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[-16, -8]"); }
static void edit_float_dim(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[16.0, 8]"); }
static void edit_shape_not_list(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "128"); }
static void edit_many_dims(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[1,1,1,1,1,1,1,1,16,8]"); }
static void edit_huge_dims(Ent *e, int *n, long long *len) { snprintf(e[0].shape, 64, "[4294967296, 4294967296, 4294967296]"); }
static void edit_huge_offsets(Ent *e, int *n, long long *len) { e[*n - 1].end = 9223372036854775807LL; }
static void edit_empty_name(Ent *e, int *n, long long *len) { e[1].name[0] = '\0'; }

static void
expect_header_text(const char *header, size_t data_len, SftStatus want, const char *needle,
				   const char *what)
{
	SftBuf		buf;
	unsigned char prefix[8];
	size_t		hl = strlen(header);

	sft_buf_init(&buf);
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char) ((uint64_t) hl >> (8 * i));
	sft_buf_append(&buf, (char *) prefix, 8);
	sft_buf_append(&buf, header, hl);
	sft_buf_reserve(&buf, data_len);
	memset(buf.data + buf.len, 0, data_len);
	buf.len += data_len;
	expect_load(&buf, TINY_UNTIED, want, needle, what);
	sft_buf_free(&buf);
}

/* A source of a huge virtual file: the limit test needs no 100 MB buffer. */
static SftStatus
huge_read_at(void *ctx, uint64_t offset, void *dst, size_t len, SftError *err)
{
	memset(dst, 0, len);
	if (offset == 0 && len == 8)
	{
		uint64_t	n = (uint64_t) 200 << 20;

		memcpy(dst, &n, 8);
	}
	return SFT_OK;
}

static void
test_damaged(void)
{
	SftModel   *model = new_model(TINY_UNTIED, 1);
	SftBuf		good;
	SftBuf		buf;
	SftError	err;
	SftStHeader header;
	int			crashes_would_show = 0;
	int			accepted_prefixes = 0;
	int			flips_ok = 0;
	int			flips_err = 0;
	size_t		header_end;

	sft_buf_init(&good);
	sft_safetensors_write(model, sft_buf_write, &good, &err);
	header_end = 8 + ((unsigned char) good.data[0] | (size_t) (unsigned char) good.data[1] << 8);

	/* framing */
	sft_buf_init(&buf);
	sft_buf_append(&buf, good.data, 5);
	expect_load(&buf, TINY_UNTIED, SFT_ERR_FORMAT, "too short", "5-byte file");
	sft_buf_free(&buf);
	sft_buf_init(&buf);
	sft_buf_append(&buf, good.data, good.len);
	buf.data[3] = 1;			/* header length + 2^24 */
	expect_load(&buf, TINY_UNTIED, SFT_ERR_FORMAT, "runs past the end", "header length beyond the file");
	buf.data[3] = 0;
	buf.data[7] = 0x80;			/* header length ~ 2^63 */
	expect_load(&buf, TINY_UNTIED, SFT_ERR_FORMAT, "runs past the end", "header length 2^63");
	sft_buf_free(&buf);
	sft_error_clear(&err);
	TAP_OK(sft_st_read_header(huge_read_at, NULL, (uint64_t) 1 << 40, &header, &err) == SFT_ERR_LIMIT &&
		   strstr(err.message, "exceeds the limit"), "header of 200 MB in a 1 TB file: limit (%s)",
		   err.message);

	/* every truncation of a valid file is an error, never a crash */
	for (size_t len = 0; len < good.len; len++)
	{
		SftModel   *m = new_model(TINY_UNTIED, 2);

		sft_error_clear(&err);
		if (sft_safetensors_load_buffer(good.data, len, m, &err) == SFT_OK)
			accepted_prefixes++;
		sft_model_free(m);
	}
	TAP_OK(accepted_prefixes == 0, "all %zu truncations rejected (%d accepted)", good.len,
		   accepted_prefixes);
	/* every single-byte change in the header: clean accept or clean error */
	for (size_t pos = 0; pos < header_end; pos++)
	{
		SftModel   *m = new_model(TINY_UNTIED, 2);

		sft_buf_init(&buf);
		sft_buf_append(&buf, good.data, good.len);
		buf.data[pos] ^= 0x5a;
		sft_error_clear(&err);
		if (sft_safetensors_load_buffer(buf.data, buf.len, m, &err) == SFT_OK)
			flips_ok++;
		else
			flips_err += err.message[0] != '\0';
		sft_buf_free(&buf);
		sft_model_free(m);
	}
	TAP_OK(flips_err > 0 && (size_t) (flips_ok + flips_err) == header_end,
		   "header byte flips: %d rejected with a message, %d accepted", flips_err, flips_ok);
	(void) crashes_would_show;

	/* header text */
	expect_header_text("{\"a\": ", 0, SFT_ERR_FORMAT, "invalid JSON", "truncated JSON");
	expect_header_text("[1, 2]", 0, SFT_ERR_FORMAT, "starting with '{'", "array header");
	expect_header_text("{} {}", 0, SFT_ERR_FORMAT, "unexpected data after", "two objects");
	expect_header_text("{}    ", 0, SFT_ERR_INVALID, "is missing", "{} with padding: all tensors missing");
	expect_header_text("{\"x\": 1}", 0, SFT_ERR_FORMAT, "must be an object", "entry not an object");
	expect_header_text("{\"x\": null}", 0, SFT_ERR_FORMAT, "must be an object", "null entry");
	expect_header_text("{\"__metadata__\": {\"format\": 1}}", 0, SFT_ERR_FORMAT,
					   "__metadata__ \"format\" must be a string", "metadata value not a string");
	expect_header_text("{\"__metadata__\": [1]}", 0, SFT_ERR_FORMAT, "__metadata__", "metadata not an object");
	expect_header_text("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, SFT_ERR_FORMAT,
					   "lacks \"data_offsets\"", "entry without data_offsets");
	expect_header_text("{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, SFT_ERR_FORMAT,
					   "lacks \"dtype\"", "entry without dtype");
	expect_header_text("{\"x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, SFT_ERR_FORMAT,
					   "lacks \"shape\"", "entry without shape");
	expect_header_text("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"k\": 1}}",
					   4, SFT_ERR_FORMAT, "unknown key \"k\"", "entry with an unknown key");
	expect_header_text("{\"x\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
					   SFT_ERR_FORMAT, "dtype must be a string", "numeric dtype");
	expect_header_text("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
					   SFT_ERR_FORMAT, "data_offsets must be two", "one offset");
	expect_header_text("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, -4]}}", 4,
					   SFT_ERR_FORMAT, "data_offsets must be two", "negative offset");
	expect_header_text("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \"0-4\"}}", 4,
					   SFT_ERR_FORMAT, "data_offsets must be two", "string offsets");
	{
		const char	h[] = "{\"x\xc3\xa9\": 1}";

		expect_header_text(h, 0, SFT_ERR_FORMAT, "tensor \"x??\" must be an object",
						   "non-ASCII name shown printable");
	}
	{
		SftBuf		b2;
		const char	h[] = "{\"a\": \"\xc3\x28\"}";
		unsigned char prefix[8] = {sizeof(h) - 1};

		sft_buf_init(&b2);
		sft_buf_append(&b2, (char *) prefix, 8);
		sft_buf_append(&b2, h, sizeof(h) - 1);
		expect_load(&b2, TINY_UNTIED, SFT_ERR_FORMAT, "invalid UTF-8", "invalid UTF-8 header");
		b2.data[8 + 2] = '\0';
		expect_load(&b2, TINY_UNTIED, SFT_ERR_FORMAT, "NUL byte", "NUL byte in header");
		sft_buf_free(&b2);
	}

	/* entries */
	expect_edit(edit_dtype_i64, NULL, SFT_ERR_UNSUPPORTED,
				"tensor \"model.embed_tokens.weight\" has dtype I64", "I64 model tensor");
	expect_edit(edit_dtype_unknown, NULL, SFT_ERR_FORMAT, "unknown dtype \"Q4\"", "unknown dtype");
	expect_edit(edit_dtype_f64, NULL, SFT_ERR_FORMAT, "8 elements of F64 need 64 bytes but data_offsets span 32",
				"F64 with F32-sized span");
	expect_edit(edit_shape, NULL, SFT_ERR_INVALID,
				"\"model.embed_tokens.weight\" has shape [8, 16] but config.json implies [16, 8]",
				"transposed shape");
	expect_edit(edit_ndim, NULL, SFT_ERR_INVALID, "has shape [128] but", "flattened shape");
	expect_edit(edit_ndim3, NULL, SFT_ERR_INVALID, "has shape [16, 8, 1] but", "3-d shape");
	expect_edit(edit_size_mismatch, NULL, SFT_ERR_FORMAT, "112 elements of F32 need 448 bytes but data_offsets span 512",
				"shape vs offsets");
	expect_edit(edit_beyond, NULL, SFT_ERR_FORMAT, "outside the data region", "offsets beyond the data");
	expect_edit(edit_begin_after_end, NULL, SFT_ERR_FORMAT, "outside the data region", "begin > end");
	expect_edit(edit_overlap, NULL, SFT_ERR_FORMAT, "overlaps tensor", "overlapping tensors");
	expect_edit(edit_gap, NULL, SFT_ERR_FORMAT, "belong to no tensor", "gap between tensors");
	expect_edit(edit_trailing, NULL, SFT_ERR_FORMAT, "cover", "bytes after the last tensor");
	expect_edit(edit_missing, NULL, SFT_ERR_INVALID, "\"lm_head.weight\" is missing", "missing tensor");
	expect_edit(edit_unknown_tensor, NULL, SFT_ERR_INVALID,
				"\"model.layers.0.self_attn.q_proj.bias\" is not part of", "unknown tensor (a bias)");
	expect_edit(edit_rotary, NULL, SFT_OK, "", "rotary inv_freq buffers are ignored");
	expect_edit(edit_rotary_bad, NULL, SFT_ERR_INVALID, "is not part of", "malformed rotary name");
	expect_edit(edit_duplicate_name, NULL, SFT_ERR_FORMAT, "belong to no tensor", "name given twice");
	expect_edit(edit_negative_dim, NULL, SFT_ERR_FORMAT, "shape[0] must be a non-negative integer", "negative dim");
	expect_edit(edit_float_dim, NULL, SFT_ERR_FORMAT, "shape[0] must be", "float dim");
	expect_edit(edit_shape_not_list, NULL, SFT_ERR_FORMAT, "shape must be a list", "shape not a list");
	expect_edit(edit_many_dims, NULL, SFT_ERR_FORMAT, "10 dimensions", "too many dims");
	expect_edit(edit_huge_dims, NULL, SFT_ERR_FORMAT, "more elements than", "shape product overflow");
	expect_edit(edit_huge_offsets, NULL, SFT_ERR_FORMAT, "outside the data region", "offset 2^63-1");
	expect_edit(edit_empty_name, NULL, SFT_ERR_INVALID, "tensor \"\" is not part of", "empty name");
	expect_edit(NULL, "\"__metadata__\": {\"format\": \"pt\"}", SFT_OK, "", "metadata accepted");

	/* non-finite values */
	{
		Ent			e[64];
		int			n = model_entries(model, e);
		long long	len = data_end(e, n);
		unsigned char *data = calloc((size_t) len, 1);
		float		nan = NAN;

		memcpy(data + e[3].begin + 8, &nan, 4);
		build_file(&buf, e, n, NULL, data, (size_t) len);
		expect_load(&buf, TINY_UNTIED, SFT_ERR_INVALID,
					"\"model.layers.0.self_attn.k_proj.weight\" holds a non-finite value (nan) at element 2",
					"NaN weight");
		sft_buf_free(&buf);
		free(data);
	}
	{
		Ent			e[64];
		int			n = model_entries(model, e);
		long long	len;
		unsigned char *data;
		uint16_t	inf16 = 0xfc00;

		/* embed tokens as F16: 128 elements, half the bytes */
		snprintf(e[0].dtype, 16, "F16");
		relayout(e, n, &len);
		data = calloc((size_t) len, 1);
		memcpy(data + 2 * 100, &inf16, 2);
		build_file(&buf, e, n, NULL, data, (size_t) len);
		expect_load(&buf, TINY_UNTIED, SFT_ERR_INVALID, "(-inf) at element 100", "-Inf in F16");
		sft_buf_free(&buf);
		free(data);
	}

	/* tied embeddings: lm_head.weight is ignored (as transformers does) */
	{
		SftModel   *tied = new_model(TINY_TIED, 11);
		SftModel   *into = new_model(TINY_TIED, 12);
		Ent			e[64];
		int			n = model_entries(tied, e);
		long long	len = data_end(e, n);
		unsigned char *data = malloc((size_t) len + 512);
		const SftParamTensor *emb = sft_model_find_tensor(tied, "model.embed_tokens.weight");

		memcpy(data, sft_model_params(tied), (size_t) len);
		e[n] = e[find_ent(e, n, "model.embed_tokens.weight")];
		snprintf(e[n].name, 128, "lm_head.weight");
		e[n].begin = len;
		e[n].end = len + (long long) emb->numel * 4;
		for (size_t j = 0; j < emb->numel; j++)
			((float *) (data + len))[j] = 42.0f;
		build_file(&buf, e, n + 1, NULL, data, (size_t) e[n].end);
		sft_error_clear(&err);
		TAP_OK(sft_safetensors_load_buffer(buf.data, buf.len, into, &err) == SFT_OK &&
			   same_params(tied, into), "tied: lm_head.weight present is ignored (%s)", err.message);
		sft_buf_free(&buf);
		snprintf(e[n].shape, 64, "[8, 16]");
		build_file(&buf, e, n + 1, NULL, data, (size_t) e[n].end);
		expect_load(&buf, TINY_TIED, SFT_ERR_INVALID, "lm_head.weight\" (ignored", "tied: lm_head of the wrong shape");
		sft_buf_free(&buf);
		/* and an untied model needs it */
		build_file(&buf, e, n, NULL, data, (size_t) len);
		expect_load(&buf, TINY_UNTIED, SFT_ERR_INVALID, "\"lm_head.weight\" is missing", "untied: lm_head required");
		sft_buf_free(&buf);
		free(data);
		sft_model_free(tied);
		sft_model_free(into);
	}
	sft_buf_free(&good);
	sft_model_free(model);
}

/* ---------------------------------------------------------------------------
 * Directories: single file, sharded, export
 * ------------------------------------------------------------------------- */

static void
expect_dir(const char *dir, SftStatus want, const char *needle, const char *what)
{
	SftModel   *m = NULL;
	SftError	err;
	SftStatus	st;

	sft_error_clear(&err);
	st = sft_hf_load_dir(dir, &m, &err);
	TAP_OK(st == want && strstr(err.message, needle) != NULL && (st == SFT_OK) == (m != NULL),
		   "%s -> %s (got %s: %s)", what, sft_status_name(want), sft_status_name(st), err.message);
	sft_model_free(m);
}

/* Shards: tensors [0, split) in shard 1, the rest in shard 2; returns the index text. */
static void
write_shards(const char *dir, SftModel *model, int split, const char *index_override)
{
	Ent			e[64];
	int			n = model_entries(model, e);
	const float *p = sft_model_params(model);
	SftBuf		file;
	SftBuf		index;
	char		path[512];
	char		line[512];
	long long	base = e[split].begin;

	build_file(&file, e, split, NULL, p, (size_t) base);
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", dir);
	write_file(path, file.data, file.len);
	sft_buf_free(&file);
	for (int i = split; i < n; i++)
	{
		e[i].begin -= base;
		e[i].end -= base;
	}
	build_file(&file, e + split, n - split, NULL, p + base / 4,
			   (size_t) (data_end(e + split, n - split)));
	snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
	write_file(path, file.data, file.len);
	sft_buf_free(&file);

	sft_buf_init(&index);
	sft_buf_append_str(&index, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
	for (int i = 0; i < n; i++)
	{
		snprintf(line, sizeof(line), "%s\"%.127s\": \"model-0000%d-of-00002.safetensors\"",
				 i ? ", " : "", e[i].name, i < split ? 1 : 2);
		sft_buf_append_str(&index, line);
	}
	sft_buf_append_str(&index, "}}");
	write_text(dir, "model.safetensors.index.json", index_override ? index_override : index.data);
	sft_buf_free(&index);
}

static void
test_dirs(void)
{
	SftModel   *model = new_model(TINY_UNTIED, 21);
	SftModel   *loaded = NULL;
	char		dir[300];
	char		dir2[300];
	char		path[512];
	SftBuf		first;
	SftBuf		second;
	SftBuf		cfg_first;
	SftBuf		cfg_second;
	SftError	err;
	SftStatus	st;
	struct stat sb;

	/* export, import, export again: identical bytes */
	make_dir(dir, sizeof(dir), "export");
	sft_error_clear(&err);
	st = sft_hf_save_dir(model, dir, &err);
	TAP_OK(st == SFT_OK, "save_dir (%s)", err.message);
	snprintf(path, sizeof(path), "%s/model.safetensors.tmp-%ld", dir, (long) getpid());
	TAP_OK(stat(path, &sb) != 0, "no temporary file left behind");
	st = sft_hf_load_dir(dir, &loaded, &err);
	TAP_OK(st == SFT_OK && same_params(model, loaded), "load_dir of our export (%s)", err.message);
	make_dir(dir2, sizeof(dir2), "export2");
	st = sft_hf_save_dir(loaded, dir2, &err);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	read_file(path, &first);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir2);
	read_file(path, &second);
	TAP_OK(st == SFT_OK && first.len > 0 && first.len == second.len &&
		   memcmp(first.data, second.data, first.len) == 0,
		   "export -> import -> export: model.safetensors byte-exact (%zu bytes)", first.len);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	read_file(path, &cfg_first);
	snprintf(path, sizeof(path), "%s/config.json", dir2);
	read_file(path, &cfg_second);
	TAP_OK(cfg_first.len > 0 && cfg_first.len == cfg_second.len &&
		   memcmp(cfg_first.data, cfg_second.data, cfg_first.len) == 0 &&
		   strstr(cfg_first.data, "\"tie_word_embeddings\": false"),
		   "config.json identical after the round trip");
	sft_buf_free(&first);
	sft_buf_free(&second);
	sft_buf_free(&cfg_second);
	sft_model_free(loaded);
	loaded = NULL;
	sft_error_clear(&err);
	TAP_OK(sft_hf_save_dir(model, "/nonexistent/dir", &err) == SFT_ERR_IO &&
		   strstr(err.message, "not an existing directory"), "save into a missing directory (%s)",
		   err.message);

	/* sharded */
	make_dir(dir, sizeof(dir), "sharded");
	write_text(dir, "config.json", cfg_first.data);
	write_shards(dir, model, 7, NULL);
	sft_error_clear(&err);
	st = sft_hf_load_dir(dir, &loaded, &err);
	TAP_OK(st == SFT_OK && same_params(model, loaded), "sharded directory loads (%s)", err.message);
	sft_model_free(loaded);
	loaded = NULL;

	/* index says a tensor lives in the other shard */
	make_dir(dir, sizeof(dir), "shard_wrong_map");
	write_text(dir, "config.json", cfg_first.data);
	write_shards(dir, model, 7, NULL);
	{
		SftBuf		idx;

		snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
		read_file(path, &idx);
		/* move the first tensor of shard 2 to shard 1 in the map */
		{
			Ent			e[64];
			char		needle[256];
			char	   *hit;

			model_entries(model, e);
			snprintf(needle, sizeof(needle), "\"%s\": \"model-00002", e[7].name);
			hit = strstr(idx.data, needle);
			if (hit)
				hit[strlen(needle) - 1] = '1';
		}
		write_text(dir, "model.safetensors.index.json", idx.data);
		sft_buf_free(&idx);
	}
	expect_dir(dir, SFT_ERR_INVALID, "maps it to another shard", "weight_map disagrees with a shard");

	/* index lists a tensor no shard holds */
	make_dir(dir, sizeof(dir), "shard_extra");
	write_text(dir, "config.json", cfg_first.data);
	write_shards(dir, model, 7, NULL);
	{
		SftBuf		idx;
		char	   *close_brace;

		snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
		read_file(path, &idx);
		close_brace = strstr(idx.data, "}}");
		if (close_brace)
			*close_brace = '\0';
		{
			char		text[8192];

			snprintf(text, sizeof(text), "%s, \"model.ghost.weight\": \"model-00001-of-00002.safetensors\"}}",
					 idx.data);
			write_text(dir, "model.safetensors.index.json", text);
		}
		sft_buf_free(&idx);
	}
	expect_dir(dir, SFT_ERR_INVALID, "lists", "index lists a tensor that is in no shard");

	/* unsafe shard names */
	make_dir(dir, sizeof(dir), "shard_names");
	write_text(dir, "config.json", cfg_first.data);
	write_shards(dir, model, 7, "{\"weight_map\": {\"model.norm.weight\": \"../export/model.safetensors\"}}");
	expect_dir(dir, SFT_ERR_INVALID, "not a plain file name", "shard path with ..");
	write_text(dir, "model.safetensors.index.json",
			   "{\"weight_map\": {\"model.norm.weight\": \"/etc/passwd\"}}");
	expect_dir(dir, SFT_ERR_INVALID, "not a plain file name", "absolute shard path");
	write_text(dir, "model.safetensors.index.json",
			   "{\"weight_map\": {\"model.norm.weight\": \"\"}}");
	expect_dir(dir, SFT_ERR_INVALID, "not a plain file name", "empty shard name");
	write_text(dir, "model.safetensors.index.json",
			   "{\"weight_map\": {\"model.norm.weight\": 3}}");
	expect_dir(dir, SFT_ERR_FORMAT, "file name string", "numeric shard name");
	write_text(dir, "model.safetensors.index.json",
			   "{\"weight_map\": {\"model.norm.weight\": \"model-00009.safetensors\"}}");
	expect_dir(dir, SFT_ERR_IO, "could not open", "missing shard file");
	write_text(dir, "model.safetensors.index.json", "{\"weights\": {}}");
	expect_dir(dir, SFT_ERR_FORMAT, "weight_map", "index without weight_map");
	write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {}}");
	expect_dir(dir, SFT_ERR_INVALID, "is missing from the weights", "empty weight_map");

	/* a tensor in both shards (the index can map it to one only) */
	make_dir(dir, sizeof(dir), "shard_dup");
	write_text(dir, "config.json", cfg_first.data);
	write_shards(dir, model, 7, NULL);
	{
		Ent			e[64];
		int			n = model_entries(model, e);
		SftBuf		file;

		/* shard 2 rewritten to also hold tensor 0 */
		Ent			s2[64];
		int			k = 0;
		long long	off = 0;
		float	   *data = calloc(sft_model_num_params(model) + 1, 4);

		for (int i = 7; i < n; i++, k++)
		{
			s2[k] = e[i];
			s2[k].begin = off;
			s2[k].end = off + (e[i].end - e[i].begin);
			off = s2[k].end;
		}
		s2[k] = e[0];
		s2[k].begin = off;
		s2[k].end = off + (e[0].end - e[0].begin);
		off = s2[k].end;
		k++;
		build_file(&file, s2, k, NULL, data, (size_t) off);
		snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
		write_file(path, file.data, file.len);
		sft_buf_free(&file);
		free(data);
	}
	expect_dir(dir, SFT_ERR_INVALID, "maps it to another shard", "tensor in two shards");

	/* directories without weights, config errors */
	make_dir(dir, sizeof(dir), "no_weights");
	write_text(dir, "config.json", cfg_first.data);
	expect_dir(dir, SFT_ERR_IO, "neither model.safetensors nor", "no weight files");
	make_dir(dir, sizeof(dir), "no_config");
	expect_dir(dir, SFT_ERR_IO, "config.json", "no config.json");
	make_dir(dir, sizeof(dir), "bad_config");
	write_text(dir, "config.json", "{\"model_type\": \"gpt2\"}");
	expect_dir(dir, SFT_ERR_UNSUPPORTED, "gpt2", "gpt2 config");
	make_dir(dir, sizeof(dir), "wrong_shapes");
	write_text(dir, "config.json", "{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
			   " \"num_key_value_heads\": 2, \"intermediate_size\": 16, \"vocab_size\": 16}");
	snprintf(path, sizeof(path), "%s/export/model.safetensors", tmp_root);
	read_file(path, &first);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	write_file(path, first.data, first.len);
	sft_buf_free(&first);
	expect_dir(dir, SFT_ERR_INVALID, "gate_proj.weight\" has shape [12, 8] but config.json implies [16, 8]",
			   "weights from another config");
	make_dir(dir, sizeof(dir), "truncated_file");
	write_text(dir, "config.json", cfg_first.data);
	snprintf(path, sizeof(path), "%s/export/model.safetensors", tmp_root);
	read_file(path, &first);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	write_file(path, first.data, first.len - 10);
	sft_buf_free(&first);
	expect_dir(dir, SFT_ERR_FORMAT, "model.safetensors: ", "truncated model.safetensors");
	sft_buf_free(&cfg_first);
	sft_model_free(model);
}

/* ---------------------------------------------------------------------------
 * Checkpoints
 * ------------------------------------------------------------------------- */

static SftStatus
failing_write(void *ctx, const void *data, size_t len, SftError *err)
{
	int		   *budget = ctx;

	if ((*budget)-- <= 0)
		return sft_error(err, SFT_ERR_IO, "disk full");
	return SFT_OK;
}

static SftStatus
read_ckpt(const SftBuf *buf, SftModel **m, float **am, float **av, int64_t *step, char **meta,
		  SftError *err)
{
	SftMemReader r = {(const unsigned char *) buf->data, buf->len, 0};

	sft_error_clear(err);
	return sft_checkpoint_read(sft_mem_read, &r, m, am, av, step, meta, err);
}

/* Recompute the header checksum after editing the header of a checkpoint. */
static void
fix_header_crc(SftBuf *buf)
{
	uint64_t	config_len;
	uint64_t	meta_len;
	size_t		end;
	uint32_t	crc;

	memcpy(&config_len, buf->data + 16, 8);
	memcpy(&meta_len, buf->data + 24, 8);
	end = SFT_CKPT_FIXED_HEADER + config_len + meta_len;
	crc = sft_crc32_update(0, buf->data, end);
	memcpy(buf->data + end, &crc, 4);
}

static void
expect_ckpt(const SftBuf *buf, SftStatus want, const char *needle, const char *what)
{
	SftModel   *m = NULL;
	float	   *am = NULL;
	float	   *av = NULL;
	int64_t		step = -1;
	char	   *meta = NULL;
	SftError	err;
	SftStatus	st = read_ckpt(buf, &m, &am, &av, &step, &meta, &err);

	TAP_OK(st == want && strstr(err.message, needle) != NULL &&
		   (st == SFT_OK || (m == NULL && am == NULL && meta == NULL && step == 0)),
		   "%s -> %s (got %s: %s)", what, sft_status_name(want), sft_status_name(st), err.message);
	sft_model_free(m);
	sft_free(am);
	sft_free(av);
	sft_free(meta);
}

static void
test_checkpoint(void)
{
	SftModel   *model = new_model(TINY_TIED, 31);
	size_t		n = sft_model_num_params(model);
	float	   *m = malloc(n * 4);
	float	   *v = malloc(n * 4);
	SftCheckpointState state = {m, v, 1234, "{\"run\": 7, \"epoch\": 2}"};
	SftModel   *back = NULL;
	float	   *bm = NULL;
	float	   *bv = NULL;
	int64_t		step = 0;
	char	   *meta = NULL;
	SftBuf		buf;
	SftBuf		plain;
	SftBuf		edited;
	SftError	err;
	SftStatus	st;
	int			budget;
	int			truncations_accepted = 0;
	int			flips_accepted = 0;

	TAP_OK(sft_crc32_update(0, "123456789", 9) == 0xCBF43926u &&
		   sft_crc32_update(sft_crc32_update(0, "1234", 4), "56789", 5) == 0xCBF43926u &&
		   sft_crc32_update(0, "", 0) == 0, "CRC-32 check value, incremental");
	for (size_t i = 0; i < n; i++)
	{
		m[i] = 0.001f * (float) i;
		v[i] = 1e-6f * (float) (n - i);
	}

	/* with AdamW state */
	sft_buf_init(&buf);
	sft_error_clear(&err);
	st = sft_checkpoint_write(sft_buf_write, &buf, model, &state, &err);
	TAP_OK(st == SFT_OK && memcmp(buf.data, "SFTCKPT\0", 8) == 0, "checkpoint write (%s)", err.message);
	TAP_OK(buf.len == sft_checkpoint_size(model, &state), "checkpoint size %zu == predicted %llu",
		   buf.len, (unsigned long long) sft_checkpoint_size(model, &state));
	st = read_ckpt(&buf, &back, &bm, &bv, &step, &meta, &err);
	TAP_OK(st == SFT_OK && same_params(model, back) && bm && bv &&
		   memcmp(bm, m, n * 4) == 0 && memcmp(bv, v, n * 4) == 0 && step == 1234 &&
		   meta && strcmp(meta, state.meta_json) == 0,
		   "checkpoint round trip: params, m, v, step, meta (%s)", err.message);
	TAP_OK(back && sft_model_config(back)->tie_word_embeddings == 1 &&
		   sft_model_config(back)->n_kv_heads == 2, "checkpoint restores the config");
	sft_model_free(back);
	sft_free(bm);
	sft_free(bv);
	sft_free(meta);
	back = NULL;
	bm = bv = NULL;
	meta = NULL;

	/* the caller may skip the moments and the metadata */
	{
		SftMemReader r = {(const unsigned char *) buf.data, buf.len, 0};

		sft_error_clear(&err);
		st = sft_checkpoint_read(sft_mem_read, &r, &back, NULL, NULL, NULL, NULL, &err);
		TAP_OK(st == SFT_OK && same_params(model, back) && r.pos == buf.len,
			   "read skipping AdamW state still consumes and verifies it (%s)", err.message);
		sft_model_free(back);
		back = NULL;
	}

	/* weights only */
	sft_buf_init(&plain);
	st = sft_checkpoint_write(sft_buf_write, &plain, model, NULL, &err);
	st = read_ckpt(&plain, &back, &bm, &bv, &step, &meta, &err);
	TAP_OK(st == SFT_OK && same_params(model, back) && bm == NULL && bv == NULL && step == 0 &&
		   meta == NULL && plain.len == sft_checkpoint_size(model, NULL),
		   "weights-only checkpoint: no moments, step 0, no meta (%s)", err.message);
	sft_model_free(back);
	back = NULL;

	/* writer argument checks and write errors */
	{
		SftCheckpointState half = {m, NULL, 0, NULL};
		SftCheckpointState neg = {NULL, NULL, -1, NULL};
		SftCheckpointState badmeta = {NULL, NULL, 0, "{not json"};
		SftBuf		sink;

		sft_buf_init(&sink);
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_write(sft_buf_write, &sink, model, &half, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "together"), "m without v rejected (%s)", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_write(sft_buf_write, &sink, model, &neg, &err) == SFT_ERR_INVALID,
			   "negative step rejected (%s)", err.message);
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_write(sft_buf_write, &sink, model, &badmeta, &err) == SFT_ERR_FORMAT &&
			   strstr(err.message, "not valid JSON"), "invalid meta JSON rejected (%s)", err.message);
		sft_buf_free(&sink);
		budget = 3;
		sft_error_clear(&err);
		TAP_OK(sft_checkpoint_write(failing_write, &budget, model, &state, &err) == SFT_ERR_IO &&
			   strstr(err.message, "disk full"), "write error propagates (%s)", err.message);
	}

	/* every truncation is an error naming the byte */
	for (size_t len = 0; len < buf.len; len++)
	{
		SftBuf		cut = {buf.data, len, len};

		sft_error_clear(&err);
		if (read_ckpt(&cut, &back, &bm, &bv, &step, &meta, &err) == SFT_OK)
		{
			truncations_accepted++;
			sft_model_free(back);
		}
		else if (len == buf.len - 1 && strstr(err.message, "checkpoint truncated at byte") == NULL)
			truncations_accepted++;
	}
	TAP_OK(truncations_accepted == 0, "all %zu truncations rejected with \"checkpoint truncated\"",
		   buf.len);
	{
		SftBuf		cut = {buf.data, 100, 100};

		expect_ckpt(&cut, SFT_ERR_FORMAT, "checkpoint truncated at byte 48 (reading the config", "cut in the config");
	}

	/* every byte flip is detected (CRC-32 catches all single-byte errors) */
	sft_buf_init(&edited);
	sft_buf_append(&edited, buf.data, buf.len);
	for (size_t pos = 0; pos < buf.len; pos++)
	{
		edited.data[pos] ^= 0x10;
		sft_error_clear(&err);
		if (read_ckpt(&edited, &back, &bm, &bv, &step, &meta, &err) == SFT_OK)
		{
			flips_accepted++;
			sft_model_free(back);
			sft_free(bm);
			sft_free(bv);
			sft_free(meta);
		}
		edited.data[pos] ^= 0x10;
	}
	TAP_OK(flips_accepted == 0, "all %zu single-byte flips detected", buf.len);
	edited.data[buf.len - 100] ^= 1;
	expect_ckpt(&edited, SFT_ERR_FORMAT, "data checksum mismatch", "flipped weight byte");
	edited.data[buf.len - 100] ^= 1;
	edited.data[60] ^= 1;
	expect_ckpt(&edited, SFT_ERR_FORMAT, "header checksum mismatch", "flipped config byte");
	edited.data[60] ^= 1;

	/* header fields, each with a valid header checksum */
#define EDIT_HEADER(offset, type, value, want, needle, what) do { \
		type x_ = (value); \
		sft_buf_free(&edited); sft_buf_init(&edited); \
		sft_buf_append(&edited, buf.data, buf.len); \
		memcpy(edited.data + (offset), &x_, sizeof(x_)); \
		/* a damaged length fails before the checksum is located */ \
		if ((offset) < 16 || (offset) >= 32) \
			fix_header_crc(&edited); \
		expect_ckpt(&edited, want, needle, what); \
	} while (0)
	EDIT_HEADER(0, char, 'X', SFT_ERR_FORMAT, "bad magic", "bad magic");
	EDIT_HEADER(8, uint32_t, 2, SFT_ERR_UNSUPPORTED, "version 2 is not supported", "version 2");
	EDIT_HEADER(12, uint32_t, 6, SFT_ERR_FORMAT, "unknown flags 0x6", "unknown flags");
	EDIT_HEADER(16, uint64_t, 0, SFT_ERR_FORMAT, "config length 0", "config length 0");
	EDIT_HEADER(16, uint64_t, (uint64_t) 1 << 40, SFT_ERR_FORMAT, "config length", "config length 2^40");
	EDIT_HEADER(24, uint64_t, (uint64_t) 1 << 62, SFT_ERR_FORMAT, "metadata length", "meta length 2^62");
	EDIT_HEADER(32, uint64_t, n + 1, SFT_ERR_FORMAT, "parameters but its config implies", "n_params mismatch");
	EDIT_HEADER(40, int64_t, -5, SFT_ERR_FORMAT, "step -5 is negative", "negative step");
	/* flags say "no AdamW" on a file with moments: the data checksum position moves */
	EDIT_HEADER(12, uint32_t, 0, SFT_ERR_FORMAT, "data checksum mismatch", "flags cleared");
	/* a config the parser refuses, with a valid checksum */
	{
		const char *needle = "\"hidden_act\": \"silu\"";
		char	   *hit;

		sft_buf_free(&edited);
		sft_buf_init(&edited);
		sft_buf_append(&edited, buf.data, buf.len);
		hit = memmem(edited.data, edited.len, needle, strlen(needle));
		if (hit)
			memcpy(hit + 15, "gelu", 4);
		fix_header_crc(&edited);
		expect_ckpt(&edited, SFT_ERR_UNSUPPORTED, "checkpoint: config.json: \"hidden_act\" \"gelu\"",
					"config with gelu");
	}
	/* metadata that is not JSON, with a valid checksum */
	{
		char	   *hit;

		sft_buf_free(&edited);
		sft_buf_init(&edited);
		sft_buf_append(&edited, buf.data, buf.len);
		hit = memmem(edited.data, edited.len, "{\"run\"", 6);
		if (hit)
			hit[0] = '[';
		fix_header_crc(&edited);
		expect_ckpt(&edited, SFT_ERR_FORMAT, "metadata is not valid JSON", "corrupt metadata");
	}
	sft_buf_free(&edited);
	sft_buf_free(&plain);
	sft_buf_free(&buf);
	free(m);
	free(v);
	sft_model_free(model);
}

/* ---------------------------------------------------------------------------
 * Fixtures written by Python (test/fixtures/weights/make_weights_fixtures.py)
 * ------------------------------------------------------------------------- */

#define FIXTURES "test/fixtures/weights/"

/* The fixture formula: tensor i (slab order), element j. */
static float
fixture_value(int i, size_t j)
{
	return (float) ((long) ((i * 31 + j * 7) % 61) - 30) / 64.0f;
}

static SftModel *
fixture_model(const char *config_file)
{
	SftBuf		text;
	SftLlamaConfig cfg;
	SftModel   *model = NULL;

	if (!read_file(config_file, &text) ||
		sft_llama_config_parse(text.data, text.len, &cfg, NULL) != SFT_OK ||
		sft_model_new(&cfg, &model, NULL) != SFT_OK)
		model = NULL;
	sft_buf_free(&text);
	return model;
}

static int
fixture_values_ok(SftModel *model)
{
	const float *p = sft_model_params(model);

	for (int i = 0; i < sft_model_tensor_count(model); i++)
	{
		const SftParamTensor *t = sft_model_tensor(model, i);

		for (size_t j = 0; j < t->numel; j++)
			if (p[t->offset + j] != fixture_value(i, j))
				return 0;
	}
	return 1;
}

static void
test_fixtures(void)
{
	SftModel   *untied = fixture_model(FIXTURES "config.json");
	SftModel   *tied = fixture_model(FIXTURES "config_tied.json");
	SftModel   *smol = fixture_model(FIXTURES "config_smollm2.json");
	SftBuf		file;
	SftError	err;
	SftStatus	st;

	TAP_OK(untied && tied, "fixture configs parse (run from the repository root)");
	if (!untied || !tied)
		return;
	TAP_OK(smol && sft_model_num_params(smol) == 134515008,
		   "SmolLM2-135M config: 134515008 parameters (%zu)", smol ? sft_model_num_params(smol) : 0);
	sft_model_free(smol);

	read_file(FIXTURES "untied_f32.safetensors", &file);
	sft_error_clear(&err);
	st = sft_safetensors_load_buffer(file.data, file.len, untied, &err);
	TAP_OK(st == SFT_OK && fixture_values_ok(untied), "untied_f32.safetensors (%s)", err.message);
	sft_buf_free(&file);
	read_file(FIXTURES "tied_mixed.safetensors", &file);
	st = sft_safetensors_load_buffer(file.data, file.len, tied, &err);
	TAP_OK(st == SFT_OK && fixture_values_ok(tied), "tied_mixed.safetensors (%s)", err.message);
	sft_buf_free(&file);

	{
		SftModel   *m = NULL;
		float	   *am = NULL;
		float	   *av = NULL;
		int64_t		step = 0;
		char	   *meta = NULL;
		size_t		n;
		int			moments_ok = 1;

		read_file(FIXTURES "adamw.ckpt", &file);
		st = read_ckpt(&file, &m, &am, &av, &step, &meta, &err);
		n = m ? sft_model_num_params(m) : 0;
		for (size_t i = 0; i < n && am && av; i++)
		{
			float		p = sft_model_params(m)[i];

			moments_ok &= am[i] == p / 2 && av[i] == p * p;
		}
		TAP_OK(st == SFT_OK && fixture_values_ok(m) && am && av && moments_ok && step == 12 &&
			   meta && strcmp(meta, "{\"run\": 1, \"epoch\": 0}") == 0,
			   "adamw.ckpt written by Python (%s)", err.message);
		sft_buf_free(&file);
		sft_model_free(m);
		sft_free(am);
		sft_free(av);
		sft_free(meta);
		read_file(FIXTURES "weights_only.ckpt", &file);
		m = NULL;
		st = read_ckpt(&file, &m, &am, &av, &step, &meta, &err);
		TAP_OK(st == SFT_OK && fixture_values_ok(m) && am == NULL && meta == NULL &&
			   sft_model_config(m)->tie_word_embeddings == 1,
			   "weights_only.ckpt written by Python (%s)", err.message);
		sft_buf_free(&file);
		sft_model_free(m);
	}
	sft_model_free(untied);
	sft_model_free(tied);
}

/* ---------------------------------------------------------------------------
 * Out of memory: every allocation failing in turn is reported, never crashes
 * ------------------------------------------------------------------------- */

static int alloc_budget = -1;	/* -1: unlimited */

static void *
budget_alloc(size_t size)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(size);
}

static void *
budget_realloc(void *p, size_t size)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return realloc(p, size);
}

static void
test_out_of_memory(void)
{
	SftModel   *model = new_model(TINY_UNTIED, 41);
	SftAllocator budgeted = {budget_alloc, budget_realloc, free};
	SftBuf		st_file;
	SftBuf		ck_file;
	int			nomem_st = 0;
	int			nomem_ck = 0;
	int			other = 0;
	int			limit;

	sft_buf_init(&st_file);
	sft_buf_init(&ck_file);
	sft_safetensors_write(model, sft_buf_write, &st_file, NULL);
	sft_checkpoint_write(sft_buf_write, &ck_file, model, NULL, NULL);
	sft_set_allocator(&budgeted);
	for (limit = 0; limit < 40; limit++)
	{
		SftError	err;
		SftStatus	st;
		SftModel   *back = NULL;

		alloc_budget = limit;
		sft_error_clear(&err);
		st = sft_safetensors_load_buffer(st_file.data, st_file.len, model, &err);
		if (st == SFT_ERR_NOMEM)
			nomem_st++;
		else if (st != SFT_OK)
			other++;
		alloc_budget = limit;
		sft_error_clear(&err);
		st = read_ckpt(&ck_file, &back, NULL, NULL, NULL, NULL, &err);
		if (st == SFT_ERR_NOMEM)
			nomem_ck++;
		else if (st != SFT_OK)
			other++;
		sft_model_free(back);
	}
	alloc_budget = -1;
	sft_set_allocator(NULL);
	TAP_OK(nomem_st > 0 && nomem_ck > 0 && other == 0,
		   "failing allocations: %d safetensors and %d checkpoint loads report out of memory, %d other errors",
		   nomem_st, nomem_ck, other);
	sft_buf_free(&st_file);
	sft_buf_free(&ck_file);
	sft_model_free(model);
}

int
main(void)
{
	char		cmd[300];

	snprintf(tmp_root, sizeof(tmp_root), "/tmp/sft_test_weights_XXXXXX");
	if (mkdtemp(tmp_root) == NULL)
	{
		printf("# mkdtemp failed\n");
		return 1;
	}
	test_conversions();
	test_round_trip(TINY_UNTIED, "untied");
	test_round_trip(TINY_TIED, "tied");
	test_foreign_dtypes();
	test_damaged();
	test_dirs();
	test_checkpoint();
	test_fixtures();
	test_out_of_memory();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmp_root);
	return tap_done();
}
