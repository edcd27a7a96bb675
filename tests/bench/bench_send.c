/* bench_send.c: probes per second through kaprobed's sender (libnet RAW4), beside a bare
 * raw-socket sendmmsg loop of the same 41-byte packets, in the same run. Run it inside
 * a namespace whose peer address drops everything (tests/bench/run.sh does). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "sender.h"

#define BATCH 64

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double bench_sender(const struct addr_tuple *k, long n)
{
	struct fsm_probe p = {.seq = 1000, .ack = 2000, .window = 502, .payload_len = 1};
	char err[256];
	struct sender *s = sender_open(err, sizeof(err));
	double t0;
	long i, fails = 0;

	if (!s) {
		fprintf(stderr, "sender: %s\n", err);
		return 0;
	}
	t0 = now_sec();
	for (i = 0; i < n; i++)
		fails += sender_send(s, k, &p) != 0;
	t0 = now_sec() - t0;
	sender_close(s);
	if (fails)
		printf("sender: %ld sends failed\n", fails);
	return n / t0;
}

/* The same probe, built by hand: IPv4 + TCP (ACK) + one 0x00 byte = 41 bytes. */
static void bare_packet(uint8_t *b, const struct addr_tuple *k)
{
	uint16_t sp = htons(k->lport), dp = htons(k->rport);

	memset(b, 0, 41);
	b[0] = 0x45;
	b[3] = 41;
	b[8] = 64;
	b[9] = IPPROTO_TCP;
	memcpy(b + 12, k->local, 4);
	memcpy(b + 16, k->remote, 4);
	memcpy(b + 20, &sp, 2);
	memcpy(b + 22, &dp, 2);
	b[32] = 5 << 4;
	b[33] = 0x10;
}

static double bench_bare(const struct addr_tuple *k, long n)
{
	struct mmsghdr msgs[BATCH];
	struct iovec iov;
	struct sockaddr_in dst = {.sin_family = AF_INET};
	uint8_t pkt[41];
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW), i;
	long sent = 0;
	double t0;

	if (fd < 0)
		return 0;
	bare_packet(pkt, k);
	memcpy(&dst.sin_addr, k->remote, 4);
	iov.iov_base = pkt;
	iov.iov_len = sizeof(pkt);
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_name = &dst;
		msgs[i].msg_hdr.msg_namelen = sizeof(dst);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	t0 = now_sec();
	while (sent < n) {
		int r = sendmmsg(fd, msgs, BATCH, 0);
		if (r < 0 && errno != ENOBUFS)
			break;
		sent += r > 0 ? r : 0;
	}
	t0 = now_sec() - t0;
	close(fd);
	return sent / t0;
}

int main(int argc, char **argv)
{
	uint8_t l[4], r[4];
	struct addr_tuple k;
	long n = argc > 3 ? atol(argv[3]) : 200000;
	double a, b;

	if (argc < 3 || inet_pton(AF_INET, argv[1], l) != 1 ||
	    inet_pton(AF_INET, argv[2], r) != 1) {
		fprintf(stderr, "usage: bench_send LOCAL_IPV4 PEER_IPV4 [COUNT]\n");
		return 1;
	}
	addr_tuple_make(&k, AF_INET, l, 5432, r, 40000);
	a = bench_sender(&k, n);
	b = bench_bare(&k, n);
	printf("send: kaprobed sender %.0f probes/s, bare sendmmsg x%d %.0f packets/s, "
	       "ratio %.2f (%ld each)\n",
	       a, BATCH, b, b > 0 ? a / b : 0, n);
	return 0;
}
