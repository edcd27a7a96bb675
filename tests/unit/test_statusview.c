/* test_statusview.c: `kaprobed -s`: the state file reader (jansson for the values) with
 * good, truncated and garbage input, and the table. The wording of syntax errors inside a
 * value is jansson's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "state.h"
#include "statusview.h"

static const char good[] =
    "{\"version\":1,\"pid\":4242,\"written\":\"2026-11-23T12:00:00.123Z\",\"connections\":[\n"
    "{\"rule\":\"pg\",\"local\":\"192.0.2.1:5432\",\"remote\":\"198.51.100.7:40000\","
    "\"state\":\"probing\",\"idle\":31.250,\"probes_out\":2,\"rtt_ms\":null,"
    "\"last_verdict\":null,\"verdict_age\":null},\n"
    "{\"rule\":\"web\",\"local\":\"[2001:db8::1]:443\",\"remote\":\"[2001:db8::2]:50000\","
    "\"state\":\"dead\",\"idle\":5.001,\"probes_out\":3,\"rtt_ms\":0.123,"
    "\"last_verdict\":\"dead\",\"verdict_age\":1.500,\"future_field\":[1,{\"x\":true}]},\n"
    "{\"rule\":\"db\",\"local\":\"192.0.2.1:5433\",\"remote\":\"198.51.100.8:40001\","
    "\"state\":\"dead\",\"idle\":3.5,\"probes_out\":0,\"rtt_ms\":null,"
    "\"last_verdict\":\"dead\",\"verdict_age\":0.5,\"stall\":\"retransmit\","
    "\"side\":\"server\"}\n]}\n";

struct rows {
	size_t n;
	struct statusview_row r[4];
};

static void keep(const struct statusview_row *row, void *arg)
{
	struct rows *rs = arg;

	if (rs->n < 4)
		rs->r[rs->n] = *row;
	rs->n++;
}

static int parse(const char *text, size_t len, struct statusview_header *h, struct rows *rs,
                 char *err, size_t errlen)
{
	memset(rs, 0, sizeof(*rs));
	return statusview_parse(text, len, h, keep, rs, err, errlen);
}

static void test_good_document(void **state)
{
	struct statusview_header h;
	struct rows rs;
	char err[256];

	(void)state;
	assert_int_equal(parse(good, strlen(good), &h, &rs, err, sizeof(err)), 0);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.pid, 4242);
	assert_string_equal(h.written, "2026-11-23T12:00:00.123Z");
	assert_int_equal(h.nconn, 3);
	assert_int_equal(rs.n, 3);
	assert_string_equal(rs.r[0].rule, "pg");
	assert_string_equal(rs.r[0].state, "probing");
	assert_string_equal(rs.r[0].remote, "198.51.100.7:40000");
	assert_true(rs.r[0].has_idle);
	assert_true(rs.r[0].idle == 31.25);
	assert_int_equal(rs.r[0].probes, 2);
	assert_false(rs.r[0].has_rtt);
	assert_string_equal(rs.r[0].verdict, "");
	assert_string_equal(rs.r[1].local, "[2001:db8::1]:443");
	assert_true(rs.r[1].has_rtt && rs.r[1].rtt_ms == 0.123);
	assert_string_equal(rs.r[1].verdict, "dead");
	assert_true(rs.r[1].has_verdict_age && rs.r[1].verdict_age == 1.5);
	assert_string_equal(rs.r[1].stall, "");
	assert_string_equal(rs.r[2].stall, "retransmit");
	assert_string_equal(rs.r[2].side, "server");
}

/* Every proper prefix of a good file (a torn write) is refused, never read past. */
static void test_every_truncation_is_an_error(void **state)
{
	struct statusview_header h;
	struct rows rs;
	size_t len = strlen(good), cut;
	char err[256], *copy;

	(void)state;
	for (cut = 0; cut + 1 < len; cut++) { /* the last byte is the optional newline */
		copy = malloc(cut ? cut : 1); /* exact size: ASan catches any over-read */
		memcpy(copy, good, cut);
		if (parse(copy, cut, &h, &rs, err, sizeof(err)) != -1)
			fail_msg("prefix of %zu bytes accepted", cut);
		assert_true(err[0] != '\0');
		assert_true(rs.n <= 3);
		free(copy);
	}
	assert_int_equal(parse(good, len - 1, &h, &rs, err, sizeof(err)), 0);
	assert_non_null(strstr((parse(good, 40, &h, &rs, err, sizeof(err)), err), "truncated"));
}

