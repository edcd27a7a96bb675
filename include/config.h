/* config.h: the INI file -> struct config, every value range-checked (pure: parses text). */
#ifndef KAPROBE_CONFIG_H
#define KAPROBE_CONFIG_H

#include <stddef.h>

#include "fsm.h"
#include "rule.h"

#define CONFIG_PATH_MAX        4096
#define CONFIG_MAX_ERRORS      64
#define CONFIG_MAX_RULES       1024
#define CONFIG_ERROR_LEN       512
#define CONFIG_MAX_EXEC        16 /* distinct exec:PATH actions in one file */
#define CONFIG_USER_MAX        32
#define CONFIG_MAX_CONNECTIONS 10000000
/* max_probe_rate: probes and learning SYNs per second (see ARCHITECTURE.md, "Pacing"). */
#define CONFIG_PROBE_RATE_MIN     10
#define CONFIG_PROBE_RATE_MAX     10000000
#define CONFIG_PROBE_RATE_DEFAULT 100000
/* capture_buffer: bytes of kernel ring per capture. */
#define CONFIG_CAPTURE_BUFFER_MIN     (64L << 10)
#define CONFIG_CAPTURE_BUFFER_MAX     (1024L << 20)
#define CONFIG_CAPTURE_BUFFER_DEFAULT (8L << 20)

enum config_log_level {
	CONFIG_LOG_ERROR = 0,
	CONFIG_LOG_WARNING,
	CONFIG_LOG_INFO,
	CONFIG_LOG_DEBUG,
};

enum config_log_format {
	CONFIG_FMT_LOGFMT = 0, /* key=value pairs */
	CONFIG_FMT_JSON,       /* JSON Lines: one object per line, same keys */
};

struct config {
	char interface[256];                /* "any" or a comma-separated list of names */
	char log_file[CONFIG_PATH_MAX];     /* "-" = standard output; "" (none) = no status file */
	int log_level;                      /* enum config_log_level */
	int log_format;                     /* enum config_log_format */
	bool syslog;                        /* status lines also to syslog (facility daemon) */
	bool journal;                       /* status lines also to journald, KAPROBE_* fields */
	char user[CONFIG_USER_MAX];         /* user to run as after start-up as root */
	bool user_set;                      /* user was given in the file (no fallback) */
	double summary_interval;            /* s between event=summary lines; 0 = never */
	char state_file[CONFIG_PATH_MAX];   /* "" = none */
	double state_interval;              /* s between state file rewrites; 0 = SIGUSR2 only */
	char metrics_file[CONFIG_PATH_MAX]; /* "" = none */
	double metrics_interval;            /* s between metrics file rewrites */
	double action_timeout;              /* s an exec: action may run before SIGKILL */
	struct rule_actions on_dead, on_reset;             /* [global] defaults for the rules */
	struct rule_actions on_stall;                      /* [global] on_stall (if given) */
	char exec_paths[CONFIG_MAX_EXEC][CONFIG_PATH_MAX]; /* targets of exec: actions */
	size_t nexec;
	double discover_interval;   /* s between socket list dumps; 0 = start/reload only */
	long max_connections;       /* cap of the connection table */
	bool skip_kernel_keepalive; /* leave sockets with SO_KEEPALIVE to the kernel */
	long max_probe_rate;        /* probes and learning SYNs per second, at most */
	long capture_buffer;        /* bytes of kernel capture ring per capture */
	bool log_alive_every;       /* log_alive = every: idle and alive lines at info, as before */
	bool gateway_drop_answers;  /* gateway rules: the router drops the answers to its probes
	                               and learning SYNs (hush.c) instead of forwarding them */
	struct fsm_params defaults;
	struct rule *rules; /* in file order; heap, freed by config_free() */
	size_t nrules;
};

/* Each error as "FILE:LINE: message" (LINE 0 when it concerns the whole file). */
struct config_errors {
	size_t n;
	size_t dropped; /* errors past CONFIG_MAX_ERRORS */
	char msg[CONFIG_MAX_ERRORS][CONFIG_ERROR_LEN];
};

/* Default path of the configuration file. */
#define CONFIG_DEFAULT_PATH "/etc/kaprobe/kaprobed.ini"

/* Parses INI text read from file `name`. host_defaults are this host's kernel keepalive
 * settings, used where [global] sets none. Returns 0 with *out filled, or -1 with
 * errs filled (and *out left empty). */
int config_parse(const char *name, const char *text, const struct fsm_params *host_defaults,
                 struct config *out, struct config_errors *errs);

/* Like config_parse, for len bytes of text that may hold NUL bytes (a file as read): a
 * line with a NUL byte is an error "FILE:LINE: NUL byte in the line ...", never the end
 * of the text. */
int config_parse_len(const char *name, const char *text, size_t len,
                     const struct fsm_params *host_defaults, struct config *out,
                     struct config_errors *errs);

/* Parses a duration: "30", "1.5s", "500ms", "2m", "1h". Returns 0 or -1. */
int config_parse_duration(const char *text, double *seconds);

/* Frees what config_parse() allocated. */
void config_free(struct config *c);

#endif
