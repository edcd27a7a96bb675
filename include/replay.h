/* replay.h: kaprobed -r. Runs a capture file (pcap or pcapng) through the engine on the
 * capture's own clock: nothing is sent, no socket is opened; the status log goes to
 * standard output. */
#ifndef KAPROBE_REPLAY_H
#define KAPROBE_REPLAY_H

#include "addr.h"
#include "config.h"

/* A probe the engine wanted is matched by the next own probe of its connection that the
 * capture shows within this many s; otherwise it is logged event=probe replay=unsent. */
#define REPLAY_PROBE_WINDOW 0.5

/* Adds the addresses of a comma-separated list ("192.0.2.1,2001:db8::1") to set.
 * Returns 0, or -1 on a malformed address or a full set. */
int replay_parse_local(const char *text, struct addr_set *set);

/* Replays the capture at path under cfg's rules (cfg's log_format and log level; its
 * outputs, actions and files are not used). local: this host's addresses, or NULL to take
 * them from the capture (the sources of frames it marks outgoing, and both ends of frames
 * on loopback: Linux cooked captures, SLL2 for loopback). Writes the status log to
 * standard output, ending with a totals line. Returns 0, or 1 with a message naming the
 * file on standard error when the capture cannot be read. */
int replay_run(const char *path, const struct config *cfg, const struct addr_set *local);

#endif
