/* test_log.c: status lines as logfmt and JSON (escaping, long values, UTF-8), syslog
 * priorities, journald fields, whole lines in the status file, reopen after rotation. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

static char out[LOG_LINE_OUT];

/* A line with the shape the engine writes, without the clock. */
static void sample(struct log_line *l)
{
	log_line_reset(l);
	log_line_str(l, "ts", "2026-11-22T12:00:00.123Z");
	log_line_str(l, "event", "dead");
	log_line_str(l, "rule", "pg");
	log_line_str(l, "local", "10.0.0.1:5432");
	log_line_str(l, "remote", "[2001:db8::7]:51234");
	log_line_int(l, "probes", 3);
	log_line_fixed(l, "idle", 45.0123, 3);
	log_line_str(l, "reason", "no-reply");
}

static void test_begin_has_ts_and_event(void **state)
{
	struct log_line l;
	const char *ts;

	(void)state;
	log_line_begin(&l, "track");
	assert_int_equal(log_line_count(&l), 2);
	assert_string_equal(log_line_key(&l, 0), "ts");
	ts = log_line_value(&l, 0);
	assert_int_equal(strlen(ts), 24); /* YYYY-MM-DDTHH:MM:SS.mmmZ */
	assert_int_equal(ts[23], 'Z');
	assert_string_equal(log_line_get(&l, "event"), "track");
	log_line_begin(&l, NULL);
	assert_int_equal(log_line_count(&l), 1);
}

static void test_logfmt(void **state)
{
	struct log_line l;
	size_t n;

	(void)state;
	sample(&l);
	log_line_str(&l, "msg", "two words");
	log_line_str(&l, "q", "a\"b=c");
	log_line_str(&l, "e", "");
	log_line_quoted(&l, "m", "plain");
	n = log_line_render(&l, LOG_LINE_LOGFMT, out, sizeof(out));
	assert_string_equal(out,
	                    "ts=2026-11-22T12:00:00.123Z event=dead rule=pg local=10.0.0.1:5432 "
	                    "remote=[2001:db8::7]:51234 probes=3 idle=45.012 reason=no-reply "
	                    "msg=\"two words\" q=\"a\\\"b=c\" e=\"\" m=\"plain\"\n");
	assert_int_equal(n, strlen(out));
}

static void test_json(void **state)
{
	struct log_line l;

	(void)state;
	sample(&l);
	log_line_int(&l, "neg", -12);
	log_line_fixed(&l, "nan", NAN, 3);
	log_line_render(&l, LOG_LINE_JSON, out, sizeof(out));
	assert_string_equal(out,
	                    "{\"ts\":\"2026-11-22T12:00:00.123Z\",\"event\":\"dead\",\"rule\":"
	                    "\"pg\",\"local\":\"10.0.0.1:5432\",\"remote\":\"[2001:db8::7]:51234\","
	                    "\"probes\":3,\"idle\":45.012,\"reason\":\"no-reply\",\"neg\":-12,"
	                    "\"nan\":\"nan\"}\n");
}

static void test_escaping(void **state)
{
	struct log_line l;

	(void)state;
	log_line_reset(&l);
	log_line_str(&l, "v", "q\" b\\ n\n r\r t\t c\x01\x1f d\x7f");
	log_line_str(&l, "u", "caf\xc3\xa9");              /* valid UTF-8: kept */
	log_line_str(&l, "bad", "x\xff\xc3y\xed\xa0\x80"); /* not UTF-8: U+FFFD each byte */
	log_line_str(&l, "k\"ey", "1");
	log_line_render(&l, LOG_LINE_JSON, out, sizeof(out));
	assert_string_equal(out, "{\"v\":\"q\\\" b\\\\ n\\n r\\r t\\t c\\u0001\\u001f d\\u007f\","
	                         "\"u\":\"caf\xc3\xa9\",\"bad\":\"x\xef\xbf\xbd\xef\xbf\xbdy"
	                         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\",\"k\\\"ey\":\"1\"}\n");
	log_line_render(&l, LOG_LINE_LOGFMT, out, sizeof(out));
	assert_string_equal(out, "v=\"q\\\" b\\\\ n\\n r\\r t\\t c\\u0001\\u001f d\\u007f\" "
	                         "u=caf\xc3\xa9 bad=\"x\xef\xbf\xbd\xef\xbf\xbdy"
	                         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\" k\"ey=1\n");
	assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1); /* one line */
}

