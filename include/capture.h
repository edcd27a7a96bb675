/* capture.h: libpcap edge. Opens one interface non-blocking with a kernel BPF filter
 * and a small snaplen, optionally one direction only, hands each captured frame to a
 * callback. */
#ifndef KAPROBE_CAPTURE_H
#define KAPROBE_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

/* Headers only: SLL2 (20) + IPv4 with options (60) + TCP with options (60) = 140; an ICMP
 * error quoting IPv4 with options: 20 + 60 + 8 + 60 + 8 (ports, SEQ) = 156. */
#define CAPTURE_SNAPLEN 160

struct capture;

/* Which way a frame went, when the capture knows it (from its handle's direction). */
enum capture_dir {
	CAPTURE_DIR_UNKNOWN = 0, /* both ways (the link type may still say: SLL on "any") */
	CAPTURE_DIR_IN = 1,      /* received by this host */
	CAPTURE_DIR_OUT = 2,     /* sent by this host */
};

/* One captured frame. */
struct capture_frame {
	int dlt;             /* link type (DLT_*) */
	const uint8_t *data; /* the captured bytes */
	size_t caplen;       /* bytes captured */
	size_t wirelen;      /* bytes the frame had on the wire (>= caplen) */
	int dir;             /* enum capture_dir */
	int loopback;        /* the interface is loopback: 1, is not: 0, unknown ("any"): -1 */
	double when;         /* capture time, monotonic s */
};

/* Called for every captured frame. */
typedef void (*capture_fn)(void *arg, const struct capture_frame *f);

/* Most handles (descriptors) of one capture. */
#define CAPTURE_MAX_HANDLES 2

/* Opens ifname ("any" or a name) with the filter and a kernel ring of buffer bytes, both
 * directions on one handle. NULL with errbuf filled on failure. */
struct capture *capture_open(const char *ifname, const char *filter, size_t buffer, char *errbuf,
                             size_t errlen);

/* Does the link type of c tell every frame's direction by itself (Linux cooked SLL and
 * SLL2 captures, i.e. "any")? When not, a capture on both directions cannot tell our own
 * frames from frames that claim our address: capture_split() it. */
int capture_link_has_direction(const struct capture *c);

/* Replaces c's handle by two, one per direction (pcap_setdirection IN and OUT): each frame
 * then carries its direction, and capture_drain() merges the two in capture time order.
 * Returns 0, or -1 with errbuf filled (c unchanged: the direction cannot be known). */
int capture_split(struct capture *c, const char *filter, char *errbuf, size_t errlen);

/* The descriptors to watch for readability (any of them: capture_drain); returns how many
 * (1 or 2). */
int capture_fds(const struct capture *c, int fds[CAPTURE_MAX_HANDLES]);

/* Reads every frame available now, calling fn for each. Returns frames read, -1 on error. */
int capture_drain(struct capture *c, capture_fn fn, void *arg);

/* Kernel counters: received and dropped. */
void capture_stats(struct capture *c, unsigned *received, unsigned *dropped);

/* The last error of the handle that failed (after capture_drain returned -1). */
const char *capture_error(struct capture *c);

/* Name of the interface. */
const char *capture_name(const struct capture *c);

/* Replaces the kernel filter of an open capture. Returns 0, or -1 with errbuf filled
 * (the old filter then stays). */
int capture_set_filter(struct capture *c, const char *filter, char *errbuf, size_t errlen);

/* Closes and frees. */
void capture_close(struct capture *c);

#endif
