/* diag.h: the kernel's list of TCP sockets (NETLINK_SOCK_DIAG, inet_diag).
 *
 * Pure part: build a dump request (with a port filter compiled to inet_diag bytecode)
 * and parse the kernel's answer into struct diag_sock, defensively. Thin part: open
 * the netlink socket, send a request, receive one datagram (diag_open, diag_send,
 * diag_recv). */
#ifndef KAPROBE_DIAG_H
#define KAPROBE_DIAG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "rule.h"

/* idiag_timer values: which timer the socket has pending. */
enum diag_timer {
	DIAG_TIMER_NONE = 0,
	DIAG_TIMER_RETRANS = 1,
	DIAG_TIMER_KEEPALIVE = 2,
	DIAG_TIMER_TIMEWAIT = 3,
	DIAG_TIMER_PROBE0 = 4,
};

/* One established TCP socket of this network namespace, as the kernel sees it. */
struct diag_sock {
	struct addr_tuple key; /* local = the socket's own end; v4-mapped v6 made IPv4 */
	uint8_t state;         /* TCP_ESTABLISHED, ... */
	uint8_t timer;         /* enum diag_timer */
	uint8_t has_info;      /* the tcp_info fields below are valid */
	uint32_t rqueue;       /* bytes received, not yet read by the program */
	uint32_t wqueue;       /* bytes sent, not yet acknowledged (send queue) */
	uint8_t retransmits;   /* tcpi_retransmits: unanswered retransmissions (RTO) now */
	uint8_t backoff;       /* tcpi_backoff: the RTO's exponential backoff now */
	uint8_t probes;        /* tcpi_probes: unanswered zero-window or keepalive probes */
	uint32_t unacked;      /* tcpi_unacked: segments in flight */
	uint32_t snd_wnd;      /* tcpi_snd_wnd: the peer's advertised window (0: kernel too old) */
	uint32_t last_data_recv_ms, last_ack_recv_ms; /* ms since the last segment / ACK */
	uint32_t last_data_sent_ms; /* ms since our last data segment (a retransmission too) */
	uint32_t rto_us;            /* tcpi_rto: the retransmission timeout now (backed off) */
	uint32_t uid, inode;
	uint64_t cookie;
};

/* Called for each socket of a dump. */
typedef void (*diag_sock_fn)(void *arg, const struct diag_sock *s);

/* Results of diag_parse(). */
enum diag_result {
	DIAG_MORE = 0,         /* buffer parsed, the dump goes on */
	DIAG_DONE = 1,         /* NLMSG_DONE seen: the dump is complete */
	DIAG_E_MALFORMED = -1, /* a message is cut or inconsistent (the rest is skipped) */
	DIAG_E_KERNEL = -2,    /* NLMSG_ERROR from the kernel (*err set to its errno) */
};

/* Most bytecode bytes diag_build_dump() writes (more rules: no kernel filter). */
#define DIAG_BC_MAX 4096

/* Writes a dump request for family (AF_INET or AF_INET6) of established sockets with
 * tcp_info, filtered in the kernel to the port ranges of the rules when every rule
 * limits a port. Returns its length, or 0 when len is too small. */
size_t diag_build_dump(uint8_t *buf, size_t len, int family, uint32_t seq, const struct rule *rules,
                       size_t nrules);

/* Writes a request for the one socket with this 4-tuple (key's local end is the socket's
 * own), asked as family (AF_INET6 for an IPv4 key: its v4-mapped form, for a dual-stack
 * socket), with tcp_info. Returns its length, or 0 when len is too small. */
size_t diag_build_query(uint8_t *buf, size_t len, const struct addr_tuple *key, int family,
                        uint32_t seq);

/* Compiles the rules' port ranges to inet_diag bytecode into bc. Returns its length, or 0
 * when no filter can be made (a rule without any port limit, or too many rules). */
size_t diag_build_filter(uint8_t *bc, size_t len, const struct rule *rules, size_t nrules);

/* Parses one datagram of a dump answer (buf NLWALK_ALIGN-aligned, as netlink's: a
 * misaligned one is DIAG_E_MALFORMED), sent from netlink port id sender (only the
 * kernel's, 0, is read; another's is ignored whole), messages with sequence number seq;
 * calls fn for each socket. Returns an enum diag_result; *err gets the kernel's errno on
 * DIAG_E_KERNEL (EPROTO for a nonsensical one). */
int diag_parse(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender, diag_sock_fn fn,
               void *arg, int *err);

/* Seconds since the last segment from the peer, as the kernel counts it (the smaller of
 * the last data and last ACK received). */
double diag_idle(const struct diag_sock *s);

/* Seconds our data has gone unanswered, as the kernel sees it: under the retransmission
 * timer with segments in flight, the shorter of the time since the last ACK received and
 * the time since the head segment was first sent, which is the waits of the backoffs so far
 * (rto / 2^backoff x (2^backoff - 1): each RTO fired no sooner than due) plus the time since
 * the last (re)transmission. -1 when nothing is in flight (or no tcp_info). Never more
 * than the truth. */
double diag_stall_silence(const struct diag_sock *s);

/* Asks the kernel for the one socket with this 4-tuple on fd (diag_open) and waits for
 * the answer (the kernel answers at once). Returns 0 with *out filled, -1 with errno
 * ENOENT when no such socket exists, or -1 with another errno on failure. */
int diag_query(int fd, const struct addr_tuple *key, uint32_t seq, struct diag_sock *out);

/* Buffer size that holds any datagram of a dump answer. */
#define DIAG_RECV_BUF (64 * 1024)

/* s a receive may wait before it fails (EAGAIN): a dump under way answers at once. */
#define DIAG_RECV_TIMEOUT 5

/* Opens a NETLINK_SOCK_DIAG socket (blocking, receives time out after DIAG_RECV_TIMEOUT
 * s). Returns the fd, or -1 (errno set). */
int diag_open(void);

/* Sends a request built by diag_build_dump, after dropping what an earlier, abandoned dump
 * left unread. The kernel starts the dump here. Returns 0, or -1 (errno set). */
int diag_send(int fd, const uint8_t *req, size_t len);

/* Receives one datagram of the answer into buf (blocking) and the netlink port id that
 * sent it (0: the kernel). The kernel walks its socket table for it: on a host with many
 * sockets that can take tens of ms, so this runs off the event loop (discover.c).
 * Returns its length, or -1 (errno set). */
ssize_t diag_recv(int fd, uint8_t *buf, size_t len, uint32_t *sender);

#endif
