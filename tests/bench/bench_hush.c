/* bench_hush.c: what adding the expected answers to kaprobed's nftables table costs
 * (hush_add: element keys built, one nfnetlink batch per call), for batches of 1, 64 (the
 * pacer's) and 256 elements. Run as root in a namespace of its own (make bench does): it
 * installs table inet kaprobed there and deletes it at the end. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "hush.h"

#define ROUNDS 2000

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* n distinct expectations, both kinds and both families, from counter *k on. */
static void fill(struct hush_expect *x, size_t n, unsigned *k)
{
	for (size_t i = 0; i < n; i++, (*k)++) {
		memset(&x[i], 0, sizeof(x[i]));
		x[i].kind = (i & 1) ? HUSH_CHALLENGE : HUSH_ANSWER;
		x[i].family = (i & 2) ? AF_INET6 : AF_INET;
		memcpy(x[i].src, k, sizeof(*k));
		x[i].sport = (uint16_t)(1024 + (*k & 0xfff));
		x[i].dport = 5432;
		x[i].seq = *k;
		x[i].ack = ~*k;
		x[i].timeout_ms = 2000;
	}
}

int main(void)
{
	static struct hush_expect x[256];
	static const size_t sizes[] = {1, 64, 256};
	char err[512];
	struct hush *h = hush_open(err, sizeof(err));
	unsigned k = 0;

	if (!h || hush_start(h, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_hush: %s\n", err);
		return 1;
	}
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		double t0 = mono(), dt;

		for (int r = 0; r < ROUNDS; r++) {
			fill(x, sizes[s], &k);
			if (hush_add(h, x, sizes[s]) < 0)
				perror("bench_hush: hush_add");
		}
		dt = (mono() - t0) / ROUNDS;
		printf("batch of %3zu elements: %7.1f us a batch, %5.2f us an element\n", sizes[s],
		       dt * 1e6, dt * 1e6 / (double)sizes[s]);
	}
	hush_close(h);
	return 0;
}
