/* test_diag.c: inet_diag requests (bytecode run through a copy of the kernel's port
 * logic) and answers (hand-built netlink fixtures: good, cut, foreign, errors, what
 * libmnl's checks miss). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "diag.h"

/* ---- bytecode ------------------------------------------------------------------- */

/* The kernel's inet_diag_bc_run() for the port conditions we emit: 1 = accepted. */
static int bc_run(const uint8_t *bc, int len, uint16_t sport, uint16_t dport)
{
	while (len > 0) {
		struct inet_diag_bc_op op, arg;
		int yes = 1;

		memcpy(&op, bc, sizeof(op));
		memcpy(&arg, bc + sizeof(op), sizeof(arg));
		switch (op.code) {
		case INET_DIAG_BC_JMP:
			yes = 0;
			break;
		case INET_DIAG_BC_S_GE:
			yes = sport >= arg.no;
			break;
		case INET_DIAG_BC_S_LE:
			yes = sport <= arg.no;
			break;
		case INET_DIAG_BC_D_GE:
			yes = dport >= arg.no;
			break;
		case INET_DIAG_BC_D_LE:
			yes = dport <= arg.no;
			break;
		default:
			fail_msg("unexpected op %d", op.code);
		}
		assert_true(op.yes % 4 == 0 && op.no % 4 == 0 && op.yes > 0);
		len -= yes ? op.yes : op.no;
		bc += yes ? op.yes : op.no;
	}
	return len == 0;
}

static struct rule port_rule(uint16_t llo, uint16_t lhi, uint16_t rlo, uint16_t rhi)
{
	struct rule r;

	memset(&r, 0, sizeof(r));
	r.local.port_lo = llo;
	r.local.port_hi = lhi;
	r.remote.port_lo = rlo;
	r.remote.port_hi = rhi;
	return r;
}

static void test_filter_matches_rules(void **state)
{
	struct rule rules[3] = {port_rule(22, 22, 0, 65535), port_rule(0, 65535, 5000, 5999),
	                        port_rule(8000, 8080, 1024, 65535)};
	uint8_t bc[DIAG_BC_MAX];
	size_t n = diag_build_filter(bc, sizeof(bc), rules, 3);

	(void)state;
	assert_true(n > 0);
	assert_true(bc_run(bc, (int)n, 22, 40000));
	assert_false(bc_run(bc, (int)n, 23, 40000));
	assert_true(bc_run(bc, (int)n, 40000, 5000));
	assert_true(bc_run(bc, (int)n, 40000, 5999));
	assert_false(bc_run(bc, (int)n, 40000, 6000));
	assert_true(bc_run(bc, (int)n, 8080, 1024));
	assert_false(bc_run(bc, (int)n, 8080, 1023));
	assert_false(bc_run(bc, (int)n, 8081, 2000));
	assert_false(bc_run(bc, (int)n, 7999, 2000));
}

static void test_filter_impossible(void **state)
{
	struct rule rules[2] = {port_rule(22, 22, 0, 65535), port_rule(0, 65535, 0, 65535)};
	struct rule many[200];
	uint8_t bc[DIAG_BC_MAX];

	(void)state;
	assert_int_equal(diag_build_filter(bc, sizeof(bc), rules, 2), 0); /* rule 2: any port */
	for (int i = 0; i < 200; i++)
		many[i] = port_rule((uint16_t)(i + 1), (uint16_t)(i + 2), 1, 2);
	assert_int_equal(diag_build_filter(bc, sizeof(bc), many, 200), 0); /* too long */
	assert_int_equal(diag_build_filter(bc, 8, rules, 1), 0);           /* no room */
}

