/* actmsg.h: what the verdict actions send and pass on, built as bytes and strings (pure):
 * the NETLINK_SOCK_DIAG SOCK_DESTROY request and its ack, and the environment of an
 * exec: program. The I/O is in action.c. */
#ifndef KAPROBE_ACTMSG_H
#define KAPROBE_ACTMSG_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Bytes of a sock_diag request: nlmsghdr + inet_diag_req_v2. */
#define ACTMSG_DIAG_LEN 72

/* At most this many variables in an exec: program's environment (+ the NULL). */
#define ACTMSG_ENV_MAX 12

/* PATH given to exec: programs. */
#define ACTMSG_PATH "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

/* Closing a connection's local socket takes two requests. An exact 4-tuple lookup in the
 * kernel falls back to the LISTENING socket when the connection is gone, so a bare
 * SOCK_DESTROY would destroy the listener: first a SOCK_DIAG_BY_FAMILY get of the tuple,
 * whose answer must name exactly that connection, then SOCK_DESTROY with its cookie. */

/* Writes a SOCK_DIAG_BY_FAMILY get request (NLM_F_REQUEST, sequence seq) for the local TCP
 * socket of connection t (source = its local end, destination = its remote end, every
 * state). Returns the length (ACTMSG_DIAG_LEN), or 0 when len is too small. */
size_t actmsg_diag_get(const struct addr_tuple *t, uint32_t seq, uint8_t *buf, size_t len);

/* Answers are believed only from the kernel: sender is the netlink port id (nl_pid) of the
 * datagram's source address, and any other than 0 (a local program's) is no answer. An
 * error code outside the kernel's range (-4095..-1) is reported as EPROTO. The buffer must
 * be NLWALK_ALIGN-aligned, as netlink's (a misaligned one holds no answer: -1). */

/* Reads the answer to get request seq in buf (a datagram from port sender): 0 with
 * cookie[] set when it names connection t itself (not a listener), ENOENT when it does
 * not or the kernel found nothing, another errno value when the kernel refused, or -1 when
 * buf holds no answer to seq from the kernel. */
int actmsg_diag_found(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender,
                      const struct addr_tuple *t, uint32_t cookie[2]);

/* Writes a SOCK_DESTROY request (NLM_F_REQUEST | NLM_F_ACK, sequence seq) for the socket
 * of connection t with that cookie. Returns ACTMSG_DIAG_LEN, or 0 when len is too small. */
size_t actmsg_diag_destroy(const struct addr_tuple *t, uint32_t seq, const uint32_t cookie[2],
                           uint8_t *buf, size_t len);

/* Most bytes of a conntrack delete request (actmsg_ct_delete), IPv6. */
#define ACTMSG_CT_LEN 128

/* Writes a ctnetlink IPCTNL_MSG_CT_DELETE request (NFNL_SUBSYS_CTNETLINK, NLM_F_REQUEST |
 * NLM_F_ACK, sequence seq) for the TCP conntrack entry of connection t: the tuple local ->
 * remote (the kernel finds an entry by either of its directions). Returns the length, or 0
 * when len is too small. buf must be NLWALK_ALIGN-aligned. Its answer is an ack
 * (actmsg_diag_ack: ENOENT when there is no such entry). */
size_t actmsg_ct_delete(const struct addr_tuple *t, uint32_t seq, uint8_t *buf, size_t len);

/* Writes a ctnetlink IPCTNL_MSG_CT_GET request (NLM_F_REQUEST, sequence seq) for the TCP
 * conntrack entry with the tuple local -> remote of t (either direction's). Returns the
 * length, or 0 when len is too small. buf must be NLWALK_ALIGN-aligned. */
size_t actmsg_ct_get(const struct addr_tuple *t, uint32_t seq, uint8_t *buf, size_t len);

/* A conntrack entry (actmsg_ct_found): its tuples, each as an addr_tuple with local = the
 * direction's source and remote = its destination, and its status (IPS_* bits). */
struct actmsg_ct {
	struct addr_tuple orig;  /* as the connection's opener sent its first packet */
	struct addr_tuple reply; /* as the other end sends, after NAT */
	uint32_t status;
	uint32_t timeout;  /* s left before the entry expires */
	uint8_t tcp_state; /* TCP_CONNTRACK_* (ESTABLISHED: 3) */
	unsigned have;     /* ACTMSG_CT_* */
};

enum {
	ACTMSG_CT_ORIG = 1,
	ACTMSG_CT_REPLY = 2,
	ACTMSG_CT_STATUS = 4,
	ACTMSG_CT_TIMEOUT = 8,
	ACTMSG_CT_STATE = 16,
};

/* Writes a ctnetlink dump request (IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, sequence
 * seq) of the entries of family. Returns the length, or 0 when len is too small. */
size_t actmsg_ct_dump(int family, uint32_t seq, uint8_t *buf, size_t len);

/* Calls fn for each whole TCP entry of a dump's datagram (answer to seq from port sender).
 * Returns 1 when the datagram ends the dump (NLMSG_DONE), 0 when more follow, a positive
 * errno value when the kernel refused, -1 when buf is not the kernel's answer to seq or
 * holds a cut message. */
int actmsg_ct_each(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender,
                   void (*fn)(const struct actmsg_ct *ct, void *arg), void *arg);

/* Calls fn for each whole TCP entry of a conntrack event datagram (group
 * NFNLGRP_CONNTRACK_DESTROY: IPCTNL_MSG_CT_DELETE messages, any sequence) from port sender;
 * other messages are skipped. Returns the number of entries, or -1 when buf is not the
 * kernel's or holds a cut message (the entries before the cut were handed to fn). */
int actmsg_ct_events(const uint8_t *buf, size_t len, uint32_t sender,
                     void (*fn)(const struct actmsg_ct *ct, void *arg), void *arg);

/* Reads the answer to get request seq in buf (a datagram from port sender): 0 with *out
 * filled (both tuples whole, TCP), ENOENT when there is no such entry, another errno value
 * when the kernel refused, or -1 when buf holds no whole answer to seq from the kernel. */
int actmsg_ct_found(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender,
                    struct actmsg_ct *out);

/* Reads netlink messages in buf (a datagram from port sender) for the ack of request seq.
 * Returns 0 (success), a positive errno value (the kernel refused: ENOENT when no such
 * socket), or -1 when buf holds no ack for seq from the kernel. */
int actmsg_diag_ack(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender);

/* The fields of a verdict passed to an exec: program. NULL or empty: left out. */
struct actmsg_fields {
	const char *event; /* "dead", "reset" */
	const char *rule;
	const char *local, *remote; /* as in the status log: a.b.c.d:port or [v6]:port */
	int probes;
	double idle;        /* s since the last segment from the peer; < 0: left out */
	const char *reason; /* "no-reply", "unreachable", or NULL */
	const char *side;   /* a gateway rule's: "client" or "server" (local is then the client,
	                       remote the server); NULL for a local rule */
};

/* An environment: envp[] (NULL-terminated) points into buf. */
struct actmsg_env {
	char *envp[ACTMSG_ENV_MAX + 1];
	char buf[1024];
};

/* Builds KAPROBE_EVENT, KAPROBE_RULE, KAPROBE_LOCAL, KAPROBE_REMOTE, KAPROBE_PROBES,
 * KAPROBE_IDLE (s, 3 decimals), KAPROBE_REASON (when there is one) and PATH. Control
 * characters in values become spaces. Returns the number of variables, or -1 when they do
 * not fit. */
int actmsg_env(struct actmsg_env *env, const struct actmsg_fields *f);

#endif
