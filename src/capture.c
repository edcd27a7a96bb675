/* capture.c: libpcap edge. Non-blocking handles with a kernel BPF filter and a small
 * snaplen (headers only): one for both directions, or one per direction (capture_split)
 * merged back in time order; the caller watches capture_fds() with ev_io watchers and
 * calls capture_drain(). pcap_dispatch() in blocking mode can hang once traffic stops on
 * this libpcap (ARCHITECTURE.md, Platform facts), hence pcap_setnonblock(). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <net/if.h>
#include <sys/socket.h>

#include <pcap/pcap.h>

#include "capture.h"

#define CAPTURE_MAX_ROUNDS 64    /* dispatch rounds per drain, for fairness */
#define CAPTURE_MAX_FRAMES 65536 /* frames per merged drain, for fairness */
#define LOOPBACK_IFINDEX   1     /* the kernel's, for "lo" in every namespace */

struct capture {
	pcap_t *p[CAPTURE_MAX_HANDLES];
	int dir[CAPTURE_MAX_HANDLES]; /* enum capture_dir of each handle */
	int fd[CAPTURE_MAX_HANDLES];
	int n; /* handles: 1 (both directions), or 2 (in, out) */
	int dlt;
	int loopback;           /* struct capture_frame.loopback */
	int failed;             /* the handle whose read failed last */
	size_t buffer;          /* kernel ring bytes of each handle */
	double mono_minus_real; /* converts packet wall-clock stamps to monotonic time */
	capture_fn fn;
	void *arg;
	int cur;      /* handle being dispatched (on_packet) */
	char *filter; /* the filter the kernel runs (restored when it refuses a new one) */
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

/* Whether the kernel runs p's filter. When the kernel refuses a program (longer than
 * net.core.optmem_max allows a socket, or than BPF_MAXINSNS), libpcap falls back to
 * filtering in user space with no more than a line on stderr: every frame would then be
 * copied up to be dropped. SO_GET_FILTER with no buffer gives the attached program's
 * length, 0 when none is attached. A handle that is no socket (a file) passes. */
static bool kernel_filters(pcap_t *p)
{
	socklen_t len = 0;
	int fd = pcap_fileno(p);

	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &len) < 0)
		return true; /* nothing to tell */
	return len > 0;
}

/* Compiles and sets filter on p: 0, -1 (libpcap's error), or -2 when the kernel refused it
 * (libpcap then filters in user space: the caller puts a filter back that fits). */
static int apply_filter(pcap_t *p, const char *filter)
{
	struct bpf_program prog;
	int rc;

	if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0)
		return -1;
	rc = pcap_setfilter(p, &prog);
	pcap_freecode(&prog);
	if (rc == 0 && !kernel_filters(p))
		return -2;
	return rc;
}

/* The error of a failed apply_filter on p. */
static void filter_error(pcap_t *p, int rc, const char *name, char *errbuf, size_t errlen)
{
	if (rc == -2)
		snprintf(errbuf, errlen,
		         "%s: the kernel refused the capture filter (too long for this socket: "
		         "see net.core.optmem_max)",
		         name);
	else
		snprintf(errbuf, errlen, "%s: %s", name, pcap_geterr(p));
}

/* Restricts p to one direction; CAPTURE_DIR_UNKNOWN keeps both. */
static int set_direction(pcap_t *p, int dir)
{
	if (dir == CAPTURE_DIR_UNKNOWN)
		return 0;
	return pcap_setdirection(p, dir == CAPTURE_DIR_IN ? PCAP_D_IN : PCAP_D_OUT);
}

/* On a cooked capture ("any"), asks for SLL2 rather than SLL: it also names the interface
 * of each frame, so that a frame that arrived with a local source is known to have come
 * from loopback or not. Kept as is when not offered. Before the filter is compiled: it
 * depends on the link type. */
static void prefer_sll2(pcap_t *p)
{
	int *dlts, n, i;

	if (pcap_datalink(p) != DLT_LINUX_SLL)
		return;
	n = pcap_list_datalinks(p, &dlts);
	for (i = 0; i < n; i++)
		if (dlts[i] == DLT_LINUX_SLL2)
			break;
	if (n > 0 && i < n)
		pcap_set_datalink(p, DLT_LINUX_SLL2);
	if (n >= 0)
		pcap_free_datalinks(dlts);
}

