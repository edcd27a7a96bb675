/* codec.c: decode captured frames into TCP segments and ICMP quotes; build the
 * timestamp option of a probe. Pure: bytes in, structs out, no I/O.
 *
 * Every read is preceded by a check against the captured length. Two lengths are
 * tracked for each layer: "lim", what the IP length fields say the packet holds, cut to
 * what the frame's wire length allows (a 54-byte frame cannot carry 65 000 bytes), and
 * "cap", how much of it was captured (cap <= lim). A header that does not fit in lim is
 * MALFORMED; one that fits in lim but not in cap is TRUNCATED. */
#include "codec.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Link layer. */
#define ETH_HLEN     14
#define VLAN_HLEN    4
#define SLL_HLEN     16
#define SLL2_HLEN    20
#define ETYPE_IPV4   0x0800
#define ETYPE_IPV6   0x86dd
#define ETYPE_VLAN   0x8100
#define ETYPE_QINQ   0x88a8
#define DLT_RAW_ALT  14  /* DLT_RAW on some BSDs */
#define LINKTYPE_RAW 101 /* the pcap file header's value for raw IP */
#define PKT_NONE     (-1)

/* Network layer. */
#define IP4_HLEN     20
#define IP6_HLEN     40
#define IP4_OFFMASK  0x1fff
#define IP6_OFFMASK  0xfff8
#define PROTO_HOP    0
#define PROTO_ICMP4  1
#define PROTO_TCP    6
#define PROTO_ROUTE  43
#define PROTO_FRAG   44
#define PROTO_ICMP6  58
#define PROTO_DOPTS  60
#define IP6_FRAG_LEN 8
#define IP6_MAX_EXT  8 /* extension headers walked before giving up */

/* Transport layer. */
#define TCP_HLEN       20
#define TCPOPT_EOL     0
#define TCPOPT_NOP     1
#define TCPOPT_TS      8
#define TCPOLEN_TS     10
#define ICMP_HLEN      8
#define ICMP4_UNREACH  3
#define ICMP4_TIMXCEED 11
#define ICMP6_UNREACH  1
#define ICMP6_TIMXCEED 3
#define QUOTE_TCP_LEN  8 /* ports and sequence number */