static void test_long_values_are_cut_whole(void **state)
{
	struct log_line l;
	char big[4000];
	size_t n;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[LOG_LINE_TEXT - 8] = '\xc3'; /* a two-byte character across the cut */
	big[LOG_LINE_TEXT - 7] = '\xa9';
	log_line_reset(&l);
	log_line_str(&l, "a", "1");
	log_line_str(&l, "k", big);
	log_line_str(&l, "after", "dropped");
	assert_true(l.used <= sizeof(l.text));
	assert_int_equal(log_line_count(&l), 2);
	n = strlen(log_line_value(&l, 1));
	assert_int_equal(n, LOG_LINE_TEXT - 8); /* "a" "1" "k" and the NULs take 7 */
	n = log_line_render(&l, LOG_LINE_JSON, out, sizeof(out));
	assert_int_equal(out[n - 1], '\n');
	assert_int_equal(out[n - 2], '}');
	assert_null(strstr(out, "\xef\xbf\xbd")); /* cut between characters, not inside one */

	/* The worst case: a full line of control characters, each escaped to six bytes. */
	memset(big, '\x01', sizeof(big) - 1);
	log_line_reset(&l);
	log_line_str(&l, "k", big);
	n = log_line_render(&l, LOG_LINE_JSON, out, sizeof(out));
	assert_memory_equal(out + n - 3, "\"}\n", 3);
	n = log_line_render(&l, LOG_LINE_LOGFMT, out, sizeof(out));
	assert_memory_equal(out + n - 2, "\"\n", 2);

	/* A small buffer cuts the line but stays inside it and ends with "\n". */
	n = log_line_render(&l, LOG_LINE_JSON, big, 64);
	assert_int_equal(n, 63);
	assert_int_equal(big[62], '\n');
	assert_int_equal(big[63], '\0');
}

static void test_many_fields_are_bounded(void **state)
{
	struct log_line l;
	int i;

	(void)state;
	log_line_reset(&l);
	for (i = 0; i < LOG_LINE_FIELDS + 10; i++)
		log_line_int(&l, "n", i);
	assert_int_equal(log_line_count(&l), LOG_LINE_FIELDS);
	assert_null(log_line_key(&l, LOG_LINE_FIELDS));
}

static void test_priority(void **state)
{
	static const struct {
		const char *key, *value;
		int prio;
	} cases[] = {
	    {"event", "dead", LOG_WARNING},    {"event", "reset", LOG_WARNING},
	    {"event", "probe", LOG_DEBUG},     {"event", "reply", LOG_DEBUG},
	    {"event", "track", LOG_INFO},      {"event", "alive", LOG_INFO},
	    {"event", "summary", LOG_INFO},    {"level", "error", LOG_ERR},
	    {"level", "warning", LOG_WARNING}, {"level", "info", LOG_INFO},
	};
	struct log_line l;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		log_line_reset(&l);
		log_line_str(&l, "ts", "x");
		log_line_str(&l, cases[i].key, cases[i].value);
		assert_int_equal(log_line_priority(&l), cases[i].prio);
	}
}

