/* main.c: kaprobed. Flags, start-up order, the one ev_run loop, signals.
 *
 * Start-up: read and check the config (exit 1 on any error); open, as root, the status
 * outputs, the address watch, the raw sender, the sock_diag sockets and the captures
 * (open_privileged); drop to the run user with CAP_NET_RAW and CAP_NET_ADMIN only
 * (priv_drop); then reports, signals, the first discovery dump, READY=1, and the loop.
 * SIGTERM/SIGINT end the loop; SIGHUP re-reads the configuration (reload_config) and
 * reopens the status log; SIGUSR1 only reopens it (log rotation); SIGUSR2 writes the
 * state file now. */
#include <errno.h>
#include <ifaddrs.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "action.h"
#include "actmsg.h"
#include "addr.h"
#include "capture.h"
#include "config.h"
#include "ctwatch.h"
#include "diag.h"
#include "discover.h"
#include "engine.h"
#include "gateway.h"
#include "hush.h"
#include "ifaddr.h"
#include "log.h"
#include "loopstall.h"
#include "notify.h"
#include "priv.h"
#include "replay.h"
#include "report.h"
#include "rule.h"
#include "sender.h"
#include "statusview.h"

#define MAX_CAPTURES    16
#define MAX_CONFIG_SIZE (1 << 20)
#define FILTER_MAX      (64 * 1024)
#define NOTIFY_EVERY    10.0 /* s between STATUS= updates to systemd */
#define REOPEN_EVERY    1.0  /* s between tries to reopen a failed capture */
#define REOPEN_GIVE_UP  30.0 /* s after which kaprobed exits (systemd restarts it) */
/* Busy captures are read in batches (issue 14): a drain that comes less than CAPTURE_PACE
 * after the previous one stops watching the capture descriptors, and a timer drains them
 * every CAPTURE_PACE for as long as frames keep coming; then they are watched again. */
#define CAPTURE_PACE 0.005 /* s */
/* Past this many rules libpcap's compiled filter nears the kernel's 4096-instruction
 * limit (and takes seconds to build): capture all TCP and ICMP errors instead. */
#define FILTER_MAX_RULES 64
#define FILTER_COARSE                                                                              \
	"tcp or (icmp and (icmp[icmptype] == icmp-unreach or icmp[icmptype] == "                   \
	"icmp-timxceed)) or (icmp6 and (ip6[40] == 1 or ip6[40] == 3))"

struct daemon {
	struct ev_loop *loop;
	struct config cfg;
	struct addr_set local;
	struct sender *sender;
	struct engine *engine;
	struct capture *cap[MAX_CAPTURES];               /* NULL while that capture is down */
	ev_io cap_io[MAX_CAPTURES][CAPTURE_MAX_HANDLES]; /* one per handle */
	char cap_name[MAX_CAPTURES][64];
	double cap_down_since[MAX_CAPTURES];
	unsigned long long cap_drops_before[MAX_CAPTURES]; /* drops of handles since closed */
	int ncap, ndown;
	ev_timer reopen_t;
	ev_timer pace_t;            /* while paced: the next batch (see pause_captures) */
	ev_check pace_check;        /* while paced: drains before any other callback */
	int paced;                  /* the capture descriptors are not watched */
	unsigned long paced_frames; /* frames drained by pace_check since the last batch */
	double last_drain;          /* ev_now of the last drain on readiness */
	int exit_status;
	ev_signal sig_term, sig_int, sig_hup, sig_usr1;
	ev_signal sig_usr2; /* write the state file now */
	struct report *report;
	struct action *action;
	const char *conf_path; /* re-read on SIGHUP */
	int debug;             /* -d: debug level whatever the file says */
	struct discover *discover;
	ev_io addr_io;
	int qfd;       /* NETLINK_SOCK_DIAG for busy connections' one-socket queries */
	uint32_t qseq; /* their sequence numbers */
	int ctfd;      /* NETLINK_NETFILTER for gateway records' conntrack lookups, or -1 */
	uint32_t ctseq;
	struct hush *hush; /* gateway rules: the nftables table dropping answers (or NULL) */
	bool hush_told;    /* the warning that answers are forwarded was written */
	unsigned long long hush_failed; /* batches of expected answers nftables refused */
	double hush_again_at;           /* when the table was last installed again */
	struct ctwatch *ctwatch;        /* conntrack events and dumps (gateway rules), or NULL */
};

static unsigned long long pcap_drops(void *arg);

static void usage(FILE *f)
{
	fprintf(f, "usage: kaprobed [-c FILE] [-n] [-s] [-d] [-V] [-h]\n"
	           "       kaprobed -r CAPTURE [-l ADDR[,ADDR...]] [-c FILE] [-d]\n"
	           "  -c FILE  configuration (default " CONFIG_DEFAULT_PATH ")\n"
	           "  -n       check the configuration and exit\n"
	           "  -s       print the running daemon's state file as a table and exit\n"
	           "  -r FILE  replay a capture (pcap, pcapng) on its own clock: the status log\n"
	           "           to standard output, nothing sent\n"
	           "  -l ADDRS with -r: this host's addresses (default: from the capture)\n"
	           "  -d       debug log level\n"
	           "  -V       print the version and exit\n"
	           "  -h       this help\n");
}

