/* test_actmsg.c: SOCK_DESTROY request bytes, ack parsing, exec: environment. */
#include <setjmp.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#include "actmsg.h"

static struct addr_tuple tuple4(void)
{
	uint8_t l[4] = {192, 0, 2, 1}, r[4] = {198, 51, 100, 2};
	struct addr_tuple t;

	addr_tuple_make(&t, AF_INET, l, 5432, r, 40000);
	return t;
}

/* nlmsghdr: len 72, type 21 (SOCK_DESTROY), flags REQUEST|ACK (5), seq 7, pid 0;
 * inet_diag_req_v2: AF_INET, IPPROTO_TCP, ext 0, pad 0, states all; sockid: sport 5432
 * and dport 40000 big-endian, src and dst (16 bytes each), if 0, cookie. */
/* clang-format off */
static const uint8_t want_destroy[ACTMSG_DIAG_LEN] = {
    72, 0, 0, 0, 21, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0,
    2, 6, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x15, 0x38, 0x9c, 0x40,
    192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    198, 51, 100, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 1, 0, 0, 0};
/* clang-format on */

static void test_destroy_v4_bytes(void **state)
{
	const uint32_t cookie[2] = {0x12345678, 1};
	struct addr_tuple t = tuple4();
	uint8_t buf[128];

	(void)state;
	assert_int_equal(actmsg_diag_destroy(&t, 7, cookie, buf, sizeof(buf)), ACTMSG_DIAG_LEN);
	assert_memory_equal(buf, want_destroy, ACTMSG_DIAG_LEN);
	assert_int_equal(actmsg_diag_destroy(&t, 7, cookie, buf, ACTMSG_DIAG_LEN - 1), 0);
}

static void test_get_v4_bytes(void **state)
{
	struct addr_tuple t = tuple4();
	uint8_t buf[ACTMSG_DIAG_LEN], want[ACTMSG_DIAG_LEN];

	(void)state;
	memcpy(want, want_destroy, sizeof(want));
	want[4] = 20;               /* SOCK_DIAG_BY_FAMILY */
	want[6] = 1;                /* NLM_F_REQUEST only */
	memset(want + 64, 0xff, 8); /* no cookie */
	assert_int_equal(actmsg_diag_get(&t, 7, buf, sizeof(buf)), ACTMSG_DIAG_LEN);
	assert_memory_equal(buf, want, ACTMSG_DIAG_LEN);
}

/* A SOCK_DIAG_BY_FAMILY answer (inet_diag_msg, 72 bytes) for seq: state, tuple, cookie. */
static size_t diag_answer(uint8_t *buf, uint32_t seq, uint8_t st, const struct addr_tuple *t,
                          uint32_t c0)
{
	uint32_t len = 16 + 72;
	uint16_t type = 20;

	memset(buf, 0, len);
	memcpy(buf, &len, 4);
	memcpy(buf + 4, &type, 2);
	memcpy(buf + 8, &seq, 4);
	buf[16] = t->family;
	buf[17] = st;
	buf[20] = (uint8_t)(t->lport >> 8);
	buf[21] = (uint8_t)t->lport;
	buf[22] = (uint8_t)(t->rport >> 8);
	buf[23] = (uint8_t)t->rport;
	memcpy(buf + 24, t->local, 16);
	memcpy(buf + 40, t->remote, 16);
	memcpy(buf + 60, &c0, 4);
	return len;
}

