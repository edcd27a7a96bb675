/* gateway.c: connections this host forwards (mode = gateway): which captured segments are
 * theirs, and the fields that name their records in the status log (pure, no I/O). */
#include "gateway.h"

#include "codec.h"

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
