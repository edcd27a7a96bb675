/* test_codec.c: codec_decode on real captures (the pcap files in tests/fixtures) and on
 * hand-built byte arrays: truncation at every length, malformed and unsupported
 * inputs, VLAN, SLL/SLL2, IPv6 extension headers, ICMP quotes, and random bytes.
 * Buffers handed to the decoder are heap copies of exactly caplen bytes, so that
 * ASan reports any read past the captured length. Runs with cwd = repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "codec.h"

#define FIXTURES "tests/fixtures/"
#define MAX_PKTS 16
#define MAX_CAP  256

/* ---- helpers ---- */

struct pkt {
	size_t caplen, len;
	uint8_t data[MAX_CAP];
};

struct capture_file {
	int dlt;
	size_t n;
	struct pkt pkt[MAX_PKTS];
};

static void load(const char *name, struct capture_file *f)
{
	char path[256], errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *bytes;
	pcap_t *p;

	snprintf(path, sizeof(path), FIXTURES "%s", name);
	p = pcap_open_offline(path, errbuf);
	if (!p)
		fail_msg("%s: %s", path, errbuf);
	f->dlt = pcap_datalink(p);
	f->n = 0;
	while (pcap_next_ex(p, &h, &bytes) == 1) {
		assert_true(f->n < MAX_PKTS);
		assert_true(h->caplen <= MAX_CAP);
		f->pkt[f->n].caplen = h->caplen;
		f->pkt[f->n].len = h->len;
		memcpy(f->pkt[f->n].data, bytes, h->caplen);
		f->n++;
	}
	pcap_close(p);
}

/* Decodes an exact-size heap copy of the first caplen bytes of a frame that was wirelen
 * bytes long on the wire. */
static int decode_wire(int dlt, const uint8_t *data, size_t caplen, size_t wirelen,
                       struct codec_packet *out)
{
	uint8_t *copy = malloc(caplen ? caplen : 1);
	int r;

	assert_non_null(copy);
	if (caplen)
		memcpy(copy, data, caplen);
	r = codec_decode(dlt, caplen ? copy : NULL, caplen, wirelen, out);
	free(copy);
	return r;
}

/* Decodes the first caplen bytes of a frame whose wire length covers whatever its IP
 * header claims (the capture cut it, not the wire). */
static int decode(int dlt, const uint8_t *data, size_t caplen, struct codec_packet *out)
{
	return decode_wire(dlt, data, caplen, SIZE_MAX, out);
}

static const struct codec_tcp *decode_tcp(int dlt, const uint8_t *data, size_t caplen,
                                          struct codec_packet *out)
{
	assert_int_equal(decode(dlt, data, caplen, out), CODEC_TCP);
	assert_int_equal(out->kind, CODEC_TCP);
	return &out->tcp;
}

static void ip_of(const char *text, uint8_t out[16])
{
	memset(out, 0, 16);
	if (strchr(text, ':'))
		assert_int_equal(inet_pton(AF_INET6, text, out), 1);
	else
		assert_int_equal(inet_pton(AF_INET, text, out), 1);
}

static void assert_ip(const uint8_t got[16], const char *text)
{
	uint8_t want[16];

	ip_of(text, want);
	assert_memory_equal(got, want, 16);
}

/* ---- packet builders ---- */

#define ETH_LEN    14
#define IP4_LEN    20
#define IP6_LEN    40
#define TCP_LEN    20
#define TCP_TS_LEN 32
#define ICMP_LEN   8
#define TEST_TSVAL 0x11223344u
#define TEST_TSECR 0x55667788u
#define BUF        2048

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* Writes an address in its wire size (4 or 16 bytes). */
static void put_addr(uint8_t *p, const char *text)
{
	uint8_t a[16];

	ip_of(text, a);
	memcpy(p, a, strchr(text, ':') ? 16 : 4);
}

static size_t put_eth(uint8_t *p, uint16_t etype)
{
	static const uint8_t macs[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};

	memcpy(p, macs, 12);
	put16(p + 12, etype);
	return ETH_LEN;
}

static size_t put_ip4_from(uint8_t *p, uint8_t proto, size_t l4len, const char *src,
                           const char *dst)
{
	memset(p, 0, IP4_LEN);
	p[0] = 0x45;
	put16(p + 2, (uint16_t)(IP4_LEN + l4len));
	put16(p + 4, 0x1234);
	put16(p + 6, 0x4000); /* DF */
	p[8] = 64;
	p[9] = proto;
	put_addr(p + 12, src);
	put_addr(p + 16, dst);
	return IP4_LEN;
}

static size_t put_ip4(uint8_t *p, uint8_t proto, size_t l4len)
{
	return put_ip4_from(p, proto, l4len, "192.0.2.1", "192.0.2.2");
}

static size_t put_ip6_from(uint8_t *p, uint8_t next, size_t plen, const char *src, const char *dst)
{
	memset(p, 0, IP6_LEN);
	p[0] = 0x60;
	put16(p + 4, (uint16_t)plen);
	p[6] = next;
	p[7] = 64;
	put_addr(p + 8, src);
	put_addr(p + 24, dst);
	return IP6_LEN;
}

static size_t put_ip6(uint8_t *p, uint8_t next, size_t plen)
{
	return put_ip6_from(p, next, plen, "2001:db8::1", "2001:db8::2");
}

/* 40000 -> 8080, seq 1000, ack 2000, PSH|ACK, window 501; NOP NOP TS when ts. */
static size_t put_tcp(uint8_t *p, int ts)
{
	size_t len = ts ? TCP_TS_LEN : TCP_LEN;

	memset(p, 0, TCP_LEN);
	put16(p, 40000);
	put16(p + 2, 8080);
	put32(p + 4, 1000);
	put32(p + 8, 2000);
	p[12] = (uint8_t)(len / 4 << 4);
	p[13] = CODEC_TH_PUSH | CODEC_TH_ACK;
	put16(p + 14, 501);
	if (ts)
		assert_int_equal(codec_ts_option(TEST_TSVAL, TEST_TSECR, p + TCP_LEN), 12);
	return len;
}

/* Ethernet + IPv4 + TCP (+ TS) + payload. IPv4 at 14, TCP at 34. */
static size_t pkt_eth4(uint8_t *b, int ts, size_t payload)
{
	size_t tl = ts ? TCP_TS_LEN : TCP_LEN;
	size_t n = put_eth(b, 0x0800);

	n += put_ip4(b + n, 6, tl + payload);
	n += put_tcp(b + n, ts);
	memset(b + n, 'p', payload);
	return n + payload;
}

/* Ethernet + IPv6 + TCP (+ TS) + payload. IPv6 at 14, TCP at 54. */
static size_t pkt_eth6(uint8_t *b, int ts, size_t payload)
{
	size_t tl = ts ? TCP_TS_LEN : TCP_LEN;
	size_t n = put_eth(b, 0x86dd);

	n += put_ip6(b + n, 6, tl + payload);
	n += put_tcp(b + n, ts);
	memset(b + n, 'p', payload);
	return n + payload;
}

