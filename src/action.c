/* action.c: verdict actions (edge). See action.h.
 *
 * close: one SOCK_DESTROY request on a NETLINK_SOCK_DIAG socket opened at start-up; the
 * kernel handles it inside sendto(), so its ack is read at once without blocking.
 * rst: two RSTs through the raw sender, with the numbers the connection's state machine
 * learnt: to our end SEQ = RCV.NXT (what our stack expects from the peer), to the peer
 * SEQ = SND.NXT (for a gateway rule's record: to the live end in the dead end's name, and
 * to the dead end). flush: one ctnetlink IPCTNL_MSG_CT_DELETE of the forwarded flow's
 * entry on a NETLINK_NETFILTER socket opened at start-up (handled inside sendto() too).
 * exec: fork + execve in a new session, reaped by an ev_child, killed by
 * an ev_timer (SIGTERM at action_timeout, SIGKILL ACTION_KILL_GRACE later). */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "action.h"
#include "actmsg.h"
#include "addr.h"
#include "gateway.h"
#include "log.h"

struct child {
	bool used, timed_out;
	pid_t pid;
	ev_child cw;
	ev_timer tw;
	struct action *a;
	char verdict[8];
	char rule[RULE_NAME_MAX];
	char local[ADDR_ENDPOINT_STRLEN], remote[ADDR_ENDPOINT_STRLEN];
	char side[8];
	char path[CONFIG_PATH_MAX];
};

struct action {
	struct ev_loop *loop;
	struct sender *sender;
	int nl;       /* NETLINK_SOCK_DIAG */
	int nf;       /* NETLINK_NETFILTER (flush), or -1 ... */
	int nf_err;   /* ... with the errno of its socket() */
	uint32_t seq; /* of the last request */
	int running;
	struct child kids[ACTION_MAX_CHILDREN];
};

/* The connection's fields as the status log writes them. A gateway rule's record (side
 * "client" or "server", the end it judges) has the client in local, the server in remote. */
struct who {
	const char *verdict;
	const char *rule;
	char local[ADDR_ENDPOINT_STRLEN], remote[ADDR_ENDPOINT_STRLEN];
	char side[8]; /* "" for a local rule */
};

struct action *action_open(char *errbuf, size_t errlen)
{
	struct action *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	a->nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
	if (a->nl < 0) {
		snprintf(errbuf, errlen, "netlink sock_diag socket: %s", strerror(errno));
		free(a);
		return NULL;
	}
	a->nf = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
	a->nf_err = a->nf < 0 ? errno : 0; /* flush fails, logged; the rest works */
	return a;
}

void action_start(struct action *a, struct ev_loop *loop, struct sender *sender)
{
	a->loop = loop;
	a->sender = sender;
}

static void line_begin(struct log_line *l, const struct who *w, const char *action)
{
	log_line_begin(l, "action");
	log_line_str(l, "rule", w->rule);
	log_line_str(l, w->side[0] ? "client" : "local", w->local);
	log_line_str(l, w->side[0] ? "server" : "remote", w->remote);
	if (w->side[0])
		log_line_str(l, "side", w->side);
	log_line_str(l, "action", action);
	log_line_str(l, "verdict", w->verdict);
}

/* action=... [path=...] result=ok, or result=error error="..." */
static void log_result(const struct who *w, const char *action, const char *path, const char *error)
{
	struct log_line l;

	line_begin(&l, w, action);
	if (path)
		log_line_str(&l, "path", path);
	log_line_str(&l, "result", error ? "error" : "ok");
	if (error)
		log_line_str(&l, "error", error);
	log_line_emit(&l);
}

/* ---- close: SOCK_DESTROY --------------------------------------------------- */