/* What the network layer found: addresses, the upper protocol and its bytes. */
struct l3 {
	uint8_t family;
	uint8_t proto;
	uint8_t pkttype;
	uint16_t ip_id;
	uint32_t ifindex; /* SLL2's, or 0 */
	const uint8_t *src, *dst;
	const uint8_t *l4;
	size_t l4_cap; /* captured bytes of the upper protocol */
	size_t l4_lim; /* its length according to the IP header */
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Checks that need bytes at off fit: MALFORMED past lim, TRUNCATED past cap. */
static int need(size_t off, size_t len, size_t cap, size_t lim)
{
	if (off > lim || len > lim - off)
		return CODEC_E_MALFORMED;
	if (off > cap || len > cap - off)
		return CODEC_E_TRUNCATED;
	return 0;
}

static void copy_addr(uint8_t out[16], const uint8_t *ip, uint8_t family)
{
	size_t n = family == AF_INET ? 4 : 16;

	memset(out, 0, 16);
	memcpy(out, ip, n);
}

/* ---- link layer ---- */

/* Skips one 802.1Q/802.1ad tag when *etype names one. */
static int skip_vlan(const uint8_t *data, size_t caplen, size_t *off, uint16_t *etype)
{
	if (*etype != ETYPE_VLAN && *etype != ETYPE_QINQ)
		return 0;
	if (caplen - *off < VLAN_HLEN)
		return CODEC_E_TRUNCATED;
	*etype = rd16(data + *off + 2);
	*off += VLAN_HLEN;
	return 0;
}

/* Ethernet type of a raw IP packet, from its version nibble. */
static int raw_etype(const uint8_t *data, size_t caplen, uint16_t *etype)
{
	if (caplen < 1)
		return CODEC_E_TRUNCATED;
	switch (data[0] >> 4) {
	case 4:
		*etype = ETYPE_IPV4;
		return 0;
	case 6:
		*etype = ETYPE_IPV6;
		return 0;
	default:
		return CODEC_E_MALFORMED;
	}
}

/* What the link header says: the network protocol, and on a cooked capture the packet
 * type (which way the frame went) and, SLL2 only, the interface index. */
struct link {
	size_t off; /* offset of the network header */
	uint16_t etype;
	int pkttype; /* PKT_NONE when the link has none */
	uint32_t ifindex;
};

/* Reads the Ethernet type and packet type of a link header already known to fit. */
static void link_fields(int dlt, const uint8_t *data, struct link *lk)
{
	if (dlt == CODEC_DLT_EN10MB) {
		lk->etype = rd16(data + 12);
	} else if (dlt == CODEC_DLT_LINUX_SLL) {
		lk->etype = rd16(data + 14);
		lk->pkttype = rd16(data);
	} else {
		lk->etype = rd16(data);
		lk->ifindex = rd32(data + 4);
		lk->pkttype = data[10];
	}
}

/* Finds the network header: its offset, Ethernet type, SLL packet type and interface. */
static int link_decode(int dlt, const uint8_t *data, size_t caplen, struct link *lk)
{
	lk->pkttype = PKT_NONE;
	lk->off = 0;
	lk->ifindex = 0;
	switch (dlt) {
	case CODEC_DLT_RAW:
	case DLT_RAW_ALT:
	case LINKTYPE_RAW:
		return raw_etype(data, caplen, &lk->etype);
	case CODEC_DLT_EN10MB:
		lk->off = ETH_HLEN;
		break;
	case CODEC_DLT_LINUX_SLL:
		lk->off = SLL_HLEN;
		break;
	case CODEC_DLT_LINUX_SLL2:
		lk->off = SLL2_HLEN;
		break;
	default:
		return CODEC_E_UNSUPPORTED;
	}
	if (caplen < lk->off)
		return CODEC_E_TRUNCATED;
	link_fields(dlt, data, lk);
	return skip_vlan(data, caplen, &lk->off, &lk->etype);
}

/* ---- network layer ---- */

/* cap: bytes captured from p on; wire: bytes the frame carried from p on (>= cap). */
static int ipv4_decode(const uint8_t *p, size_t cap, size_t wire, struct l3 *l3)
{
	size_t hlen, tot;

	if (cap < IP4_HLEN)
		return CODEC_E_TRUNCATED;
	hlen = (size_t)(p[0] & 0x0f) * 4;
	tot = rd16(p + 2);
	if (p[0] >> 4 != 4 || hlen < IP4_HLEN || tot < hlen)
		return CODEC_E_MALFORMED;
	if (cap < hlen)
		return CODEC_E_TRUNCATED;
	if (rd16(p + 6) & IP4_OFFMASK)
		return CODEC_E_UNSUPPORTED; /* a later fragment: no transport header */
	l3->family = AF_INET;
	l3->proto = p[9];
	l3->ip_id = rd16(p + 4);
	l3->src = p + 12;
	l3->dst = p + 16;
	l3->l4 = p + hlen;
	l3->l4_lim = min_sz(tot, wire) - hlen;
	l3->l4_cap = min_sz(cap, tot) - hlen;
	return 0;
}

/* One hop-by-hop, routing or destination options header at *off. */
static int ip6_ext_generic(const uint8_t *p, size_t cap, size_t lim, uint8_t *next, size_t *off)
{
	size_t len;
	int r = need(*off, 2, cap, lim);

	if (r)
		return r;
	len = ((size_t)p[*off + 1] + 1) * 8;
	r = need(*off, len, cap, lim);
	if (r)
		return r;
	*next = p[*off];
	*off += len;
	return 0;
}

/* A fragment header: only a first fragment carries the transport header. */
static int ip6_ext_frag(const uint8_t *p, size_t cap, size_t lim, uint8_t *next, size_t *off)
{
	int r = need(*off, IP6_FRAG_LEN, cap, lim);

	if (r)
		return r;
	if (rd16(p + *off + 2) & IP6_OFFMASK)
		return CODEC_E_UNSUPPORTED;
	*next = p[*off];
	*off += IP6_FRAG_LEN;
	return 0;
}

static int ip6_is_ext(uint8_t next)
{
	return next == PROTO_HOP || next == PROTO_ROUTE || next == PROTO_DOPTS ||
	       next == PROTO_FRAG;
}

/* Walks at most IP6_MAX_EXT extension headers after a fixed IPv6 header; p is the
 * byte after it. On success *next is the upper protocol and *off its offset from p. */
static int ip6_walk(const uint8_t *p, size_t cap, size_t lim, uint8_t *next, size_t *off)
{
	int frag = 0, r;

	*off = 0;
	for (int n = 0; ip6_is_ext(*next); n++) {
		if (n == IP6_MAX_EXT)
			return CODEC_E_UNSUPPORTED;
		if (*next == PROTO_FRAG) {
			frag = 1;
			r = ip6_ext_frag(p, cap, lim, next, off);
		} else {
			r = ip6_ext_generic(p, cap, lim, next, off);
		}
		if (r)
			return r;
	}
	/* Only a first fragment of a TCP segment is of use. */
	return frag && *next != PROTO_TCP ? CODEC_E_UNSUPPORTED : 0;
}

static int ipv6_decode(const uint8_t *p, size_t cap, size_t wire, struct l3 *l3)
{
	size_t plen, pcap, off;
	uint8_t next;
	int r;

	if (cap < IP6_HLEN)
		return CODEC_E_TRUNCATED;
	if (p[0] >> 4 != 6)
		return CODEC_E_MALFORMED;
	plen = min_sz(rd16(p + 4), wire - IP6_HLEN);
	pcap = min_sz(cap - IP6_HLEN, plen);
	next = p[6];
	r = ip6_walk(p + IP6_HLEN, pcap, plen, &next, &off);
	if (r)
		return r;
	l3->family = AF_INET6;
	l3->proto = next;
	l3->ip_id = 0;
	l3->src = p + 8;
	l3->dst = p + 24;
	l3->l4 = p + IP6_HLEN + off;
	l3->l4_lim = plen - off;
	l3->l4_cap = pcap - off;
	return 0;
}

/* ---- TCP ---- */

/* Reads the options in p[TCP_HLEN..hlen); only the first avail bytes were captured.
 * Options cut by the capture are left unread (no timestamp), not an error. A malformed
 * option (length below 2 or past the header) ends the parsing and the segment stays
 * valid, as in Linux's tcp_parse_options(): what was read before it is kept. */
static void tcp_options(const uint8_t *p, size_t hlen, size_t avail, struct codec_tcp *t)
{
	size_t i = TCP_HLEN, len;

	while (i < avail) {
		if (p[i] == TCPOPT_EOL)
			break;
		if (p[i] == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= avail)
			break; /* length byte past the header or the capture */
		len = p[i + 1];
		if (len < 2 || i + len > hlen)
			break; /* malformed: the rest is not read */
		if (i + len > avail)
			break;
		if (p[i] == TCPOPT_TS && len == TCPOLEN_TS) {
			t->has_ts = 1;
			t->tsval = rd32(p + i + 2);
			t->tsecr = rd32(p + i + 6);
		}
		i += len;
	}
}

static int tcp_decode(const struct l3 *l3, struct codec_tcp *t)
{
	const uint8_t *p = l3->l4;
	size_t hlen;
	int r = need(0, TCP_HLEN, l3->l4_cap, l3->l4_lim);

	if (r)
		return r;
	hlen = (size_t)(p[12] >> 4) * 4;
	if (hlen < TCP_HLEN || hlen > l3->l4_lim)
		return CODEC_E_MALFORMED;
	t->family = l3->family;
	t->flags = p[13];
	t->pkttype = l3->pkttype;
	t->sport = rd16(p);
	t->dport = rd16(p + 2);
	t->seq = rd32(p + 4);
	t->ack = rd32(p + 8);
	t->window = rd16(p + 14);
	t->ip_id = l3->ip_id;
	t->ifindex = l3->ifindex;
	t->payload_len = (uint32_t)(l3->l4_lim - hlen);
	copy_addr(t->src, l3->src, l3->family);
	copy_addr(t->dst, l3->dst, l3->family);
	tcp_options(p, hlen, min_sz(hlen, l3->l4_cap), t);
	return CODEC_TCP;
}

/* ---- ICMP and ICMPv6 errors ---- */

/* Fills the quoted ports and sequence number from the first 8 bytes of TCP. */
static void quote_tcp(const uint8_t *q, struct codec_icmp *ic)
{
	ic->sport = rd16(q);
	ic->dport = rd16(q + 2);
	ic->seq = rd32(q + 4);
}

/* The IPv4 packet quoted by an ICMP error: q holds its first cap bytes. */
static int quote4(const uint8_t *q, size_t cap, struct codec_icmp *ic)
{
	size_t hlen;

	if (cap < IP4_HLEN)
		return CODEC_E_TRUNCATED;
	hlen = (size_t)(q[0] & 0x0f) * 4;
	if (q[0] >> 4 != 4 || hlen < IP4_HLEN)
		return CODEC_E_MALFORMED;
	if (q[9] != PROTO_TCP || (rd16(q + 6) & IP4_OFFMASK))
		return CODEC_E_UNSUPPORTED;
	if (cap < hlen + QUOTE_TCP_LEN)
		return CODEC_E_TRUNCATED;
	copy_addr(ic->src, q + 12, AF_INET);
	copy_addr(ic->dst, q + 16, AF_INET);
	quote_tcp(q + hlen, ic);
	return 0;
}

/* The IPv6 packet quoted by an ICMPv6 error. Its extension headers are bounded by
 * the quote only: a quote is cut short by nature. */
static int quote6(const uint8_t *q, size_t cap, struct codec_icmp *ic)
{
	size_t off;
	uint8_t next;
	int r;

	if (cap < IP6_HLEN)
		return CODEC_E_TRUNCATED;
	if (q[0] >> 4 != 6)
		return CODEC_E_MALFORMED;
	next = q[6];
	r = ip6_walk(q + IP6_HLEN, cap - IP6_HLEN, SIZE_MAX, &next, &off);
	if (r)
		return r;
	if (next != PROTO_TCP)
		return CODEC_E_UNSUPPORTED;
	if (cap - IP6_HLEN - off < QUOTE_TCP_LEN)
		return CODEC_E_TRUNCATED;
	copy_addr(ic->src, q + 8, AF_INET6);
	copy_addr(ic->dst, q + 24, AF_INET6);
	quote_tcp(q + IP6_HLEN + off, ic);
	return 0;
}

static int is_icmp_error(uint8_t family, uint8_t type)
{
	if (family == AF_INET)
		return type == ICMP4_UNREACH || type == ICMP4_TIMXCEED;
	return type == ICMP6_UNREACH || type == ICMP6_TIMXCEED;
}

static int icmp_decode(const struct l3 *l3, struct codec_icmp *ic)
{
	const uint8_t *p = l3->l4;
	size_t qcap;
	int r = need(0, ICMP_HLEN, l3->l4_cap, l3->l4_lim);

	if (r)
		return r;
	if (!is_icmp_error(l3->family, p[0]))
		return CODEC_E_UNSUPPORTED;
	qcap = l3->l4_cap - ICMP_HLEN;
	if (l3->family == AF_INET)
		r = quote4(p + ICMP_HLEN, qcap, ic);
	else
		r = quote6(p + ICMP_HLEN, qcap, ic);
	if (r)
		return r;
	ic->family = l3->family;
	ic->type = p[0];
	ic->code = p[1];
	ic->pkttype = l3->pkttype;
	copy_addr(ic->from, l3->src, l3->family);
	return CODEC_ICMP;
}

/* ---- entry points ---- */

static int net_decode(uint16_t etype, const uint8_t *p, size_t cap, size_t wire, struct l3 *l3)
{
	if (etype == ETYPE_IPV4)
		return ipv4_decode(p, cap, wire, l3);
	if (etype == ETYPE_IPV6)
		return ipv6_decode(p, cap, wire, l3);
	return CODEC_E_UNSUPPORTED;
}

int codec_decode(int dlt, const uint8_t *data, size_t caplen, size_t wirelen,
                 struct codec_packet *out)
{
	struct link lk;
	struct l3 l3;
	int r;

