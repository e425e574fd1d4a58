/*
 * gguf_export.c: what goes into a GGUF file for llama.cpp, per architecture.
 *
 * Three parts, each checked before a byte is written:
 *
 *   1. Architecture metadata and tensors, from a per-family table
 *      (arch_table, picked by cfg->family): llama.cpp's architecture name
 *      (llama, qwen2, qwen3, smollm3, gemma3), its hyper-parameter keys
 *      (named "<arch>.<key>", with the value types llama.cpp checks: u32 for
 *      sizes, f32 for epsilons and RoPE bases), the HF -> GGUF tensor names
 *      and what happens to each tensor's rows on the way:
 *      - llama.cpp's "llama" and "smollm3" RoPE rotates interleaved pairs
 *        (x[2i], x[2i+1]) where HF rotates halves (x[i], x[i + HD/2]), so
 *        each head's rows of q_proj/k_proj are reordered: GGUF row
 *        h*HD + 2i + j = HF row h*HD + j*HD/2 + i.  qwen2, qwen3 and gemma3
 *        rotate halves as HF does ("NeoX"): no permutation.
 *      - Gemma multiplies by (1 + w) in its RMSNorms, llama.cpp by w: its
 *        norm weights are written plus one.
 *      - llama3-scaled RoPE becomes the rope_freqs tensor (llama only: the
 *        other graphs do not read it); linear scaling the rope.scaling keys.
 *      What llama.cpp's graph does without a key (SmolLM3's NoPE in every
 *      4th layer, Gemma's attention scale head_dim^-1/2, its sliding layers
 *      as one period) is compared with the config and refused when they
 *      differ (check_config), as is an HF tensor without a mapping.
 *
 *   2. The tokenizer: "gpt2" (byte-level BPE: tokens as the vocabulary's
 *      printable-byte strings, merges "left right" in rank order, and the
 *      pre-tokenizer name of llama.cpp's split rules that equal ours) or
 *      "llama" (SentencePiece: llama.cpp merges the adjacent pair whose
 *      result has the highest score, so a token's score is minus the rank of
 *      the merge that makes it, which replays HF's BPE order; all 256 byte
 *      tokens <0x00>..<0xFF> are required because llama.cpp falls back to
 *      them unconditionally).  Token types: special added tokens are CONTROL
 *      (matched in text only when the caller asks for special tokens, as
 *      our split_special), other added tokens USER_DEFINED (always matched,
 *      as ours), the byte tokens BYTE, the unknown token UNKNOWN, ids the
 *      tokenizer lacks up to the model's vocabulary UNUSED "[PADn]".
 *
 *   3. Special ids (bos, eos, eot, unknown), add_bos_token, the chat template.
 *
 * Known difference, documented in the README: Qwen's tokenizer normalises
 * to NFC and llama.cpp does not, so llama.cpp tokenizes text that is not in
 * NFC differently (text in NFC, what keyboards and most sources produce,
 * tokenizes identically; the suite checks both facts).
 */
#include "gguf_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "tokenizer_internal.h"

/* ---------------------------------------------------------------------------
 * Architectures
 * ------------------------------------------------------------------------- */

/* What happens to an HF tensor's rows on the way into the file. */
typedef enum RowTransform
{
	ROWS_AS_IS,
	ROWS_PERMUTE_Q,				/* interleave the RoPE halves, rows of NH heads */
	ROWS_PERMUTE_K,				/* the same over NKV heads */
	ROWS_PLUS_ONE				/* Gemma's (1 + w) norms: llama.cpp multiplies by w */
} RowTransform;

typedef struct TensorMap
{
	const char *hf;				/* HF name after "model.layers.N." (per layer) or full */
	const char *gguf;			/* GGUF name after "blk.N." or full */
	RowTransform rows;
} TensorMap;

typedef struct GgufArch
{
	const char *gguf_arch;		/* general.architecture */
	SftFamily	family;
	const TensorMap *global;	/* NULL-terminated */
	const TensorMap *layer;		/* NULL-terminated */
} GgufArch;

static const TensorMap llama_global[] = {
	{"model.embed_tokens.weight", "token_embd.weight", ROWS_AS_IS},
	{"model.norm.weight", "output_norm.weight", ROWS_AS_IS},
	{"lm_head.weight", "output.weight", ROWS_AS_IS},
	{NULL, NULL, ROWS_AS_IS}
};

/* llama and smollm3: llama.cpp's "normal" RoPE on interleaved pairs */
static const TensorMap llama_layer[] = {
	{"input_layernorm.weight", "attn_norm.weight", ROWS_AS_IS},
	{"self_attn.q_proj.weight", "attn_q.weight", ROWS_PERMUTE_Q},
	{"self_attn.k_proj.weight", "attn_k.weight", ROWS_PERMUTE_K},
	{"self_attn.v_proj.weight", "attn_v.weight", ROWS_AS_IS},
	{"self_attn.o_proj.weight", "attn_output.weight", ROWS_AS_IS},
	{"post_attention_layernorm.weight", "ffn_norm.weight", ROWS_AS_IS},
	{"mlp.gate_proj.weight", "ffn_gate.weight", ROWS_AS_IS},
	{"mlp.up_proj.weight", "ffn_up.weight", ROWS_AS_IS},
	{"mlp.down_proj.weight", "ffn_down.weight", ROWS_AS_IS},
	{NULL, NULL, ROWS_AS_IS}
};

