#!/usr/bin/env python3
"""wire: watches and writes raw TCP segments inside one namespace, driven by line commands
on standard input (same protocol as tcppeer.py: one answer line per command, starting
with "ok" or "err", logfmt, with t= the wall clock in seconds since the epoch).

Run inside a namespace (ip netns exec NS python3 wire.py NAME). Used by the discovery
cases to see what really crossed a link (no probe with guessed numbers, no FIN/RST the
daemon could have seen) and, in --netcheck mode, to inject the SYN that makes our own
kernel answer with a challenge ACK (RFC 5961), as kaprobed does.

Commands:
  sniff IFACE                     start recording the TCP segments seen on IFACE (both
                                  directions, as a packet socket sees them)
  segs SRC SPORT DST DPORT SINCE  segments SRC:SPORT -> DST:DPORT recorded at or after
                                  SINCE (epoch s): n=, and for each: flags, len, seq, ack, t
  wait_seg SRC SPORT DST DPORT SINCE TIMEOUT
                                  wait for the first such segment; its fields
  syn SRC SPORT DST DPORT SEQ     send one SYN (raw socket, IP header written here, so
                                  SRC may be any address): delivered locally when DST is
                                  ours
  frames IFACE DSTMAC SRC SPORT DST DPORT FLAGS COUNT GAP
                                  send COUNT Ethernet frames out of IFACE to DSTMAC, each a
                                  TCP segment SRC:SPORT -> DST:DPORT with FLAGS (letters of
                                  FSRPA) and random SEQ and ACK, GAP s apart: an attacker on
                                  the same L2 segment, with any source address
  seg SRC SPORT DST DPORT SEQ ACK FLAGS LEN [IPLEN]
                                  send one segment: FLAGS as letters (S A F R P, "-" for
                                  none), LEN bytes of payload; IPLEN (IPv4) writes that
                                  total length in the IP header whatever the real size
  spray SRC SPORT DST DPORT FLAGS LEN N
                                  N segments with random SEQ and ACK (at most 100 000)
  flood SRC DST DPORT FLAGS N     N segments from random source ports 1024..32767 (below
                                  the ephemeral range: a real client never collides), random
                                  SEQ and ACK (at most 100 000)
  quit
Every injected packet has correct IP and TCP checksums, so the receiving kernel handles it
as it would a real one (and answers it: RST, challenge ACK, SYN-ACK).
Addresses are written as the status log and ss write them, without brackets.
"""

import ipaddress
import random
import socket
import struct
import sys
import threading
import time

NAME = sys.argv[1] if len(sys.argv) > 1 else "wire"
ETH_P_ALL = 0x0003
_out = threading.Lock()

FLAG_NAMES = "FSRPAUEC"  # bit 0 FIN ... bit 7 CWR, written like tcpdump: S, A, F, R, P


def emit(line):
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def flags_str(f):
    s = "".join(FLAG_NAMES[i] for i in range(8) if f & (1 << i))
    return s or "-"


def parse_ip(pkt):
    """(src, dst, tcp bytes) of an IPv4/IPv6 TCP packet, or None."""
    if not pkt:
        return None
    v = pkt[0] >> 4
    if v == 4 and len(pkt) >= 20:
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[9] != 6:
            return None
        total = struct.unpack_from("!H", pkt, 2)[0]
        return (socket.inet_ntop(socket.AF_INET, pkt[12:16]),
                socket.inet_ntop(socket.AF_INET, pkt[16:20]), pkt[ihl:total])
    if v == 6 and len(pkt) >= 40:
        if pkt[6] != 6:  # no extension headers in these tests
            return None
        plen = struct.unpack_from("!H", pkt, 4)[0]
        return (socket.inet_ntop(socket.AF_INET6, pkt[8:24]),
                socket.inet_ntop(socket.AF_INET6, pkt[24:40]), pkt[40:40 + plen])
    return None


class Sniffer:
    def __init__(self, iface):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.bind((iface, 0))
        self.segs = []  # (t, src, sport, dst, dport, flags, seq, ack, len, first byte)
        self.cond = threading.Condition()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            data = self.sock.recv(65536)
            t = time.time()
            ip = parse_ip(data)
            if ip is None or len(ip[2]) < 20:
                continue
            src, dst, tcp = ip
            sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", tcp, 0)
            hlen = (off_flags >> 12) * 4
            payload = tcp[hlen:]
            rec = (t, src, sport, dst, dport, off_flags & 0xFF, seq, ack, len(payload),
                   payload[0] if payload else -1)
            with self.cond:
                self.segs.append(rec)
                self.cond.notify_all()

    def match(self, src, sport, dst, dport, since):
        with self.cond:
            return [r for r in self.segs if r[1] == src and r[2] == sport and r[3] == dst
                    and r[4] == dport and r[0] >= since]


def describe(r):
    return "flags=%s len=%d seq=%d ack=%d byte=%d at=%.6f" % (
        flags_str(r[5]), r[8], r[6], r[7], r[9], r[0])


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn_packet(src, sport, dst, dport, seq):
    """The whole IP packet of a bare SYN (window 65535, no options)."""
    return tcp_packet(src, sport, dst, dport, seq, 0, 0x02, window=65535, ip_id=0x6b70)


