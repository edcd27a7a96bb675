/* notify.h: systemd's service notifications (sd_notify): READY, RELOADING, STOPPING,
 * STATUS, and the watchdog. Every call is a no-op when NOTIFY_SOCKET is not set. */
#ifndef KAPROBE_NOTIFY_H
#define KAPROBE_NOTIFY_H

#include <stddef.h>

#include <ev.h>

/* Fills buf with the status text: current counts, as shown by systemctl status. */
typedef void (*notify_status_fn)(void *arg, char *buf, size_t len);

/* Formats "N connections tracked, P probes sent, D dead" into buf (pure). */
void notify_format_counts(char *buf, size_t len, unsigned long long tracked,
                          unsigned long long probes, unsigned long long dead);

/* Starts, on loop, the watchdog timer (WATCHDOG=1 every half of WatchdogSec, when the
 * service manager asked for it) and the status timer (STATUS= from fn every
 * `status_every` seconds, when NOTIFY_SOCKET is set). */
void notify_start(struct ev_loop *loop, notify_status_fn fn, void *arg, double status_every);

/* Stops the timers notify_start() started. */
void notify_stop(struct ev_loop *loop);

/* READY=1 with the current STATUS= (start-up done, or a reload finished). */
void notify_ready(void);

/* RELOADING=1 (with MONOTONIC_USEC=) at the start of a reload. */
void notify_reloading(void);

/* STOPPING=1 when the loop is about to end. */
void notify_stopping(void);

/* STATUS=text. */
void notify_status(const char *text);

/* The watchdog interval the service manager asked for (s), or 0 when none. */
double notify_watchdog_interval(void);

#endif
