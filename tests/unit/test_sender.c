/* test_sender.c: the packets sender_build makes, byte for byte, against hand-written
 * fixtures (checksums included) and against libnet's own build of the same fields (the
 * old libnet_write path: libnet_build_tcp_options, _tcp, _ipv4/_ipv6, coalesced by
 * libnet_pblock_coalesce, which is what libnet_write hands to sendto). Then, as root, in a
 * private network namespace of this process (loopback only): sender_send_batch's
 * per-packet errors across batch boundaries, and the packets it puts on loopback, read
 * back from a packet socket, against sender_build. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libnet.h>

#include "codec.h"
#include "sender.h"

/* ---- helpers ---- */

static void tuple(struct addr_tuple *t, int family, const char *local, uint16_t lport,
                  const char *remote, uint16_t rport)
{
	uint8_t l[16] = {0}, r[16] = {0};

	assert_int_equal(inet_pton(family, local, l), 1);
	assert_int_equal(inet_pton(family, remote, r), 1);
	addr_tuple_make(t, family, l, lport, r, rport);
}

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;
	unsigned v;

	for (; *h; h++) {
		if (*h == ' ' || *h == '|')
			continue;
		assert_int_equal(sscanf(h, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		h++;
	}
	return n;
}

static struct fsm_probe probe(int ts, int data)
{
	return (struct fsm_probe){.seq = 0x11223344,
	                          .ack = 0x55667788,
	                          .tsval = 0x01020304,
	                          .tsecr = 0x0a0b0c0d,
	                          .window = 502,
	                          .has_ts = (uint8_t)ts,
	                          .payload_len = (uint8_t)data};
}

static void expect_bytes(const struct sender_pkt *p, uint16_t id, const char *hex)
{
	_Alignas(8) uint8_t got[SENDER_PKT_MAX + 8], want[SENDER_PKT_MAX + 8];
	size_t n = unhex(hex, want);

	assert_int_equal(sender_build(p, id, got, sizeof(got)), n);
	assert_memory_equal(got, want, n);
	/* exactly long enough is enough; one byte short is not */
	assert_int_equal(sender_build(p, id, got, n), n);
	assert_int_equal(sender_build(p, id, got, n - 1), 0);
}

/* ---- hand-written fixtures: IP | TCP header | options | payload ---- */

static void test_v4_probe(void **state)
{
	struct addr_tuple k;
	struct sender_pkt p = {.kind = SENDER_PROBE, .key = &k, .probe = probe(0, 1)};

	(void)state;
	tuple(&k, AF_INET, "192.0.2.1", 5432, "192.0.2.2", 40000);
	/* ver/ihl tos len 41, id 0x1234, no DF, TTL 64, TCP, IP sum, src, dst |
	 * 5432 -> 40000, seq, ack, doff 5, ACK, win 502, TCP sum 0x670c, urg 0 | one 0x00 */
	expect_bytes(&p, 0x1234,
	             "4500 0029 1234 0000 4006 e497 c0000201 c0000202 |"
	             "1538 9c40 11223344 55667788 5010 01f6 670c 0000 | 00");
}

static void test_v4_probe_ts(void **state)
{
	struct addr_tuple k;
	struct sender_pkt p = {.kind = SENDER_PROBE, .key = &k, .probe = probe(1, 1)};

	(void)state;
	tuple(&k, AF_INET, "192.0.2.1", 5432, "192.0.2.2", 40000);
	expect_bytes(&p, 0x1234,
	             "4500 0035 1234 0000 4006 e48b c0000201 c0000202 |"
	             "1538 9c40 11223344 55667788 8010 01f6 13d7 0000 |"
	             "01 01 08 0a 01020304 0a0b0c0d | 00");
	p.probe = probe(1, 0); /* Linux style: no byte */
	expect_bytes(&p, 0xffff,
	             "4500 0034 ffff 0000 4006 f6c0 c0000201 c0000202 |"
	             "1538 9c40 11223344 55667788 8010 01f6 13d8 0000 |"
	             "01 01 08 0a 01020304 0a0b0c0d");
}

static void test_v4_syn(void **state)
{
	struct addr_tuple k;
	struct sender_pkt p = {.kind = SENDER_SYN, .key = &k, .seq = 0xdeadbeef};

	(void)state;
	tuple(&k, AF_INET, "192.0.2.1", 5432, "192.0.2.2", 40000);
	/* from the peer (key.remote) to us: SYN, ACK 0, window 1024, no options; p.probe
	 * is ignored */
	p.probe = probe(1, 1);
	expect_bytes(&p, 0x1234,
	             "4500 0028 1234 0000 4006 e498 c0000202 c0000201 |"
	             "9c40 1538 deadbeef 00000000 5002 0400 d8c8 0000");
}

static void test_v6(void **state)
{
	struct addr_tuple k;
	struct sender_pkt p = {.kind = SENDER_PROBE, .key = &k, .probe = probe(1, 1)};

	(void)state;
	tuple(&k, AF_INET6, "2001:db8::1", 443, "2001:db8::2", 50000);
	/* version 6, class 0, flow 0, payload 33, TCP, hop limit 64, src, dst; the ID
	 * is not used */
	expect_bytes(&p, 0x1234,
	             "6000 0000 0021 06 40 20010db8000000000000000000000001"
	             "20010db8000000000000000000000002 |"
	             "01bb c350 11223344 55667788 8010 01f6 28d3 0000 |"
	             "01 01 08 0a 01020304 0a0b0c0d | 00");
	p.probe = probe(0, 0);
	expect_bytes(&p, 7,
	             "6000 0000 0014 06 40 20010db8000000000000000000000001"
	             "20010db8000000000000000000000002 |"
	             "01bb c350 11223344 55667788 5010 01f6 7c09 0000");
	p = (struct sender_pkt){.kind = SENDER_SYN, .key = &k, .seq = 0xdeadbeef};
	expect_bytes(&p, 0,
	             "6000 0000 0014 06 40 20010db8000000000000000000000002"
	             "20010db8000000000000000000000001 |"
	             "c350 01bb deadbeef 00000000 5002 0400 edc4 0000");
}

static void test_refused(void **state)
{
	_Alignas(8) uint8_t buf[SENDER_PKT_MAX + 1];
	struct addr_tuple k;
	struct sender_pkt p = {.kind = SENDER_PROBE, .key = &k, .probe = probe(1, 1)};

	(void)state;
	tuple(&k, AF_INET6, "2001:db8::1", 443, "2001:db8::2", 50000);
	assert_int_equal(sender_build(&p, 1, buf, sizeof(buf)), SENDER_PKT_MAX);
	assert_int_equal(sender_build(&p, 1, buf + 1, SENDER_PKT_MAX), 0); /* misaligned */
	p.probe.payload_len = 2;
	assert_int_equal(sender_build(&p, 1, buf, sizeof(buf)), 0);
	p.probe.payload_len = 1;
	p.kind = 0;
	assert_int_equal(sender_build(&p, 1, buf, sizeof(buf)), 0);
	p.kind = SENDER_SYN + 1;
	assert_int_equal(sender_build(&p, 1, buf, sizeof(buf)), 0);
	p.kind = SENDER_PROBE;
	k.family = 0;
	assert_int_equal(sender_build(&p, 1, buf, sizeof(buf)), 0);
	p.key = NULL;
	assert_int_equal(sender_build(&p, 1, buf, sizeof(buf)), 0);
}

/* ---- against libnet's build (the old sender_send / sender_send_syn, call for call) ---- */

static size_t libnet_bytes(libnet_t *l, const struct sender_pkt *p, uint16_t id, uint8_t *out)
{
	static const uint8_t zero[1] = {0};
	const struct addr_tuple *k = p->key;
	const struct fsm_probe *pr = &p->probe;
	int syn = p->kind == SENDER_SYN;
	const uint8_t *src = syn ? k->remote : k->local, *dst = syn ? k->local : k->remote;
	uint8_t opt[12];
	size_t optlen = !syn && pr->has_ts ? codec_ts_option(pr->tsval, pr->tsecr, opt) : 0;
	size_t dlen = syn ? 0 : pr->payload_len, tcplen = LIBNET_TCP_H + optlen + dlen;
	struct libnet_in6_addr s6, d6;
	uint32_t s4, d4, n;
	uint8_t *pkt;

	libnet_clear_packet(l);
	if (optlen)
		assert_true(libnet_build_tcp_options(opt, (uint32_t)optlen, l, 0) > 0);
	assert_true(libnet_build_tcp(syn ? k->rport : k->lport, syn ? k->lport : k->rport,
	                             syn ? p->seq : pr->seq, syn ? 0 : pr->ack,
	                             syn ? TH_SYN : TH_ACK, syn ? 1024 : pr->window, 0, 0,
	                             (uint16_t)tcplen, dlen ? zero : NULL, (uint32_t)dlen, l,
	                             0) > 0);
	if (k->family == AF_INET) {
		memcpy(&s4, src, 4);
		memcpy(&d4, dst, 4);
		assert_true(libnet_build_ipv4((uint16_t)(LIBNET_IPV4_H + tcplen), 0, id, 0, 64,
		                              IPPROTO_TCP, 0, s4, d4, NULL, 0, l, 0) > 0);
	} else {
		memcpy(&s6, src, 16);
		memcpy(&d6, dst, 16);
		assert_true(libnet_build_ipv6(0, 0, (uint16_t)tcplen, IPPROTO_TCP, 64, s6, d6, NULL,
		                              0, l, 0) > 0);
	}
	assert_int_equal(libnet_pblock_coalesce(l, &pkt, &n), 1);
	memcpy(out, pkt, n);
	free(pkt);
	return n;
}

static uint32_t rnd(void)
{
	return (uint32_t)random() << 16 ^ (uint32_t)random();
}

static void random_pkt(struct sender_pkt *p, struct addr_tuple *k)
{
	uint8_t l[16], r[16];
	int i;

	for (i = 0; i < 16; i++) {
		l[i] = (uint8_t)rnd();
		r[i] = (uint8_t)rnd();
	}
	addr_tuple_make(k, rnd() % 2 ? AF_INET : AF_INET6, l, (uint16_t)rnd(), r, (uint16_t)rnd());
	*p = (struct sender_pkt){.kind = rnd() % 3 ? SENDER_PROBE : SENDER_SYN,
	                         .key = k,
	                         .seq = rnd(),
	                         .probe = {.seq = rnd(),
	                                   .ack = rnd(),
	                                   .tsval = rnd(),
	                                   .tsecr = rnd(),
	                                   .window = (uint16_t)rnd(),
	                                   .has_ts = (uint8_t)(rnd() % 2),
	                                   .payload_len = (uint8_t)(rnd() % 2)}};
}

/* One's complement sum of the pseudo header and the TCP segment: 0xffff when right. */
static uint16_t tcp_sum(const uint8_t *b, size_t n)
{
	size_t iph = b[0] >> 4 == 4 ? 20 : 40, alen = iph == 20 ? 4 : 16, i;
	const uint8_t *a = b + iph - 2 * alen;
	uint32_t s = IPPROTO_TCP + (uint32_t)(n - iph);

	for (i = 0; i < 2 * alen; i += 2)
		s += (uint32_t)a[i] << 8 | a[i + 1];
	for (i = iph; i < n; i += 2)
		s += (uint32_t)b[i] << 8 | (i + 1 < n ? b[i + 1] : 0);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static void test_same_as_libnet(void **state)
{
	_Alignas(8) uint8_t got[SENDER_PKT_MAX], want[256];
	char err[LIBNET_ERRBUF_SIZE];
	libnet_t *l = libnet_init(LIBNET_NONE, NULL, err);
	struct addr_tuple k;
	struct sender_pkt p;
	size_t n;
	int i;

	(void)state;
	assert_non_null(l);
	srandom(8);
	for (i = 0; i < 20000; i++) {
		uint16_t id = (uint16_t)rnd();

		random_pkt(&p, &k);
		n = libnet_bytes(l, &p, id, want);
		assert_int_equal(sender_build(&p, id, got, sizeof(got)), n);
		assert_memory_equal(got, want, n);
		assert_int_equal(tcp_sum(got, n), 0xffff);
	}
	libnet_destroy(l);
}

/* ---- sending, in a private network namespace (root only) ---- */

static void lo_up(void)
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	strcpy(ifr.ifr_name, "lo");
	assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
	close(fd);
}

/* A packet socket on lo that sees what goes out (both families). */
static int lo_sniffer(void)
{
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL)), big = 16 << 20;

	assert_true(fd >= 0);
	sll.sll_ifindex = (int)if_nametoindex("lo");
	assert_int_equal(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)), 0);
	return fd;
}

