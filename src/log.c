/* log.c: daemon messages to standard error (OpenBSD log.c style) and the status outputs.
 *
 * Status lines (logline.c renders them) go to any combination of: the status file (one
 * write(2) per whole line on an O_APPEND descriptor, so a line lands whole even while the
 * file is being rotated), syslog (facility daemon) and journald (structured KAPROBE_*
 * fields). Warnings and errors also go to the status outputs as "level=... msg=..." lines.
 * Standard error always gets logfmt; the status outputs get log_format.
 *
 * Rotation: the new file is opened first and then dup3()'d onto the old descriptor's
 * number, so there is no moment without a descriptor; if it cannot be opened (the loop
 * runs unprivileged), the old file is kept. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "config.h"
#include "log.h"

static struct {
	int level;
	int format;          /* enum log_line_format */
	int fd;              /* status file, or -1 */
	bool is_stdout;      /* fd is standard output ("-") */
	bool syslog;         /* openlog() done */
	bool journal;        /* status lines to journald */
	bool stderr_journal; /* standard error is already a journal stream (systemd) */
	bool journal_failed; /* the last journal send failed (warned once) */
	char path[CONFIG_PATH_MAX];
	double (*clock)(void *arg); /* wall-clock s for ts=; NULL: CLOCK_REALTIME */
	void *clock_arg;
} lg = {CONFIG_LOG_INFO, LOG_LINE_LOGFMT, -1, false, false, false, false, false, "", NULL, NULL};

void log_init(int level)
{
	lg.level = level;
}

int log_level(void)
{
	return lg.level;
}

void log_set_level(int level)
{
	lg.level = level;
}

/* ---------------------------------------------------------------------------------- */
/* Status file */

/* Is the object open on fd one we may append to: a regular file with no other name (a
 * hard link to another file would have more), or a character device (/dev/null)? */
static bool status_file_ok(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return false;
	return (S_ISREG(st.st_mode) && st.st_nlink == 1) || S_ISCHR(st.st_mode);
}

/* Opens the status file for appending. kaprobed may run this as root, in a directory the
 * run user owns (/var/log/kaprobe): a symlink there (O_NOFOLLOW: ELOOP), a FIFO (no hang:
 * O_NONBLOCK, then refused), or a hard link to some other file (refused) must not make
 * root append to, or create, a file elsewhere. -1 with errno set on failure. */
