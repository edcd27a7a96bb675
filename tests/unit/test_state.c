/* test_state.c: the state file's JSON from fixtures of engine views. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "addr.h"
#include "state.h"

/* Renders the views with begin/conn/end into a string (caller frees). */
static char *render(const struct engine_view *v, size_t n)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	state_render_begin(f, 4242, "2026-11-23T12:00:00.123Z");
	for (i = 0; i < n; i++)
		state_render_conn(f, &v[i], i);
	state_render_end(f);
	fclose(f);
	return buf;
}

static void tuple4(struct addr_tuple *k)
{
	const uint8_t l[4] = {192, 0, 2, 1}, r[4] = {198, 51, 100, 7};

	addr_tuple_make(k, AF_INET, l, 5432, r, 40000);
}

static void test_empty_document(void **state)
{
	char *s = render(NULL, 0);

	(void)state;
	assert_string_equal(s, "{\"version\":1,\"pid\":4242,\"written\":"
	                       "\"2026-11-23T12:00:00.123Z\",\"connections\":[\n]}\n");
	free(s);
}

static void test_probing_connection_without_rtt_or_verdict(void **state)
{
	struct engine_view v = {0};
	struct addr_tuple k;
	char *s;

	(void)state;
	tuple4(&k);
	v.key = &k;
	v.rule = "pg";
	v.state = FSM_PROBING;
	v.idle = 31.25;
	v.probes_out = 2;
	v.rtt = -1;
	v.verdict_age = -1;
	s = render(&v, 1);
	assert_non_null(strstr(s, "[\n{\"rule\":\"pg\",\"local\":\"192.0.2.1:5432\",\"remote\":"
	                          "\"198.51.100.7:40000\",\"state\":\"probing\",\"idle\":31.250,"
	                          "\"probes_out\":2,\"rtt_ms\":null,\"last_verdict\":null,"
	                          "\"verdict_age\":null,\"stall\":null}\n]}\n"));
	free(s);
	v.side = "server"; /* a gateway rule's record */
	s = render(&v, 1);
	assert_non_null(strstr(s, "\"remote\":\"198.51.100.7:40000\",\"side\":\"server\","
	                          "\"state\":\"probing\""));
	free(s);
}

static void test_dead_v6_with_rtt_and_two_connections(void **state)
{
	const uint8_t l[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	const uint8_t r[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
	struct engine_view v[2] = {{0}, {0}};
	struct addr_tuple k4, k6;
	char *s;

	(void)state;
	tuple4(&k4);
	addr_tuple_make(&k6, AF_INET6, l, 443, r, 50000);
	v[0].key = &k4;
	v[0].rule = "a";
	v[0].rtt = -1;
	v[0].verdict_age = -1;
	v[1].key = &k6;
	v[1].rule = "web";
	v[1].state = FSM_DEAD;
	v[1].idle = -0.001; /* a capture stamp slightly ahead of the clock: shown as 0 */
	v[1].probes_out = 3;
	v[1].rtt = 0.000123;
	v[1].verdict = FSM_EV_DEAD;
	v[1].verdict_age = 1.5;
	v[1].stall = "retransmit";
	s = render(v, 2);
	assert_non_null(strstr(s, "\"state\":\"watch\",\"idle\":0.000"));
	assert_non_null(strstr(s, "},\n{\"rule\":\"web\",\"local\":\"[2001:db8::1]:443\","
	                          "\"remote\":\"[2001:db8::2]:50000\",\"state\":\"dead\","
	                          "\"idle\":0.000,\"probes_out\":3,\"rtt_ms\":0.123,"
	                          "\"last_verdict\":\"dead\",\"verdict_age\":1.500,"
	                          "\"stall\":\"retransmit\"}\n]}\n"));
	free(s);
}

static void test_strings_are_escaped(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	state_json_string(f, "a\"b\\c\nd\x01");
	fclose(f);
	assert_string_equal(buf, "\"a\\\"b\\\\c\\u000ad\\u0001\"");
	free(buf);
}

static void test_time_format(void **state)
{
	struct timespec ts = {1795435200, 123456789}; /* 2026-11-23T12:00:00Z */
	char buf[STATE_TIME_STRLEN];

	(void)state;
	state_format_time(&ts, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-23T12:00:00.123Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_document),
	    cmocka_unit_test(test_probing_connection_without_rtt_or_verdict),
	    cmocka_unit_test(test_dead_v6_with_rtt_and_two_connections),
	    cmocka_unit_test(test_strings_are_escaped),
	    cmocka_unit_test(test_time_format),
	};

	return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
