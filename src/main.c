/* main.c: kaprobed. Flags, start-up order, the one ev_run loop, signals.
 *
 * Start-up: read and check the config (exit 1 on any error), open the status log,
 * learn this host's addresses, open the raw sender and the captures, then run.
 * SIGTERM/SIGINT end the loop; SIGHUP reopens the status log (log rotation). */
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "addr.h"
#include "capture.h"
#include "config.h"
#include "discover.h"
#include "engine.h"
#include "ifaddr.h"
#include "log.h"
#include "rule.h"
#include "sender.h"

#define MAX_CAPTURES    16
#define MAX_CONFIG_SIZE (1 << 20)
#define FILTER_MAX      (64 * 1024)
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
	struct capture *cap[MAX_CAPTURES];
	ev_io cap_io[MAX_CAPTURES];
	int ncap;
	struct discover *discover;
	ev_io addr_io;
	ev_signal sig_term, sig_int, sig_hup;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kaprobed [-c FILE] [-n] [-d] [-V] [-h]\n"
	           "  -c FILE  configuration (default " CONFIG_DEFAULT_PATH ")\n"
	           "  -n       check the configuration and exit\n"
	           "  -d       debug log level\n"
	           "  -V       print the version and exit\n"
	           "  -h       this help\n");
}

/* Reads a whole file (at most MAX_CONFIG_SIZE) into a NUL-terminated buffer. */
static char *read_file(const char *path)
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
}

/* Loads and checks the configuration; prints every error. Returns 0 or -1. */
static int load_config(const char *path, struct config *cfg)
{
	struct config_errors errs;
	struct fsm_params defaults;
	char *text = read_file(path);
	size_t i;
	int rc;

	if (!text) {
		fprintf(stderr, "%s:0: cannot read: %s\n", path, strerror(errno));
		return -1;
	}
	host_defaults(&defaults);
	memset(&errs, 0, sizeof(errs));
	rc = config_parse(path, text, &defaults, cfg, &errs);
	free(text);
	for (i = 0; rc < 0 && i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	if (rc < 0 && errs.dropped)
		fprintf(stderr, "%s: %zu more errors\n", path, errs.dropped);
	return rc;
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
		if (addr_set_add(set, i->ifa_addr->sa_family, ip) < 0)
			log_warnx("more than %zu local addresses: %s ignored", set->n, i->ifa_name);
	}
	freeifaddrs(ifa);
	return 0;
}