static void test_dump_request(void **state)
{
	struct rule r = port_rule(5432, 5432, 0, 65535);
	uint8_t buf[8192];
	struct nlmsghdr h;
	struct inet_diag_req_v2 req;
	size_t n = diag_build_dump(buf, sizeof(buf), AF_INET6, 77, &r, 1);

	(void)state;
	memcpy(&h, buf, sizeof(h));
	memcpy(&req, buf + NLMSG_HDRLEN, sizeof(req));
	assert_int_equal(h.nlmsg_len, n);
	assert_int_equal(h.nlmsg_type, SOCK_DIAG_BY_FAMILY);
	assert_int_equal(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
	assert_int_equal(h.nlmsg_seq, 77);
	assert_int_equal(req.sdiag_family, AF_INET6);
	assert_int_equal(req.sdiag_protocol, IPPROTO_TCP);
	assert_int_equal(req.idiag_states, 1 << 1);
	assert_int_equal(req.idiag_ext, 1 << (INET_DIAG_INFO - 1));
	assert_int_equal(n, NLMSG_LENGTH(sizeof(req)) + NLA_HDRLEN + 16 + 4);
	assert_int_equal(diag_build_dump(buf, sizeof(buf), AF_INET, 1, NULL, 0),
	                 NLMSG_LENGTH(sizeof(req)));
	assert_int_equal(diag_build_dump(buf, 100, AF_INET, 1, NULL, 0), 0);
}

/* A one-socket query: no dump flag, the exact 4-tuple (the socket's own end as source), an
 * IPv4 key asked as IPv6 in its v4-mapped form. */
static void test_query_request(void **state)
{
	struct addr_tuple k;
	const uint8_t l4[4] = {192, 0, 2, 1}, r4[4] = {198, 51, 100, 2};
	const uint8_t mapped[16] = {[10] = 0xff, [11] = 0xff, 192, 0, 2, 1};
	uint8_t buf[256];
	struct nlmsghdr h;
	struct inet_diag_req_v2 req;
	size_t n;

	(void)state;
	addr_tuple_make(&k, AF_INET, l4, 5432, r4, 40000);
	n = diag_build_query(buf, sizeof(buf), &k, AF_INET, 9);
	memcpy(&h, buf, sizeof(h));
	memcpy(&req, buf + NLMSG_HDRLEN, sizeof(req));
	assert_int_equal(n, NLMSG_LENGTH(sizeof(req)));
	assert_int_equal(h.nlmsg_flags, NLM_F_REQUEST);
	assert_int_equal(h.nlmsg_seq, 9);
	assert_int_equal(req.sdiag_family, AF_INET);
	assert_int_equal(ntohs(req.id.idiag_sport), 5432);
	assert_int_equal(ntohs(req.id.idiag_dport), 40000);
	assert_memory_equal(req.id.idiag_src, l4, 4);
	assert_memory_equal(req.id.idiag_dst, r4, 4);
	assert_int_equal(req.id.idiag_cookie[0], INET_DIAG_NOCOOKIE);
	assert_int_equal(req.idiag_ext, 1 << (INET_DIAG_INFO - 1));
	diag_build_query(buf, sizeof(buf), &k, AF_INET6, 10);
	memcpy(&req, buf + NLMSG_HDRLEN, sizeof(req));
	assert_int_equal(req.sdiag_family, AF_INET6);
	assert_memory_equal(req.id.idiag_src, mapped, 16);
	assert_int_equal(diag_build_query(buf, 20, &k, AF_INET, 1), 0);
}

/* ---- answers ---------------------------------------------------------------------- */

struct got {
	int n;
	struct diag_sock s[4];
};

static void collect(void *arg, const struct diag_sock *s)
{
	struct got *g = arg;

	if (g->n < 4)
		g->s[g->n] = *s;
	g->n++;
}

/* Appends one netlink message; returns the new length. */
static size_t put_msg(uint8_t *buf, size_t at, uint16_t type, uint32_t seq, const void *payload,
                      size_t plen)
{
	struct nlmsghdr h = {
	    .nlmsg_len = (uint32_t)NLMSG_LENGTH(plen), .nlmsg_type = type, .nlmsg_seq = seq};

	memcpy(buf + at, &h, sizeof(h));
	memcpy(buf + at + NLMSG_HDRLEN, payload, plen);
	return at + NLMSG_ALIGN(h.nlmsg_len);
}

/* A socket message: inet_diag_msg + INET_DIAG_INFO attribute of info_len bytes. */
static size_t sock_payload(uint8_t *p, int family, const char *src, const char *dst,
                           size_t info_len)
{
	struct inet_diag_msg m;
	struct tcp_info ti;
	struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + info_len),
	                   .nla_type = INET_DIAG_INFO};
	size_t at = NLMSG_ALIGN(sizeof(m));

	memset(&m, 0, sizeof(m));
	memset(&ti, 0, sizeof(ti));
	m.idiag_family = (uint8_t)family;
	m.idiag_state = 1;
	m.idiag_timer = DIAG_TIMER_KEEPALIVE;
	m.idiag_wqueue = 3;
	m.id.idiag_sport = htons(5432);
	m.id.idiag_dport = htons(40000);
	m.id.idiag_cookie[0] = 1;
	m.id.idiag_cookie[1] = 2;
	inet_pton(family, src, m.id.idiag_src);
	inet_pton(family, dst, m.id.idiag_dst);
	memcpy(p, &m, sizeof(m));
	if (info_len == 0)
		return sizeof(m);
	ti.tcpi_retransmits = 1;
	ti.tcpi_backoff = 2;
	ti.tcpi_probes = 3;
	ti.tcpi_snd_wnd = 65535;
	ti.tcpi_unacked = 2;
	ti.tcpi_last_data_recv = 7000;
	ti.tcpi_last_ack_recv = 6500;
	memcpy(p + at, &a, sizeof(a));
	memcpy(p + at + NLA_HDRLEN, &ti, info_len);
	return at + NLA_HDRLEN + info_len;
}

