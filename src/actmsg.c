/* actmsg.c: SOCK_DESTROY request and ack bytes, exec: environment (pure). See actmsg.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>

#include "actmsg.h"
#include "nlwalk.h"

_Static_assert(NLMSG_HDRLEN + sizeof(struct inet_diag_req_v2) == ACTMSG_DIAG_LEN,
               "ACTMSG_DIAG_LEN");

/* TCP_LISTEN in the kernel's socket states. */
#define ACTMSG_TCP_LISTEN 10
/* The kernel's netlink port id, and its largest errno (MAX_ERRNO). */
#define ACTMSG_KERNEL_PORT 0
#define ACTMSG_MAX_ERRNO   4095

static size_t diag_request(const struct addr_tuple *t, uint16_t type, uint16_t flags, uint32_t seq,
                           const uint32_t cookie[2], uint8_t *buf, size_t len)
{
	struct nlmsghdr nh;
	struct inet_diag_req_v2 req;

	if (len < ACTMSG_DIAG_LEN)
		return 0;
	memset(&nh, 0, sizeof(nh));
	nh.nlmsg_len = ACTMSG_DIAG_LEN;
	nh.nlmsg_type = type;
	nh.nlmsg_flags = flags;
	nh.nlmsg_seq = seq;
	memset(&req, 0, sizeof(req));
	req.sdiag_family = t->family;
	req.sdiag_protocol = IPPROTO_TCP;
	req.idiag_states = ~0u;
	req.id.idiag_sport = htons(t->lport);
	req.id.idiag_dport = htons(t->rport);
	memcpy(req.id.idiag_src, t->local, addr_len(t->family));
	memcpy(req.id.idiag_dst, t->remote, addr_len(t->family));
	req.id.idiag_cookie[0] = cookie[0];
	req.id.idiag_cookie[1] = cookie[1];
	memcpy(buf, &nh, sizeof(nh));
	memcpy(buf + NLMSG_HDRLEN, &req, sizeof(req));
	return ACTMSG_DIAG_LEN;
}

size_t actmsg_diag_get(const struct addr_tuple *t, uint32_t seq, uint8_t *buf, size_t len)
{
	static const uint32_t none[2] = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE};

	return diag_request(t, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, none, buf, len);
}

size_t actmsg_diag_destroy(const struct addr_tuple *t, uint32_t seq, const uint32_t cookie[2],
                           uint8_t *buf, size_t len)
{
	return diag_request(t, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq, cookie, buf, len);
}

/* The nested CTA_TUPLE_ORIG of t: addresses, then protocol TCP and ports (network order). */
static void ct_tuple(struct nlmsghdr *h, const struct addr_tuple *t)
{
	struct nlattr *tuple = mnl_attr_nest_start(h, CTA_TUPLE_ORIG), *ip, *proto;
	bool v4 = t->family == AF_INET;

	ip = mnl_attr_nest_start(h, CTA_TUPLE_IP);
	mnl_attr_put(h, v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, addr_len(t->family), t->local);
	mnl_attr_put(h, v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, addr_len(t->family), t->remote);
	mnl_attr_nest_end(h, ip);
	proto = mnl_attr_nest_start(h, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(h, CTA_PROTO_NUM, IPPROTO_TCP);
	mnl_attr_put_u16(h, CTA_PROTO_SRC_PORT, htons(t->lport));
	mnl_attr_put_u16(h, CTA_PROTO_DST_PORT, htons(t->rport));
	mnl_attr_nest_end(h, proto);
	mnl_attr_nest_end(h, tuple);
}

/* A ctnetlink request of type type (IPCTNL_MSG_CT_*) naming the entry of t. */
static size_t ct_request(const struct addr_tuple *t, uint16_t type, uint16_t flags, uint32_t seq,
                         uint8_t *buf, size_t len)
{
	struct nlmsghdr *h;
	struct nfgenmsg *nf;

	if (len < ACTMSG_CT_LEN || ((uintptr_t)buf % NLWALK_ALIGN) != 0 ||
	    (t->family != AF_INET && t->family != AF_INET6))
		return 0;
	memset(buf, 0, ACTMSG_CT_LEN);
	h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | type);
	h->nlmsg_flags = flags;
	h->nlmsg_seq = seq;
	nf = mnl_nlmsg_put_extra_header(h, sizeof(*nf));
	nf->nfgen_family = t->family;
	nf->version = NFNETLINK_V0;
	nf->res_id = 0;
	ct_tuple(h, t);
	return h->nlmsg_len;
}

