/* discover.h: finds the connections that already exist (the kernel's socket list, through
 * diag) at start, on reload and every discover_interval, and hands them to the engine. */
#ifndef KAPROBE_DISCOVER_H
#define KAPROBE_DISCOVER_H

#include <ev.h>

#include "config.h"
#include "engine.h"

struct discover;

/* Opens the NETLINK_SOCK_DIAG socket (at start-up, before privileges are dropped).
 * NULL with errno set on failure. */
struct discover *discover_new(struct ev_loop *loop, struct engine *e, const struct config *cfg);

/* Dumps now (IPv4 and IPv6) and (re)starts the periodic timer. Returns the number of
 * sockets listed, or -1 (logged). */
long discover_run(struct discover *d);

/* A new configuration (reload): rules and discover_interval; the caller runs again. */
void discover_set_config(struct discover *d, const struct config *cfg);

/* Stops the timer, closes the socket, frees. */
void discover_free(struct discover *d);

#endif