/* An extension header of 8 * (units) bytes at p announcing next. */
static size_t put_ext(uint8_t *p, uint8_t next, size_t units)
{
	memset(p, 1, 8 * units); /* PadN-looking filler, never parsed */
	p[0] = next;
	p[1] = (uint8_t)(units - 1);
	return 8 * units;
}

/* Ethernet + IPv6 + hop-by-hop (8) + routing (16) + dest opts (8) + TCP (TS) + 5 bytes.
 * TCP at 14 + 40 + 32 = 86. */
static size_t pkt_eth6_ext(uint8_t *b)
{
	size_t n = put_eth(b, 0x86dd);

	n += put_ip6(b + n, 0, 32 + TCP_TS_LEN + 5);
	n += put_ext(b + n, 43, 1);
	n += put_ext(b + n, 60, 2);
	n += put_ext(b + n, 6, 1);
	n += put_tcp(b + n, 1);
	memset(b + n, 'p', 5);
	return n + 5;
}

/* Ethernet + IPv4 ICMP (type, code) from 192.0.2.254 quoting an IPv4 TCP header
 * of quote_tcp bytes. Quoted IPv4 at 42, quoted TCP at 62. */
static size_t pkt_icmp4(uint8_t *b, uint8_t type, uint8_t code, size_t quote_tcp)
{
	size_t n = put_eth(b, 0x0800);

	n += put_ip4_from(b + n, 1, ICMP_LEN + IP4_LEN + quote_tcp, "192.0.2.254", "192.0.2.1");
	memset(b + n, 0, ICMP_LEN);
	b[n] = type;
	b[n + 1] = code;
	n += ICMP_LEN;
	n += put_ip4(b + n, 6, TCP_TS_LEN);
	put_tcp(b + n, 1);
	return n + quote_tcp;
}

/* Ethernet + IPv6 ICMPv6 from 2001:db8::fe quoting IPv6 (+ hop-by-hop when ext) TCP. */
static size_t pkt_icmp6(uint8_t *b, uint8_t type, uint8_t code, int ext, size_t quote_tcp)
{
	size_t n = put_eth(b, 0x86dd), q = IP6_LEN + (ext ? 8 : 0) + quote_tcp;

	n += put_ip6_from(b + n, 58, ICMP_LEN + q, "2001:db8::fe", "2001:db8::1");
	memset(b + n, 0, ICMP_LEN);
	b[n] = type;
	b[n + 1] = code;
	n += ICMP_LEN;
	n += put_ip6(b + n, ext ? 0 : 6, (ext ? 8 : 0) + TCP_TS_LEN);
	if (ext)
		n += put_ext(b + n, 6, 1);
	put_tcp(b + n, 1);
	return n + quote_tcp;
}

static void check_builder_tcp(const struct codec_tcp *t, int family, int ts, uint32_t payload)
{
	assert_int_equal(t->family, family);
	assert_int_equal(t->sport, 40000);
	assert_int_equal(t->dport, 8080);
	assert_int_equal(t->seq, 1000);
	assert_int_equal(t->ack, 2000);
	assert_int_equal(t->flags, CODEC_TH_PUSH | CODEC_TH_ACK);
	assert_int_equal(t->window, 501);
	assert_int_equal(t->payload_len, payload);
	assert_int_equal(t->has_ts, ts);
	assert_int_equal(t->tsval, ts ? TEST_TSVAL : 0);
	assert_int_equal(t->tsecr, ts ? TEST_TSECR : 0);
	assert_ip(t->src, family == AF_INET ? "192.0.2.1" : "2001:db8::1");
	assert_ip(t->dst, family == AF_INET ? "192.0.2.2" : "2001:db8::2");
}

static void check_quote(const struct codec_icmp *ic, int family)
{
	assert_int_equal(ic->family, family);
	assert_ip(ic->from, family == AF_INET ? "192.0.2.254" : "2001:db8::fe");
	assert_ip(ic->src, family == AF_INET ? "192.0.2.1" : "2001:db8::1");
	assert_ip(ic->dst, family == AF_INET ? "192.0.2.2" : "2001:db8::2");
	assert_int_equal(ic->sport, 40000);
	assert_int_equal(ic->dport, 8080);
	assert_int_equal(ic->seq, 1000);
}

static int expect(int dlt, const uint8_t *b, size_t n)
{
	struct codec_packet out;

	return decode(dlt, b, n, &out);
}

/* ---- encoders and names ---- */

static void test_ts_option(void **state)
{
	static const uint8_t want[12] = {1,    1,    8,    10,   0x11, 0x22,
	                                 0x33, 0x44, 0xfe, 0xdc, 0xba, 0x98};
	uint8_t opt[12];

	(void)state;
	assert_int_equal(codec_ts_option(0x11223344u, 0xfedcba98u, opt), 12);
	assert_memory_equal(opt, want, 12);
}

static void test_error_names(void **state)
{
	(void)state;
	assert_string_equal(codec_error_name(CODEC_E_TRUNCATED), "truncated");
	assert_string_equal(codec_error_name(CODEC_E_MALFORMED), "malformed");
	assert_string_equal(codec_error_name(CODEC_E_UNSUPPORTED), "unsupported");
	assert_non_null(codec_error_name(-99));
	assert_non_null(codec_error_name(CODEC_TCP));
}

static void test_icmp_names(void **state)
{
	static const char *const v4[14] = {
	    [0] = "net-unreachable",  [1] = "host-unreachable",  [2] = "protocol-unreachable",
	    [3] = "port-unreachable", [4] = "frag-needed",       [9] = "net-prohibited",
	    [10] = "host-prohibited", [13] = "admin-prohibited",
	};
	static const char *const v6[7] = {"no-route",         "admin-prohibited", "beyond-scope",
	                                  "addr-unreachable", "port-unreachable", "policy-fail",
	                                  "reject-route"};

	(void)state;
	for (uint8_t c = 0; c < 14; c++)
		if (v4[c])
			assert_string_equal(codec_icmp_name(AF_INET, 3, c), v4[c]);
	for (uint8_t c = 0; c < 7; c++)
		assert_string_equal(codec_icmp_name(AF_INET6, 1, c), v6[c]);
	assert_string_equal(codec_icmp_name(AF_INET, 11, 0), "time-exceeded");
	assert_string_equal(codec_icmp_name(AF_INET, 11, 1), "time-exceeded");
	assert_string_equal(codec_icmp_name(AF_INET6, 3, 0), "time-exceeded");
	assert_string_equal(codec_icmp_name(AF_INET, 3, 5), "type-3-code-5");
	assert_string_equal(codec_icmp_name(AF_INET, 3, 14), "type-3-code-14");
	assert_string_equal(codec_icmp_name(AF_INET, 8, 0), "type-8-code-0");
	assert_string_equal(codec_icmp_name(AF_INET6, 1, 7), "type-1-code-7");
	assert_string_equal(codec_icmp_name(AF_INET6, 128, 0), "type-128-code-0");
	assert_string_equal(codec_icmp_name(AF_INET6, 11, 0), "type-11-code-0");
	assert_string_equal(codec_icmp_name(AF_INET, 255, 255), "type-255-code-255");
}

