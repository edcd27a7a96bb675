/* gateway.h: connections this host forwards (rules with mode = gateway): which captured
 * segments belong to them, and how their records are named in the status log (pure).
 *
 * A forwarded connection between a client and a server is two records of the engine's
 * table, with swapped keys: the record (local = client, remote = server) probes the server
 * in the client's name, the record (local = server, remote = client) probes the client in
 * the server's name. Each forwarded segment is "ours" for one (as it leaves) and "the
 * peer's" for the other (as it arrives), so the state machine (fsm.c) learns and judges each end exactly as it does a
 * connection of this host (ARCHITECTURE.md, "Gateway mode"). */
#ifndef KAPROBE_GATEWAY_H
#define KAPROBE_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "logline.h"
#include "rule.h"

/* What a captured copy of a segment with neither address local is to the gateway records
 * (gateway_copy). A forwarded segment is captured twice: arriving, then leaving. */
enum gateway_copy {
	GATEWAY_NONE = 0, /* not a forwarded segment (an end is local, or no direction known) */
	GATEWAY_LEFT,     /* it left this host (CODEC_PKT_OUTGOING): forwarded by the kernel,
	                     past the router's firewall and conntrack: "ours" for the record
	                     keyed (local = source, remote = destination) */
	GATEWAY_ARRIVED,  /* it arrived (CODEC_PKT_HOST): the peer's for the record keyed
	                     (local = destination, remote = source), judged as any peer segment */
};

/* Which copy a captured segment is (enum gateway_copy), from its packet type and whether
 * its addresses are local. */
int gateway_copy(uint8_t pkttype, bool src_local, bool dst_local);

/* "client" or "server": the end record k of gateway rule r probes (its key's remote). */
const char *gateway_side(const struct rule *r, const struct addr_tuple *k);

/* Appends the fields that name a gateway record, after ts and event: rule, client, server
 * (as the capture saw them on the way out), side (the end this record probes and judges). */
void gateway_line_fields(struct log_line *l, const struct rule *r, const struct addr_tuple *k);

/* The kernel's conntrack TCP established timeout (s), as
 * /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established gives it. */
#define GATEWAY_CT_TIMEOUT_PATH "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"

/* The next gateway rule, from rules[*i] on, whose idle is at least ct_established s (the
 * router's conntrack would forget an idle flow before its first probe); *i moves past it.
 * NULL when none is left. */
const struct rule *gateway_outlived(const struct rule *rules, size_t n, size_t *i,
                                    double ct_established);

#endif
