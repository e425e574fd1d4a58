/*
 * progress.h: the shared-memory table of training runs in flight.
 *
 * One slot per run between sft_train()/sft_resume() and the end of its
 * background worker.  The slot is what makes a run "alive": a run whose row
 * says queued/running but that owns no slot was left behind by a crash or a
 * restart (shared memory is re-created empty then) and shows as interrupted.
 * The worker publishes its progress here after every optimizer step (the
 * sft_progress view reads it), and broadcasts on the slot's condition
 * variable so that sft_wait() sleeps on a latch instead of polling.
 */
#ifndef SFT_PROGRESS_H
#define SFT_PROGRESS_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/s_lock.h"

/* Upper bound of sft.max_concurrent_runs; the shared table has this many slots. */
#define SFT_MAX_RUN_SLOTS 64

typedef enum SftRunPhase
{
	SFT_PHASE_FREE = 0,			/* slot unused */
	SFT_PHASE_STARTING,			/* reserved, worker not yet past start-up */
	SFT_PHASE_LOADING,			/* reading, tokenizing and masking the source */
	SFT_PHASE_TRAINING,
	SFT_PHASE_VALIDATING,
	SFT_PHASE_CHECKPOINTING,
	SFT_PHASE_SAVING			/* writing the output model */
} SftRunPhase;

/* A consistent copy of one slot (what readers get). */
typedef struct SftRunProgress
{
	int64		run_id;
	Oid			dboid;
	Oid			owner;			/* role the run trains as */
	TransactionId creator_xid;	/* transaction that queued the run */
	int			pid;			/* worker pid, 0 until started */
	bool		cancel_requested;
	SftRunPhase phase;
	int			epoch;			/* 1-based epoch in progress, 0 before training */
	int			epochs;
	int64		step;			/* optimizer steps done, over the whole run */
	int64		steps;			/* optimizer steps of the whole run */
	int64		rows_read;		/* source rows read so far (loading phase) */
	double		loss;			/* mean loss per target token of the last step */
	double		lr;
	double		grad_norm;
	double		tokens_per_s;	/* over the current attempt's training so far */
	double		eta_seconds;	/* -1 when unknown */
	TimestampTz started;		/* this attempt's start */
	TimestampTz updated;
} SftRunProgress;

/* _PG_init: install the shared-memory hooks (only when preloaded). */
void		SftProgressInstallHooks(void);

/* ERROR unless the library was preloaded and shared memory exists. */
void		SftProgressRequireShmem(void);

/*
 * Reserve a slot for a run about to be started, counting the active runs of
 * the whole cluster against max_runs.  Returns the slot index; ERROR when the
 * run already has a slot or too many runs are active.
 */
int			SftProgressReserve(int64 run_id, Oid dboid, Oid owner,
							   TransactionId creator_xid, int max_runs);

/* Give a slot back (caller side when the worker failed to start). */
void		SftProgressRelease(int slot);

/* Worker side: take over a reserved slot; false when it no longer holds run_id. */
bool		SftProgressAttach(int slot, int64 run_id, Oid dboid);

/*
 * Worker side: publish.  The caller fills a copy obtained from
 * SftProgressRead and writes it back; readers are woken.
 */
void		SftProgressPublish(int slot, const SftRunProgress *progress);

/* Worker side: has someone asked this run to stop? */
bool		SftProgressCancelRequested(int slot);

/* Copy of a slot; false when the slot does not hold (dboid, run_id). */
bool		SftProgressRead(int slot, int64 run_id, Oid dboid, SftRunProgress *out);

/* Slot of a live run in this cluster, or -1. */
int			SftProgressFind(int64 run_id, Oid dboid);

/* Is (dboid, run_id) alive?  False when shared memory is absent. */
bool		SftProgressIsActive(int64 run_id, Oid dboid);

/* Ask a run to stop; false when it is not alive. */
bool		SftProgressRequestCancel(int64 run_id, Oid dboid);

/*
 * Sleep until the slot changes (any publish or release) or timeout_ms passes
 * (-1: no timeout).  Returns true when it timed out.  Caller loops and
 * re-checks; CHECK_FOR_INTERRUPTS is honoured.
 */
bool		SftProgressSleep(int slot, long timeout_ms);
void		SftProgressSleepDone(void);

const char *SftRunPhaseName(SftRunPhase phase);

#endif							/* SFT_PROGRESS_H */
