#!/usr/bin/env python3
"""connload: many short TCP connections, for tests that need many status lines fast.

  connload.py server ADDR PORT          accept connections; close each at the peer's FIN
  connload.py client ADDR PORT COUNT [RATE]
                                        open COUNT connections one after another (at most
                                        RATE per second when given), each closed by the
                                        client first (so its 4-tuple sits in TIME_WAIT
                                        here and is never reused)

The server prints "listening" once ready. The client prints "done ports=P1,P2,... t=T"
(its local ports, in order; T = wall clock at the end) or "error ..." and exits 1.
"""

import selectors
import socket
import sys
import time


def server(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1024)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()


def client(addr, port, count, rate):
    ports = []
    t0 = time.monotonic()
    for i in range(count):
        if rate > 0:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        try:
            s = socket.create_connection((addr, port), timeout=5)
        except OSError as e:
            print("error connect: %s after %d connections" % (e, len(ports)), flush=True)
            return 1
        ports.append(s.getsockname()[1])
        s.close()
    print("done ports=%s t=%.6f" % (",".join(map(str, ports)), time.time()), flush=True)
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
        return 0
    if len(sys.argv) >= 5 and sys.argv[1] == "client":
        rate = float(sys.argv[5]) if len(sys.argv) >= 6 else 0.0
        return client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), rate)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