size_t actmsg_ct_delete(const struct addr_tuple *t, uint32_t seq, uint8_t *buf, size_t len)
{
	return ct_request(t, IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, buf, len);
}

size_t actmsg_ct_get(const struct addr_tuple *t, uint32_t seq, uint8_t *buf, size_t len)
{
	return ct_request(t, IPCTNL_MSG_CT_GET, NLM_F_REQUEST, seq, buf, len);
}

/* Where a conntrack answer's attributes go while they are walked. */
struct ct_walk {
	struct actmsg_ct *out;
	struct addr_tuple *t; /* the tuple being read */
	int family;
	unsigned got; /* CT_GOT_* of the tuple being read */
};

enum { CT_GOT_SRC = 1, CT_GOT_DST = 2, CT_GOT_NUM = 4, CT_GOT_SPORT = 8, CT_GOT_DPORT = 16 };
#define CT_GOT_ALL 31

/* An address attribute of CTA_TUPLE_IP, of the answer's family. */
static int ct_ip_cb(const struct nlattr *a, void *data)
{
	struct ct_walk *w = data;
	int type = mnl_attr_get_type(a);
	size_t n = addr_len(w->family);
	bool v4 = w->family == AF_INET;

	if (mnl_attr_get_payload_len(a) != n)
		return MNL_CB_OK;
	if (type == (v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC)) {
		memcpy(w->t->local, mnl_attr_get_payload(a), n);
		w->got |= CT_GOT_SRC;
	} else if (type == (v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST)) {
		memcpy(w->t->remote, mnl_attr_get_payload(a), n);
		w->got |= CT_GOT_DST;
	}
	return MNL_CB_OK;
}

/* An attribute of CTA_TUPLE_PROTO: TCP, and the ports (network order). */
static int ct_proto_cb(const struct nlattr *a, void *data)
{
	struct ct_walk *w = data;
	int type = mnl_attr_get_type(a);

	if (type == CTA_PROTO_NUM && mnl_attr_validate(a, MNL_TYPE_U8) == 0 &&
	    mnl_attr_get_u8(a) == IPPROTO_TCP)
		w->got |= CT_GOT_NUM;
	else if (type == CTA_PROTO_SRC_PORT && mnl_attr_validate(a, MNL_TYPE_U16) == 0) {
		w->t->lport = ntohs(mnl_attr_get_u16(a));
		w->got |= CT_GOT_SPORT;
	} else if (type == CTA_PROTO_DST_PORT && mnl_attr_validate(a, MNL_TYPE_U16) == 0) {
		w->t->rport = ntohs(mnl_attr_get_u16(a));
		w->got |= CT_GOT_DPORT;
	}
	return MNL_CB_OK;
}

/* An attribute of CTA_TUPLE_ORIG or CTA_TUPLE_REPLY. */
static int ct_tuple_cb(const struct nlattr *a, void *data)
{
	int type = mnl_attr_get_type(a);

	if (type == CTA_TUPLE_IP)
		return mnl_attr_parse_nested(a, ct_ip_cb, data) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
	if (type == CTA_TUPLE_PROTO)
		return mnl_attr_parse_nested(a, ct_proto_cb, data) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
	return MNL_CB_OK;
}

/* One tuple into t: true when it is whole (addresses, TCP, ports). */
static bool ct_read_tuple(const struct nlattr *a, struct ct_walk *w, struct addr_tuple *t)
{
	memset(t, 0, sizeof(*t));
	t->family = (uint8_t)w->family;
	w->t = t;
	w->got = 0;
	return mnl_attr_parse_nested(a, ct_tuple_cb, w) >= 0 && w->got == CT_GOT_ALL;
}

/* CTA_PROTOINFO_TCP's state. */
static int ct_tcp_cb(const struct nlattr *a, void *data)
{
	struct actmsg_ct *out = data;

	if (mnl_attr_get_type(a) == CTA_PROTOINFO_TCP_STATE &&
	    mnl_attr_validate(a, MNL_TYPE_U8) == 0) {
		out->tcp_state = mnl_attr_get_u8(a);
		out->have |= ACTMSG_CT_STATE;
	}
	return MNL_CB_OK;
}

/* CTA_PROTOINFO: its CTA_PROTOINFO_TCP. */
static int ct_protoinfo_cb(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == CTA_PROTOINFO_TCP)
		return mnl_attr_parse_nested(a, ct_tcp_cb, data) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
	return MNL_CB_OK;
}