/* ---- byte arrays: good packets ---- */

static void test_eth4(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth4(b, 1, 10);
	const struct codec_tcp *t = decode_tcp(CODEC_DLT_EN10MB, b, n, &out);

	(void)state;
	check_builder_tcp(t, AF_INET, 1, 10);
	assert_int_equal(t->ip_id, 0x1234);
	assert_int_equal(t->pkttype, CODEC_PKT_UNKNOWN);
	n = pkt_eth4(b, 0, 0);
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET, 0, 0);
}

static void test_eth6(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth6(b, 1, 3);
	const struct codec_tcp *t = decode_tcp(CODEC_DLT_EN10MB, b, n, &out);

	(void)state;
	check_builder_tcp(t, AF_INET6, 1, 3);
	assert_int_equal(t->ip_id, 0);
	assert_int_equal(t->pkttype, CODEC_PKT_UNKNOWN);
}

/* The payload length comes from the IP header, not from what was captured. */
static void test_payload_from_ip_length(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n4 = pkt_eth4(b, 1, 1400);

	(void)state;
	assert_int_equal(n4, 14 + 20 + 32 + 1400);
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, 96, &out), AF_INET, 1, 1400);
	pkt_eth6(b, 1, 1200);
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, 86, &out), AF_INET6, 1, 1200);
}

/* Bytes after the IP total length (Ethernet padding) are not TCP options or payload. */
static void test_ethernet_padding(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth4(b, 0, 0);

	(void)state;
	assert_int_equal(n, 54);
	codec_ts_option(7, 8, b + n); /* the padding looks like a TS option */
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n + 12, &out), AF_INET, 0, 0);
	b[34 + 12] = 0x80; /* doff 8 would take the padding as options: beyond the IP length */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n + 12), CODEC_E_MALFORMED);
}

static void test_raw_aliases(void **state)
{
	static const int dlts[] = {CODEC_DLT_RAW, 14, 101};
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n4, n6;

	(void)state;
	n4 = pkt_eth4(b, 1, 2) - ETH_LEN;
	n6 = pkt_eth6(b + 100, 1, 4) - ETH_LEN;
	for (size_t i = 0; i < 3; i++) {
		check_builder_tcp(decode_tcp(dlts[i], b + ETH_LEN, n4, &out), AF_INET, 1, 2);
		assert_int_equal(out.tcp.pkttype, CODEC_PKT_UNKNOWN);
		check_builder_tcp(decode_tcp(dlts[i], b + 100 + ETH_LEN, n6, &out), AF_INET6, 1, 4);
		assert_int_equal(expect(dlts[i], b, 0), CODEC_E_TRUNCATED);
	}
	b[ETH_LEN] = 0x55;
	assert_int_equal(expect(CODEC_DLT_RAW, b + ETH_LEN, n4), CODEC_E_MALFORMED);
	assert_int_equal(expect(105, b, n4), CODEC_E_UNSUPPORTED);
	assert_int_equal(expect(0, b, n4), CODEC_E_UNSUPPORTED);
	assert_int_equal(expect(-1, b, n4), CODEC_E_UNSUPPORTED);
}

static void test_vlan(void **state)
{
	uint8_t plain[BUF], b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth4(plain, 1, 7);

	(void)state;
	memcpy(b, plain, 12);
	put16(b + 12, 0x8100);
	put16(b + 14, 42); /* VLAN 42 */
	memcpy(b + 16, plain + 12, n - 12);
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n + 4, &out), AF_INET, 1, 7);
	for (size_t len = 0; len < 14 + 4 + 20 + 20; len++)
		assert_int_equal(expect(CODEC_DLT_EN10MB, b, len), CODEC_E_TRUNCATED);
	put16(b + 12, 0x88a8); /* 802.1ad, one tag */
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n + 4, &out), AF_INET, 1, 7);
	put16(b + 16, 0x8100); /* a second tag: not handled */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n + 4), CODEC_E_UNSUPPORTED);
}

static size_t put_sll(uint8_t *p, uint16_t pkttype, uint16_t proto)
{
	memset(p, 0, 16);
	put16(p, pkttype);
	put16(p + 2, 1); /* ARPHRD_ETHER */
	put16(p + 4, 6); /* address length */
	p[6] = 2;        /* address */
	put16(p + 14, proto);
	return 16;
}

static size_t put_sll2(uint8_t *p, uint8_t pkttype, uint16_t proto)
{
	memset(p, 0, 20);
	put16(p, proto);
	put32(p + 4, 7); /* ifindex */
	put16(p + 8, 1); /* ARPHRD_ETHER */
	p[10] = pkttype;
	p[11] = 6;
	return 20;
}

static void test_sll(void **state)
{
	uint8_t ip[BUF], b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth4(ip, 1, 1) - ETH_LEN;

	(void)state;
	memcpy(b + put_sll(b, CODEC_PKT_OUTGOING, 0x0800), ip + ETH_LEN, n);
	check_builder_tcp(decode_tcp(CODEC_DLT_LINUX_SLL, b, n + 16, &out), AF_INET, 1, 1);
	assert_int_equal(out.tcp.pkttype, CODEC_PKT_OUTGOING);
	put_sll(b, CODEC_PKT_HOST, 0x0800);
	decode_tcp(CODEC_DLT_LINUX_SLL, b, n + 16, &out);
	assert_int_equal(out.tcp.pkttype, CODEC_PKT_HOST);
	put_sll(b, 0x1234, 0x0800); /* not a packet type: unknown */
	decode_tcp(CODEC_DLT_LINUX_SLL, b, n + 16, &out);
	assert_int_equal(out.tcp.pkttype, CODEC_PKT_UNKNOWN);
	for (size_t len = 0; len < 16 + 20 + 20; len++)
		assert_int_equal(expect(CODEC_DLT_LINUX_SLL, b, len), CODEC_E_TRUNCATED);
	put_sll(b, CODEC_PKT_HOST, 0x0806);
	assert_int_equal(expect(CODEC_DLT_LINUX_SLL, b, n + 16), CODEC_E_UNSUPPORTED);
}