/* One activated, filtered, non-blocking handle for dir; NULL with errbuf filled. */
static pcap_t *open_handle(const char *ifname, const char *filter, size_t buffer, int dir, int *fd,
                           char *errbuf, size_t errlen)
{
	char pe[PCAP_ERRBUF_SIZE] = "";
	pcap_t *p = pcap_create(ifname, pe);
	int rc;

	if (!p) {
		snprintf(errbuf, errlen, "%s: %s", ifname, pe);
		return NULL;
	}
	if (configure(p, buffer) < 0)
		goto fail;
	prefer_sll2(p);
	if (set_direction(p, dir) < 0)
		goto fail;
	if ((rc = apply_filter(p, filter)) < 0) {
		filter_error(p, rc, ifname, errbuf, errlen);
		pcap_close(p);
		return NULL;
	}
	if (pcap_setnonblock(p, 1, pe) < 0 || (*fd = pcap_get_selectable_fd(p)) < 0)
		goto fail;
	return p;
fail:
	snprintf(errbuf, errlen, "%s: %s", ifname, pe[0] ? pe : pcap_geterr(p));
	pcap_close(p);
	return NULL;
}

/* Is ifname the loopback interface (the kernel gives it index 1 in every namespace)? -1
 * for "any" (every interface). */
static int is_loopback(const char *ifname)
{
	if (strcmp(ifname, "any") == 0)
		return -1;
	return if_nametoindex(ifname) == LOOPBACK_IFINDEX;
}

struct capture *capture_open(const char *ifname, const char *filter, size_t buffer, char *errbuf,
                             size_t errlen)
{
	struct capture *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	snprintf(c->name, sizeof(c->name), "%s", ifname);
	c->buffer = buffer;
	c->p[0] =
	    open_handle(ifname, filter, buffer, CAPTURE_DIR_UNKNOWN, &c->fd[0], errbuf, errlen);
	if (!c->p[0]) {
		free(c);
		return NULL;
	}
	c->n = 1;
	c->dir[0] = CAPTURE_DIR_UNKNOWN;
	c->dlt = pcap_datalink(c->p[0]);
	c->loopback = is_loopback(ifname);
	c->filter = strdup(filter); /* NULL: no filter to put back after a refusal */
	return c;
}

int capture_split(struct capture *c, const char *filter, char *errbuf, size_t errlen)
{
	static const int dirs[CAPTURE_MAX_HANDLES] = {CAPTURE_DIR_IN, CAPTURE_DIR_OUT};
	pcap_t *p[CAPTURE_MAX_HANDLES] = {NULL, NULL};
	int fd[CAPTURE_MAX_HANDLES], i;

	if (c->n != 1)
		return 0;
	for (i = 0; i < CAPTURE_MAX_HANDLES; i++) {
		p[i] = open_handle(c->name, filter, c->buffer, dirs[i], &fd[i], errbuf, errlen);
		if (!p[i] || pcap_datalink(p[i]) != c->dlt) {
			if (p[i])
				snprintf(errbuf, errlen, "%s: link type changed", c->name);
			while (i >= 0)
				if (p[i--])
					pcap_close(p[i + 1]);
			return -1;
		}
	}
	pcap_close(c->p[0]);
	for (i = 0; i < CAPTURE_MAX_HANDLES; i++) {
		c->p[i] = p[i];
		c->fd[i] = fd[i];
		c->dir[i] = dirs[i];
	}
	c->n = CAPTURE_MAX_HANDLES;
	free(c->filter);
	c->filter = strdup(filter);
	return 0;
}

int capture_fds(const struct capture *c, int fds[CAPTURE_MAX_HANDLES])
{
	for (int i = 0; i < c->n; i++)
		fds[i] = c->fd[i];
	return c->n;
}

const char *capture_name(const struct capture *c)
{
	return c->name;
}

int capture_link_has_direction(const struct capture *c)
{
	return c->dlt == DLT_LINUX_SLL || c->dlt == DLT_LINUX_SLL2;
}