static void test_journal_fields(void **state)
{
	static char buf[LOG_LINE_JOURNAL_BUF];
	static const char *want[] = {
	    "MESSAGE=the line",
	    "PRIORITY=4",
	    "SYSLOG_IDENTIFIER=kaprobed",
	    "SYSLOG_FACILITY=3",
	    "KAPROBE_TS=2026-11-22T12:00:00.123Z",
	    "KAPROBE_EVENT=dead",
	    "KAPROBE_RULE=pg",
	    "KAPROBE_LOCAL=10.0.0.1:5432",
	    "KAPROBE_REMOTE=[2001:db8::7]:51234",
	    "KAPROBE_PROBES=3",
	    "KAPROBE_IDLE=45.012",
	    "KAPROBE_REASON=no-reply",
	    "KAPROBE_PROBES_SENT=7",
	    "KAPROBE_A_B_9=say \"hi\"\nthere",
	};
	struct iovec iov[LOG_LINE_JOURNAL_IOV];
	struct log_line l;
	char name[16];
	size_t n, i;

	(void)state;
	sample(&l);
	log_line_int(&l, "probes_sent", 7);
	log_line_str(&l, "a-b.9", "say \"hi\"\nthere"); /* values are passed raw */
	n = log_line_journal(&l, "the line", log_line_priority(&l), buf, sizeof(buf), iov,
	                     LOG_LINE_JOURNAL_IOV);
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < n; i++) {
		assert_int_equal(iov[i].iov_len, strlen(want[i]));
		assert_memory_equal(iov[i].iov_base, want[i], iov[i].iov_len);
	}
	assert_int_equal(log_line_field_name("x", name, 5), 4); /* cut to fit */
	assert_string_equal(name, "KAPR");
}

static void read_all(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
}

static void config_for(struct config *c, const char *path, int format)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->log_file, sizeof(c->log_file), "%s", path);
	c->log_format = format;
	c->log_level = CONFIG_LOG_INFO;
}

static void emit_event(const char *event, const char *reason)
{
	struct log_line l;

	log_line_begin(&l, event);
	if (reason)
		log_line_str(&l, "reason", reason);
	log_line_emit(&l);
}

static void test_emit_logfmt_and_json(void **state)
{
	static struct config c;
	char path[] = "/tmp/kaprobe-test-log-XXXXXX", buf[4096];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	config_for(&c, path, CONFIG_FMT_LOGFMT);
	assert_int_equal(log_configure(&c), 0);
	emit_event("track", NULL);
	emit_event("close", "fin");
	log_errorx("bad %s", "thing");
	c.log_format = CONFIG_FMT_JSON;
	assert_int_equal(log_configure(&c), 0);
	emit_event("close", "rst");
	log_warnx("say \"%s\"", "hi");
	log_close();
	read_all(path, buf, sizeof(buf));
	unlink(path);
	assert_non_null(strstr(buf, " event=track\n"));
	assert_non_null(strstr(buf, " event=close reason=fin\n"));
	assert_non_null(strstr(buf, " level=error msg=\"bad thing\"\n"));
	assert_non_null(strstr(buf, "\",\"event\":\"close\",\"reason\":\"rst\"}\n{\"ts\":\""));
	assert_non_null(strstr(buf, "\",\"level\":\"warning\",\"msg\":\"say \\\"hi\\\"\"}\n"));
	assert_int_equal(buf[strlen(buf) - 1], '\n');
}

static void test_reopen_after_rename(void **state)
{
	static struct config c;
	char dir[] = "/tmp/kaprobe-test-rot-XXXXXX", path[128], old[128], buf[4096];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/status.log", dir);
	snprintf(old, sizeof(old), "%s/status.log.1", dir);
	config_for(&c, path, CONFIG_FMT_LOGFMT);
	assert_int_equal(log_configure(&c), 0);
	fd = log_status_fd();
	assert_true(fd >= 0);
	emit_event("close", "one");
	assert_int_equal(rename(path, old), 0);
	emit_event("close", "two"); /* still to the renamed file */
	assert_int_equal(log_reopen(), 0);
	assert_int_equal(log_status_fd(), fd); /* the same descriptor number */
	emit_event("close", "three");
	read_all(old, buf, sizeof(buf));
	assert_non_null(strstr(buf, "reason=one\n"));
	assert_non_null(strstr(buf, "reason=two\n"));
	assert_null(strstr(buf, "reason=three"));
	read_all(path, buf, sizeof(buf));
	assert_null(strstr(buf, "reason=two"));
	assert_non_null(strstr(buf, "reason=three\n"));
	log_close();
	unlink(path);
	unlink(old);
	rmdir(dir);
}