static void test_sll2(void **state)
{
	uint8_t ip[BUF], b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth6(ip, 1, 9) - ETH_LEN;

	(void)state;
	memcpy(b + put_sll2(b, CODEC_PKT_OUTGOING, 0x86dd), ip + ETH_LEN, n);
	check_builder_tcp(decode_tcp(CODEC_DLT_LINUX_SLL2, b, n + 20, &out), AF_INET6, 1, 9);
	assert_int_equal(out.tcp.pkttype, CODEC_PKT_OUTGOING);
	assert_int_equal(out.tcp.ifindex, 7);
	put_sll2(b, CODEC_PKT_HOST, 0x86dd);
	decode_tcp(CODEC_DLT_LINUX_SLL2, b, n + 20, &out);
	assert_int_equal(out.tcp.pkttype, CODEC_PKT_HOST);
	memcpy(b + put_sll(b, CODEC_PKT_HOST, 0x86dd), ip + ETH_LEN, n);
	decode_tcp(CODEC_DLT_LINUX_SLL, b, n + 16, &out);
	assert_int_equal(out.tcp.ifindex, 0); /* SLL carries none */
	memcpy(b + put_sll2(b, CODEC_PKT_HOST, 0x86dd), ip + ETH_LEN, n);
	for (size_t len = 0; len < 20 + 40 + 20; len++)
		assert_int_equal(expect(CODEC_DLT_LINUX_SLL2, b, len), CODEC_E_TRUNCATED);
	put_sll2(b, CODEC_PKT_HOST, 0x0800); /* says IPv4, holds IPv6 */
	assert_int_equal(expect(CODEC_DLT_LINUX_SLL2, b, n + 20), CODEC_E_MALFORMED);
	put_sll2(b, CODEC_PKT_HOST, 0x0806);
	assert_int_equal(expect(CODEC_DLT_LINUX_SLL2, b, n + 20), CODEC_E_UNSUPPORTED);
}

static void test_ipv6_ext_headers(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth6_ext(b);

	(void)state;
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET6, 1, 5);
	/* The routing header (at 62) claims more than the payload length holds. */
	b[63] = 20;
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[63] = 1;
	/* Payload length too short for the TCP header after the extensions. */
	put16(b + 18, 32 + 10);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	put16(b + 18, 30); /* ... or even for the extension headers */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	put16(b + 18, 32 + 32 + 5);
	/* No next header (59) and an unknown one (ESP, 50). */
	b[86 - 8] = 59;
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[86 - 8] = 50;
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[86 - 8] = 6;
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET6, 1, 5);
}

/* Nine destination-options headers: more than the walker follows. */
static void test_ipv6_ext_chain(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = put_eth(b, 0x86dd), k;

	(void)state;
	for (k = 1; k <= 9; k++) {
		n = ETH_LEN + put_ip6(b + ETH_LEN, 60, 8 * k + TCP_LEN);
		for (size_t i = 0; i < k; i++)
			n += put_ext(b + n, i + 1 < k ? 60 : 6, 1);
		n += put_tcp(b + n, 0);
		if (k < 9)
			check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET6, 0, 0);
		else
			assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	}
}

static void test_ipv6_fragment(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = put_eth(b, 0x86dd);

	(void)state;
	n += put_ip6(b + n, 44, 8 + TCP_TS_LEN + 100);
	memset(b + n, 0, 8);
	b[n] = 6;
	put16(b + n + 2, 0x0001); /* offset 0, more fragments */
	put32(b + n + 4, 0xabcd);
	n += 8;
	n += put_tcp(b + n, 1);
	/* A first fragment: decoded, payload_len is this fragment's. */
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET6, 1, 100);
	put16(b + 56, 0x0009); /* offset 8 bytes: no TCP header here */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	put16(b + 56, 0x0001);
	b[54] = 17; /* a fragmented UDP datagram */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[54] = 58; /* a fragmented ICMPv6 message */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[54] = 6;
	for (size_t len = 0; len < 14 + 40 + 8 + 20; len++)
		assert_int_equal(expect(CODEC_DLT_EN10MB, b, len), CODEC_E_TRUNCATED);
}

static void test_ipv4_options_and_fragments(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = put_eth(b, 0x0800);

	(void)state;
	n += put_ip4(b + n, 6, 4 + TCP_TS_LEN);
	b[14] = 0x46; /* IHL 6: one word of options */
	put16(b + 16, 24 + 32);
	memset(b + n, 1, 4); /* four NOPs */
	n += 4;
	n += put_tcp(b + n, 1);
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET, 1, 0);
	for (size_t len = 0; len < 14 + 24 + 20; len++)
		assert_int_equal(expect(CODEC_DLT_EN10MB, b, len), CODEC_E_TRUNCATED);
	put16(b + 20, 0x2000); /* MF, offset 0: a first fragment, decoded */
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET, 1, 0);
	put16(b + 20, 0x0001); /* offset 8: no TCP header */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	put16(b + 20, 0x3fff);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
}

/* ---- byte arrays: truncation at every length ---- */

/* Every prefix shorter than hdr_end is TRUNCATED; longer ones decode to the full
 * packet's kind, with the timestamp appearing once ts_end bytes are there. */
static void truncation_loop(int dlt, const uint8_t *b, size_t n, size_t hdr_end, size_t ts_end)
{
	struct codec_packet full, out;
	int kind = decode(dlt, b, n, &full);

	assert_true(kind > 0);
	for (size_t len = 0; len <= n; len++) {
		int r = decode(dlt, b, len, &out);

		if (len < hdr_end) {
			assert_int_equal(r, CODEC_E_TRUNCATED);
			continue;
		}
		assert_int_equal(r, kind);
		if (kind == CODEC_ICMP) {
			assert_memory_equal(&out.icmp, &full.icmp, sizeof(full.icmp));
			continue;
		}
		assert_int_equal(out.tcp.has_ts, len >= ts_end);
		if (len >= ts_end)
			assert_memory_equal(&out.tcp, &full.tcp, sizeof(full.tcp));
		assert_int_equal(out.tcp.seq, full.tcp.seq);
		assert_int_equal(out.tcp.payload_len, full.tcp.payload_len);
	}
}

static void test_truncation_every_length(void **state)
{
	uint8_t b[BUF], ip[BUF];
	size_t n;

	(void)state;
	n = pkt_eth4(b, 1, 10);
	truncation_loop(CODEC_DLT_EN10MB, b, n, 14 + 20 + 20, 14 + 20 + 32);
	n = pkt_eth6(b, 1, 10);
	truncation_loop(CODEC_DLT_EN10MB, b, n, 14 + 40 + 20, 14 + 40 + 32);
	n = pkt_eth6_ext(b);
	truncation_loop(CODEC_DLT_EN10MB, b, n, 86 + 20, 86 + 32);
	n = pkt_eth4(ip, 1, 0) - ETH_LEN;
	truncation_loop(CODEC_DLT_RAW, ip + ETH_LEN, n, 20 + 20, 20 + 32);
	memcpy(b + put_sll(b, CODEC_PKT_HOST, 0x0800), ip + ETH_LEN, n);
	truncation_loop(CODEC_DLT_LINUX_SLL, b, n + 16, 16 + 20 + 20, 16 + 20 + 32);
	n = pkt_eth6(ip, 1, 0) - ETH_LEN;
	memcpy(b + put_sll2(b, CODEC_PKT_HOST, 0x86dd), ip + ETH_LEN, n);
	truncation_loop(CODEC_DLT_LINUX_SLL2, b, n + 20, 20 + 40 + 20, 20 + 40 + 32);
	n = pkt_icmp4(b, 3, 1, TCP_TS_LEN);
	truncation_loop(CODEC_DLT_EN10MB, b, n, 14 + 20 + 8 + 20 + 8, 0);
	n = pkt_icmp6(b, 1, 3, 1, TCP_TS_LEN);
	truncation_loop(CODEC_DLT_EN10MB, b, n, 14 + 40 + 8 + 40 + 8 + 8, 0);
}