static void on_address(void *arg, bool add, int family, const uint8_t *ip)
{
	struct daemon *d = arg;
	char buf[ADDR_ENDPOINT_STRLEN];

	if (add && addr_set_add(&d->local, family, ip) < 0)
		log_warnx("more than %zu local addresses: %s ignored", d->local.n,
		          addr_format_ip(family, ip, buf, sizeof(buf)));
	else if (!add)
		addr_set_remove(&d->local, family, ip);
	log_debug("local address %s %s", add ? "added" : "removed",
	          addr_format_ip(family, ip, buf, sizeof(buf)));
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

static void on_capture(struct ev_loop *loop, ev_io *w, int revents)
{
	struct daemon *d = w->data;
	struct capture *c = d->cap[w - d->cap_io];

	(void)loop;
	(void)revents;
	if (capture_drain(c, engine_on_frame, d->engine) < 0)
		log_warnx("capture on %s: read error", capture_name(c));
}

static void open_one_capture(struct daemon *d, const char *ifname, const char *filter)
{
	char err[512];
	struct capture *c;

	if (d->ncap >= MAX_CAPTURES)
		fatalx("too many interfaces (at most %d)", MAX_CAPTURES);
	c = capture_open(ifname, filter, err, sizeof(err));
	if (!c)
		fatalx("capture: %s", err);
	d->cap[d->ncap] = c;
	ev_io_init(&d->cap_io[d->ncap], on_capture, capture_fd(c), EV_READ);
	d->cap_io[d->ncap].data = d;
	/* Before timers: a reply already captured must be seen before a dead verdict. */
	ev_set_priority(&d->cap_io[d->ncap], EV_MAXPRI);
	ev_io_start(d->loop, &d->cap_io[d->ncap]);
	d->ncap++;
}

static void open_captures(struct daemon *d)
{
	static char filter[FILTER_MAX];
	char list[sizeof(d->cfg.interface)], *save = NULL, *name;

	if (d->cfg.nrules > FILTER_MAX_RULES ||
	    rule_bpf_filter(d->cfg.rules, d->cfg.nrules, filter, sizeof(filter)) < 0) {
		log_info("%zu rules: capturing all TCP, rules applied in user space",
		         d->cfg.nrules);
		snprintf(filter, sizeof(filter), "%s", FILTER_COARSE);
	}
	log_debug("capture filter: %s", filter);
	snprintf(list, sizeof(list), "%s", d->cfg.interface);
	for (name = strtok_r(list, ", ", &save); name; name = strtok_r(NULL, ", ", &save))
		open_one_capture(d, name, filter);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	log_info("signal %d: stopping", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;

	(void)loop;
	(void)revents;
	if (log_open_status(d->cfg.log_file) < 0)
		log_warn("reopening %s", d->cfg.log_file);
	else
		log_info("status log reopened");
}

static void start_signals(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&d->sig_term, on_stop, SIGTERM);
	ev_signal_init(&d->sig_int, on_stop, SIGINT);
	ev_signal_init(&d->sig_hup, on_hup, SIGHUP);
	d->sig_hup.data = d;
	ev_signal_start(d->loop, &d->sig_term);
	ev_signal_start(d->loop, &d->sig_int);
	ev_signal_start(d->loop, &d->sig_hup);
}

static void log_totals(const struct daemon *d)
{
	const struct engine_stats *s = engine_stats(d->engine);
	unsigned recv = 0, drop = 0, r, dr;
	int i;

	for (i = 0; i < d->ncap; i++) {
		capture_stats(d->cap[i], &r, &dr);
		recv += r;
		drop += dr;
	}
	log_info("totals: packets=%llu decode_errors=%llu tracked=%llu probes_sent=%llu "
	         "send_errors=%llu replies=%llu alive=%llu dead=%llu reset=%llu "
	         "unreachable=%llu closed=%llu ignored_own=%llu ignored_bad_ack=%llu "
	         "ignored_bad_rst=%llu ignored_icmp=%llu ignored_syn=%llu pcap_received=%u "
	         "pcap_drops=%u",
	         s->packets, s->decode_errors, s->tracked, s->probes_sent, s->send_errors,
	         s->replies, s->alive, s->dead, s->reset, s->unreachable, s->closed,
	         s->ignored[FSM_IGN_OWN_PROBE], s->ignored[FSM_IGN_BAD_ACK],
	         s->ignored[FSM_IGN_BAD_RST], s->ignored[FSM_IGN_ICMP_MATCH],
	         s->ignored[FSM_IGN_SYN], recv, drop);
}

static void run(struct daemon *d)
{
	char err[512];
	int i;

	if (log_open_status(d->cfg.log_file) < 0)
		fatal("status log %s", d->cfg.log_file);
	if (load_local_addresses(&d->local) < 0)
		fatal("getifaddrs");
	d->sender = sender_open(err, sizeof(err));
	if (!d->sender)
		fatalx("%s", err);
	d->loop = ev_default_loop(EVFLAG_AUTO);
	d->engine =
	    engine_new(d->loop, &d->cfg, &d->local, d->sender, (size_t)d->cfg.max_connections);
	if (!d->engine)
		fatalx("out of memory");
	watch_addresses(d);
	d->discover = discover_new(d->loop, d->engine, &d->cfg);
	if (!d->discover)
		fatal("NETLINK_SOCK_DIAG");
	open_captures(d);
	discover_run(d->discover); /* after the captures: nothing falls between the two */
	start_signals(d);
	log_info("started");
	log_info("kaprobed %s: %zu rules, interface %s, %zu local addresses", KAPROBE_VERSION,
	         d->cfg.nrules, d->cfg.interface, d->local.n);
	ev_run(d->loop, 0);
	log_totals(d);
	discover_free(d->discover);
	ev_io_stop(d->loop, &d->addr_io);
	close(d->addr_io.fd);
	engine_free(d->engine);
	for (i = 0; i < d->ncap; i++)
		capture_close(d->cap[i]);
	sender_close(d->sender);
}

int main(int argc, char **argv)
{
	static struct daemon d;
	const char *path = CONFIG_DEFAULT_PATH;
	int opt, check = 0, debug = 0;

	while ((opt = getopt(argc, argv, "c:ndVh")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			check = 1;
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
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	if (load_config(path, &d.cfg) < 0)
		return 1;
	if (check) {
		printf("configuration OK\n");
		config_free(&d.cfg);
		return 0;
	}
	log_init(debug ? CONFIG_LOG_DEBUG : d.cfg.log_level);
	run(&d);
	log_close();
	config_free(&d.cfg);
	return 0;
}
