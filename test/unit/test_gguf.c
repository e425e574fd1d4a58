/*
 * test_gguf.c: the GGUF writer and reader (gguf.c) and the model export
 * (gguf_export.c): the conversions GGUF files need (quant.c's) against
 * hand-computed bit patterns, q8_0 blocks as ggml lays them out, a written file read back (keys with llama.cpp's value types,
 * tensor names and GGUF-order dims, the Q/K permutation, tokens, merges,
 * scores), and the refusals (duplicate token texts, corrupt files); per
 * family row (qwen2, qwen3, smollm3, gemma3, llama with llama3 RoPE): the
 * architecture keys with their types and values, every tensor name and
 * GGUF shape, which rows are permuted or shifted by one, rope_freqs against
 * the formula of convert_hf_to_gguf, and what each row refuses.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_export.h"
#include "model.h"
#include "tap.h"
#include "tokenizer.h"
#include "weights.h"

static int
read_file(const char *path, SftBuf *out)
{
	FILE	   *f = fopen(path, "rb");
	char		chunk[65536];
	size_t		n;

	sft_buf_init(out);
	if (!f)
		return 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sft_buf_append(out, chunk, n);
	fclose(f);
	return 1;
}

static uint32_t
kv_u32(const SftGgufFile *f, const char *key, int *ok)
{
	const SftGgufKv *kv = sft_gguf_find_kv(f, key);
	uint32_t	v;

	if (!kv || kv->value.type != SFT_GGUF_UINT32)
	{
		*ok = 0;
		return 0;
	}
	memcpy(&v, kv->value.data, 4);
	return v;
}

static void
test_numbers(void)
{
	TAP_OK(sft_f32_to_f16(1.0f) == 0x3c00, "fp16(1) = 0x3c00");
	TAP_OK(sft_f32_to_f16(-2.0f) == 0xc000, "fp16(-2) = 0xc000");
	TAP_OK(sft_f32_to_f16(65504.0f) == 0x7bff, "fp16 max is finite");
	TAP_OK(sft_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down to 65504");
	TAP_OK(sft_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to infinity (ties to even)");
	/* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even gives 1 */
	TAP_OK(sft_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00, "fp16 halfway rounds to even (down)");
	TAP_OK(sft_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02, "fp16 halfway rounds to even (up)");
	TAP_OK(sft_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01, "fp16 above halfway rounds up");
	TAP_OK(sft_f32_to_f16(ldexpf(1, -24)) == 0x0001, "smallest fp16 subnormal");
	TAP_OK(sft_f32_to_f16(ldexpf(1, -25)) == 0x0000, "half the smallest subnormal ties to zero");
	TAP_OK(sft_f32_to_f16(ldexpf(3, -26)) == 0x0001, "0.75 of the smallest subnormal rounds up");
	TAP_OK(sft_f32_to_f16(ldexpf(1023, -24) + ldexpf(1, -25)) == 0x0400, "subnormal rounds up into the smallest normal");
	TAP_OK((sft_f32_to_f16(NAN) & 0x7e00) == 0x7e00, "fp16 NaN stays NaN");
	TAP_OK(sft_f32_to_f16(-0.0f) == 0x8000, "fp16 keeps the sign of zero");
	TAP_OK(sft_f16_to_f32(0x0001) == ldexpf(1, -24) && sft_f16_to_f32(0x3555) == 0.333251953125f,
		   "fp16 -> fp32");
	TAP_OK(sft_f32_to_bf16(1.0f) == 0x3f80, "bf16(1) = 0x3f80");
	/* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7 */
	TAP_OK(sft_f32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3f80, "bf16 halfway rounds to even (down)");
	TAP_OK(sft_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)) == 0x3f82, "bf16 halfway rounds to even (up)");
	TAP_OK((sft_f32_to_bf16(NAN) & 0x7fc0) == 0x7fc0, "bf16 NaN stays NaN");
	TAP_OK(sft_bf16_to_f32(0xc040) == -3.0f, "bf16 -> fp32");
	{
		int			ok = 1;

		for (uint32_t h = 0; h < 0x7c00; h++)
			if (sft_f32_to_f16(sft_f16_to_f32((uint16_t) h)) != h)
				ok = 0;
		TAP_OK(ok, "every finite positive fp16 round-trips through fp32");
	}
	{
		float		x[64];
		uint8_t		q[2 * SFT_GGUF_Q8_0_BLOCK_BYTES];
		float		back[64];
		float		maxerr = 0;

		for (int i = 0; i < 64; i++)
			x[i] = (i < 32) ? (float) (i - 16) / 8.0f : 0.0f;
		x[5] = 2.5f;			/* the block's max |x| */
		sft_quantize_row(SFT_DTYPE_Q8_0, x, q, 64);
		sft_dequantize_row(SFT_DTYPE_Q8_0, q, back, 64);
		for (int i = 0; i < 32; i++)
			maxerr = fmaxf(maxerr, fabsf(back[i] - x[i]));
		TAP_OK(q[0] == (sft_f32_to_f16(2.5f / 127) & 0xff) && q[1] == (sft_f32_to_f16(2.5f / 127) >> 8),
			   "q8_0 scale is fp16(max|x| / 127)");
		TAP_OK((int8_t) q[2 + 5] == 127 && (int8_t) q[2 + 0] == -102,
			   "q8_0 values are round(x / d) (max -> 127, -2 -> %d)", (int8_t) q[2]);
		TAP_OK(maxerr <= 2.5f / 127 / 2 * 1.01f, "q8_0 error within half a step (%g)", maxerr);
		TAP_OK(q[SFT_GGUF_Q8_0_BLOCK_BYTES] == 0 && q[SFT_GGUF_Q8_0_BLOCK_BYTES + 1] == 0 &&
			   back[40] == 0.0f, "an all-zero q8_0 block has scale 0");
	}
	{
		SftGgmlType t;
		SftError	err = {0};

		TAP_OK(sft_ggml_type_from_name("q8_0", &t, &err) == SFT_OK && t == SFT_GGML_Q8_0, "q8_0 by name");
		TAP_OK(sft_ggml_type_from_name("q4_0", &t, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "f32, f16, bf16, q8_0"), "unknown dtype lists the known ones: %s", err.message);
	}
}