/* Options cut by the capture: the segment decodes, without its timestamp. */
static void test_options_cut_by_caplen(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth4(b, 1, 100);

	(void)state;
	for (size_t len = 54; len < 66; len++) {
		const struct codec_tcp *t = decode_tcp(CODEC_DLT_EN10MB, b, len, &out);

		assert_int_equal(t->has_ts, 0);
		assert_int_equal(t->payload_len, 100);
	}
	assert_int_equal(decode_tcp(CODEC_DLT_EN10MB, b, 66, &out)->has_ts, 1);
	assert_int_equal(decode_tcp(CODEC_DLT_EN10MB, b, n, &out)->tsecr, TEST_TSECR);
}

/* ---- byte arrays: malformed ---- */

static void test_malformed_ipv4(void **state)
{
	uint8_t b[BUF];
	size_t n = pkt_eth4(b, 1, 4);

	(void)state;
	b[14] = 0x55; /* version 5 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x65; /* version 6 under the IPv4 Ethernet type */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x44; /* IHL 4 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x40;
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x45;
	put16(b + 16, 19); /* total length < header */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x4f; /* IHL 15 = 60 > total length 56 */
	put16(b + 16, 56);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x45;
	put16(b + 16, 20 + 19); /* no room for a TCP header */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	put16(b + 16, 0);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
}

static void test_malformed_ipv6(void **state)
{
	uint8_t b[BUF];
	size_t n = pkt_eth6(b, 1, 4);

	(void)state;
	b[14] = 0x40; /* version 4 under the IPv6 Ethernet type */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[14] = 0x60;
	put16(b + 18, 19); /* payload length < TCP header */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	put16(b + 18, 0);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	put16(b + 18, 31); /* < doff 8 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
}

static void test_malformed_tcp_doff(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_eth4(b, 1, 4);

	(void)state;
	for (uint8_t doff = 0; doff < 5; doff++) {
		b[34 + 12] = (uint8_t)(doff << 4);
		assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	}
	b[34 + 12] = 0x90; /* 36 bytes: fits the IP length 36 + 0 after shrinking */
	put16(b + 16, 20 + 36);
	b[34 + 32] = 1; /* a NOP where the payload was */
	b[34 + 33] = 1;
	b[34 + 34] = 1;
	b[34 + 35] = 0;
	check_builder_tcp(decode_tcp(CODEC_DLT_EN10MB, b, n, &out), AF_INET, 1, 0);
	b[34 + 12] = 0xa0; /* 40 bytes > IP payload 36 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[34 + 12] = 0xf0;
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
}

/* A 32-byte TCP header whose 12 option bytes are opt. */
static int decode_opts(const uint8_t opt[12], struct codec_packet *out)
{
	uint8_t b[BUF];
	size_t n = pkt_eth4(b, 1, 0);

	memcpy(b + 34 + 20, opt, 12);
	return decode(CODEC_DLT_EN10MB, b, n, out);
}

static void test_tcp_options(void **state)
{
	static const uint8_t len0[12] = {1, 1, 30, 0};
	static const uint8_t len1[12] = {30, 1, 1, 1};
	static const uint8_t past[12] = {1, 1, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0};
	static const uint8_t last[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 30};
	static const uint8_t eol[12] = {0, 0, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};
	static const uint8_t other[12] = {30, 2, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6};
	static const uint8_t tslen[12] = {1, 1, 8, 8, 0, 0, 0, 1, 0, 0, 1, 1};
	static const uint8_t fill[12] = {2, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t ts_bad[12] = {8, 10, 0, 0, 0, 7, 0, 0, 0, 8, 30, 1};
	struct codec_packet out;

	(void)state;
	/* A malformed option ends the option parsing, not the segment (as Linux). */
	assert_int_equal(decode_opts(len0, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
	assert_int_equal(out.tcp.seq, 1000);
	assert_int_equal(decode_opts(len1, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
	assert_int_equal(decode_opts(past, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
	assert_int_equal(decode_opts(last, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
	assert_int_equal(decode_opts(ts_bad, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 1); /* read before the bad option: kept */
	assert_int_equal(out.tcp.tsval, 7);
	assert_int_equal(decode_opts(eol, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
	assert_int_equal(decode_opts(other, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 1);
	assert_int_equal(out.tcp.tsval, 5);
	assert_int_equal(out.tcp.tsecr, 6);
	assert_int_equal(decode_opts(tslen, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
	assert_int_equal(decode_opts(fill, &out), CODEC_TCP);
	assert_int_equal(out.tcp.has_ts, 0);
}

/* The payload length is the IP header's, cut to what the wire length allows: a 54-byte
 * frame whose IP header claims 65 000 bytes carries no payload. */
static void test_wire_length(void **state)
{
	uint8_t b[BUF];
	size_t n = pkt_eth4(b, 0, 0);
	struct codec_packet out;

	(void)state;
	assert_int_equal(n, 54);
	put16(b + 14 + 2, 65000);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, n, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 0);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, 60, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 6); /* 6 more bytes on the wire */
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, 0, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 0); /* below caplen: caplen */
	/* Ethernet padding: the wire holds more than the IP length; the IP length wins. */
	n = pkt_eth4(b, 0, 2);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, 60, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 2);
	/* IPv6: the payload length field is cut the same way. */
	n = pkt_eth6(b, 0, 0);
	put16(b + 14 + 4, 65000);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, n, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 0);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, n + 100, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 100);
	/* A TCP header longer than the wire allows is malformed. */
	n = pkt_eth4(b, 1, 0);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, n, n, &out), CODEC_TCP);
	assert_int_equal(decode_wire(CODEC_DLT_EN10MB, b, 54, 54, &out), CODEC_E_MALFORMED);
}

/* ---- byte arrays: unsupported ---- */

static void test_unsupported(void **state)
{
	uint8_t b[BUF];
	size_t n = pkt_eth4(b, 0, 8);

	(void)state;
	b[14 + 9] = 17; /* UDP */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[14 + 9] = 58; /* ICMPv6 over IPv4 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	put16(b + 12, 0x0806); /* ARP */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, 42), CODEC_E_UNSUPPORTED);
	put16(b + 12, 0x88cc); /* LLDP */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_eth6(b, 0, 8);
	b[14 + 6] = 17;
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[14 + 6] = 1; /* ICMP (v4) over IPv6 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_icmp4(b, 8, 0, 8); /* echo request */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_icmp4(b, 0, 0, 8); /* echo reply */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_icmp4(b, 5, 1, 8); /* redirect */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_icmp6(b, 128, 0, 0, 8); /* echo request */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_icmp6(b, 135, 0, 0, 8); /* neighbour solicitation */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	n = pkt_icmp6(b, 2, 0, 0, 8); /* packet too big */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
}

/* ---- byte arrays: ICMP errors ---- */

static void test_icmp4_quote(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_icmp4(b, 3, 13, 8);

	(void)state;
	assert_int_equal(decode(CODEC_DLT_EN10MB, b, n, &out), CODEC_ICMP);
	assert_int_equal(out.kind, CODEC_ICMP);
	check_quote(&out.icmp, AF_INET);
	assert_int_equal(out.icmp.type, 3);
	assert_int_equal(out.icmp.code, 13);
	assert_int_equal(out.icmp.pkttype, CODEC_PKT_UNKNOWN);
	assert_string_equal(codec_icmp_name(AF_INET, out.icmp.type, out.icmp.code),
	                    "admin-prohibited");
	n = pkt_icmp4(b, 11, 0, TCP_TS_LEN);
	assert_int_equal(decode(CODEC_DLT_EN10MB, b, n, &out), CODEC_ICMP);
	check_quote(&out.icmp, AF_INET);
	assert_int_equal(out.icmp.type, 11);
	n = pkt_icmp4(b, 3, 1, 7); /* quote one byte too short */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_TRUNCATED);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, 14 + 20 + 8 + 19), CODEC_E_TRUNCATED);
}

static void test_icmp4_quote_bad(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_icmp4(b, 3, 1, 8);

	(void)state;
	b[42 + 9] = 17; /* quotes UDP */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[42 + 9] = 6;
	put16(b + 42 + 6, 0x0010); /* quotes a later fragment */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	put16(b + 42 + 6, 0x4000);
	b[42] = 0x65; /* quoted version 6 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[42] = 0x43; /* quoted IHL 3 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	b[42] = 0x46; /* quoted IHL 6: 4 more bytes before TCP, which the quote lacks */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_TRUNCATED);
	n = pkt_icmp4(b, 3, 1, 12);
	memmove(b + 62 + 4, b + 62, 8); /* quoted IPv4 options: TCP moves by 4 */
	b[42] = 0x46;
	assert_int_equal(decode(CODEC_DLT_EN10MB, b, n, &out), CODEC_ICMP);
	check_quote(&out.icmp, AF_INET);
	put16(b + 16, 20 + 7); /* IP length leaves no room for the ICMP header */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
	put16(b + 16, 20 + 8 + 20 + 4); /* IP length cuts the quote */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_TRUNCATED);
}

static void test_icmp6_quote(void **state)
{
	uint8_t b[BUF];
	struct codec_packet out;
	size_t n = pkt_icmp6(b, 1, 4, 0, 8);

	(void)state;
	assert_int_equal(decode(CODEC_DLT_EN10MB, b, n, &out), CODEC_ICMP);
	check_quote(&out.icmp, AF_INET6);
	assert_int_equal(out.icmp.type, 1);
	assert_int_equal(out.icmp.code, 4);
	n = pkt_icmp6(b, 3, 0, 1, TCP_TS_LEN); /* time exceeded, quote with hop-by-hop */
	assert_int_equal(decode(CODEC_DLT_EN10MB, b, n, &out), CODEC_ICMP);
	check_quote(&out.icmp, AF_INET6);
	assert_int_equal(out.icmp.type, 3);
	assert_string_equal(codec_icmp_name(AF_INET6, 3, 0), "time-exceeded");
	n = pkt_icmp6(b, 1, 0, 0, 7);
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_TRUNCATED);
	n = pkt_icmp6(b, 1, 0, 1, 8);
	b[62 + 41] = 2; /* quoted hop-by-hop of 24 bytes: longer than the quote */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_TRUNCATED);
	b[62 + 41] = 0;
	b[62 + 40] = 17; /* quotes UDP */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_UNSUPPORTED);
	b[62 + 40] = 6;
	b[62] = 0x40; /* quoted version 4 */
	assert_int_equal(expect(CODEC_DLT_EN10MB, b, n), CODEC_E_MALFORMED);
}

