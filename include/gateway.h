/* gateway.h: connections this host forwards (rules with mode = gateway): which captured
 * segments belong to them, and how their records are named in the status log (pure).
 *
 * A forwarded connection between a client and a server is two records of the engine's
 * table, with swapped keys: the record (local = client, remote = server) probes the server
 * in the client's name, the record (local = server, remote = client) probes the client in
 * the server's name. Each forwarded segment is "ours" for one (as it leaves) and "the
 * peer's" for the other (as it arrives), so the state machine (fsm.c) learns and judges each end
 * exactly as it does a connection of this host (ARCHITECTURE.md, "Gateway mode"). */
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

/* A forwarded connection's record as its conntrack entry describes it (gateway_nat_view):
 * through NAT the addresses the probed end sees, the client's and those a probe must carry
 * differ. Without NAT all but partner are the record's key. */
struct gateway_nat {
	struct addr_tuple key;     /* the record's key: the flow as the probed end sees it
	                              (local = the end spoken for, remote = the probed end) */
	struct addr_tuple name;    /* the flow as the client sees it, oriented as the key: rules
	                              and status lines use it */
	struct addr_tuple send;    /* probes, and the RST to the probed end, go from send.local to
	                              send.remote: the entry's tuple towards the probed end before
	                              NAT, which the router's conntrack finds and translates (a
	                              probe with the addresses the end sees makes a new entry,
	                              whose source port NAT changes) */
	struct addr_tuple partner; /* the key of the flow's other record */
	struct addr_tuple learn;   /* a learning SYN goes from learn.remote to learn.local: the
	                              flow as the end spoken for sees it (partner swapped), never
	                              translated (marked: the router's conntrack must not see it,
	                              a SYN in the entry's reply direction being invalid there) */
};

/* The view of record key of a flow whose conntrack entry has the tuples orig and reply
 * (local = the direction's source, remote = its destination). False when key is neither
 * end's view of the entry. */
bool gateway_nat_view(const struct addr_tuple *orig, const struct addr_tuple *reply,
                      const struct addr_tuple *key, struct gateway_nat *n);

/* The gateway_nat of the records whose flow is translated, by record key. */
struct gateway_natmap;

/* An empty map; NULL when out of memory. */
struct gateway_natmap *gateway_natmap_new(uint32_t seed);

/* Adds (or replaces) n under n->key. Returns 0, or -1 when out of memory. */
int gateway_natmap_put(struct gateway_natmap *m, const struct gateway_nat *n);

/* The entry of key, or NULL. */
const struct gateway_nat *gateway_natmap_get(const struct gateway_natmap *m,
                                             const struct addr_tuple *key);

/* The entry whose send tuple is send (the first found), or NULL: the record an ICMP error
 * quoting a probe as it left this host, before NAT, is about. */
const struct gateway_nat *gateway_natmap_by_send(const struct gateway_natmap *m,
                                                 const struct addr_tuple *send);

/* Removes the entry of key (if any). */
void gateway_natmap_del(struct gateway_natmap *m, const struct addr_tuple *key);

/* Frees the map and its entries. */
void gateway_natmap_free(struct gateway_natmap *m);

/* The kernel's conntrack TCP established timeout (s), as
 * /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established gives it. */
#define GATEWAY_CT_TIMEOUT_PATH "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"

/* The next gateway rule, from rules[*i] on, whose idle is at least ct_established s (the
 * router's conntrack would forget an idle flow before its first probe); *i moves past it.
 * NULL when none is left. */
const struct rule *gateway_outlived(const struct rule *rules, size_t n, size_t *i,
                                    double ct_established);

#endif
