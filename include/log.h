/* log.h: daemon messages (OpenBSD style) and the status log (logfmt lines). */
#ifndef KAPROBE_LOG_H
#define KAPROBE_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* Starts logging to standard error at level (enum config_log_level). */
void log_init(int level);

/* Opens the status log ("-" = standard output), appending. Returns 0 or -1 (errno set). */
int log_open_status(const char *path);

/* Closes the status log. */
void log_close(void);

/* Current level, and changing it. */
int log_level(void);
void log_set_level(int level);

/* Warning with ": strerror(errno)" appended; goes to stderr and the status log. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Warning without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Error (level=error): stderr and the status log. */
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational message: stderr. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Debug message (only at debug level): stderr. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fatal error with errno, then exit(1). Start-up only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Fatal error without errno, then exit(1). Start-up only. */
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A status line under construction: "ts=... event=..." then key=value pairs. */
struct log_line {
	size_t len;
	char buf[1024];
};

/* Starts a line with ts= (UTC wall clock now, ms) and event=. */
void log_line_begin(struct log_line *l, const char *event);
/* Appends key=value, quoting the value when it holds spaces, quotes or '='. */
void log_line_str(struct log_line *l, const char *key, const char *value);
/* Appends key=integer. */
void log_line_int(struct log_line *l, const char *key, long long value);
/* Appends key=value with `decimals` digits after the point. */
void log_line_fixed(struct log_line *l, const char *key, double value, int decimals);
/* Ends the line and writes it to the status log in one write (flushed). */
void log_line_emit(struct log_line *l);

#endif