/* ---- fixtures: whole connections ---- */

struct conv {
	const char *file;
	int dlt, family;
	const char *client, *server;
	uint16_t cport;
	uint32_t client_bytes;
	int ts;
	int sll; /* pkttype OUTGOING for the client's segments, HOST for the server's */
};

#define CONV_PKTS 10

static int from_client(const struct conv *c, const struct codec_tcp *t)
{
	return t->sport == c->cport;
}

static void check_endpoints(const struct conv *c, const struct codec_tcp *t)
{
	int cl = from_client(c, t);

	assert_int_equal(t->family, c->family);
	assert_int_equal(cl ? t->dport : t->sport, 8080);
	assert_int_equal(cl ? t->sport : t->dport, c->cport);
	assert_ip(t->src, cl ? c->client : c->server);
	assert_ip(t->dst, cl ? c->server : c->client);
	if (c->sll)
		assert_int_equal(t->pkttype, cl ? CODEC_PKT_OUTGOING : CODEC_PKT_HOST);
	else
		assert_int_equal(t->pkttype, CODEC_PKT_UNKNOWN);
	if (c->family == AF_INET6)
		assert_int_equal(t->ip_id, 0);
}

static void check_handshake(const struct codec_tcp *t)
{
	assert_int_equal(t[0].flags, CODEC_TH_SYN);
	assert_int_equal(t[0].ack, 0);
	assert_int_equal(t[1].flags, CODEC_TH_SYN | CODEC_TH_ACK);
	assert_int_equal(t[1].ack, t[0].seq + 1);
	assert_int_equal(t[2].flags, CODEC_TH_ACK);
	assert_int_equal(t[2].seq, t[0].seq + 1);
	assert_int_equal(t[2].ack, t[1].seq + 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(t[i].payload_len, 0);
}

/* Data one way each, then the client's FIN, the server's FIN and the last ACK. */
static void check_flow(const struct conv *c, const struct codec_tcp *t)
{
	uint32_t isn_c = t[0].seq, isn_s = t[1].seq, end_c = isn_c + 1 + c->client_bytes;
	int data_c = 0, data_s = 0, fin_c = 0, fin_s = 0;

	for (int i = 3; i < CONV_PKTS; i++) {
		int cl = from_client(c, &t[i]);

		assert_true(t[i].flags & CODEC_TH_ACK);
		assert_false(t[i].flags & (CODEC_TH_SYN | CODEC_TH_RST | CODEC_TH_URG));
		if (t[i].payload_len && cl) {
			assert_int_equal(t[i].seq, isn_c + 1);
			assert_int_equal(t[i].payload_len, c->client_bytes);
			data_c++;
		} else if (t[i].payload_len) {
			assert_int_equal(t[i].seq, isn_s + 1);
			assert_int_equal(t[i].payload_len, 6);
			assert_int_equal(t[i].ack, end_c);
			data_s++;
		}
		if ((t[i].flags & CODEC_TH_FIN) && cl) {
			assert_int_equal(t[i].seq, end_c);
			fin_c++;
		} else if (t[i].flags & CODEC_TH_FIN) {
			assert_int_equal(t[i].seq, isn_s + 7);
			assert_int_equal(t[i].ack, end_c + 1);
			fin_s++;
		}
	}
	assert_true(data_c == 1 && data_s == 1 && fin_c == 1 && fin_s == 1);
	assert_true(from_client(c, &t[CONV_PKTS - 1]));
	assert_int_equal(t[CONV_PKTS - 1].flags, CODEC_TH_ACK);
	assert_int_equal(t[CONV_PKTS - 1].ack, isn_s + 8);
}

/* Each TSecr echoes a TSval the other side sent earlier. */
static void check_timestamps(const struct conv *c, const struct codec_tcp *t)
{
	for (int i = 0; i < CONV_PKTS; i++) {
		int echoed = 0;

		assert_int_equal(t[i].has_ts, c->ts);
		if (!c->ts) {
			assert_int_equal(t[i].tsval, 0);
			assert_int_equal(t[i].tsecr, 0);
			continue;
		}
		assert_int_not_equal(t[i].tsval, 0);
		for (int j = 0; j < i; j++)
			if (from_client(c, &t[j]) != from_client(c, &t[i]) &&
			    t[j].tsval == t[i].tsecr)
				echoed = 1;
		assert_true(i == 0 ? t[i].tsecr == 0 : echoed);
	}
	if (c->ts)
		assert_int_equal(t[1].tsecr, t[0].tsval);
}

/* The client's IPv4 IDs count up: by one per segment, by more after a GSO burst. */
static void check_ip_ids(const struct conv *c, const struct codec_tcp *t)
{
	int prev = -1;

	if (c->family != AF_INET)
		return;
	assert_int_equal(t[1].ip_id, 0); /* Linux sends SYN-ACKs with ID 0 */
	for (int i = 0; i < CONV_PKTS; i++) {
		if (!from_client(c, &t[i]))
			continue;
		if (prev >= 0)
			assert_in_range((uint16_t)(t[i].ip_id - prev), 1, 4);
		prev = t[i].ip_id;
	}
}

static void check_conversation(const struct conv *c)
{
	struct capture_file f;
	struct codec_packet out[CONV_PKTS];
	struct codec_tcp t[CONV_PKTS];

	load(c->file, &f);
	assert_int_equal(f.dlt, c->dlt);
	assert_int_equal(f.n, CONV_PKTS);
	for (size_t i = 0; i < f.n; i++) {
		t[i] = *decode_tcp(f.dlt, f.pkt[i].data, f.pkt[i].caplen, &out[i]);
		check_endpoints(c, &t[i]);
	}
	assert_true(from_client(c, &t[0]));
	check_handshake(t);
	check_flow(c, t);
	check_timestamps(c, t);
	check_ip_ids(c, t);
}

static void test_fixture_ipv4_eth(void **state)
{
	static const struct conv c = {"ipv4-eth-handshake.pcap",
	                              CODEC_DLT_EN10MB,
	                              AF_INET,
	                              "192.0.2.1",
	                              "192.0.2.2",
	                              40001,
	                              6,
	                              1,
	                              0};

	(void)state;
	check_conversation(&c);
}

static void test_fixture_ipv6_eth(void **state)
{
	static const struct conv c = {"ipv6-eth-handshake.pcap",
	                              CODEC_DLT_EN10MB,
	                              AF_INET6,
	                              "2001:db8::1",
	                              "2001:db8::2",
	                              40002,
	                              6,
	                              1,
	                              0};

	(void)state;
	check_conversation(&c);
}

static void test_fixture_ipv4_sll(void **state)
{
	static const struct conv c = {"ipv4-sll-any.pcap",
	                              CODEC_DLT_LINUX_SLL,
	                              AF_INET,
	                              "192.0.2.1",
	                              "192.0.2.2",
	                              40003,
	                              6,
	                              1,
	                              1};

	(void)state;
	check_conversation(&c);
}

static void test_fixture_ipv6_sll2(void **state)
{
	static const struct conv c = {"ipv6-sll2-any.pcap",
	                              CODEC_DLT_LINUX_SLL2,
	                              AF_INET6,
	                              "2001:db8::1",
	                              "2001:db8::2",
	                              40004,
	                              6,
	                              1,
	                              1};

	(void)state;
	check_conversation(&c);
}

static void test_fixture_no_timestamps(void **state)
{
	static const struct conv c = {"ipv4-eth-no-timestamps.pcap",
	                              CODEC_DLT_EN10MB,
	                              AF_INET,
	                              "192.0.2.1",
	                              "192.0.2.2",
	                              40005,
	                              6,
	                              0,
	                              0};

	(void)state;
	check_conversation(&c);
}

/* A 2006-byte segment captured as 256 bytes: the payload length is still 2006. */
static void test_fixture_snaplen_cut(void **state)
{
	static const struct conv c = {"ipv4-eth-snaplen-cut.pcap",
	                              CODEC_DLT_EN10MB,
	                              AF_INET,
	                              "192.0.2.1",
	                              "192.0.2.2",
	                              40008,
	                              2006,
	                              1,
	                              0};
	struct capture_file f;
	struct codec_packet out;

	(void)state;
	check_conversation(&c);
	load(c.file, &f);
	assert_int_equal(f.pkt[3].caplen, 256);
	assert_int_equal(f.pkt[3].len, 14 + 20 + 32 + 2006);
	assert_int_equal(decode_tcp(f.dlt, f.pkt[3].data, 256, &out)->payload_len, 2006);
	assert_int_equal(decode_wire(f.dlt, f.pkt[3].data, 256, f.pkt[3].len, &out), CODEC_TCP);
	assert_int_equal(out.tcp.payload_len, 2006);
}

static void check_icmp_fixture(const char *file, int family, const char *router, const char *client,
                               const char *server, uint16_t cport, uint8_t type, uint8_t code,
                               const char *name)
{
	struct capture_file f;
	struct codec_packet syn, err;

	load(file, &f);
	assert_int_equal(f.dlt, CODEC_DLT_EN10MB);
	assert_int_equal(f.n, 2);
	decode_tcp(f.dlt, f.pkt[0].data, f.pkt[0].caplen, &syn);
	assert_int_equal(syn.tcp.flags, CODEC_TH_SYN);
	assert_int_equal(syn.tcp.sport, cport);
	assert_int_equal(decode(f.dlt, f.pkt[1].data, f.pkt[1].caplen, &err), CODEC_ICMP);
	assert_int_equal(err.kind, CODEC_ICMP);
	assert_int_equal(err.icmp.family, family);
	assert_int_equal(err.icmp.type, type);
	assert_int_equal(err.icmp.code, code);
	assert_int_equal(err.icmp.pkttype, CODEC_PKT_UNKNOWN);
	assert_ip(err.icmp.from, router);
	assert_ip(err.icmp.src, client);
	assert_ip(err.icmp.dst, server);
	assert_int_equal(err.icmp.sport, cport);
	assert_int_equal(err.icmp.dport, 8080);
	assert_int_equal(err.icmp.seq, syn.tcp.seq);
	assert_memory_equal(err.icmp.src, syn.tcp.src, 16);
	assert_memory_equal(err.icmp.dst, syn.tcp.dst, 16);
	assert_string_equal(codec_icmp_name(family, err.icmp.type, err.icmp.code), name);
}

static void test_fixture_icmp4(void **state)
{
	(void)state;
	check_icmp_fixture("ipv4-icmp-host-unreachable.pcap", AF_INET, "192.0.2.2", "192.0.2.1",
	                   "192.0.2.66", 40006, 3, 1, "host-unreachable");
}

static void test_fixture_icmp6(void **state)
{
	(void)state;
	check_icmp_fixture("ipv6-icmp6-addr-unreachable.pcap", AF_INET6, "2001:db8::a:2",
	                   "2001:db8::a:1", "2001:db8::b:2", 40007, 1, 3, "addr-unreachable");
}

/* The shortest capture of p that shows its timestamp option; SIZE_MAX if none. */
static size_t ts_end(int dlt, const struct pkt *p)
{
	struct codec_packet out;

	for (size_t len = 0; len <= p->caplen; len++)
		if (decode(dlt, p->data, len, &out) == CODEC_TCP && out.tcp.has_ts)
			return len;
	return SIZE_MAX;
}

static size_t link_len(int dlt)
{
	return dlt == CODEC_DLT_EN10MB ? 14 : dlt == CODEC_DLT_LINUX_SLL ? 16 : 20;
}

/* Every packet of every fixture, cut at every length: TRUNCATED until the TCP header
 * (or the ICMP quote's first 8 TCP bytes) is complete, then the same result. */
static void test_fixture_truncation(void **state)
{
	static const char *const files[] = {
	    "ipv4-eth-handshake.pcap",
	    "ipv6-eth-handshake.pcap",
	    "ipv4-sll-any.pcap",
	    "ipv6-sll2-any.pcap",
	    "ipv4-eth-no-timestamps.pcap",
	    "ipv4-eth-snaplen-cut.pcap",
	    "ipv4-icmp-host-unreachable.pcap",
	    "ipv6-icmp6-addr-unreachable.pcap",
	};
	struct capture_file f;
	struct codec_packet full;

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		load(files[i], &f);
		for (size_t k = 0; k < f.n; k++) {
			const struct pkt *p = &f.pkt[k];
			int kind = decode(f.dlt, p->data, p->caplen, &full);
			size_t ip = full.tcp.family == AF_INET ? 20 : 40;
			size_t end = link_len(f.dlt) + ip + 20;

			if (kind == CODEC_ICMP)
				end = link_len(f.dlt) + ip + 8 + ip + 8;
			truncation_loop(f.dlt, p->data, p->caplen, end, ts_end(f.dlt, p));
		}
	}
}

