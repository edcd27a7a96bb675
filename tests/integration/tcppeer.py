#!/usr/bin/env python3
"""tcppeer: one end of a TCP connection, driven by line commands on standard input.

Run inside a namespace (ip netns exec NS python3 tcppeer.py NAME). Every command gets
exactly one answer line starting with "ok" or "err", in logfmt, with t= (wall clock,
seconds since the epoch). Bytes sent follow a pattern that never contains 0x00 (stream
offset i carries 1 + i % 251), so the receiver checks every byte: a probe's 0x00 byte
reaching the application would show as bad=.

Commands:
  listen ADDR PORT            listening socket
  accept TIMEOUT              accept one connection (then its receive thread starts)
  connect ADDR PORT TIMEOUT   connect (then its receive thread starts)
  keepalive IDLE INTVL CNT    SO_KEEPALIVE with TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT
  send N                      send N pattern bytes
  stream N INTERVAL_MS SECS   send N bytes every INTERVAL_MS for SECS; t_last= last send
  wait_rx TOTAL TIMEOUT       wait until TOTAL bytes were received in all; t= when they were
  wait_err TIMEOUT            wait until the receive thread ends (error or end of stream)
  stats                       tx= rx= bad= error=
  info                        a few tcp_info fields (state, unacked, retransmits, ...)
  rcvbuf N                    SO_RCVBUF for the sockets made from now on (before listen or
                              connect): a small window that a paused reader shuts quickly
  pause                       the program stops reading (its receive window fills and shuts)
  resume                      it reads again
  trickle N MS                from now on, read at most N bytes every MS ms (0 0: at once)
  send_bg N                   send N pattern bytes from a thread (a send that blocks on a
                              shut window); ev=sent total= when done, ev=send_error on error
  abort                       SO_LINGER {1,0} and close: the kernel sends a RST
  close                       plain close: FIN
  icmp_open 4|6               raw ICMP socket, for checking what a router sends back
  icmp_wait TYPE CODE COUNT TIMEOUT   wait for COUNT ICMP messages of that type and code
  quit
The receive thread reports on its own, as "ev" lines: ev=data, ev=eof, ev=error.
"""

import errno
import os
import select
import socket
import struct
import sys
import threading
import time

NAME = sys.argv[1] if len(sys.argv) > 1 else "peer"
_out = threading.Lock()


def now():
    return time.time()


def emit(line):
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def errname(e):
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


_BLOCK = bytes(1 + (i % 251) for i in range(251 * 1045))  # ~256 KiB, whole periods


