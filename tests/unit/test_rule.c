/* test_rule.c: unit tests of rule.c; the BPF filters are checked against libpcap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "rule.h"

#define FILTER_LEN (256 * 1024)

static void parse_ok(const char *text, struct rule_pattern *p)
{
	const char *err = NULL;

	if (rule_pattern_parse(text, p, &err) != 0)
		fail_msg("\"%s\" rejected: %s", text, err);
}

static void ip_of(const char *text, uint8_t *out, int *family)
{
	memset(out, 0, 16);
	*family = strchr(text, ':') ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(*family, text, out), 1);
}

/* ---- parsing ----------------------------------------------------------------- */

static const struct {
	const char *text;
	int family, prefix, lo, hi;
	const char *ip;
} good[] = {
    {"*", 0, 0, 0, 65535, NULL},
    {"*:22", 0, 0, 22, 22, NULL},
    {"*:1-65535", 0, 0, 1, 65535, NULL},
    {"*:8000-8080", 0, 0, 8000, 8080, NULL},
    {"*:443-443", 0, 0, 443, 443, NULL},
    {"10.0.0.0/8", AF_INET, 8, 0, 65535, "10.0.0.0"},
    {"192.0.2.7", AF_INET, 32, 0, 65535, "192.0.2.7"},
    {"192.0.2.7:22", AF_INET, 32, 22, 22, "192.0.2.7"},
    {"192.0.2.128/25:1000-2000", AF_INET, 25, 1000, 2000, "192.0.2.128"},
    {"0.0.0.0/0", AF_INET, 0, 0, 65535, "0.0.0.0"},
    {"10.0.0.0/7", AF_INET, 7, 0, 65535, "10.0.0.0"},
    {"[::1]", AF_INET6, 128, 0, 65535, "::1"},
    {"[2001:db8::1]:22", AF_INET6, 128, 22, 22, "2001:db8::1"},
    {"[2001:db8::/32]:443", AF_INET6, 32, 443, 443, "2001:db8::"},
    {"[2001:db8:8000::/33]", AF_INET6, 33, 0, 65535, "2001:db8:8000::"},
    {"[::/0]:5000-6000", AF_INET6, 0, 5000, 6000, "::"},
    {"[::ffff:192.0.2.1]", AF_INET6, 128, 0, 65535, "::ffff:192.0.2.1"},
    {"*:00022", 0, 0, 22, 22, NULL},
};

static void test_parse_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct rule_pattern p;
		uint8_t ip[16] = {0};
		int fam;

		memset(&p, 0xaa, sizeof(p));
		parse_ok(good[i].text, &p);
		assert_int_equal(p.family, good[i].family);
		assert_int_equal(p.prefix, good[i].prefix);
		assert_int_equal(p.port_lo, good[i].lo);
		assert_int_equal(p.port_hi, good[i].hi);
		if (good[i].ip)
			ip_of(good[i].ip, ip, &fam);
		assert_memory_equal(p.ip, ip, 16);
	}
}

static const struct {
	const char *text, *err;
} bad[] = {
    {"", "empty pattern"},
    {"10.0.0.0/33", "longer than 32 bits"},
    {"[::/129]", "longer than 128 bits"},
    {"10.0.0.0/", "missing prefix length"},
    {"10.0.0.0/x", "invalid prefix length"},
    {"10.0.0.0/-1", "invalid prefix length"},
    {"10.0.0.1/8", "bits set beyond the prefix"},
    {"[2001:db8::1/32]", "bits set beyond the prefix"},
    {"0.0.0.1/0", "bits set beyond the prefix"},
    {"*:0", "port 0"},
    {"*:0-10", "port 0"},
    {"*:65536", "out of range"},
    {"*:99999999999999999999", "out of range"},
    {"*:2000-1000", "reversed"},
    {"*:", "missing port"},
    {"*:80-", "missing port"},
    {"*:-80", "missing port"},
    {"*:80-90-100", "invalid port"},
    {"*:+80", "invalid port"},
    {"*:http", "invalid port"},
    {"*:80 ", "invalid port"},
    {"2001:db8::1", "needs brackets"},
    {"::1", "needs brackets"},
    {"[2001:db8::1", "missing ']'"},
    {"[10.0.0.1]", "invalid IPv6 address"},
    {"[]", "invalid IPv6 address"},
    {"[fe80::1%eth0]", "invalid IPv6 address"},
    {"300.0.0.1", "invalid IPv4 address"},
    {"10.0.0", "invalid IPv4 address"},
    {"10.0.0.1 ", "invalid IPv4 address"},
    {" 10.0.0.1", "invalid IPv4 address"},
    {"localhost", "invalid IPv4 address"},
    {"**", "unexpected text"},
    {"*/8", "unexpected text"},
    {"[::1]x", "unexpected text"},
    {"[::1]/64", "unexpected text"},
    {"[::1]22", "unexpected text"},
};