/* ---- random bytes ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static void check_sane(int r, const struct codec_packet *out)
{
	if (r < 0) {
		assert_true(r == CODEC_E_TRUNCATED || r == CODEC_E_MALFORMED ||
		            r == CODEC_E_UNSUPPORTED);
		assert_string_not_equal(codec_error_name(r), "unknown");
		return;
	}
	assert_true(r == CODEC_TCP || r == CODEC_ICMP);
	assert_int_equal(out->kind, r);
	if (r == CODEC_TCP) {
		assert_true(out->tcp.family == AF_INET || out->tcp.family == AF_INET6);
		assert_true(out->tcp.payload_len <= 65535);
		assert_true(out->tcp.has_ts <= 1);
	} else {
		assert_true(out->icmp.family == AF_INET || out->icmp.family == AF_INET6);
		assert_non_null(codec_icmp_name(out->icmp.family, out->icmp.type, out->icmp.code));
	}
}

/* Half pure noise, half valid packets with a few bytes changed, all of random length. */
static void test_fuzz(void **state)
{
	static const int dlts[] = {CODEC_DLT_EN10MB,    CODEC_DLT_RAW,       14, 101,
	                           CODEC_DLT_LINUX_SLL, CODEC_DLT_LINUX_SLL2};
	uint8_t seeds[4][BUF], b[BUF];
	size_t seed_len[4];
	struct codec_packet out;
	int ok = 0;

	(void)state;
	seed_len[0] = pkt_eth4(seeds[0], 1, 20);
	seed_len[1] = pkt_eth6_ext(seeds[1]);
	seed_len[2] = pkt_icmp4(seeds[2], 3, 1, 28);
	seed_len[3] = pkt_icmp6(seeds[3], 1, 3, 1, 28);
	for (int i = 0; i < 100000; i++) {
		int dlt = dlts[i % 6], s = (int)(rng() % 4);
		size_t len = rng() % 200, off = 0;

		if (i & 1) {
			for (size_t k = 0; k < len; k++)
				b[k] = (uint8_t)rng();
		} else {
			off = dlt == CODEC_DLT_EN10MB ? 0 : ETH_LEN;
			len = rng() % (seed_len[s] - off + 1);
			memcpy(b, seeds[s] + off, len);
			for (int k = rng() % 4; k >= 0 && len; k--)
				b[rng() % len] = (uint8_t)rng();
		}
		int r = decode(dlt, b, len, &out);
		check_sane(r, &out);
		ok += r > 0;
	}
	assert_true(ok > 1000); /* the mutated packets reach the decoders */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ts_option),
	    cmocka_unit_test(test_error_names),
	    cmocka_unit_test(test_icmp_names),
	    cmocka_unit_test(test_eth4),
	    cmocka_unit_test(test_eth6),
	    cmocka_unit_test(test_payload_from_ip_length),
	    cmocka_unit_test(test_ethernet_padding),
	    cmocka_unit_test(test_raw_aliases),
	    cmocka_unit_test(test_vlan),
	    cmocka_unit_test(test_sll),
	    cmocka_unit_test(test_sll2),
	    cmocka_unit_test(test_ipv6_ext_headers),
	    cmocka_unit_test(test_ipv6_ext_chain),
	    cmocka_unit_test(test_ipv6_fragment),
	    cmocka_unit_test(test_ipv4_options_and_fragments),
	    cmocka_unit_test(test_truncation_every_length),
	    cmocka_unit_test(test_options_cut_by_caplen),
	    cmocka_unit_test(test_malformed_ipv4),
	    cmocka_unit_test(test_malformed_ipv6),
	    cmocka_unit_test(test_malformed_tcp_doff),
	    cmocka_unit_test(test_tcp_options),
	    cmocka_unit_test(test_unsupported),
	    cmocka_unit_test(test_icmp4_quote),
	    cmocka_unit_test(test_icmp4_quote_bad),
	    cmocka_unit_test(test_icmp6_quote),
	    cmocka_unit_test(test_fixture_ipv4_eth),
	    cmocka_unit_test(test_fixture_ipv6_eth),
	    cmocka_unit_test(test_fixture_ipv4_sll),
	    cmocka_unit_test(test_fixture_ipv6_sll2),
	    cmocka_unit_test(test_fixture_no_timestamps),
	    cmocka_unit_test(test_fixture_snaplen_cut),
	    cmocka_unit_test(test_wire_length),
	    cmocka_unit_test(test_fixture_icmp4),
	    cmocka_unit_test(test_fixture_icmp6),
	    cmocka_unit_test(test_fixture_truncation),
	    cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
