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
	off_t synced;                   /* bytes whose writeback was started */
};

/* Bytes written before atomicfile_writeback() starts their writeback. */
#define ATOMICFILE_WRITEBACK (1 << 20)

/* Creates the temporary file for path with the given mode. Returns the stream to write,
 * or NULL with errno set. */
FILE *atomicfile_open(struct atomicfile *a, const char *path, mode_t mode);

/* For a file written in steps: flushes the stream and, every ATOMICFILE_WRITEBACK bytes,
 * starts the kernel's writeback of what was written (sync_file_range, not waiting), so
 * the final fsync has little left to wait for. Returns 0, or -1 when the flush failed
 * (the error shows again at the commit). */
int atomicfile_writeback(struct atomicfile *a);

/* Flushes, fsyncs and renames the temporary file over the target. Returns 0, or -1 with
 * errno set (then the temporary file is removed and the target left as it was). */
int atomicfile_commit(struct atomicfile *a);

/* Drops the temporary file without touching the target. */
void atomicfile_abort(struct atomicfile *a);

#endif