static void test_parse_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rule_pattern p;
		const char *err = NULL;

		memset(&p, 0x5a, sizeof(p));
		if (rule_pattern_parse(bad[i].text, &p, &err) == 0)
			fail_msg("\"%s\" accepted", bad[i].text);
		assert_non_null(err);
		if (!strstr(err, bad[i].err))
			fail_msg("\"%s\": got \"%s\", want \"%s\"", bad[i].text, err, bad[i].err);
		assert_int_equal(p.family, 0x5a); /* *out untouched on error */
	}
}

static void test_parse_null_err(void **state)
{
	struct rule_pattern p;

	(void)state;
	assert_int_equal(rule_pattern_parse("bogus", &p, NULL), -1);
	assert_int_equal(rule_pattern_parse(NULL, &p, NULL), -1);
}

/* ---- matching ---------------------------------------------------------------- */

static bool match(const char *pattern, const char *ip, uint16_t port)
{
	struct rule_pattern p;
	uint8_t bytes[16];
	int family;

	parse_ok(pattern, &p);
	ip_of(ip, bytes, &family);
	return rule_pattern_match(&p, family, bytes, port);
}

static void test_match_any(void **state)
{
	(void)state;
	assert_true(match("*", "192.0.2.1", 1));
	assert_true(match("*", "2001:db8::1", 65535));
	assert_true(match("*:22", "::1", 22));
	assert_false(match("*:22", "::1", 23));
	assert_true(match("*:1000-2000", "10.0.0.1", 1000));
	assert_true(match("*:1000-2000", "10.0.0.1", 2000));
	assert_false(match("*:1000-2000", "10.0.0.1", 999));
	assert_false(match("*:1000-2000", "10.0.0.1", 2001));
}

static void test_match_prefix_v4(void **state)
{
	(void)state;
	assert_true(match("10.0.0.0/8", "10.255.255.255", 80));
	assert_false(match("10.0.0.0/8", "11.0.0.0", 80));
	assert_false(match("10.0.0.0/8", "9.255.255.255", 80));
	assert_true(match("10.0.0.0/7", "11.1.1.1", 80));
	assert_false(match("10.0.0.0/7", "12.0.0.0", 80));
	assert_true(match("192.0.2.128/25", "192.0.2.255", 80));
	assert_false(match("192.0.2.128/25", "192.0.2.127", 80));
	assert_true(match("192.0.2.7", "192.0.2.7", 80));
	assert_false(match("192.0.2.7", "192.0.2.6", 80));
	assert_true(match("0.0.0.0/0", "255.255.255.255", 80));
	assert_false(match("0.0.0.0/0", "::", 80)); /* IPv4 only */
	assert_false(match("10.0.0.0/8", "a00::", 80));
}

static void test_match_prefix_v6(void **state)
{
	(void)state;
	assert_true(match("[2001:db8::/32]", "2001:db8:ffff::1", 1));
	assert_false(match("[2001:db8::/32]", "2001:db9::1", 1));
	assert_true(match("[2001:db8:8000::/33]", "2001:db8:ffff::", 1));
	assert_false(match("[2001:db8:8000::/33]", "2001:db8:7fff::", 1));
	assert_true(match("[::1]:22", "::1", 22));
	assert_false(match("[::1]:22", "::2", 22));
	assert_true(match("[::/0]", "ffff::", 1));
	assert_false(match("[::/0]", "0.0.0.0", 1));
	assert_false(match("[::/0]", "10.0.0.1", 1));
}

static struct rule make_rule(const char *name, const char *local, const char *remote)
{
	struct rule r;

	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "%s", name);
	parse_ok(local, &r.local);
	parse_ok(remote, &r.remote);
	return r;
}

static struct addr_tuple tuple(const char *l, uint16_t lport, const char *r, uint16_t rport)
{
	struct addr_tuple t;
	uint8_t lb[16], rb[16];
	int lf, rf;

	ip_of(l, lb, &lf);
	ip_of(r, rb, &rf);
	assert_int_equal(lf, rf);
	addr_tuple_make(&t, lf, lb, lport, rb, rport);
	return t;
}

