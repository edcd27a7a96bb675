#!/usr/bin/env python3
"""holdconns: opens many idle TCP connections and holds them (run inside a namespace).

  holdconns.py listen ADDR PORT N    accept N connections on ADDR:PORT
  holdconns.py connect ADDR PORT N   open N connections to ADDR:PORT

Prints "ready n=N t=..." (logfmt, t = wall clock when the last one was up), then holds
every socket, sending nothing, until standard input closes or says "quit"; then exits
(the sockets close with it). Errors: "err msg=... n=<how many were up>" and exit 1.
One process may hold at most 20 000 descriptors on this machine: spread larger numbers
over several processes.
"""

import resource
import socket
import sys
import time


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 16:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    mode, addr, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    raise_fd_limit(n)
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    held = []
    try:
        if mode == "listen":
            ls = socket.socket(fam, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((addr, port))
            ls.listen(min(n, 65535))
            print("listening t=%.6f" % time.time(), flush=True)
            while len(held) < n:
                s, _ = ls.accept()
                held.append(s)
            ls.close()
        else:
            for _ in range(n):
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.connect((addr, port))
                held.append(s)
    except OSError as e:
        print('err msg="%s" n=%d' % (str(e).replace('"', "'"), len(held)), flush=True)
        return 1
    print("ready n=%d t=%.6f" % (len(held), time.time()), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
