/* hush.c: kaprobed's nftables table for gateway mode (hush.h). The table is written once
 * as text through libnftables; the expected answers are set elements added through
 * libnftnl messages in one nfnetlink batch per call (libmnl socket). */
#include "hush.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <nftables/libnftables.h>

#define HUSH_TABLE    "kaprobed"
#define HUSH_BUF      65536 /* one batch: 256 elements of at most ~90 bytes, and headers */
#define HUSH_PER_SEND 256   /* elements per batch at most */

struct hush {
	struct mnl_socket *nl;
	struct nft_ctx *nft;
	uint32_t seq;
	bool active;
	unsigned long long elems, batches;
	_Alignas(struct nlmsghdr) char buf[HUSH_BUF];
};

/* The sets, by kind and family: set_names[kind == HUSH_CHALLENGE][family == AF_INET6]. */
static const char *const set_names[2][2] = {{"ans4", "ans6"}, {"syn4", "syn6"}};

/* The table. A forwarded pure ACK (flags exactly ACK; the IP length is that of the IP
 * header without options, or the IPv6 header without extension headers, plus the TCP
 * header's doff: no payload) goes to the lookups; only a key in a set is dropped. The
 * length and doff pairs are one rule each (nft 1.0.6 cannot list a concatenation of
 * `ip length . tcp doff`). Learning SYNs marked HUSH_NOTRACK_MARK skip conntrack. */
static const char table_head[] =
    "table inet " HUSH_TABLE "\n"
    "delete table inet " HUSH_TABLE "\n"
    "table inet " HUSH_TABLE " {\n"
    " set ans4 { typeof ip saddr . tcp sport . tcp sequence . tcp ackseq; flags timeout;"
    " size 1048576; }\n"
    " set ans6 { typeof ip6 saddr . tcp sport . tcp sequence . tcp ackseq; flags timeout;"
    " size 1048576; }\n"
    " set syn4 { typeof ip saddr . tcp sport . ip daddr . tcp dport; flags timeout;"
    " size 1048576; }\n"
    " set syn6 { typeof ip6 saddr . tcp sport . ip6 daddr . tcp dport; flags timeout;"
    " size 1048576; }\n"
    " chain hush4 {\n"
    "  ip saddr . tcp sport . tcp sequence . tcp ackseq @ans4 counter drop\n"
    "  ip saddr . tcp sport . ip daddr . tcp dport @syn4 counter drop\n"
    " }\n"
    " chain hush6 {\n"
    "  ip6 saddr . tcp sport . tcp sequence . tcp ackseq @ans6 counter drop\n"
    "  ip6 saddr . tcp sport . ip6 daddr . tcp dport @syn6 counter drop\n"
    " }\n";

/* The table's text into buf: table_head, the forward chain's length rules, the output
 * chain that leaves marked packets untracked. 0, or -1 when buf is too short. */
static int table_text(char *buf, size_t len)
{
	size_t at = (size_t)snprintf(buf, len, "%s", table_head);
	int doff;

	at += (size_t)snprintf(buf + at, len - at,
	                       " chain learn_out {\n"
	                       "  type filter hook output priority raw; policy accept;\n"
	                       "  meta mark %#x notrack\n"
	                       " }\n"
	                       " chain forward {\n"
	                       "  type filter hook forward priority filter - 10; policy accept;\n"
	                       "  tcp flags != ack return\n",
	                       HUSH_NOTRACK_MARK);
	for (doff = 5; doff <= 15 && at < len; doff++)
		at += (size_t)snprintf(buf + at, len - at,
		                       "  ip hdrlength 5 ip length %d tcp doff %d goto hush4\n"
		                       "  ip6 nexthdr tcp ip6 length %d tcp doff %d goto hush6\n",
		                       20 + 4 * doff, doff, 4 * doff, doff);
	if (at < len)
		at += (size_t)snprintf(buf + at, len - at, " }\n}\n");
	return at < len ? 0 : -1;
}

struct hush *hush_open(char *errbuf, size_t errlen)
{
	struct hush *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	h->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
	h->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!h->nl || !h->nft || mnl_socket_bind(h->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(errbuf, errlen, "nftables: %s", strerror(errno ? errno : ENOMEM));
		hush_close(h);
		return NULL;
	}
	nft_ctx_buffer_output(h->nft);
	nft_ctx_buffer_error(h->nft);
	return h;
}

/* Runs nft commands; 0, or -1 with the first line of nft's error in errbuf. */
static int run_nft(struct hush *h, const char *text, char *errbuf, size_t errlen)
{
	const char *err;
	size_t n;

	if (nft_run_cmd_from_buffer(h->nft, text) == 0)
		return 0;
	err = nft_ctx_get_error_buffer(h->nft);
	n = err ? strcspn(err, "\n") : 0;
	snprintf(errbuf, errlen, "nftables: %.*s", (int)n, n ? err : "failed");
	return -1;
}

int hush_start(struct hush *h, char *errbuf, size_t errlen)
{
	char text[4096];

	if (table_text(text, sizeof(text)) < 0 || run_nft(h, text, errbuf, errlen) < 0)
		return -1;
	h->active = true;
	return 0;
}

void hush_stop(struct hush *h)
{
	char err[256];

	if (!h || !h->active)
		return;
	h->active = false;
	(void)run_nft(h, "delete table inet " HUSH_TABLE "\n", err, sizeof(err));
}

bool hush_active(const struct hush *h)
{
	return h && h->active;
}

/* Writes one field into a concatenated key: its bytes, padded to 4 (nft's registers). */
static size_t key_put(uint8_t *key, size_t at, const void *v, size_t len)
{
	memcpy(key + at, v, len);
	memset(key + at + len, 0, (4 - len % 4) % 4);
	return at + len + (4 - len % 4) % 4;
}

