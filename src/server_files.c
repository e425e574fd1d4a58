/*
 * server_files.c: role checks, directory checks and whole-file reads and
 * writes for the functions that touch the server's file system (see
 * server_files.h).
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "common/file_perm.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/memutils.h"

#include "server_files.h"

void
SftRequireServerFiles(SftServerFileAccess access, const char *action, const char *hint)
{
	Oid			role = access == SFT_SERVER_FILES_READ ?
		ROLE_PG_READ_SERVER_FILES : ROLE_PG_WRITE_SERVER_FILES;
	const char *rolename = access == SFT_SERVER_FILES_READ ?
		"pg_read_server_files" : "pg_write_server_files";

	if (has_privs_of_role(GetUserId(), role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s", action),
			 errdetail("Only roles with privileges of the \"%s\" role may %s.", rolename, action),
			 hint ? errhint("%s", hint) : 0));
}

char *
SftServerDirectory(const char *dir, bool create)
{
	char	   *path = pstrdup(dir);
	struct stat st;

	canonicalize_path(path);
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("directory must be an absolute path: \"%s\"", dir)));
	/* room for the longest file name written or read under it */
	if (strlen(path) + 64 >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("directory path is too long: \"%s\"", dir)));
	if (create && pg_mkdir_p(pstrdup(path), pg_dir_create_mode) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", path)));
	if (stat(path, &st) != 0)
	{
		if (errno == ENOENT)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("directory \"%s\" does not exist", path)));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access directory \"%s\": %m", path)));
	}
	if (!S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a directory", path)));
	return path;
}

bool
SftServerFileExists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *
SftReadServerTextFile(const char *path, size_t *len)
{
	struct stat st;
	FILE	   *f;
	char	   *data;
	size_t		got;

	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if ((Size) st.st_size >= MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large (%lld bytes)", path, (long long) st.st_size)));
	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));
	data = palloc((Size) st.st_size + 1);
	got = fread(data, 1, (size_t) st.st_size, f);
	if (ferror(f))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	FreeFile(f);
	data[got] = '\0';
	if (!pg_verify_mbstr(PG_UTF8, data, (int) got, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("file \"%s\" is not valid UTF-8 text", path)));
	*len = got;
	return data;
}

void
SftWriteServerFile(const char *path, const char *data, size_t len)
{
	char	   *tmp = psprintf("%s.tmp.%d", path, MyProcPid);
	FILE	   *f = AllocateFile(tmp, PG_BINARY_W);
	bool		ok;

	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for writing: %m", tmp)));
	ok = fwrite(data, 1, len, f) == len;
	if (FreeFile(f) != 0)
		ok = false;
	if (!ok || rename(tmp, path) != 0)
	{
		int			save_errno = errno;

		unlink(tmp);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", path)));
	}
}
