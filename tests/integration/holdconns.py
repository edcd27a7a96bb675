#!/usr/bin/env python3
"""holdconns: opens many idle TCP connections and holds them (run inside a namespace).

  holdconns.py listen ADDR PORT N [--hello]     accept N connections on ADDR:PORT
  holdconns.py connect ADDR PORT N [--hello] [--src A1,A2,...]
                                                open N connections to ADDR:PORT

--hello: each client sends 16 bytes right after its connect, the server reads them and
answers 16 bytes, the client reads the answer (one request and reply per connection, so
that both ends' sequence numbers moved past the handshake). --src: the connections' own
addresses, in turn (IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect time, so
each address has a whole port range per server port).

Prints "ready n=N t=..." (logfmt, t = wall clock when the last one was up), then holds
every socket, sending nothing, until standard input closes or says "quit"; then exits
(the sockets close with it). Errors: "err msg=... n=<how many were up>" and exit 1.
While holding, standard input may also say "spread SECS": one byte is sent on every
connection, one after another, evenly over SECS seconds; "spread done n=N t=..." after.
One process may hold at most 20 000 descriptors on this machine: spread larger numbers
over several processes.
"""

import resource
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h
HELLO = b"k" * 16


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 16:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        b = s.recv(n - len(got))
        if not b:
            raise OSError("connection closed during the hello")
        got += b
    return got


def spread(held, secs):
    t0 = time.monotonic()
    for i, s in enumerate(held):
        delay = t0 + secs * i / max(len(held), 1) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            s.send(b"s")
        except OSError:
            pass  # a silenced or reset connection: its sender's problem, not ours
    print("spread done n=%d t=%.6f" % (len(held), time.time()), flush=True)


def main():
    args = sys.argv[1:]
    hello = "--hello" in args
    if hello:
        args.remove("--hello")
    srcs = []
    if "--src" in args:
        i = args.index("--src")
        srcs = args[i + 1].split(",")
        del args[i:i + 2]
    mode, addr, port, n = args[0], args[1], int(args[2]), int(args[3])
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
                if hello:
                    recv_exact(s, len(HELLO))
                    s.sendall(HELLO)
            ls.close()
        else:
            for i in range(n):
                s = socket.socket(fam, socket.SOCK_STREAM)
                if srcs:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind((srcs[i % len(srcs)], 0))
                s.connect((addr, port))
                held.append(s)
                if hello:
                    s.sendall(HELLO)
            if hello:
                for s in held:
                    recv_exact(s, len(HELLO))
    except OSError as e:
        print('err msg="%s" n=%d' % (str(e).replace('"', "'"), len(held)), flush=True)
        return 1
    print("ready n=%d t=%.6f" % (len(held), time.time()), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words == ["quit"]:
            break
        if len(words) == 2 and words[0] == "spread":
            spread(held, float(words[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