/* The key bytes of x (network byte order, each field padded to 4 bytes); their length. */
static size_t key_of(const struct hush_expect *x, uint8_t key[48])
{
	size_t alen = x->family == AF_INET6 ? 16 : 4, at;
	uint16_t sport = htons(x->sport), dport = htons(x->dport);
	uint32_t seq = htonl(x->seq), ack = htonl(x->ack);

	at = key_put(key, 0, x->src, alen);
	at = key_put(key, at, &sport, 2);
	if (x->kind == HUSH_CHALLENGE) {
		at = key_put(key, at, x->dst, alen);
		return key_put(key, at, &dport, 2);
	}
	at = key_put(key, at, &seq, 4);
	return key_put(key, at, &ack, 4);
}

/* Adds x to its set's element list (the set made at its first element); -1: no memory. */
static int elem_add(struct nftnl_set *sets[2][2], const struct hush_expect *x)
{
	int k = x->kind == HUSH_CHALLENGE, f = x->family == AF_INET6;
	struct nftnl_set_elem *el;
	uint8_t key[48];
	size_t len = key_of(x, key);

	if (!sets[k][f]) {
		if (!(sets[k][f] = nftnl_set_alloc()))
			return -1;
		nftnl_set_set_str(sets[k][f], NFTNL_SET_TABLE, HUSH_TABLE);
		nftnl_set_set_str(sets[k][f], NFTNL_SET_NAME, set_names[k][f]);
	}
	if (!(el = nftnl_set_elem_alloc()))
		return -1;
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key, (uint32_t)len);
	nftnl_set_elem_set_u64(el, NFTNL_SET_ELEM_TIMEOUT, x->timeout_ms ? x->timeout_ms : 1);
	nftnl_set_elem_add(sets[k][f], el);
	return 0;
}

/* The batch of sets' NEWSETELEM messages into h->buf; its length. */
static size_t batch_build(struct hush *h, struct nftnl_set *sets[2][2])
{
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(h->buf, sizeof(h->buf));
	struct nlmsghdr *nlh;
	size_t len;
	int k, f;

	nftnl_batch_begin(mnl_nlmsg_batch_current(b), h->seq++);
	mnl_nlmsg_batch_next(b);
	for (k = 0; k < 2; k++)
		for (f = 0; f < 2; f++) {
			if (!sets[k][f])
				continue;
			nlh = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), NFT_MSG_NEWSETELEM,
			                            NFPROTO_INET, NLM_F_CREATE, h->seq++);
			nftnl_set_elems_nlmsg_build_payload(nlh, sets[k][f]);
			mnl_nlmsg_batch_next(b);
		}
	nftnl_batch_end(mnl_nlmsg_batch_current(b), h->seq++);
	mnl_nlmsg_batch_next(b);
	len = mnl_nlmsg_batch_size(b);
	mnl_nlmsg_batch_stop(b);
	return len;
}

/* The kernel's answer: only errors come (no NLM_F_ACK), already queued when sendmsg
 * returns (nfnetlink handles a batch in the sender's call). 0, or -1 with errno. */
static int batch_errors(struct hush *h)
{
	const struct nlmsghdr *nlh;
	const struct nlmsgerr *e;
	int len, err = 0;

	while ((len = (int)mnl_socket_recvfrom(h->nl, h->buf, sizeof(h->buf))) > 0) {
		for (nlh = (const struct nlmsghdr *)h->buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			if (nlh->nlmsg_type != NLMSG_ERROR ||
			    nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*e)))
				continue;
			e = mnl_nlmsg_get_payload(nlh);
			if (e->error)
				err = -e->error;
		}
	}
	errno = err;
	return err ? -1 : 0;
}

/* One batch of at most HUSH_PER_SEND elements. */
static int add_some(struct hush *h, const struct hush_expect *x, size_t n)
{
	struct nftnl_set *sets[2][2] = {{NULL, NULL}, {NULL, NULL}};
	int rc = 0, saved = 0, k, f;
	size_t i, len;

	for (i = 0; i < n && rc == 0; i++)
		rc = elem_add(sets, &x[i]);
	if (rc == 0) {
		len = batch_build(h, sets);
		if (mnl_socket_sendto(h->nl, h->buf, len) < 0 || batch_errors(h) < 0)
			rc = -1;
		saved = errno;
		h->batches++;
		h->elems += rc == 0 ? n : 0;
	}
	for (k = 0; k < 2; k++)
		for (f = 0; f < 2; f++)
			if (sets[k][f])
				nftnl_set_free(sets[k][f]); /* frees its elements */
	errno = rc ? (saved ? saved : ENOMEM) : 0;
	return rc;
}

int hush_add(struct hush *h, const struct hush_expect *x, size_t n)
{
	size_t at, m;
	int rc = 0;

	if (!h || !h->active)
		return 0;
	for (at = 0; at < n; at += m) {
		m = n - at < HUSH_PER_SEND ? n - at : HUSH_PER_SEND;
		if (add_some(h, x + at, m) < 0)
			rc = -1;
	}
	return rc;
}

void hush_counts(const struct hush *h, unsigned long long *elems, unsigned long long *batches)
{
	*elems = h ? h->elems : 0;
	*batches = h ? h->batches : 0;
}

void hush_close(struct hush *h)
{
	if (!h)
		return;
	hush_stop(h);
	if (h->nl)
		mnl_socket_close(h->nl);
	if (h->nft)
		nft_ctx_free(h->nft);
	free(h);
}
