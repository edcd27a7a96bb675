/* hush.h: nftables edge for gateway mode. kaprobed's own table (inet kaprobed) drops, on
 * the router's forward hook, the answers to its probes and learning SYNs instead of
 * forwarding them to the other end (the capture has already seen them arriving), and
 * keeps its marked learning SYNs out of conntrack (a notrack rule at raw priority).
 *
 * Expected answers are set elements with a timeout, added in one netlink batch per call
 * (the pacer's batch of packets). Only a pure ACK (flags exactly ACK, no payload: the IP
 * length is the headers' own) whose key is in a set is dropped. */
#ifndef KAPROBE_HUSH_H
#define KAPROBE_HUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The packet mark of learning SYNs that conntrack must not see (notrack in the table). */
#define HUSH_NOTRACK_MARK 0x6b617072u

/* What an expected answer is keyed on. */
enum hush_kind {
	HUSH_ANSWER = 1, /* a probe's answer: (src, sport, seq, ack), exact */
	HUSH_CHALLENGE,  /* a learning SYN's challenge ACK: (src, sport, dst, dport), the flow as
	                    the forward hook sees it (its numbers are what the SYN asks for) */
};

/* One expected answer, as the router's forward hook sees it: after the destination NAT of
 * prerouting, before the source NAT of postrouting, so each address is the one its end
 * gives itself. Ports in host byte order. */
struct hush_expect {
	uint8_t kind;   /* enum hush_kind */
	uint8_t family; /* AF_INET or AF_INET6 */
	uint16_t sport, dport;
	uint8_t src[16], dst[16];
	uint32_t seq, ack;   /* HUSH_ANSWER: the answer's SEQ and ACK */
	uint32_t timeout_ms; /* the element's lifetime */
};

struct hush;

/* A handle on the nftables netlink socket (no table yet); NULL with errbuf filled. */
struct hush *hush_open(char *errbuf, size_t errlen);

/* Installs the table, replacing any left over (one transaction). Returns 0, or -1 with
 * errbuf filled (no nf_tables, no permission). */
int hush_start(struct hush *h, char *errbuf, size_t errlen);

/* Deletes the table (if hush_start installed it). */
void hush_stop(struct hush *h);

/* True between a successful hush_start and hush_stop. */
bool hush_active(const struct hush *h);

/* Adds n expected answers in one netlink batch (one sendmsg). Returns 0, or -1 with errno
 * (the batch was refused: a set full, the table gone, ...): those answers are forwarded. */
int hush_add(struct hush *h, const struct hush_expect *x, size_t n);

/* Elements added and batches sent since hush_open (for the totals line). */
void hush_counts(const struct hush *h, unsigned long long *elems, unsigned long long *batches);

/* Stops (hush_stop) and closes. */
void hush_close(struct hush *h);

#endif
