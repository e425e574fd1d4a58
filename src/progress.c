/*
 * progress.c: the shared-memory table of training runs in flight (see
 * progress.h for what a slot means).
 *
 * Locking: one LWLock serialises reserving and releasing slots (so that
 * counting active runs against sft.max_concurrent_runs and taking a slot is
 * atomic); each slot's spinlock protects its fields for the short copies
 * readers and the worker make.  The worker publishes once per optimizer step,
 * so contention is nil.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "progress.h"

typedef struct SftRunSlot
{
	slock_t		mutex;			/* protects progress */
	SftRunProgress progress;	/* run_id == 0 when free */
	ConditionVariable cv;		/* broadcast on every publish and on release */
} SftRunSlot;

typedef struct SftProgressShared
{
	LWLock	   *lock;			/* reserve/release */
	SftRunSlot	slots[SFT_MAX_RUN_SLOTS];
} SftProgressShared;

static SftProgressShared *SftShared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
SftProgressShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SftProgressShared)));
	RequestNamedLWLockTranche("sft", 1);
}

static void
SftProgressShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	SftShared = ShmemInitStruct("sft training runs", sizeof(SftProgressShared), &found);
	if (!found)
	{
		/*
		 * Fresh shared memory: at server start and after every crash
		 * restart.  Every run a row still calls running is now without a
		 * slot, which is how it shows as interrupted.
		 */
		memset(SftShared, 0, sizeof(SftProgressShared));
		SftShared->lock = &(GetNamedLWLockTranche("sft"))->lock;
		for (int i = 0; i < SFT_MAX_RUN_SLOTS; i++)
		{
			SpinLockInit(&SftShared->slots[i].mutex);
			ConditionVariableInit(&SftShared->slots[i].cv);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
SftProgressInstallHooks(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = SftProgressShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = SftProgressShmemStartup;
}

void
SftProgressRequireShmem(void)
{
	if (SftShared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sft training needs the sft library in shared_preload_libraries"),
				 errhint("Add 'sft' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

const char *
SftRunPhaseName(SftRunPhase phase)
{
	switch (phase)
	{
		case SFT_PHASE_FREE:
			return "free";
		case SFT_PHASE_STARTING:
			return "starting";
		case SFT_PHASE_LOADING:
			return "loading";
		case SFT_PHASE_TRAINING:
			return "training";
		case SFT_PHASE_VALIDATING:
			return "validating";
		case SFT_PHASE_CHECKPOINTING:
			return "checkpointing";
		case SFT_PHASE_SAVING:
			return "saving";
	}
	return "unknown";
}

static bool
SlotHolds(const SftRunProgress *p, int64 run_id, Oid dboid)
{
	return p->phase != SFT_PHASE_FREE && p->run_id == run_id && p->dboid == dboid;
}

int
SftProgressReserve(int64 run_id, Oid dboid, Oid owner, TransactionId creator_xid,
				   int max_runs)
{
	int			active = 0;
	int			free_slot = -1;

	SftProgressRequireShmem();
	LWLockAcquire(SftShared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < SFT_MAX_RUN_SLOTS; i++)
	{
		SftRunProgress *p = &SftShared->slots[i].progress;

		if (p->phase == SFT_PHASE_FREE)
		{
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		active++;
		if (p->run_id == run_id && p->dboid == dboid)
		{
			LWLockRelease(SftShared->lock);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("training run %lld is already active", (long long) run_id)));
		}
	}
	if (active >= max_runs || free_slot < 0)
	{
		LWLockRelease(SftShared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many training runs active (%d)", active),
				 errdetail("sft.max_concurrent_runs is %d.", max_runs),
				 errhint("Wait for a run to finish, cancel one with sft_cancel(), or raise sft.max_concurrent_runs.")));
	}
	{
		SftRunSlot *slot = &SftShared->slots[free_slot];

		SpinLockAcquire(&slot->mutex);
		memset(&slot->progress, 0, sizeof(slot->progress));
		slot->progress.run_id = run_id;
		slot->progress.dboid = dboid;
		slot->progress.owner = owner;
		slot->progress.creator_xid = creator_xid;
		slot->progress.phase = SFT_PHASE_STARTING;
		slot->progress.eta_seconds = -1;
		slot->progress.started = GetCurrentTimestamp();
		slot->progress.updated = slot->progress.started;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(SftShared->lock);
	return free_slot;
}

void
SftProgressRelease(int slot_index)
{
	SftRunSlot *slot;

	if (SftShared == NULL || slot_index < 0 || slot_index >= SFT_MAX_RUN_SLOTS)
		return;
	slot = &SftShared->slots[slot_index];
	LWLockAcquire(SftShared->lock, LW_EXCLUSIVE);
	SpinLockAcquire(&slot->mutex);
	memset(&slot->progress, 0, sizeof(slot->progress));
	slot->progress.phase = SFT_PHASE_FREE;
	SpinLockRelease(&slot->mutex);
	LWLockRelease(SftShared->lock);
	ConditionVariableBroadcast(&slot->cv);
}

bool
SftProgressAttach(int slot_index, int64 run_id, Oid dboid)
{
	SftRunSlot *slot;
	bool		ok;

	if (SftShared == NULL || slot_index < 0 || slot_index >= SFT_MAX_RUN_SLOTS)
		return false;
	slot = &SftShared->slots[slot_index];
	SpinLockAcquire(&slot->mutex);
	ok = SlotHolds(&slot->progress, run_id, dboid);
	if (ok)
	{
		slot->progress.pid = MyProcPid;
		slot->progress.updated = GetCurrentTimestamp();
	}
	SpinLockRelease(&slot->mutex);
	ConditionVariableBroadcast(&slot->cv);
	return ok;
}

void
SftProgressPublish(int slot_index, const SftRunProgress *progress)
{
	SftRunSlot *slot = &SftShared->slots[slot_index];

	SpinLockAcquire(&slot->mutex);
	/* Identity and the cancel flag belong to the slot, not to the copy. */
	if (SlotHolds(&slot->progress, progress->run_id, progress->dboid))
	{
		bool		cancel = slot->progress.cancel_requested;
		TransactionId xid = slot->progress.creator_xid;
		Oid			owner = slot->progress.owner;

		slot->progress = *progress;
		slot->progress.cancel_requested = cancel;
		slot->progress.creator_xid = xid;
		slot->progress.owner = owner;
		slot->progress.pid = MyProcPid;
		slot->progress.updated = GetCurrentTimestamp();
	}
	SpinLockRelease(&slot->mutex);
	ConditionVariableBroadcast(&slot->cv);
}

bool
SftProgressCancelRequested(int slot_index)
{
	SftRunSlot *slot = &SftShared->slots[slot_index];
	bool		cancel;

	SpinLockAcquire(&slot->mutex);
	cancel = slot->progress.cancel_requested;
	SpinLockRelease(&slot->mutex);
	return cancel;
}

bool
SftProgressRead(int slot_index, int64 run_id, Oid dboid, SftRunProgress *out)
{
	SftRunSlot *slot;

	if (SftShared == NULL || slot_index < 0 || slot_index >= SFT_MAX_RUN_SLOTS)
		return false;
	slot = &SftShared->slots[slot_index];
	SpinLockAcquire(&slot->mutex);
	*out = slot->progress;
	SpinLockRelease(&slot->mutex);
	if (run_id == 0)			/* any occupant (the progress view) */
		return out->phase != SFT_PHASE_FREE && (dboid == InvalidOid || out->dboid == dboid);
	return SlotHolds(out, run_id, dboid);
}

int
SftProgressFind(int64 run_id, Oid dboid)
{
	SftRunProgress p;

	if (SftShared == NULL)
		return -1;
	for (int i = 0; i < SFT_MAX_RUN_SLOTS; i++)
		if (SftProgressRead(i, run_id, dboid, &p))
			return i;
	return -1;
}

bool
SftProgressIsActive(int64 run_id, Oid dboid)
{
	return SftProgressFind(run_id, dboid) >= 0;
}

bool
SftProgressRequestCancel(int64 run_id, Oid dboid)
{
	int			slot_index = SftProgressFind(run_id, dboid);
	SftRunSlot *slot;
	bool		ok;

	if (slot_index < 0)
		return false;
	slot = &SftShared->slots[slot_index];
	SpinLockAcquire(&slot->mutex);
	ok = SlotHolds(&slot->progress, run_id, dboid);
	if (ok)
		slot->progress.cancel_requested = true;
	SpinLockRelease(&slot->mutex);
	return ok;
}

bool
SftProgressSleep(int slot_index, long timeout_ms)
{
	SftRunSlot *slot = &SftShared->slots[slot_index];

	return ConditionVariableTimedSleep(&slot->cv, timeout_ms, PG_WAIT_EXTENSION);
}

void
SftProgressSleepDone(void)
{
	ConditionVariableCancelSleep();
}
