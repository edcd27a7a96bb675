#!/usr/bin/env python3
"""kaprobe demo (`make demo`): four short stories told by kaprobed's status log.

  python3 tests/integration/demo.py --kaprobed build/rel/kaprobed --config conf/demo.ini

Builds throw-away namespaces  local -- router -- peer  (192.0.2.0/24, 198.51.100.0/24),
starts kaprobed in "local" with the given config (log_file = - : the status log scrolls
here), then plays: alive, dead, reset, unreachable. Everything is removed at the end, also
on Ctrl-C. Needs root.
"""

import argparse
import configparser
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netns  # noqa: E402
from netns import CaseFailure, Topo, endpoint, routed  # noqa: E402

CASES = ("alive", "dead", "reset", "unreachable")
BOLD = "\033[1m" if sys.stdout.isatty() else ""
PLAIN = "\033[0m" if sys.stdout.isatty() else ""


def say(text):
    print("%s==> %s%s" % (BOLD, text, PLAIN), flush=True)


def duration(text):
    text = text.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * mult
    return float(text)


def read_config(path, topo_local, topo_peer):
    """Each case's port and schedule from the config; checks they fit the topology."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    cp.read(path)
    out = {}
    for name in CASES:
        if name not in cp:
            sys.exit("demo: %s has no [%s] rule" % (path, name))
        sec = cp[name]
        addr, _, port = sec.get("local", "").rpartition(":")
        if addr != topo_local or not port.isdigit():
            sys.exit("demo: [%s] local = %s: the demo needs %s:PORT" % (
                name, sec.get("local"), topo_local))
        if sec.get("remote", "*").strip() not in ("*", topo_peer, "198.51.100.0/24"):
            sys.exit("demo: [%s] remote = %s: the demo's peer is %s" % (
                name, sec.get("remote"), topo_peer))
        out[name] = {"port": int(port), "idle": duration(sec.get("idle", "2s")),
                     "interval": duration(sec.get("interval", "1s")),
                     "probes": int(sec.get("probes", "3"))}
    log_file = cp["global"].get("log_file", "") if "global" in cp else ""
    return out, log_file.strip()


class Demo:
    def __init__(self, topo, net, kap, rules):
        self.topo, self.net, self.kap, self.rules = topo, net, kap, rules
        self.log = kap.log

    def connect(self, name):
        port = self.rules[name]["port"]
        a = self.net[4]
        srv = self.topo.peer(self.net["local"], "server-" + name)
        srv.listen(a["local"], port)
        cli = self.topo.peer(self.net["peer"], "client-" + name)
        c = cli.connect(a["local"], port)
        srv.accept()
        cli.send(64)
        srv.wait_rx(cli.tx)
        srv.send(64)
        cli.wait_rx(srv.tx)
        return srv, cli, endpoint(a["local"], port), endpoint(c["laddr"], int(c["lport"]))

    def wait(self, name, local, remote, event, after=None):
        r = self.rules[name]
        limit = r["idle"] + r["interval"] * r["probes"] + 5
        return self.log.wait_conn(local, remote, event, limit, after=after)

    def alive(self):
        r = self.rules["alive"]
        say("ALIVE: the peer 198.51.100.2 connects to port %d and they exchange a little data."
            % r["port"])
        srv, cli, l, rem = self.connect("alive")
        say("Now the connection is idle. After %gs kaprobed sends a probe; the healthy peer "
            "answers." % r["idle"])
        first = self.wait("alive", l, rem, "alive")
        self.wait("alive", l, rem, "alive", after=first)
        say("Each answer restarts the idle clock. The applications never see the probes:")
        cli.send(100)
        s = srv.wait_rx(cli.tx)
        say("the server received exactly the %s bytes the client sent (bad bytes: %s). Closing."
            % (s["total"], s["bad"]))
        cli.cmd("close")
        srv.wait_err(3)
        srv.cmd("close")
        self.wait("alive", l, rem, "close")

    def dead(self):
        r = self.rules["dead"]
        say("DEAD: a connection on port %d, then the peer drops every packet of it "
            "(a pulled cable, a frozen host)." % r["port"])
        srv, cli, l, rem = self.connect("dead")
        self.topo.nft(self.net["peer"], "\n".join([
            "add table inet kptdemo",
            "add chain inet kptdemo in_c { type filter hook input priority -10; }",
            "add chain inet kptdemo out_c { type filter hook output priority -10; }",
            "add rule inet kptdemo in_c tcp sport %d drop" % r["port"],
            "add rule inet kptdemo out_c tcp dport %d drop" % r["port"],
            ""]))
        say("Nobody answers: %d probes %gs apart, then the verdict (%gs after the last "
            "segment)." % (r["probes"], r["interval"], r["idle"] + r["interval"] * r["probes"]))
        self.wait("dead", l, rem, "dead")
        say("The server program can now drop the connection (its RST ends the record):")
        srv.cmd("abort")
        self.wait("dead", l, rem, "close")

    def reset(self):
        r = self.rules["reset"]
        say("RESET: a connection on port %d; then the peer's socket vanishes without a word "
            "(its RST is lost)." % r["port"])
        srv, cli, l, rem = self.connect("reset")
        peer = self.net["peer"]
        self.topo.nft(peer, "\n".join([
            "add table inet kptdemorst",
            "add chain inet kptdemorst out_c { type filter hook output priority -10; }",
            "add rule inet kptdemorst out_c tcp flags & rst == rst drop",
            ""]))
        cli.cmd("abort")
        self.topo.nft(peer, "delete table inet kptdemorst\n")
        say("The server does not know yet. The next probe draws a RST from the peer's kernel:")
        self.wait("reset", l, rem, "reset")
        e = srv.wait_err(3, expect_ok=False)
        say("and the server program's blocked recv() now fails: %s." % (
            e.get("errno") if e["ok"] else "(no error yet)"))

    def unreachable(self):
        r = self.rules["unreachable"]
        say("UNREACHABLE: a connection on port %d; then the router loses its route to the "
            "peer and answers with ICMP host-unreachable." % r["port"])
        srv, cli, l, rem = self.connect("unreachable")
        self.topo.nft(self.net["router"], "\n".join([
            "add table inet kptdemorej",
            "add chain inet kptdemorej fwd_c { type filter hook forward priority 0; }",
            "add rule inet kptdemorej fwd_c ip daddr 198.51.100.2 tcp sport %d reject with "
            "icmp type host-unreachable" % r["port"],
            ""]))
        say("Every probe is answered by the router (192.0.2.254), not the peer:")
        self.wait("unreachable", l, rem, "unreachable")
        self.wait("unreachable", l, rem, "dead")
        say("Dead, because the last word was the router's ICMP. The server drops it:")
        srv.cmd("abort")
        self.wait("unreachable", l, rem, "close")


def tail(log):
    """Prints a status log file's new lines as they come (when log_file is not "-")."""
    shown = 0
    while True:
        log.poll()
        for e in log.events[shown:]:
            print("    " + e.raw, flush=True)
        shown = len(log.events)
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kaprobed", required=True)
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo: needs root (network namespaces)")
    binary = os.path.abspath(args.kaprobed)
    conf = os.path.abspath(args.config)
    if not os.access(binary, os.X_OK):
        sys.exit("demo: %s: not an executable file (make all)" % args.kaprobed)
    rules, log_file = read_config(conf, "192.0.2.1", "198.51.100.2")
    netns.install_signal_handlers()
    topo = Topo("demo")
    kap = None
    try:
        say("Building namespaces: local (192.0.2.1) -- router -- peer (198.51.100.2).")
        net = routed(topo)
        say("Starting kaprobed in the local namespace with %s." % args.config)
        if log_file == "-":
            kap = topo.kaprobed(binary, net["local"], None, conf_path=conf, log_path="-",
                                echo=lambda line: print("    " + line, flush=True))
        else:
            kap = topo.kaprobed(binary, net["local"], None, conf_path=conf, log_path=log_file)
            say("(status log: %s)" % log_file)
            threading.Thread(target=tail, args=(kap.log,), daemon=True).start()
        d = Demo(topo, net, kap, rules)
        for name in CASES:
            print()
            getattr(d, name)()
        print()
        status = kap.stop()
        say("kaprobed stopped (exit status %s). Removing the namespaces." % status)
        return 0 if status == 0 else 1
    except CaseFailure as e:
        print("demo: %s" % e, file=sys.stderr)
        if kap is not None:
            print(kap.report(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        topo.cleanup()


if __name__ == "__main__":
    sys.exit(main())