/* The next packet we sent (not the kernel's RSTs, not the copies coming back in). */
static size_t next_sent(int fd, uint8_t *buf, size_t len)
{
	struct sockaddr_ll from;
	socklen_t fl;
	ssize_t r;

	for (;;) {
		fl = sizeof(from);
		r = recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (r < 0)
			return 0;
		if (from.sll_pkttype != PACKET_OUTGOING)
			continue;
		size_t iph = buf[0] >> 4 == 4 ? 20 : 40;
		if (!(buf[iph + 13] & TH_RST))
			return (size_t)r;
	}
}

#define NPKT 300

struct plan {
	struct addr_tuple ok4, bad4, ok6, bad6;
	struct sender_pkt pkts[NPKT];
	int want[NPKT];
};

/* Loopback (sent), no route (ENETUNREACH), unbuildable (EPROTO), mixed families and
 * kinds, so that failures fall inside and across sendmmsg batches of 64. */
static void make_plan(struct plan *pl)
{
	size_t i;

	tuple(&pl->ok4, AF_INET, "127.0.0.1", 5432, "127.0.0.2", 40000);
	tuple(&pl->bad4, AF_INET, "10.255.0.1", 5432, "10.255.0.2", 40000);
	tuple(&pl->ok6, AF_INET6, "::1", 443, "::1", 50000);
	tuple(&pl->bad6, AF_INET6, "2001:db8::1", 443, "2001:db8::2", 50000);
	for (i = 0; i < NPKT; i++) {
		struct sender_pkt *p = &pl->pkts[i];

		*p = (struct sender_pkt){.kind = i % 4 == 3 ? SENDER_SYN : SENDER_PROBE,
		                         .key = &pl->ok4,
		                         .seq = (uint32_t)i,
		                         .probe = {.seq = 1000 + (uint32_t)i,
		                                   .ack = 2000,
		                                   .window = 502,
		                                   .tsval = (uint32_t)i,
		                                   .has_ts = i % 2,
		                                   .payload_len = i % 3 != 0}};
		pl->want[i] = 0;
		if (i % 7 == 3 || i == 63 || i == 64 || i == 65)
			p->key = &pl->bad4, pl->want[i] = ENETUNREACH;
		else if (i % 5 == 1)
			p->key = &pl->ok6;
		else if (i % 13 == 2)
			p->key = &pl->bad6, pl->want[i] = ENETUNREACH;
		if (i % 11 == 5)
			p->kind = 7, pl->want[i] = EPROTO;
		else if (i % 17 == 9 && p->kind == SENDER_PROBE)
			p->probe.payload_len = 2, pl->want[i] = EPROTO;
	}
}