static SftModel *
tiny_model(int vocab, int tied)
{
	SftLlamaConfig cfg = {
		.hidden_size = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
		.intermediate_size = 96, .vocab_size = vocab, .max_position = 256,
		.rms_norm_eps = 1e-5f, .rope_theta = 10000.0f, .tie_word_embeddings = tied,
		.bos_token_id = -1, .eos_token_id = -1
	};
	SftModel   *m = NULL;
	SftError	err = {0};

	if (sft_model_new(&cfg, &m, &err) != SFT_OK)
		return NULL;
	sft_model_init_random(m, 7);
	return m;
}

static SftTokenizer *
fixture_tokenizer(const char *path)
{
	SftBuf		b;
	SftTokenizer *tok = NULL;
	SftError	err = {0};

	if (!read_file(path, &b))
		return NULL;
	if (sft_tokenizer_from_hf(b.data, b.len, NULL, 0, &tok, &err) != SFT_OK)
		printf("# %s: %s\n", path, err.message);
	sft_buf_free(&b);
	return tok;
}

static void
test_export(const char *path, int spm, SftGgmlType dtype, int tied)
{
	SftTokenizer *tok = fixture_tokenizer(path);
	SftModel   *m;
	SftBuf		out;
	SftError	err = {0};
	SftGgufFile f;
	SftGgufExportOptions opt = {dtype, "tiny", "{{ messages }}", -1};
	int			ok = 1;
	const char *dn = sft_ggml_type_name(dtype);

	if (!tok)
	{
		TAP_OK(0, "%s loads", path);
		return;
	}
	m = tiny_model(sft_tokenizer_vocab_size(tok) + 5, tied);
	sft_buf_init(&out);
	TAP_OK(sft_gguf_export_model(m, tok, &opt, sft_buf_write, &out, &err) == SFT_OK,
		   "%s %s: export (%s)", path, dn, err.message);
	TAP_OK(sft_gguf_parse((const unsigned char *) out.data, out.len, &f, &err) == SFT_OK,
		   "%s %s: our reader accepts the file (%s)", path, dn, err.message);
	if (err.status != SFT_OK)
		goto done;
	{
		const SftGgufKv *arch = sft_gguf_find_kv(&f, "general.architecture");
		const SftGgufKv *model = sft_gguf_find_kv(&f, "tokenizer.ggml.model");
		const SftGgufKv *pre = sft_gguf_find_kv(&f, "tokenizer.ggml.pre");
		const SftGgufKv *eps = sft_gguf_find_kv(&f, "llama.attention.layer_norm_rms_epsilon");

		TAP_OK(arch && arch->value.len == 5 && memcmp(arch->value.data, "llama", 5) == 0,
			   "%s: general.architecture = llama", dn);
		TAP_OK(kv_u32(&f, "llama.context_length", &ok) == 256 && kv_u32(&f, "llama.block_count", &ok) == 2 &&
			   kv_u32(&f, "llama.attention.head_count_kv", &ok) == 2 &&
			   kv_u32(&f, "llama.rope.dimension_count", &ok) == 16 &&
			   kv_u32(&f, "general.file_type", &ok) == (dtype == SFT_GGML_F32 ? 0 : dtype == SFT_GGML_F16 ? 1 : dtype == SFT_GGML_Q8_0 ? 7 : 32) && ok,
			   "%s: hyper-parameters are u32 with the config's values", dn);
		TAP_OK(eps && eps->value.type == SFT_GGUF_FLOAT32, "%s: rms epsilon is f32", dn);
		TAP_OK(model && model->value.len == (spm ? 5u : 4u) &&
			   memcmp(model->value.data, spm ? "llama" : "gpt2", model->value.len) == 0,
			   "%s: tokenizer.ggml.model = %s", path, spm ? "llama" : "gpt2");
		TAP_OK(pre && memcmp(pre->value.data, spm ? "default" : "gpt-2", pre->value.len) == 0,
			   "%s: tokenizer.ggml.pre = %.*s", path, pre ? (int) pre->value.len : 0, pre ? (const char *) pre->value.data : "");
	}
	{
		const SftGgufKv *tokens = sft_gguf_find_kv(&f, "tokenizer.ggml.tokens");
		const SftGgufKv *types = sft_gguf_find_kv(&f, "tokenizer.ggml.token_type");
		const SftGgufKv *merges = sft_gguf_find_kv(&f, "tokenizer.ggml.merges");
		const SftGgufKv *scores = sft_gguf_find_kv(&f, "tokenizer.ggml.scores");
		int			V = sft_tokenizer_vocab_size(tok) + 5;
		const char **s = calloc(V, sizeof(*s));
		uint64_t   *len = calloc(V, sizeof(*len));
		int			same = 1;

		TAP_OK(tokens && tokens->value.count == (uint64_t) V && types && types->value.elem_type == SFT_GGUF_INT32 &&
			   types->value.count == (uint64_t) V,
			   "%s: one token and one type per id of the model's vocabulary (%d)", path, V);
		if (tokens && tokens->value.count == (uint64_t) V)
		{
			sft_gguf_strings(&tokens->value, s, len, &err);
			for (int id = 0; id < sft_tokenizer_vocab_size(tok); id++)
			{
				size_t		tl;
				const char *t = sft_tokenizer_id_to_token(tok, id, &tl);

				if (!t || tl != len[id] || memcmp(t, s[id], tl) != 0)
					same = 0;
			}
			TAP_OK(same && len[V - 1] == strlen("[PADx]") - 1 + (V - 1 >= 100 ? 3 : 2) &&
				   memcmp(s[V - 1], "[PAD", 4) == 0, "%s: token texts by id, padding after", path);
		}
		if (spm)
		{
			int32_t		t3;
			int			byte_id = sft_tokenizer_token_to_id(tok, "<0x41>", 6);

			memcpy(&t3, types->value.data + 4 * byte_id, 4);
			TAP_OK(scores && scores->value.count == (uint64_t) V && !merges && t3 == 6,
				   "%s: scores, no merges, <0x41> is a BYTE token", path);
		}
		else
			TAP_OK(merges && merges->value.count > 0 && !scores, "%s: %llu merges, no scores", path,
				   merges ? (unsigned long long) merges->value.count : 0ULL);
		free(s);
		free(len);
	}
	{
		const SftGgufTensorIn *q = sft_gguf_find_tensor(&f, "blk.1.attn_q.weight");
		const SftGgufTensorIn *k = sft_gguf_find_tensor(&f, "blk.0.attn_k.weight");
		const SftGgufTensorIn *norm = sft_gguf_find_tensor(&f, "blk.0.attn_norm.weight");
		const SftGgufTensorIn *emb = sft_gguf_find_tensor(&f, "token_embd.weight");
		const SftGgufTensorIn *outw = sft_gguf_find_tensor(&f, "output.weight");
		const SftParamTensor *hq = sft_model_find_tensor(m, "model.layers.1.self_attn.q_proj.weight");
		const SftParamTensor *hk = sft_model_find_tensor(m, "model.layers.0.self_attn.k_proj.weight");
		const float *p = sft_model_params(m);
		double		tol = dtype == SFT_GGML_F32 ? 0 : dtype == SFT_GGML_Q8_0 ? 2e-3 : dtype == SFT_GGML_F16 ? 1e-4 : 1e-3;

		TAP_OK(q && q->ne[0] == 64 && q->ne[1] == 64 && q->type == dtype && k && k->ne[0] == 64 && k->ne[1] == 32,
			   "%s: attn_q is [64, 64], attn_k [64, 32] (GGUF order) of type %s", dn, dn);
		TAP_OK(norm && norm->type == SFT_GGML_F32 && norm->n_dims == 1, "%s: norms stay f32", dn);
		TAP_OK(emb && emb->ne[0] == 64 && emb->ne[1] == (uint64_t) sft_tokenizer_vocab_size(tok) + 5,
			   "%s: token_embd is [C, V]", dn);
		TAP_OK(tied ? outw == NULL : outw != NULL, "%s: output.weight %s", dn, tied ? "omitted (tied)" : "present (untied)");
		TAP_OK(f.n_tensors == (uint64_t) sft_model_tensor_count(m), "%s: one GGUF tensor per model tensor", dn);
		if (q && k && hq && hk)
		{
			float	   *gq = malloc(sizeof(float) * 64 * 64),
					   *gk = malloc(sizeof(float) * 64 * 32);
			double		maxd = 0,
						maxd_id = 0;

			sft_gguf_tensor_to_f32(q, gq, &err);
			sft_gguf_tensor_to_f32(k, gk, &err);
			/* GGUF row h*HD + 2i + j holds HF row h*HD + j*HD/2 + i */
			for (int r = 0; r < 64; r++)
				for (int c = 0; c < 64; c++)
				{
					int			src = (r / 16) * 16 + (r % 2) * 8 + (r % 16) / 2;

					maxd = fmax(maxd, fabs(gq[r * 64 + c] - p[hq->offset + src * 64 + c]));
					maxd_id = fmax(maxd_id, fabs(gq[r * 64 + c] - p[hq->offset + r * 64 + c]));
				}
			for (int r = 0; r < 32; r++)
				for (int c = 0; c < 64; c++)
				{
					int			src = (r / 16) * 16 + (r % 2) * 8 + (r % 16) / 2;

					maxd = fmax(maxd, fabs(gk[r * 64 + c] - p[hk->offset + src * 64 + c]));
				}
			TAP_OK(maxd <= tol && maxd_id > 10 * tol + 1e-3,
				   "%s: Q/K rows permuted per head (max diff %g, unpermuted %g)", dn, maxd, maxd_id);
			free(gq);
			free(gk);
		}
	}
	sft_gguf_file_free(&f);
done:
	sft_buf_free(&out);
	sft_model_free(m);
	sft_tokenizer_free(tok);
}

