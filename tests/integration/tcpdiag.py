#!/usr/bin/env python3
"""tcpdiag: the kernel's view of every established TCP socket of this namespace, through
NETLINK_SOCK_DIAG with tcp_info (what `ss -ti` reads), run inside a namespace.

  tcpdiag.py [4|6]

Prints one line per established socket:
  LOCAL REMOTE LAST_RX UNACKED
LOCAL and REMOTE as kaprobed's status log writes them (a.b.c.d:port, [v6]:port), LAST_RX
the wall-clock moment the socket last received a segment (min of tcpi_last_data_recv and
tcpi_last_ack_recv, both "ms ago", taken from the moment the kernel filled that part of
the dump), UNACKED tcpi_unacked. Then "done n=N". The dump is read in one pass: 100 000
sockets in well under a second.

A netlink dump is filled lazily: the first batch while the request is sent, each next
batch inside the recv() that returned the previous one. The reference moment of a batch
is therefore the wall clock right after the call that filled it (exact to the time that
call took to return, a few microseconds), not after the recv() that returns it.
"""

import socket
import struct
import sys
import time

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2
TCP_ESTABLISHED = 1
NLMSG_HDR = struct.Struct("=IHHII")
# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked (24),
# sacked, lost, retrans, fackets, last_data_sent, last_ack_sent, last_data_recv (52),
# last_ack_recv (56).
TI_UNACKED, TI_LAST_DATA_RECV, TI_LAST_ACK_RECV = 24, 52, 56


def endpoint(fam, raw, port):
    if fam == socket.AF_INET:
        return "%s:%d" % (socket.inet_ntop(fam, raw[:4]), port)
    return "[%s]:%d" % (socket.inet_ntop(fam, raw), port)


def dump(fam):
    """Yields (local, remote, last_rx, unacked) for every established socket of family fam."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    req = struct.pack("=BBBBI", fam, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0,
                      1 << TCP_ESTABLISHED) + bytes(48)
    s.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(req), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req)
    filled = time.time()  # the first batch was made during send()
    try:
        while True:
            data = s.recv(1 << 20)
            t_ref, filled = filled, time.time()
            off = 0
            while off + NLMSG_HDR.size <= len(data):
                ln, typ = NLMSG_HDR.unpack_from(data, off)[:2]
                if typ == NLMSG_DONE:
                    return
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    raise OSError(-err, "sock_diag dump failed")
                m = off + NLMSG_HDR.size
                f = data[m]
                sport, dport = struct.unpack_from(">HH", data, m + 4)
                local = endpoint(f, data[m + 8:m + 24], sport)
                remote = endpoint(f, data[m + 24:m + 40], dport)
                a, end = m + 72, off + ln  # inet_diag_msg is 72 bytes, then attributes
                while a + 4 <= end:
                    alen, atyp = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atyp == INET_DIAG_INFO and alen >= 4 + TI_LAST_ACK_RECV + 4:
                        i = a + 4
                        unacked = struct.unpack_from("=I", data, i + TI_UNACKED)[0]
                        ldr, lar = struct.unpack_from("=II", data, i + TI_LAST_DATA_RECV)
                        yield local, remote, t_ref - min(ldr, lar) / 1000.0, unacked
                    a += (alen + 3) & ~3
                off += (ln + 3) & ~3
    finally:
        s.close()


def main():
    fam = socket.AF_INET6 if sys.argv[1:] == ["6"] else socket.AF_INET
    out = sys.stdout
    n = 0
    for local, remote, last_rx, unacked in dump(fam):
        out.write("%s %s %.4f %d\n" % (local, remote, last_rx, unacked))
        n += 1
    out.write("done n=%d\n" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
