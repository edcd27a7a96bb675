/* fuzz_ifaddr.c: libFuzzer target for the rtnetlink address message parser
 * (ifaddr_parse): the input is one datagram. Seeds: tests/fuzz/make-seeds.py. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ifaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(void *arg, const struct ifaddr_event *ev)
{
	uint8_t *sink = arg;

	if (ev->family != AF_INET && ev->family != AF_INET6)
		abort();
	*sink ^= ev->ip[ev->family == AF_INET ? 3 : 15];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1), sink = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	(void)ifaddr_parse(buf, size, 0, one, &sink);
	free(buf);
	return 0;
}