static void
test_refusals(void)
{
	SftError	err = {0};
	SftBuf		out;
	SftGgufFile f;
	SftTokenizer *tok = NULL;
	SftModel   *m;
	SftGgufExportOptions opt = {SFT_GGML_F16, "dup", NULL, -1};
	/* a non-special added token whose text is also a vocabulary token's */
	const char *dup =
		"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
		" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
		" \"decoder\": {\"type\": \"ByteLevel\"},"
		" \"added_tokens\": [{\"id\": 3, \"content\": \"ab\", \"special\": false}]}";
	const char *prefix =
		"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
		" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true},"
		" \"decoder\": {\"type\": \"ByteLevel\"}}";
	const char *digits3 =
		"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
		" \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,2}\"}, \"behavior\": \"Isolated\"},"
		" {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]},"
		" \"decoder\": {\"type\": \"ByteLevel\"}}";

	if (sft_tokenizer_from_hf(dup, strlen(dup), NULL, 0, &tok, &err) == SFT_OK)
	{
		m = tiny_model(4, 1);
		sft_buf_init(&out);
		TAP_OK(sft_gguf_export_model(m, tok, &opt, sft_buf_write, &out, &err) == SFT_ERR_INVALID &&
			   strstr(err.message, "tokens 2 and 3 have the same text") && out.len == 0,
			   "duplicate token text refused before writing: %s", err.message);
		sft_buf_free(&out);
		sft_model_free(m);
		sft_tokenizer_free(tok);
	}
	else
		TAP_OK(0, "duplicate-text tokenizer loads (%s)", err.message);
	sft_error_clear(&err);
	tok = NULL;
	if (sft_tokenizer_from_hf(prefix, strlen(prefix), NULL, 0, &tok, &err) == SFT_OK)
	{
		const char *name;

		TAP_OK(sft_gguf_pre_tokenizer_name(tok, &name, &err) == SFT_ERR_UNSUPPORTED &&
			   strstr(err.message, "add_prefix_space"), "add_prefix_space refused: %s", err.message);
		sft_tokenizer_free(tok);
	}
	sft_error_clear(&err);
	tok = NULL;
	if (sft_tokenizer_from_hf(digits3, strlen(digits3), NULL, 0, &tok, &err) == SFT_OK)
	{
		const char *name;

		TAP_OK(sft_gguf_pre_tokenizer_name(tok, &name, &err) == SFT_ERR_UNSUPPORTED &&
			   strstr(err.message, "\\p{N}{1,2}"), "an unknown split regex is refused by name: %s", err.message);
		sft_tokenizer_free(tok);
	}
	else
		TAP_OK(0, "digits tokenizer loads (%s)", err.message);

	/* the reader on broken files */
	sft_error_clear(&err);
	{
		SftTokenizer *t = fixture_tokenizer("test/fixtures/tiny_bpe.json");
		SftGgufExportOptions o = {SFT_GGML_Q8_0, "tiny", NULL, -1};
		size_t		cut[] = {3, 20, 100, 5000};

		m = tiny_model(sft_tokenizer_vocab_size(t), 0);
		sft_buf_init(&out);
		sft_gguf_export_model(m, t, &o, sft_buf_write, &out, &err);
		for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++)
			TAP_OK((sft_error_clear(&err), 1) && sft_gguf_parse((const unsigned char *) out.data, cut[i], &f, &err) == SFT_ERR_FORMAT,
				   "a file cut at %zu bytes is refused: %s", cut[i], err.message);
		sft_error_clear(&err);
		TAP_OK(sft_gguf_parse((const unsigned char *) out.data, out.len - 32, &f, &err) == SFT_ERR_FORMAT &&
			   strstr(err.message, "past the end"), "a file 32 bytes short (more than the padding) is refused: %s", err.message);
		out.data[4] = 2;
		sft_error_clear(&err);
		TAP_OK(sft_gguf_parse((const unsigned char *) out.data, out.len, &f, &err) == SFT_ERR_UNSUPPORTED,
			   "version 2 is refused: %s", err.message);
		out.data[4] = 3;
		out.data[0] = 'X';
		sft_error_clear(&err);
		TAP_OK(sft_gguf_parse((const unsigned char *) out.data, out.len, &f, &err) == SFT_ERR_FORMAT,
			   "bad magic is refused: %s", err.message);
		sft_buf_free(&out);
		sft_model_free(m);
		sft_tokenizer_free(t);
	}
	/* q8_0 needs rows of whole blocks */
	{
		SftGgufWriter w;
		uint64_t	ne[2] = {48, 2};
		float		x[96] = {0};

		sft_gguf_writer_init(&w);
		sft_error_clear(&err);
		sft_gguf_add_tensor(&w, "t", 2, ne, SFT_GGML_Q8_0, x, NULL, NULL);
		sft_buf_init(&out);
		TAP_OK(sft_gguf_write(&w, sft_buf_write, &out, &err) == SFT_ERR_INVALID && strstr(err.message, "multiple of 32"),
			   "q8_0 of a 48-wide row is refused: %s", err.message);
		sft_buf_free(&out);
		sft_gguf_writer_free(&w);
	}
}


