/*
 * largeobject.h: model weights and checkpoints as large objects.
 *
 * The core writes and reads checkpoints through SftWriteFn/SftReadFn streams
 * (src/core/weights.h); here those streams are backed by the server's large
 * object API, so weights never pass through a file or a bytea.  Large
 * objects are created as the current user (who thereby owns them) and opened
 * with the ordinary privilege checks, so reading a model someone else owns
 * needs SELECT on its large object.
 */
#ifndef SFT_LARGEOBJECT_H
#define SFT_LARGEOBJECT_H

#include "postgres.h"

#include "core/model.h"
#include "core/checkpoint.h"
#include "core/lora_adapter.h"

/*
 * Write model (+ optional optimizer state) as a checkpoint into a new large
 * object owned by the current user.  Returns its OID; *size_bytes receives
 * the bytes written.
 */
Oid			SftLoWriteCheckpoint(const SftModel *model, const SftCheckpointState *state,
								 int64 *size_bytes);

/*
 * Read a checkpoint from a large object.  adam_m/adam_v/step/meta_json may be
 * NULL when the caller wants the weights only.  The model and moments are
 * core allocations (sft_free / sft_model_free); ERROR on any problem, with
 * what, when not NULL, naming the object in the message ("model \"x\"").
 */
SftModel   *SftLoReadCheckpoint(Oid oid, const char *what, float **adam_m, float **adam_v,
								int64 *step, char **meta_json);

/*
 * The same for the training checkpoints of a LoRA run: the adapter's slab
 * and moments only (checkpoint.h); reading needs the base's config.
 */
Oid			SftLoWriteAdapterCheckpoint(const SftLoraAdapter *adapter,
										const SftCheckpointState *state, int64 *size_bytes);
SftLoraAdapter *SftLoReadAdapterCheckpoint(Oid oid, const SftLlamaConfig *base, const char *what,
										   float **adam_m, float **adam_v, int64 *step);

/*
 * A LoRA adapter's large object holds its adapter_model.safetensors bytes
 * (lora_adapter.h).  Write one into a new large object owned by the current
 * user (OID returned, *size_bytes the bytes written); read one back for a
 * base of model_cfg with the ordinary privilege checks (ERROR on any problem,
 * naming what).  The adapter is a core allocation (sft_lora_adapter_free).
 */
Oid			SftLoWriteAdapter(const SftLoraAdapter *adapter, int64 *size_bytes);
SftLoraAdapter *SftLoReadAdapter(Oid oid, const SftLoraConfig *cfg,
								 const SftLlamaConfig *model_cfg, const char *what);

/* Unlink a large object if it exists (no error when it is already gone). */
void		SftLoUnlink(Oid oid);

#endif							/* SFT_LARGEOBJECT_H */