/* The whole file at path (at most MAX_CONFIG_SIZE bytes, NUL bytes kept: *len says how
 * many), NUL-terminated; NULL with errno set on failure. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(MAX_CONFIG_SIZE + 1);
	if (!buf) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, MAX_CONFIG_SIZE + 1, f);
	fclose(f);
	if (n > MAX_CONFIG_SIZE) {
		free(buf);
		errno = EFBIG;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static double read_proc_number(const char *path, double fallback)
{
	FILE *f = fopen(path, "r");
	double v;

	if (!f)
		return fallback;
	if (fscanf(f, "%lf", &v) != 1)
		v = fallback;
	fclose(f);
	return v;
}

/* This host's kernel keepalive settings: the defaults where [global] sets none. */
static void host_defaults(struct fsm_params *p)
{
	p->idle = read_proc_number("/proc/sys/net/ipv4/tcp_keepalive_time", 7200);
	p->interval = read_proc_number("/proc/sys/net/ipv4/tcp_keepalive_intvl", 75);
	p->probes = (int)read_proc_number("/proc/sys/net/ipv4/tcp_keepalive_probes", 9);
	p->probe_bytes = 1;
	p->stall_timeout = 0.0; /* the kernel has none: tcp_retries2 decides */
	p->observe = false;
}

/* Reads and checks the configuration. Returns 0, or -1 with every error in errs. */
static int parse_config(const char *path, struct config *cfg, struct config_errors *errs)
{
	struct fsm_params defaults;
	size_t len = 0;
	char *text = read_file(path, &len);
	int rc;

	memset(errs, 0, sizeof(*errs));
	if (!text) {
		snprintf(errs->msg[0], sizeof(errs->msg[0]), "%s:0: cannot read: %s", path,
		         strerror(errno));
		errs->n = 1;
		return -1;
	}
	host_defaults(&defaults);
	rc = config_parse_len(path, text, len, &defaults, cfg, errs);
	free(text);
	return rc;
}

