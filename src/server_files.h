/*
 * server_files.h: the one home of the rules for touching the server's file
 * system on a caller's behalf (importing and exporting tokenizers and
 * models).  Reading needs the privileges of pg_read_server_files, writing
 * those of pg_write_server_files, as for COPY ... FROM/TO a file; paths are
 * absolute and checked before use.
 */
#ifndef SFT_SERVER_FILES_H
#define SFT_SERVER_FILES_H

#include "postgres.h"

typedef enum SftServerFileAccess
{
	SFT_SERVER_FILES_READ,		/* pg_read_server_files */
	SFT_SERVER_FILES_WRITE		/* pg_write_server_files */
} SftServerFileAccess;

/*
 * ERROR unless the current role has the privileges of the built-in role for
 * access.  action completes "permission denied to ..." ("import models from
 * server files"); hint, when not NULL, says what to do instead.
 */
void		SftRequireServerFiles(SftServerFileAccess access, const char *action,
								  const char *hint);

/*
 * A directory the caller named, canonicalized: absolute, short enough for
 * file names under it, existing (created with its parents first when create)
 * and a directory.  ERROR otherwise.
 */
char	   *SftServerDirectory(const char *dir, bool create);

/* A regular file exists at path. */
bool		SftServerFileExists(const char *path);

/* The whole file as palloc'd, NUL-terminated text; ERROR when unreadable or not UTF-8. */
char	   *SftReadServerTextFile(const char *path, size_t *len);

/*
 * Write data to path atomically: into a temporary file beside it, renamed
 * over path only once complete, so a failure leaves no partial file.
 */
void		SftWriteServerFile(const char *path, const char *data, size_t len);

#endif							/* SFT_SERVER_FILES_H */
