/*
 * lora_adapter.h: LoRA adapters (low-rank updates of a frozen base model's
 * projections) as PEFT defines them and stores them.
 *
 * Math (PEFT's lora/layer.py, Linear): for a targeted projection W [out, in]
 *     y = W x + s * B (A (dropout(x)))      A [r, in], B [out, r]
 *     s = alpha / r           (use_rslora: alpha / sqrt(r))
 * so merging is W += s * B @ A.  Every targeted module of every layer has an
 * adapter (PEFT's layers_to_transform, rank_pattern and alpha_pattern are
 * refused, see lora_adapter.c).
 *
 * Files (what peft's save_pretrained writes and from_pretrained reads):
 *   adapter_config.json       {"peft_type": "LORA", "r", "lora_alpha", ...}
 *   adapter_model.safetensors tensors named
 *     base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_A.weight [r, in]
 *     base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_B.weight [out, r]
 *     base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
 *   fp32, metadata {"format": "pt"}.  The same bytes are an adapter model's
 *   large object in sft_models (the row's "adapter" column holds the
 *   adapter_config.json object), so export is a copy.
 *
 * In memory an adapter is one slab of floats with a table of tensors, like a
 * model (model.h): tensor 2 * (layer * n_targets + k) is A of the k-th
 * targeted module (in SftLoraModule order) of that layer, the next one its B.
 * So a trainer's gradients and AdamW moments are slabs of the same length.
 */
#ifndef SFT_CORE_LORA_ADAPTER_H
#define SFT_CORE_LORA_ADAPTER_H

#include "common.h"
#include "llama_config.h"
#include "model.h"
#include "safetensors.h"
#include "weights.h"

/* The projections of a decoder layer an adapter can target, in table order. */
typedef enum SftLoraModule
{
	SFT_LORA_Q = 0,				/* self_attn.q_proj  [NH * HD, C] */
	SFT_LORA_K,					/* self_attn.k_proj  [NKV * HD, C] */
	SFT_LORA_V,					/* self_attn.v_proj  [NKV * HD, C] */
	SFT_LORA_O,					/* self_attn.o_proj  [C, NH * HD] */
	SFT_LORA_GATE,				/* mlp.gate_proj     [F, C] */
	SFT_LORA_UP,				/* mlp.up_proj       [F, C] */
	SFT_LORA_DOWN,				/* mlp.down_proj     [C, F] */
	SFT_LORA_N_MODULES
} SftLoraModule;

#define SFT_LORA_TARGET(module) (1u << (module))
#define SFT_LORA_TARGET_ALL ((1u << SFT_LORA_N_MODULES) - 1)	/* "all-linear" */

#define SFT_LORA_MAX_RANK 4096
#define SFT_LORA_MAX_CONFIG_BYTES (1u << 20)

typedef struct SftLoraConfig
{
	int			r;				/* rank, 1 .. SFT_LORA_MAX_RANK */
	double		alpha;			/* lora_alpha, > 0 */
	double		dropout;		/* lora_dropout, [0, 1): training only */
	int			rslora;			/* use_rslora: s = alpha / sqrt(r) */
	uint32_t	targets;		/* SFT_LORA_TARGET bits, not 0 */
} SftLoraConfig;

typedef struct SftLoraTensor
{
	char		name[SFT_TENSOR_NAME_MAX];	/* PEFT name */
	int			layer;
	SftLoraModule module;
	int			is_b;			/* 0: lora_A [r, in], 1: lora_B [out, r] */
	int64_t		shape[2];
	size_t		numel;
	size_t		offset;			/* into the slab, in floats */
} SftLoraTensor;

typedef struct SftLoraAdapter
{
	SftLoraConfig config;
	int			n_layers;		/* L of the base */
	int			n_targets;		/* bits set in config.targets */
	int			n_tensors;		/* 2 * L * n_targets */
	SftLoraTensor *tensors;		/* [n_tensors], order above */
	float	   *params;			/* the slab [n_params] */
	size_t		n_params;
} SftLoraAdapter;

/* ---------------------------------------------------------------------------
 * Config
 * ------------------------------------------------------------------------- */

/* PEFT's module name ("q_proj" ...), or NULL; and back (-1: not a module). */
const char *sft_lora_module_name(SftLoraModule module);
int			sft_lora_module_from_name(const char *name);

/* Fields in range (r, alpha > 0, dropout in [0, 1), targets not empty). */
SftStatus	sft_lora_config_validate(const SftLoraConfig *cfg, SftError *err);

/* s = alpha / r, or alpha / sqrt(r) with rslora (computed in double). */
float		sft_lora_scale(const SftLoraConfig *cfg);

/*
 * Parse adapter_config.json text.  base_name, when not NULL, receives a copy
 * of base_model_name_or_path (sft_free; NULL when absent or null).  Settings
 * that change the math and that we do not implement are refused by name
 * (SFT_ERR_UNSUPPORTED); see lora_adapter.c for the list.
 */
