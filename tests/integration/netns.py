"""Helpers for kaprobe's integration tests: network namespaces, veth links, addresses,
nft rulesets, child processes, kaprobed itself and its status log (logfmt).

Standard library only. Everything a test creates is registered here and removed by
Topo.cleanup() (called from the test's finally) and, as a last resort, at exit.
Traffic only ever goes between namespaces created here (192.0.2.0/24, 198.51.100.0/24,
2001:db8::/32) or over their loopback.
"""

import atexit
import calendar
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TCPPEER = os.path.join(HERE, "tcppeer.py")
PREFIX = "kpt%d-" % os.getpid()


class CaseFailure(Exception):
    """A test expectation that did not hold. The message says what was expected."""


class CaseSkip(Exception):
    """The case cannot run here (e.g. its inputs do not exist yet)."""


def fail(msg):
    raise CaseFailure(msg)


def check(cond, msg):
    if not cond:
        raise CaseFailure(msg)


# --------------------------------------------------------------------------------------
# Commands

def run(argv, ns=None, input=None, check=True, timeout=20, cwd=None):
    """Runs a command (inside namespace ns when given); returns CompletedProcess (text)."""
    if ns is not None:
        argv = ["ip", "netns", "exec", ns] + list(argv)
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                       cwd=cwd)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s%s" % (
            p.returncode, " ".join(argv), p.stdout, p.stderr))
    return p


# --------------------------------------------------------------------------------------
# Process registry: every process and namespace we create, for the last-resort cleanup.

_live_topos = set()
_lock = threading.Lock()


def _atexit_cleanup():
    for t in list(_live_topos):
        try:
            t.cleanup()
        except Exception as e:  # keep going: remove as much as we can
            print("cleanup: %s" % e, file=sys.stderr)


atexit.register(_atexit_cleanup)