static void test_rule_match_first_wins(void **state)
{
	struct rule rules[3];
	struct addr_tuple t;

	(void)state;
	rules[0] = make_rule("pg", "*:5432", "10.0.0.0/8");
	rules[1] = make_rule("v6", "[2001:db8::/32]", "*:443");
	rules[2] = make_rule("all-pg", "*:5432", "*");
	t = tuple("192.0.2.1", 5432, "10.9.9.9", 40000);
	assert_string_equal(rule_match(rules, 3, &t)->name, "pg");
	t = tuple("192.0.2.1", 5432, "11.0.0.1", 40000);
	assert_string_equal(rule_match(rules, 3, &t)->name, "all-pg");
	t = tuple("2001:db8::5", 40000, "2001:db9::1", 443);
	assert_string_equal(rule_match(rules, 3, &t)->name, "v6");
	t = tuple("2001:db8::5", 5432, "2001:db9::1", 443);
	assert_string_equal(rule_match(rules, 3, &t)->name, "v6");
	assert_string_equal(rule_match(rules + 2, 1, &t)->name, "all-pg");
	/* ends are not interchangeable: the peer on 5432 is not a local 5432 */
	t = tuple("10.9.9.9", 40000, "192.0.2.1", 5432);
	assert_null(rule_match(rules, 3, &t));
	assert_null(rule_match(rules, 0, &t));
}

/* Gateway rules: matched by forwarded records only, either way round; the side probed. */
static void test_rule_match_gateway(void **state)
{
	struct rule rules[3];
	struct addr_tuple to_srv, to_cli, other;

	(void)state;
	rules[0] = make_rule("any-pg", "*:5432", "*");
	rules[1] = make_rule("gw", "192.0.2.0/24", "*:5432");
	rules[1].mode = RULE_MODE_GATEWAY;
	rules[2] = make_rule("gw-all", "*", "*");
	rules[2].mode = RULE_MODE_GATEWAY;
	/* the record probing the server in the client's name, and the other */
	to_srv = tuple("192.0.2.1", 40000, "198.51.100.2", 5432);
	to_cli = tuple("198.51.100.2", 5432, "192.0.2.1", 40000);
	assert_string_equal(rule_match_gateway(rules, 3, &to_srv)->name, "gw");
	assert_string_equal(rule_match_gateway(rules, 3, &to_cli)->name, "gw");
	assert_false(rule_gateway_probes_client(&rules[1], &to_srv));
	assert_true(rule_gateway_probes_client(&rules[1], &to_cli));
	/* a local rule never matches a gateway record's way round, nor a gateway rule a local */
	assert_string_equal(rule_match(rules, 3, &to_cli)->name, "any-pg");
	assert_null(rule_match(rules + 1, 2, &to_cli));
	/* neither way round: the next gateway rule */
	other = tuple("203.0.113.1", 40000, "198.51.100.2", 5432);
	assert_string_equal(rule_match_gateway(rules, 3, &other)->name, "gw-all");
	assert_null(rule_match_gateway(rules, 2, &other));
	/* patterns that match both ways round: the lower port is the server's */
	assert_true(rule_gateway_probes_client(&rules[2], &to_cli));
	assert_false(rule_gateway_probes_client(&rules[2], &to_srv));
	other = tuple("192.0.2.1", 80, "192.0.2.2", 80); /* same ports: the lower address */
	assert_true(rule_gateway_probes_client(&rules[2], &other));
	other = tuple("192.0.2.2", 80, "192.0.2.1", 80);
	assert_false(rule_gateway_probes_client(&rules[2], &other));
	assert_null(rule_match_gateway(rules, 1, &to_srv));
}

/* ---- BPF filter text ---------------------------------------------------------- */

#define ICMP_TAIL                                                                                  \
	"(icmp and (icmp[icmptype] == icmp-unreach or icmp[icmptype] == icmp-timxceed)) or "       \
	"(icmp6 and (ip6[40] == 1 or ip6[40] == 3))"