static void test_found(void **state)
{
	struct addr_tuple t = tuple4(), listener = tuple4();
	uint32_t cookie[2] = {0, 0};
	uint8_t buf[256];
	size_t n;

	(void)state;
	n = diag_answer(buf, 5, 1 /* ESTABLISHED */, &t, 0xabcd);
	assert_int_equal(actmsg_diag_found(buf, n, 5, 0, &t, cookie), 0);
	assert_int_equal(cookie[0], 0xabcd);
	assert_int_equal(actmsg_diag_found(buf, n, 6, 0, &t, cookie), -1);
	/* the same bytes from another netlink port (a local program): no answer */
	assert_int_equal(actmsg_diag_found(buf, n, 5, 4242, &t, cookie), -1);
	/* the kernel fell back to the listener: never destroy that */
	n = diag_answer(buf, 5, 10 /* LISTEN */, &t, 1);
	assert_int_equal(actmsg_diag_found(buf, n, 5, 0, &t, cookie), ENOENT);
	memset(listener.remote, 0, sizeof(listener.remote));
	listener.rport = 0;
	n = diag_answer(buf, 5, 1, &listener, 1);
	assert_int_equal(actmsg_diag_found(buf, n, 5, 0, &t, cookie), ENOENT);
	/* a dual-stack ([::]) socket's IPv4 connection: answered as IPv6, v4-mapped */
	{
		struct addr_tuple m;
		uint8_t l[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		uint8_t r[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		memcpy(l + 12, t.local, 4);
		memcpy(r + 12, t.remote, 4);
		addr_tuple_make(&m, AF_INET6, l, t.lport, r, t.rport);
		n = diag_answer(buf, 5, 1, &m, 0x77);
		assert_int_equal(actmsg_diag_found(buf, n, 5, 0, &t, cookie), 0);
		assert_int_equal(cookie[0], 0x77);
	}
	/* the kernel's own error */
	n = 16 + 4 + 16;
	memset(buf, 0, n);
	buf[0] = (uint8_t)n;
	buf[4] = 2;
	buf[8] = 5;
	buf[16] = 0xfe; /* -2 */
	memset(buf + 17, 0xff, 3);
	assert_int_equal(actmsg_diag_found(buf, n, 5, 0, &t, cookie), ENOENT);
}

static void test_destroy_v6_addresses(void **state)
{
	uint8_t l[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1},
	        r[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
	struct addr_tuple t;
	uint8_t buf[ACTMSG_DIAG_LEN];

	(void)state;
	addr_tuple_make(&t, AF_INET6, l, 443, r, 50000);
	assert_int_equal(actmsg_diag_get(&t, 1, buf, sizeof(buf)), ACTMSG_DIAG_LEN);
	assert_int_equal(buf[16], AF_INET6);
	assert_memory_equal(buf + 28, l, 16);
	assert_memory_equal(buf + 44, r, 16);
}

/* An NLMSG_ERROR message answering seq with error err (0 = ack). */
static size_t ack_msg(uint8_t *buf, uint32_t seq, int err)
{
	uint32_t len = 16 + 4 + 16;
	uint16_t type = 2; /* NLMSG_ERROR */

	memset(buf, 0, len);
	memcpy(buf, &len, 4);
	memcpy(buf + 4, &type, 2);
	memcpy(buf + 8, &seq, 4);
	memcpy(buf + 16, &err, 4);
	return len;
}

static void test_ack(void **state)
{
	uint8_t buf[256];
	size_t n;

	(void)state;
	n = ack_msg(buf, 9, 0);
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 0), 0);
	assert_int_equal(actmsg_diag_ack(buf, n, 8, 0), -1); /* another request's */
	n = ack_msg(buf, 9, -2);
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 0), 2);   /* ENOENT */
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 77), -1); /* not from the kernel */
	n = ack_msg(buf, 9, INT_MIN);                         /* -INT_MIN would overflow */
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 0), EPROTO);
	n = ack_msg(buf, 9, -4096);
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 0), EPROTO);
	n = ack_msg(buf, 9, 5); /* positive: no kernel errno */
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 0), EPROTO);
	n = ack_msg(buf, 9, -4095);
	assert_int_equal(actmsg_diag_ack(buf, n, 9, 0), 4095);
	/* two messages: an old ack, then ours */
	n = ack_msg(buf, 3, 0);
	n += ack_msg(buf + n, 4, -1);
	assert_int_equal(actmsg_diag_ack(buf, n, 4, 0), 1);
	/* truncated or lying lengths */
	assert_int_equal(actmsg_diag_ack(buf, 10, 3, 0), -1);
	buf[0] = 200;
	assert_int_equal(actmsg_diag_ack(buf, n, 3, 0), -1);
	buf[0] = 4;
	assert_int_equal(actmsg_diag_ack(buf, n, 3, 0), -1);
}

static const char *env_get(const struct actmsg_env *e, const char *name)
{
	size_t n = strlen(name);
	int i;

	for (i = 0; e->envp[i]; i++)
		if (strncmp(e->envp[i], name, n) == 0 && e->envp[i][n] == '=')
			return e->envp[i] + n + 1;
	return NULL;
}