SftStatus	sft_lora_config_parse(const char *json, size_t len, SftLoraConfig *out,
								  char **base_name, SftError *err);

/*
 * adapter_config.json text: peft_type LORA, task_type CAUSAL_LM, r,
 * lora_alpha, lora_dropout, target_modules (sorted names), use_rslora,
 * bias "none", fan_in_fan_out false, base_model_name_or_path (base_name, or
 * null when NULL); keys sorted, two-space indentation, as PEFT writes it.
 * Deterministic: parse(to_json(c)) == c and to_json(parse(t)) == t for our t.
 */
SftStatus	sft_lora_config_to_json(const SftLoraConfig *cfg, const char *base_name,
									SftBuf *out, SftError *err);

/* ---------------------------------------------------------------------------
 * Shapes and names
 * ------------------------------------------------------------------------- */

/* The projection's [out, in] in a model of this config. */
void		sft_lora_module_shape(const SftLlamaConfig *model_cfg, SftLoraModule module,
								  int64_t *out_dim, int64_t *in_dim);

/* "base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight" */
void		sft_lora_tensor_name(char *dst, size_t size, int layer, SftLoraModule module,
								 int is_b);
/* The HF name of the base weight the module adapts ("model.layers.3.mlp.up_proj.weight"). */
void		sft_lora_base_tensor_name(char *dst, size_t size, int layer, SftLoraModule module);

/* Inverse of sft_lora_tensor_name; SFT_ERR_INVALID (naming it) for any other name. */
SftStatus	sft_lora_parse_tensor_name(const char *name, int *layer, SftLoraModule *module,
									   int *is_b, SftError *err);

/* Adapter floats for this config on this base (64-bit, without allocating). */
uint64_t	sft_lora_num_params(const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg);

/* ---------------------------------------------------------------------------
 * Adapters
 * ------------------------------------------------------------------------- */

/* A zero-filled adapter for a base of model_cfg (validates both configs). */
SftStatus	sft_lora_adapter_new(const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg,
								 SftLoraAdapter **out, SftError *err);
void		sft_lora_adapter_free(SftLoraAdapter *adapter);

/* Table index of (layer, module, A|B), or -1 when the module is not targeted. */
int			sft_lora_adapter_find(const SftLoraAdapter *adapter, int layer,
								  SftLoraModule module, int is_b);

/* The adapter fits a base of model_cfg: same layer count, every shape. */
SftStatus	sft_lora_adapter_check_base(const SftLoraAdapter *adapter,
										const SftLlamaConfig *model_cfg, SftError *err);

/*
 * Read adapter tensors from a safetensors source of file_size bytes (PEFT
 * names, F32/BF16/F16 converted to fp32) into a new adapter of cfg for a
 * base of model_cfg.  Every tensor must be an adapter tensor of a targeted
 * module with the base's shape, each exactly once, none missing, all values
 * finite; anything else is an error naming the tensor.
 */
SftStatus	sft_lora_adapter_read(SftReadAtFn read_at, void *ctx, uint64_t file_size,
								  const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg,
								  SftLoraAdapter **out, SftError *err);
/* The same from bytes in memory. */
SftStatus	sft_lora_adapter_load_buffer(const void *data, size_t len,
										 const SftLoraConfig *cfg,
										 const SftLlamaConfig *model_cfg,
										 SftLoraAdapter **out, SftError *err);

/*
 * Write the adapter as adapter_model.safetensors: F32, metadata
 * {"format": "pt"}, tensors sorted by name (as the safetensors library
 * orders same-dtype tensors), header padded to 8 bytes.  Deterministic.
 */
SftStatus	sft_lora_adapter_write(const SftLoraAdapter *adapter, SftWriteFn write, void *ctx,
								   SftError *err);

/*
 * W += s * B @ A for every adapted projection of model (fp32 sgemm): the
 * merged model computes what base + adapter compute.  The adapter must fit
 * the model (checked first; the model is unchanged on error).
 */
SftStatus	sft_lora_merge(SftModel *model, const SftLoraAdapter *adapter, SftError *err);

/* ---------------------------------------------------------------------------
 * PEFT directories
 * ------------------------------------------------------------------------- */

/* 1 when dir holds adapter_config.json (a PEFT adapter directory), else 0. */
int			sft_peft_dir_detect(const char *dir);

/*
 * Read adapter_config.json + adapter_model.safetensors from dir for a base
 * of model_cfg.  base_name as in sft_lora_config_parse.
 */
SftStatus	sft_peft_load_dir(const char *dir, const SftLlamaConfig *model_cfg,
							  SftLoraAdapter **out, char **base_name, SftError *err);

/*
 * Write adapter_config.json (base_model_name_or_path = base_name) and
 * adapter_model.safetensors into an existing directory, each atomically.
 */
SftStatus	sft_peft_save_dir(const SftLoraAdapter *adapter, const char *base_name,
							  const char *dir, SftError *err);

#endif							/* SFT_CORE_LORA_ADAPTER_H */
