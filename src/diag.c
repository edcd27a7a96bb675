/* diag.c: the kernel's list of TCP sockets through NETLINK_SOCK_DIAG (inet_diag).
 *
 * Requests and answers are built and parsed here as bytes (pure, unit-tested with
 * fixtures); diag_open(), diag_send() and diag_recv() are the only functions that touch a
 * socket.
 * Parsing is paranoid: the message and attribute walks go through nlwalk (libmnl), which
 * checks every length against what the buffer really holds. */
#include "diag.h"
#include "nlwalk.h"

#include <errno.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define DIAG_TCP_ESTABLISHED 1 /* the kernel's TCP_ESTABLISHED */
#define OP_LEN               ((uint16_t)sizeof(struct inet_diag_bc_op))
#define PORT_COND_LEN        (2 * OP_LEN)

/* The tcp_info fields we read must all be present for has_info, but tcpi_snd_wnd (Linux
 * 5.4 and later), read when present. */
#define INFO_NEEDED  (offsetof(struct tcp_info, tcpi_last_ack_recv) + sizeof(uint32_t))
#define INFO_SND_WND (offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof(uint32_t))

/* ---- request ---------------------------------------------------------------- */

/* Port conditions of one rule: up to 4 (code, port) pairs. Returns how many. */
static int rule_conds(const struct rule *r, uint8_t *code, uint16_t *port)
{
	int n = 0;

	if (r->local.port_lo > 0) {
		code[n] = INET_DIAG_BC_S_GE;
		port[n++] = r->local.port_lo;
	}
	if (r->local.port_hi < 65535) {
		code[n] = INET_DIAG_BC_S_LE;
		port[n++] = r->local.port_hi;
	}
	if (r->remote.port_lo > 0) {
		code[n] = INET_DIAG_BC_D_GE;
		port[n++] = r->remote.port_lo;
	}
	if (r->remote.port_hi < 65535) {
		code[n] = INET_DIAG_BC_D_LE;
		port[n++] = r->remote.port_hi;
	}
	return n;
}

static void put_op(uint8_t *at, uint8_t code, uint8_t yes, uint16_t no)
{
	struct inet_diag_bc_op op = {.code = code, .yes = yes, .no = no};

	memcpy(at, &op, sizeof(op));
}

/* Total bytecode length, or 0 when a rule has no port condition (no filter possible). */
static size_t filter_len(const struct rule *rules, size_t nrules)
{
	uint8_t code[4];
	uint16_t port[4];
	size_t total = 0;

	for (size_t i = 0; i < nrules; i++) {
		int n = rule_conds(&rules[i], code, port);

		if (n == 0)
			return 0;
		total += (size_t)n * PORT_COND_LEN + OP_LEN;
	}
	return total;
}

/* One clause: its conditions (a failure jumps to the next clause, or past the end for
 * the last one: reject), then a jump to the end (accept). Returns the clause length. */
static size_t put_clause(uint8_t *bc, size_t at, size_t total, const struct rule *r)
{
	uint8_t code[4];
	uint16_t port[4];
	int n = rule_conds(r, code, port);
	size_t clause = (size_t)n * PORT_COND_LEN + OP_LEN, pos = at;

	for (int i = 0; i < n; i++, pos += PORT_COND_LEN) {
		size_t next = at + clause; /* start of the next clause, or total */
		size_t no = next - pos + (next == total ? OP_LEN : 0);

		put_op(bc + pos, code[i], PORT_COND_LEN, (uint16_t)no);
		put_op(bc + pos + OP_LEN, 0, 0, port[i]);
	}
	put_op(bc + pos, INET_DIAG_BC_JMP, OP_LEN, (uint16_t)(total - pos));
	return clause;
}

size_t diag_build_filter(uint8_t *bc, size_t len, const struct rule *rules, size_t nrules)
{
	size_t total = filter_len(rules, nrules), at = 0;

	if (total == 0 || total > len || total > DIAG_BC_MAX)
		return 0;
	for (size_t i = 0; i < nrules; i++)
		at += put_clause(bc, at, total, &rules[i]);
	return total;
}

size_t diag_build_dump(uint8_t *buf, size_t len, int family, uint32_t seq, const struct rule *rules,
                       size_t nrules)
{
	const size_t head = NLMSG_LENGTH(sizeof(struct inet_diag_req_v2));
	struct nlmsghdr nlh = {0};
	struct inet_diag_req_v2 req = {0};
	struct nlattr nla = {0};
	size_t bclen = 0;

	if (len < head + NLA_HDRLEN + DIAG_BC_MAX)
		return 0;
	bclen = diag_build_filter(buf + head + NLA_HDRLEN, DIAG_BC_MAX, rules, nrules);
	nlh.nlmsg_len = (uint32_t)(head + (bclen ? NLA_HDRLEN + bclen : 0));
	nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh.nlmsg_seq = seq;
	req.sdiag_family = (uint8_t)family;
	req.sdiag_protocol = IPPROTO_TCP;
	req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
	req.idiag_states = 1u << DIAG_TCP_ESTABLISHED;
	memcpy(buf, &nlh, sizeof(nlh));
	memcpy(buf + NLMSG_HDRLEN, &req, sizeof(req));
	if (bclen) {
		nla.nla_len = (uint16_t)(NLA_HDRLEN + bclen);
		nla.nla_type = INET_DIAG_REQ_BYTECODE;
		memcpy(buf + head, &nla, sizeof(nla));
	}
	return nlh.nlmsg_len;
}