/* The next packet of a family that should have gone out, from *at on; NPKT when none. */
static size_t next_ok(const struct plan *pl, int family, size_t *at)
{
	for (; *at < NPKT; (*at)++)
		if (pl->pkts[*at].key->family == family && !pl->want[*at])
			return (*at)++;
	return NPKT;
}

/* Each packet that went out is on lo, in order within its family, as sender_build makes
 * it with the IPv4 ID it was given: one per built IPv4 packet, in array order, from a
 * random start (read from the first one). */
static void check_wire(int fd, const struct plan *pl)
{
	_Alignas(8) uint8_t want[SENDER_PKT_MAX], got[2048];
	uint16_t off[NPKT], id0 = 0, built4 = 0;
	size_t i, n, at4 = 0, at6 = 0, got_n = 0, want_n = 0;
	int have_id0 = 0;

	for (i = 0; i < NPKT; i++) {
		off[i] = built4;
		built4 += pl->pkts[i].key->family == AF_INET && pl->want[i] != EPROTO;
		want_n += !pl->want[i];
	}
	while ((n = next_sent(fd, got, sizeof(got))) > 0) {
		int v4 = got[0] >> 4 == 4;

		i = next_ok(pl, v4 ? AF_INET : AF_INET6, v4 ? &at4 : &at6);
		assert_true(i < NPKT);
		if (v4 && !have_id0)
			id0 = (uint16_t)((got[4] << 8 | got[5]) - off[i]), have_id0 = 1;
		assert_int_equal(
		    sender_build(&pl->pkts[i], (uint16_t)(id0 + off[i]), want, sizeof(want)), n);
		if (v4 && (uint16_t)(id0 + off[i]) == 0) { /* ID 0: the kernel picks one */
			memcpy(want + 4, got + 4, 2);
			memcpy(want + 10, got + 10, 2);
		}
		assert_memory_equal(got, want, n);
		got_n++;
	}
	assert_int_equal(got_n, want_n);
}

