/* test_log.c: status lines: logfmt quoting, fields, one whole line per event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static void test_line_fields_and_quoting(void **state)
{
	struct log_line l;
	const char *after_ts;

	(void)state;
	log_line_begin(&l, "dead");
	assert_memory_equal(l.buf, "ts=", 3);
	assert_int_equal(l.buf[26], 'Z'); /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
	after_ts = l.buf + 27;
	log_line_str(&l, "rule", "pg");
	log_line_str(&l, "msg", "two words");
	log_line_str(&l, "q", "a\"b");
	log_line_str(&l, "e", "");
	log_line_int(&l, "probes", 3);
	log_line_fixed(&l, "idle", 2.5, 3);
	assert_string_equal(after_ts, " event=dead rule=pg msg=\"two words\" q=\"a\\\"b\" e=\"\" "
	                              "probes=3 idle=2.500");
}

static void test_long_line_is_cut_not_overflowed(void **state)
{
	struct log_line l;
	char big[4000];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_line_begin(&l, "track");
	log_line_str(&l, "k", big);
	assert_true(l.len <= sizeof(l.buf) - 2);
}

static void test_emit_appends_whole_lines(void **state)
{
	char path[] = "/tmp/kaprobe-test-log-XXXXXX", buf[4096];
	struct log_line l;
	FILE *f;
	size_t n;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_open_status(path), 0);
	log_line_begin(&l, "track");
	log_line_emit(&l);
	log_line_begin(&l, "close");
	log_line_str(&l, "reason", "fin");
	log_line_emit(&l);
	log_errorx("bad %s", "thing");
	log_close();
	f = fopen(path, "r");
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	unlink(path);
	buf[n] = '\0';
	assert_non_null(strstr(buf, " event=track\n"));
	assert_non_null(strstr(buf, " event=close reason=fin\n"));
	assert_non_null(strstr(buf, " level=error msg=\"bad thing\"\n"));
	assert_int_equal(buf[n - 1], '\n');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_line_fields_and_quoting),
	    cmocka_unit_test(test_long_line_is_cut_not_overflowed),
	    cmocka_unit_test(test_emit_appends_whole_lines),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
