/* fuzz_actmsg.c: libFuzzer target for the answers the close and flush actions and the
 * gateway's conntrack lookups read (actmsg_diag_found, actmsg_diag_ack, actmsg_ct_found):
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t local[4] = {192, 0, 2, 1}, remote[4] = {192, 0, 2, 2};
	struct addr_tuple t;
	uint32_t cookie[2] = {0, 0};
	struct actmsg_ct ct;
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	addr_tuple_make(&t, AF_INET, local, 5432, remote, 40000);
	(void)actmsg_diag_found(buf, size, 1, 0, &t, cookie);
	(void)actmsg_diag_ack(buf, size, 1, 0);
	(void)actmsg_ct_found(buf, size, 1, 0, &ct);
	free(buf);
	return 0;
}
