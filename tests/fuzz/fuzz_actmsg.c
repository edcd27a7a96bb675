/* fuzz_actmsg.c: libFuzzer target for the answers the close and flush actions and the
 * gateway's conntrack lookups, dumps and destroy events read (actmsg_diag_found,
 * actmsg_diag_ack, actmsg_ct_found, actmsg_ct_each, actmsg_ct_events):
 * the input is one netlink datagram, sequence
 * number 1, for connection 192.0.2.1:5432 <-> 192.0.2.2:40000. Seeds:
 * tests/fuzz/make-seeds.py. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "actmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every field of an entry handed over (the sanitizers check they are whole). */
static void touch(const struct actmsg_ct *ct, void *arg)
{
	*(uint32_t *)arg +=
	    ct->orig.lport + ct->reply.rport + ct->status + ct->timeout + ct->tcp_state + ct->have;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t local[4] = {192, 0, 2, 1}, remote[4] = {192, 0, 2, 2};
	struct addr_tuple t;
	uint32_t cookie[2] = {0, 0};
	struct actmsg_ct ct;
	uint32_t sum = 0;
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	addr_tuple_make(&t, AF_INET, local, 5432, remote, 40000);
	(void)actmsg_diag_found(buf, size, 1, 0, &t, cookie);
	(void)actmsg_diag_ack(buf, size, 1, 0);
	(void)actmsg_ct_found(buf, size, 1, 0, &ct);
	(void)actmsg_ct_each(buf, size, 1, 0, touch, &sum);
	(void)actmsg_ct_events(buf, size, 0, touch, &sum);
	free(buf);
	return 0;
}