static void expect_error(const char *text, const char *msg_part)
{
	struct statusview_header h;
	struct rows rs;
	char err[256];

	if (parse(text, strlen(text), &h, &rs, err, sizeof(err)) != -1)
		fail_msg("accepted: %s", text);
	if (!strstr(err, msg_part))
		fail_msg("error for %s is \"%s\", expected it to contain \"%s\"", text, err,
		         msg_part);
}

static void test_garbage_is_an_error(void **state)
{
	(void)state;
	expect_error("", "truncated");
	expect_error("hello", "malformed");
	expect_error("\x7f"
	             "ELF\x02\x01",
	             "malformed");
	expect_error("[]", "expected '{'");
	expect_error("{\"version\":2,\"connections\":[]}", "version 2 is not 1");
	expect_error("{\"connections\":[]}", "no \"version\"");
	expect_error("{\"version\":1}", "no \"connections\"");
	expect_error("{\"version\":1,\"connections\":[]}xyz", "text after the document");
	expect_error("{\"version\":1,\"connections\":[{\"rule\":7}]}", "expected a string");
	expect_error("{\"version\":1,\"connections\":[{\"idle\":\"x\"}]}", "expected a number");
	expect_error("{\"version\":1,\"connections\":[{\"rule\":\"a\nb\"}]}", "unexpected newline");
	expect_error("{\"version\":1,\"connections\":[{\"rule\":\"a\x01"
	             "b\"}]}",
	             "control character");
	expect_error("{\"version\":1,\"connections\":[{\"rule\":\"\\q\"}]}", "invalid escape");
	expect_error("{\"version\":1,\"connections\":[{\"rule\":\"\\u12\"}]}", "invalid escape");
	expect_error("{\"version\":1,\"x\":1e,\"connections\":[]}", "invalid token");
	expect_error("{\"version\":1,\"connections\":[],}", "expected a string");
}

/* jansson's messages quote the input: its control bytes (here a C1 CSI) never reach the
 * terminal. */
static void test_error_message_is_printable(void **state)
{
	const char text[] = "{\"version\":1,\"x\":\"\xc2\x9b"
	                    "31m\\q\"}";
	struct statusview_header h;
	struct rows rs;
	char err[256];
	size_t i;

	(void)state;
	assert_int_equal(parse(text, strlen(text), &h, &rs, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "malformed: invalid escape near '\"??31m"));
	for (i = 0; err[i]; i++)
		assert_true((unsigned char)err[i] >= 0x20 && (unsigned char)err[i] < 0x7f);
}

static void test_deep_nesting_and_long_strings(void **state)
{
	struct statusview_header h;
	struct rows rs;
	char err[256], *deep, *longs;
	size_t i, n = 100000;

	(void)state;
	deep = malloc(n + 64);
	i = (size_t)sprintf(deep, "{\"version\":1,\"x\":");
	memset(deep + i, '[', n);
	deep[i + n] = '\0';
	expect_error(deep, "nested too deep");
	free(deep);
	longs = malloc(n + 128);
	i = (size_t)sprintf(longs, "{\"version\":1,\"connections\":[{\"rule\":\"");
	memset(longs + i, 'r', n);
	strcpy(longs + i + n, "\",\"state\":\"\\u0041\\u00e9\"}]}");
	assert_int_equal(parse(longs, strlen(longs), &h, &rs, err, sizeof(err)), 0);
	assert_int_equal(strlen(rs.r[0].rule), STATUSVIEW_STR - 1); /* cut, not overflowed */
	assert_string_equal(rs.r[0].state, "A?");
	memcpy(longs + i, "\xc3\xa9t\xc3\xa9\"}]}", 9); /* raw UTF-8: one '?' a character */
	assert_int_equal(parse(longs, i + 9, &h, &rs, err, sizeof(err)), 0);
	assert_string_equal(rs.r[0].rule, "?t?");
	free(longs);
}