	memset(out, 0, sizeof(*out));
	if (!data)
		caplen = 0;
	if (wirelen < caplen)
		wirelen = caplen; /* a capture never holds more than the wire carried */
	r = link_decode(dlt, data, caplen, &lk);
	if (!r)
		r = net_decode(lk.etype, data + lk.off, caplen - lk.off, wirelen - lk.off, &l3);
	if (r)
		return r;
	l3.pkttype = lk.pkttype >= 0 && lk.pkttype < CODEC_PKT_UNKNOWN ? (uint8_t)lk.pkttype
	                                                               : CODEC_PKT_UNKNOWN;
	l3.ifindex = lk.ifindex;
	if (l3.proto == PROTO_TCP)
		r = tcp_decode(&l3, &out->tcp);
	else if ((l3.family == AF_INET && l3.proto == PROTO_ICMP4) ||
	         (l3.family == AF_INET6 && l3.proto == PROTO_ICMP6))
		r = icmp_decode(&l3, &out->icmp);
	else
		r = CODEC_E_UNSUPPORTED;
	if (r > 0)
		out->kind = r;
	else
		memset(out, 0, sizeof(*out));
	return r;
}

static const char *icmp4_name(uint8_t type, uint8_t code)
{
	static const char *const unreach[] = {
	    [0] = "net-unreachable",  [1] = "host-unreachable",  [2] = "protocol-unreachable",
	    [3] = "port-unreachable", [4] = "frag-needed",       [9] = "net-prohibited",
	    [10] = "host-prohibited", [13] = "admin-prohibited",
	};

	if (type == ICMP4_TIMXCEED)
		return "time-exceeded";
	if (type == ICMP4_UNREACH && code < sizeof(unreach) / sizeof(unreach[0]))
		return unreach[code];
	return NULL;
}

static const char *icmp6_name(uint8_t type, uint8_t code)
{
	static const char *const unreach[] = {
	    "no-route",         "admin-prohibited", "beyond-scope", "addr-unreachable",
	    "port-unreachable", "policy-fail",      "reject-route",
	};

	if (type == ICMP6_TIMXCEED)
		return "time-exceeded";
	if (type == ICMP6_UNREACH && code < sizeof(unreach) / sizeof(unreach[0]))
		return unreach[code];
	return NULL;
}

const char *codec_icmp_name(int family, uint8_t type, uint8_t code)
{
	static char buf[32];
	const char *name = NULL;

	if (family == AF_INET)
		name = icmp4_name(type, code);
	else if (family == AF_INET6)
		name = icmp6_name(type, code);
	if (name)
		return name;
	snprintf(buf, sizeof(buf), "type-%u-code-%u", (unsigned)type, (unsigned)code);
	return buf;
}

size_t codec_ts_option(uint32_t tsval, uint32_t tsecr, uint8_t opt[12])
{
	opt[0] = TCPOPT_NOP;
	opt[1] = TCPOPT_NOP;
	opt[2] = TCPOPT_TS;
	opt[3] = TCPOLEN_TS;
	wr32(opt + 4, tsval);
	wr32(opt + 8, tsecr);
	return 12;
}

const char *codec_error_name(int err)
{
	switch (err) {
	case CODEC_E_TRUNCATED:
		return "truncated";
	case CODEC_E_MALFORMED:
		return "malformed";
	case CODEC_E_UNSUPPORTED:
		return "unsupported";
	default:
		return "unknown";
	}
}
