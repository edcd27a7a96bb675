/* bench_send.c: probes per second through kaprobed's sender (sender_send_batch, 64 at a
 * time), beside a bare raw-socket sendmmsg loop of the same 41-byte packet, in the same
 * run; also the single-packet sender_send and the old libnet_write path (build with
 * libnet, one write per probe). The runs are interleaved in rounds, so that the noise of
 * a shared machine falls on all of them alike. Run it inside a namespace whose peer
 * address drops everything (tests/bench/run.sh does). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libnet.h>

#include "addr.h"
#include "sender.h"

#define BATCH  64
#define ROUNDS 20

static const struct fsm_probe probe = {.seq = 1000, .ack = 2000, .window = 502, .payload_len = 1};

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* n probes through sender_send_batch, 64 at a time; returns the seconds taken. */
static double run_batch(struct sender *s, const struct addr_tuple *k, long n, long *fails)
{
	struct sender_pkt pkts[BATCH];
	int errs[BATCH];
	long sent = 0;
	size_t i, r;
	double t0 = now_sec();

	for (i = 0; i < BATCH; i++)
		pkts[i] = (struct sender_pkt){.kind = SENDER_PROBE, .key = k, .probe = probe};
	while (sent < n) {
		size_t want = n - sent < BATCH ? (size_t)(n - sent) : BATCH;

		r = sender_send_batch(s, pkts, want, errs);
		*fails += (long)(want - r);
		if (!r)
			break;
		sent += (long)r;
	}
	return now_sec() - t0;
}

/* n probes through sender_send, one at a time. */
static double run_single(struct sender *s, const struct addr_tuple *k, long n, long *fails)
{
	double t0 = now_sec();
	long i;

	for (i = 0; i < n; i++)
		*fails += sender_send(s, k, &probe) != 0;
	return now_sec() - t0;
}

/* n probes the way sender_send made them before batching: built by libnet (options,
 * TCP, IP into a cleared context) and written by libnet_write, one system call each. */
static double run_libnet(libnet_t *l, const struct addr_tuple *k, long n, long *fails)
{
	static const uint8_t zero[1] = {0};
	uint32_t src, dst;
	double t0 = now_sec();
	long i;

	memcpy(&src, k->local, 4);
	memcpy(&dst, k->remote, 4);
	for (i = 0; i < n; i++) {
		libnet_clear_packet(l);
		if (libnet_build_tcp(k->lport, k->rport, probe.seq, probe.ack, TH_ACK, probe.window,
		                     0, 0, LIBNET_TCP_H + 1, zero, 1, l, 0) < 0 ||
		    libnet_build_ipv4(LIBNET_IPV4_H + LIBNET_TCP_H + 1, 0, (uint16_t)i, 0, 64,
		                      IPPROTO_TCP, 0, src, dst, NULL, 0, l, 0) < 0 ||
		    libnet_write(l) < 0)
			(*fails)++;
	}
	return now_sec() - t0;
}

/* The same probe, built by hand: IPv4 + TCP (ACK) + one 0x00 byte = 41 bytes. Its IP ID
 * is not 0, like the sender's: with ID 0 the kernel picks one (ip_select_ident), which
 * costs the bare loop time the sender does not spend. */
static void bare_packet(uint8_t *b, const struct addr_tuple *k)
{
	uint16_t sp = htons(k->lport), dp = htons(k->rport);

	memset(b, 0, 41);
	b[0] = 0x45;
	b[3] = 41;
	b[4] = 0x12;
	b[5] = 0x34;
	b[8] = 64;
	b[9] = IPPROTO_TCP;
	memcpy(b + 12, k->local, 4);
	memcpy(b + 16, k->remote, 4);
	memcpy(b + 20, &sp, 2);
	memcpy(b + 22, &dp, 2);
	b[32] = 5 << 4;
	b[33] = 0x10;
}

/* A raw socket and BATCH messages that all point at the same hand-built packet. */
struct bare {
	int fd;
	struct mmsghdr msgs[BATCH];
	struct iovec iov;
	struct sockaddr_in dst;
	uint8_t pkt[41];
};

