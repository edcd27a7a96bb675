/* codec.h: decode captured frames, encode probe option bytes (pure, no I/O).
 *
 * Paranoid about lengths: every header is checked against the captured length
 * before it is read. Checksums are never validated (veth offload, see ARCHITECTURE.md,
 * Platform facts). */
#ifndef KAPROBE_CODEC_H
#define KAPROBE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Link types, numerically equal to libpcap's DLT_* values on Linux. */
enum codec_dlt {
	CODEC_DLT_EN10MB = 1,
	CODEC_DLT_RAW = 12,
	CODEC_DLT_LINUX_SLL = 113,
	CODEC_DLT_LINUX_SLL2 = 276,
};

/* TCP flag bits as on the wire. */
enum codec_tcp_flag {
	CODEC_TH_FIN = 0x01,
	CODEC_TH_SYN = 0x02,
	CODEC_TH_RST = 0x04,
	CODEC_TH_PUSH = 0x08,
	CODEC_TH_ACK = 0x10,
	CODEC_TH_URG = 0x20,
};

/* Results of codec_decode(): a kind (> 0) or an error (< 0). */
enum codec_result {
	CODEC_TCP = 1,            /* a TCP segment: packet.tcp */
	CODEC_ICMP = 2,           /* an ICMP/ICMPv6 error quoting a TCP header: packet.icmp */
	CODEC_E_TRUNCATED = -1,   /* a header runs past the captured bytes */
	CODEC_E_MALFORMED = -2,   /* a field is impossible (version, lengths, offsets) */
	CODEC_E_UNSUPPORTED = -3, /* link type, protocol or ICMP type we do not handle */
};

/* The kernel's loopback interface index (LOOPBACK_IFINDEX: "lo" in every namespace). */
#define CODEC_LOOPBACK_IFINDEX 1

/* SLL packet types (Linux "any" capture); CODEC_PKT_UNKNOWN for other links. */
enum codec_pkttype {
	CODEC_PKT_HOST = 0,
	CODEC_PKT_OUTGOING = 4,
	CODEC_PKT_UNKNOWN = 255,
};

/* A decoded TCP segment. Ports host order; addresses as in struct addr_tuple. */
struct codec_tcp {
	uint8_t family;
	uint8_t flags;   /* CODEC_TH_* */
	uint8_t has_ts;  /* timestamp option present */
	uint8_t pkttype; /* CODEC_PKT_* */
	uint16_t sport, dport;
	uint16_t window;      /* raw 16-bit field, unscaled */
	uint16_t ip_id;       /* IPv4 identification; 0 for IPv6 */
	uint32_t ifindex;     /* interface index of an SLL2 frame; 0 when the link has none */
	uint32_t payload_len; /* from the IP length, at most what the wire length allows */
	uint32_t seq, ack;
	uint32_t tsval, tsecr;
	uint8_t src[16], dst[16];
};

/* A decoded ICMP or ICMPv6 error and the TCP header it quotes. */
struct codec_icmp {
	uint8_t family; /* of the outer packet (== quoted packet) */
	uint8_t type, code;
	uint8_t pkttype;
	uint8_t from[16];         /* who sent the error (outer source) */
	uint8_t src[16], dst[16]; /* quoted packet's addresses */
	uint16_t sport, dport;    /* quoted TCP ports */
	uint32_t seq;             /* quoted TCP sequence number */
};

struct codec_packet {
	int kind; /* CODEC_TCP or CODEC_ICMP */
	union {
		struct codec_tcp tcp;
		struct codec_icmp icmp;
	};
};

/* Decodes one captured frame of link type dlt: caplen bytes available of a frame that was
 * wirelen bytes long on the wire (pcap's len; a smaller value counts as caplen). The IP
 * length fields are believed only as far as wirelen allows. Returns CODEC_TCP or
 * CODEC_ICMP and fills *out, or a CODEC_E_* error. */
int codec_decode(int dlt, const uint8_t *data, size_t caplen, size_t wirelen,
                 struct codec_packet *out);

/* Short name of an ICMP/ICMPv6 error for the log: "host-unreachable",
 * "net-unreachable", "port-unreachable", "admin-prohibited", "addr-unreachable",
 * "no-route", "time-exceeded", ...; "type-T-code-C" when unnamed. Thread-unsafe for
 * the unnamed case (static buffer). */
const char *codec_icmp_name(int family, uint8_t type, uint8_t code);

/* Writes the 12-byte TCP option block NOP, NOP, TS(tsval, tsecr) to opt. Returns 12. */
size_t codec_ts_option(uint32_t tsval, uint32_t tsecr, uint8_t opt[12]);

/* Name of a CODEC_E_* error, for counters: "truncated", "malformed", "unsupported". */
const char *codec_error_name(int err);

#endif
