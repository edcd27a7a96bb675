/* priv.h: least privilege. Started as root, kaprobed drops to an unprivileged user
 * keeping only CAP_NET_RAW and CAP_NET_ADMIN, and checks that it cannot regain root. */
#ifndef KAPROBE_PRIV_H
#define KAPROBE_PRIV_H

#include "config.h"

/* Call once everything privileged is open (captures, raw sender, status log).
 * As root: prepares the files the loop writes later (status log owner, parent
 * directories of the state and metrics files), switches to cfg->user (or "nobody"
 * when the default user is missing), keeps only CAP_NET_RAW and CAP_NET_ADMIN,
 * clears the ambient set, sets no_new_privs and verifies the result; any failure
 * is fatal. As non-root (systemd User= with AmbientCapabilities): clears the
 * ambient set, keeps at most those two capabilities, warns without CAP_NET_RAW. */
void priv_drop(const struct config *cfg);

#endif
