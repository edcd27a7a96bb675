/* capture.c: libpcap edge. Non-blocking handle with a kernel BPF filter and a small
 * snaplen (headers only); the caller watches capture_fd() with an ev_io and calls
 * capture_drain(). pcap_dispatch() in blocking mode can hang once traffic stops on
 * this libpcap (PLATFORM.md), hence pcap_setnonblock(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pcap/pcap.h>

#include "capture.h"

#define CAPTURE_MAX_ROUNDS 64 /* dispatch rounds per drain, for fairness */

struct capture {
	pcap_t *p;
	int dlt;
	int fd;
	double mono_minus_real; /* converts packet wall-clock stamps to monotonic time */
	capture_fn fn;
	void *arg;
	char name[64];
};

static double clock_sec(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int configure(pcap_t *p, size_t buffer)
{
	if (pcap_set_snaplen(p, CAPTURE_SNAPLEN) || pcap_set_promisc(p, 0) ||
	    pcap_set_immediate_mode(p, 1) || pcap_set_buffer_size(p, (int)buffer))
		return -1;
	return pcap_activate(p) < 0 ? -1 : 0;
}

static int apply_filter(pcap_t *p, const char *filter)
{
	struct bpf_program prog;
	int rc;

	if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0)
		return -1;
	rc = pcap_setfilter(p, &prog);
	pcap_freecode(&prog);
	return rc;
}

struct capture *capture_open(const char *ifname, const char *filter, size_t buffer, char *errbuf,
                             size_t errlen)
{
	char pe[PCAP_ERRBUF_SIZE] = "";
	struct capture *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	snprintf(c->name, sizeof(c->name), "%s", ifname);
	c->p = pcap_create(ifname, pe);
	if (!c->p) {
		snprintf(errbuf, errlen, "%s: %s", ifname, pe);
		free(c);
		return NULL;
	}
	if (configure(c->p, buffer) < 0 || apply_filter(c->p, filter) < 0 ||
	    pcap_setnonblock(c->p, 1, pe) < 0 || (c->fd = pcap_get_selectable_fd(c->p)) < 0) {
		snprintf(errbuf, errlen, "%s: %s", ifname, pe[0] ? pe : pcap_geterr(c->p));
		capture_close(c);
		return NULL;
	}
	c->dlt = pcap_datalink(c->p);
	return c;
}

int capture_fd(const struct capture *c)
{
	return c->fd;
}

const char *capture_error(struct capture *c)
{
	return pcap_geterr(c->p);
}

const char *capture_name(const struct capture *c)
{
	return c->name;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct capture *c = (struct capture *)user;
	double real = (double)h->ts.tv_sec + h->ts.tv_usec / 1e6;

	c->fn(c->arg, c->dlt, bytes, h->caplen, real + c->mono_minus_real);
}

int capture_drain(struct capture *c, capture_fn fn, void *arg)
{
	int total = 0, n, round;

	c->fn = fn;
	c->arg = arg;
	c->mono_minus_real = clock_sec(CLOCK_MONOTONIC) - clock_sec(CLOCK_REALTIME);
	for (round = 0; round < CAPTURE_MAX_ROUNDS; round++) {
		n = pcap_dispatch(c->p, -1, on_packet, (u_char *)c);
		if (n < 0)
			return total > 0 ? total : -1;
		if (n == 0)
			break;
		total += n;
	}
	return total;
}

void capture_stats(struct capture *c, unsigned *received, unsigned *dropped)
{
	struct pcap_stat st;

	memset(&st, 0, sizeof(st));
	pcap_stats(c->p, &st);
	*received = st.ps_recv;
	*dropped = st.ps_drop + st.ps_ifdrop;
}

int capture_set_filter(struct capture *c, const char *filter, char *errbuf, size_t errlen)
{
	if (apply_filter(c->p, filter) < 0) {
		snprintf(errbuf, errlen, "%s: %s", c->name, pcap_geterr(c->p));
		return -1;
	}
	return 0;
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	if (c->p)
		pcap_close(c->p);
	free(c);
}
