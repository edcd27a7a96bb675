/* sender.h: libnet edge. Raw IPv4 and IPv6 contexts opened once; writes probes and
 * learning SYNs in batches (sendmmsg), and RSTs one at a time. */
#ifndef KAPROBE_SENDER_H
#define KAPROBE_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "fsm.h"

struct sender;

/* What a batched packet is. */
enum sender_kind { SENDER_PROBE = 1, SENDER_SYN };

/* One packet for sender_send_batch or sender_build. */
struct sender_pkt {
	uint8_t kind;                 /* enum sender_kind */
	const struct addr_tuple *key; /* the connection (key.local = our end) */
	struct fsm_probe probe;       /* SENDER_PROBE: its fields (fsm.h) */
	uint32_t seq; /* SENDER_SYN: SEQ of the SYN injected into our own stack (sender_send_syn) */
	uint32_t mark; /* the packet's mark (SO_MARK as a control message), 0: none */
};

/* Longest packet sender_build makes: IPv6 (40) + TCP (20) + timestamps (12) + 1 byte. */
#define SENDER_PKT_MAX 73

/* Writes packet p as it goes on the wire, IP header included, into buf (2-byte aligned):
 * IPv4 (TTL 64, ID ip_id, no DF) or IPv6 (hop limit 64; ip_id unused), then TCP with its
 * checksum. A probe goes from key.local to key.remote (flags ACK, SEQ/ACK/window from
 * p->probe, NOP NOP timestamps when has_ts, one 0x00 byte when payload_len is 1); a SYN
 * from key.remote to key.local (SEQ p->seq, ACK 0, window 1024, no options). Returns the
 * length, or 0 when it cannot be built (unknown kind or family, payload_len > 1, buf
 * misaligned or shorter than the packet). Pure. */
size_t sender_build(const struct sender_pkt *p, uint16_t ip_id, uint8_t *buf, size_t len);

/* Sends n packets, sendmmsg in batches (per address family, order kept within a family).
 * errs[i] = 0 when packet i went out, or the errno of packet i (EHOSTUNREACH, ENETUNREACH,
 * EACCES, EINVAL, ..., EPROTO when it could not be built). Never blocks: ENOBUFS and
 * EAGAIN (a full queue or socket buffer) are not retried: the packet that got one and
 * every later packet of its family in this call are not sent and get that errno (the
 * caller retries them later). errs has n entries. Returns how many went out. */
size_t sender_send_batch(struct sender *s, const struct sender_pkt *pkts, size_t n, int *errs);

/* Opens the raw contexts (needs CAP_NET_RAW). NULL with errbuf filled on failure. */
struct sender *sender_open(char *errbuf, size_t errlen);

/* Sends probe p on connection key (from key.local to key.remote): a batch of one.
 * Returns 0, or an errno value (EHOSTUNREACH, ENETUNREACH, EACCES, EINVAL, ...). */
int sender_send(struct sender *s, const struct addr_tuple *key, const struct fsm_probe *p);

/* Sends a RST (flags RST|ACK, no options, window 0) on connection key: to_local true
 * sends it to our own end as if from the peer (source key.remote, destination key.local;
 * delivered locally), false to the peer from our end. Returns 0 or an errno value. */
int sender_send_rst(struct sender *s, const struct addr_tuple *key, int to_local, uint32_t seq,
                    uint32_t ack);
/* Injects a SYN from key.remote to key.local (SEQ seq, no options) into our own stack:
 * the local kernel answers an established connection's SYN with a challenge ACK (RFC
 * 5961) that carries its numbers. A batch of one. Returns 0 or an errno value. */
int sender_send_syn(struct sender *s, const struct addr_tuple *key, uint32_t seq);

/* Closes the contexts. */
void sender_close(struct sender *s);

#endif
