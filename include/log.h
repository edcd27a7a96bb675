/* log.h: daemon messages (OpenBSD style) and the status lines, to the status file,
 * syslog and journald, as logfmt or JSON Lines. */
#ifndef KAPROBE_LOG_H
#define KAPROBE_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "logline.h"

struct config;

/* Starts logging to standard error at level (enum config_log_level). */
void log_init(int level);

/* Applies a configuration's outputs: status file (log_file: a path, "-" = standard
 * output, "" = none), syslog, journal and log_format. Called at start-up and on reload;
 * the level is left alone (see log_set_level). A new status file is opened before the
 * old one is let go: when it cannot be opened, the old one is kept, everything else is
 * applied, and -1 is returned (errno set). Returns 0 otherwise. */
int log_configure(const struct config *cfg);

/* Opens the status log ("-" = standard output), appending, with the current format.
 * Returns 0 or -1 (errno set; the previous status log is kept). */
int log_open_status(const char *path);

/* Reopens the status file by its path (after log rotation): the new file is opened
 * first, then takes over the old descriptor's number, so a line is never without a
 * destination. On failure logs a warning, keeps writing to the old file, returns -1. */
int log_reopen(void);

/* The status file's descriptor (e.g. to fchown it to the run user after start-up), or -1
 * when there is none or it is standard output. Stays the same number across reopens. */
int log_status_fd(void);

/* Closes the status log and the syslog connection. */
void log_close(void);

/* Current level, and changing it. */
int log_level(void);
void log_set_level(int level);

/* Warning with ": strerror(errno)" appended; goes to stderr and the status outputs. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Warning without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Error (level=error): stderr and the status outputs. */
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational message: stderr. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Debug message (only at debug level): stderr. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fatal error with errno, then exit(1). Start-up only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Fatal error without errno, then exit(1). Start-up only. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Where ts= takes the time: fn(arg), s since the epoch (replay: the packet clock, so that
 * its output is reproducible); NULL: CLOCK_REALTIME (the daemon). */
void log_set_clock(double (*fn)(void *arg), void *arg);

/* Starts a status line with ts= (UTC wall clock now, ms: log_set_clock) and event= (unless NULL).
 * Fields are then added with log_line_str/int/fixed (logline.h). */
void log_line_begin(struct log_line *l, const char *event);
/* Writes the line to every status output: the status file (one write(2) of the whole
 * line, in log_format), syslog and journald (with its priority, log_line_priority). */
void log_line_emit(struct log_line *l);

#endif