static void test_batch_in_netns(void **state)
{
	static struct plan pl;
	int errs[NPKT], fd;
	char err[256];
	struct sender *s;
	size_t i, ok = 0;

	(void)state;
	if (unshare(CLONE_NEWNET) != 0)
		skip(); /* not root: the pure tests above still ran */
	lo_up();
	fd = lo_sniffer();
	s = sender_open(err, sizeof(err));
	assert_non_null(s);
	make_plan(&pl);
	memset(errs, 0x55, sizeof(errs));
	for (i = 0; i < NPKT; i++)
		ok += !pl.want[i];
	assert_int_equal(sender_send_batch(s, pl.pkts, NPKT, errs), ok);
	for (i = 0; i < NPKT; i++)
		if (errs[i] != pl.want[i])
			fail_msg("packet %zu: errno %d, want %d", i, errs[i], pl.want[i]);
	check_wire(fd, &pl);
	/* a NULL key or one of no family: EPROTO, and the packet after still goes */
	pl.pkts[1] = (struct sender_pkt){.kind = SENDER_PROBE, .key = &pl.ok4};
	pl.pkts[0] = pl.pkts[1];
	pl.pkts[0].key = NULL;
	assert_int_equal(sender_send_batch(s, pl.pkts, 2, errs), 1);
	assert_int_equal(errs[0], EPROTO);
	assert_int_equal(errs[1], 0);
	pl.bad4.family = 0;
	pl.pkts[0].key = &pl.bad4;
	assert_int_equal(sender_send_batch(s, pl.pkts, 2, errs), 1);
	assert_int_equal(errs[0], EPROTO);
	assert_int_equal(errs[1], 0);
	pl.bad4.family = AF_INET;
	/* the single-packet calls are batches of one */
	assert_int_equal(sender_send(s, &pl.ok4, &pl.pkts[0].probe), 0);
	assert_int_equal(sender_send(s, &pl.bad6, &pl.pkts[0].probe), ENETUNREACH);
	assert_int_equal(sender_send_syn(s, &pl.ok6, 1), 0);
	assert_int_equal(sender_send_syn(s, &pl.bad4, 1), ENETUNREACH);
	pl.pkts[0].probe.payload_len = 2;
	assert_int_equal(sender_send(s, &pl.ok4, &pl.pkts[0].probe), EPROTO);
	sender_close(s);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v4_probe),       cmocka_unit_test(test_v4_probe_ts),
	    cmocka_unit_test(test_v4_syn),         cmocka_unit_test(test_v6),
	    cmocka_unit_test(test_refused),        cmocka_unit_test(test_same_as_libnet),
	    cmocka_unit_test(test_batch_in_netns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