static void test_filter_text(void **state)
{
	struct rule rules[4] = {0};
	char buf[1024];

	(void)state;
	assert_int_equal(rule_bpf_filter(rules, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, ICMP_TAIL);
	rules[0] = make_rule("pg", "*:5432", "10.0.0.0/8");
	rules[1] = make_rule("any", "*", "*");
	rules[2] = make_rule("v6", "[2001:db8::/32]:1000-2000", "[::/0]");
	rules[3] = make_rule("r", "*", "192.0.2.1:22");
	assert_int_equal(rule_bpf_filter(rules, 4, buf, sizeof(buf)), 0);
	assert_string_equal(
	    buf, "(tcp and ((src port 5432 and dst net 10.0.0.0/8) or "
	         "(dst port 5432 and src net 10.0.0.0/8))) or "
	         "(tcp) or "
	         "(tcp and ((src net 2001:db8::/32 and src portrange 1000-2000 and ip6) or "
	         "(dst net 2001:db8::/32 and dst portrange 1000-2000 and ip6))) or "
	         "(tcp and ((dst net 192.0.2.1/32 and dst port 22) or "
	         "(src net 192.0.2.1/32 and src port 22))) or " ICMP_TAIL);
}

static void test_filter_too_small(void **state)
{
	struct rule r = make_rule("pg", "*:5432", "10.0.0.0/8");
	char buf[512];
	size_t need;

	(void)state;
	assert_int_equal(rule_bpf_filter(&r, 1, buf, sizeof(buf)), 0);
	need = strlen(buf) + 1;
	assert_int_equal(rule_bpf_filter(&r, 1, buf, need), 0);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(rule_bpf_filter(&r, 1, buf, need - 1), -1);
	assert_string_equal(buf, "");
	assert_int_equal(buf[need - 1], 'x'); /* nothing written past len */
	assert_int_equal(rule_bpf_filter(&r, 1, buf, 1), -1);
	assert_int_equal(rule_bpf_filter(&r, 1, buf, 0), -1);
}

/* ---- the filter compiled by libpcap ------------------------------------------- */

static void compile(pcap_t *pc, const char *filter, struct bpf_program *prog)
{
	if (pcap_compile(pc, prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0)
		fail_msg("pcap_compile: %s\nfilter: %.2000s", pcap_geterr(pc), filter);
}

static void test_filter_compiles(void **state)
{
	static const char *const sets[][2] = {
	    {"*", "*"},
	    {"*:22", "*"},
	    {"10.0.0.0/8", "*:1-1024"},
	    {"[::1]", "[::1]:65535"},
	    {"0.0.0.0/0", "[::/0]"},
	    {"192.0.2.1:5432", "198.51.100.0/24:30000-40000"},
	};
	static const int dlts[] = {DLT_LINUX_SLL, DLT_EN10MB, DLT_RAW};
	static struct rule rules[6];
	static char buf[FILTER_LEN];
	struct bpf_program prog;

	(void)state;
	for (size_t i = 0; i < 6; i++)
		rules[i] = make_rule("r", sets[i][0], sets[i][1]);
	for (size_t d = 0; d < sizeof(dlts) / sizeof(dlts[0]); d++) {
		pcap_t *pc = pcap_open_dead(dlts[d], 256);

		assert_non_null(pc);
		for (size_t n = 0; n <= 6; n++) {
			assert_int_equal(rule_bpf_filter(rules, n, buf, sizeof(buf)), 0);
			compile(pc, buf, &prog);
			pcap_freecode(&prog);
			/* each rule alone too */
			if (n < 6) {
				assert_int_equal(rule_bpf_filter(rules + n, 1, buf, sizeof(buf)),
				                 0);
				compile(pc, buf, &prog);
				pcap_freecode(&prog);
			}
		}
		pcap_close(pc);
	}
}

/* A raw IP (DLT_RAW) TCP segment, or ICMP error of the given type when icmp > 0. */
static size_t packet(uint8_t *pkt, int family, const uint8_t *src, uint16_t sport,
                     const uint8_t *dst, uint16_t dport, int icmp)
{
	size_t ip_len = family == AF_INET ? 20 : 40;
	uint8_t *l4 = pkt + ip_len;

	memset(pkt, 0, ip_len + 20);
	if (family == AF_INET) {
		pkt[0] = 0x45;
		pkt[3] = 40;
		pkt[8] = 64;
		pkt[9] = icmp ? 1 : 6;
		memcpy(pkt + 12, src, 4);
		memcpy(pkt + 16, dst, 4);
	} else {
		pkt[0] = 0x60;
		pkt[5] = 20;
		pkt[6] = icmp ? 58 : 6;
		pkt[7] = 64;
		memcpy(pkt + 8, src, 16);
		memcpy(pkt + 24, dst, 16);
	}
	if (icmp) {
		l4[0] = (uint8_t)icmp;
		return ip_len + 20;
	}
	l4[0] = (uint8_t)(sport >> 8);
	l4[1] = (uint8_t)sport;
	l4[2] = (uint8_t)(dport >> 8);
	l4[3] = (uint8_t)dport;
	l4[12] = 0x50;
	l4[13] = 0x10;
	return ip_len + 20;
}

static bool accepts(const struct bpf_program *prog, const uint8_t *pkt, size_t len)
{
	struct pcap_pkthdr h;

	memset(&h, 0, sizeof(h));
	h.caplen = h.len = (bpf_u_int32)len;
	return pcap_offline_filter(prog, &h, pkt) != 0;
}

static void test_filter_icmp(void **state)
{
	struct rule r = make_rule("r", "*:22", "*");
	static char buf[4096];
	struct bpf_program prog;
	uint8_t pkt[80], a[16], b[16];
	pcap_t *pc = pcap_open_dead(DLT_RAW, 256);
	int fam;

	(void)state;
	assert_int_equal(rule_bpf_filter(&r, 1, buf, sizeof(buf)), 0);
	compile(pc, buf, &prog);
	ip_of("192.0.2.1", a, &fam);
	ip_of("192.0.2.2", b, &fam);
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET, a, 0, b, 0, 3)));
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET, a, 0, b, 0, 11)));
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET, a, 0, b, 0, 8)));
	ip_of("2001:db8::1", a, &fam);
	ip_of("2001:db8::2", b, &fam);
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET6, a, 0, b, 0, 1)));
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET6, a, 0, b, 0, 3)));
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET6, a, 0, b, 0, 128)));
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET6, a, 0, b, 0, 2)));
	pcap_freecode(&prog);
	pcap_close(pc);
}

