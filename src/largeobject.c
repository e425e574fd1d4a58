/*
 * largeobject.c: SftWriteFn/SftReadFn streams over large objects, and the
 * checkpoint read/write built on them.
 *
 * The streams go through the descriptor interface of be-fsstubs.c (lo_open,
 * lo_write, lo_read, lo_close as the SQL functions do), so the server closes
 * anything left open at the end of the transaction, also on error.
 *
 * The core calls the stream functions in the middle of its own work and has
 * to clean up its own memory when one fails, so a server ERROR must not
 * longjmp through it.  Each callback therefore catches the error, keeps a
 * copy, and returns SFT_ERR_IO; the core unwinds normally and the glue then
 * re-throws the saved error unchanged.  Nothing touches the database between
 * the catch and the re-throw.
 */
#include "postgres.h"

#include "catalog/pg_largeobject.h"
#include "fmgr.h"
#include "libpq/be-fsstubs.h"
#include "libpq/libpq-fs.h"
#include "miscadmin.h"
#include "storage/large_object.h"
#include "utils/fmgrprotos.h"

#include "largeobject.h"
#include "sft.h"

/* Bytes per lo_write/lo_read call: bounded so interrupts are checked often. */
#define SFT_LO_CHUNK (4 * 1024 * 1024)

typedef struct SftLoStream
{
	int			fd;				/* descriptor from lo_open */
	int64		bytes;			/* transferred so far */
	MemoryContext cxt;			/* where the saved error is copied */
	ErrorData  *error;			/* server error caught inside a callback */
} SftLoStream;

/* The loops proper; they may raise ERROR (caught by the stream functions below). */
static void
SftLoWriteAll(SftLoStream *stream, const char *p, size_t len)
{
	while (len > 0)
	{
		int			n = (int) Min(len, (size_t) SFT_LO_CHUNK);
		int			written;

		CHECK_FOR_INTERRUPTS();
		written = lo_write(stream->fd, p, n);
		if (written != n)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("short write to large object: %d of %d bytes", written, n)));
		p += n;
		len -= n;
		stream->bytes += n;
	}
}

/* Returns false when the object ends before len bytes. */
static bool
SftLoReadAll(SftLoStream *stream, char *p, size_t len)
{
	while (len > 0)
	{
		int			n = (int) Min(len, (size_t) SFT_LO_CHUNK);
		int			got;

		CHECK_FOR_INTERRUPTS();
		got = lo_read(stream->fd, p, n);
		if (got <= 0)
			return false;
		p += got;
		len -= got;
		stream->bytes += got;
	}
	return true;
}

/* Keep a copy of the current error in the stream and clear it. */
static void
SftLoStreamCatch(SftLoStream *stream, MemoryContext oldcxt)
{
	MemoryContextSwitchTo(stream->cxt);
	stream->error = CopyErrorData();
	FlushErrorState();
	MemoryContextSwitchTo(oldcxt);
}

static SftStatus
SftLoStreamWrite(void *ctx, const void *data, size_t len, SftError *err)
{
	SftLoStream *stream = (SftLoStream *) ctx;
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		SftLoWriteAll(stream, (const char *) data, len);
	}
	PG_CATCH();
	{
		SftLoStreamCatch(stream, oldcxt);
	}
	PG_END_TRY();
	if (stream->error)
		return sft_error(err, SFT_ERR_IO, "%s", stream->error->message);
	return SFT_OK;
}

static SftStatus
SftLoStreamRead(void *ctx, void *data, size_t len, SftError *err)
{
	SftLoStream *stream = (SftLoStream *) ctx;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool complete = false;

	PG_TRY();
	{
		complete = SftLoReadAll(stream, (char *) data, len);
	}
	PG_CATCH();
	{
		SftLoStreamCatch(stream, oldcxt);
	}
	PG_END_TRY();
	if (stream->error)
		return sft_error(err, SFT_ERR_IO, "%s", stream->error->message);
	if (!complete)
		return sft_error(err, SFT_ERR_FORMAT,
						 "large object ends after %lld bytes, in the middle of the checkpoint",
						 (long long) stream->bytes);
	return SFT_OK;
}

/* After the core returned an error: the saved server error wins, unchanged. */
static void
SftLoReportFailure(SftLoStream *stream, const SftError *err, const char *what)
{
	if (stream->error)
		ReThrowError(stream->error);
	SftReportCoreError(err, what);
}

static int
SftLoOpen(Oid oid, int mode)
{
	return DatumGetInt32(DirectFunctionCall2(be_lo_open, ObjectIdGetDatum(oid),
											 Int32GetDatum(mode)));
}

static void
SftLoClose(int fd)
{
	DirectFunctionCall1(be_lo_close, Int32GetDatum(fd));
}

Oid
SftLoWriteCheckpoint(const SftModel *model, const SftCheckpointState *state,
					 int64 *size_bytes)
{
	SftLoStream stream = {0};
	SftError	err = {0};
	Oid			oid;

	oid = DatumGetObjectId(DirectFunctionCall1(be_lo_create, ObjectIdGetDatum(InvalidOid)));
	stream.fd = SftLoOpen(oid, INV_READ | INV_WRITE);
	stream.cxt = CurrentMemoryContext;
	if (sft_checkpoint_write(SftLoStreamWrite, &stream, model, state, &err) != SFT_OK)
		SftLoReportFailure(&stream, &err, "writing checkpoint");
	SftLoClose(stream.fd);
	if (size_bytes)
		*size_bytes = stream.bytes;
	return oid;
}