/* A top-level attribute of the entry. */
static int ct_attr_cb(const struct nlattr *a, void *data)
{
	struct ct_walk *w = data;
	int type = mnl_attr_get_type(a);

	if (type == CTA_TUPLE_ORIG && ct_read_tuple(a, w, &w->out->orig))
		w->out->have |= ACTMSG_CT_ORIG;
	else if (type == CTA_TUPLE_REPLY && ct_read_tuple(a, w, &w->out->reply))
		w->out->have |= ACTMSG_CT_REPLY;
	else if (type == CTA_STATUS && mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
		w->out->status = ntohl(mnl_attr_get_u32(a));
		w->out->have |= ACTMSG_CT_STATUS;
	} else if (type == CTA_TIMEOUT && mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
		w->out->timeout = ntohl(mnl_attr_get_u32(a));
		w->out->have |= ACTMSG_CT_TIMEOUT;
	} else if (type == CTA_PROTOINFO && mnl_attr_parse_nested(a, ct_protoinfo_cb, w->out) < 0)
		return MNL_CB_ERROR;
	return MNL_CB_OK;
}

/* One entry message h of an answer into *out: 0, or -1 when it is not a whole TCP entry. */
static int ct_entry(const struct nlmsghdr *h, struct actmsg_ct *out)
{
	struct nfgenmsg nf;
	struct ct_walk w;

	if (mnl_nlmsg_get_payload_len(h) < sizeof(nf))
		return -1;
	memcpy(&nf, mnl_nlmsg_get_payload(h), sizeof(nf));
	if (nf.nfgen_family != AF_INET && nf.nfgen_family != AF_INET6)
		return -1;
	memset(out, 0, sizeof(*out));
	w.out = out;
	w.family = nf.nfgen_family;
	if (nlwalk_attrs(h, sizeof(nf), ct_attr_cb, &w) < 0)
		return -1;
	return (out->have & (ACTMSG_CT_ORIG | ACTMSG_CT_REPLY)) ==
	               (ACTMSG_CT_ORIG | ACTMSG_CT_REPLY)
	           ? 0
	           : -1;
}

int actmsg_ct_found(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender,
                    struct actmsg_ct *out)
{
	const uint16_t entry = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	const struct nlmsghdr *h;
	int rest;

	if (sender != ACTMSG_KERNEL_PORT)
		return -1;
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		if (h->nlmsg_seq != seq)
			continue;
		if (h->nlmsg_type == NLMSG_ERROR)
			return actmsg_diag_ack((const uint8_t *)h, h->nlmsg_len, seq, sender);
		if (h->nlmsg_type == entry)
			return ct_entry(h, out);
	}
	return -1; /* no answer, or a cut message before it */
}

size_t actmsg_ct_dump(int family, uint32_t seq, uint8_t *buf, size_t len)
{
	struct nlmsghdr *h;
	struct nfgenmsg *nf;

	if (len < NLMSG_HDRLEN + sizeof(*nf) || ((uintptr_t)buf % NLWALK_ALIGN) != 0)
		return 0;
	memset(buf, 0, NLMSG_HDRLEN + sizeof(*nf));
	h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	h->nlmsg_seq = seq;
	nf = mnl_nlmsg_put_extra_header(h, sizeof(*nf));
	nf->nfgen_family = (uint8_t)family;
	nf->version = NFNETLINK_V0;
	return h->nlmsg_len;
}

int actmsg_ct_each(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender,
                   void (*fn)(const struct actmsg_ct *ct, void *arg), void *arg)
{
	const uint16_t entry = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	const struct nlmsghdr *h;
	struct actmsg_ct ct;
	int rest;

	if (sender != ACTMSG_KERNEL_PORT)
		return -1;
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		if (h->nlmsg_seq != seq)
			return -1;
		if (h->nlmsg_type == NLMSG_DONE)
			return 1;
		if (h->nlmsg_type == NLMSG_ERROR)
			return actmsg_diag_ack((const uint8_t *)h, h->nlmsg_len, seq, sender);
		if (h->nlmsg_type == entry && ct_entry(h, &ct) == 0)
			fn(&ct, arg);
	}
	return nlwalk_cut(h, rest) ? -1 : 0;
}

int actmsg_ct_events(const uint8_t *buf, size_t len, uint32_t sender,
                     void (*fn)(const struct actmsg_ct *ct, void *arg), void *arg)
{
	const uint16_t destroy = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
	const struct nlmsghdr *h;
	struct actmsg_ct ct;
	int rest, n = 0;

	if (sender != ACTMSG_KERNEL_PORT)
		return -1;
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		if (h->nlmsg_type == destroy && ct_entry(h, &ct) == 0) {
			fn(&ct, arg);
			n++;
		}
	}
	return nlwalk_cut(h, rest) ? -1 : n;
}

