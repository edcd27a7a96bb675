/* discover.h: finds the connections that already exist (the kernel's socket list, through
 * diag) at start, on reload and every discover_interval, and hands them to the engine. */
#ifndef KAPROBE_DISCOVER_H
#define KAPROBE_DISCOVER_H

#include <stdbool.h>

#include <ev.h>

#include "config.h"
#include "engine.h"

struct discover;

/* Opens the NETLINK_SOCK_DIAG socket (at start-up, before privileges are dropped).
 * NULL with errno set on failure. */
struct discover *discover_new(struct ev_loop *loop, struct engine *e, const struct config *cfg);

/* Starts a run now: a dump (IPv4 then IPv6) read as the loop goes, then the sweep of the
 * connections it did not list; the periodic timer restarts when the run is over. Asked
 * during a run, runs once more after it. Failures are logged. */
void discover_run(struct discover *d);

/* Whether a run (dump or sweep) is under way. */
bool discover_busy(const struct discover *d);

/* A new configuration (reload): rules and discover_interval; the caller runs again. */
void discover_set_config(struct discover *d, const struct config *cfg);

/* Stops the timer, closes the socket, frees. */
void discover_free(struct discover *d);

#endif