/* A busy connection's exclusion: its routine segments (no SYN, FIN, RST) are dropped both
 * ways, its SYN/FIN/RST pass, and so does every other connection, the port-swapped twin
 * included; IPv4 and IPv6. */
static void test_filter_exclude(void **state)
{
	struct rule r = make_rule("r", "*:5432", "*");
	static char base[4096], buf[8192];
	struct addr_tuple k[2];
	struct bpf_program prog;
	uint8_t pkt[80], a[16], b[16], a6[16], b6[16];
	pcap_t *pc = pcap_open_dead(DLT_RAW, 256);
	size_t n;
	int fam;

	(void)state;
	assert_int_equal(rule_bpf_filter(&r, 1, base, sizeof(base)), 0);
	k[0] = tuple("192.0.2.1", 5432, "192.0.2.2", 40000);
	k[1] = tuple("2001:db8::1", 5432, "2001:db8::2", 40001);
	assert_int_equal(rule_bpf_exclude(base, k, 2, buf, sizeof(buf)), 0);
	compile(pc, buf, &prog);
	ip_of("192.0.2.1", a, &fam);
	ip_of("192.0.2.2", b, &fam);
	ip_of("2001:db8::1", a6, &fam);
	ip_of("2001:db8::2", b6, &fam);
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET, a, 5432, b, 40000, 0)));
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET, b, 40000, a, 5432, 0)));
	n = packet(pkt, AF_INET, b, 40000, a, 5432, 0);
	pkt[20 + 13] = 0x11; /* FIN|ACK */
	assert_true(accepts(&prog, pkt, n));
	pkt[20 + 13] = 0x04; /* RST */
	assert_true(accepts(&prog, pkt, n));
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET, a, 5432, b, 40001, 0)));
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET, a, 40000, b, 5432, 0))); /* twin */
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET6, a6, 5432, b6, 40001, 0)));
	assert_false(accepts(&prog, pkt, packet(pkt, AF_INET6, b6, 40001, a6, 5432, 0)));
	n = packet(pkt, AF_INET6, b6, 40001, a6, 5432, 0);
	pkt[40 + 13] = 0x02; /* SYN */
	assert_true(accepts(&prog, pkt, n));
	assert_true(accepts(&prog, pkt, packet(pkt, AF_INET6, a6, 5432, b6, 40000, 0)));
	pcap_freecode(&prog);
	assert_int_equal(rule_bpf_exclude(base, k, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, base);
	assert_int_equal(rule_bpf_exclude(base, k, 2, buf, 100), -1);
	assert_string_equal(buf, "");
	pcap_close(pc);
}

