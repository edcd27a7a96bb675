/* atomicfile.c: write-temp-then-rename (see atomicfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"

/* "DIR/.BASE.XXXXXX" for path "DIR/BASE" (or ".BASE.XXXXXX" when path has no '/'). */
static int temp_name(char *buf, size_t len, const char *path)
{
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path + 1) : 0;
	int n = snprintf(buf, len, "%.*s.%s.XXXXXX", dirlen, path, path + dirlen);

	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

FILE *atomicfile_open(struct atomicfile *a, const char *path, mode_t mode)
{
	int fd, err;

	a->f = NULL;
	a->path = path;
	a->synced = 0;
	if (temp_name(a->tmp, sizeof(a->tmp), path) < 0)
		return NULL;
	fd = mkostemp(a->tmp, O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fchmod(fd, mode) < 0 || !(a->f = fdopen(fd, "w"))) {
		err = errno;
		close(fd);
		unlink(a->tmp);
		errno = err;
		return NULL;
	}
	return a->f;
}

int atomicfile_writeback(struct atomicfile *a)
{
	off_t pos;

	if (fflush(a->f) != 0)
		return -1;
	pos = ftello(a->f);
	if (pos < 0 || pos - a->synced < ATOMICFILE_WRITEBACK)
		return 0;
	/* Starts writeback without waiting for it (an error shows again at the fsync). */
	(void)sync_file_range(fileno(a->f), a->synced, pos - a->synced, SYNC_FILE_RANGE_WRITE);
	a->synced = pos;
	return 0;
}

int atomicfile_commit(struct atomicfile *a)
{
	int err = 0;

	errno = 0;
	if (fflush(a->f) != 0 || ferror(a->f))
		err = errno ? errno : EIO;
	else if (fsync(fileno(a->f)) < 0)
		err = errno;
	if (fclose(a->f) != 0 && !err)
		err = errno;
	a->f = NULL;
	if (!err && rename(a->tmp, a->path) < 0)
		err = errno;
	if (err) {
		unlink(a->tmp);
		errno = err;
		return -1;
	}
	return 0;
}

void atomicfile_abort(struct atomicfile *a)
{
	if (a->f)
		fclose(a->f);
	a->f = NULL;
	unlink(a->tmp);
}