/* The 16 bytes of an inet_diag address for an address of key's family, asked as family. */
static void query_addr(uint32_t dst[4], const uint8_t *ip, int key_family, int family)
{
	uint8_t b[16] = {0};

	if (key_family == AF_INET && family == AF_INET6) {
		b[10] = b[11] = 0xff; /* ::ffff:a.b.c.d */
		memcpy(b + 12, ip, 4);
	} else {
		memcpy(b, ip, addr_len(key_family));
	}
	memcpy(dst, b, sizeof(b));
}

size_t diag_build_query(uint8_t *buf, size_t len, const struct addr_tuple *key, int family,
                        uint32_t seq)
{
	struct nlmsghdr nlh = {0};
	struct inet_diag_req_v2 req = {0};

	if (len < NLMSG_LENGTH(sizeof(req)))
		return 0;
	nlh.nlmsg_len = (uint32_t)NLMSG_LENGTH(sizeof(req));
	nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh.nlmsg_flags = NLM_F_REQUEST;
	nlh.nlmsg_seq = seq;
	req.sdiag_family = (uint8_t)family;
	req.sdiag_protocol = IPPROTO_TCP;
	req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
	req.idiag_states = ~0u;
	req.id.idiag_sport = htons(key->lport);
	req.id.idiag_dport = htons(key->rport);
	query_addr(req.id.idiag_src, key->local, key->family, family);
	query_addr(req.id.idiag_dst, key->remote, key->family, family);
	req.id.idiag_cookie[0] = req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	memcpy(buf, &nlh, sizeof(nlh));
	memcpy(buf + NLMSG_HDRLEN, &req, sizeof(req));
	return nlh.nlmsg_len;
}

/* ---- answer ----------------------------------------------------------------- */

/* The socket's 4-tuple; an IPv6 socket talking IPv4 (v4-mapped) becomes IPv4. */
static void sock_key(const struct inet_diag_msg *m, struct addr_tuple *key)
{
	addr_tuple_from_socket(key, m->idiag_family, (const uint8_t *)m->id.idiag_src,
	                       ntohs(m->id.idiag_sport), (const uint8_t *)m->id.idiag_dst,
	                       ntohs(m->id.idiag_dport));
}

/* tcp_info's fields up to len bytes (the kernel's may be older, or newer, than ours). */
static void read_info(const uint8_t *data, size_t len, struct diag_sock *s)
{
	struct tcp_info ti;

	if (len < INFO_NEEDED)
		return;
	memset(&ti, 0, sizeof(ti));
	memcpy(&ti, data, len < sizeof(ti) ? len : sizeof(ti));
	s->retransmits = ti.tcpi_retransmits;
	s->backoff = ti.tcpi_backoff;
	s->probes = ti.tcpi_probes;
	s->unacked = ti.tcpi_unacked;
	s->last_data_recv_ms = ti.tcpi_last_data_recv;
	s->last_ack_recv_ms = ti.tcpi_last_ack_recv;
	s->last_data_sent_ms = ti.tcpi_last_data_sent;
	s->rto_us = ti.tcpi_rto;
	if (len >= INFO_SND_WND)
		s->snd_wnd = ti.tcpi_snd_wnd;
	s->has_info = 1;
}

/* One attribute after the inet_diag_msg (nlwalk_attrs callback). */
static int read_attr(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == INET_DIAG_INFO)
		read_info(mnl_attr_get_payload(a), mnl_attr_get_payload_len(a), data);
	return MNL_CB_OK;
}

/* One SOCK_DIAG_BY_FAMILY message. Returns 0 or -1. */
static int read_sock(const struct nlmsghdr *h, diag_sock_fn fn, void *arg)
{
	struct inet_diag_msg m;
	struct diag_sock s;

	if (mnl_nlmsg_get_payload_len(h) < sizeof(m))
		return -1;
	memcpy(&m, mnl_nlmsg_get_payload(h), sizeof(m));
	if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6)
		return -1;
	memset(&s, 0, sizeof(s));
	sock_key(&m, &s.key);
	s.state = m.idiag_state;
	s.timer = m.idiag_timer;
	s.rqueue = m.idiag_rqueue;
	s.wqueue = m.idiag_wqueue;
	s.uid = m.idiag_uid;
	s.inode = m.idiag_inode;
	s.cookie = (uint64_t)m.id.idiag_cookie[1] << 32 | m.id.idiag_cookie[0];
	if (nlwalk_attrs(h, sizeof(m), read_attr, &s) == MNL_CB_ERROR)
		return -1;
	fn(arg, &s);
	return 0;
}