/* ---------------------------------------------------------------------------
 * Family rows
 * ------------------------------------------------------------------------- */

static const char *
kv_type_ok(const SftGgufFile *f, const char *key, SftGgufValueType type)
{
	const SftGgufKv *kv = sft_gguf_find_kv(f, key);

	if (kv == NULL)
		return "missing";
	return kv->value.type == type ? NULL : "wrong type";
}

static float
kv_f32(const SftGgufFile *f, const char *key)
{
	const SftGgufKv *kv = sft_gguf_find_kv(f, key);
	float		v = NAN;

	if (kv && kv->value.type == SFT_GGUF_FLOAT32)
		memcpy(&v, kv->value.data, 4);
	return v;
}

static SftModel *
config_model(const char *json, SftError *err)
{
	SftLlamaConfig cfg;
	SftModel   *m = NULL;

	if (sft_llama_config_parse(json, strlen(json), &cfg, err) != SFT_OK ||
		sft_model_new(&cfg, &m, err) != SFT_OK)
		return NULL;
	sft_model_init_random(m, 11);
	/* norms away from 0 and 1, so "+ 1" and "as is" differ everywhere */
	for (int i = 0; i < sft_model_tensor_count(m); i++)
	{
		const SftParamTensor *t = sft_model_tensor(m, i);

		if (t->ndim == 1)
			for (int64_t j = 0; j < t->shape[0]; j++)
				sft_model_params(m)[t->offset + j] = 0.25f + 0.01f * (float) (j % 7);
	}
	return m;
}