/* Does the kernel's answer name connection t itself? An IPv6 socket talking IPv4 (a
 * dual-stack listener's connection) answers with v4-mapped addresses. */
static bool same_conn(const struct inet_diag_msg *m, const struct addr_tuple *t)
{
	struct addr_tuple got;

	addr_tuple_from_socket(&got, m->idiag_family, (const uint8_t *)m->id.idiag_src,
	                       ntohs(m->id.idiag_sport), (const uint8_t *)m->id.idiag_dst,
	                       ntohs(m->id.idiag_dport));
	return m->idiag_state != ACTMSG_TCP_LISTEN && addr_tuple_equal(&got, t);
}

int actmsg_diag_found(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender,
                      const struct addr_tuple *t, uint32_t cookie[2])
{
	const struct nlmsghdr *h;
	struct inet_diag_msg m;
	int rest;

	if (sender != ACTMSG_KERNEL_PORT)
		return -1;
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		if (h->nlmsg_seq != seq)
			continue;
		if (h->nlmsg_type == NLMSG_ERROR)
			return actmsg_diag_ack((const uint8_t *)h, h->nlmsg_len, seq, sender);
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		if (mnl_nlmsg_get_payload_len(h) < sizeof(m))
			return -1;
		memcpy(&m, mnl_nlmsg_get_payload(h), sizeof(m));
		if (!same_conn(&m, t))
			return ENOENT;
		cookie[0] = m.id.idiag_cookie[0];
		cookie[1] = m.id.idiag_cookie[1];
		return 0;
	}
	return -1; /* no answer, or a cut message before it */
}

/* The errno value of a netlink error code: 0, 1..4095, or EPROTO for anything else (a
 * kernel never sends it; negating INT_MIN would overflow). */
static int nl_errno(int code)
{
	if (code == 0)
		return 0;
	if (code < 0 && code >= -ACTMSG_MAX_ERRNO)
		return -code;
	return EPROTO;
}

int actmsg_diag_ack(const uint8_t *buf, size_t len, uint32_t seq, uint32_t sender)
{
	const struct nlmsghdr *h;
	struct nlmsgerr err;
	int rest;

	if (sender != ACTMSG_KERNEL_PORT)
		return -1;
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == seq &&
		    mnl_nlmsg_get_payload_len(h) >= sizeof(err)) {
			memcpy(&err, mnl_nlmsg_get_payload(h), sizeof(err));
			return nl_errno(err.error);
		}
	}
	return -1; /* no ack, or a cut message before it */
}

/* Appends NAME=value (control characters as spaces) as the next variable; -1 when full. */
static int env_add(struct actmsg_env *env, int *n, size_t *used, const char *name,
                   const char *value)
{
	size_t room = sizeof(env->buf) - *used, need = strlen(name) + 1 + strlen(value) + 1;
	char *s = env->buf + *used, *p;

	if (*n >= ACTMSG_ENV_MAX || need > room)
		return -1;
	snprintf(s, room, "%s=%s", name, value);
	for (p = s + strlen(name) + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	env->envp[(*n)++] = s;
	env->envp[*n] = NULL;
	*used += need;
	return 0;
}

int actmsg_env(struct actmsg_env *env, const struct actmsg_fields *f)
{
	const char *names[] = {"KAPROBE_EVENT",  "KAPROBE_RULE",   "KAPROBE_LOCAL",
	                       "KAPROBE_REMOTE", "KAPROBE_REASON", "KAPROBE_SIDE"};
	const char *values[] = {f->event, f->rule, f->local, f->remote, f->reason, f->side};
	char probes[16], idle[32];
	size_t used = 0, i;
	int n = 0;

	env->envp[0] = NULL;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (values[i] && values[i][0] && env_add(env, &n, &used, names[i], values[i]) < 0)
			return -1;
	snprintf(probes, sizeof(probes), "%d", f->probes);
	if (env_add(env, &n, &used, "KAPROBE_PROBES", probes) < 0)
		return -1;
	if (f->idle >= 0) {
		snprintf(idle, sizeof(idle), "%.3f", f->idle);
		if (env_add(env, &n, &used, "KAPROBE_IDLE", idle) < 0)
			return -1;
	}
	if (env_add(env, &n, &used, "PATH", &ACTMSG_PATH[5]) < 0)
		return -1;
	return n;
}