/* qwen2: NeoX RoPE (rotate halves, as HF), so no permutation; q/k/v biases */
static const TensorMap qwen2_layer[] = {
	{"input_layernorm.weight", "attn_norm.weight", ROWS_AS_IS},
	{"self_attn.q_proj.weight", "attn_q.weight", ROWS_AS_IS},
	{"self_attn.k_proj.weight", "attn_k.weight", ROWS_AS_IS},
	{"self_attn.v_proj.weight", "attn_v.weight", ROWS_AS_IS},
	{"self_attn.q_proj.bias", "attn_q.bias", ROWS_AS_IS},
	{"self_attn.k_proj.bias", "attn_k.bias", ROWS_AS_IS},
	{"self_attn.v_proj.bias", "attn_v.bias", ROWS_AS_IS},
	{"self_attn.o_proj.weight", "attn_output.weight", ROWS_AS_IS},
	{"post_attention_layernorm.weight", "ffn_norm.weight", ROWS_AS_IS},
	{"mlp.gate_proj.weight", "ffn_gate.weight", ROWS_AS_IS},
	{"mlp.up_proj.weight", "ffn_up.weight", ROWS_AS_IS},
	{"mlp.down_proj.weight", "ffn_down.weight", ROWS_AS_IS},
	{NULL, NULL, ROWS_AS_IS}
};

/* qwen3: NeoX RoPE, q/k RMSNorm over head_dim before it */
static const TensorMap qwen3_layer[] = {
	{"input_layernorm.weight", "attn_norm.weight", ROWS_AS_IS},
	{"self_attn.q_proj.weight", "attn_q.weight", ROWS_AS_IS},
	{"self_attn.k_proj.weight", "attn_k.weight", ROWS_AS_IS},
	{"self_attn.v_proj.weight", "attn_v.weight", ROWS_AS_IS},
	{"self_attn.q_norm.weight", "attn_q_norm.weight", ROWS_AS_IS},
	{"self_attn.k_norm.weight", "attn_k_norm.weight", ROWS_AS_IS},
	{"self_attn.o_proj.weight", "attn_output.weight", ROWS_AS_IS},
	{"post_attention_layernorm.weight", "ffn_norm.weight", ROWS_AS_IS},
	{"mlp.gate_proj.weight", "ffn_gate.weight", ROWS_AS_IS},
	{"mlp.up_proj.weight", "ffn_up.weight", ROWS_AS_IS},
	{"mlp.down_proj.weight", "ffn_down.weight", ROWS_AS_IS},
	{NULL, NULL, ROWS_AS_IS}
};

/* gemma3: NeoX RoPE, four norms per layer and q/k norms, all stored as w + 1 */
static const TensorMap gemma3_global[] = {
	{"model.embed_tokens.weight", "token_embd.weight", ROWS_AS_IS},
	{"model.norm.weight", "output_norm.weight", ROWS_PLUS_ONE},
	{"lm_head.weight", "output.weight", ROWS_AS_IS},
	{NULL, NULL, ROWS_AS_IS}
};

static const TensorMap gemma3_layer[] = {
	{"input_layernorm.weight", "attn_norm.weight", ROWS_PLUS_ONE},
	{"self_attn.q_proj.weight", "attn_q.weight", ROWS_AS_IS},
	{"self_attn.k_proj.weight", "attn_k.weight", ROWS_AS_IS},
	{"self_attn.v_proj.weight", "attn_v.weight", ROWS_AS_IS},
	{"self_attn.q_norm.weight", "attn_q_norm.weight", ROWS_PLUS_ONE},
	{"self_attn.k_norm.weight", "attn_k_norm.weight", ROWS_PLUS_ONE},
	{"self_attn.o_proj.weight", "attn_output.weight", ROWS_AS_IS},
	{"post_attention_layernorm.weight", "post_attention_norm.weight", ROWS_PLUS_ONE},
	{"pre_feedforward_layernorm.weight", "ffn_norm.weight", ROWS_PLUS_ONE},
	{"mlp.gate_proj.weight", "ffn_gate.weight", ROWS_AS_IS},
	{"mlp.up_proj.weight", "ffn_up.weight", ROWS_AS_IS},
	{"mlp.down_proj.weight", "ffn_down.weight", ROWS_AS_IS},
	{"post_feedforward_layernorm.weight", "post_ffw_norm.weight", ROWS_PLUS_ONE},
	{NULL, NULL, ROWS_AS_IS}
};

/*
 * One row per family the core computes, chosen by cfg->family.  What each
 * llama.cpp architecture does implicitly (Gemma's sqrt(C) embedding scale
 * and GeGLU-tanh, SmolLM3's NoPE every 4th layer, the attention scale) is
 * checked against the config in check_config; a family without a row has
 * none here and is refused.
 */
static const GgufArch arch_table[] = {
	{"llama", SFT_FAMILY_LLAMA, llama_global, llama_layer},
	{"qwen2", SFT_FAMILY_QWEN2, llama_global, qwen2_layer},
	{"qwen3", SFT_FAMILY_QWEN3, llama_global, qwen3_layer},
	{"smollm3", SFT_FAMILY_SMOLLM3, llama_global, llama_layer},
	{"gemma3", SFT_FAMILY_GEMMA3, gemma3_global, gemma3_layer},
};

