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

/* Masquerade: client 198.51.100.2:40000 -> server 192.0.2.1:5432, seen by the server as
 * from 192.0.2.254:41000. */
static void test_nat_view_masquerade(void **state)
{
	struct addr_tuple orig = key(AF_INET, "198.51.100.2", 40000, "192.0.2.1", 5432);
	struct addr_tuple reply = key(AF_INET, "192.0.2.1", 5432, "192.0.2.254", 41000);
	struct addr_tuple to_srv = key(AF_INET, "192.0.2.254", 41000, "192.0.2.1", 5432);
	struct addr_tuple to_cli = key(AF_INET, "192.0.2.1", 5432, "198.51.100.2", 40000);
	struct addr_tuple other = key(AF_INET, "198.51.100.2", 40000, "192.0.2.1", 5432);
	struct gateway_nat n;

	(void)state;
	assert_true(gateway_nat_view(&orig, &reply, &to_srv, &n)); /* probes the server */
	assert_true(addr_tuple_equal(&n.key, &to_srv));
	assert_true(addr_tuple_equal(&n.name, &orig)); /* named as the client sees it */
	assert_true(addr_tuple_equal(&n.send, &orig)); /* sent before SNAT */
	assert_true(addr_tuple_equal(&n.partner, &to_cli));
	assert_true(addr_tuple_equal(&n.learn, &orig)); /* the SYN to the client, as it sees it */
	assert_true(gateway_nat_view(&orig, &reply, &to_cli, &n)); /* probes the client */
	assert_true(addr_tuple_equal(&n.name, &to_cli));
	assert_true(addr_tuple_equal(&n.send, &reply)); /* as the server sends, before de-NAT */
	assert_true(addr_tuple_equal(&n.partner, &to_srv));
	assert_true(addr_tuple_equal(&n.learn, &reply)); /* to the server from 192.0.2.254:41000 */
	assert_false(gateway_nat_view(&orig, &reply, &other, &n)); /* neither end's view */
}

/* DNAT: the client connects to 203.0.113.1:443, the router sends it to 192.0.2.1:8443. */
static void test_nat_view_dnat(void **state)
{
	struct addr_tuple orig = key(AF_INET, "198.51.100.2", 40000, "203.0.113.1", 443);
	struct addr_tuple reply = key(AF_INET, "192.0.2.1", 8443, "198.51.100.2", 40000);
	struct addr_tuple to_srv = key(AF_INET, "198.51.100.2", 40000, "192.0.2.1", 8443);
	struct addr_tuple to_cli = key(AF_INET, "203.0.113.1", 443, "198.51.100.2", 40000);
	struct gateway_nat n;

	(void)state;
	assert_true(gateway_nat_view(&orig, &reply, &to_srv, &n));
	assert_true(addr_tuple_equal(&n.name, &orig));
	assert_true(addr_tuple_equal(&n.send, &orig)); /* DNAT at OUTPUT takes it to the server */
	assert_true(addr_tuple_equal(&n.partner, &to_cli));
	assert_true(addr_tuple_equal(&n.learn, &orig)); /* to the client from 203.0.113.1:443 */
	assert_true(gateway_nat_view(&orig, &reply, &to_cli, &n));
	assert_true(addr_tuple_equal(&n.name, &to_cli));
	assert_true(addr_tuple_equal(&n.send, &reply));
	assert_true(addr_tuple_equal(&n.partner, &to_srv));
	assert_true(addr_tuple_equal(&n.learn, &reply)); /* to the server itself, port 8443 */
}

/* Without NAT every tuple is the key (and the partner its swap). */
static void test_nat_view_none(void **state)
{
	struct addr_tuple orig = key(AF_INET6, "2001:db8:2::2", 40000, "2001:db8:1::1", 22);
	struct addr_tuple reply = key(AF_INET6, "2001:db8:1::1", 22, "2001:db8:2::2", 40000);
	struct gateway_nat n;

	(void)state;
	assert_true(gateway_nat_view(&orig, &reply, &orig, &n));
	assert_true(addr_tuple_equal(&n.name, &orig) && addr_tuple_equal(&n.send, &orig));
	assert_true(addr_tuple_equal(&n.partner, &reply) && addr_tuple_equal(&n.learn, &orig));
	assert_true(gateway_nat_view(&orig, &reply, &reply, &n));
	assert_true(addr_tuple_equal(&n.name, &reply) && addr_tuple_equal(&n.send, &reply));
	assert_true(addr_tuple_equal(&n.partner, &orig) && addr_tuple_equal(&n.learn, &reply));
}