/* The status file is never a symlink, a FIFO or a second name of another file: in a
 * directory the run user owns, those would make root write elsewhere. */
static void test_open_refuses_links(void **state)
{
	static struct config c;
	char dir[] = "/tmp/kaprobe-test-lnk-XXXXXX", target[128], path[128], buf[4096];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(target, sizeof(target), "%s/precious", dir);
	snprintf(path, sizeof(path), "%s/status.log", dir);
	fd = open(target, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(symlink(target, path), 0);
	config_for(&c, path, CONFIG_FMT_LOGFMT);
	assert_int_equal(log_configure(&c), -1);
	assert_int_equal(errno, ELOOP);
	unlink(path);
	assert_int_equal(link(target, path), 0);
	assert_int_equal(log_configure(&c), -1);
	assert_int_equal(errno, EPERM);
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(log_configure(&c), -1); /* no reader: ENXIO, never a hang */
	unlink(path);
	read_all(target, buf, sizeof(buf));
	assert_string_equal(buf, "");
	/* A plain file, and /dev/null, are fine. */
	assert_int_equal(log_configure(&c), 0);
	emit_event("close", "ok");
	snprintf(c.log_file, sizeof(c.log_file), "/dev/null");
	assert_int_equal(log_configure(&c), 0);
	log_close();
	read_all(path, buf, sizeof(buf));
	assert_non_null(strstr(buf, "reason=ok\n"));
	unlink(path);
	unlink(target);
	rmdir(dir);
}

static void test_reopen_failure_keeps_old_file(void **state)
{
	static struct config c;
	char dir[] = "/tmp/kaprobe-test-rot-XXXXXX", sub[128], moved[128], path[160], buf[4096];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a", dir);
	snprintf(moved, sizeof(moved), "%s/b", dir);
	snprintf(path, sizeof(path), "%s/status.log", sub);
	assert_int_equal(mkdir(sub, 0700), 0);
	config_for(&c, path, CONFIG_FMT_LOGFMT);
	assert_int_equal(log_configure(&c), 0);
	assert_int_equal(rename(sub, moved), 0); /* the path cannot be opened any more */
	assert_int_equal(log_reopen(), -1);
	emit_event("close", "kept");
	/* A reload naming a file that cannot be opened keeps the old one too. */
	snprintf(c.log_file, sizeof(c.log_file), "%s/nodir/x.log", dir);
	assert_int_equal(log_configure(&c), -1);
	emit_event("close", "still");
	log_close();
	snprintf(path, sizeof(path), "%s/status.log", moved);
	read_all(path, buf, sizeof(buf));
	assert_non_null(strstr(buf, "level=warning msg=\"reopening status log"));
	assert_non_null(strstr(buf, "reason=kept\n"));
	assert_non_null(strstr(buf, "reason=still\n"));
	unlink(path);
	rmdir(moved);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_begin_has_ts_and_event),
	    cmocka_unit_test(test_logfmt),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_long_values_are_cut_whole),
	    cmocka_unit_test(test_many_fields_are_bounded),
	    cmocka_unit_test(test_priority),
	    cmocka_unit_test(test_journal_fields),
	    cmocka_unit_test(test_emit_logfmt_and_json),
	    cmocka_unit_test(test_reopen_after_rename),
	    cmocka_unit_test(test_reopen_failure_keeps_old_file),
	    cmocka_unit_test(test_open_refuses_links),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