static const GgufArch *
arch_for_config(const SftLlamaConfig *cfg)
{
	for (size_t i = 0; i < sizeof(arch_table) / sizeof(arch_table[0]); i++)
		if (arch_table[i].family == cfg->family)
			return &arch_table[i];
	return NULL;
}

/*
 * Gemma 3's layer pattern as llama.cpp reads it: a u32 period P, layer l
 * sliding when l % P < P - 1 (P = 0: every layer).  The period whose
 * pattern equals the config's layer flags, or -1 when none does.
 */
static int
gemma3_swa_period(const SftLlamaConfig *cfg)
{
	for (int p = 0; p <= cfg->n_layers + 1; p++)
	{
		int			same = 1;

		if (p == 1)
			continue;			/* no sliding layer: written without a window */
		for (int l = 0; l < cfg->n_layers && same; l++)
		{
			int			swa = p == 0 || l % p < p - 1;

			same = swa == ((cfg->layer_flags[l] & SFT_LAYER_SLIDING) != 0);
		}
		if (same)
			return p;
	}
	return -1;
}

static int
any_layer(const SftLlamaConfig *cfg, int flag)
{
	for (int l = 0; l < cfg->n_layers; l++)
		if (cfg->layer_flags[l] & flag)
			return 1;
	return 0;
}

/*
 * Refuse what the architecture's llama.cpp graph would compute differently
 * from the config (it reads no key for these, so nothing could be written).
 */
static SftStatus
check_config(const GgufArch *arch, const SftLlamaConfig *cfg, SftError *err)
{
	const char *a = arch->gguf_arch;
	double		want_scale = 1.0 / sqrt((double) cfg->head_dim);
	double		scale = (double) sft_llama_config_attn_scale(cfg);

	if (cfg->head_dim % 2 != 0)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: head_dim %d is odd (RoPE needs pairs)", cfg->head_dim);
	if (cfg->rope_type == SFT_ROPE_LLAMA3 && cfg->family != SFT_FAMILY_LLAMA)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: llama3 rope_scaling on %s: llama.cpp reads the rope_freqs tensor it needs for llama only", a);
	if (cfg->family == SFT_FAMILY_QWEN2 && cfg->n_heads * cfg->head_dim != cfg->hidden_size)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: qwen2 with num_attention_heads x head_dim = %d x %d != hidden_size %d (llama.cpp's qwen2 needs them equal)",
						 cfg->n_heads, cfg->head_dim, cfg->hidden_size);
	if (cfg->family != SFT_FAMILY_GEMMA3 && (any_layer(cfg, SFT_LAYER_SLIDING) || cfg->final_logit_softcap != 0.0f))
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: %s with sliding-window layers or logit softcapping has no llama.cpp equivalent", a);
	if (cfg->family == SFT_FAMILY_SMOLLM3)
	{
		/* llama.cpp's smollm3 skips RoPE in layers l with (l + 1) % 4 == 0, always */
		for (int l = 0; l < cfg->n_layers; l++)
			if (((cfg->layer_flags[l] & SFT_LAYER_NOPE) != 0) != ((l + 1) % 4 == 0))
				return sft_error(err, SFT_ERR_UNSUPPORTED,
								 "GGUF export: smollm3 layer %d %s RoPE; llama.cpp leaves it out of every 4th layer (3, 7, ...) and only those",
								 l, (cfg->layer_flags[l] & SFT_LAYER_NOPE) ? "has no" : "has");
	}
	else if (any_layer(cfg, SFT_LAYER_NOPE))
		return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: %s with layers without RoPE has no llama.cpp equivalent", a);
	if (cfg->family == SFT_FAMILY_GEMMA3)
	{
		/* llama.cpp's gemma3 scales queries by head_dim^-1/2, or (C / NH)^-1/2 for its 62-layer 27B */
		if (cfg->n_layers == 62)
			want_scale = 1.0 / sqrt((double) (cfg->hidden_size / cfg->n_heads));
		if (any_layer(cfg, SFT_LAYER_SLIDING) && gemma3_swa_period(cfg) < 0)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "GGUF export: gemma3 layer_types are not periodic (llama.cpp's sliding_window_pattern P makes layer l sliding when l %% P < P - 1)");
	}
	if (fabs(scale - want_scale) > 1e-6 * want_scale)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: attention scale %g (query_pre_attn_scalar %g) differs from llama.cpp's %s, which is %g",
						 scale, (double) cfg->query_pre_attn_scalar, a, want_scale);
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------- */

typedef struct RowArg
{
	const float *w;				/* HF [rows, cols] (1-D: one row) */
	int64_t		cols;
	int			head_dim;
} RowArg;

static void
permute_row(const void *arg, uint64_t row, float *out)
{
	const RowArg *p = arg;
	uint64_t	hd = (uint64_t) p->head_dim;
	uint64_t	h = row / hd,
				within = row % hd;
	uint64_t	src = h * hd + (within % 2) * (hd / 2) + within / 2;

	memcpy(out, p->w + src * (uint64_t) p->cols, sizeof(float) * (size_t) p->cols);
}

static void
plus_one_row(const void *arg, uint64_t row, float *out)
{
	const RowArg *p = arg;
	const float *src = p->w + row * (uint64_t) p->cols;

	for (int64_t c = 0; c < p->cols; c++)
		out[c] = src[c] + 1.0f;
}

