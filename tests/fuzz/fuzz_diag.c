/* fuzz_diag.c: libFuzzer target for the inet_diag dump answer parser (diag_parse): the
 * input is one netlink datagram, sequence number 1. Seeds: tests/fuzz/make-seeds.py. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(void *arg, const struct diag_sock *s)
{
	size_t *n = arg;

	(void)diag_idle(s);
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	size_t n = 0;
	int err = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	(void)diag_parse(buf, size, 1, 0, one, &n, &err); /* from the kernel */
	free(buf);
	return 0;
}