/* export to memory and parse; 0 on failure (err says why) */
static int
export_parse(SftModel *m, SftTokenizer *tok, SftBuf *out, SftGgufFile *f, SftError *err)
{
	SftGgufExportOptions opt = {SFT_GGML_F32, "fam", NULL, -1};

	sft_buf_init(out);
	return sft_gguf_export_model(m, tok, &opt, sft_buf_write, out, err) == SFT_OK &&
		sft_gguf_parse((const unsigned char *) out->data, out->len, f, err) == SFT_OK;
}

typedef struct FamilyCase
{
	const char *arch;
	const char *config;
	int			permuted;		/* Q/K rows interleaved */
	int			plus_one;		/* norms written as w + 1 */
	int			tensors;		/* model tensors + extra (rope_freqs) */
	const char *layer_tensors[16];	/* blk.0.<name>.weight/.bias: expected ne0 x ne1 */
	int			ne[16][2];
} FamilyCase;

#define BASE "\"hidden_size\": 64, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, " \
	"\"intermediate_size\": 96, \"vocab_size\": 400, \"max_position_embeddings\": 256, "

static const FamilyCase family_cases[] = {
	{"qwen2", "{\"model_type\": \"qwen2\", " BASE "\"num_hidden_layers\": 2, \"tie_word_embeddings\": true}",
		0, 0, 1 + 2 * 12 + 1,
		{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q.bias", "attn_k.bias",
		 "attn_v.bias", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"},
		{{64, 1}, {64, 64}, {64, 32}, {64, 32}, {64, 1}, {32, 1}, {32, 1}, {64, 64}, {64, 1}, {64, 96}, {64, 96}, {96, 64}}},
	{"qwen3", "{\"model_type\": \"qwen3\", " BASE "\"num_hidden_layers\": 2, \"head_dim\": 32, \"tie_word_embeddings\": false}",
		0, 0, 1 + 2 * 11 + 2,
		{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q_norm.weight",
		 "attn_k_norm.weight", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"},
		{{64, 1}, {64, 128}, {64, 64}, {64, 64}, {32, 1}, {32, 1}, {128, 64}, {64, 1}, {64, 96}, {64, 96}, {96, 64}}},
	{"smollm3", "{\"model_type\": \"smollm3\", " BASE "\"num_hidden_layers\": 4, \"tie_word_embeddings\": true}",
		1, 0, 1 + 4 * 9 + 1,
		{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
		 "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"},
		{{64, 1}, {64, 64}, {64, 32}, {64, 32}, {64, 64}, {64, 1}, {64, 96}, {64, 96}, {96, 64}}},
	{"gemma3", "{\"model_type\": \"gemma3_text\", " BASE "\"num_hidden_layers\": 6, \"head_dim\": 32, "
		"\"query_pre_attn_scalar\": 32, \"sliding_window\": 8, \"final_logit_softcapping\": 30.0, "
		"\"rope_local_base_freq\": 10000.0, \"rope_theta\": 1000000.0, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}, "
		"\"layer_types\": [\"sliding_attention\", \"sliding_attention\", \"sliding_attention\", \"sliding_attention\", "
		"\"sliding_attention\", \"full_attention\"]}",
		0, 1, 1 + 6 * 13 + 1,
		{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q_norm.weight",
		 "attn_k_norm.weight", "attn_output.weight", "post_attention_norm.weight", "ffn_norm.weight",
		 "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "post_ffw_norm.weight"},
		{{64, 1}, {64, 128}, {64, 64}, {64, 64}, {32, 1}, {32, 1}, {128, 64}, {64, 1}, {64, 1}, {64, 96}, {64, 96},
		 {96, 64}, {64, 1}}},
	{"llama", "{" BASE "\"num_hidden_layers\": 2, \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, "
		"\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, "
		"\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}}",
		1, 0, 1 + 2 * 9 + 1 + 1,
		{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
		 "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"},
		{{64, 1}, {64, 64}, {64, 32}, {64, 32}, {64, 64}, {64, 1}, {64, 96}, {64, 96}, {96, 64}}},
};

static void
test_family(const FamilyCase *fc, SftTokenizer *tok)
{
	SftError	err = {0};
	SftModel   *m = config_model(fc->config, &err);
	SftBuf		out;
	SftGgufFile f;
	const SftLlamaConfig *cfg;
	const char *a = fc->arch;
	char		key[128];
	int			ok = 1;

	if (m == NULL)
	{
		TAP_OK(0, "%s: model from its config (%s)", a, err.message);
		return;
	}
	cfg = sft_model_config(m);
	if (!export_parse(m, tok, &out, &f, &err))
	{
		TAP_OK(0, "%s: export and read back (%s)", a, err.message);
		sft_buf_free(&out);
		sft_model_free(m);
		return;
	}
	{
		const SftGgufKv *arch = sft_gguf_find_kv(&f, "general.architecture");

		TAP_OK(arch && arch->value.len == strlen(a) && memcmp(arch->value.data, a, strlen(a)) == 0,
			   "%s: general.architecture = %s (from the config's family)", a, a);
	}
	{
		static const char *u32_keys[] = {"vocab_size", "context_length", "embedding_length", "block_count",
			"feed_forward_length", "attention.head_count", "attention.head_count_kv", "attention.key_length",
		"attention.value_length", "rope.dimension_count"};
		uint32_t	want[] = {400, 256, 64, (uint32_t) cfg->n_layers, 96, 4, 2, (uint32_t) cfg->head_dim,
		(uint32_t) cfg->head_dim, (uint32_t) cfg->head_dim};
		const char *bad = NULL;

		for (size_t i = 0; i < sizeof(u32_keys) / sizeof(u32_keys[0]); i++)
		{
			snprintf(key, sizeof(key), "%s.%s", a, u32_keys[i]);
			if (kv_u32(&f, key, &ok) != want[i] || !ok)
			{
				bad = u32_keys[i];
				break;
			}
		}
		snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", a);
		if (!bad && kv_type_ok(&f, key, SFT_GGUF_FLOAT32))
			bad = "attention.layer_norm_rms_epsilon";
		snprintf(key, sizeof(key), "%s.rope.freq_base", a);
		if (!bad && kv_f32(&f, key) != cfg->rope_theta)
			bad = "rope.freq_base";
		TAP_OK(bad == NULL, "%s: size keys are u32 with the config's values, epsilon and rope base f32 (%s)", a,
			   bad ? bad : "all");
	}
	if (strcmp(a, "gemma3") == 0)
	{
		const SftGgufKv *type = sft_gguf_find_kv(&f, "gemma3.rope.scaling.type");

		ok = 1;
		TAP_OK(kv_u32(&f, "gemma3.attention.sliding_window", &ok) == 8 &&
			   kv_u32(&f, "gemma3.attention.sliding_window_pattern", &ok) == 6 && ok &&
			   kv_f32(&f, "gemma3.rope.freq_base_swa") == 10000.0f &&
			   kv_f32(&f, "gemma3.final_logit_softcapping") == 30.0f &&
			   type && type->value.type == SFT_GGUF_STRING && type->value.len == 6 &&
			   memcmp(type->value.data, "linear", 6) == 0 && kv_f32(&f, "gemma3.rope.scaling.factor") == 8.0f,
			   "gemma3: sliding_window 8 and pattern 6 (u32), freq_base_swa, final_logit_softcapping, linear scaling (f32, string)");
	}
	else
	{
		snprintf(key, sizeof(key), "%s.attention.sliding_window", a);
		TAP_OK(sft_gguf_find_kv(&f, key) == NULL, "%s: no sliding_window key", a);
	}
	TAP_OK(f.n_tensors == (uint64_t) fc->tensors, "%s: %d tensors (%llu)", a, fc->tensors,
		   (unsigned long long) f.n_tensors);
	{
		const char *bad = NULL;

		for (int i = 0; fc->layer_tensors[i] && !bad; i++)
			for (int l = 0; l < cfg->n_layers && !bad; l++)
			{
				const SftGgufTensorIn *t;

				snprintf(key, sizeof(key), "blk.%d.%s", l, fc->layer_tensors[i]);
				t = sft_gguf_find_tensor(&f, key);
				if (!t || t->ne[0] != (uint64_t) fc->ne[i][0] || t->ne[1] != (uint64_t) fc->ne[i][1] ||
					(t->n_dims == 1) != (fc->ne[i][1] == 1))
					bad = fc->layer_tensors[i];
			}
		TAP_OK(!bad && sft_gguf_find_tensor(&f, "token_embd.weight") && sft_gguf_find_tensor(&f, "output_norm.weight") &&
			   (sft_gguf_find_tensor(&f, "output.weight") != NULL) == !cfg->tie_word_embeddings,
			   "%s: every layer's tensors with llama.cpp's names and GGUF shapes (%s)", a, bad ? bad : "all");
	}
	{
		const SftGgufTensorIn *q = sft_gguf_find_tensor(&f, "blk.1.attn_q.weight");
		const SftParamTensor *hq = sft_model_find_tensor(m, "model.layers.1.self_attn.q_proj.weight");
		uint64_t	rows = (uint64_t) cfg->n_heads * cfg->head_dim;
		float	   *g = q ? malloc(sizeof(float) * q->ne[0] * q->ne[1]) : NULL;
		int			as_is = 1,
					perm = 1;
		int			hd = cfg->head_dim;

		if (g && hq && sft_gguf_tensor_to_f32(q, g, &err) == SFT_OK)
			for (uint64_t r = 0; r < rows; r++)
			{
				uint64_t	src = (r / hd) * hd + (r % 2) * (hd / 2) + (r % hd) / 2;

				for (int c = 0; c < 64; c++)
				{
					as_is &= g[r * 64 + c] == sft_model_params(m)[hq->offset + r * 64 + c];
					perm &= g[r * 64 + c] == sft_model_params(m)[hq->offset + src * 64 + c];
				}
			}
		TAP_OK(g && (fc->permuted ? perm && !as_is : as_is && !perm),
			   "%s: attn_q rows %s", a, fc->permuted ? "interleaved per head (llama.cpp's normal RoPE)" : "as HF has them (NeoX RoPE)");
		free(g);
	}
	{
		const SftGgufTensorIn *n = sft_gguf_find_tensor(&f, "blk.0.attn_norm.weight");
		const SftGgufTensorIn *on = sft_gguf_find_tensor(&f, "output_norm.weight");
		const SftParamTensor *hn = sft_model_find_tensor(m, "model.layers.0.input_layernorm.weight");
		const SftParamTensor *hon = sft_model_find_tensor(m, "model.norm.weight");
		float		g[64],
					go[64];
		int			same = n && on && hn && hon && sft_gguf_tensor_to_f32(n, g, &err) == SFT_OK &&
			sft_gguf_tensor_to_f32(on, go, &err) == SFT_OK;

		for (int i = 0; same && i < 64; i++)
			same = g[i] == sft_model_params(m)[hn->offset + i] + (fc->plus_one ? 1.0f : 0.0f) &&
				go[i] == sft_model_params(m)[hon->offset + i] + (fc->plus_one ? 1.0f : 0.0f);
		TAP_OK(same, "%s: norms written %s", a, fc->plus_one ? "as 1 + w (Gemma's RMSNorm)" : "as they are");
	}
	{
		const SftGgufTensorIn *rf = sft_gguf_find_tensor(&f, "rope_freqs.weight");

		if (cfg->rope_type == SFT_ROPE_LLAMA3)
		{
			/* convert_hf_to_gguf's formula, in double, independent of the core */
			float		got[8];
			double		maxrel = 0;
			int			changed = 0;

			if (rf && rf->ne[0] == 8 && rf->type == SFT_GGML_F32 && sft_gguf_tensor_to_f32(rf, got, &err) == SFT_OK)
			{
				for (int i = 0; i < 8; i++)
				{
					double		freq = 1.0 / pow(500000.0, (2.0 * i) / 16.0);
					double		wavelen = 2 * M_PI / freq;
					double		lo = 64.0 / 1.0,
								hi = 64.0 / 4.0,
								want;

					if (wavelen < hi)
						want = 1;
					else if (wavelen > lo)
						want = 32;
					else
					{
						double		smooth = (64.0 / wavelen - 1.0) / (4.0 - 1.0);

						want = 1 / ((1 - smooth) / 32 + smooth);
					}
					changed += want != 1 && want != 32;
					maxrel = fmax(maxrel, fabs(got[i] - want) / want);
				}
			}
			else
				maxrel = 1;
			TAP_OK(maxrel < 1e-5 && changed > 0, "llama3 RoPE: rope_freqs [HD/2] f32 equals convert_hf_to_gguf's factors (max rel %g, %d in the smoothed band)",
				   maxrel, changed);
		}
		else
			TAP_OK(rf == NULL, "%s: no rope_freqs without llama3 RoPE", a);
	}
	sft_gguf_file_free(&f);
	sft_buf_free(&out);
	sft_model_free(m);
}

/* configs each row must refuse, with the word the message must contain */
static void
test_family_refusals(SftTokenizer *tok)
{
	static const struct
	{
		const char *what;
		const char *config;
		const char *expect;
	}			cases[] = {
		{"smollm3 with RoPE in layer 3", "{\"model_type\": \"smollm3\", " BASE "\"num_hidden_layers\": 4, \"no_rope_layers\": [1, 1, 1, 1]}",
		"every 4th layer"},
		{"smollm3 without RoPE in layer 1", "{\"model_type\": \"smollm3\", " BASE "\"num_hidden_layers\": 4, \"no_rope_layers\": [1, 0, 1, 0]}",
		"layer 1 has no RoPE"},
		{"gemma3 with a non-periodic layer pattern", "{\"model_type\": \"gemma3_text\", " BASE "\"num_hidden_layers\": 4, \"head_dim\": 32, "
			"\"query_pre_attn_scalar\": 32, \"sliding_window\": 8, \"layer_types\": [\"sliding_attention\", \"full_attention\", "
		"\"full_attention\", \"sliding_attention\"]}", "not periodic"},
		{"gemma3 with query_pre_attn_scalar != head_dim", "{\"model_type\": \"gemma3_text\", " BASE "\"num_hidden_layers\": 2, \"head_dim\": 32, "
		"\"query_pre_attn_scalar\": 64}", "attention scale"},
		{"qwen3 with llama3 RoPE", "{\"model_type\": \"qwen3\", " BASE "\"num_hidden_layers\": 2, \"rope_scaling\": {\"rope_type\": \"llama3\", "
		"\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}}", "rope_freqs"},
		{"qwen2 with NH x head_dim != hidden_size", "{\"model_type\": \"qwen2\", " BASE "\"num_hidden_layers\": 2, \"head_dim\": 32}",
		"needs them equal"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SftError	err = {0};
		SftModel   *m = config_model(cases[i].config, &err);
		SftBuf		out;
		SftGgufExportOptions opt = {SFT_GGML_F32, "fam", NULL, -1};

		if (m == NULL)
		{
			TAP_OK(0, "%s: the model builds (%s)", cases[i].what, err.message);
			continue;
		}
		sft_buf_init(&out);
		TAP_OK(sft_gguf_export_model(m, tok, &opt, sft_buf_write, &out, &err) == SFT_ERR_UNSUPPORTED &&
			   strstr(err.message, cases[i].expect) && out.len == 0,
			   "%s is refused before writing: %s", cases[i].what, err.message);
		sft_buf_free(&out);
		sft_model_free(m);
	}
}

/* pad id and add_bos_token from tokenizer_config.json and the post_processor */
static void
test_special_ids(void)
{
	const char *tj =
		"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
		" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
		" \"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, {\"type\": \"TemplateProcessing\","
		" \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}]},"
		" \"decoder\": {\"type\": \"ByteLevel\"},"
		" \"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}, {\"id\": 4, \"content\": \"<pad>\", \"special\": true}]}";
	const char *configs[] = {
		"{\"bos_token\": \"<s>\", \"pad_token\": {\"content\": \"<pad>\"}}",	/* post_processor: BOS */
		"{\"bos_token\": \"<s>\", \"add_bos_token\": false}",	/* the config wins */
	};

	for (int i = 0; i < 2; i++)
	{
		SftTokenizer *tok = NULL;
		SftError	err = {0};
		SftModel   *m;
		SftBuf		out;
		SftGgufFile f;
		int			ok = 1;

		if (sft_tokenizer_from_hf(tj, strlen(tj), configs[i], strlen(configs[i]), &tok, &err) != SFT_OK)
		{
			TAP_OK(0, "special-ids tokenizer loads (%s)", err.message);
			continue;
		}
		m = tiny_model(5, 1);
		if (export_parse(m, tok, &out, &f, &err))
		{
			const SftGgufKv *add = sft_gguf_find_kv(&f, "tokenizer.ggml.add_bos_token");
			uint32_t	pad = kv_u32(&f, "tokenizer.ggml.padding_token_id", &ok);

			if (i == 0)
				TAP_OK(add && add->value.type == SFT_GGUF_BOOL && add->value.data[0] == 1 && ok && pad == 4,
					   "pad_token (an AddedToken object) is padding_token_id 4 (u32); a post_processor starting with BOS sets add_bos_token");
			else
				TAP_OK(add && add->value.data[0] == 0 && !ok,
					   "tokenizer_config.json add_bos_token false wins over the post_processor; no pad_token, no padding_token_id");
			sft_gguf_file_free(&f);
		}
		else
			TAP_OK(0, "special-ids export (%s)", err.message);
		sft_buf_free(&out);
		sft_model_free(m);
		sft_tokenizer_free(tok);
	}
}

int
main(void)
{
	test_numbers();
	test_export("test/fixtures/tiny_bpe.json", 0, SFT_GGML_F32, 0);
	test_export("test/fixtures/tiny_bpe.json", 0, SFT_GGML_Q8_0, 1);
	test_export("test/fixtures/tiny_sp.json", 1, SFT_GGML_F16, 1);
	test_export("test/fixtures/tiny_sp.json", 1, SFT_GGML_BF16, 0);
	test_refusals();
	{
		SftTokenizer *tok = fixture_tokenizer("test/fixtures/tiny_bpe.json");

		for (size_t i = 0; tok && i < sizeof(family_cases) / sizeof(family_cases[0]); i++)
			test_family(&family_cases[i], tok);
		if (tok)
			test_family_refusals(tok);
		sft_tokenizer_free(tok);
	}
	test_special_ids();
	return tap_done();
}