/* Find the GGUF name of an HF tensor name; NULL when the table has none. */
static const TensorMap *
map_tensor(const GgufArch *arch, const char *hf, char *gguf, size_t gguf_size)
{
	int			layer;
	int			consumed = 0;

	for (const TensorMap *m = arch->global; m->hf; m++)
		if (strcmp(hf, m->hf) == 0)
		{
			snprintf(gguf, gguf_size, "%s", m->gguf);
			return m;
		}
	if (sscanf(hf, "model.layers.%d.%n", &layer, &consumed) == 1 && consumed > 0)
		for (const TensorMap *m = arch->layer; m->hf; m++)
			if (strcmp(hf + consumed, m->hf) == 0)
			{
				snprintf(gguf, gguf_size, "blk.%d.%s", layer, m->gguf);
				return m;
			}
	return NULL;
}

static uint32_t
file_type(SftGgmlType dtype)
{
	switch (dtype)
	{
		case SFT_GGML_F32:
			return 0;			/* LLAMA_FTYPE_ALL_F32 */
		case SFT_GGML_F16:
			return 1;			/* MOSTLY_F16 */
		case SFT_GGML_Q8_0:
			return 7;			/* MOSTLY_Q8_0 */
		case SFT_GGML_BF16:
			return 32;			/* MOSTLY_BF16 */
	}
	return 0;
}

static void
put_hparams(SftGgufWriter *w, const GgufArch *arch, const SftLlamaConfig *cfg)
{
	char		key[96];

#define ARCH_KEY(k) (snprintf(key, sizeof(key), "%s.%s", arch->gguf_arch, k), key)
	sft_gguf_add_u32(w, ARCH_KEY("vocab_size"), (uint32_t) cfg->vocab_size);
	sft_gguf_add_u32(w, ARCH_KEY("context_length"), (uint32_t) cfg->max_position);
	sft_gguf_add_u32(w, ARCH_KEY("embedding_length"), (uint32_t) cfg->hidden_size);
	sft_gguf_add_u32(w, ARCH_KEY("block_count"), (uint32_t) cfg->n_layers);
	sft_gguf_add_u32(w, ARCH_KEY("feed_forward_length"), (uint32_t) cfg->intermediate_size);
	sft_gguf_add_u32(w, ARCH_KEY("attention.head_count"), (uint32_t) cfg->n_heads);
	sft_gguf_add_u32(w, ARCH_KEY("attention.head_count_kv"), (uint32_t) cfg->n_kv_heads);
	sft_gguf_add_u32(w, ARCH_KEY("attention.key_length"), (uint32_t) cfg->head_dim);
	sft_gguf_add_u32(w, ARCH_KEY("attention.value_length"), (uint32_t) cfg->head_dim);
	sft_gguf_add_f32(w, ARCH_KEY("attention.layer_norm_rms_epsilon"), cfg->rms_norm_eps);
	sft_gguf_add_f32(w, ARCH_KEY("rope.freq_base"), cfg->rope_theta);
	sft_gguf_add_u32(w, ARCH_KEY("rope.dimension_count"), (uint32_t) cfg->head_dim);
	/* linear: llama.cpp's freq_scale = 1 / factor on the global layers (Gemma's local ones keep 1) */
	if (cfg->rope_type == SFT_ROPE_LINEAR)
	{
		sft_gguf_add_string(w, ARCH_KEY("rope.scaling.type"), "linear", 6);
		sft_gguf_add_f32(w, ARCH_KEY("rope.scaling.factor"), cfg->rope_factor);
	}
	if (cfg->family == SFT_FAMILY_GEMMA3)
	{
		if (any_layer(cfg, SFT_LAYER_SLIDING))
		{
			sft_gguf_add_u32(w, ARCH_KEY("attention.sliding_window"), (uint32_t) cfg->sliding_window);
			sft_gguf_add_u32(w, ARCH_KEY("attention.sliding_window_pattern"), (uint32_t) gemma3_swa_period(cfg));
			sft_gguf_add_f32(w, ARCH_KEY("rope.freq_base_swa"), cfg->rope_local_theta);
		}
		if (cfg->final_logit_softcap > 0.0f)
			sft_gguf_add_f32(w, ARCH_KEY("final_logit_softcapping"), cfg->final_logit_softcap);
	}
#undef ARCH_KEY
}

/*
 * llama3-scaled RoPE: llama.cpp divides each of the HD/2 base frequencies by
 * rope_freqs[i], so the tensor is the ratio of the unscaled frequencies to
 * the ones the model computes (sft_rope_inv_freq, the core's own).
 */
static void
llama3_rope_freqs(const SftLlamaConfig *cfg, float *out)
{
	SftLlamaConfig plain = *cfg;
	float	   *scaled = out + cfg->head_dim / 2;

	plain.rope_type = SFT_ROPE_DEFAULT;
	sft_rope_inv_freq(out, &plain, 0);
	sft_rope_inv_freq(scaled, cfg, 0);
	for (int i = 0; i < cfg->head_dim / 2; i++)
		out[i] = out[i] / scaled[i];
}

/* ---------------------------------------------------------------------------
 * Tokenizer
 * ------------------------------------------------------------------------- */

