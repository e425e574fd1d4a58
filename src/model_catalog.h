/*
 * model_catalog.h: the sft_models catalog for the other glue files
 * (generation, evaluation, training): look a model up, check who may do
 * what with it, load its weights.
 *
 * A model's weights never change after its row is inserted (training
 * writes a new model); dropping and re-creating a name gives a new weights
 * OID.  So (name, weights) identifies a model's content: a cache keyed by it
 * is invalidated exactly when the weights change.  The one mutable column,
 * system_prompt, is read from the row on every lookup, never cached.
 */
#ifndef SFT_MODEL_CATALOG_H
#define SFT_MODEL_CATALOG_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "core/llama_config.h"
#include "core/lora_adapter.h"
#include "core/model.h"

typedef struct SftModelRow
{
	char	   *name;
	char	   *tokenizer;		/* name in sft_tokenizers */
	char	   *dtype;
	char	   *parent;			/* NULL for imported/created models */
	int64		run_id;			/* 0 when not produced by a run */
	Oid			owner;
	Oid			weights;		/* large object, sft checkpoint format */
	int64		parameters;
	int64		size_bytes;
	char	   *config_json;	/* HF config.json text */
	char	   *system_prompt;	/* used when a conversation has none, or NULL */
	SftLlamaConfig config;		/* parsed (an adapter's: its base's) */
	/* LoRA adapters: weights hold only the adapter tensors; parent is the base */
	char	   *adapter_json;	/* adapter_config.json text, NULL for full models */
	bool		is_adapter;
	SftLoraConfig lora;			/* parsed adapter_json */
} SftModelRow;

/*
 * Look a model up (a fresh snapshot; usable inside or outside an SPI
 * connection).  Not found: ERROR "model ... does not exist", or false when
 * missing_ok.  Strings are allocated in the current memory context.
 */
bool		SftModelFetch(const char *name, SftModelRow *row, bool missing_ok);

/* ERROR unless the current user owns the model or is a superuser. */
void		SftModelCheckOwner(const SftModelRow *row, const char *action);

/*
 * Read the model's weights as the current user (SELECT on the large object
 * is checked by the server).  The model is a core allocation: free it with
 * sft_model_free.
 */
SftModel   *SftModelLoadWeights(const SftModelRow *row);

/*
 * ERROR unless name is free for a new model: no model has it and no run
 * other than except_run (0: none) will produce it.
 */
void		SftModelCheckNameFree(const char *name, int64 except_run);

/*
 * Insert a model row for model, whose weights the caller already wrote into
 * the large object weights (size_bytes long) as the current user, who
 * becomes the row's owner.  parent may be NULL and run_id 0.
 */
void		SftModelInsert(const char *name, const char *tokenizer, const SftModel *model,
						   const char *parent, int64 run_id, Oid weights, int64 size_bytes);

/*
 * Store adapter (for a base of the model named base) as a new adapter model
 * name: its tensors in a new large object owned by the current user, who
 * becomes the row's owner; parent = base, the base's config and tokenizer,
 * adapter = adapter_config.json with base_model_name_or_path = base;
 * run_id 0 when no run produced it (a run may use the name it reserved).
 * ERROR when the name is taken, the base
 * does not exist or is itself an adapter, or the adapter does not fit it.
 * Returns the adapter's parameter count.  The training worker stores LoRA
 * runs' results with it.
 */
int64		SftModelInsertAdapter(const char *name, const char *base,
								  const SftLoraAdapter *adapter, int64 run_id);

/*
 * Read an adapter model's tensors as the current user (SELECT on the large
 * object is checked by the server); a core allocation (sft_lora_adapter_free).
 */
SftLoraAdapter *SftModelLoadAdapter(const SftModelRow *row);

/*
 * model_export_gguf.c: write NAME.gguf (dtype f32, f16, bf16 or q8_0) and
 * an Ollama Modelfile into dir, an existing absolute directory the caller
 * may write (checked by sft_model_export); returns the two paths.
 */
List	   *SftModelExportGguf(const SftModelRow *row, const char *dir, const char *dtype);

/* Parameters a model of this config has (without allocating it). */
int64		SftConfigParameterCount(const SftLlamaConfig *cfg);

#endif							/* SFT_MODEL_CATALOG_H */