static void test_env_dead(void **state)
{
	struct actmsg_fields f = {"dead", "postgres", "192.0.2.1:5432", "198.51.100.2:40000",
	                          3,      2.5004,     "no-reply",       NULL};
	struct actmsg_env e;

	(void)state;
	assert_int_equal(actmsg_env(&e, &f), 8);
	assert_string_equal(env_get(&e, "KAPROBE_EVENT"), "dead");
	assert_string_equal(env_get(&e, "KAPROBE_RULE"), "postgres");
	assert_string_equal(env_get(&e, "KAPROBE_LOCAL"), "192.0.2.1:5432");
	assert_string_equal(env_get(&e, "KAPROBE_REMOTE"), "198.51.100.2:40000");
	assert_string_equal(env_get(&e, "KAPROBE_PROBES"), "3");
	assert_string_equal(env_get(&e, "KAPROBE_IDLE"), "2.500");
	assert_string_equal(env_get(&e, "KAPROBE_REASON"), "no-reply");
	assert_string_equal(env_get(&e, "PATH"), "/usr/sbin:/usr/bin:/sbin:/bin");
	assert_null(e.envp[8]);
	f.side = "server"; /* a gateway rule's: local is the client, remote the server */
	assert_int_equal(actmsg_env(&e, &f), 9);
	assert_string_equal(env_get(&e, "KAPROBE_SIDE"), "server");
}

static void test_env_reset_no_reason(void **state)
{
	struct actmsg_fields f = {
	    "reset", "r\x01x", "[2001:db8::1]:443", "[2001:db8::2]:5", 1, 0.25, NULL, NULL};
	struct actmsg_env e;

	(void)state;
	assert_int_equal(actmsg_env(&e, &f), 7);
	assert_null(env_get(&e, "KAPROBE_REASON"));
	assert_string_equal(env_get(&e, "KAPROBE_RULE"), "r x"); /* no control characters */
	assert_string_equal(env_get(&e, "KAPROBE_IDLE"), "0.250");
	f.idle = -1;
	assert_int_equal(actmsg_env(&e, &f), 6);
	assert_null(env_get(&e, "KAPROBE_IDLE"));
}

static void test_env_too_long(void **state)
{
	char big[2000];
	struct actmsg_fields f = {"dead", big, "a", "b", 1, 1.0, NULL, NULL};
	struct actmsg_env e;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(actmsg_env(&e, &f), -1);
}

/* ctnetlink IPCTNL_MSG_CT_DELETE: nlmsghdr len 72, type 0x0102 (CTNETLINK << 8 | DELETE),
 * flags REQUEST|ACK, seq 9; nfgenmsg AF_INET, version 0; CTA_TUPLE_ORIG (nested) holding
 * CTA_TUPLE_IP (nested: V4_SRC, V4_DST) and CTA_TUPLE_PROTO (nested: NUM 6, SRC_PORT 5432,
 * DST_PORT 40000, big-endian). */
/* clang-format off */
static const uint8_t want_ct_delete[72] = {
    72, 0, 0, 0, 2, 1, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0,
    2, 0, 0, 0,
    52, 0, 1, 0x80,
    20, 0, 1, 0x80, 8, 0, 1, 0, 192, 0, 2, 1, 8, 0, 2, 0, 198, 51, 100, 2,
    28, 0, 2, 0x80, 5, 0, 1, 0, 6, 0, 0, 0, 6, 0, 2, 0, 0x15, 0x38, 0, 0,
    6, 0, 3, 0, 0x9c, 0x40, 0, 0};
/* clang-format on */

static void test_ct_delete_bytes(void **state)
{
	_Alignas(uint32_t) uint8_t buf[ACTMSG_CT_LEN];
	struct addr_tuple t = tuple4(), t6;
	uint8_t a6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1},
	        b6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};

	(void)state;
	assert_int_equal(actmsg_ct_delete(&t, 9, buf, sizeof(buf)), sizeof(want_ct_delete));
	assert_memory_equal(buf, want_ct_delete, sizeof(want_ct_delete));
	addr_tuple_make(&t6, AF_INET6, a6, 443, b6, 50000);
	assert_int_equal(actmsg_ct_delete(&t6, 9, buf, sizeof(buf)), 96);
	assert_int_equal(buf[16], AF_INET6);
	assert_memory_equal(buf + 32, a6, 16); /* CTA_IP_V6_SRC's value */
	assert_int_equal(actmsg_ct_delete(&t, 9, buf, ACTMSG_CT_LEN - 1), 0);
	assert_int_equal(actmsg_ct_delete(&t, 9, buf + 1, ACTMSG_CT_LEN - 1), 0); /* misaligned */
}