static void test_parse_sockets(void **state)
{
	uint8_t buf[4096], p[512];
	struct got g = {0};
	size_t at = 0, n;
	int err = 0;

	(void)state;
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", sizeof(struct tcp_info));
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	n = sock_payload(p, AF_INET6, "::ffff:192.0.2.1", "::ffff:198.51.100.3", 0);
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	n = sock_payload(p, AF_INET6, "2001:db8::1", "2001:db8::2", 104); /* an older kernel */
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_MORE);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.s[0].key.family, AF_INET);
	assert_int_equal(g.s[0].key.lport, 5432);
	assert_int_equal(g.s[0].key.rport, 40000);
	assert_int_equal(g.s[0].key.remote[3], 2);
	assert_int_equal(g.s[0].timer, DIAG_TIMER_KEEPALIVE);
	assert_int_equal(g.s[0].wqueue, 3);
	assert_int_equal(g.s[0].unacked, 2);
	assert_true(g.s[0].has_info);
	assert_true(diag_idle(&g.s[0]) == 6.5);
	assert_true(g.s[0].cookie == ((uint64_t)2 << 32 | 1));
	assert_int_equal(g.s[1].key.family, AF_INET); /* v4-mapped */
	assert_int_equal(g.s[1].key.remote[3], 3);
	assert_false(g.s[1].has_info);
	assert_int_equal(g.s[2].key.family, AF_INET6);
	assert_true(g.s[2].has_info);
}

/* The kernel's silence on data in flight: only under the retransmission timer with segments
 * in flight; the shorter of "since the last ACK" and "since our last new data". */
static void test_stall_silence(void **state)
{
	struct diag_sock s;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.has_info = 1;
	s.timer = DIAG_TIMER_RETRANS;
	s.unacked = 1;
	s.last_ack_recv_ms = 9000;
	s.last_data_sent_ms = 3500; /* no RTO yet: since the last send */
	assert_true(diag_stall_silence(&s) == 3.5);
	s.backoff = 3; /* RTOs after 0.2, 0.4, 0.8 s; 1.6 s now; the last 0.3 s ago */
	s.rto_us = 1600000;
	s.last_data_sent_ms = 300;
	assert_true(fabs(diag_stall_silence(&s) - 1.7) < 1e-9);
	s.last_ack_recv_ms = 1200; /* an ACK since: from there */
	assert_true(diag_stall_silence(&s) == 1.2);
	s.unacked = 0;
	assert_true(diag_stall_silence(&s) < 0);
	s.unacked = 1;
	s.timer = DIAG_TIMER_PROBE0;
	assert_true(diag_stall_silence(&s) < 0);
	s.timer = DIAG_TIMER_RETRANS;
	s.has_info = 0;
	assert_true(diag_stall_silence(&s) < 0);
}

/* The retransmission and window fields of tcp_info; tcpi_snd_wnd only from a kernel whose
 * tcp_info is long enough to hold it (Linux 5.4), 0 from an older one. */
static void test_parse_retrans_and_window(void **state)
{
	const size_t wnd_end = offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof(uint32_t);
	uint8_t buf[4096], p[512];
	struct got g = {0};
	size_t at = 0, n;
	int err = 0;

	(void)state;
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", sizeof(struct tcp_info));
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.3", wnd_end);
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.4", wnd_end - 1);
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.5", 104); /* Linux 4.x */
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 9, p, n);
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_MORE);
	assert_int_equal(g.n, 4);
	for (int i = 0; i < 4; i++) {
		assert_true(g.s[i].has_info);
		assert_int_equal(g.s[i].retransmits, 1);
		assert_int_equal(g.s[i].backoff, 2);
		assert_int_equal(g.s[i].probes, 3);
		assert_int_equal(g.s[i].snd_wnd, i < 2 ? 65535 : 0);
	}
}

/* What libmnl's own checks let through: a length of 2^31 or more (mnl_nlmsg_ok compares it
 * as a negative int), a misaligned buffer (libmnl reads headers in place). */
static void test_parse_huge_length_and_misaligned(void **state)
{
	_Alignas(uint32_t) uint8_t buf[1024];
	uint8_t p[512];
	struct got g = {0};
	struct nlmsghdr h;
	size_t at, n;
	int err = 0;

	(void)state;
	at = put_msg(buf, 0, NLMSG_DONE, 9, &err, sizeof(err)); /* taken whole: DIAG_DONE */
	memcpy(&h, buf, sizeof(h));
	h.nlmsg_len = 0x80000000u + (uint32_t)at;
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_MALFORMED);
	h.nlmsg_len = UINT32_MAX;
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_MALFORMED);
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", sizeof(struct tcp_info));
	at = put_msg(buf, 4, SOCK_DIAG_BY_FAMILY, 9, p, n) - 4;
	memmove(buf + 1, buf + 4, at);
	assert_int_equal(diag_parse(buf + 1, at, 9, 0, collect, &g, &err), DIAG_E_MALFORMED);
	memmove(buf, buf + 1, at);
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_MORE);
	assert_int_equal(g.n, 1);
}

