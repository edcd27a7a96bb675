/* gateway.c: connections this host forwards (mode = gateway): which captured segments are
 * theirs, and the fields that name their records in the status log (pure, no I/O). */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* t with its ends swapped: the same connection seen from the other end. */
static struct addr_tuple swapped(const struct addr_tuple *t)
{
	struct addr_tuple s;

	addr_tuple_make(&s, t->family, t->remote, t->rport, t->local, t->lport);
	return s;
}

bool gateway_nat_view(const struct addr_tuple *orig, const struct addr_tuple *reply,
                      const struct addr_tuple *key, struct gateway_nat *n)
{
	struct addr_tuple from_server = swapped(reply), from_client = swapped(orig);

	n->key = *key;
	if (addr_tuple_equal(key, &from_server)) { /* probes the end that answers (server) */
		n->name = *orig;
		n->send = *orig;
		n->partner = from_client;
		n->learn = *orig;
		return true;
	}
	if (addr_tuple_equal(key, &from_client)) { /* probes the end that opened (client) */
		n->name = *key;
		n->send = *reply;
		n->partner = from_server;
		n->learn = *reply;
		return true;
	}
	return false;
}

/* ---- the map: chained hash, doubled at load 1 ------------------------------------ */

/* Each entry is on two chains of the same size: by key, and by send (the tuple the
 * record's probes leave with, which an ICMP error about a probe may quote). */
struct natnode {
	struct natnode *next, *next_send;
	struct gateway_nat nat;
};

struct gateway_natmap {
	struct natnode **b, **bs; /* by key, by send */
	size_t nb, n;
	uint32_t seed;
};

struct gateway_natmap *gateway_natmap_new(uint32_t seed)
{
	struct gateway_natmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->nb = 64;
	m->seed = seed;
	m->b = calloc(m->nb, sizeof(*m->b));
	m->bs = calloc(m->nb, sizeof(*m->bs));
	if (!m->b || !m->bs) {
		free(m->b);
		free(m->bs);
		free(m);
		return NULL;
	}
	return m;
}

static struct natnode **slot(const struct gateway_natmap *m, const struct addr_tuple *key)
{
	return &m->b[addr_tuple_hash(key, m->seed) & (m->nb - 1)];
}

static struct natnode **slot_send(const struct gateway_natmap *m, const struct addr_tuple *send)
{
	return &m->bs[addr_tuple_hash(send, m->seed) & (m->nb - 1)];
}

/* Doubles the buckets (when it cannot, the chains only grow longer). */
static void grow(struct gateway_natmap *m)
{
	struct gateway_natmap bigger = *m;
	struct natnode *x, *next;
	size_t i;

	bigger.nb = m->nb * 2;
	bigger.b = calloc(bigger.nb, sizeof(*bigger.b));
	bigger.bs = calloc(bigger.nb, sizeof(*bigger.bs));
	if (!bigger.b || !bigger.bs) {
		free(bigger.b);
		free(bigger.bs);
		return;
	}
	for (i = 0; i < m->nb; i++) {
		for (x = m->b[i]; x; x = next) {
			next = x->next;
			x->next = *slot(&bigger, &x->nat.key);
			*slot(&bigger, &x->nat.key) = x;
			x->next_send = *slot_send(&bigger, &x->nat.send);
			*slot_send(&bigger, &x->nat.send) = x;
		}
	}
	free(m->b);
	free(m->bs);
	*m = bigger;
}

/* Takes x off its send chain. */
static void unlink_send(struct gateway_natmap *m, struct natnode *x)
{
	struct natnode **p;

	for (p = slot_send(m, &x->nat.send); *p; p = &(*p)->next_send) {
		if (*p == x) {
			*p = x->next_send;
			return;
		}
	}
}

int gateway_natmap_put(struct gateway_natmap *m, const struct gateway_nat *n)
{
	struct natnode *x;

	for (x = *slot(m, &n->key); x; x = x->next) {
		if (addr_tuple_equal(&x->nat.key, &n->key)) {
			unlink_send(m, x);
			x->nat = *n;
			x->next_send = *slot_send(m, &n->send);
			*slot_send(m, &n->send) = x;
			return 0;
		}
	}
	if (!(x = malloc(sizeof(*x))))
		return -1;
	if (m->n >= m->nb)
		grow(m);
	x->nat = *n;
	x->next = *slot(m, &n->key);
	*slot(m, &n->key) = x;
	x->next_send = *slot_send(m, &n->send);
	*slot_send(m, &n->send) = x;
	m->n++;
	return 0;
}

const struct gateway_nat *gateway_natmap_get(const struct gateway_natmap *m,
                                             const struct addr_tuple *key)
{
	struct natnode *x;

	for (x = *slot(m, key); x; x = x->next) {
		if (addr_tuple_equal(&x->nat.key, key))
			return &x->nat;
	}
	return NULL;
}

const struct gateway_nat *gateway_natmap_by_send(const struct gateway_natmap *m,
                                                 const struct addr_tuple *send)
{
	struct natnode *x;

	for (x = *slot_send(m, send); x; x = x->next_send) {
		if (addr_tuple_equal(&x->nat.send, send))
			return &x->nat;
	}
	return NULL;
}

void gateway_natmap_del(struct gateway_natmap *m, const struct addr_tuple *key)
{
	struct natnode **p, *x;

	for (p = slot(m, key); (x = *p); p = &x->next) {
		if (addr_tuple_equal(&x->nat.key, key)) {
			*p = x->next;
			unlink_send(m, x);
			free(x);
			m->n--;
			return;
		}
	}
}

void gateway_natmap_free(struct gateway_natmap *m)
{
	struct natnode *x, *next;
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->nb; i++) {
		for (x = m->b[i]; x; x = next) {
			next = x->next;
			free(x);
		}
	}
	free(m->b);
	free(m->bs);
	free(m);
}

int gateway_copy(uint8_t pkttype, bool src_local, bool dst_local)
{
	if (src_local || dst_local)
		return GATEWAY_NONE;
	if (pkttype == CODEC_PKT_OUTGOING)
		return GATEWAY_LEFT;
	if (pkttype == CODEC_PKT_HOST)
		return GATEWAY_ARRIVED;
	return GATEWAY_NONE;
}

const char *gateway_side(const struct rule *r, const struct addr_tuple *k)
{
	return rule_gateway_probes_client(r, k) ? "client" : "server";
}

const struct rule *gateway_outlived(const struct rule *rules, size_t n, size_t *i,
                                    double ct_established)
{
	for (; *i < n; (*i)++) {
		if (rules[*i].mode == RULE_MODE_GATEWAY && rules[*i].params.idle >= ct_established)
			return &rules[(*i)++];
	}
	return NULL;
}

void gateway_line_fields(struct log_line *l, const struct rule *r, const struct addr_tuple *k)
{
	char lo[ADDR_ENDPOINT_STRLEN], re[ADDR_ENDPOINT_STRLEN];
	bool to_client = rule_gateway_probes_client(r, k);

	addr_format_endpoint(k->family, k->local, k->lport, lo, sizeof(lo));
	addr_format_endpoint(k->family, k->remote, k->rport, re, sizeof(re));
	log_line_str(l, "rule", r->name);
	log_line_str(l, "client", to_client ? re : lo);
	log_line_str(l, "server", to_client ? lo : re);
	log_line_str(l, "side", to_client ? "client" : "server");
}
