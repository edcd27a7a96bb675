/* action.h: what kaprobed does on a verdict beyond logging it (per rule: on_dead =
 * log | close | rst | exec:PATH, on_reset = log | exec:PATH). Every action logs one
 * `event=action` status line with its result; none blocks the loop. */
#ifndef KAPROBE_ACTION_H
#define KAPROBE_ACTION_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "config.h"
#include "engine.h"
#include "sender.h"

/* exec: programs running at once, at most; past it a verdict's program is skipped (logged). */
#define ACTION_MAX_CHILDREN 64
/* After SIGTERM at action_timeout, a program's process group gets SIGKILL this much later. */
#define ACTION_KILL_GRACE 1.0

struct action;

/* Opens what the actions need privileges for: the NETLINK_SOCK_DIAG socket of `close`
 * (SOCK_DESTROY needs CAP_NET_ADMIN when used, not when opened). Call it at start-up, before
 * the privilege drop. NULL with errbuf filled on failure. */
struct action *action_open(char *errbuf, size_t errlen);

/* Ready to act: loop must be libev's default loop (ev_child reaps exec: programs); sender
 * sends the RSTs of `rst` (NULL: rst fails, logged). */
void action_start(struct action *a, struct ev_loop *loop, struct sender *sender);

/* The engine's verdict hook (engine_set_verdict_hook(e, action_on_verdict, a)): carries out
 * the rule's on_dead or on_reset actions. */
void action_on_verdict(void *arg, const struct engine_verdict *v);

/* Whether path can be run as an exec: program by this process: 0, or -1 with why filled
 * ("No such file or directory", "not a regular file", "not executable: ..."). */
int action_check_exec(const char *path, char *why, size_t len);

/* Checks every exec: path of cfg (file: the config's name). Warns through log_warnx when
 * to_log, else prints "FILE: warning: ..." to stderr (for kaprobed -n). Returns the number
 * of paths that cannot run. */
size_t action_check_config(const struct config *cfg, const char *file, bool to_log);

/* Programs still running get SIGTERM (not waited for); closes the socket and frees. */
void action_close(struct action *a);

#endif