/* Loads and checks the configuration; prints every error. Returns 0 or -1. */
static int load_config(const char *path, struct config *cfg)
{
	static struct config_errors errs;
	size_t i;
	int rc = parse_config(path, cfg, &errs);

	for (i = 0; rc < 0 && i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	if (rc < 0 && errs.dropped)
		fprintf(stderr, "%s: %zu more errors\n", path, errs.dropped);
	return rc;
}

/* The index of interface name, as rtnetlink names it: an IPv4 label ("eth0:1") is its
 * interface's. 0 when unknown. */
static int if_index(const char *name)
{
	char base[IF_NAMESIZE];

	snprintf(base, sizeof(base), "%.*s", (int)strcspn(name, ":"), name);
	return (int)if_nametoindex(base);
}

/* This host's addresses; -1 (errno set) when they cannot be read. */
static int load_local_addresses(struct addr_set *set)
{
	struct ifaddrs *ifa, *i;
	const uint8_t *ip;

	if (getifaddrs(&ifa) < 0)
		return -1;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET)
			ip = (const uint8_t *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		else if (i->ifa_addr->sa_family == AF_INET6)
			ip = (const uint8_t *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		else
			continue;
		if (addr_set_add(set, i->ifa_addr->sa_family, ip, if_index(i->ifa_name)) < 0)
			log_warnx("more than %zu local addresses: %s ignored", set->n, i->ifa_name);
	}
	freeifaddrs(ifa);
	return 0;
}

static void on_address(void *arg, const struct ifaddr_event *ev)
{
	struct daemon *d = arg;
	char buf[ADDR_ENDPOINT_STRLEN];

	addr_format_ip(ev->family, ev->ip, buf, sizeof(buf));
	if (ev->add && addr_set_add(&d->local, ev->family, ev->ip, ev->ifindex) < 0)
		log_warnx("more than %zu local addresses: %s ignored", d->local.n, buf);
	else if (!ev->add)
		addr_set_remove(&d->local, ev->family, ev->ip, ev->ifindex);
	log_debug("local address %s %s on interface %d%s", ev->add ? "added" : "removed", buf,
	          ev->ifindex, addr_set_contains(&d->local, ev->family, ev->ip) ? " (local)" : "");
}

static void on_address_change(struct ev_loop *loop, ev_io *w, int revents)
{
	struct daemon *d = w->data;

	(void)loop;
	(void)revents;
	if (ifaddr_drain(w->fd, on_address, d) == 0)
		return;
	log_warn("address changes: read"); /* ENOBUFS: some were lost; read them all again */
	memset(&d->local, 0, sizeof(d->local));
	if (load_local_addresses(&d->local) < 0)
		log_warn("getifaddrs");
}

/* Follows address changes, so a new address is local without a restart. */
static void watch_addresses(struct daemon *d)
{
	int fd = ifaddr_open();

	if (fd < 0)
		fatal("rtnetlink");
	ev_io_init(&d->addr_io, on_address_change, fd, EV_READ);
	d->addr_io.data = d;
	ev_set_priority(&d->addr_io, EV_MAXPRI);
	ev_io_start(d->loop, &d->addr_io);
}

static const char *capture_filter(const struct config *cfg);

/* Stops watching every descriptor of capture i. */
static void unwatch_capture(struct daemon *d, int i)
{
	for (int k = 0; k < CAPTURE_MAX_HANDLES; k++)
		if (ev_is_active(&d->cap_io[i][k]))
			ev_io_stop(d->loop, &d->cap_io[i][k]);
}

/* A capture failed at run time (its interface went away): it is closed, the engine gives no
 * verdict while any capture is down, and it is reopened every REOPEN_EVERY s. */
static void capture_lost(struct daemon *d, int i)
{
	unsigned recv, drop;

	log_warnx("capture on %s failed: %s; no verdict until it is reopened", d->cap_name[i],
	          capture_error(d->cap[i]));
	capture_stats(d->cap[i], &recv, &drop);
	d->cap_drops_before[i] += drop;
	unwatch_capture(d, i);
	capture_close(d->cap[i]);
	d->cap[i] = NULL;
	d->cap_down_since[i] = ev_now(d->loop);
	if (d->ndown++ == 0)
		engine_set_capture_down(d->engine, true);
	if (!ev_is_active(&d->reopen_t))
		ev_timer_again(d->loop, &d->reopen_t);
}

/* Every frame captured so far, of every capture, is handed to the engine; returns how
 * many. A capture whose read fails is closed (capture_lost). */
static unsigned long drain_captures(struct daemon *d)
{
	unsigned long total = 0;
	int i, n;

	for (i = 0; i < d->ncap; i++) {
		if (!d->cap[i])
			continue;
		n = capture_drain(d->cap[i], engine_on_frame, d->engine);
		if (n < 0)
			capture_lost(d, i);
		else
			total += (unsigned long)n;
	}
	return total;
}

/* Watches every descriptor of capture i (one per direction, or one). */
static void start_watching(struct daemon *d, int i)
{
	int fds[CAPTURE_MAX_HANDLES], n = capture_fds(d->cap[i], fds);

	for (int k = 0; k < n; k++)
		if (!ev_is_active(&d->cap_io[i][k]))
			ev_io_start(d->loop, &d->cap_io[i][k]);
}

/* Paced reads (issue 14). Under a stream of frames the kernel would wake the loop for
 * every frame or two (libpcap's immediate mode: a TPACKET_V2 ring); the capture
 * descriptors are unwatched instead and pace_t drains them every CAPTURE_PACE. Nothing is
 * decided on stale state: V2 frames are readable one by one as soon as the kernel wrote
 * them, and while paced, pace_check (an ev_check of the highest priority) drains every
 * capture at the start of each loop iteration, before the timers, the pacer or a verdict
 * run, as the watchers do now when frames are waiting. Frames keep the kernel's
 * timestamps (last_rx, RTT); only their handling comes up to CAPTURE_PACE later. The ring
 * must hold CAPTURE_PACE of frames: 8 MB of 160-byte frames is ~32 000. */
static void pause_captures(struct daemon *d)
{
	for (int i = 0; i < d->ncap; i++)
		unwatch_capture(d, i);
	d->paced = 1;
	d->paced_frames = 0;
	ev_check_start(d->loop, &d->pace_check);
	ev_timer_set(&d->pace_t, CAPTURE_PACE, 0.0);
	ev_timer_start(d->loop, &d->pace_t);
}

static void on_pace_check(struct ev_loop *loop, ev_check *w, int revents)
{
	struct daemon *d = w->data;

	(void)loop;
	(void)revents;
	d->paced_frames += drain_captures(d);
}

/* A batch: frames came in the last CAPTURE_PACE, so the next batch is in CAPTURE_PACE;
 * none came, so the descriptors are watched again. */
static void on_pace(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;

	(void)revents;
	if (d->paced_frames + drain_captures(d) > 0) {
		d->paced_frames = 0;
		ev_timer_set(w, CAPTURE_PACE, 0.0);
		ev_timer_start(loop, w);
		return;
	}
	d->paced = 0;
	ev_check_stop(loop, &d->pace_check);
	for (int i = 0; i < d->ncap; i++)
		if (d->cap[i])
			start_watching(d, i);
}

static void on_capture(struct ev_loop *loop, ev_io *w, int revents)
{
	struct daemon *d = w->data;
	int i = (int)((w - &d->cap_io[0][0]) / CAPTURE_MAX_HANDLES);
	double now = ev_now(loop);

	(void)revents;
	if (capture_drain(d->cap[i], engine_on_frame, d->engine) < 0) {
		capture_lost(d, i);
		return;
	}
	if (!d->paced && now - d->last_drain < CAPTURE_PACE)
		pause_captures(d);
	d->last_drain = now;
}

/* Starts reading capture i: every descriptor it has (one per direction, or one); while
 * paced, on_pace starts watching them. */
static void watch_capture(struct daemon *d, int i, struct capture *c)
{
	int fds[CAPTURE_MAX_HANDLES], n = capture_fds(c, fds);

	d->cap[i] = c;
	for (int k = 0; k < n; k++) {
		ev_io *w = &d->cap_io[i][k];

		ev_io_init(w, on_capture, fds[k], EV_READ);
		w->data = d;
		/* Before timers: a reply already captured must be seen before a dead verdict. */
		ev_set_priority(w, EV_MAXPRI);
	}
	if (!d->paced)
		start_watching(d, i);
}

/* Opens the capture of interface ifname: one handle where the link type gives each frame's
 * direction ("any"), one per direction elsewhere (direction never from addresses alone),
 * with a warning when the direction cannot be set. NULL with err filled on failure. */
static struct capture *open_capture(struct daemon *d, const char *ifname, const char *filter,
                                    char *err, size_t errlen)
{
	struct capture *c =
	    capture_open(ifname, filter, (size_t)d->cfg.capture_buffer, err, errlen);

	if (c && !capture_link_has_direction(c) && capture_split(c, filter, err, errlen) < 0)
		log_warnx("capture on %s: the direction of frames cannot be known (%s): a frame "
		          "with this host's address as source is taken as its own",
		          ifname, err);
	return c;
}

static void open_one_capture(struct daemon *d, const char *ifname, const char *filter)
{
	char err[512];
	struct capture *c;

	if (d->ncap >= MAX_CAPTURES)
		fatalx("too many interfaces (at most %d)", MAX_CAPTURES);
	c = open_capture(d, ifname, filter, err, sizeof(err));
	if (!c)
		fatalx("capture: %s", err);
	snprintf(d->cap_name[d->ncap], sizeof(d->cap_name[0]), "%s", ifname);
	watch_capture(d, d->ncap++, c);
}

/* One try at reopening capture i; exits the loop (status 1) once REOPEN_GIVE_UP is past. */
static void reopen_one(struct daemon *d, int i, double now)
{
	char err[512];
	struct capture *c =
	    open_capture(d, d->cap_name[i], capture_filter(&d->cfg), err, sizeof(err));

	if (c) {
		log_info("capture on %s reopened after %.1f s", d->cap_name[i],
		         now - d->cap_down_since[i]);
		watch_capture(d, i, c);
		engine_busy_refresh(d->engine); /* it was opened with the rules' filter alone */
		if (--d->ndown == 0)
			engine_set_capture_down(d->engine, false);
		return;
	}
	if (now - d->cap_down_since[i] < REOPEN_GIVE_UP)
		return;
	log_errorx("capture on %s cannot be reopened (%s) after %.0f s: exiting so that it is "
	           "restarted",
	           d->cap_name[i], err, REOPEN_GIVE_UP);
	d->exit_status = 1;
	ev_break(d->loop, EVBREAK_ALL);
}

static void on_reopen(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	int i;

	(void)revents;
	for (i = 0; i < d->ncap && d->exit_status == 0; i++)
		if (!d->cap[i])
			reopen_one(d, i, ev_now(loop));
	if (d->ndown == 0)
		ev_timer_stop(loop, w);
}

/* The capture filter text for cfg's rules (a static buffer). */
static const char *capture_filter_text(const struct config *cfg)
{
	static char filter[FILTER_MAX];

	if (cfg->nrules > FILTER_MAX_RULES ||
	    rule_bpf_filter(cfg->rules, cfg->nrules, filter, sizeof(filter)) < 0)
		snprintf(filter, sizeof(filter), "%s", FILTER_COARSE);
	return filter;
}

/* The same, logged. */
static const char *capture_filter(const struct config *cfg)
{
	const char *filter = capture_filter_text(cfg);

	if (strcmp(filter, FILTER_COARSE) == 0)
		log_info("%zu rules: capturing all TCP, rules applied in user space", cfg->nrules);
	log_debug("capture filter: %s", filter);
	return filter;
}

static void open_captures(struct daemon *d)
{
	const char *filter = capture_filter(&d->cfg);
	char list[sizeof(d->cfg.interface)], *save = NULL, *name;

	snprintf(list, sizeof(list), "%s", d->cfg.interface);
	for (name = strtok_r(list, ", ", &save); name; name = strtok_r(NULL, ", ", &save))
		open_one_capture(d, name, filter);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	log_info("signal %d: stopping", w->signum);
	notify_stopping();
	ev_break(loop, EVBREAK_ALL);
}

/* Keys that cannot change without a restart keep their old values, with a warning. */
static void keep_restart_keys(struct config *fresh, const struct config *old)
{
	if (strcmp(fresh->interface, old->interface) != 0) {
		log_warnx("reload: interface cannot change without a restart; keeping \"%s\"",
		          old->interface);
		snprintf(fresh->interface, sizeof(fresh->interface), "%s", old->interface);
	}
	if (strcmp(fresh->user, old->user) != 0 || fresh->user_set != old->user_set) {
		log_warnx("reload: user cannot change without a restart; keeping \"%s\"",
		          old->user);
		snprintf(fresh->user, sizeof(fresh->user), "%s", old->user);
		fresh->user_set = old->user_set;
	}
	if (fresh->max_connections != old->max_connections) {
		log_warnx("reload: max_connections cannot change without a restart; keeping %ld",
		          old->max_connections);
		fresh->max_connections = old->max_connections;
	}
}

/* The kernel's view of one socket, for a busy connection (engine_kquery_fn). */
static int busy_query(void *arg, const struct addr_tuple *key, struct engine_kinfo *ki)
{
	struct daemon *d = arg;
	struct diag_sock s;
	double sent;

	d->qseq += 2;
	if (diag_query(d->qfd, key, d->qseq, &s) < 0)
		return -1;
	if (!s.has_info) {
		errno = EPROTO;
		return -1;
	}
	ki->idle = diag_idle(&s);
	sent = s.last_data_sent_ms / 1000.0;
	ki->quiet = ki->idle < sent ? ki->idle : sent;
	ki->silent = diag_stall_silence(&s);
	ki->unacked = s.wqueue;
	ki->retransmits = s.retransmits;
	ki->in_flight = s.unacked != 0 || s.wqueue != 0;
	ki->zero_window = s.timer == DIAG_TIMER_PROBE0;
	return 0;
}

/* A conntrack entry by one of its tuples (engine_ct_fn): one ctnetlink GET, which the
 * kernel answers inside sendto(); only the kernel's answer to this request counts. */
static int ct_query(void *arg, const struct addr_tuple *from, struct addr_tuple *orig,
                    struct addr_tuple *reply, bool *nat)
{
	struct daemon *d = arg;
	_Alignas(uint32_t) uint8_t req[ACTMSG_CT_LEN], buf[4096]; /* netlink's alignment */
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK}, src;
	socklen_t slen;
	struct actmsg_ct ct;
	size_t len = actmsg_ct_get(from, ++d->ctseq, req, sizeof(req));
	ssize_t n;

	if (!len)
		return -1;
	while (recv(d->ctfd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		; /* a late answer to an earlier request, if any */
	if (sendto(d->ctfd, req, len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -1;
	do {
		memset(&src, 0, sizeof(src));
		slen = sizeof(src);
		n = recvfrom(d->ctfd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&src,
		             &slen);
	} while ((n > 0 && src.nl_pid != 0) || (n < 0 && errno == EINTR));
	if (n <= 0 || actmsg_ct_found(buf, (size_t)n, d->ctseq, src.nl_pid, &ct) != 0)
		return -1;
	*orig = ct.orig;
	*reply = ct.reply;
	*nat = (ct.status & (IPS_SRC_NAT | IPS_DST_NAT)) != 0;
	return 0;
}

/* The rules' filter less the busy connections' routine segments (engine_exclude_fn). */
static int busy_exclude(void *arg, const struct addr_tuple *keys, size_t n)
{
	static char filter[FILTER_MAX + ENGINE_BUSY_MAX * 2 * 200];
	struct daemon *d = arg;
	char err[512];
	int i, rc = 0;

	if (rule_bpf_exclude(capture_filter_text(&d->cfg), keys, n, filter, sizeof(filter)) < 0)
		return -1;
	for (i = 0; i < d->ncap; i++) {
		if (d->cap[i] && capture_set_filter(d->cap[i], filter, err, sizeof(err)) < 0) {
			log_warnx("capture filter for busy connections not set: %s", err);
			rc = -1;
		}
	}
	log_debug("capture: %zu busy connections left out", n);
	return rc;
}

/* The open captures get the new rules' filter (each keeps its old one on failure). */
static void refilter_captures(struct daemon *d)
{
	const char *filter = capture_filter(&d->cfg);
	char err[512];
	int i;

	for (i = 0; i < d->ncap; i++)
		if (d->cap[i] && capture_set_filter(d->cap[i], filter, err, sizeof(err)) < 0)
			log_warnx("reload: capture filter not changed: %s", err);
}

static void log_reloaded(const struct daemon *d, size_t untracked)
{
	struct log_line l;

	log_info("configuration reloaded: %zu rules, %zu connections untracked", d->cfg.nrules,
	         untracked);
	log_line_begin(&l, NULL);
	log_line_str(&l, "level", "info");
	log_line_str(&l, "msg", "configuration reloaded");
	log_line_int(&l, "rules", (long long)d->cfg.nrules);
	log_line_int(&l, "untracked", (long long)untracked);
	log_line_emit(&l);
}

/* SIGHUP: re-reads the configuration file. A bad one: every error is logged and the old
 * configuration stays. A good one replaces it; the engine re-applies the rules. */
/* Warns of each gateway rule whose flows the router's conntrack would forget before their
 * first probe (its idle is not shorter than the established timeout of this namespace). */
static void warn_conntrack_timeout(const struct config *cfg)
{
	const struct rule *r;
	double t;
	size_t i = 0;
	int ok = ctwatch_established_timeout(&t) == 0; /* else nothing forgets the flows */

	while (ok && (r = gateway_outlived(cfg->rules, cfg->nrules, &i, t)))
		log_warnx("rule [%s]: idle %.0f s is not shorter than conntrack's established "
		          "timeout (%s = %.0f s): its flows are forgotten by this router before "
		          "their first probe",
		          r->name, r->params.idle, "nf_conntrack_tcp_timeout_established", t);
}

/* The table is gone under us when nftables says its sets do not exist (ENOENT): a
 * firewall reload's `flush ruleset` takes every table with it. Installs it again, at most
 * once a second; true when it did. */
static bool hush_reinstalled(struct daemon *d)
{
	double now = engine_clock();
	char err[512];

	if (errno != ENOENT || now - d->hush_again_at < 1.0)
		return false;
	d->hush_again_at = now;
	if (hush_start(d->hush, err, sizeof(err)) < 0) {
		log_warnx("nftables: table inet kaprobed is gone and cannot be installed again: %s",
		          err);
		return false;
	}
	log_warnx("nftables: table inet kaprobed was gone (a ruleset flush?): installed again");
	return true;
}

/* The engine's expect hook: the answers of a batch of gateway packets, for the table
 * (installed again first when it was removed under us). */
static void hush_expect(void *arg, const struct hush_expect *x, size_t n)
{
	struct daemon *d = arg;

	if (hush_add(d->hush, x, n) == 0)
		return;
	if (hush_reinstalled(d) && hush_add(d->hush, x, n) == 0)
		return;
	if (d->hush_failed++ == 0)
		log_warn("nftables: answers to gateway probes are forwarded (elements refused)");
}

/* Warns once that kaprobed's table could not be installed. */
static void hush_unavailable(struct daemon *d, const char *why)
{
	if (!d->hush_told)
		log_warnx("%s: answers to gateway probes and learning SYNs are forwarded to the "
		          "other end, and flows through NAT that predate kaprobed are followed "
		          "from their next segment",
		          why);
	d->hush_told = true;
}

/* kaprobed's nftables table is installed while the config has a gateway rule, deleted
 * otherwise (start, reload). While it is: learning SYNs through NAT go marked (untracked
 * by the router), and with gateway_drop_answers the engine's expect hook adds the answers
 * it is to drop. */
static void hush_configure(struct daemon *d)
{
	bool want = false;
	char err[512];
	size_t i;

	for (i = 0; i < d->cfg.nrules; i++)
		want |= d->cfg.rules[i].mode == RULE_MODE_GATEWAY;
	if (!want)
		hush_stop(d->hush);
	else if (!hush_active(d->hush)) {
		if ((!d->hush && !(d->hush = hush_open(err, sizeof(err)))) ||
		    hush_start(d->hush, err, sizeof(err)) < 0)
			hush_unavailable(d, err);
		else
			log_info(
			    "nftables: table inet kaprobed installed (gateway_drop_answers %s)",
			    d->cfg.gateway_drop_answers ? "yes" : "no");
	}
	want = hush_active(d->hush);
	engine_set_learn_mark(d->engine, want ? HUSH_NOTRACK_MARK : 0);
	engine_set_expect(d->engine, want && d->cfg.gateway_drop_answers ? hush_expect : NULL, d);
}

/* Re-reads the configuration file; returns 0 when the new one is in force, -1 when the
 * old one is kept (every error logged). */
static int reload_config(struct daemon *d)
{
	static struct config_errors errs;
	struct config fresh, old;
	size_t i, untracked;

	if (parse_config(d->conf_path, &fresh, &errs) < 0) {
		for (i = 0; i < errs.n; i++)
			log_errorx("%s", errs.msg[i]);
		if (errs.dropped)
			log_errorx("%s: %zu more errors", d->conf_path, errs.dropped);
		log_errorx("reload failed: the old configuration is kept");
		return -1;
	}
	keep_restart_keys(&fresh, &d->cfg);
	old = d->cfg;
	d->cfg = fresh;
	untracked = engine_reload(d->engine, &d->cfg, &old);
	config_free(&old); /* nothing points into it any more */
	refilter_captures(d);
	engine_busy_refresh(d->engine);
	if (!d->debug)
		log_set_level(d->cfg.log_level);
	if (log_configure(&d->cfg) < 0)
		log_warn("status log %s: keeping the old one", d->cfg.log_file);
	report_reload(d->report);
	action_check_config(&d->cfg, d->conf_path, true);
	warn_conntrack_timeout(&d->cfg);
	hush_configure(d);
	log_reloaded(d, untracked);
	discover_set_config(d->discover, &d->cfg);
	discover_run(d->discover);                        /* connections the new rules match */
	ctwatch_configure(d->ctwatch, &d->cfg, "reload"); /* forwarded flows they match */
	return 0;
}

/* SIGHUP: reload the configuration, and reopen the status log either way. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	(void)loop;
	(void)revents;
	notify_reloading();
	if (reload_config(d) < 0)
		log_reopen();
	notify_ready();
}

/* SIGUSR1: reopen the status log only (logrotate's postrotate). */
static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_reopen();
}

static void on_usr2(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	(void)loop;
	(void)revents;
	report_state_now(d->report);
}

/* The engine's capture sync: every frame captured so far is handed over, then the drop
 * count (an engine_sync_fn). */
static unsigned long long capture_sync(void *arg)
{
	struct daemon *d = arg;

	d->paced_frames += drain_captures(d);
	return pcap_drops(d);
}

/* Kernel drop counters of every capture, summed (for the summary and the metrics). */
static unsigned long long pcap_drops(void *arg)
{
	struct daemon *d = arg;
	unsigned long long sum = 0;
	unsigned recv, drop;
	int i;

	for (i = 0; i < d->ncap; i++) {
		sum += d->cap_drops_before[i];
		if (!d->cap[i])
			continue;
		capture_stats(d->cap[i], &recv, &drop);
		sum += drop;
	}
	return sum;
}

static void start_signals(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&d->sig_term, on_stop, SIGTERM);
	ev_signal_init(&d->sig_int, on_stop, SIGINT);
	ev_signal_init(&d->sig_hup, on_hup, SIGHUP);
	d->sig_hup.data = d;
	ev_signal_init(&d->sig_usr1, on_usr1, SIGUSR1);
	ev_signal_start(d->loop, &d->sig_term);
	ev_signal_start(d->loop, &d->sig_int);
	ev_signal_start(d->loop, &d->sig_hup);
	ev_signal_start(d->loop, &d->sig_usr1);
	ev_signal_init(&d->sig_usr2, on_usr2, SIGUSR2);
	d->sig_usr2.data = d;
	ev_signal_start(d->loop, &d->sig_usr2);
}

static void log_totals(const struct daemon *d)
{
	const struct engine_stats *s = engine_stats(d->engine);
	unsigned recv = 0, drop = 0, r, dr;
	int i;

	for (i = 0; i < d->ncap; i++) {
		drop += (unsigned)d->cap_drops_before[i];
		if (!d->cap[i])
			continue;
		capture_stats(d->cap[i], &r, &dr);
		recv += r;
		drop += dr;
	}
	log_info("totals: packets=%llu decode_errors=%llu tracked=%llu probes_sent=%llu "
	         "send_errors=%llu replies=%llu alive=%llu dead=%llu reset=%llu "
	         "unreachable=%llu closed=%llu ignored_own=%llu ignored_bad_ack=%llu "
	         "ignored_bad_rst=%llu ignored_icmp=%llu ignored_syn=%llu ignored_no_ack=%llu "
	         "ignored_bad_seq=%llu ignored_unverified=%llu "
	         "pcap_received=%u pcap_drops=%u uncertain=%llu learn_retries=%llu "
	         "probe_late_max_ms=%.1f probe_rate=%.0f unconfirmed_dropped=%llu "
	         "loop_stall_max_ms=%.3f loop_stall_max_cpu_ms=%.3f stall_dead=%llu "
	         "stall_zero_window=%llu busy_left_out=%llu busy_queries=%llu forwarded=%llu "
	         "gateway_oneway=%llu gateway_expired=%llu",
	         s->packets, s->decode_errors, s->tracked, s->probes_sent, s->send_errors,
	         s->replies, s->alive, s->dead, s->reset, s->unreachable, s->closed,
	         s->ignored[FSM_IGN_OWN_PROBE], s->ignored[FSM_IGN_BAD_ACK],
	         s->ignored[FSM_IGN_BAD_RST], s->ignored[FSM_IGN_ICMP_MATCH],
	         s->ignored[FSM_IGN_SYN], s->ignored[FSM_IGN_NO_ACK], s->ignored[FSM_IGN_BAD_SEQ],
	         s->ignored[FSM_IGN_UNVERIFIED], recv, drop, s->uncertain, s->learn_retries,
	         s->probe_late_max * 1000.0, s->probe_rate, s->unconfirmed_dropped,
	         loopstall_max() * 1000.0, loopstall_max_cpu() * 1000.0, s->stall_retransmit,
	         s->stall_zero_window, s->busy_left_out, s->busy_queries, s->forwarded,
	         s->gateway_oneway, s->gateway_expired);
}

/* systemd's STATUS= line (a notify_status_fn). */
static void status_text(void *arg, char *buf, size_t len)
{
	const struct daemon *d = arg;
	const struct engine_stats *s = engine_stats(d->engine);

	notify_format_counts(buf, len, engine_count(d->engine), s->probes_sent, s->dead);
}

/* Start-up, as root when started by hand: everything that needs privilege is opened
 * here (status log, rtnetlink, raw sender, sock_diag sockets, captures). */
static void open_privileged(struct daemon *d)
{
	char err[512];

	if (log_configure(&d->cfg) < 0)
		fatal("status log %s", d->cfg.log_file);
	d->loop = ev_default_loop(EVFLAG_AUTO);
	loopstall_attach(d->loop); /* loop_stall_max_ms, kaprobe_loop_stall_max_seconds */
	watch_addresses(d);        /* before reading them: no change falls in between */
	if (load_local_addresses(&d->local) < 0)
		fatal("getifaddrs");
	d->sender = sender_open(err, sizeof(err));
	if (!d->sender)
		fatalx("%s", err);
	d->action = action_open(err, sizeof(err));
	if (!d->action)
		fatalx("%s", err);
	d->engine =
	    engine_new(d->loop, &d->cfg, &d->local, d->sender, (size_t)d->cfg.max_connections);
	if (!d->engine)
		fatalx("out of memory");
	action_start(d->action, d->loop, d->sender);
	engine_set_verdict_hook(d->engine, action_on_verdict, d->action);
	d->discover = discover_new(d->loop, d->engine, &d->cfg);
	if (!d->discover)
		fatal("NETLINK_SOCK_DIAG");
	d->qfd = diag_open();
	if (d->qfd < 0)
		fatal("NETLINK_SOCK_DIAG");
	engine_set_busy(d->engine, busy_query, busy_exclude, d);
	d->ctfd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
	if (d->ctfd >= 0)
		engine_set_conntrack(d->engine, ct_query, d); /* else no NAT is followed */
	else
		log_warn("NETLINK_NETFILTER: gateway rules follow no connection through NAT");
	hush_configure(d);
	d->ctwatch = ctwatch_open(d->engine);
	ev_timer_init(&d->reopen_t, on_reopen, REOPEN_EVERY, REOPEN_EVERY);
	d->reopen_t.data = d;
	ev_timer_init(&d->pace_t, on_pace, CAPTURE_PACE, 0.0);
	d->pace_t.data = d;
	ev_set_priority(&d->pace_t, EV_MAXPRI);
	ev_check_init(&d->pace_check, on_pace_check);
	d->pace_check.data = d;
	ev_set_priority(&d->pace_check, EV_MAXPRI);
	open_captures(d);
}

/* After the privilege drop: reports, signals, the first dump, then systemd is told. */
static void start_unprivileged(struct daemon *d)
{
	action_check_config(&d->cfg, d->conf_path, true); /* as the user that will run them */
	warn_conntrack_timeout(&d->cfg);
	d->report = report_new(d->loop, &d->cfg, d->engine, pcap_drops, d);
	if (!d->report)
		fatalx("out of memory");
	start_signals(d); /* before the first dump, which may take a while */
	engine_set_sync(d->engine, capture_sync, d);
	discover_run(d->discover); /* after the captures: nothing falls between the two */
	ctwatch_start(d->ctwatch, d->loop);
	ctwatch_configure(d->ctwatch, &d->cfg, "start"); /* flows that existed before */
	log_info("started");
	log_info("kaprobed %s: %zu rules, interface %s, %zu local addresses", KAPROBE_VERSION,
	         d->cfg.nrules, d->cfg.interface, d->local.n);
	notify_start(d->loop, status_text, d, NOTIFY_EVERY);
	notify_ready();
}

static void shut_down(struct daemon *d)
{
	int i;

	notify_stop(d->loop);
	log_totals(d);
	report_free(d->report);
	discover_free(d->discover);
	ctwatch_close(d->ctwatch);
	ev_io_stop(d->loop, &d->addr_io);
	close(d->addr_io.fd);
	engine_free(d->engine);
	if (d->hush) {
		unsigned long long elems, batches;

		hush_counts(d->hush, &elems, &batches);
		log_info("nftables: %llu expected answers in %llu batches (%llu refused)", elems,
		         batches, d->hush_failed);
	}
	hush_close(d->hush); /* deletes the table */
	action_close(d->action);
	ev_timer_stop(d->loop, &d->reopen_t);
	ev_timer_stop(d->loop, &d->pace_t);
	ev_check_stop(d->loop, &d->pace_check);
	for (i = 0; i < d->ncap; i++)
		capture_close(d->cap[i]);
	sender_close(d->sender);
}

static void run(struct daemon *d)
{
	open_privileged(d);
	priv_drop(&d->cfg); /* everything privileged is open: never run the loop as root */
	start_unprivileged(d);
	ev_run(d->loop, 0);
	shut_down(d);
}

/* kaprobed -r: the capture through the engine, nothing opened but the file. */
static int replay_main(const char *capture, const char *local, struct config *cfg, int debug)
{
	static struct addr_set set;
	int rc;

	if (local && replay_parse_local(local, &set) < 0) {
		fprintf(stderr, "kaprobed: -l %s: not a list of IPv4 or IPv6 addresses\n", local);
		config_free(cfg);
		return 1;
	}
	log_init(debug ? CONFIG_LOG_DEBUG : cfg->log_level);
	rc = replay_run(capture, cfg, local ? &set : NULL);
	log_close();
	config_free(cfg);
	return rc;
}

int main(int argc, char **argv)
{
	static struct daemon d;
	const char *path = CONFIG_DEFAULT_PATH;
	const char *capture = NULL, *local = NULL;
	int opt, check = 0, debug = 0, status = 0;

	while ((opt = getopt(argc, argv, "c:nsdVhr:l:")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'r':
			capture = optarg;
			break;
		case 'l':
			local = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 's':
			status = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'V':
			printf("kaprobed %s\n", KAPROBE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc || (local && !capture)) {
		usage(stderr);
		return 1;
	}
	if (load_config(path, &d.cfg) < 0)
		return 1;
	if (capture && !check && !status)
		return replay_main(capture, local, &d.cfg, debug);
	if (check) {
		action_check_config(&d.cfg, path, false);
		printf("configuration OK\n");
		config_free(&d.cfg);
		return 0;
	}
	if (status) {
		opt = statusview_print(d.cfg.state_file, stdout, stderr);
		config_free(&d.cfg);
		return opt;
	}
	d.conf_path = path;
	d.debug = debug;
	log_init(debug ? CONFIG_LOG_DEBUG : d.cfg.log_level);
	run(&d);
	log_close();
	config_free(&d.cfg);
	return d.exit_status;
}
