/* test_learn.c: the learning path replayed from a real capture (codec + fsm, both pure).
 *
 * tests/fixtures/ipv4-learn-challenge-ack.pcap (make-learn-fixture.py) holds what the
 * local namespace saw when kaprobed found an idle connection 192.0.2.1:5432 <->
 * 192.0.2.2: the SYN kaprobed injected (as if from the peer), the kernel's challenge
 * ACK, kaprobed's first probe and the peer's reply. Fed through the decoder into a
 * discovered state machine, the challenge ACK must teach exactly the numbers that the
 * real probe carried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pcap/pcap.h>
#include <string.h>

#include "codec.h"
#include "fsm.h"

#define FIXTURE "tests/fixtures/ipv4-learn-challenge-ack.pcap"

static const struct fsm_params params = {
    .idle = 1.5, .interval = 0.5, .probes = 3, .probe_bytes = 1};
static const uint8_t local_ip[4] = {192, 0, 2, 1};

struct seg {
	struct codec_tcp tcp;
	double t;
	bool ours;
};

/* The fixture's four segments, decoded and oriented. */
static int load(struct seg *out, int max)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *bytes;
	struct codec_packet pkt;
	pcap_t *p = pcap_open_offline(FIXTURE, errbuf);
	int n = 0;

	if (!p)
		fail_msg("%s: %s", FIXTURE, errbuf);
	while (n < max && pcap_next_ex(p, &h, &bytes) == 1) {
		assert_int_equal(codec_decode(pcap_datalink(p), bytes, h->caplen, &pkt), CODEC_TCP);
		out[n].tcp = pkt.tcp;
		out[n].t = (double)h->ts.tv_sec + h->ts.tv_usec / 1e6;
		out[n].ours = memcmp(pkt.tcp.src, local_ip, 4) == 0;
		n++;
	}
	pcap_close(p);
	return n;
}

static void test_challenge_ack_teaches_the_real_probe(void **state)
{
	struct seg s[8];
	struct fsm_conn c;
	struct fsm_out out;
	const struct codec_tcp *syn = &s[0].tcp, *ack = &s[1].tcp, *probe = &s[2].tcp;
	double due;

	(void)state;
	assert_int_equal(load(s, 8), 4);
	assert_int_equal(syn->flags, CODEC_TH_SYN);
	assert_false(s[0].ours);
	assert_true(s[1].ours && s[2].ours && !s[3].ours);
	/* Found 1.1 s idle, nothing in flight: due in 0.4 s, so the numbers are asked at once. */
	fsm_init_discovered(&c, s[0].t, 1.1, true, &params);
	due = c.last_rx + params.idle;
	fsm_on_timer(&c, &params, s[0].t, FSM_NEVER_BLIND, &out);
	assert_true(out.learn);
	c.probe_seq = syn->seq; /* the SEQ the daemon chose for the SYN it really sent */
	fsm_on_segment(&c, &params, syn, true, s[0].t, &out);
	assert_int_equal(out.ignored, FSM_IGN_OWN_PROBE); /* our SYN is no sign of life */
	assert_true(c.last_rx == s[0].t - 1.1);
	fsm_on_segment(&c, &params, ack, false, s[1].t, &out);
	assert_true(fsm_can_probe(&c));
	assert_int_equal(c.snd_nxt, ack->seq);
	assert_int_equal(c.snd_una, ack->seq);
	assert_int_equal(c.rcv_nxt, ack->ack);
	/* At the due time the machine builds exactly the probe kaprobed sent. */
	fsm_on_timer(&c, &params, due, FSM_NEVER_BLIND, &out);
	assert_true(out.send_probe);
	assert_int_equal(out.probe.seq, probe->seq);
	assert_int_equal(out.probe.ack, probe->ack);
	assert_int_equal(out.probe.window, probe->window);
	assert_int_equal(out.probe.has_ts, probe->has_ts);
	assert_int_equal(out.probe.tsval, probe->tsval);
	assert_int_equal(out.probe.tsecr, probe->tsecr);
	assert_int_equal(out.probe.payload_len, probe->payload_len);
	/* The probe seen leaving is ours; the peer's reply acks exactly SND.NXT: alive. */
	fsm_on_segment(&c, &params, probe, false, s[2].t, &out);
	assert_int_equal(out.ignored, FSM_IGN_OWN_PROBE);
	fsm_on_segment(&c, &params, &s[3].tcp, true, s[3].t, &out);
	assert_int_equal(out.nev, 2);
	assert_int_equal(out.ev[1].type, FSM_EV_ALIVE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_challenge_ack_teaches_the_real_probe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