static int bare_open(struct bare *b, const struct addr_tuple *k)
{
	int i;

	memset(b, 0, sizeof(*b));
	b->fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (b->fd < 0)
		return -1;
	bare_packet(b->pkt, k);
	b->dst.sin_family = AF_INET;
	memcpy(&b->dst.sin_addr, k->remote, 4);
	b->iov.iov_base = b->pkt;
	b->iov.iov_len = sizeof(b->pkt);
	for (i = 0; i < BATCH; i++) {
		b->msgs[i].msg_hdr.msg_name = &b->dst;
		b->msgs[i].msg_hdr.msg_namelen = sizeof(b->dst);
		b->msgs[i].msg_hdr.msg_iov = &b->iov;
		b->msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

/* n packets through a bare sendmmsg loop, BATCH at a time. */
static double run_bare(struct bare *b, long n)
{
	long sent = 0;
	double t0 = now_sec();

	while (sent < n) {
		int r =
		    sendmmsg(b->fd, b->msgs, n - sent < BATCH ? (unsigned)(n - sent) : BATCH, 0);
		if (r < 0 && errno != ENOBUFS)
			break;
		sent += r > 0 ? r : 0;
	}
	return now_sec() - t0;
}

/* Seconds taken by each way of sending, over ROUNDS interleaved rounds of n / ROUNDS. */
struct times {
	double batch, bare, single, libnet;
	double round_ratio[ROUNDS]; /* bare / batch time in each round, sorted */
	long fails;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int bench(const struct addr_tuple *k, long n, struct times *t)
{
	char err[256], le[LIBNET_ERRBUF_SIZE];
	struct sender *s = sender_open(err, sizeof(err));
	libnet_t *l = libnet_init(LIBNET_RAW4, NULL, le);
	struct bare b;
	long m = n / ROUNDS;
	int i;

	memset(t, 0, sizeof(*t));
	if (!s || !l || bare_open(&b, k) < 0) {
		fprintf(stderr, "bench_send: %s\n", !s ? err : !l ? le : strerror(errno));
		return -1;
	}
	for (i = 0; i < ROUNDS; i++) { /* each goes first in some round */
		double ba = i % 2 ? run_bare(&b, m) : 0, bt = run_batch(s, k, m, &t->fails);

		ba += i % 2 ? 0 : run_bare(&b, m);
		t->bare += ba;
		t->batch += bt;
		t->round_ratio[i] = ba / bt;
		t->single += run_single(s, k, m, &t->fails);
		t->libnet += run_libnet(l, k, m, &t->fails);
	}
	qsort(t->round_ratio, ROUNDS, sizeof(double), cmp_double);
	close(b.fd);
	libnet_destroy(l);
	sender_close(s);
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t l[4], r[4];
	struct addr_tuple k;
	long n = argc > 3 ? atol(argv[3]) : 200000;
	struct times t;
	double m;

	if (argc < 3 || inet_pton(AF_INET, argv[1], l) != 1 ||
	    inet_pton(AF_INET, argv[2], r) != 1) {
		fprintf(stderr, "usage: bench_send LOCAL_IPV4 PEER_IPV4 [COUNT]\n");
		return 1;
	}
	addr_tuple_make(&k, AF_INET, l, 5432, r, 40000);
	if (bench(&k, n, &t) < 0)
		return 1;
	m = (double)(n / ROUNDS * ROUNDS);
	printf("send: kaprobed sender %.0f probes/s, bare sendmmsg x%d %.0f packets/s, "
	       "ratio %.2f (%.0f each)\n",
	       m / t.batch, BATCH, m / t.bare, t.bare / t.batch, m);
	printf("send: per round (%d rounds of %ld): ratio median %.2f, range %.2f-%.2f\n", ROUNDS,
	       n / ROUNDS, (t.round_ratio[ROUNDS / 2 - 1] + t.round_ratio[ROUNDS / 2]) / 2,
	       t.round_ratio[0], t.round_ratio[ROUNDS - 1]);
	printf("send: one at a time: sender_send %.0f probes/s (ratio %.2f), old libnet_write "
	       "path %.0f probes/s (ratio %.2f)\n",
	       m / t.single, t.bare / t.single, m / t.libnet, t.bare / t.libnet);
	if (t.fails)
		printf("send: %ld sends failed\n", t.fails);
	return 0;
}