static void test_parse_done_error_foreign(void **state)
{
	uint8_t buf[1024], p[512];
	struct got g = {0};
	int zero = 0, eperm = -1, err = 0;
	size_t at = 0, n;

	(void)state;
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", sizeof(struct tcp_info));
	at = put_msg(buf, at, SOCK_DIAG_BY_FAMILY, 8, p, n); /* an older dump's: skipped */
	at = put_msg(buf, at, NLMSG_DONE, 9, &zero, sizeof(zero));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_DONE);
	assert_int_equal(g.n, 0);
	at = put_msg(buf, 0, NLMSG_ERROR, 9, &eperm, sizeof(eperm));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_KERNEL);
	assert_int_equal(err, 1);
}

static void test_parse_malformed(void **state)
{
	uint8_t buf[1024], p[512];
	struct got g = {0};
	struct nlattr bad = {.nla_len = 200, .nla_type = INET_DIAG_INFO};
	size_t at, n, cut;
	int err = 0;

	(void)state;
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", sizeof(struct tcp_info));
	at = put_msg(buf, 0, SOCK_DIAG_BY_FAMILY, 9, p, n);
	for (cut = 1; cut < at; cut++) /* every truncation: no crash, no socket */
		assert_int_equal(diag_parse(buf, cut, 9, 0, collect, &g, &err) ==
		                         DIAG_E_MALFORMED ||
		                     cut < NLMSG_HDRLEN,
		                 1);
	assert_int_equal(g.n, 0);
	at = put_msg(buf, 0, SOCK_DIAG_BY_FAMILY, 9, p, 10); /* payload too short */
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_MALFORMED);
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", 0);
	memcpy(p + n, &bad, sizeof(bad)); /* attribute longer than the message */
	at = put_msg(buf, 0, SOCK_DIAG_BY_FAMILY, 9, p, n + sizeof(bad));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_MALFORMED);
	p[0] = 99; /* unknown family */
	at = put_msg(buf, 0, SOCK_DIAG_BY_FAMILY, 9, p, n);
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_MALFORMED);
	assert_int_equal(g.n, 0);
}

/* A datagram that does not come from the kernel (port id 0) is ignored as a whole, even
 * with our sequence number: another local program may send to our port. */
static void test_parse_only_from_kernel(void **state)
{
	uint8_t buf[1024], p[512];
	struct got g = {0};
	int zero = 0, err = 0;
	size_t at, n;

	(void)state;
	n = sock_payload(p, AF_INET, "192.0.2.1", "198.51.100.2", sizeof(struct tcp_info));
	at = put_msg(buf, 0, SOCK_DIAG_BY_FAMILY, 9, p, n);
	at = put_msg(buf, at, NLMSG_DONE, 9, &zero, sizeof(zero));
	assert_int_equal(diag_parse(buf, at, 9, 4242, collect, &g, &err), DIAG_MORE);
	assert_int_equal(g.n, 0);
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_DONE);
	assert_int_equal(g.n, 1);
}

/* An error of INT_MIN (or a positive one) is not negated (UBSan: overflow): EPROTO. */
static void test_parse_error_int_min(void **state)
{
	uint8_t buf[256];
	struct got g = {0};
	int bad = INT_MIN, pos = 5, err = 0;
	size_t at;

	(void)state;
	at = put_msg(buf, 0, NLMSG_ERROR, 9, &bad, sizeof(bad));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_KERNEL);
	assert_int_equal(err, EPROTO);
	at = put_msg(buf, 0, NLMSG_ERROR, 9, &pos, sizeof(pos));
	assert_int_equal(diag_parse(buf, at, 9, 0, collect, &g, &err), DIAG_E_KERNEL);
	assert_int_equal(err, EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stall_silence),
	    cmocka_unit_test(test_query_request),
	    cmocka_unit_test(test_filter_matches_rules),
	    cmocka_unit_test(test_filter_impossible),
	    cmocka_unit_test(test_dump_request),
	    cmocka_unit_test(test_parse_sockets),
	    cmocka_unit_test(test_parse_retrans_and_window),
	    cmocka_unit_test(test_parse_huge_length_and_misaligned),
	    cmocka_unit_test(test_parse_done_error_foreign),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_only_from_kernel),
	    cmocka_unit_test(test_parse_error_int_min),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