def flag_bits(letters):
    return sum(1 << FLAG_NAMES.index(c) for c in letters if c != "-")


def tcp_packet(src, sport, dst, dport, seq, ack, flags, payload=b"", iplen=None, window=502,
               ip_id=0x6b71):
    """The whole IP packet of a TCP segment (no options); iplen (IPv4) is written as the
    total length whatever the real size."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, window, 0, 0) + payload
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, iplen or 20 + len(tcp), ip_id, 0, 64, 6,
                         0, s.packed, d.packed)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        return ip + tcp
    pseudo = s.packed + d.packed + struct.pack("!I3xB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, s.packed, d.packed)
    return ip + tcp


def send_raw(pkts, dst):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        for p in pkts:
            s.sendto(p, (dst, 0))
    finally:
        s.close()


class Wire:
    def __init__(self):
        self.sniffer = None

    def need(self):
        if self.sniffer is None:
            raise RuntimeError("no sniff running")
        return self.sniffer

    def c_sniff(self, iface):
        self.sniffer = Sniffer(iface)
        return "iface=%s" % iface

    def c_segs(self, src, sport, dst, dport, since):
        segs = self.need().match(src, int(sport), dst, int(dport), float(since))
        parts = ["n=%d" % len(segs)]
        for i, r in enumerate(segs[:50]):
            parts.append('s%d="%s"' % (i, describe(r)))
        return " ".join(parts)

    def c_wait_seg(self, src, sport, dst, dport, since, timeout):
        sn = self.need()
        deadline = time.monotonic() + float(timeout)
        with sn.cond:
            while True:
                segs = [r for r in sn.segs if r[1] == src and r[2] == int(sport) and
                        r[3] == dst and r[4] == int(dport) and r[0] >= float(since)]
                if segs:
                    return describe(segs[0])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timeout no-segment")
                sn.cond.wait(left)

    def c_frames(self, *args):
        return send_frames(*args)

    def c_syn(self, src, sport, dst, dport, seq):
        pkt = syn_packet(src, int(sport), dst, int(dport), int(seq))
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        # IPPROTO_RAW: the IP header is ours (IP_HDRINCL; IPv6 likewise on Linux).
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            s.sendto(pkt, (dst, 0))
        finally:
            s.close()
        return "sent=%d" % len(pkt)


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def send_frames(iface, dstmac, src, sport, dst, dport, flags, count, gap):
    """Sends count frames (see the docstring); returns how many."""
    ethertype = 0x86DD if ":" in dst else 0x0800
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((iface, 0))
        with open("/sys/class/net/%s/address" % iface) as f:
            srcmac = mac_bytes(f.read().strip())
        head = mac_bytes(dstmac) + srcmac + struct.pack("!H", ethertype)
        for i in range(int(count)):
            pkt = tcp_packet(src, int(sport), dst, int(dport), random.getrandbits(32),
                             random.getrandbits(32), flag_bits(flags))
            s.send(head + pkt)
            if i + 1 < int(count):
                time.sleep(float(gap))
    finally:
        s.close()
    return "sent=%d" % int(count)


def _c_seg(self, src, sport, dst, dport, seq, ack, flags, n, iplen=None):
    pkt = tcp_packet(src, int(sport), dst, int(dport), int(seq), int(ack), flag_bits(flags),
                     b"x" * int(n), int(iplen) if iplen else None)
    send_raw([pkt], dst)
    return "sent=%d" % len(pkt)


def _c_spray(self, src, sport, dst, dport, flags, n, count):
    r = random.Random(int(sport) * 7919 + int(dport))
    f = flag_bits(flags)
    pkts = [tcp_packet(src, int(sport), dst, int(dport), r.getrandbits(32), r.getrandbits(32),
                       f, b"x" * int(n)) for _ in range(min(int(count), 100000))]
    send_raw(pkts, dst)
    return "sent=%d" % len(pkts)


def _c_flood(self, src, dst, dport, flags, count):
    r = random.Random(int(dport))
    f = flag_bits(flags)
    pkts = [tcp_packet(src, r.randint(1024, 32767), dst, int(dport), r.getrandbits(32),
                       r.getrandbits(32), f) for _ in range(min(int(count), 100000))]
    send_raw(pkts, dst)
    return "sent=%d" % len(pkts)


Wire.c_seg = _c_seg
Wire.c_spray = _c_spray
Wire.c_flood = _c_flood


def main():
    w = Wire()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        fn = getattr(w, "c_" + words[0], None)
        if fn is None:
            emit("err cmd=%s msg=unknown-command t=%.6f" % (words[0], time.time()))
            continue
        try:
            res = fn(*words[1:])
            emit("ok cmd=%s %s t=%.6f" % (words[0], res, time.time()))
        except Exception as e:
            msg = str(e).replace('"', "'")
            emit('err cmd=%s msg="%s" t=%.6f' % (words[0], msg, time.time()))


if __name__ == "__main__":
    main()
