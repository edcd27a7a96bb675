/* priv.c: dropping root after start-up, keeping CAP_NET_RAW and CAP_NET_ADMIN only.
 *
 * Started as root: prepare the files the loop writes later (while still root), then
 * PR_SET_KEEPCAPS, bounding set cut to the two capabilities, supplementary groups,
 * setresgid, setresuid, permitted+effective = the two, inheritable and ambient empty,
 * PR_SET_KEEPCAPS 0, no_new_privs; then verify that no id is 0, that neither
 * setresuid(0,0,0) nor setuid(0) works, and that every capability set is exactly
 * what it should be. Each step is checked; a failure is fatal (start-up only).
 * CAP_NET_RAW keeps the open captures and raw sockets usable (and lets a reload
 * open new ones); CAP_NET_ADMIN is for sock_diag SOCK_DESTROY (on_dead = close). */
#include "priv.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define FALLBACK_USER "nobody"
#define NKEPT         2

static const cap_value_t kept[NKEPT] = {CAP_NET_RAW, CAP_NET_ADMIN};

struct target {
	char name[CONFIG_USER_MAX];
	uid_t uid;
	gid_t gid;
};

static bool is_kept(cap_value_t c)
{
	return c == CAP_NET_RAW || c == CAP_NET_ADMIN;
}

/* ---- the user ---------------------------------------------------------------- */

static bool lookup(const char *name, struct target *t)
{
	struct passwd *pw = getpwnam(name);

	if (!pw)
		return false;
	snprintf(t->name, sizeof(t->name), "%s", pw->pw_name);
	t->uid = pw->pw_uid;
	t->gid = pw->pw_gid;
	return true;
}

/* cfg->user; when missing and not set in the file, "nobody" with a warning. */
static void find_user(const struct config *cfg, struct target *t)
{
	if (!lookup(cfg->user, t)) {
		if (cfg->user_set)
			fatalx("user \"%s\" (user = in [global]) does not exist: create it "
			       "(useradd --system %s) or name another user",
			       cfg->user, cfg->user);
		log_warnx("user \"%s\" does not exist: running as \"%s\" (create it with "
		          "useradd --system %s, or set user = in [global])",
		          cfg->user, FALLBACK_USER, cfg->user);
		if (!lookup(FALLBACK_USER, t))
			fatalx("neither user \"%s\" nor \"%s\" exists", cfg->user, FALLBACK_USER);
	}
	if (t->uid == 0 || t->gid == 0)
		fatalx("user \"%s\" has uid %u, gid %u: kaprobed never runs with id 0", t->name,
		       (unsigned)t->uid, (unsigned)t->gid);
}

/* ---- files, prepared as root --------------------------------------------------- */

/* The status log (when a regular file) becomes the user's, so that a reopen works. */
static void chown_status_log(const char *path, const struct target *t)
{
	struct stat st;
	int fd;

	if (path[0] == '\0' || strcmp(path, "-") == 0)
		return;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ELOOP) {
		log_warnx("status log %s is a symbolic link: its owner is left unchanged", path);
		return;
	}
	if (fd < 0)
		fatal("status log %s", path);
	if (fstat(fd, &st) < 0)
		fatal("status log %s: fstat", path);
	if (S_ISREG(st.st_mode) && fchown(fd, t->uid, t->gid) < 0)
		fatal("status log %s: chown to %s", path, t->name);
	close(fd);
}

/* Creates dir (mode 0755, owned by the user) unless it exists. */
static void make_dir(const char *dir, const struct target *t)
{
	int fd;

	if (mkdir(dir, 0755) < 0) {
		if (errno != EEXIST)
			fatal("creating directory %s", dir);
		return;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fchown(fd, t->uid, t->gid) < 0 || fchmod(fd, 0755) < 0)
		fatal("directory %s: chown to %s", dir, t->name);
	close(fd);
	log_info("created directory %s for user %s", dir, t->name);
}

/* Creates the missing parent directories of an absolute path ("" = none). */
static void make_parents(const char *path, const struct target *t)
{
	char dir[CONFIG_PATH_MAX];
	char *s, *last;

	if (path[0] != '/')
		return;
	snprintf(dir, sizeof(dir), "%s", path);
	last = strrchr(dir, '/');
	if (last == dir)
		return;
	*last = '\0';
	for (s = dir + 1; s <= last; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		*s = '\0';
		make_dir(dir, t);
		if (s != last)
			*s = '/';
	}
}

/* After the drop: a state or metrics file the user cannot write is worth a warning. */
static void check_writable(const char *what, const char *path)
{
	char dir[CONFIG_PATH_MAX];
	char *last;

	if (path[0] != '/')
		return;
	snprintf(dir, sizeof(dir), "%s", path);
	last = strrchr(dir, '/');
	*(last == dir ? last + 1 : last) = '\0';
	if (access(dir, W_OK | X_OK) < 0)
		log_warn("%s %s: directory %s not writable after dropping privileges", what, path,
		         dir);
}

/* ---- the drop ------------------------------------------------------------------ */