static const char llama3_pattern[] =
"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char qwen2_pattern[] =
"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int
regex_step_is(const SftPreStep *s, const char *pattern)
{
	return s->kind == SFT_PRE_REGEX && s->behavior == SFT_SPLIT_ISOLATED && !s->invert &&
		s->pattern && strcmp(s->pattern, pattern) == 0;
}

SftStatus
sft_gguf_pre_tokenizer_name(const SftTokenizer *tok, const char **name, SftError *err)
{
	*name = NULL;
	if (tok->kind == SFT_TOKENIZER_SENTENCEPIECE_BPE)
	{
		*name = "default";		/* llama.cpp's SentencePiece path has no pre-split */
		return SFT_OK;
	}
	for (int i = 0; i < tok->n_norm; i++)
		if (tok->norm[i].kind != SFT_NORM_NFC)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "GGUF export: a byte-level tokenizer with a Prepend/Replace normalizer has no llama.cpp equivalent");
	if (tok->prefix != SFT_PREFIX_NONE)
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: ByteLevel add_prefix_space has no llama.cpp equivalent");
	if (tok->n_pre == 1 && regex_step_is(&tok->pre[0], sft_gpt2_pattern))
		*name = "gpt-2";
	else if (tok->n_pre == 1 && regex_step_is(&tok->pre[0], llama3_pattern))
		*name = "llama-bpe";
	else if (tok->n_pre == 1 && regex_step_is(&tok->pre[0], qwen2_pattern))
		*name = "qwen2";
	else if (tok->n_pre == 2 && regex_step_is(&tok->pre[0], "\\p{N}") &&
			 regex_step_is(&tok->pre[1], sft_gpt2_pattern))
		*name = "smollm";		/* Digits(individual_digits) then the GPT-2 split */
	if (*name == NULL)
	{
		const SftPreStep *s = tok->n_pre > 0 ? &tok->pre[0] : NULL;

		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: the tokenizer's pre-tokenizer (%d steps, first %s) matches none of llama.cpp's (gpt-2, llama-bpe, qwen2, smollm)",
						 tok->n_pre, s && s->pattern ? s->pattern : "not a regex split");
	}
	/* llama.cpp skips merges for words in the vocabulary exactly for llama-bpe */
	if ((tok->ignore_merges != 0) != (strcmp(*name, "llama-bpe") == 0))
		return sft_error(err, SFT_ERR_UNSUPPORTED,
						 "GGUF export: BPE ignore_merges = %s with pre-tokenizer %s differs from llama.cpp, which ignores merges for llama-bpe only",
						 tok->ignore_merges ? "true" : "false", *name);
	return SFT_OK;
}

typedef struct MergeEntry
{
	int32_t		rank;
	int32_t		left;
	int32_t		right;
	int32_t		merged;
} MergeEntry;

static int
cmp_rank(const void *a, const void *b)
{
	const MergeEntry *x = a,
			   *y = b;

	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Merges in rank order (allocated; *n entries). */
static SftStatus
sorted_merges(const SftTokenizer *tok, MergeEntry **out, size_t *n, SftError *err)
{
	const SftMergeMap *m = &tok->merges;
	MergeEntry *e;
	size_t		k = 0;

	*out = NULL;
	*n = 0;
	if (m->slots == NULL || m->n == 0)
		return SFT_OK;
	e = sft_calloc(m->n, sizeof(*e));
	if (e == NULL)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	for (uint64_t i = 0; i <= m->mask && k < m->n; i++)
		if (m->slots[i].key != SFT_MERGE_EMPTY)
		{
			e[k].rank = m->slots[i].rank;
			e[k].left = (int32_t) (m->slots[i].key >> 32);
			e[k].right = (int32_t) (m->slots[i].key & 0xffffffffu);
			e[k].merged = m->slots[i].merged;
			k++;
		}
	qsort(e, k, sizeof(*e), cmp_rank);
	*out = e;
	*n = k;
	return SFT_OK;
}

enum
{
	TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4,
	TOKEN_UNUSED = 5, TOKEN_BYTE = 6
};

typedef struct VocabOut
{
	int32_t		n;				/* the model's V */
	const char **text;			/* [V] */
	size_t	   *len;			/* [V] */
	int32_t    *type;			/* [V] */
	float	   *score;			/* [V] SentencePiece only */
	SftBuf		pads;			/* "[PADn]" texts, NUL-separated */
	MergeEntry *merges;
	size_t		n_merges;
	SftBuf		merge_text;		/* "left right" strings, NUL-separated */
	const char **merge_ptr;
	size_t	   *merge_len;
} VocabOut;

static void
vocab_free(VocabOut *v)
{
	sft_free(v->text);
	sft_free(v->len);
	sft_free(v->type);
	sft_free(v->score);
	sft_buf_free(&v->pads);
	sft_free(v->merges);
	sft_buf_free(&v->merge_text);
	sft_free(v->merge_ptr);
	sft_free(v->merge_len);
}

static SftStatus
check_sentencepiece(const SftTokenizer *tok, int *add_space_prefix, SftError *err)
{
	int			prepend = 0,
				replace = 0,
				spaces_replaced = 0;	/* by the normalizer, before any split */

	for (int i = 0; i < tok->n_norm; i++)
	{
		const SftNormStep *s = &tok->norm[i];

		if (s->kind == SFT_NORM_PREPEND && s->alen == 3 && memcmp(s->a, "\xE2\x96\x81", 3) == 0)
			prepend = 1;
		else if (s->kind == SFT_NORM_REPLACE && s->alen == 1 && s->a[0] == ' ' &&
				 s->blen == 3 && memcmp(s->b, "\xE2\x96\x81", 3) == 0)
			replace = spaces_replaced = 1;
		else
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "GGUF export: SentencePiece normalizer step %d has no llama.cpp equivalent (Prepend and Replace of \" \" with U+2581 do)", i + 1);
	}
	if (tok->prefix == SFT_PREFIX_METASPACE)
	{
		if (tok->meta_repl_len != 3 || memcmp(tok->meta_repl, "\xE2\x96\x81", 3) != 0)
			return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: Metaspace replacement other than U+2581");
		if (tok->meta_prepend == 2)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "GGUF export: Metaspace prepend_scheme \"first\" has no llama.cpp equivalent (llama.cpp prefixes a space after every special token)");
		replace = 1;
		prepend = tok->meta_prepend == 1;
	}
	if (!replace)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: a SentencePiece tokenizer that keeps spaces has no llama.cpp equivalent");
	/*
	 * llama.cpp does not pre-split SentencePiece text; a split on U+2581 is
	 * what it does implicitly, and one on " " (Gemma's) matches nothing
	 * once the normalizer has replaced every space.
	 */
	for (int i = 0; i < tok->n_pre; i++)
		if (!(tok->pre[i].kind == SFT_PRE_LITERAL && tok->pre[i].literal_len == 3 &&
			  memcmp(tok->pre[i].literal, "\xE2\x96\x81", 3) == 0) &&
			!(tok->pre[i].kind == SFT_PRE_LITERAL && tok->pre[i].literal_len == 1 &&
			  tok->pre[i].literal[0] == ' ' && spaces_replaced))
			return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: a SentencePiece pre-tokenizer split has no llama.cpp equivalent");
	for (int b = 0; b < 256; b++)
		if (tok->fallback_id[b] < 0)
			return sft_error(err, SFT_ERR_UNSUPPORTED,
							 "GGUF export: SentencePiece tokenizer lacks byte token <0x%02X>, which llama.cpp falls back to", b);
	*add_space_prefix = prepend;
	return SFT_OK;
}