static int read_error(const struct nlmsghdr *h, int *err)
{
	struct nlmsgerr e;

	if (mnl_nlmsg_get_payload_len(h) < sizeof(e.error))
		return DIAG_E_MALFORMED;
	memcpy(&e.error, mnl_nlmsg_get_payload(h), sizeof(e.error));
	if (e.error == 0)
		return DIAG_MORE;                                     /* an ACK */
	*err = e.error < 0 && e.error != INT_MIN ? -e.error : EPROTO; /* -INT_MIN overflows */
	return DIAG_E_KERNEL;
}

/* One whole message of the answer. Returns an enum diag_result. */
static int read_msg(const struct nlmsghdr *h, uint32_t seq, diag_sock_fn fn, void *arg, int *err)
{
	if (h->nlmsg_seq != seq)
		return DIAG_MORE; /* not ours: an old answer */
	if (h->nlmsg_type == NLMSG_DONE)
		return DIAG_DONE;
	if (h->nlmsg_type == NLMSG_ERROR)
		return read_error(h, err);
	if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && read_sock(h, fn, arg) < 0)
		return DIAG_E_MALFORMED;
	return DIAG_MORE;
}

int diag_parse(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender, diag_sock_fn fn,
               void *arg, int *err)
{
	const struct nlmsghdr *h;
	int rest, rc;

	if (sender != 0)
		return DIAG_MORE; /* not from the kernel: another program's, ignored whole */
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		rc = read_msg(h, seq, fn, arg, err);
		if (rc != DIAG_MORE)
			return rc;
	}
	return nlwalk_cut(h, rest) ? DIAG_E_MALFORMED : DIAG_MORE;
}

double diag_idle(const struct diag_sock *s)
{
	uint32_t ms =
	    s->last_data_recv_ms < s->last_ack_recv_ms ? s->last_data_recv_ms : s->last_ack_recv_ms;

	return ms / 1000.0;
}

/* ---- the socket --------------------------------------------------------------- */

int diag_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	struct timeval tv = {DIAG_RECV_TIMEOUT, 0};

	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int diag_send(int fd, const uint8_t *req, size_t len)
{
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	uint8_t junk[1];

	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_TRUNC) >= 0)
		; /* what an abandoned dump left behind */
	return sendto(fd, req, len, 0, (struct sockaddr *)&nl, sizeof(nl)) == (ssize_t)len ? 0 : -1;
}

ssize_t diag_recv(int fd, uint8_t *buf, size_t len, uint32_t *sender)
{
	struct sockaddr_nl from;
	socklen_t flen = sizeof(from);
	ssize_t n;

	do
		n = recvfrom(fd, buf, len, 0, (struct sockaddr *)&from, &flen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (flen < sizeof(from) || from.nl_family != AF_NETLINK) {
		errno = EPROTO;
		return -1;
	}
	*sender = from.nl_pid;
	return n;
}

double diag_stall_silence(const struct diag_sock *s)
{
	unsigned b = s->backoff < 16 ? s->backoff : 16;
	double waited, head;

	if (!s->has_info || s->timer != DIAG_TIMER_RETRANS || s->unacked == 0)
		return -1.0;
	waited = (double)s->rto_us / 1e6 * (1.0 - 1.0 / (double)(1u << b));
	head = waited + s->last_data_sent_ms / 1000.0;
	return s->last_ack_recv_ms / 1000.0 < head ? s->last_ack_recv_ms / 1000.0 : head;
}

struct query_got {
	struct diag_sock *out;
	int found;
};

static void query_one(void *arg, const struct diag_sock *s)
{
	struct query_got *g = arg;

	*g->out = *s;
	g->found = 1;
}

/* One exact query asked as family; 0, or -1 with errno. */
static int query_as(int fd, const struct addr_tuple *key, int family, uint32_t seq,
                    struct diag_sock *out)
{
	_Alignas(uint32_t) uint8_t buf[4096];
	struct query_got g = {out, 0};
	uint32_t sender;
	size_t n = diag_build_query(buf, sizeof(buf), key, family, seq);
	ssize_t got;
	int err = 0, rc;

	if (diag_send(fd, buf, n) < 0 || (got = diag_recv(fd, buf, sizeof(buf), &sender)) < 0)
		return -1;
	rc = diag_parse(buf, (size_t)got, seq, sender, query_one, &g, &err);
	if (g.found)
		return 0;
	errno = rc == DIAG_E_KERNEL ? err : EPROTO;
	return -1;
}

int diag_query(int fd, const struct addr_tuple *key, uint32_t seq, struct diag_sock *out)
{
	if (query_as(fd, key, key->family, seq, out) == 0)
		return 0;
	if (key->family != AF_INET || errno != ENOENT)
		return -1;
	return query_as(fd, key, AF_INET6, seq + 1, out); /* a dual-stack socket */
}
