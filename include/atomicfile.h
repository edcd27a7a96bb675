/* atomicfile.h: a file replaced atomically. Written to a temporary file in the same
 * directory, flushed, fsync'ed, then renamed over the target: a reader sees the old
 * file or the new one, never a part. */
#ifndef KAPROBE_ATOMICFILE_H
#define KAPROBE_ATOMICFILE_H

#include <stdio.h>
#include <sys/types.h>

#include "config.h"

struct atomicfile {
	FILE *f;                        /* write the new contents here */
	const char *path;               /* the target (the caller's string) */
	char tmp[CONFIG_PATH_MAX + 16]; /* the temporary file */
};

/* Creates the temporary file for path with the given mode. Returns the stream to write,
 * or NULL with errno set. */
FILE *atomicfile_open(struct atomicfile *a, const char *path, mode_t mode);

/* Flushes, fsyncs and renames the temporary file over the target. Returns 0, or -1 with
 * errno set (then the temporary file is removed and the target left as it was). */
int atomicfile_commit(struct atomicfile *a);

/* Drops the temporary file without touching the target. */
void atomicfile_abort(struct atomicfile *a);

#endif