SftModel *
SftLoReadCheckpoint(Oid oid, const char *what, float **adam_m, float **adam_v,
					int64 *step, char **meta_json)
{
	SftLoStream stream = {0};
	SftError	err = {0};
	SftModel   *model = NULL;
	int64_t		core_step = 0;

	stream.fd = SftLoOpen(oid, INV_READ);
	stream.cxt = CurrentMemoryContext;
	if (sft_checkpoint_read(SftLoStreamRead, &stream, &model, adam_m, adam_v,
							&core_step, meta_json, &err) != SFT_OK)
		SftLoReportFailure(&stream, &err, what ? what : "reading checkpoint");
	SftLoClose(stream.fd);
	if (step)
		*step = core_step;
	return model;
}

/* The training checkpoint of a LoRA run: the adapter and its moments. */
Oid
SftLoWriteAdapterCheckpoint(const SftLoraAdapter *adapter, const SftCheckpointState *state,
							int64 *size_bytes)
{
	SftLoStream stream = {0};
	SftError	err = {0};
	Oid			oid;

	oid = DatumGetObjectId(DirectFunctionCall1(be_lo_create, ObjectIdGetDatum(InvalidOid)));
	stream.fd = SftLoOpen(oid, INV_READ | INV_WRITE);
	stream.cxt = CurrentMemoryContext;
	if (sft_checkpoint_write_adapter(SftLoStreamWrite, &stream, adapter, state, &err) != SFT_OK)
		SftLoReportFailure(&stream, &err, "writing checkpoint");
	SftLoClose(stream.fd);
	if (size_bytes)
		*size_bytes = stream.bytes;
	return oid;
}

SftLoraAdapter *
SftLoReadAdapterCheckpoint(Oid oid, const SftLlamaConfig *base, const char *what,
						   float **adam_m, float **adam_v, int64 *step)
{
	SftLoStream stream = {0};
	SftError	err = {0};
	SftLoraAdapter *adapter = NULL;
	int64_t		core_step = 0;

	stream.fd = SftLoOpen(oid, INV_READ);
	stream.cxt = CurrentMemoryContext;
	if (sft_checkpoint_read_adapter(SftLoStreamRead, &stream, base, &adapter, adam_m, adam_v,
									&core_step, NULL, &err) != SFT_OK)
		SftLoReportFailure(&stream, &err, what ? what : "reading checkpoint");
	SftLoClose(stream.fd);
	if (step)
		*step = core_step;
	return adapter;
}

/* ---------------------------------------------------------------------------
 * LoRA adapters: the adapter_model.safetensors bytes
 * ------------------------------------------------------------------------- */

/* Random access for the safetensors reader: seek, then read exactly len bytes. */
static SftStatus
SftLoStreamReadAt(void *ctx, uint64_t offset, void *data, size_t len, SftError *err)
{
	SftLoStream *stream = (SftLoStream *) ctx;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool complete = false;

	PG_TRY();
	{
		DirectFunctionCall3(be_lo_lseek64, Int32GetDatum(stream->fd),
							Int64GetDatum((int64) offset), Int32GetDatum(SEEK_SET));
		complete = SftLoReadAll(stream, (char *) data, len);
	}
	PG_CATCH();
	{
		SftLoStreamCatch(stream, oldcxt);
	}
	PG_END_TRY();
	if (stream->error)
		return sft_error(err, SFT_ERR_IO, "%s", stream->error->message);
	if (!complete)
		return sft_error(err, SFT_ERR_FORMAT, "large object ends before byte %llu",
						 (unsigned long long) (offset + len));
	return SFT_OK;
}

Oid
SftLoWriteAdapter(const SftLoraAdapter *adapter, int64 *size_bytes)
{
	SftLoStream stream = {0};
	SftError	err = {0};
	Oid			oid;

	oid = DatumGetObjectId(DirectFunctionCall1(be_lo_create, ObjectIdGetDatum(InvalidOid)));
	stream.fd = SftLoOpen(oid, INV_READ | INV_WRITE);
	stream.cxt = CurrentMemoryContext;
	if (sft_lora_adapter_write(adapter, SftLoStreamWrite, &stream, &err) != SFT_OK)
		SftLoReportFailure(&stream, &err, "writing adapter");
	SftLoClose(stream.fd);
	if (size_bytes)
		*size_bytes = stream.bytes;
	return oid;
}

SftLoraAdapter *
SftLoReadAdapter(Oid oid, const SftLoraConfig *cfg, const SftLlamaConfig *model_cfg,
				 const char *what)
{
	SftLoStream stream = {0};
	SftError	err = {0};
	SftLoraAdapter *adapter = NULL;
	int64		size;

	stream.fd = SftLoOpen(oid, INV_READ);
	stream.cxt = CurrentMemoryContext;
	size = DatumGetInt64(DirectFunctionCall3(be_lo_lseek64, Int32GetDatum(stream.fd),
											 Int64GetDatum(0), Int32GetDatum(SEEK_END)));
	if (sft_lora_adapter_read(SftLoStreamReadAt, &stream, (uint64_t) size, cfg, model_cfg,
							  &adapter, &err) != SFT_OK)
		SftLoReportFailure(&stream, &err, what ? what : "reading adapter");
	SftLoClose(stream.fd);
	return adapter;
}

void
SftLoUnlink(Oid oid)
{
	if (!OidIsValid(oid))
		return;
	/* lo_unlink checks ownership; a missing object is not an error here. */
	if (LargeObjectExists(oid))
		DirectFunctionCall1(be_lo_unlink, ObjectIdGetDatum(oid));
}