static SftStatus
build_vocab(const SftTokenizer *tok, int32_t V, VocabOut *v, SftError *err)
{
	SftStrMap	seen;
	SftStatus	st = SFT_OK;
	int			spm = tok->kind == SFT_TOKENIZER_SENTENCEPIECE_BPE;
	size_t	   *pad_off;

	memset(v, 0, sizeof(*v));
	sft_buf_init(&v->pads);
	sft_buf_init(&v->merge_text);
	v->n = V;
	v->text = sft_calloc((size_t) V, sizeof(*v->text));
	v->len = sft_calloc((size_t) V, sizeof(*v->len));
	v->type = sft_calloc((size_t) V, sizeof(*v->type));
	pad_off = sft_calloc((size_t) V, sizeof(*pad_off));
	if (spm)
		v->score = sft_calloc((size_t) V, sizeof(*v->score));
	if (!v->text || !v->len || !v->type || !pad_off || (spm && !v->score))
	{
		sft_free(pad_off);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	/* ids the tokenizer lacks become "[PADn]"; offsets first, the buffer moves */
	for (int32_t id = 0; id < V && st == SFT_OK; id++)
		if (id >= tok->vocab_size || !(tok->tok_flags[id] & SFT_TOK_PRESENT))
		{
			char		pad[32];
			int			n = snprintf(pad, sizeof(pad), "[PAD%d]", id);

			pad_off[id] = v->pads.len + 1;	/* 0 = not a pad */
			st = sft_buf_append(&v->pads, pad, (size_t) n + 1);
		}
	for (int32_t id = 0; id < V && st == SFT_OK; id++)
	{
		if (pad_off[id])
		{
			v->text[id] = v->pads.data + pad_off[id] - 1;
			v->len[id] = strlen(v->text[id]);
			v->type[id] = TOKEN_UNUSED;
			continue;
		}
		v->text[id] = tok->tok_text.data + tok->tok_off[id];
		v->len[id] = tok->tok_len[id];
		if (tok->tok_flags[id] & SFT_TOK_SPECIAL)
			v->type[id] = TOKEN_CONTROL;
		else if (tok->tok_flags[id] & SFT_TOK_ADDED)
			v->type[id] = TOKEN_USER_DEFINED;
		else
			v->type[id] = TOKEN_NORMAL;
		if (id == tok->unk_id)
			v->type[id] = TOKEN_UNKNOWN;
	}
	sft_free(pad_off);
	if (st != SFT_OK)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	if (spm)
		for (int b = 0; b < 256; b++)
			if (tok->fallback_id[b] >= 0 && tok->fallback_id[b] < V)
				v->type[tok->fallback_id[b]] = TOKEN_BYTE;

	/* the same text twice makes llama.cpp's loader fail an assertion */
	sft_strmap_init(&seen);
	for (int32_t id = 0; id < V && st == SFT_OK; id++)
	{
		int			existed = 0;
		int32_t		other = sft_strmap_get(&seen, v->text[id], v->len[id]);

		if (other >= 0)
		{
			st = sft_error(err, SFT_ERR_INVALID,
						   "GGUF export: tokens %d and %d have the same text \"%.*s\", which llama.cpp cannot load",
						   other, id, (int) (v->len[id] > 60 ? 60 : v->len[id]), v->text[id]);
			break;
		}
		if (sft_strmap_put(&seen, v->text[id], v->len[id], id, &existed) != SFT_OK)
			st = sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}
	sft_strmap_free(&seen);
	if (st != SFT_OK)
		return st;

	if ((st = sorted_merges(tok, &v->merges, &v->n_merges, err)) != SFT_OK)
		return st;
	if (spm)
	{
		/* minus the rank of the merge that makes a token; never merged: lowest */
		for (int32_t id = 0; id < V; id++)
			v->score[id] = (v->type[id] == TOKEN_NORMAL && v->len[id] > 1) ? -1e9f : 0.0f;
		for (size_t i = v->n_merges; i-- > 0;)
			if (v->merges[i].merged >= 0 && v->merges[i].merged < V)
				v->score[v->merges[i].merged] = -(float) v->merges[i].rank;
		/* a single character token has no merge: keep it at 0, above every merge */
		for (int32_t id = 0; id < V; id++)
			if (v->score[id] == -1e9f)
			{
				size_t		cl = 1;
				unsigned char c = (unsigned char) v->text[id][0];

				cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
				if (cl == v->len[id])
					v->score[id] = 0.0f;
			}
		return SFT_OK;
	}

	/* byte-level: merges as text */
	v->merge_ptr = sft_calloc(v->n_merges ? v->n_merges : 1, sizeof(*v->merge_ptr));
	v->merge_len = sft_calloc(v->n_merges ? v->n_merges : 1, sizeof(*v->merge_len));
	if (!v->merge_ptr || !v->merge_len)
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	{
		size_t	   *off = (size_t *) v->merge_ptr;	/* offsets until the buffer stops moving */

		for (size_t i = 0; i < v->n_merges; i++)
		{
			const MergeEntry *m = &v->merges[i];
			size_t		ll = tok->tok_len[m->left],
						rl = tok->tok_len[m->right];
			const char *l = tok->tok_text.data + tok->tok_off[m->left];
			const char *r = tok->tok_text.data + tok->tok_off[m->right];

			if (memchr(l, ' ', ll) || memchr(r, ' ', rl))
				return sft_error(err, SFT_ERR_INVALID,
								 "GGUF export: merge %zu has a token with a space, which GGUF's \"left right\" merges cannot hold", i + 1);
			off[i] = v->merge_text.len;
			v->merge_len[i] = ll + 1 + rl;
			if (sft_buf_append(&v->merge_text, l, ll) != SFT_OK ||
				sft_buf_append(&v->merge_text, " ", 1) != SFT_OK ||
				sft_buf_append(&v->merge_text, r, rl) != SFT_OK)
				return sft_error(err, SFT_ERR_NOMEM, "out of memory");
		}
		for (size_t i = 0; i < v->n_merges; i++)
			v->merge_ptr[i] = v->merge_text.data + off[i];
	}
	return SFT_OK;
}

/* ---------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------- */

SftStatus
sft_gguf_export_model(const SftModel *model, const SftTokenizer *tok,
					  const SftGgufExportOptions *opt, SftWriteFn write, void *ctx,
					  SftError *err)
{
	const SftLlamaConfig *cfg = sft_model_config(model);
	const GgufArch *arch = arch_for_config(cfg);
	const float *params = sft_model_params((SftModel *) model);
	int			spm = tok->kind == SFT_TOKENIZER_SENTENCEPIECE_BPE;
	int			add_space_prefix = 0;
	const char *pre = NULL;
	SftGgufWriter w;
	VocabOut	v;
	RowArg	   *rows = NULL;
	float	   *rope_freqs = NULL;
	int			n_tensors = sft_model_tensor_count(model);
	int32_t		bos,
				eos;
	SftStatus	st;

	if (arch == NULL)
		return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: model_type \"%s\" has no GGUF mapping",
						 sft_family_model_type(cfg->family));
	if ((st = check_config(arch, cfg, err)) != SFT_OK)
		return st;
	if (tok->vocab_size > cfg->vocab_size)
		return sft_error(err, SFT_ERR_INVALID, "GGUF export: the tokenizer's %d ids exceed the model's vocab_size %d",
						 tok->vocab_size, cfg->vocab_size);
	if ((st = sft_gguf_pre_tokenizer_name(tok, &pre, err)) != SFT_OK)
		return st;
	if (spm && (st = check_sentencepiece(tok, &add_space_prefix, err)) != SFT_OK)
		return st;
	if ((st = build_vocab(tok, cfg->vocab_size, &v, err)) != SFT_OK)
	{
		vocab_free(&v);
		return st;
	}
	rows = sft_calloc((size_t) n_tensors, sizeof(*rows));
	if (cfg->rope_type == SFT_ROPE_LLAMA3)
		rope_freqs = sft_calloc((size_t) cfg->head_dim, sizeof(float));	/* HD/2 + scratch */
	if (rows == NULL || (cfg->rope_type == SFT_ROPE_LLAMA3 && rope_freqs == NULL))
	{
		sft_free(rows);
		vocab_free(&v);
		return sft_error(err, SFT_ERR_NOMEM, "out of memory");
	}

	sft_gguf_writer_init(&w);
	sft_gguf_add_string(&w, "general.architecture", arch->gguf_arch, strlen(arch->gguf_arch));
	if (opt->name)
		sft_gguf_add_string(&w, "general.name", opt->name, strlen(opt->name));
	sft_gguf_add_u32(&w, "general.file_type", file_type(opt->dtype));
	if (opt->dtype == SFT_GGML_Q8_0)
		sft_gguf_add_u32(&w, "general.quantization_version", 2);
	put_hparams(&w, arch, cfg);

	sft_gguf_add_string(&w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", spm ? 5 : 4);
	sft_gguf_add_string(&w, "tokenizer.ggml.pre", pre, strlen(pre));
	sft_gguf_add_string_array(&w, "tokenizer.ggml.tokens", (uint64_t) v.n, v.text, v.len);
	if (spm)
		sft_gguf_add_f32_array(&w, "tokenizer.ggml.scores", (uint64_t) v.n, v.score);
	sft_gguf_add_i32_array(&w, "tokenizer.ggml.token_type", (uint64_t) v.n, v.type);
	if (!spm)
		sft_gguf_add_string_array(&w, "tokenizer.ggml.merges", v.n_merges, v.merge_ptr, v.merge_len);
	/* bos: the tokenizer's, else the config's, else eos (llama.cpp needs an id) */
	eos = tok->eos_id >= 0 ? tok->eos_id : cfg->eos_token_id;
	bos = tok->bos_id >= 0 ? tok->bos_id : cfg->bos_token_id >= 0 ? cfg->bos_token_id : eos;
	if (bos >= 0)
		sft_gguf_add_u32(&w, "tokenizer.ggml.bos_token_id", (uint32_t) bos);
	if (eos >= 0)
		sft_gguf_add_u32(&w, "tokenizer.ggml.eos_token_id", (uint32_t) eos);
	if (opt->eot_id >= 0)
		sft_gguf_add_u32(&w, "tokenizer.ggml.eot_token_id", (uint32_t) opt->eot_id);
	if (tok->unk_id >= 0)
		sft_gguf_add_u32(&w, "tokenizer.ggml.unknown_token_id", (uint32_t) tok->unk_id);
	if (tok->pad_id >= 0)
		sft_gguf_add_u32(&w, "tokenizer.ggml.padding_token_id", (uint32_t) tok->pad_id);
	/*
	 * add_bos_token: whether HF's tokenizer(text) starts with BOS, as
	 * tokenizer_config.json says, else as the post_processor's template
	 * does (Llama 3), else SentencePiece's habit.
	 */
	sft_gguf_add_bool(&w, "tokenizer.ggml.add_bos_token",
					  tok->add_bos_token >= 0 ? tok->add_bos_token
					  : tok->post_first_id >= 0 ? tok->post_first_id == bos
					  : tok->post_first_id == -1 ? 0 : spm);
	sft_gguf_add_bool(&w, "tokenizer.ggml.add_eos_token", 0);
	if (spm)
		sft_gguf_add_bool(&w, "tokenizer.ggml.add_space_prefix", add_space_prefix);
	if (opt->chat_template)
		sft_gguf_add_string(&w, "tokenizer.chat_template", opt->chat_template,
							strlen(opt->chat_template));

	if (rope_freqs)
	{
		uint64_t	ne[1] = {(uint64_t) cfg->head_dim / 2};

		llama3_rope_freqs(cfg, rope_freqs);
		sft_gguf_add_tensor(&w, "rope_freqs.weight", 1, ne, SFT_GGML_F32, rope_freqs, NULL, NULL);
	}
	for (int i = 0; i < n_tensors && w.status == SFT_OK; i++)
	{
		const SftParamTensor *t = sft_model_tensor(model, i);
		char		name[SFT_TENSOR_NAME_MAX + 16];
		const TensorMap *m = map_tensor(arch, t->name, name, sizeof(name));
		uint64_t	ne[2];
		SftGgmlType type;

		if (m == NULL)
		{
			sft_gguf_writer_free(&w);
			vocab_free(&v);
			sft_free(rows);
			sft_free(rope_freqs);
			return sft_error(err, SFT_ERR_UNSUPPORTED, "GGUF export: tensor %s has no %s mapping",
							 t->name, arch->gguf_arch);
		}
		/* GGUF dims are PyTorch's reversed */
		ne[0] = (uint64_t) t->shape[t->ndim - 1];
		ne[1] = t->ndim == 2 ? (uint64_t) t->shape[0] : 1;
		type = t->ndim == 1 ? SFT_GGML_F32 : opt->dtype;
		rows[i].w = params + t->offset;
		rows[i].cols = (int64_t) ne[0];
		rows[i].head_dim = cfg->head_dim;
		if (m->rows == ROWS_PERMUTE_Q || m->rows == ROWS_PERMUTE_K)
			sft_gguf_add_tensor(&w, name, t->ndim, ne, type, NULL, permute_row, &rows[i]);
		else if (m->rows == ROWS_PLUS_ONE)
			sft_gguf_add_tensor(&w, name, t->ndim, ne, type, NULL, plus_one_row, &rows[i]);
		else
			sft_gguf_add_tensor(&w, name, t->ndim, ne, type, params + t->offset, NULL, NULL);
	}
	st = sft_gguf_write(&w, write, ctx, err);
	sft_gguf_writer_free(&w);
	vocab_free(&v);
	sft_free(rows);
	sft_free(rope_freqs);
	return st;
}
