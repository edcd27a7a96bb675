/* sender.h: libnet edge. Raw IPv4 and IPv6 contexts opened once; writes probes. */
#ifndef KAPROBE_SENDER_H
#define KAPROBE_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "fsm.h"

struct sender;

enum sender_kind { SENDER_PROBE = 1, SENDER_SYN };

/* One packet of a batch. */
struct sender_pkt {
	uint8_t kind;                 /* enum sender_kind */
	const struct addr_tuple *key; /* the connection (key.local = our end) */
	struct fsm_probe probe;       /* SENDER_PROBE: its fields */
	uint32_t seq;                 /* SENDER_SYN: SEQ of the SYN injected into our own stack */
};

/* Opens the raw contexts (needs CAP_NET_RAW). NULL with errbuf filled on failure. */
struct sender *sender_open(char *errbuf, size_t errlen);

/* Sends probe p on connection key (from key.local to key.remote).
 * Returns 0, or an errno value (EHOSTUNREACH, ENETUNREACH, EACCES, EINVAL, ...). */
int sender_send(struct sender *s, const struct addr_tuple *key, const struct fsm_probe *p);

/* Sends a RST (flags RST|ACK, no options, window 0) on connection key: to_local true
 * sends it to our own end as if from the peer (source key.remote, destination key.local;
 * delivered locally), false to the peer from our end. Returns 0 or an errno value. */
int sender_send_rst(struct sender *s, const struct addr_tuple *key, int to_local, uint32_t seq,
                    uint32_t ack);
/* Injects a SYN from key.remote to key.local (SEQ seq, no options) into our own stack:
 * the local kernel answers an established connection's SYN with a challenge ACK (RFC
 * 5961) that carries its numbers. Returns 0 or an errno value. */
int sender_send_syn(struct sender *s, const struct addr_tuple *key, uint32_t seq);

/* Closes the contexts. */
void sender_close(struct sender *s);

#endif
