/* rule.h: endpoint patterns and rules; first match wins (pure, no I/O). */
#ifndef KAPROBE_RULE_H
#define KAPROBE_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "fsm.h"

#define RULE_NAME_MAX 64

/* ADDR[/PREFIX][:PORT[-PORT]], "[v6[/PREFIX]][:PORT[-PORT]]", "*", "*:PORT[-PORT]". */
struct rule_pattern {
	uint8_t family;            /* 0: any address of either family */
	uint8_t prefix;            /* significant bits of ip */
	uint16_t port_lo, port_hi; /* 0..65535 when no port was given */
	uint8_t ip[16];
};

/* Actions on a verdict (bits of struct rule_actions.mask). The verdict line is always
 * logged; RULE_ACT_LOG alone means "nothing else". */
enum rule_action {
	RULE_ACT_LOG = 1 << 0,   /* log only */
	RULE_ACT_CLOSE = 1 << 1, /* destroy the local socket (sock_diag SOCK_DESTROY) */
	RULE_ACT_RST = 1 << 2,   /* send a RST to both ends with exact numbers */
	RULE_ACT_EXEC = 1 << 3,  /* run config.exec_paths[exec - 1] */
	RULE_ACT_FLUSH = 1 << 4, /* gateway rules: delete the forwarded flow's conntrack entry */
};

struct rule_actions {
	uint8_t mask; /* enum rule_action bits */
	uint8_t exec; /* 1-based index into struct config's exec_paths; 0: none */
};

/* Which connections a rule is for (struct rule.mode). */
enum rule_mode {
	RULE_MODE_LOCAL = 0, /* connections of this host: local and remote */
	RULE_MODE_GATEWAY,   /* connections forwarded by this host: client and server */
};

struct rule {
	char name[RULE_NAME_MAX];
	int mode; /* enum rule_mode */
	/* A local rule matches our end and the peer's; a gateway rule the end that opened the
	 * connection (client) and the end it connected to (server), either way round. */
	union {
		struct rule_pattern local;
		struct rule_pattern client;
	};
	union {
		struct rule_pattern remote;
		struct rule_pattern server;
	};
	struct fsm_params params;
	struct rule_actions on_dead, on_reset;
	struct rule_actions on_stall; /* default: [global] on_stall, else this rule's on_dead */
	int line;                     /* line of the section header */
};

/* Parses a pattern. Returns 0, or -1 with *err set to a static message. */
int rule_pattern_parse(const char *text, struct rule_pattern *out, const char **err);

/* True when family/ip/port is matched by the pattern. */
bool rule_pattern_match(const struct rule_pattern *p, int family, const uint8_t *ip, uint16_t port);

/* The first local rule (mode local) matching the tuple, or NULL. */
const struct rule *rule_match(const struct rule *rules, size_t n, const struct addr_tuple *t);

/* The first gateway rule matching a forwarded connection's record t (t.remote is the end
 * it probes, t.local the end it speaks for), either way round: client and server matched
 * by t.local and t.remote, or by t.remote and t.local. NULL when none. */
const struct rule *rule_match_gateway(const struct rule *rules, size_t n,
                                      const struct addr_tuple *t);

/* For a gateway rule r matching t: true when t.remote (the end probed) is the client,
 * false when it is the server. Where the patterns match both ways round (client = *,
 * server = *), the server is the end with the lower port, then the lower address, so
 * that the two records of one connection agree. */
bool rule_gateway_probes_client(const struct rule *r, const struct addr_tuple *t);

/* Writes a pcap filter expression selecting the TCP segments of every rule (both
 * directions) and ICMP/ICMPv6 errors. Returns 0, or -1 when len is too small. */
int rule_bpf_filter(const struct rule *rules, size_t n, char *buf, size_t len);

/* Writes "(base) and not (...)": base, less the routine segments (no SYN, FIN or RST) of
 * the n connections in keys, both directions, matched exactly (addresses and ports each
 * way). Returns 0, or -1 when len is too small. */
int rule_bpf_exclude(const char *base, const struct addr_tuple *keys, size_t n, char *buf,
                     size_t len);

#endif
