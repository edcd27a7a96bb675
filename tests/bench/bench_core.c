/* bench_core.c: decode cost per captured packet, engine cost per packet, and RSS per
 * tracked connection with 10 000 synthetic connections fed through the whole core
 * (codec -> engine -> conntab -> fsm, real ev_timers). Prints figures, never fails. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "codec.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "state.h"

#define NCONN   10000
#define NDECODE 2000000

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A raw IPv4 TCP segment with a timestamp option: peer (198.51.x.y:port) -> 192.0.2.1:5432,
 * or the other way round when ours is set. */
static size_t make_frame(uint8_t *b, uint32_t n, int ours, uint32_t seq, uint32_t ack)
{
	uint8_t peer[4] = {198, 51, (uint8_t)(n >> 8), (uint8_t)n}, me[4] = {192, 0, 2, 1};
	uint16_t pport = htons((uint16_t)(10000 + (n >> 16))), lport = htons(5432);
	uint32_t s = htonl(seq), a = htonl(ack);

	memset(b, 0, 64);
	b[0] = 0x45;
	b[3] = 52; /* total length: 20 + 32 */
	b[8] = 64;
	b[9] = 6;
	memcpy(b + 12, ours ? me : peer, 4);
	memcpy(b + 16, ours ? peer : me, 4);
	memcpy(b + 20, ours ? &lport : &pport, 2);
	memcpy(b + 22, ours ? &pport : &lport, 2);
	memcpy(b + 24, &s, 4);
	memcpy(b + 28, &a, 4);
	b[32] = 8 << 4; /* 32-byte header */
	b[33] = 0x10;   /* ACK */
	b[34] = 0x01;
	b[40] = 1;
	b[41] = 1;
	b[42] = 8;
	b[43] = 10;
	return 52;
}

static void bench_decode(void)
{
	uint8_t f[64];
	struct codec_packet p;
	size_t len = make_frame(f, 1, 0, 1000, 2000);
	double t0 = now_sec(), dt;
	long i, ok = 0;

	for (i = 0; i < NDECODE; i++)
		ok += codec_decode(CODEC_DLT_RAW, f, len, len, &p) == CODEC_TCP;
	dt = now_sec() - t0;
	printf("decode: %.1f ns per packet (%ld packets, %ld TCP)\n", dt / NDECODE * 1e9,
	       (long)NDECODE, ok);
}

static FILE *devnull;

static void render_one(const struct engine_view *v, void *arg)
{
	size_t *n = arg;

	state_render_conn(devnull, v, (*n)++);
}

/* The state file's cost: one pass over the table, rendered to /dev/null. */
static void bench_state(struct engine *e)
{
	double t0, dt;
	size_t n = 0;

	devnull = fopen("/dev/null", "w");
	if (!devnull)
		return;
	t0 = now_sec();
	state_render_begin(devnull, 1, "2026-01-01T00:00:00.000Z");
	engine_foreach(e, engine_clock(), render_one, &n);
	state_render_end(devnull);
	fflush(devnull);
	dt = now_sec() - t0;
	fclose(devnull);
	printf("state file: %.0f ns per connection rendered (%zu connections)\n", dt / n * 1e9, n);
}

static void feed(struct engine *e, uint32_t n, double when)
{
	uint8_t f[64];
	struct capture_frame fr = {.dlt = CODEC_DLT_RAW, .data = f, .loopback = -1, .when = when};

	fr.caplen = fr.wirelen = make_frame(f, n, 1, 1000, 5000);
	engine_on_frame(e, &fr);
	fr.caplen = fr.wirelen = make_frame(f, n, 0, 5000, 1000);
	engine_on_frame(e, &fr);
}

int main(void)
{
	static const char conf[] = "[global]\nlog_file = /dev/null\n[svc]\nlocal = *:5432\n"
	                           "remote = *\nidle = 2h\ninterval = 75s\nprobes = 9\n";
	struct fsm_params def = {.idle = 7200, .interval = 75, .probes = 9, .probe_bytes = 1};
	struct config_errors errs;
	struct config cfg;
	struct addr_set local = {0};
	uint8_t me[4] = {192, 0, 2, 1};
	struct engine *e;
	long rss0, rss1;
	double t0, dt;
	uint32_t i;

	bench_decode();
	if (config_parse("bench", conf, &def, &cfg, &errs) < 0)
		return 1;
	log_init(CONFIG_LOG_ERROR);
	log_open_status("/dev/null");
	addr_set_add(&local, 2, me, 1);
	rss0 = rss_kib();
	e = engine_new(EV_DEFAULT, &cfg, &local, NULL, 1000000);
	t0 = now_sec();
	for (i = 0; i < NCONN; i++)
		feed(e, i, t0);
	dt = now_sec() - t0;
	rss1 = rss_kib();
	printf("engine: %.1f ns per packet while tracking new connections\n",
	       dt / (2.0 * NCONN) * 1e9);
	t0 = now_sec();
	for (i = 0; i < 10 * NCONN; i++)
		feed(e, i % NCONN, t0);
	dt = now_sec() - t0;
	printf("engine: %.1f ns per packet on tracked connections\n", dt / (20.0 * NCONN) * 1e9);
	printf("memory: %zu connections tracked, RSS +%ld KiB = %.0f B per connection "
	       "(target <= 256)\n",
	       engine_count(e), rss1 - rss0, (rss1 - rss0) * 1024.0 / NCONN);
	bench_state(e);
	engine_free(e);
	config_free(&cfg);
	return 0;
}
