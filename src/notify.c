/* notify.c: systemd notifications through libsystemd's sd_notify().
 *
 * sd_notify() does nothing (returns 0) when NOTIFY_SOCKET is unset, so kaprobed run by
 * hand pays nothing. Notifications are best effort: a failed send is logged at debug
 * level and never stops the loop. The watchdog timer runs at half of WATCHDOG_USEC
 * (sd_watchdog_enabled()), as sd_watchdog_enabled(3) recommends. */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"

#define STATUS_LEN 256

static notify_status_fn status_fn;
static void *status_arg;
static ev_timer watchdog_timer, status_timer;

void notify_format_counts(char *buf, size_t len, unsigned long long tracked,
                          unsigned long long probes, unsigned long long dead)
{
	snprintf(buf, len, "%llu connection%s tracked, %llu probe%s sent, %llu dead", tracked,
	         tracked == 1 ? "" : "s", probes, probes == 1 ? "" : "s", dead);
}

static void send_state(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_debug("sd_notify: %s", strerror(-rc));
}

static void current_status(char *buf, size_t len)
{
	buf[0] = '\0';
	if (status_fn)
		status_fn(status_arg, buf, len);
}

void notify_status(const char *text)
{
	char msg[STATUS_LEN + 16];

	snprintf(msg, sizeof(msg), "STATUS=%s", text);
	send_state(msg);
}

void notify_ready(void)
{
	char status[STATUS_LEN], msg[STATUS_LEN + 32];

	current_status(status, sizeof(status));
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status[0] ? status : "running");
	send_state(msg);
}

void notify_reloading(void)
{
	char msg[128];
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	             (unsigned long long)ts.tv_nsec / 1000ULL);
	send_state(msg);
}

void notify_stopping(void)
{
	send_state("STOPPING=1\nSTATUS=stopping");
}

double notify_watchdog_interval(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return 0;
	return (double)usec / 1e6;
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	send_state("WATCHDOG=1");
}

static void on_status(struct ev_loop *loop, ev_timer *w, int revents)
{
	char status[STATUS_LEN];

	(void)loop;
	(void)w;
	(void)revents;
	current_status(status, sizeof(status));
	if (status[0])
		notify_status(status);
}

void notify_start(struct ev_loop *loop, notify_status_fn fn, void *arg, double status_every)
{
	double wd = notify_watchdog_interval();

	status_fn = fn;
	status_arg = arg;
	if (wd > 0) {
		ev_timer_init(&watchdog_timer, on_watchdog, wd / 2, wd / 2);
		ev_timer_start(loop, &watchdog_timer);
		log_info("systemd watchdog: WATCHDOG=1 every %.3f s", wd / 2);
	}
	if (getenv("NOTIFY_SOCKET") && status_every > 0) {
		ev_timer_init(&status_timer, on_status, status_every, status_every);
		ev_timer_start(loop, &status_timer);
	}
}

void notify_stop(struct ev_loop *loop)
{
	ev_timer_stop(loop, &watchdog_timer);
	ev_timer_stop(loop, &status_timer);
}