/* A ctnetlink tuple into h (as the kernel nests it). */
static void put_tuple(struct nlmsghdr *h, int type, const uint8_t *src, const uint8_t *dst,
                      uint16_t sport, uint16_t dport)
{
	struct nlattr *t = mnl_attr_nest_start(h, (uint16_t)type), *n;

	n = mnl_attr_nest_start(h, CTA_TUPLE_IP);
	mnl_attr_put(h, CTA_IP_V4_SRC, 4, src);
	mnl_attr_put(h, CTA_IP_V4_DST, 4, dst);
	mnl_attr_nest_end(h, n);
	n = mnl_attr_nest_start(h, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(h, CTA_PROTO_NUM, IPPROTO_TCP);
	mnl_attr_put_u16(h, CTA_PROTO_SRC_PORT, htons(sport));
	mnl_attr_put_u16(h, CTA_PROTO_DST_PORT, htons(dport));
	mnl_attr_nest_end(h, n);
	mnl_attr_nest_end(h, t);
}

/* A masqueraded entry: 198.51.100.2:40000 -> 192.0.2.1:5432, answered to 192.0.2.254:41000. */
static size_t ct_answer(uint8_t *buf, uint32_t seq, uint32_t status)
{
	const uint8_t c[4] = {198, 51, 100, 2}, s[4] = {192, 0, 2, 1}, r[4] = {192, 0, 2, 254};
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nf;

	h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
	h->nlmsg_seq = seq;
	nf = mnl_nlmsg_put_extra_header(h, sizeof(*nf));
	nf->nfgen_family = AF_INET;
	put_tuple(h, CTA_TUPLE_ORIG, c, s, 40000, 5432);
	put_tuple(h, CTA_TUPLE_REPLY, s, r, 5432, 41000);
	mnl_attr_put_u32(h, CTA_STATUS, htonl(status));
	return h->nlmsg_len;
}

/* ct_answer's entry with its timeout and TCP state, at buf (a message of a dump). */
static size_t ct_dump_entry(uint8_t *buf, uint32_t seq, uint32_t timeout, uint8_t state)
{
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	struct nlattr *pi, *tcp;

	ct_answer(buf, seq, IPS_CONFIRMED);
	h->nlmsg_flags = NLM_F_MULTI;
	mnl_attr_put_u32(h, CTA_TIMEOUT, htonl(timeout));
	pi = mnl_attr_nest_start(h, CTA_PROTOINFO);
	tcp = mnl_attr_nest_start(h, CTA_PROTOINFO_TCP);
	mnl_attr_put_u8(h, CTA_PROTOINFO_TCP_STATE, state);
	mnl_attr_nest_end(h, tcp);
	mnl_attr_nest_end(h, pi);
	return h->nlmsg_len;
}

struct seen {
	int n;
	uint32_t timeout[4];
	uint8_t state[4];
};

static void collect(const struct actmsg_ct *ct, void *arg)
{
	struct seen *s = arg;

	if (s->n < 4) {
		s->timeout[s->n] = ct->timeout;
		s->state[s->n] = ct->tcp_state;
	}
	s->n++;
}

static void test_ct_dump(void **state)
{
	_Alignas(uint32_t) uint8_t buf[1024];
	struct seen seen = {0};
	struct nlmsghdr *done;
	size_t n = 0;

	(void)state;
	assert_int_equal(actmsg_ct_dump(AF_INET6, 3, buf, sizeof(buf)), 20);
	assert_int_equal(buf[6], NLM_F_REQUEST | (NLM_F_DUMP & 0xff));
	assert_int_equal(buf[7], NLM_F_DUMP >> 8);
	assert_int_equal(buf[16], AF_INET6);
	memset(buf, 0, sizeof(buf));
	n += ct_dump_entry(buf, 3, 431990, 3);
	n += ct_dump_entry(buf + n, 3, 5, 7);
	assert_int_equal(actmsg_ct_each(buf, n, 3, 0, collect, &seen), 0); /* more to come */
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.timeout[0], 431990);
	assert_int_equal(seen.state[0], 3);
	assert_int_equal(seen.timeout[1], 5);
	assert_int_equal(seen.state[1], 7);
	done = mnl_nlmsg_put_header(buf + n);
	done->nlmsg_type = NLMSG_DONE;
	done->nlmsg_seq = 3;
	n += done->nlmsg_len;
	seen.n = 0;
	assert_int_equal(actmsg_ct_each(buf, n, 3, 0, collect, &seen), 1);
	assert_int_equal(seen.n, 2);
	assert_int_equal(actmsg_ct_each(buf, n, 4, 0, collect, &seen), -1);  /* another dump */
	assert_int_equal(actmsg_ct_each(buf, n, 3, 99, collect, &seen), -1); /* not the kernel */
	assert_int_equal(actmsg_ct_each(buf, n - 30, 3, 0, collect, &seen), -1); /* cut */
}