static void drop_bounding_set(void)
{
	cap_value_t c, max = cap_max_bits();

	for (c = 0; c < max; c++) {
		if (!is_kept(c) && cap_drop_bound(c) < 0)
			fatal("dropping capability %d from the bounding set", (int)c);
	}
}

static void switch_ids(const struct target *t)
{
	if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0)
		fatal("prctl(PR_SET_KEEPCAPS, 1)");
	drop_bounding_set();
	if (initgroups(t->name, t->gid) < 0)
		fatal("initgroups(%s, %u)", t->name, (unsigned)t->gid);
	if (setresgid(t->gid, t->gid, t->gid) < 0)
		fatal("setresgid(%u)", (unsigned)t->gid);
	if (setresuid(t->uid, t->uid, t->uid) < 0)
		fatal("setresuid(%u)", (unsigned)t->uid);
}

/* Permitted and effective = the kept capabilities present in `from` (all when NULL). */
static cap_t wanted_caps(cap_t from)
{
	cap_t c = cap_init();
	cap_flag_value_t v;
	int i;

	if (!c)
		return NULL;
	for (i = 0; i < NKEPT; i++) {
		if (from && (cap_get_flag(from, kept[i], CAP_PERMITTED, &v) < 0 || v != CAP_SET))
			continue;
		if (cap_set_flag(c, CAP_PERMITTED, 1, &kept[i], CAP_SET) < 0 ||
		    cap_set_flag(c, CAP_EFFECTIVE, 1, &kept[i], CAP_SET) < 0) {
			cap_free(c);
			return NULL;
		}
	}
	return c;
}

/* Sets the process's capabilities to want, clears the ambient set, no_new_privs. */
static void apply_caps(cap_t want)
{
	if (!want || cap_set_proc(want) < 0)
		fatal("setting capabilities");
	cap_free(want);
	if (cap_reset_ambient() < 0)
		fatal("clearing the ambient capability set");
	if (prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L) < 0)
		fatal("prctl(PR_SET_KEEPCAPS, 0)");
	/* Like the unit's NoNewPrivileges: exec: actions cannot gain privileges. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
		fatal("prctl(PR_SET_NO_NEW_PRIVS)");
}

/* ---- verification ---------------------------------------------------------------- */

static void verify_ids(void)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		fatal("getresuid");
	if (getuid() == 0 || geteuid() == 0 || ru == 0 || eu == 0 || su == 0 || rg == 0 ||
	    eg == 0 || sg == 0)
		fatalx("an id is still 0 after dropping privileges");
	if (setresuid(0, 0, 0) == 0 || setuid(0) == 0 || setresgid(0, 0, 0) == 0)
		fatalx("could regain root after dropping privileges");
}

static void verify_caps(void)
{
	cap_t want = wanted_caps(NULL), have = cap_get_proc();
	cap_value_t c, max = cap_max_bits();

	if (!want || !have || cap_compare(want, have) != 0)
		fatalx("capabilities are not exactly CAP_NET_RAW and CAP_NET_ADMIN after the drop");
	cap_free(want);
	cap_free(have);
	for (c = 0; c < max; c++) {
		if (cap_get_bound(c) != (is_kept(c) ? 1 : 0))
			fatalx("bounding set: capability %d is %s", (int)c,
			       is_kept(c) ? "missing" : "still there");
		if (cap_get_ambient(c) > 0)
			fatalx("ambient set: capability %d is still there", (int)c);
	}
}

/* ---- entry --------------------------------------------------------------------- */

static void log_result(const char *name)
{
	cap_t have = cap_get_proc();
	char *text = have ? cap_to_text(have, NULL) : NULL;

	log_info("running as user %s (uid %u, gid %u), capabilities %s", name, (unsigned)getuid(),
	         (unsigned)getgid(), text ? text : "?");
	cap_free(text);
	cap_free(have);
}

/* Not root (systemd User=): keep at most the two capabilities, clear the ambient set. */
static void limit_unprivileged(void)
{
	cap_t have = cap_get_proc();
	cap_flag_value_t raw = CAP_CLEAR;
	struct passwd *pw;

	if (!have)
		fatal("reading capabilities");
	cap_get_flag(have, CAP_NET_RAW, CAP_EFFECTIVE, &raw);
	apply_caps(wanted_caps(have));
	cap_free(have);
	if (raw != CAP_SET)
		log_warnx(
		    "started without CAP_NET_RAW: captures and probes may fail "
		    "(run as root, or give it AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN)");
	pw = getpwuid(getuid());
	log_result(pw ? pw->pw_name : "?");
}

void priv_drop(const struct config *cfg)
{
	struct target t;

	if (geteuid() != 0) {
		limit_unprivileged();
		return;
	}
	find_user(cfg, &t);
	chown_status_log(cfg->log_file, &t);
	make_parents(cfg->state_file, &t);
	make_parents(cfg->metrics_file, &t);
	switch_ids(&t);
	apply_caps(wanted_caps(NULL));
	verify_ids();
	verify_caps();
	check_writable("state_file", cfg->state_file);
	check_writable("metrics_file", cfg->metrics_file);
	log_result(t.name);
}