def install_signal_handlers():
    """SIGINT/SIGTERM/SIGHUP become KeyboardInterrupt so that every finally block runs
    (SIGINT too: a shell starts background jobs with SIGINT ignored)."""
    def handler(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


class Proc:
    """A child process with its stdout/stderr read line by line by background threads.

    Lines are kept (for printing on failure) and can be waited for with a deadline.
    Children get their own session, so Ctrl-C reaches only the harness, which cleans up."""

    def __init__(self, argv, name, stdin=True, echo=None):
        self.name = name
        self.argv = argv
        self.out = []    # (time, line)
        self.err = []
        self._cond = threading.Condition()
        self.echo = echo  # callable(line) for stdout lines, or None
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            start_new_session=True)
        self.pid = self.p.pid
        self._threads = [
            threading.Thread(target=self._reader, args=(self.p.stdout, self.out, True), daemon=True),
            threading.Thread(target=self._reader, args=(self.p.stderr, self.err, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _reader(self, f, store, is_out):
        for line in f:
            line = line.rstrip("\n")
            with self._cond:
                store.append((time.time(), line))
                self._cond.notify_all()
            if is_out and self.echo:
                self.echo(line)
        with self._cond:
            self._cond.notify_all()

    def write(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def alive(self):
        return self.p.poll() is None

    def wait_line(self, pred, timeout, what, stream="out", start=0):
        """Waits until a line of stdout (or stderr) from index `start` satisfies pred.
        Returns (index, line). Fails with `what` at the deadline or when the process ends."""
        store = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(store):
                    if pred(store[i][1]):
                        return i, store[i][1]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("%s: timed out after %.1f s waiting for %s" % (self.name, timeout, what))
                if self.p.poll() is not None and all(not t.is_alive() for t in self._threads):
                    fail("%s: exited (status %s) while waiting for %s" % (
                        self.name, self.p.returncode, what))
                self._cond.wait(min(left, 0.05))

    def text(self, stream="err"):
        store = self.out if stream == "out" else self.err
        with self._cond:
            return "\n".join(l for _, l in store)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig (by pid, only to this process) and waits; SIGKILL after timeout.
        Returns the exit status (negative: killed by a signal)."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        for t in self._threads:
            t.join(1)
        for f in (self.p.stdin,):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        return self.p.returncode


# --------------------------------------------------------------------------------------
# TCP peer programs (tcppeer.py) driven line by line

class TcpPeer:
    """Drives a tcppeer.py process. Every command answers one line starting with ok or err."""

    def __init__(self, topo, ns, name):
        self.name = name
        self.ns = ns
        self.proc = topo.spawn(ns, [sys.executable, "-u", TCPPEER, name], name)
        self.tx = 0  # bytes this side sent in all

    def cmd(self, line, timeout=10.0, expect_ok=True):
        """Sends a command; returns the answer's fields as a dict plus 'ok' and 'words'."""
        start = len(self.proc.out)
        self.proc.write(line)
        i, reply = self.proc.wait_line(lambda l: l.startswith("ok ") or l.startswith("err "),
                                       timeout + 5, "answer to %r" % line, start=start)
        res = parse_logfmt(reply)
        res["ok"] = reply.startswith("ok ")
        res["line"] = reply
        if expect_ok and not res["ok"]:
            fail("%s: %r answered %r" % (self.name, line, reply))
        return res

    # Conveniences
    def listen(self, addr, port):
        return self.cmd("listen %s %d" % (addr, port))

    def accept(self, timeout=5):
        return self.cmd("accept %g" % timeout, timeout)

    def connect(self, addr, port, timeout=5):
        return self.cmd("connect %s %d %g" % (addr, port, timeout), timeout)

    def send(self, n):
        r = self.cmd("send %d" % n)
        self.tx += n
        return r

    def wait_rx(self, total, timeout=5, expect_ok=True):
        return self.cmd("wait_rx %d %g" % (total, timeout), timeout, expect_ok)

    def wait_err(self, timeout, expect_ok=True):
        return self.cmd("wait_err %g" % timeout, timeout, expect_ok)

    def stats(self):
        return self.cmd("stats")

    def close(self):
        self.proc.write("quit")
        self.proc.stop()


# --------------------------------------------------------------------------------------
# Topology

class Topo:
    """Namespaces, links, rules and processes of one test; cleanup() removes them all."""

    def __init__(self, case):
        self.case = case
        self.namespaces = []
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="%s%s." % (PREFIX, case))
        # kaprobed drops to an unprivileged user (RUN_USER) after start-up: it must still
        # reach and write its files here (status log reopen, state and metrics files).
        os.chmod(self.tmp, 0o1777)
        self._cleaned = False
        _live_topos.add(self)

    # Namespaces --------------------------------------------------------------------
    def netns(self, role):
        name = "%s%s-%s" % (PREFIX, self.case, role)
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        # No duplicate address detection: addresses are usable at once.
        self.sysctl(name, "net.ipv6.conf.all.accept_dad", 0)
        self.sysctl(name, "net.ipv6.conf.default.accept_dad", 0)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def sysctl(self, ns, key, value):
        run(["sysctl", "-q", "-w", "%s=%s" % (key, value)], ns=ns)

    def link(self, ns1, if1, ns2, if2):
        """A veth pair ns1/if1 <-> ns2/if2, both up. Created inside ns1 so names never
        collide with anything in the root namespace."""
        run(["ip", "-n", ns1, "link", "add", if1, "type", "veth", "peer", "name", if2,
             "netns", ns2])
        for ns, ifn in ((ns1, if1), (ns2, if2)):
            self.sysctl(ns, "net.ipv6.conf.%s.accept_dad" % ifn, 0)
            run(["ip", "-n", ns, "link", "set", ifn, "up"])

    def addr(self, ns, ifname, cidr):
        argv = ["ip", "-n", ns, "addr", "add", cidr, "dev", ifname]
        if ":" in cidr:
            argv.append("nodad")
        run(argv)

    def route(self, ns, dest, via):
        argv = ["ip", "-n", ns]
        if ":" in via:
            argv.append("-6")
        run(argv + ["route", "add", dest, "via", via])

    def nft(self, ns, text):
        """Loads an nft script (one statement per line) in ns."""
        run(["nft", "-f", "-"], ns=ns, input=text)

    # Processes ---------------------------------------------------------------------
    def spawn(self, ns, argv, name, stdin=True, echo=None):
        full = ["ip", "netns", "exec", ns] + list(argv) if ns else list(argv)
        p = Proc(full, name, stdin=stdin, echo=echo)
        self.procs.append(p)
        return p

    def peer(self, ns, name):
        return TcpPeer(self, ns, name)

    def kaprobed(self, binary, ns, conf_text, name="kaprobed", timeout=5.0, **kw):
        return Kaprobed(self, binary, ns, conf_text, name, timeout, **kw)

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        for p in reversed(self.procs):
            try:
                p.stop(signal.SIGTERM, 2.0)
            except Exception as e:
                print("cleanup %s: %s" % (p.name, e), file=sys.stderr)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        _live_topos.discard(self)


def two_hosts(topo):
    """local <-> peer on one veth link, dual stack. Returns a dict of names and addresses."""
    local = topo.netns("local")
    peer = topo.netns("peer")
    topo.link(local, "eth0", peer, "eth0")
    topo.addr(local, "eth0", "192.0.2.1/24")
    topo.addr(peer, "eth0", "192.0.2.2/24")
    topo.addr(local, "eth0", "2001:db8::1/64")
    topo.addr(peer, "eth0", "2001:db8::2/64")
    return {"local": local, "peer": peer,
            4: {"local": "192.0.2.1", "peer": "192.0.2.2"},
            6: {"local": "2001:db8::1", "peer": "2001:db8::2"}}


def routed(topo):
    """local <-> router <-> peer, dual stack, router forwarding with ICMP rate limits off."""
    local = topo.netns("local")
    router = topo.netns("router")
    peer = topo.netns("peer")
    topo.link(local, "eth0", router, "eth0")
    topo.link(router, "eth1", peer, "eth0")
    topo.addr(local, "eth0", "192.0.2.1/24")
    topo.addr(router, "eth0", "192.0.2.254/24")
    topo.addr(router, "eth1", "198.51.100.254/24")
    topo.addr(peer, "eth0", "198.51.100.2/24")
    topo.addr(local, "eth0", "2001:db8:1::1/64")
    topo.addr(router, "eth0", "2001:db8:1::fe/64")
    topo.addr(router, "eth1", "2001:db8:2::fe/64")
    topo.addr(peer, "eth0", "2001:db8:2::2/64")
    topo.route(local, "198.51.100.0/24", "192.0.2.254")
    topo.route(peer, "192.0.2.0/24", "198.51.100.254")
    topo.route(local, "2001:db8:2::/64", "2001:db8:1::fe")
    topo.route(peer, "2001:db8:1::/64", "2001:db8:2::fe")
    topo.sysctl(router, "net.ipv4.ip_forward", 1)
    topo.sysctl(router, "net.ipv4.icmp_ratelimit", 0)
    topo.sysctl(router, "net.ipv6.conf.all.forwarding", 1)
    topo.sysctl(router, "net.ipv6.icmp.ratelimit", 0)
    return {"local": local, "router": router, "peer": peer,
            4: {"local": "192.0.2.1", "peer": "198.51.100.2", "router": "192.0.2.254"},
            6: {"local": "2001:db8:1::1", "peer": "2001:db8:2::2", "router": "2001:db8:1::fe"}}


def endpoint(addr, port):
    """How the status log writes an endpoint: a.b.c.d:port or [v6]:port."""
    return "[%s]:%d" % (addr, port) if ":" in addr else "%s:%d" % (addr, port)


# --------------------------------------------------------------------------------------
# logfmt

_LOGFMT = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    """key=value pairs of a logfmt line; quoted values unquoted (\\" and \\\\ undone)."""
    out = {}
    for m in _LOGFMT.finditer(line):
        k, v = m.group(1), m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[k] = v
    return out


def parse_ts(ts):
    """2026-11-22T12:00:00.123Z -> seconds since the epoch (float), or None."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", ts or "")
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + frac


class Event(dict):
    """One status line: its fields, plus .raw and .t (ts as epoch seconds)."""

    def __init__(self, raw):
        super().__init__(parse_logfmt(raw))
        self.raw = raw
        self.t = parse_ts(self.get("ts"))

    def num(self, key):
        try:
            return float(self[key])
        except (KeyError, ValueError):
            fail("status line lacks a numeric %s=: %s" % (key, self.raw))


class LineTail:
    """The complete lines appended to a growing file since the last call (the last, not
    yet ended line is kept in `partial`). errors: how undecodable bytes are handled."""

    def __init__(self, path, errors="strict"):
        self.path = path
        self.errors = errors
        self.partial = ""
        self._pos = 0

    def lines(self):
        try:
            with open(self.path, "r", encoding="utf-8", errors=self.errors) as f:
                f.seek(self._pos)
                data = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return []
        *lines, self.partial = (self.partial + data).split("\n")
        return lines


class StatusLog:
    """Reads a growing status log (a file, or a Proc's stdout) and waits for lines."""

    def __init__(self, path=None, proc=None):
        self.path = path
        self.proc = proc
        self.events = []
        self._tail = LineTail(path, errors="replace") if path else None
        self._lock = threading.RLock()

    def poll(self):
        with self._lock:
            self._poll()

    def _poll(self):
        if self.proc is not None:
            while len(self.events) < len(self.proc.out):
                self._add(self.proc.out[len(self.events)][1])
            return
        for l in self._tail.lines():
            if l.strip():
                self._add(l)

    def _add(self, raw):
        e = Event(raw)
        e.idx = len(self.events)
        self.events.append(e)

    def text(self):
        self.poll()
        partial = self._tail.partial if self._tail else ""
        return "\n".join(e.raw for e in self.events) + ("\n" + partial if partial else "")

    def conn(self, local, remote):
        """Status lines of one connection."""
        self.poll()
        return [e for e in self.events if e.get("local") == local and e.get("remote") == remote]

    def errors(self):
        self.poll()
        return [e for e in self.events if e.get("level") == "error"]

    def wait(self, pred, timeout, what, alive=None, after=None):
        """Polls until an event (after event `after`, when given) satisfies pred; returns
        it. Fails at the deadline, or early when alive() turns false (the daemon died)."""
        deadline = time.monotonic() + timeout
        seen = 0 if after is None else after.idx + 1
        while True:
            self.poll()
            while seen < len(self.events):
                if pred(self.events[seen]):
                    return self.events[seen]
                seen += 1
            if time.monotonic() >= deadline:
                fail("timed out after %.1f s waiting for %s in the status log" % (timeout, what))
            if alive is not None and not alive():
                self.poll()
                if any(pred(e) for e in self.events[seen:]):
                    continue
                fail("kaprobed exited while waiting for %s" % what)
            time.sleep(0.02)

    def wait_conn(self, local, remote, event, timeout, extra=None, after=None):
        def pred(e):
            if e.get("local") != local or e.get("remote") != remote or e.get("event") != event:
                return False
            return extra is None or extra(e)
        what = "event=%s local=%s remote=%s" % (event, local, remote)
        if after is not None:
            what += " after line %d" % (after.idx + 1)
        return self.wait(pred, timeout, what, self.alive, after)

    alive = None


# --------------------------------------------------------------------------------------
# kaprobed

# The user kaprobed drops to in the tests (exists on every Debian system).
RUN_USER = "nobody"


def conf_text(log_file, rules, log_level="debug", interface="any", extra=None):
    """A configuration: rules is a list of (name, {key: value}) in order; extra: more
    [global] keys. "{tmp}" in any value becomes the test's temp dir (see Kaprobed)."""
    g = {"interface": interface, "log_file": log_file, "log_level": log_level,
         "user": RUN_USER, "state_file": "{tmp}/state.json"}
    g.update(extra or {})
    out = ["[global]"] + ["%s = %s" % kv for kv in g.items()]
    for name, kv in rules:
        out.append("")
        out.append("[%s]" % name)
        for k, v in kv.items():
            out.append("%s = %s" % (k, v))
    return "\n".join(out) + "\n"


def svc_rule(port=5432, idle="1s", interval="500ms", probes=3, remote="*"):
    return ("svc", {"local": "*:%d" % port, "remote": remote, "idle": idle,
                    "interval": interval, "probes": probes})


class Kaprobed:
    """kaprobed running in a namespace with a config written to the test's temp dir."""

    warnings = []  # harness notes for the lead (e.g. start-up fallback used)

    def __init__(self, topo, binary, ns, conf, name, timeout, log_path=None, conf_path=None,
                 echo=None):
        """conf: config text ("{log}" becomes the status log path in the temp dir), or None
        with conf_path naming an existing file. log_path "-": the status log is kaprobed's
        standard output (each line also passed to echo)."""
        self.binary = binary
        self.log_path = log_path or os.path.join(topo.tmp, "%s.status.log" % name)
        if conf is not None:
            self.conf_path = os.path.join(topo.tmp, "%s.ini" % name)
            with open(self.conf_path, "w") as f:
                f.write(conf.replace("{log}", self.log_path).replace("{tmp}", topo.tmp))
        else:
            self.conf_path = conf_path
        self.stopped_status = None
        self.proc = topo.spawn(ns, [binary, "-c", self.conf_path], name, stdin=False,
                               echo=echo)
        if self.log_path == "-":
            self.log = StatusLog(proc=self.proc)
        else:
            self.log = StatusLog(self.log_path)
        self.log.alive = self.proc.alive
        self._wait_started(timeout)

    def _wait_started(self, timeout):
        deadline = time.monotonic() + timeout
        log_seen = None
        while True:
            if any('msg="started"' in l for _, l in list(self.proc.err)):
                return
            if not self.proc.alive():
                time.sleep(0.05)  # let the reader threads collect the last lines
                fail("kaprobed exited with status %s at start-up; stderr:\n%s" % (
                    self.proc.p.returncode, self.proc.text("err")))
            now = time.monotonic()
            if log_seen is None and (self.log_path == "-" or os.path.exists(self.log_path)):
                log_seen = now
            if now >= deadline:
                if log_seen is not None:
                    # Fallback agreed with the lead: log file exists, then 0.3 s.
                    note = 'kaprobed printed no msg="started" on stderr within %.0f s; ' \
                           'fell back to "status log exists + 0.3 s"' % timeout
                    if note not in Kaprobed.warnings:
                        Kaprobed.warnings.append(note)
                    time.sleep(0.3)
                    return
                fail('kaprobed did not start within %.0f s (no msg="started" on stderr, no '
                     'status log); stderr:\n%s' % (timeout, self.proc.text("err")))
            time.sleep(0.02)

    def stop(self):
        """SIGTERM; returns the exit status (kept for the report)."""
        self.stopped_status = self.proc.stop(signal.SIGTERM, 5.0)
        return self.stopped_status

    def stop_ok(self):
        st = self.stop()
        check(st == 0, "kaprobed exited with status %s after SIGTERM (expected 0)" % st)

    def report(self):
        self.log.poll()
        return "--- status log %s:\n%s\n--- kaprobed stderr:\n%s\n--- kaprobed stdout:\n%s" % (
            self.log_path, self.log.text(), self.proc.text("err"), self.proc.text("out"))