/* Destroy events: IPCTNL_MSG_CT_DELETE messages with sequence 0; a NEW among them and a
 * foreign sender are not events. */
static void test_ct_events(void **state)
{
	_Alignas(uint32_t) uint8_t buf[1024];
	struct seen seen = {0};
	struct nlmsghdr *h;
	size_t n = 0;

	(void)state;
	memset(buf, 0, sizeof(buf));
	n += ct_dump_entry(buf, 0, 0, 7);
	h = (struct nlmsghdr *)buf;
	h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
	n += ct_dump_entry(buf + n, 0, 0, 3); /* a NEW message: skipped */
	assert_int_equal(actmsg_ct_events(buf, n, 0, collect, &seen), 1);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.state[0], 7);
	assert_int_equal(actmsg_ct_events(buf, n, 42, collect, &seen), -1); /* not the kernel */
	assert_int_equal(seen.n, 1);
	assert_int_equal(actmsg_ct_events(buf, n - 30, 0, collect, &seen), -1); /* cut */
}

static void test_ct_get_and_found(void **state)
{
	_Alignas(uint32_t) uint8_t buf[512];
	struct addr_tuple t = tuple4();
	struct actmsg_ct ct;
	size_t n;

	(void)state;
	n = actmsg_ct_get(&t, 11, buf, sizeof(buf));
	assert_int_equal(n, sizeof(want_ct_delete));
	assert_int_equal(buf[4], IPCTNL_MSG_CT_GET);
	assert_int_equal(buf[6], NLM_F_REQUEST);
	assert_memory_equal(buf + 16, want_ct_delete + 16, n - 16); /* the same tuple */

	memset(buf, 0, sizeof(buf));
	n = ct_answer(buf, 11, IPS_SRC_NAT | IPS_CONFIRMED);
	assert_int_equal(actmsg_ct_found(buf, n, 11, 0, &ct), 0);
	assert_int_equal(ct.orig.family, AF_INET);
	assert_int_equal(ct.orig.local[0], 198);
	assert_int_equal(ct.orig.lport, 40000);
	assert_int_equal(ct.orig.remote[3], 1);
	assert_int_equal(ct.orig.rport, 5432);
	assert_int_equal(ct.reply.local[3], 1);
	assert_int_equal(ct.reply.lport, 5432);
	assert_int_equal(ct.reply.remote[3], 254);
	assert_int_equal(ct.reply.rport, 41000);
	assert_true(ct.status & IPS_SRC_NAT);
	assert_int_equal(ct.have, ACTMSG_CT_ORIG | ACTMSG_CT_REPLY | ACTMSG_CT_STATUS);
	/* another sequence, another sender, a cut datagram: no answer */
	assert_int_equal(actmsg_ct_found(buf, n, 12, 0, &ct), -1);
	assert_int_equal(actmsg_ct_found(buf, n, 11, 4242, &ct), -1);
	assert_int_equal(actmsg_ct_found(buf, n - 4, 11, 0, &ct), -1);
}

static void test_ct_found_error(void **state)
{
	_Alignas(uint32_t) uint8_t buf[64];
	struct nlmsghdr *h;
	struct nlmsgerr *e;
	struct actmsg_ct ct;

	(void)state;
	memset(buf, 0, sizeof(buf));
	h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = NLMSG_ERROR;
	h->nlmsg_seq = 5;
	e = mnl_nlmsg_put_extra_header(h, sizeof(*e));
	e->error = -ENOENT;
	assert_int_equal(actmsg_ct_found(buf, h->nlmsg_len, 5, 0, &ct), ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_destroy_v4_bytes),
	    cmocka_unit_test(test_get_v4_bytes),
	    cmocka_unit_test(test_found),
	    cmocka_unit_test(test_destroy_v6_addresses),
	    cmocka_unit_test(test_ack),
	    cmocka_unit_test(test_env_dead),
	    cmocka_unit_test(test_env_reset_no_reason),
	    cmocka_unit_test(test_env_too_long),
	    cmocka_unit_test(test_ct_delete_bytes),
	    cmocka_unit_test(test_ct_get_and_found),
	    cmocka_unit_test(test_ct_found_error),
	    cmocka_unit_test(test_ct_dump),
	    cmocka_unit_test(test_ct_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
