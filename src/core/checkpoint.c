/*
 * checkpoint.c: the project's own weight format for large objects and for
 * resuming a run (layout in weights.h), the CRC-32 that guards it, and the
 * in-memory streams.
 *
 * Why our own format next to safetensors: a checkpoint must also carry the
 * AdamW moments, the step and run metadata, and must be written and read as
 * a stream (a large object has no random access worth using), checksummed
 * so that a damaged object is an error instead of a silently broken model.
 *
 * Two checksums: one over the header (so a damaged size or config is caught
 * before it drives an allocation or a misleading message) and one over the
 * tensor bytes (verified after the last byte has been read, since the reader
 * streams straight into the slabs).
 *
 * Builds for fuzzing (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, the libFuzzer
 * convention) do not enforce the checksums, so that the fuzzer reaches the
 * parsing behind them.
 */
#include "checkpoint.h"

#include <json.h>
#include <pthread.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c assumes a little-endian host (the format is little-endian)"
#endif

/* Bytes per read/write callback for tensor data. */
#define CKPT_CHUNK ((size_t) 1 << 20)

/* ---------------------------------------------------------------------------
 * CRC-32, slicing by 8: about 1 GB/s on the (busy) 2-core development
 * machine, so the 1.6 GB checkpoint of a 135M-parameter model with AdamW
 * moments spends about 1.6 s on checksums, small next to writing it into a
 * large object.  zlib's CRC-32, so Python's zlib.crc32 can verify a file.
 * ------------------------------------------------------------------------- */

