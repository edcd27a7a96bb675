/* ctwatch.h: the router's conntrack table, watched for the gateway records (an edge: the
 * I/O of NETLINK_NETFILTER; the parsing is actmsg's, the decisions the engine's).
 *
 * - Destroy events (group NFNLGRP_CONNTRACK_DESTROY, subscribed while the config has a
 *   gateway rule): a flow whose entry goes (timeout, `conntrack -D`, a flush by any tool,
 *   our own flush action) has its two records forgotten at once (engine_gateway_gone).
 * - Dumps of the table (IPCTNL_MSG_CT_GET with NLM_F_DUMP, IPv4 then IPv6), read from the
 *   loop without blocking it: at start and after a reload with a gateway rule they find
 *   the established flows (engine_gateway_found); after lost events (ENOBUFS on the event
 *   socket) and every discover_interval they reconcile. Every complete dump forgets the gateway
 * records whose flow it did not list (engine_gateway_mark_end, one O(n) pass). */
#ifndef KAPROBE_CTWATCH_H
#define KAPROBE_CTWATCH_H

#include <ev.h>

#include "config.h"
#include "engine.h"

struct ctwatch;

/* Opens the event and dump sockets (as root, before the privilege drop). NULL when
 * NETLINK_NETFILTER cannot be opened (logged: no flow is learnt from conntrack, none
 * forgotten with its entry). */
struct ctwatch *ctwatch_open(struct engine *e);

/* Watches the sockets in loop from now on (no dump, no subscription yet). */
void ctwatch_start(struct ctwatch *w, struct ev_loop *loop);

/* Applies cfg (at start, after each reload): with a gateway rule, destroy events are
 * subscribed to, a dump is started (why: "start", "reload" in its lines) and another every
 * discover_interval (when not 0: entries made before the subscription send no destroy
 * event with nf_conntrack_events = 2, the default); without, the events are unsubscribed.
 * A dump does nothing while conntrack is not loaded (no established timeout to read). */
void ctwatch_configure(struct ctwatch *w, const struct config *cfg, const char *why);

/* This namespace's nf_conntrack_tcp_timeout_established (s) in *t: 0, or -1 when
 * conntrack is not loaded (yet). */
int ctwatch_established_timeout(double *t);

/* Stops the watchers and closes the sockets (NULL: nothing). */
void ctwatch_close(struct ctwatch *w);

#endif
