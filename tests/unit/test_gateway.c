/* test_gateway.c: unit tests of gateway.c (forwarded segments, the fields of a line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "codec.h"
#include "gateway.h"

static void test_copy(void **state)
{
	(void)state;
	assert_int_equal(gateway_copy(CODEC_PKT_OUTGOING, false, false), GATEWAY_LEFT);
	assert_int_equal(gateway_copy(CODEC_PKT_HOST, false, false), GATEWAY_ARRIVED);
	/* direction unknown: neither */
	assert_int_equal(gateway_copy(CODEC_PKT_UNKNOWN, false, false), GATEWAY_NONE);
	/* this host's own connections */
	assert_int_equal(gateway_copy(CODEC_PKT_OUTGOING, true, false), GATEWAY_NONE);
	assert_int_equal(gateway_copy(CODEC_PKT_HOST, false, true), GATEWAY_NONE);
	assert_int_equal(gateway_copy(CODEC_PKT_HOST, true, true), GATEWAY_NONE);
}

static struct rule gw_rule(const char *client, const char *server)
{
	struct rule r;

	memset(&r, 0, sizeof(r));
	strcpy(r.name, "gw");
	r.mode = RULE_MODE_GATEWAY;
	assert_int_equal(rule_pattern_parse(client, &r.client, NULL), 0);
	assert_int_equal(rule_pattern_parse(server, &r.server, NULL), 0);
	return r;
}

static struct addr_tuple key(int fam, const char *l, uint16_t lp, const char *rm, uint16_t rp)
{
	uint8_t a[16], b[16];
	struct addr_tuple t;

	assert_int_equal(inet_pton(fam, l, a), 1);
	assert_int_equal(inet_pton(fam, rm, b), 1);
	addr_tuple_make(&t, fam, a, lp, b, rp);
	return t;
}

static void expect_line(const struct rule *r, const struct addr_tuple *k, const char *want)
{
	struct log_line l;
	char out[LOG_LINE_OUT];

	log_line_reset(&l);
	gateway_line_fields(&l, r, k);
	log_line_render(&l, LOG_LINE_LOGFMT, out, sizeof(out));
	assert_string_equal(out, want);
}

static void test_line_fields(void **state)
{
	struct rule r = gw_rule("192.0.2.0/24", "*:5432");
	struct addr_tuple to_srv = key(AF_INET, "192.0.2.1", 40000, "198.51.100.2", 5432);
	struct addr_tuple to_cli = key(AF_INET, "198.51.100.2", 5432, "192.0.2.1", 40000);
	struct rule r6 = gw_rule("*", "*:443");
	struct addr_tuple k6 = key(AF_INET6, "2001:db8:2::2", 443, "2001:db8:1::1", 50000);

	(void)state;
	expect_line(&r, &to_srv,
	            "rule=gw client=192.0.2.1:40000 server=198.51.100.2:5432 side=server\n");
	expect_line(&r, &to_cli,
	            "rule=gw client=192.0.2.1:40000 server=198.51.100.2:5432 side=client\n");
	assert_string_equal(gateway_side(&r, &to_srv), "server");
	assert_string_equal(gateway_side(&r, &to_cli), "client");
	expect_line(
	    &r6, &k6,
	    "rule=gw client=[2001:db8:1::1]:50000 server=[2001:db8:2::2]:443 side=client\n");
}

static void test_outlived(void **state)
{
	struct rule rules[3];
	size_t i = 0;

	(void)state;
	rules[0] = gw_rule("*", "*:1");
	rules[0].params.idle = 3600;
	rules[1] = gw_rule("*", "*:2");
	rules[1].params.idle = 600;
	rules[2] = gw_rule("*", "*:3");
	rules[2].mode = RULE_MODE_LOCAL; /* a local rule: not the router's conntrack's business */
	rules[2].params.idle = 7200;
	assert_ptr_equal(gateway_outlived(rules, 3, &i, 3600), &rules[0]);
	assert_null(gateway_outlived(rules, 3, &i, 3600));
	i = 0;
	assert_ptr_equal(gateway_outlived(rules, 3, &i, 600), &rules[0]);
	assert_ptr_equal(gateway_outlived(rules, 3, &i, 600), &rules[1]);
	assert_null(gateway_outlived(rules, 3, &i, 600));
	i = 0;
	assert_null(gateway_outlived(rules, 3, &i, 432000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy),
	    cmocka_unit_test(test_line_fields),
	    cmocka_unit_test(test_outlived),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