static uint32_t crc_tables[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_build_tables(void)
{
	for (uint32_t i = 0; i < 256; i++)
	{
		uint32_t	c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
		crc_tables[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			crc_tables[k][i] = (crc_tables[k - 1][i] >> 8) ^
				crc_tables[0][crc_tables[k - 1][i] & 0xff];
}

uint32_t
sft_crc32_update(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&crc_once, crc_build_tables);
	crc = ~crc;
	while (len >= 8)
	{
		uint32_t	lo;
		uint32_t	hi;

		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= crc;
		crc = crc_tables[7][lo & 0xff] ^ crc_tables[6][(lo >> 8) & 0xff] ^
			crc_tables[5][(lo >> 16) & 0xff] ^ crc_tables[4][lo >> 24] ^
			crc_tables[3][hi & 0xff] ^ crc_tables[2][(hi >> 8) & 0xff] ^
			crc_tables[1][(hi >> 16) & 0xff] ^ crc_tables[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = crc_tables[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---------------------------------------------------------------------------
 * In-memory streams
 * ------------------------------------------------------------------------- */

SftStatus
sft_mem_read(void *ctx, void *data, size_t len, SftError *err)
{
	SftMemReader *r = ctx;

	if (len > r->len - r->pos)
		return sft_error(err, SFT_ERR_FORMAT, "unexpected end of data at byte %zu", r->len);
	memcpy(data, r->data + r->pos, len);
	r->pos += len;
	return SFT_OK;
}

SftStatus
sft_buf_write(void *ctx, const void *data, size_t len, SftError *err)
{
	if (sft_buf_append((SftBuf *) ctx, data, len) != SFT_OK)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory appending %zu bytes", len);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Little-endian fields
 * ------------------------------------------------------------------------- */

static void
put_u32(unsigned char *p, uint32_t x)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char) (x >> (8 * i));
}

static void
put_u64(unsigned char *p, uint64_t x)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char) (x >> (8 * i));
}

static uint32_t
get_u32(const unsigned char *p)
{
	uint32_t	x = 0;

	for (int i = 3; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

static uint64_t
get_u64(const unsigned char *p)
{
	uint64_t	x = 0;

	for (int i = 7; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

/* meta_json must be JSON text: the glue hands it to SQL as jsonb. */
static SftStatus
check_meta_json(const char *text, size_t len, SftError *err)
{
	json_tokener *tok;
	json_object *obj;
	enum json_tokener_error jerr;
	size_t		consumed;
	size_t		bad;

	if (memchr(text, '\0', len) != NULL)
		return sft_error(err, SFT_ERR_FORMAT, "checkpoint metadata contains a NUL byte");
	if ((bad = sft_utf8_invalid_offset(text, len)) != (size_t) -1)
		return sft_error(err, SFT_ERR_FORMAT, "checkpoint metadata: invalid UTF-8 at byte %zu",
						 bad);
	tok = json_tokener_new();
	if (tok == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory checking checkpoint metadata");
	obj = json_tokener_parse_ex(tok, text, (int) len);
	jerr = json_tokener_get_error(tok);
	consumed = tok->char_offset;
	json_tokener_free(tok);
	json_object_put(obj);
	if (jerr != json_tokener_success)
		return sft_error(err, SFT_ERR_FORMAT, "checkpoint metadata is not valid JSON (byte %zu: %s)",
						 consumed, jerr == json_tokener_continue ? "unexpected end"
						 : json_tokener_error_desc(jerr));
	for (; consumed < len; consumed++)
		if (strchr(" \t\r\n", text[consumed]) == NULL)
			return sft_error(err, SFT_ERR_FORMAT,
							 "checkpoint metadata: unexpected data after the JSON value at byte %zu",
							 consumed);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

typedef struct CkptWriter
{
	SftWriteFn	write;
	void	   *ctx;
	uint32_t	crc;
} CkptWriter;

static SftStatus
emit(CkptWriter *w, const void *data, size_t len, SftError *err)
{
	w->crc = sft_crc32_update(w->crc, data, len);
	return w->write(w->ctx, data, len, err);
}

/* A float array, in chunks, checksummed on the way. */
static SftStatus
emit_floats(CkptWriter *w, const float *x, size_t n, SftError *err)
{
	const char *bytes = (const char *) x;
	size_t		total = n * sizeof(float);
	SftStatus	st = SFT_OK;

	for (size_t done = 0; done < total && st == SFT_OK;)
	{
		size_t		len = total - done < CKPT_CHUNK ? total - done : CKPT_CHUNK;

		st = emit(w, bytes + done, len, err);
		done += len;
	}
	return st;
}

static SftStatus
emit_crc(CkptWriter *w, SftError *err)
{
	unsigned char b[4];

	put_u32(b, w->crc);
	w->crc = 0;
	return w->write(w->ctx, b, 4, err);
}

uint64_t
sft_checkpoint_size(const SftModel *model, const SftCheckpointState *state)
{
	SftBuf		config;
	uint64_t	n = sft_model_num_params(model);
	uint64_t	size;

	sft_buf_init(&config);
	if (sft_llama_config_to_json(sft_model_config(model), &config, NULL) != SFT_OK)
		return 0;
	size = SFT_CKPT_FIXED_HEADER + config.len + 4 + n * sizeof(float) + 4;
	sft_buf_free(&config);
	if (state != NULL && state->meta_json != NULL)
		size += strlen(state->meta_json);
	if (state != NULL && state->adam_m != NULL)
		size += 2 * n * sizeof(float);
	return size;
}

/*
 * The format around one slab: config text, params [n], moments when state
 * has them; extra_flags marks what the slab is (SFT_CKPT_FLAG_ADAPTER).
 */
static SftStatus
write_slab(SftWriteFn write, void *ctx, const SftBuf *config, const float *params,
		   size_t n_params, uint32_t extra_flags, const SftCheckpointState *state,
		   SftError *err)
{
	static const SftCheckpointState no_state = {NULL, NULL, 0, NULL};
	CkptWriter	w = {write, ctx, 0};
	unsigned char fixed[SFT_CKPT_FIXED_HEADER];
	size_t		meta_len;
	int			with_adamw;
	SftStatus	st;

	if (state == NULL)
		state = &no_state;
	if ((state->adam_m == NULL) != (state->adam_v == NULL))
		return sft_error(err, SFT_ERR_INVALID,
						 "checkpoint: AdamW moments m and v must be given together");
	if (state->step < 0)
		return sft_error(err, SFT_ERR_INVALID, "checkpoint: step %lld is negative",
						 (long long) state->step);
	with_adamw = state->adam_m != NULL;
	meta_len = state->meta_json ? strlen(state->meta_json) : 0;
	if (meta_len > SFT_CKPT_MAX_META)
		return sft_error(err, SFT_ERR_LIMIT,
						 "checkpoint: metadata of %zu bytes exceeds the limit of %llu", meta_len,
						 (unsigned long long) SFT_CKPT_MAX_META);
	if (meta_len > 0 && (st = check_meta_json(state->meta_json, meta_len, err)) != SFT_OK)
		return st;

	memcpy(fixed, SFT_CKPT_MAGIC, 8);
	put_u32(fixed + 8, SFT_CKPT_VERSION);
	put_u32(fixed + 12, (with_adamw ? SFT_CKPT_FLAG_ADAMW : 0) | extra_flags);
	put_u64(fixed + 16, config->len);
	put_u64(fixed + 24, meta_len);
	put_u64(fixed + 32, n_params);
	put_u64(fixed + 40, (uint64_t) state->step);
	st = emit(&w, fixed, sizeof(fixed), err);
	if (st == SFT_OK)
		st = emit(&w, config->data, config->len, err);
	if (st == SFT_OK && meta_len > 0)
		st = emit(&w, state->meta_json, meta_len, err);
	if (st == SFT_OK)
		st = emit_crc(&w, err);
	if (st == SFT_OK)
		st = emit_floats(&w, params, n_params, err);
	if (st == SFT_OK && with_adamw)
		st = emit_floats(&w, state->adam_m, n_params, err);
	if (st == SFT_OK && with_adamw)
		st = emit_floats(&w, state->adam_v, n_params, err);
	if (st == SFT_OK)
		st = emit_crc(&w, err);
	return st;
}

SftStatus
sft_checkpoint_write(SftWriteFn write, void *ctx, const SftModel *model,
					 const SftCheckpointState *state, SftError *err)
{
	SftBuf		config;
	SftStatus	st;

	sft_buf_init(&config);
	if ((st = sft_llama_config_to_json(sft_model_config(model), &config, err)) != SFT_OK)
		return st;
	/* Only read through this pointer: the accessor is not const-qualified. */
	st = write_slab(write, ctx, &config, sft_model_params((SftModel *) model),
					sft_model_num_params(model), 0, state, err);
	sft_buf_free(&config);
	return st;
}

SftStatus
sft_checkpoint_write_adapter(SftWriteFn write, void *ctx, const SftLoraAdapter *adapter,
							 const SftCheckpointState *state, SftError *err)
{
	SftBuf		config;
	SftStatus	st;

	sft_buf_init(&config);
	if ((st = sft_lora_config_to_json(&adapter->config, NULL, &config, err)) != SFT_OK)
		return st;
	st = write_slab(write, ctx, &config, adapter->params, adapter->n_params,
					SFT_CKPT_FLAG_ADAPTER, state, err);
	sft_buf_free(&config);
	return st;
}

/* ---------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------- */

typedef struct CkptReader
{
	SftReadFn	read;
	void	   *ctx;
	uint64_t	pos;			/* bytes consumed so far */
	uint32_t	crc;
} CkptReader;

static SftStatus
take(CkptReader *r, void *data, size_t len, const char *what, SftError *err)
{
	SftError	inner;
	SftStatus	st;

	sft_error_clear(&inner);
	st = r->read(r->ctx, data, len, &inner);
	if (st == SFT_ERR_FORMAT)
		return sft_error(err, SFT_ERR_FORMAT,
						 "checkpoint truncated at byte %llu (reading %s)",
						 (unsigned long long) r->pos, what);
	if (st != SFT_OK)
		return sft_error(err, st, "checkpoint: reading %s at byte %llu: %s", what,
						 (unsigned long long) r->pos, inner.message);
	r->pos += len;
	r->crc = sft_crc32_update(r->crc, data, len);
	return SFT_OK;
}

/* Read n floats into dst (or discard them when dst is NULL: scratch). */
static SftStatus
take_floats(CkptReader *r, float *dst, float *scratch, size_t n, const char *what,
			SftError *err)
{
	size_t		per_chunk = CKPT_CHUNK / sizeof(float);
	SftStatus	st = SFT_OK;

	for (size_t done = 0; done < n && st == SFT_OK;)
	{
		size_t		k = n - done < per_chunk ? n - done : per_chunk;

		st = take(r, dst ? dst + done : scratch, k * sizeof(float), what, err);
		done += k;
	}
	return st;
}

static SftStatus
check_crc(CkptReader *r, const char *what, SftError *err)
{
	uint32_t	computed = r->crc;
	unsigned char b[4];
	uint32_t	stored;
	SftStatus	st;

	if ((st = take(r, b, 4, what, err)) != SFT_OK)
		return st;
	r->crc = 0;
	stored = get_u32(b);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	if (stored != computed)
		return sft_error(err, SFT_ERR_FORMAT,
						 "checkpoint %s mismatch: stored %08x, computed %08x (the checkpoint is damaged)",
						 what, stored, computed);
#else
	(void) stored;
	(void) computed;
#endif
	return SFT_OK;
}

/*
 * Either kind: with base NULL a model (model_out), else an adapter for a
 * base of that config (adapter_out); the other kind is an error.
 */
static SftStatus
read_checkpoint(SftReadFn read, void *ctx, const SftLlamaConfig *base, SftModel **model_out,
				SftLoraAdapter **adapter_out, float **adam_m_out, float **adam_v_out,
				int64_t *step_out, char **meta_out, SftError *err)
{
	CkptReader	r = {read, ctx, 0, 0};
	unsigned char fixed[SFT_CKPT_FIXED_HEADER];
	uint32_t	version;
	uint32_t	flags;
	uint64_t	config_len;
	uint64_t	meta_len;
	uint64_t	n_params;
	int64_t		step;
	char	   *config_text = NULL;
	char	   *meta = NULL;
	SftLlamaConfig cfg;
	SftModel   *model = NULL;
	SftLoraAdapter *adapter = NULL;
	float	   *slab = NULL;
	size_t		n_slab = 0;
	float	   *m = NULL;
	float	   *v = NULL;
	float	   *scratch = NULL;
	SftStatus	st;

	if (model_out)
		*model_out = NULL;
	if (adapter_out)
		*adapter_out = NULL;
	if (adam_m_out)
		*adam_m_out = NULL;
	if (adam_v_out)
		*adam_v_out = NULL;
	if (step_out)
		*step_out = 0;
	if (meta_out)
		*meta_out = NULL;

	if ((st = take(&r, fixed, sizeof(fixed), "the header", err)) != SFT_OK)
		return st;
	if (memcmp(fixed, SFT_CKPT_MAGIC, 8) != 0)
		return sft_error(err, SFT_ERR_FORMAT, "not an sft checkpoint (bad magic number)");
	version = get_u32(fixed + 8);
	flags = get_u32(fixed + 12);
	config_len = get_u64(fixed + 16);
	meta_len = get_u64(fixed + 24);
	n_params = get_u64(fixed + 32);
	step = (int64_t) get_u64(fixed + 40);
	if (version != SFT_CKPT_VERSION)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "checkpoint format version %u is not supported (this build reads version %d)",
						 version, SFT_CKPT_VERSION);
	if ((flags & ~(SFT_CKPT_FLAG_ADAMW | SFT_CKPT_FLAG_ADAPTER)) != 0)
		return sft_error(err, SFT_ERR_FORMAT, "checkpoint has unknown flags 0x%x", flags);
	if ((flags & SFT_CKPT_FLAG_ADAPTER) && base == NULL)
		return sft_error(err, SFT_ERR_FORMAT,
						 "the checkpoint holds a LoRA adapter, not a model");
	if (!(flags & SFT_CKPT_FLAG_ADAPTER) && base != NULL)
		return sft_error(err, SFT_ERR_FORMAT,
						 "the checkpoint holds a model, not a LoRA adapter");
	if (config_len == 0 || config_len > SFT_CKPT_MAX_CONFIG)
		return sft_error(err, SFT_ERR_FORMAT,
						 "checkpoint config length %llu is out of range [1, %llu]",
						 (unsigned long long) config_len, (unsigned long long) SFT_CKPT_MAX_CONFIG);
	if (meta_len > SFT_CKPT_MAX_META)
		return sft_error(err, SFT_ERR_FORMAT,
						 "checkpoint metadata length %llu exceeds the limit of %llu",
						 (unsigned long long) meta_len, (unsigned long long) SFT_CKPT_MAX_META);
	if (step < 0)
		return sft_error(err, SFT_ERR_FORMAT, "checkpoint step %lld is negative", (long long) step);

	config_text = sft_alloc((size_t) config_len + 1);
	meta = sft_alloc((size_t) meta_len + 1);
	if (config_text == NULL || meta == NULL)
	{
		st = sft_error(err, SFT_ERR_NOMEM, "out of memory reading a checkpoint header");
		goto done;
	}
	if ((st = take(&r, config_text, (size_t) config_len, "the config", err)) != SFT_OK ||
		(st = take(&r, meta, (size_t) meta_len, "the metadata", err)) != SFT_OK ||
		(st = check_crc(&r, "header checksum", err)) != SFT_OK)
		goto done;
	config_text[config_len] = '\0';
	meta[meta_len] = '\0';
	if (meta_len > 0 && (st = check_meta_json(meta, (size_t) meta_len, err)) != SFT_OK)
		goto done;
	if (base)
	{
		SftLoraConfig lcfg;

		if ((st = sft_lora_config_parse(config_text, (size_t) config_len, &lcfg, NULL,
										err)) != SFT_OK)
		{
			sft_error_prefix(err, "checkpoint: ");
			goto done;
		}
		if ((st = sft_lora_adapter_new(&lcfg, base, &adapter, err)) != SFT_OK)
			goto done;
		slab = adapter->params;
		n_slab = adapter->n_params;
	}
	else
	{
		if ((st = sft_llama_config_parse(config_text, (size_t) config_len, &cfg, err)) != SFT_OK)
		{
			sft_error_prefix(err, "checkpoint: ");
			goto done;
		}
		if ((st = sft_model_new(&cfg, &model, err)) != SFT_OK)
			goto done;
		slab = sft_model_params(model);
		n_slab = sft_model_num_params(model);
	}
	if (n_params != n_slab)
	{
		st = sft_error(err, SFT_ERR_FORMAT,
					   "checkpoint holds %llu parameters but its config implies %zu",
					   (unsigned long long) n_params, n_slab);
		goto done;
	}

	/* Moments the caller does not want are read through a scratch chunk. */
	if ((flags & SFT_CKPT_FLAG_ADAMW) && adam_m_out && adam_v_out)
	{
		m = sft_alloc(n_params * sizeof(float));
		v = sft_alloc(n_params * sizeof(float));
		if (m == NULL || v == NULL)
		{
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory for %llu AdamW moments",
						   (unsigned long long) n_params);
			goto done;
		}
	}
	else if (flags & SFT_CKPT_FLAG_ADAMW)
	{
		scratch = sft_alloc(CKPT_CHUNK);
		if (scratch == NULL)
		{
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory reading a checkpoint");
			goto done;
		}
	}
	if ((st = take_floats(&r, slab, NULL, n_params, "the parameters",
						  err)) != SFT_OK)
		goto done;
	if ((flags & SFT_CKPT_FLAG_ADAMW) &&
		((st = take_floats(&r, m, scratch, n_params, "the AdamW first moments", err)) != SFT_OK ||
		 (st = take_floats(&r, v, scratch, n_params, "the AdamW second moments", err)) != SFT_OK))
		goto done;
	if ((st = check_crc(&r, "data checksum", err)) != SFT_OK)
		goto done;

	if (model_out)
		*model_out = model;
	if (adapter_out)
		*adapter_out = adapter;
	model = NULL;
	adapter = NULL;
	if (adam_m_out && adam_v_out)
	{
		*adam_m_out = m;
		*adam_v_out = v;
		m = v = NULL;
	}
	if (step_out)
		*step_out = step;
	if (meta_out && meta_len > 0)
	{
		*meta_out = meta;
		meta = NULL;
	}

done:
	sft_model_free(model);
	sft_lora_adapter_free(adapter);
	sft_free(m);
	sft_free(v);
	sft_free(scratch);
	sft_free(config_text);
	sft_free(meta);
	return st;
}

SftStatus
sft_checkpoint_read(SftReadFn read, void *ctx, SftModel **model_out, float **adam_m_out,
					float **adam_v_out, int64_t *step_out, char **meta_out, SftError *err)
{
	return read_checkpoint(read, ctx, NULL, model_out, NULL, adam_m_out, adam_v_out, step_out,
						   meta_out, err);
}

SftStatus
sft_checkpoint_read_adapter(SftReadFn read, void *ctx, const SftLlamaConfig *base,
							SftLoraAdapter **adapter_out, float **adam_m_out, float **adam_v_out,
							int64_t *step_out, char **meta_out, SftError *err)
{
	return read_checkpoint(read, ctx, base, NULL, adapter_out, adam_m_out, adam_v_out,
						   step_out, meta_out, err);
}
