#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into OUTDIR/<target>/ (make fuzz runs it).

codec: every frame of tests/fixtures/*.pcap, as the target reads it (a link-type byte,
two bytes of wire length beyond the captured bytes, the frame). config: the shipped and
test configurations. diag, ifaddr, actmsg: netlink datagrams as the kernel sends them
(sequence number 1, the target's). statusview: tests/fuzz/corpus/statusview is committed.
"""
import glob
import os
import shutil
import socket
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
LINK_SELECTOR = {1: 0, 12: 1, 113: 2, 276: 3, 14: 4, 101: 5}
SEQ = 1


def write(outdir, target, name, data):
    d = os.path.join(outdir, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pcap_frames(path):
    """(linktype, caplen, wirelen, bytes) of each record of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, wirelen = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        yield linktype, caplen, wirelen, data[off:off + caplen]
        off += caplen


def codec_seeds(outdir):
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/*.pcap"))):
        base = os.path.basename(path)[:-5]
        for i, (lt, caplen, wirelen, frame) in enumerate(pcap_frames(path)):
            if lt not in LINK_SELECTOR:
                continue
            extra = min(max(wirelen - caplen, 0), 0xFFFF)
            write(outdir, "codec", "%s-%02d" % (base, i),
                  bytes([LINK_SELECTOR[lt]]) + struct.pack(">H", extra) + frame)


def config_seeds(outdir):
    paths = glob.glob(os.path.join(ROOT, "conf/*.ini"))
    paths += glob.glob(os.path.join(ROOT, "tests/configs/*/*.ini"))
    os.makedirs(os.path.join(outdir, "config"), exist_ok=True)
    for path in sorted(paths):
        name = os.path.basename(os.path.dirname(path)) + "-" + os.path.basename(path)
        shutil.copyfile(path, os.path.join(outdir, "config", name))


def nlmsg(mtype, payload, seq=SEQ, flags=0, pid=0):
    """One netlink message, padded to 4 bytes."""
    n = 16 + len(payload)
    msg = struct.pack("=IHHII", n, mtype, flags, seq, pid) + payload
    return msg + b"\0" * ((-len(msg)) % 4)


def rtattr(rtype, payload):
    a = struct.pack("=HH", 4 + len(payload), rtype) + payload
    return a + b"\0" * ((-len(a)) % 4)


def diag_msg(family, state, sport, dport, src, dst, cookie=(0x1234, 0)):
    """struct inet_diag_msg (72 bytes)."""
    a = socket.inet_pton(family, src).ljust(16, b"\0")
    b = socket.inet_pton(family, dst).ljust(16, b"\0")
    return (struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport)
            + a + b + struct.pack("=III", 0, cookie[0], cookie[1])
            + struct.pack("=IIIII", 0, 0, 0, 1000, 4242))


def tcp_info():
    """A 232-byte struct tcp_info: state ESTABLISHED, some idle times."""
    info = bytearray(232)
    info[0] = 1
    struct.pack_into("=I", info, 52, 1500)  # tcpi_last_data_recv
    struct.pack_into("=I", info, 60, 1400)  # tcpi_last_ack_recv
    return bytes(info)


def error_msg(err, seq=SEQ):
    return nlmsg(2, struct.pack("=i", err) + struct.pack("=IHHII", 72, 20, 1, seq, 0))


def ct_tuple(ttype, src, dst, sport, dport):
    """A ctnetlink CTA_TUPLE_ORIG or _REPLY (nested), IPv4 TCP."""
    ip = rtattr(1, socket.inet_aton(src)) + rtattr(2, socket.inet_aton(dst))
    proto = (rtattr(1, bytes([6])) + rtattr(2, struct.pack(">H", sport))
             + rtattr(3, struct.pack(">H", dport)))
    return rtattr(0x8000 | ttype, rtattr(0x8001, ip) + rtattr(0x8002, proto))


def ct_entry(mtype, seq):
    """A conntrack entry message (NFNL_SUBSYS_CTNETLINK << 8 | mtype's low byte)."""
    body = (struct.pack("=BBH", socket.AF_INET, 0, 0)
            + ct_tuple(1, "198.51.100.2", "192.0.2.1", 40000, 5432)
            + ct_tuple(2, "192.0.2.1", "198.51.100.2", 5432, 40000)
            + rtattr(3, struct.pack(">I", 0x8e)) + rtattr(7, struct.pack(">I", 431990)))
    return nlmsg(mtype, body, seq=seq)


def netlink_seeds(outdir):
    v4 = diag_msg(socket.AF_INET, 1, 5432, 40000, "192.0.2.1", "192.0.2.2")
    v6 = diag_msg(socket.AF_INET6, 1, 443, 50000, "2001:db8::1", "2001:db8::2")
    info = rtattr(2, tcp_info())  # INET_DIAG_INFO
    done = nlmsg(3, struct.pack("=i", 0), flags=2)
    write(outdir, "diag", "two-sockets", nlmsg(20, v4 + info, flags=2) + nlmsg(20, v6 + info, flags=2))
    write(outdir, "diag", "done", nlmsg(20, v4 + info, flags=2) + done)
    write(outdir, "diag", "error", error_msg(-1))
    write(outdir, "diag", "no-info", nlmsg(20, v4, flags=2) + done)
    write(outdir, "actmsg", "found", nlmsg(20, v4))
    write(outdir, "actmsg", "listener", nlmsg(20, diag_msg(socket.AF_INET, 10, 5432, 0, "192.0.2.1", "0.0.0.0")))
    write(outdir, "actmsg", "ack", error_msg(0))
    write(outdir, "actmsg", "enoent", error_msg(-2))
    write(outdir, "actmsg", "two", error_msg(0, seq=7) + error_msg(-1))
    ev = ct_entry(0x0102, 0)  # IPCTNL_MSG_CT_DELETE: a destroy event
    write(outdir, "actmsg", "ct-destroy", ev + ev)
    write(outdir, "actmsg", "ct-dump", ct_entry(0x0100, SEQ) + nlmsg(3, struct.pack("=i", 0),
                                                                    flags=2))
    for name, mtype, fam, addr, local in (
            ("new4", 20, socket.AF_INET, "192.0.2.1", None),
            ("del4", 21, socket.AF_INET, "192.0.2.1", None),
            ("ptp4", 20, socket.AF_INET, "10.9.9.9", "10.0.0.1"),
            ("new6", 20, socket.AF_INET6, "2001:db8::1", None)):
        body = struct.pack("=BBBBI", fam, 24, 0, 0, 2) + rtattr(1, socket.inet_pton(fam, addr))
        if local:
            body += rtattr(2, socket.inet_pton(fam, local))
        write(outdir, "ifaddr", name, nlmsg(mtype, body))


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    codec_seeds(outdir)
    config_seeds(outdir)
    netlink_seeds(outdir)


if __name__ == "__main__":
    main()