/* What state.c writes, statusview reads back. */
static void test_round_trip_with_state_rendering(void **state)
{
	const uint8_t l[4] = {192, 0, 2, 1}, r[4] = {192, 0, 2, 2};
	struct engine_view v = {0};
	struct statusview_header h;
	struct addr_tuple k;
	struct rows rs;
	char err[256], *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	addr_tuple_make(&k, AF_INET, l, 22, r, 51000);
	v.key = &k;
	v.rule = "ssh";
	v.state = FSM_WATCH;
	v.idle = 2.5;
	v.rtt = 0.0004;
	v.verdict = FSM_EV_ALIVE;
	v.verdict_age = 0.25;
	state_render_begin(f, 99, "2026-11-23T12:00:00.000Z");
	state_render_conn(f, &v, 0);
	state_render_conn(f, &v, 1);
	state_render_end(f);
	fclose(f);
	assert_int_equal(parse(buf, len, &h, &rs, err, sizeof(err)), 0);
	assert_int_equal(h.pid, 99);
	assert_int_equal(rs.n, 2);
	assert_string_equal(rs.r[1].rule, "ssh");
	assert_string_equal(rs.r[1].local, "192.0.2.1:22");
	assert_string_equal(rs.r[1].state, "watch");
	assert_string_equal(rs.r[1].verdict, "alive");
	assert_true(rs.r[1].has_rtt && rs.r[1].rtt_ms == 0.4);
	free(buf);
}

static char *print_file(const char *content, int *rc, char **errtext)
{
	char path[] = "/tmp/kaprobe-test-sv-XXXXXX", *out = NULL, *errs = NULL;
	size_t olen = 0, elen = 0;
	int fd = mkstemp(path);
	FILE *o = open_memstream(&out, &olen), *e = open_memstream(&errs, &elen);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	*rc = statusview_print(path, o, e);
	unlink(path);
	fclose(o);
	fclose(e);
	*errtext = errs;
	return out;
}

static void test_table(void **state)
{
	char *out, *errs;
	int rc;

	(void)state;
	out = print_file(good, &rc, &errs);
	assert_int_equal(rc, 0);
	assert_string_equal(errs, "");
	assert_non_null(strstr(out, "kaprobed state written 2026-11-23T12:00:00.123Z by pid "
	                            "4242: 3 connections\n"));
	assert_non_null(strstr(out, "\nState          Rule  Local              Remote               "
	                            "Idle   Probes  RTT      Verdict\n"));
	assert_non_null(strstr(out, "\nprobing        pg    192.0.2.1:5432     198.51.100.7:40000   "
	                            "31.2s  2       -        -\n"));
	assert_non_null(strstr(out, "\ndead           web   [2001:db8::1]:443  [2001:db8::2]:50000  "
	                            "5.0s   3       0.123ms  dead (1.5s ago)\n"));
	assert_non_null(strstr(out, "dead (0.5s ago, stall retransmit)\n"));
	assert_non_null(strstr(out, "\ndead (server)  db "));
	free(out);
	free(errs);
	out = print_file("{\"version\":1,\"connections\":[{\"rule\":\"a", &rc, &errs);
	assert_int_equal(rc, 1);
	assert_string_equal(out, "");
	assert_non_null(strstr(errs, "truncated"));
	free(out);
	free(errs);
}

static void test_missing_file_and_no_state_file(void **state)
{
	char *out = NULL, *errs = NULL;
	size_t olen = 0, elen = 0;
	FILE *o = open_memstream(&out, &olen), *e = open_memstream(&errs, &elen);

	(void)state;
	assert_int_equal(statusview_print("/nonexistent/kaprobe/state.json", o, e), 1);
	assert_int_equal(statusview_print("", o, e), 1);
	fclose(o);
	fclose(e);
	assert_string_equal(out, "");
	assert_non_null(strstr(errs, "cannot read the state file /nonexistent/kaprobe/state.json:"
	                             " No such file or directory"));
	assert_non_null(strstr(errs, "state_file is none"));
	free(out);
	free(errs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_document),
	    cmocka_unit_test(test_every_truncation_is_an_error),
	    cmocka_unit_test(test_garbage_is_an_error),
	    cmocka_unit_test(test_error_message_is_printable),
	    cmocka_unit_test(test_deep_nesting_and_long_strings),
	    cmocka_unit_test(test_round_trip_with_state_rendering),
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_missing_file_and_no_state_file),
	};

	return cmocka_run_group_tests_name("statusview", tests, NULL, NULL);
}