static int open_status_file(const char *path)
{
	int fd = open(
	    path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK,
	    0640);

	if (fd < 0)
		return -1;
	if (!status_file_ok(fd)) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	if (fcntl(fd, F_SETFL, O_APPEND) < 0) { /* O_NONBLOCK off again */
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* Makes fd the status file: onto the old descriptor's number when there is one. */
static void swap_in(int fd)
{
	if (lg.fd >= 0 && !lg.is_stdout && lg.fd != fd) {
		if (dup3(fd, lg.fd, O_CLOEXEC) >= 0) {
			close(fd);
			return;
		}
		close(lg.fd);
	}
	lg.fd = fd;
	lg.is_stdout = false;
}

static void close_status(void)
{
	if (lg.fd >= 0 && !lg.is_stdout)
		close(lg.fd);
	lg.fd = -1;
	lg.is_stdout = false;
	lg.path[0] = '\0';
}

int log_open_status(const char *path)
{
	int fd;

	if (path[0] == '\0') {
		close_status();
		return 0;
	}
	if (strcmp(path, "-") == 0) {
		close_status();
		lg.fd = STDOUT_FILENO;
		lg.is_stdout = true;
		return 0;
	}
	fd = open_status_file(path);
	if (fd < 0)
		return -1;
	swap_in(fd);
	snprintf(lg.path, sizeof(lg.path), "%s", path);
	return 0;
}

int log_reopen(void)
{
	int fd;

	if (lg.fd < 0 || lg.is_stdout || lg.path[0] == '\0')
		return 0;
	fd = open_status_file(lg.path);
	if (fd < 0) {
		log_warn("reopening status log %s (still writing to the old file)", lg.path);
		return -1;
	}
	swap_in(fd);
	log_info("status log %s reopened", lg.path);
	return 0;
}

int log_status_fd(void)
{
	return lg.is_stdout ? -1 : lg.fd;
}

/* ---------------------------------------------------------------------------------- */
/* Configuration */

/* systemd sets JOURNAL_STREAM=DEV:INODE when standard error is connected to journald. */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static void configure_syslog(bool on)
{
	if (on && !lg.syslog)
		openlog("kaprobed", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!on && lg.syslog)
		closelog();
	lg.syslog = on;
}

int log_configure(const struct config *cfg)
{
	int rc = 0, err = 0;

	lg.format = cfg->log_format == CONFIG_FMT_JSON ? LOG_LINE_JSON : LOG_LINE_LOGFMT;
	configure_syslog(cfg->syslog);
	lg.journal = cfg->journal;
	lg.stderr_journal = lg.journal && stderr_is_journal();
	if (strcmp(cfg->log_file, lg.path) == 0 && lg.fd >= 0 && !lg.is_stdout)
		rc = log_reopen();
	else if (log_open_status(cfg->log_file) < 0) {
		err = errno;
		rc = -1;
	}
	errno = err;
	return rc;
}

void log_close(void)
{
	close_status();
	configure_syslog(false);
	lg.journal = false;
}

/* ---------------------------------------------------------------------------------- */
/* Writing lines */

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

void log_set_clock(double (*fn)(void *arg), void *arg)
{
	lg.clock = fn;
	lg.clock_arg = arg;
}

/* The time for ts=: the clock given, or CLOCK_REALTIME. */
static void ts_now(struct timespec *ts)
{
	double t, s;

	if (!lg.clock) {
		clock_gettime(CLOCK_REALTIME, ts);
		return;
	}
	t = lg.clock(lg.clock_arg);
	s = floor(t);
	ts->tv_sec = (time_t)s;
	ts->tv_nsec = (long)((t - s) * 1e9 + 1000.0); /* + 1 us: 0.123 is not 0.122999 */
	if (ts->tv_nsec > 999999999)
		ts->tv_nsec = 999999999;
}

static void format_ts(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	ts_now(&ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void log_line_begin(struct log_line *l, const char *event)
{
	char ts[64];

	log_line_reset(l);
	format_ts(ts, sizeof(ts));
	log_line_str(l, "ts", ts);
	if (event)
		log_line_str(l, "event", event);
}

/* One structured entry to journald; a failure is reported on stderr once per streak. */
static void journal_send(const struct log_line *l, const char *msg, int prio)
{
	static char buf[LOG_LINE_JOURNAL_BUF];
	struct iovec iov[LOG_LINE_JOURNAL_IOV];
	char err[160];
	size_t n = log_line_journal(l, msg, prio, buf, sizeof(buf), iov, LOG_LINE_JOURNAL_IOV);
	int rc = sd_journal_sendv(iov, (int)n);

	if (rc >= 0) {
		lg.journal_failed = false;
		return;
	}
	if (lg.journal_failed)
		return;
	lg.journal_failed = true;
	snprintf(err, sizeof(err), "level=warning msg=\"journal: cannot send: %s\"\n",
	         strerror(-rc));
	write_all(STDERR_FILENO, err, strlen(err));
}

/* Sends a line to the status outputs (not standard error). */
static void to_outputs(const struct log_line *l)
{
	static char out[LOG_LINE_OUT];
	size_t n;
	int prio;

	if (lg.fd < 0 && !lg.syslog && !lg.journal)
		return;
	n = log_line_render(l, lg.format, out, sizeof(out));
	if (lg.fd >= 0)
		write_all(lg.fd, out, n);
	if (n > 0)
		out[n - 1] = '\0'; /* syslog and journald take the line without "\n" */
	prio = log_line_priority(l);
	if (lg.syslog)
		syslog(prio, "%s", out);
	if (lg.journal)
		journal_send(l, out, prio);
}

void log_line_emit(struct log_line *l)
{
	to_outputs(l);
}

/* A daemon message: "ts=... level=L msg=..." to stderr, and to the status outputs if asked. */
static void vmsg(const char *level, int to_status, int err, const char *fmt, va_list ap)
{
	static char out[LOG_LINE_OUT];
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
	log_line_quoted(&l, "msg", msg); /* always quoted: level=error msg="..." */
	if (!(to_status && (lg.is_stdout || lg.stderr_journal))) {
		n = log_line_render(&l, LOG_LINE_LOGFMT, out, sizeof(out));
		write_all(STDERR_FILENO, out, n);
	}
	if (to_status)
		to_outputs(&l);
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

	if (lg.level >= CONFIG_LOG_WARNING)
		LOG_BODY("warning", 1, err);
}

void log_warnx(const char *fmt, ...)
{
	if (lg.level >= CONFIG_LOG_WARNING)
		LOG_BODY("warning", 1, 0);
}

void log_errorx(const char *fmt, ...)
{
	LOG_BODY("error", 1, 0);
}

void log_info(const char *fmt, ...)
{
	if (lg.level >= CONFIG_LOG_INFO)
		LOG_BODY("info", 0, 0);
}

void log_debug(const char *fmt, ...)
{
	if (lg.level >= CONFIG_LOG_DEBUG)
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