/* Hands one frame of handle i to the callback. */
static void deliver(struct capture *c, int i, const struct pcap_pkthdr *h, const u_char *bytes)
{
	double real = (double)h->ts.tv_sec + h->ts.tv_usec / 1e6;
	struct capture_frame f = {
	    .dlt = c->dlt,
	    .data = bytes,
	    .caplen = h->caplen,
	    .wirelen = h->len < h->caplen ? h->caplen : h->len,
	    .dir = c->dir[i],
	    .loopback = c->loopback,
	    .when = real + c->mono_minus_real,
	};

	c->fn(c->arg, &f);
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct capture *c = (struct capture *)user;

	deliver(c, c->cur, h, bytes);
}

/* One handle: everything available now, in rounds. */
static int drain_one(struct capture *c)
{
	int total = 0, n, round;

	c->cur = 0;
	for (round = 0; round < CAPTURE_MAX_ROUNDS; round++) {
		n = pcap_dispatch(c->p[0], -1, on_packet, (u_char *)c);
		if (n < 0) {
			c->failed = 0;
			return total > 0 ? total : -1;
		}
		if (n == 0)
			break;
		total += n;
	}
	return total;
}

static bool older(const struct pcap_pkthdr *a, const struct pcap_pkthdr *b)
{
	return a->ts.tv_sec < b->ts.tv_sec ||
	       (a->ts.tv_sec == b->ts.tv_sec && a->ts.tv_usec <= b->ts.tv_usec);
}

/* Two handles (in, out): their frames merged in capture time order, as one handle on
 * both directions would give them (a reply is never judged before the segment it answers
 * was seen leaving). A frame taken from a handle is always delivered. */
static int drain_merged(struct capture *c)
{
	struct pcap_pkthdr *h[2];
	const u_char *b[2];
	bool have[2] = {false, false}, failed = false;
	int total = 0, i, r;

	for (;;) {
		/* Each handle whose frame was delivered gives its next, while the budget lasts. */
		for (i = 0; i < 2 && total < CAPTURE_MAX_FRAMES; i++) {
			if (have[i])
				continue;
			r = pcap_next_ex(c->p[i], &h[i], &b[i]);
			have[i] = r == 1;
			if (r < 0) {
				failed = true;
				c->failed = i;
			}
		}
		if (!have[0] && !have[1])
			break;
		i = have[0] && (!have[1] || older(h[0], h[1])) ? 0 : 1;
		deliver(c, i, h[i], b[i]);
		have[i] = false;
		total++;
	}
	return failed && total == 0 ? -1 : total;
}

int capture_drain(struct capture *c, capture_fn fn, void *arg)
{
	c->fn = fn;
	c->arg = arg;
	c->mono_minus_real = clock_sec(CLOCK_MONOTONIC) - clock_sec(CLOCK_REALTIME);
	return c->n == 1 ? drain_one(c) : drain_merged(c);
}

void capture_stats(struct capture *c, unsigned *received, unsigned *dropped)
{
	struct pcap_stat st;

	*received = *dropped = 0;
	for (int i = 0; i < c->n; i++) {
		memset(&st, 0, sizeof(st));
		pcap_stats(c->p[i], &st);
		*received += st.ps_recv;
		*dropped += st.ps_drop + st.ps_ifdrop;
	}
}

const char *capture_error(struct capture *c)
{
	return pcap_geterr(c->p[c->failed]);
}

int capture_set_filter(struct capture *c, const char *filter, char *errbuf, size_t errlen)
{
	char *copy = strdup(filter);
	int i, rc = 0;

	for (i = 0; i < c->n && copy && rc == 0; i++)
		rc = apply_filter(c->p[i], filter);
	if (copy && rc == 0) {
		free(c->filter);
		c->filter = copy;
		return 0;
	}
	if (copy)
		filter_error(c->p[i - 1], rc, c->name, errbuf, errlen);
	else
		snprintf(errbuf, errlen, "%s: out of memory", c->name);
	free(copy);
	while (c->filter && i-- > 0)
		apply_filter(c->p[i], c->filter); /* it fitted before */
	return -1;
}

void capture_close(struct capture *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n; i++)
		pcap_close(c->p[i]);
	free(c->filter);
	free(c);
}
