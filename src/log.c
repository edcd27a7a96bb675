/* log.c: daemon messages to standard error (OpenBSD log.c style) and the status log.
 *
 * Status lines are logfmt, built in a fixed buffer and written with one write(2)
 * on an O_APPEND descriptor: each line lands whole, flushed at once. Warnings and
 * errors also go to the status log as "level=... msg=..." lines. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static int log_lvl = CONFIG_LOG_INFO;
static int status_fd = -1;
static int status_is_stdout;

void log_init(int level)
{
	log_lvl = level;
}

int log_level(void)
{
	return log_lvl;
}

void log_set_level(int level)
{
	log_lvl = level;
}

int log_open_status(const char *path)
{
	int fd;

	if (strcmp(path, "-") == 0) {
		log_close();
		status_fd = STDOUT_FILENO;
		status_is_stdout = 1;
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	log_close();
	status_fd = fd;
	status_is_stdout = 0;
	return 0;
}

void log_close(void)
{
	if (status_fd >= 0 && !status_is_stdout)
		close(status_fd);
	status_fd = -1;
}

/* Writes all of buf, retrying short writes and EINTR. */
static void write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static void format_ts(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void line_append(struct log_line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - 2 - l->len; /* keep space for "\n\0" */

	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->buf[l->len] = '\0';
}

void log_line_begin(struct log_line *l, const char *event)
{
	char ts[64];

	l->len = 0;
	l->buf[0] = '\0';
	format_ts(ts, sizeof(ts));
	log_line_str(l, "ts", ts);
	if (event)
		log_line_str(l, "event", event);
}

static int needs_quotes(const char *v)
{
	if (*v == '\0')
		return 1;
	for (; *v; v++)
		if (*v == ' ' || *v == '"' || *v == '=' || *v == '\\' || (unsigned char)*v < 0x20)
			return 1;
	return 0;
}

static void append_quoted(struct log_line *l, const char *v)
{
	char esc[2] = {'\\', 0};

	line_append(l, "\"", 1);
	for (; *v; v++) {
		if (*v == '"' || *v == '\\') {
			esc[1] = *v;
			line_append(l, esc, 2);
		} else if ((unsigned char)*v < 0x20) {
			line_append(l, " ", 1); /* no control characters in a log line */
		} else {
			line_append(l, v, 1);
		}
	}
	line_append(l, "\"", 1);
}

void log_line_str(struct log_line *l, const char *key, const char *value)
{
	if (l->len > 0)
		line_append(l, " ", 1);
	line_append(l, key, strlen(key));
	line_append(l, "=", 1);
	if (needs_quotes(value))
		append_quoted(l, value);
	else
		line_append(l, value, strlen(value));
}

void log_line_int(struct log_line *l, const char *key, long long value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", value);
	log_line_str(l, key, buf);
}

void log_line_fixed(struct log_line *l, const char *key, double value, int decimals)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.*f", decimals, value);
	log_line_str(l, key, buf);
}

void log_line_emit(struct log_line *l)
{
	l->buf[l->len++] = '\n';
	l->buf[l->len] = '\0';
	if (status_fd >= 0)
		write_all(status_fd, l->buf, l->len);
}

/* A daemon message: "ts=... level=L msg=..." to stderr, and to the status log if asked. */
static void vmsg(const char *level, int to_status, int err, const char *fmt, va_list ap)
{
	struct log_line l;
	char msg[768];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (err) {
		n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(err));
	}
	log_line_begin(&l, NULL);
	log_line_str(&l, "level", level);
	line_append(&l, " msg=", 5);
	append_quoted(&l, msg); /* always quoted: level=error msg="..." */
	l.buf[l.len++] = '\n';
	l.buf[l.len] = '\0';
	if (!(to_status && status_is_stdout))
		write_all(STDERR_FILENO, l.buf, l.len);
	if (to_status && status_fd >= 0)
		write_all(status_fd, l.buf, l.len);
}

#define LOG_BODY(level, to_status, err)                                                            \
	do {                                                                                       \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vmsg(level, to_status, err, fmt, ap);                                              \
		va_end(ap);                                                                        \
	} while (0)

void log_warn(const char *fmt, ...)
{
	int err = errno;

	if (log_lvl >= CONFIG_LOG_WARNING)
		LOG_BODY("warning", 1, err);
}

void log_warnx(const char *fmt, ...)
{
	if (log_lvl >= CONFIG_LOG_WARNING)
		LOG_BODY("warning", 1, 0);
}

void log_errorx(const char *fmt, ...)
{
	LOG_BODY("error", 1, 0);
}

void log_info(const char *fmt, ...)
{
	if (log_lvl >= CONFIG_LOG_INFO)
		LOG_BODY("info", 0, 0);
}

void log_debug(const char *fmt, ...)
{
	if (log_lvl >= CONFIG_LOG_DEBUG)
		LOG_BODY("debug", 0, 0);
}

void fatal(const char *fmt, ...)
{
	int err = errno;

	LOG_BODY("error", 1, err);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	LOG_BODY("error", 1, 0);
	exit(1);
}
