/*
 * sft.c: module entry point.  _PG_init defines the GUCs and, when the library
 * is in shared_preload_libraries, reserves the shared memory the training
 * runs report progress through.  Nothing here calls BLAS: thread pools do not
 * survive the postmaster's fork().
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "model_cache.h"
#include "tokenizer.h"
#include "sft.h"
#include "train.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* ---- section: GUCs and shared memory (models and training) ---- */
	SftTrainInit();
	/* ---- end section ---- */

	/* generation and evaluation: sft.model_cache_size */
	SftModelCacheInit();

	/* chat templates: sft.template_now */
	SftTokenizerInit();

	MarkGUCPrefixReserved("sft");
}