/* Reads one datagram into buf; *sender gets its source's netlink port id. */
static ssize_t nl_recv(int fd, uint8_t *buf, size_t size, uint32_t *sender)
{
	struct sockaddr_nl from;
	socklen_t flen;
	ssize_t n;

	do {
		memset(&from, 0, sizeof(from));
		flen = sizeof(from);
		n = recvfrom(fd, buf, size, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
	} while (n < 0 && errno == EINTR);
	*sender = n >= 0 && flen >= sizeof(from) && from.nl_family == AF_NETLINK ? from.nl_pid
	                                                                         : UINT32_MAX;
	return n;
}

/* Sends one request and reads the kernel's answer into buf (the kernel handles sock_diag
 * requests inside sendto(), so the answer is already queued); datagrams from other ports
 * are skipped. Returns its length (*sender: its port id) or -1 with errno set. */
static ssize_t nl_ask_on(int fd, const uint8_t *req, size_t len, uint8_t *buf, size_t size,
                         uint32_t *sender)
{
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	ssize_t n;

	while (nl_recv(fd, buf, size, sender) > 0)
		; /* a late answer to an earlier request, if any */
	if (sendto(fd, req, len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -1;
	do
		n = nl_recv(fd, buf, size, sender);
	while (n > 0 && *sender != 0);
	if (n == 0) {
		errno = EPROTO;
		return -1;
	}
	return n;
}

/* nl_ask_on the sock_diag socket. */
static ssize_t nl_ask(struct action *a, const uint8_t *req, size_t len, uint8_t *buf, size_t size,
                      uint32_t *sender)
{
	return nl_ask_on(a->nl, req, len, buf, size, sender);
}

/* Looks the connection up (0 and its cookie, or an errno value): never the listener. */
static int close_lookup(struct action *a, const struct addr_tuple *t, uint32_t cookie[2])
{
	uint8_t req[ACTMSG_DIAG_LEN];
	_Alignas(uint32_t) uint8_t buf[8192]; /* netlink's alignment */
	size_t len = actmsg_diag_get(t, ++a->seq, req, sizeof(req));
	uint32_t sender;
	ssize_t n = nl_ask(a, req, len, buf, sizeof(buf), &sender);
	int rc;

	if (n < 0)
		return errno;
	rc = actmsg_diag_found(buf, (size_t)n, a->seq, sender, t, cookie);
	return rc < 0 ? EPROTO : rc;
}

static void do_close(struct action *a, const struct engine_verdict *v, const struct who *w)
{
	uint8_t req[ACTMSG_DIAG_LEN];
	_Alignas(uint32_t) uint8_t buf[8192]; /* netlink's alignment */
	uint32_t cookie[2], sender;
	size_t len;
	ssize_t n;
	int rc = close_lookup(a, v->key, cookie);

	if (rc == 0) {
		len = actmsg_diag_destroy(v->key, ++a->seq, cookie, req, sizeof(req));
		n = nl_ask(a, req, len, buf, sizeof(buf), &sender);
		rc = n < 0 ? errno : actmsg_diag_ack(buf, (size_t)n, a->seq, sender);
		if (rc < 0)
			rc = EPROTO;
	}
	log_result(w, "close", NULL, rc ? strerror(rc) : NULL);
}

/* ---- rst ---------------------------------------------------------------------- */

static void do_rst(struct action *a, const struct engine_verdict *v, const struct who *w)
{
	const struct fsm_conn *f = v->fsm;
	int need = FSM_K_SND_NXT | FSM_K_RCV_NXT, err;
	char msg[128];

	if (!a->sender || (f->known & need) != need) {
		log_result(w, "rst", NULL,
		           a->sender ? "sequence numbers not known" : "no raw sender");
		return;
	}
	err = sender_send_rst(a->sender, v->key, 1, f->rcv_nxt, f->snd_nxt);
	if (err) {
		snprintf(msg, sizeof(msg), "to local end: %s", strerror(err));
		log_result(w, "rst", NULL, msg);
		return;
	}
	err = sender_send_rst(a->sender, v->send ? v->send : v->key, 0, f->snd_nxt, f->rcv_nxt);
	if (err) {
		snprintf(msg, sizeof(msg), "to peer: %s", strerror(err));
		log_result(w, "rst", NULL, msg);
		return;
	}
	log_result(w, "rst", NULL, NULL);
}

/* ---- flush: the forwarded flow's conntrack entry (gateway rules) ---------------- */

static void do_flush(struct action *a, const struct engine_verdict *v, const struct who *w)
{
	_Alignas(uint32_t) uint8_t req[ACTMSG_CT_LEN], buf[4096]; /* netlink's alignment */
	uint32_t sender;
	size_t len;
	ssize_t n;
	int rc = a->nf_err;

	if (a->nf >= 0) {
		len = actmsg_ct_delete(v->send ? v->send : v->key, ++a->seq, req, sizeof(req));
		n = len ? nl_ask_on(a->nf, req, len, buf, sizeof(buf), &sender) : -1;
		rc = n < 0 ? (len ? errno : EINVAL)
		           : actmsg_diag_ack(buf, (size_t)n, a->seq, sender);
		if (rc < 0)
			rc = EPROTO;
	}
	log_result(w, "flush", NULL, rc ? strerror(rc) : NULL);
}

/* ---- exec ---------------------------------------------------------------------- */

int action_check_exec(const char *path, char *why, size_t len)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(why, len, "%s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "not a regular file");
		return -1;
	}
	if (access(path, X_OK) < 0) {
		snprintf(why, len, "not executable: %s", strerror(errno));
		return -1;
	}
	return 0;
}

size_t action_check_config(const struct config *cfg, const char *file, bool to_log)
{
	char why[256];
	size_t i, bad = 0;

	for (i = 0; i < cfg->nexec; i++) {
		if (action_check_exec(cfg->exec_paths[i], why, sizeof(why)) == 0)
			continue;
		bad++;
		if (to_log)
			log_warnx("%s: exec:%s cannot run: %s", file, cfg->exec_paths[i], why);
		else
			fprintf(stderr, "%s: warning: exec:%s cannot run: %s\n", file,
			        cfg->exec_paths[i], why);
	}
	return bad;
}

/* No capability left in any set: the program runs with the daemon's user and nothing more. */
static int drop_all_caps(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	return (int)syscall(SYS_capset, &h, d);
}

/* In the child: a clean process, then execve. Never returns. */
static void child_exec(const char *path, char *const envp[])
{
	char *const argv[] = {(char *)path, NULL};
	sigset_t none;
	int sig, fd;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	if (setsid() < 0) /* its own process group: the timeout kills the whole group */
		_exit(126);
	fd = open("/dev/null", O_RDWR);
	if (fd < 0 || dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
		_exit(126);
	/* stderr stays the daemon's: a program's complaints reach the journal */
	if (close_range(3, ~0u, 0) < 0 || drop_all_caps() < 0)
		_exit(126);
	execve(path, argv, envp);
	_exit(127);
}

static void child_free(struct child *k)
{
	ev_child_stop(k->a->loop, &k->cw);
	ev_timer_stop(k->a->loop, &k->tw);
	k->used = false;
	k->a->running--;
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
	struct child *k = w->data;
	struct log_line l;
	struct who who;
	int st = w->rstatus;

	(void)loop;
	(void)revents;
	who.verdict = k->verdict;
	who.rule = k->rule;
	snprintf(who.local, sizeof(who.local), "%s", k->local);
	snprintf(who.remote, sizeof(who.remote), "%s", k->remote);
	snprintf(who.side, sizeof(who.side), "%s", k->side);
	line_begin(&l, &who, "exec");
	log_line_str(&l, "path", k->path);
	log_line_int(&l, "pid", k->pid);
	if (WIFEXITED(st))
		log_line_int(&l, "status", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		log_line_str(&l, "signal",
		             sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "unknown");
	if (k->timed_out)
		log_line_str(&l, "result", "timeout");
	log_line_emit(&l);
	child_free(k);
}

static void on_child_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct child *k = w->data;

	(void)revents;
	kill(-k->pid, k->timed_out ? SIGKILL : SIGTERM);
	if (!k->timed_out) {
		k->timed_out = true;
		ev_timer_set(&k->tw, ACTION_KILL_GRACE, 0.0);
		ev_timer_start(loop, &k->tw);
	}
}

static struct child *child_slot(struct action *a)
{
	int i;

	for (i = 0; i < ACTION_MAX_CHILDREN; i++)
		if (!a->kids[i].used)
			return &a->kids[i];
	return NULL;
}

static void env_fields(const struct engine_verdict *v, const struct who *w, struct actmsg_fields *f)
{
	f->event = w->verdict;
	f->rule = w->rule;
	f->local = w->local;
	f->remote = w->remote;
	f->probes = v->ev->probes;
	f->idle = v->idle;
	f->reason = v->ev->reason;
	f->side = w->side[0] ? w->side : NULL;
}

/* Starts the watchers of a forked child in slot k. */
static void child_watch(struct action *a, struct child *k, double timeout)
{
	k->a = a;
	k->used = true;
	k->timed_out = false;
	a->running++;
	ev_child_init(&k->cw, on_child, k->pid, 0);
	k->cw.data = k;
	ev_child_start(a->loop, &k->cw);
	ev_timer_init(&k->tw, on_child_timer, timeout, 0.0);
	k->tw.data = k;
	ev_timer_start(a->loop, &k->tw);
}

static void do_exec(struct action *a, const struct engine_verdict *v, const struct who *w,
                    uint8_t exec)
{
	const char *path = v->cfg->exec_paths[exec - 1];
	struct actmsg_fields f;
	struct actmsg_env env;
	struct child *k = child_slot(a);
	char why[256] = "", msg[128];

	if (!k) {
		snprintf(msg, sizeof(msg), "%d programs still running: not started",
		         ACTION_MAX_CHILDREN);
		log_result(w, "exec", path, msg);
		return;
	}
	env_fields(v, w, &f);
	if (action_check_exec(path, why, sizeof(why)) < 0 || actmsg_env(&env, &f) < 0) {
		log_result(w, "exec", path, why[0] ? why : "environment too long");
		return;
	}
	k->pid = fork();
	if (k->pid < 0) {
		snprintf(msg, sizeof(msg), "fork: %s", strerror(errno));
		log_result(w, "exec", path, msg);
		return;
	}
	if (k->pid == 0)
		child_exec(path, env.envp);
	snprintf(k->verdict, sizeof(k->verdict), "%s", w->verdict);
	snprintf(k->rule, sizeof(k->rule), "%s", w->rule);
	snprintf(k->local, sizeof(k->local), "%s", w->local);
	snprintf(k->remote, sizeof(k->remote), "%s", w->remote);
	snprintf(k->side, sizeof(k->side), "%s", w->side);
	snprintf(k->path, sizeof(k->path), "%s", path);
	child_watch(a, k, v->cfg->action_timeout);
	log_debug("exec %s: pid %d", path, (int)k->pid);
}

/* ---- dispatch ------------------------------------------------------------------ */

/* The ends as the status log names them: local and remote, or (a gateway rule) client,
 * server and the side judged. */
static void who_endpoints(struct who *w, const struct rule *r, const struct addr_tuple *k)
{
	bool to_client = r->mode == RULE_MODE_GATEWAY && rule_gateway_probes_client(r, k);
	char *lo = to_client ? w->remote : w->local, *re = to_client ? w->local : w->remote;

	addr_format_endpoint(k->family, k->local, k->lport, lo, sizeof(w->local));
	addr_format_endpoint(k->family, k->remote, k->rport, re, sizeof(w->remote));
	snprintf(w->side, sizeof(w->side), "%s",
	         r->mode == RULE_MODE_GATEWAY ? gateway_side(r, k) : "");
}

void action_on_verdict(void *arg, const struct engine_verdict *v)
{
	struct action *a = arg;
	bool dead = v->ev->type == FSM_EV_DEAD || v->ev->type == FSM_EV_STALLED;
	const struct rule_actions *acts = v->stall ? &v->rule->on_stall
	                                  : dead   ? &v->rule->on_dead
	                                           : &v->rule->on_reset;
	const struct addr_tuple *k = v->name ? v->name : v->key;
	struct who w;

	if (!(acts->mask & (RULE_ACT_CLOSE | RULE_ACT_RST | RULE_ACT_FLUSH | RULE_ACT_EXEC)))
		return;
	w.verdict = v->ev->type == FSM_EV_STALLED ? "stalled" : dead ? "dead" : "reset";
	w.rule = v->rule->name;
	who_endpoints(&w, v->rule, k);
	if (dead && (acts->mask & RULE_ACT_CLOSE))
		do_close(a, v, &w);
	if (dead && (acts->mask & RULE_ACT_RST))
		do_rst(a, v, &w);
	if (dead && (acts->mask & RULE_ACT_FLUSH))
		do_flush(a, v, &w); /* after the RSTs, which the entry still saw */
	if ((acts->mask & RULE_ACT_EXEC) && acts->exec >= 1 && acts->exec <= v->cfg->nexec)
		do_exec(a, v, &w, acts->exec);
}

void action_close(struct action *a)
{
	int i;

	if (!a)
		return;
	for (i = 0; i < ACTION_MAX_CHILDREN; i++) {
		if (!a->kids[i].used)
			continue;
		kill(-a->kids[i].pid, SIGTERM);
		child_free(&a->kids[i]);
	}
	if (a->nl >= 0)
		close(a->nl);
	if (a->nf >= 0)
		close(a->nf);
	free(a);
}
