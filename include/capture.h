/* capture.h: libpcap edge. Opens one interface non-blocking with a kernel BPF filter
 * and a small snaplen, hands each captured frame's bytes to a callback. */
#ifndef KAPROBE_CAPTURE_H
#define KAPROBE_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

/* Headers only: SLL2 (20) + IPv4 with options (60) + TCP with options (60) = 140; an ICMP
 * error quoting IPv4 with options: 20 + 60 + 8 + 60 + 8 (ports, SEQ) = 156. */
#define CAPTURE_SNAPLEN 160

struct capture;

/* Called for every captured frame: link type, bytes, capture time (monotonic seconds). */
typedef void (*capture_fn)(void *arg, int dlt, const uint8_t *data, size_t caplen, double when);

/* Opens ifname ("any" or a name) with the filter and a kernel ring of buffer bytes. NULL with
 * errbuf filled on failure. */
struct capture *capture_open(const char *ifname, const char *filter, size_t buffer, char *errbuf,
                             size_t errlen);

/* The descriptor to watch for readability. */
int capture_fd(const struct capture *c);

/* Reads every frame available now, calling fn for each. Returns frames read, -1 on error. */
int capture_drain(struct capture *c, capture_fn fn, void *arg);

/* Kernel counters: received and dropped. */
void capture_stats(struct capture *c, unsigned *received, unsigned *dropped);

/* The last error of the handle (after capture_drain returned -1). */
const char *capture_error(struct capture *c);

/* Name of the interface. */
const char *capture_name(const struct capture *c);

/* Replaces the kernel filter of an open capture. Returns 0, or -1 with errbuf filled
 * (the old filter then stays). */
int capture_set_filter(struct capture *c, const char *filter, char *errbuf, size_t errlen);

/* Closes and frees. */
void capture_close(struct capture *c);

#endif