static void test_natmap(void **state)
{
	struct gateway_natmap *m = gateway_natmap_new(7);
	struct gateway_nat n;
	uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
	int i;

	(void)state;
	assert_non_null(m);
	memset(&n, 0, sizeof(n));
	for (i = 1; i <= 300; i++) { /* past a few doublings */
		addr_tuple_make(&n.key, AF_INET, a, (uint16_t)i, b, 80);
		n.send.lport = (uint16_t)i;
		assert_int_equal(gateway_natmap_put(m, &n), 0);
	}
	for (i = 1; i <= 300; i++) {
		addr_tuple_make(&n.key, AF_INET, a, (uint16_t)i, b, 80);
		assert_non_null(gateway_natmap_get(m, &n.key));
		assert_int_equal(gateway_natmap_get(m, &n.key)->send.lport, i);
	}
	addr_tuple_make(&n.key, AF_INET, a, 7, b, 80);
	n.send.lport = 9999; /* replaced in place */
	assert_int_equal(gateway_natmap_put(m, &n), 0);
	assert_int_equal(gateway_natmap_get(m, &n.key)->send.lport, 9999);
	gateway_natmap_del(m, &n.key);
	assert_null(gateway_natmap_get(m, &n.key));
	gateway_natmap_del(m, &n.key); /* absent: nothing */
	addr_tuple_make(&n.key, AF_INET, a, 8, b, 80);
	assert_non_null(gateway_natmap_get(m, &n.key));
	gateway_natmap_free(m);
}

/* The second index: by the tuple the probes leave with (ICMP errors translated back). */
static void test_natmap_by_send(void **state)
{
	struct gateway_natmap *m = gateway_natmap_new(3);
	struct addr_tuple send;
	struct gateway_nat n;
	uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2}, r[4] = {192, 0, 2, 254};
	int i;

	(void)state;
	assert_non_null(m);
	memset(&n, 0, sizeof(n));
	for (i = 1; i <= 300; i++) { /* past a few doublings */
		addr_tuple_make(&n.key, AF_INET, r, (uint16_t)i, b, 80);
		addr_tuple_make(&n.send, AF_INET, a, (uint16_t)i, b, 80);
		assert_int_equal(gateway_natmap_put(m, &n), 0);
	}
	for (i = 1; i <= 300; i++) {
		addr_tuple_make(&send, AF_INET, a, (uint16_t)i, b, 80);
		assert_non_null(gateway_natmap_by_send(m, &send));
		assert_int_equal(gateway_natmap_by_send(m, &send)->key.lport, i);
		assert_null(gateway_natmap_get(m, &send)); /* not a key */
	}
	addr_tuple_make(&n.key, AF_INET, r, 7, b, 80); /* replaced: the old send is gone */
	addr_tuple_make(&n.send, AF_INET, a, 9999, b, 80);
	assert_int_equal(gateway_natmap_put(m, &n), 0);
	assert_int_equal(gateway_natmap_by_send(m, &n.send)->key.lport, 7);
	addr_tuple_make(&send, AF_INET, a, 7, b, 80);
	assert_null(gateway_natmap_by_send(m, &send));
	gateway_natmap_del(m, &n.key); /* deleted: from both indexes */
	assert_null(gateway_natmap_by_send(m, &n.send));
	addr_tuple_make(&send, AF_INET, a, 8, b, 80);
	assert_int_equal(gateway_natmap_by_send(m, &send)->key.lport, 8);
	gateway_natmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_copy),          cmocka_unit_test(test_line_fields),
	    cmocka_unit_test(test_outlived),      cmocka_unit_test(test_nat_view_masquerade),
	    cmocka_unit_test(test_nat_view_dnat), cmocka_unit_test(test_nat_view_none),
	    cmocka_unit_test(test_natmap),        cmocka_unit_test(test_natmap_by_send),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
