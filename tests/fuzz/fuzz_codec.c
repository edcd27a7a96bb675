/* fuzz_codec.c: libFuzzer target for the packet decoder (codec_decode), every link type
 * kaprobed handles. Input: byte 0 picks the link type (Ethernet, raw, SLL, SLL2, and the
 * raw aliases), bytes 1-2 how many more bytes the frame had on the wire than were
 * captured (big endian), the rest is the captured frame. Seeds: the frames of
 * tests/fixtures/NAME.pcap (tests/fuzz/make-seeds.py). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int dlts[] = {
    CODEC_DLT_EN10MB, CODEC_DLT_RAW, CODEC_DLT_LINUX_SLL, CODEC_DLT_LINUX_SLL2, 14, 101};

/* Checks what a successful decode promises. */
static void check(const struct codec_packet *p, int r)
{
	if (r == CODEC_TCP) {
		if (p->tcp.family != AF_INET && p->tcp.family != AF_INET6)
			abort();
		if (p->tcp.payload_len > 65535)
			abort();
	} else if (r == CODEC_ICMP) {
		(void)codec_icmp_name(p->icmp.family, p->icmp.type, p->icmp.code);
	} else if (r != CODEC_E_TRUNCATED && r != CODEC_E_MALFORMED && r != CODEC_E_UNSUPPORTED) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct codec_packet pkt;
	size_t caplen, extra;
	uint8_t *frame;
	int dlt;

	if (size < 3)
		return 0;
	dlt = dlts[data[0] % (sizeof(dlts) / sizeof(dlts[0]))];
	extra = (size_t)data[1] << 8 | data[2];
	caplen = size - 3;
	/* An exact-size copy, so that ASan sees any read past the captured bytes. */
	frame = malloc(caplen ? caplen : 1);
	if (!frame)
		return 0;
	memcpy(frame, data + 3, caplen);
	check(&pkt, codec_decode(dlt, caplen ? frame : NULL, caplen, caplen + extra, &pkt));
	free(frame);
	return 0;
}