static const char *const pool_patterns[] = {
    "*",
    "*:22",
    "*:1000-2000",
    "10.0.0.0/8",
    "10.1.0.0/16:80",
    "192.0.2.1",
    "192.0.2.0/25:1-1024",
    "0.0.0.0/0",
    "0.0.0.0/0:443",
    "10.0.0.0/7:1500-6000",
    "[2001:db8::/32]",
    "[2001:db8::1]:22",
    "[::/0]:5000-6000",
    "[::1]",
    "[2001:db8:8000::/33]:80",
};
static const char *const pool_v4[] = {"10.0.0.1",  "10.1.2.3",    "11.0.0.1",
                                      "192.0.2.1", "192.0.2.200", "8.8.8.8"};
static const char *const pool_v6[] = {"2001:db8::1", "2001:db8:8000::5", "2001:db9::1", "::1"};
static const uint16_t pool_ports[] = {22, 80, 443, 999, 1000, 1500, 2000, 2001, 5000, 6000, 40000};

#define PICK(a) (a)[(size_t)rand() % (sizeof(a) / sizeof((a)[0]))]

static struct addr_tuple random_tuple(void)
{
	bool v6 = rand() % 2;
	const char *l = v6 ? PICK(pool_v6) : PICK(pool_v4);
	const char *r = v6 ? PICK(pool_v6) : PICK(pool_v4);

	return tuple(l, PICK(pool_ports), r, PICK(pool_ports));
}

/* The filter passes a segment, in either direction, exactly when some rule matches
 * the connection seen from one end or the other (pcap cannot tell which end is ours). */
static void check_tuple(const struct bpf_program *prog, const struct rule *rules, size_t n,
                        const struct addr_tuple *t)
{
	struct addr_tuple sw;
	uint8_t pkt[80];
	bool want;

	addr_tuple_make(&sw, t->family, t->remote, t->rport, t->local, t->lport);
	want = rule_match(rules, n, t) || rule_match(rules, n, &sw);
	assert_int_equal(
	    accepts(prog, pkt, packet(pkt, t->family, t->local, t->lport, t->remote, t->rport, 0)),
	    want);
	assert_int_equal(
	    accepts(prog, pkt, packet(pkt, t->family, t->remote, t->rport, t->local, t->lport, 0)),
	    want);
}

static void test_filter_agrees_with_rule_match(void **state)
{
	static char buf[FILTER_LEN];
	pcap_t *pc = pcap_open_dead(DLT_RAW, 256);
	struct bpf_program prog;
	struct rule rules[4];

	(void)state;
	srand(12345);
	for (int round = 0; round < 300; round++) {
		size_t n = 1 + (size_t)rand() % 4;

		for (size_t i = 0; i < n; i++)
			rules[i] = make_rule("r", PICK(pool_patterns), PICK(pool_patterns));
		assert_int_equal(rule_bpf_filter(rules, n, buf, sizeof(buf)), 0);
		compile(pc, buf, &prog);
		for (int k = 0; k < 40; k++) {
			struct addr_tuple t = random_tuple();

			check_tuple(&prog, rules, n, &t);
		}
		pcap_freecode(&prog);
	}
	pcap_close(pc);
}

/* Many rules: the text fits a generous buffer and libpcap still compiles it. */
static void test_filter_many_rules(void **state)
{
	enum { N = 128 };
	static struct rule rules[N];
	static char buf[FILTER_LEN];
	struct bpf_program prog;
	pcap_t *pc = pcap_open_dead(DLT_LINUX_SLL, 256);
	char text[64];

	(void)state;
	for (int i = 0; i < N; i++) {
		snprintf(text, sizeof(text), "10.%d.%d.0/24:%d", i / 256, i % 256, 1000 + i);
		rules[i] = make_rule("r", "*", text);
	}
	assert_int_equal(rule_bpf_filter(rules, N, buf, sizeof(buf)), 0);
	compile(pc, buf, &prog);
	pcap_freecode(&prog);
	pcap_close(pc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_good),
	    cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_parse_null_err),
	    cmocka_unit_test(test_match_any),
	    cmocka_unit_test(test_match_prefix_v4),
	    cmocka_unit_test(test_match_prefix_v6),
	    cmocka_unit_test(test_rule_match_first_wins),
	    cmocka_unit_test(test_rule_match_gateway),
	    cmocka_unit_test(test_filter_text),
	    cmocka_unit_test(test_filter_too_small),
	    cmocka_unit_test(test_filter_compiles),
	    cmocka_unit_test(test_filter_icmp),
	    cmocka_unit_test(test_filter_exclude),
	    cmocka_unit_test(test_filter_agrees_with_rule_match),
	    cmocka_unit_test(test_filter_many_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