def pattern(offset, n):
    """Stream bytes offset .. offset+n (1 + i % 251: never 0x00), from a cached block."""
    start = offset % 251
    if start + n <= len(_BLOCK):
        return _BLOCK[start:start + n]
    reps = (start + n) // len(_BLOCK) + 1
    return (_BLOCK * reps)[start:start + n]


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.tx = 0
        self.rx = 0
        self.bad = 0
        self.rx_t = None      # when the last bytes arrived
        self.error = None     # errno name, or "eof"
        self.error_t = None
        self.cond = threading.Condition()
        self.wake_r, self.wake_w = os.pipe()
        self.stop = False
        self.may_read = threading.Event()
        self.may_read.set()
        self.chunk, self.chunk_ms = 65536, 0
        self.thread = threading.Thread(target=self.reader, daemon=True)
        self.thread.start()

    def reader(self):
        """Receives until error or end of stream; waits in poll() so that the socket can
        be closed from the main thread without a recv() holding on to it."""
        p = select.poll()
        p.register(self.sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        p.register(self.wake_r, select.POLLIN)
        while True:
            while not self.may_read.wait(0.05):
                if self.stop:
                    return
            ready = dict(p.poll())
            if self.wake_r in ready or self.stop:
                return
            if self.chunk_ms:
                time.sleep(self.chunk_ms / 1000.0)
            try:
                data = self.sock.recv(self.chunk, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError as e:
                with self.cond:
                    self.error, self.error_t = errname(e), now()
                    self.cond.notify_all()
                emit("ev=error errno=%s t=%.6f" % (self.error, self.error_t))
                return
            t = now()
            if not data:
                with self.cond:
                    self.error, self.error_t = "eof", t
                    self.cond.notify_all()
                emit("ev=eof t=%.6f" % t)
                return
            # Answer at once (no delayed ACK): the test's notion of "last segment from
            # this side" is then the moment the data was read.
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass
            with self.cond:
                exp = pattern(self.rx, len(data))
                if data != exp:
                    self.bad += sum(1 for a, b in zip(data, exp) if a != b)
                self.rx += len(data)
                self.rx_t = t
                self.cond.notify_all()
            emit("ev=data n=%d total=%d t=%.6f" % (len(data), self.rx, t))

    def halt_reader(self):
        self.stop = True
        self.may_read.set()
        os.write(self.wake_w, b"x")
        self.thread.join(5)

    def send(self, n):
        while n > 0:  # in pieces: a bulk send never holds gigabytes in memory
            k = min(n, 1 << 20)
            self.sock.sendall(pattern(self.tx, k))
            self.tx += k
            n -= k


class Peer:
    def __init__(self):
        self.lsock = None
        self.conn = None
        self.rcvbuf = 0
        self.icmp = None
        self.icmp_family = 4

    def need_conn(self):
        if self.conn is None:
            raise RuntimeError("no connection")
        return self.conn

    def describe(self, s):
        la, ra = s.getsockname(), s.getpeername()
        return "laddr=%s lport=%d raddr=%s rport=%d" % (la[0], la[1], ra[0], ra[1])

    def c_listen(self, addr, port):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.bind((addr, int(port)))
        s.listen(16)
        self.lsock = s
        return "listening=%s:%s" % (addr, port)

    def c_accept(self, timeout):
        self.lsock.settimeout(float(timeout))
        s, _ = self.lsock.accept()
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Conn(s)
        return self.describe(s)

    def c_connect(self, addr, port, timeout):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.settimeout(float(timeout))
        s.connect((addr, int(port)))
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Conn(s)
        return self.describe(s)

    def c_keepalive(self, idle, intvl, cnt):
        s = self.need_conn().sock
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(idle))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(intvl))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, int(cnt))
        return "keepalive=%s/%s/%s" % (idle, intvl, cnt)

    def c_send(self, n):
        c = self.need_conn()
        c.send(int(n))
        return "n=%s total=%d" % (n, c.tx)

    def c_stream(self, n, interval_ms, secs):
        c = self.need_conn()
        end = time.monotonic() + float(secs)
        sends = 0
        t_last = None
        while time.monotonic() < end:
            c.send(int(n))
            t_last = now()
            sends += 1
            time.sleep(float(interval_ms) / 1000.0)
        return "sends=%d total=%d t_last=%.6f" % (sends, c.tx, t_last)

    def c_wait_rx(self, total, timeout):
        c = self.need_conn()
        total = int(total)
        deadline = time.monotonic() + float(timeout)
        with c.cond:
            while c.rx < total and c.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timeout total=%d want=%d" % (c.rx, total))
                c.cond.wait(left)
            if c.rx < total:
                raise RuntimeError("stream ended errno=%s total=%d want=%d" % (
                    c.error, c.rx, total))
            return "total=%d bad=%d rx_t=%.6f" % (c.rx, c.bad, c.rx_t)

    def c_wait_err(self, timeout):
        c = self.need_conn()
        deadline = time.monotonic() + float(timeout)
        with c.cond:
            while c.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("timeout no-error total=%d" % c.rx)
                c.cond.wait(left)
            return "errno=%s err_t=%.6f total=%d" % (c.error, c.error_t, c.rx)

    def c_stats(self):
        c = self.need_conn()
        with c.cond:
            return "tx=%d rx=%d bad=%d error=%s" % (c.tx, c.rx, c.bad, c.error or "none")

    def c_info(self):
        s = self.need_conn().sock
        b = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        state, ca_state, retransmits, probes, backoff = struct.unpack_from("5B", b, 0)
        u = struct.unpack_from("13I", b, 8)
        return ("state=%d retransmits=%d probes=%d unacked=%d retrans=%d last_data_sent=%d "
                "last_data_recv=%d last_ack_recv=%d" % (
                    state, retransmits, probes, u[4], u[7], u[9], u[11], u[12]))

    def c_rcvbuf(self, n):
        self.rcvbuf = int(n)
        return "rcvbuf=%d" % self.rcvbuf

    def c_pause(self):
        self.need_conn().may_read.clear()
        return "paused=1"

    def c_resume(self):
        self.need_conn().may_read.set()
        return "paused=0"

    def c_trickle(self, n, ms):
        c = self.need_conn()
        c.chunk, c.chunk_ms = (int(n) or 65536), int(ms)
        return "chunk=%d ms=%d" % (c.chunk, c.chunk_ms)

    def c_send_bg(self, n):
        c = self.need_conn()

        def sender():
            try:
                c.send(int(n))
                emit("ev=sent total=%d t=%.6f" % (c.tx, now()))
            except OSError as e:
                emit("ev=send_error errno=%s t=%.6f" % (errname(e), now()))
        threading.Thread(target=sender, daemon=True).start()
        return "n=%s" % n

    def c_abort(self):
        c = self.need_conn()
        c.halt_reader()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        return "aborted=1"

    def c_close(self):
        c = self.need_conn()
        c.halt_reader()
        c.sock.close()
        return "closed=1"

    def c_icmp_open(self, fam):
        if fam == "6":
            self.icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self.icmp_family = 6
        else:
            self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.icmp_family = 4
        return "icmp=%s" % fam

    def c_icmp_wait(self, typ, code, count, timeout):
        typ, code, count = int(typ), int(code), int(count)
        deadline = time.monotonic() + float(timeout)
        got, src, quoted = 0, "", ""
        while got < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("timeout got=%d want=%d" % (got, count))
            r, _, _ = select.select([self.icmp], [], [], left)
            if not r:
                continue
            data, addr = self.icmp.recvfrom(4096)
            if self.icmp_family == 4:
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) >= 2 and data[0] == typ and data[1] == code:
                got += 1
                src = addr[0]
        return "got=%d from=%s" % (got, src)


def main():
    peer = Peer()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        fn = getattr(peer, "c_" + words[0], None)
        if fn is None:
            emit("err cmd=%s msg=unknown-command t=%.6f" % (words[0], now()))
            continue
        try:
            res = fn(*words[1:])
            emit("ok cmd=%s %s t=%.6f" % (words[0], res, now()))
        except Exception as e:
            msg = str(e).replace('"', "'")
            emit('err cmd=%s errno=%s msg="%s" t=%.6f' % (words[0], errname(e), msg, now()))


if __name__ == "__main__":
    main()
