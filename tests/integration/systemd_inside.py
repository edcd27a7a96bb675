#!/usr/bin/env python3
"""Runs INSIDE the throw-away container booted by test_systemd.py (systemd is PID 1 there).

It drives kaprobed.service, installed exactly as shipped (plus the test's drop-in), with
systemctl, and writes one JSON line per check to /out/results.jsonl:
{"check": NAME, "ok": true|false, "detail": TEXT}, then {"done": true}. Diagnostics (the
unit's journal, the status log) go to /out/*.txt. Standard library only; traffic only on
the container's own loopback (its private network namespace).
"""

import json
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time

UNIT = "kaprobed"
CONF = "/etc/kaprobe/kaprobed.ini"
LOG = "/var/log/kaprobe/status.log"
HOOK_OUT = "/run/kaprobe/hook.out"
PORT = 5432
KEPT = (1 << 12) | (1 << 13)  # CAP_NET_ADMIN, CAP_NET_RAW
STATUS_RE = re.compile(r"^\d+ connections? tracked, \d+ probes? sent, \d+ dead$")

out = open("/out/results.jsonl", "a", buffering=1)


class Abort(Exception):
    """A failed check that leaves nothing sensible to test after it."""


def result(name, ok, detail=""):
    out.write(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)}) + "\n")
    return ok


def sh(argv, timeout=20, check=False):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise Abort("%s: exit %d: %s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p


def show(*props):
    p = sh(["systemctl", "show", UNIT, "-p", ",".join(props)])
    kv = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    return kv


def proc_status(pid):
    kv = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            kv[k] = v.strip()
    return kv


def log_lines():
    try:
        with open(LOG, errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_for(pred, timeout, step=0.05):
    """pred()'s first true value within timeout, else None."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(step)


def wait_log(pattern, timeout, start=0):
    """(index, line) of the first status log line from index start matching pattern."""
    rx = re.compile(pattern)

    def find():
        lines = log_lines()
        for i in range(start, len(lines)):
            if rx.search(lines[i]):
                return (i, lines[i])
        return None
    return wait_for(find, timeout)


def journal(*match):
    """The unit's journal entries (parsed JSON), oldest first."""
    p = sh(["journalctl", "--no-pager", "-o", "json", "--output-fields=MESSAGE,_PID,"
            "KAPROBE_EVENT,KAPROBE_RULE,KAPROBE_LOCAL,KAPROBE_REMOTE,KAPROBE_PROBES,"
            "KAPROBE_REASON,PRIORITY,_SYSTEMD_UNIT,UNIT"] + list(match))
    entries = []
    for line in p.stdout.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            pass
    return entries


def unit_messages():
    """MESSAGEs systemd wrote about the unit (UNIT=kaprobed.service)."""
    return [e.get("MESSAGE", "") for e in journal("UNIT=%s.service" % UNIT)
            if isinstance(e.get("MESSAGE"), str)]


def main_pid():
    return int(show("MainPID").get("MainPID", "0") or 0)


def running_pid(other_than=None):
    """MainPID once the unit is active/running again with a pid other than other_than;
    -1 when it has failed for good (no restart coming)."""
    s = show("MainPID", "ActiveState", "SubState")
    pid = int(s.get("MainPID", "0") or 0)
    if pid and pid != other_than and s.get("ActiveState") == "active" and \
            s.get("SubState") == "running":
        return pid
    if s.get("ActiveState") in ("failed", "inactive"):
        return -1
    return None


def restarted(old, timeout):
    """The new MainPID after old went away, or None (not restarted within timeout)."""
    new = wait_for(lambda: running_pid(old), timeout, 0.1)
    return new if new and new > 0 else None


# ---------------------------------------------------------------------------------------

def check_start():
    t = time.monotonic()
    try:
        p = sh(["systemctl", "start", UNIT], timeout=20)
    except subprocess.TimeoutExpired:
        result("start", False, "systemctl start did not return within 20 s (no READY=1?)")
        raise Abort("not started")
    took = time.monotonic() - t
    s = show("ActiveState", "SubState", "StatusText", "MainPID", "Type", "NotifyAccess",
             "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    ok = p.returncode == 0 and s.get("ActiveState") == "active" and \
        s.get("SubState") == "running"
    result("start", ok, "systemctl start: exit %d in %.2f s; %s/%s, Type=%s%s" % (
        p.returncode, took, s.get("ActiveState"), s.get("SubState"), s.get("Type"),
        ("\n" + p.stderr) if p.stderr else ""))
    if not ok:
        raise Abort("not started")
    # StatusText comes only through the notify socket; kaprobed sends it with READY=1.
    # Type=simple (NotifyAccess=none) or a daemon that never notifies leaves it empty.
    st = s.get("StatusText", "")
    gap = (int(s.get("ActiveEnterTimestampMonotonic", "0")) -
           int(s.get("ExecMainStartTimestampMonotonic", "0"))) / 1e6
    result("ready", s.get("Type") == "notify" and STATUS_RE.match(st),
           "Type=%s, StatusText=%r at once after start returned; active %.3f s after the "
           "main process started" % (s.get("Type"), st, gap))
    return int(s["MainPID"])


def check_process(pid):
    st = proc_status(pid)
    uids = st.get("Uid", "").split()
    try:
        pw = pwd.getpwnam("kaprobe")
        want_uid, want_gid = str(pw.pw_uid), str(pw.pw_gid)
    except KeyError:
        want_uid = want_gid = "?"
    caps = {k: int(st.get(k, "0"), 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd",
                                                 "CapAmb")}
    want = {"CapInh": 0, "CapPrm": KEPT, "CapEff": KEPT, "CapBnd": KEPT, "CapAmb": 0}
    bad = ["%s=%x (expected %x)" % (k, caps[k], want[k]) for k in want if caps[k] != want[k]]
    ok_ids = uids == [want_uid] * 4 and st.get("Gid", "").split() == [want_gid] * 4
    result("user", ok_ids, "Uid %s, Gid %s (kaprobe = %s/%s)" % (
        st.get("Uid"), st.get("Gid"), want_uid, want_gid))
    result("caps", not bad, "CapEff=%x CapPrm=%x CapBnd=%x CapInh=%x CapAmb=%x%s" % (
        caps["CapEff"], caps["CapPrm"], caps["CapBnd"], caps["CapInh"], caps["CapAmb"],
        ("; " + ", ".join(bad)) if bad else ""))
    result("nnp_seccomp", st.get("NoNewPrivs") == "1" and st.get("Seccomp") == "2",
           "NoNewPrivs %s, Seccomp %s" % (st.get("NoNewPrivs"), st.get("Seccomp")))
    d = os.stat("/var/log/kaprobe")
    f = os.stat(LOG) if os.path.exists(LOG) else None
    result("logsdir", str(d.st_uid) == want_uid and d.st_mode & 0o7777 == 0o750 and f and
           str(f.st_uid) == want_uid,
           "/var/log/kaprobe uid %d mode %o; status.log %s" % (
               d.st_uid, d.st_mode & 0o7777,
               "uid %d mode %o" % (f.st_uid, f.st_mode & 0o7777) if f else "missing"))
    warn = [e.get("MESSAGE") for e in journal("_PID=%d" % pid)
            if isinstance(e.get("MESSAGE"), str) and "CAP_NET_RAW" in e.get("MESSAGE")]
    result("no_cap_warning", not warn, "; ".join(warn) or "no CAP_NET_RAW warning")


def check_security():
    """systemd-analyze security's rating of the running unit (reported, not judged)."""
    p = sh(["systemd-analyze", "security", "--no-pager", UNIT], timeout=30)
    m = re.search(r"Overall exposure level for %s\.service: ([\d.]+ \w+)" % UNIT, p.stdout)
    result("security", m, "systemd-analyze security: %s" % (
        m.group(1) if m else "no rating (exit %d) %s" % (p.returncode, p.stderr[-200:])))


def reload(name):
    """systemctl reload; a reload that never ends (RELOADING=1 without READY=1) aborts."""
    try:
        return sh(["systemctl", "reload", UNIT], timeout=10)
    except subprocess.TimeoutExpired:
        result(name, False, "systemctl reload did not return within 10 s (RELOADING=1 "
               "without READY=1?); StatusText=%r" % show("StatusText").get("StatusText"))
        raise Abort("reload hangs")


def check_reload(pid):
    n = len(log_lines())
    p = reload("reload")
    s0 = show("ActiveState", "SubState")
    got = wait_log(r'msg="configuration reloaded"', 5, n)
    # ExecReload= is kill -HUP: systemctl reload can return before kaprobed's RELOADING=1
    # arrives; the unit is back to running after its READY=1.
    after = wait_for(running_pid, 3)
    result("reload", p.returncode == 0 and got and after == pid,
           "systemctl reload: exit %d (then %s/%s); %s; main pid %s -> %s" % (
               p.returncode, s0.get("ActiveState"), s0.get("SubState"),
               got[1] if got else "no 'configuration reloaded' line", pid, after))
    # A bad file (an unknown key, and the rule moved to another port): refused; the old
    # rule stays (check_verdict, next, needs it: port PORT).
    with open(CONF) as f:
        good = f.read()
    bad = good.replace("127.0.0.1:%d" % PORT, "127.0.0.1:%d" % (PORT + 1)) + \
        "no_such_key = 1\n"
    with open(CONF, "w") as f:
        f.write(bad)
    try:
        n = len(log_lines())
        p = reload("reload_bad")
        err = wait_log(r"level=error.*kaprobed\.ini:\d+:", 5, n)
        kept = wait_log(r"reload failed: the old configuration is kept", 5, n)
        after = wait_for(running_pid, 3)
        jerr = [e.get("MESSAGE") for e in journal("_SYSTEMD_UNIT=%s.service" % UNIT)
                if "reload failed" in str(e.get("MESSAGE"))]
        result("reload_bad", p.returncode == 0 and err and kept and after == pid and jerr,
               "systemctl reload: exit %d; %s; %s; in the journal: %s; main pid %s -> %s" % (
                   p.returncode, err[1] if err else "no FILE:LINE error line",
                   "old configuration kept" if kept else "no 'old configuration is kept'",
                   "yes" if jerr else "no", pid, after))
    finally:
        with open(CONF, "w") as f:  # the next (re)start runs `kaprobed -n` on it
            f.write(good)


def nft(text):
    return subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True,
                          timeout=10)


class Server:
    """A TCP server on 127.0.0.1:PORT with one client: exchange, then the server blocks
    in recv() and records how that ended."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", PORT))
        self.ls.listen(1)
        self.cli = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        self.srv, _ = self.ls.accept()
        self.cli.sendall(b"hello")
        self.srv.recv(5)
        self.srv.sendall(b"world")
        self.cli.recv(5)
        self.local = "127.0.0.1:%d" % PORT
        self.remote = "127.0.0.1:%d" % self.cli.getsockname()[1]
        self.ended = None
        self.t = threading.Thread(target=self._wait, daemon=True)
        self.t.start()

    def _wait(self):
        try:
            data = self.srv.recv(10)
            self.ended = "recv returned %r" % data
        except OSError as e:
            self.ended = "recv failed: %s" % os.strerror(e.errno) if e.errno else str(e)

    def close(self):
        for s in (self.cli, self.srv, self.ls):
            try:
                s.close()
            except OSError:
                pass


def check_verdict(pid):
    n = len(log_lines())
    srv = Server()
    conn = r"local=%s remote=%s" % (re.escape(srv.local), re.escape(srv.remote))
    tr = wait_log(r"event=track .*" + conn, 5, n)
    result("track", tr, tr[1] if tr else "no event=track for %s <- %s within 5 s" % (
        srv.local, srv.remote))
    # Silence the peer: nothing to or from the port gets through the loopback any more.
    p = nft("\n".join([
        "add table inet kpt",
        "add chain inet kpt in_c { type filter hook input priority -10; policy accept; }",
        "add rule inet kpt in_c tcp sport %d drop" % PORT,
        "add rule inet kpt in_c tcp dport %d drop" % PORT, ""]))
    if p.returncode != 0:
        result("verdict", False, "nft failed: %s" % p.stderr)
        return
    try:
        dead = wait_log(r"event=dead .*" + conn, 10, n)
        result("verdict", dead, dead[1] if dead else "no event=dead for %s within 10 s" %
               srv.local)
        if not dead:
            return
        close = wait_log(r"event=action .*" + conn + r".*action=close", 5, n)
        ex = wait_log(r"event=action .*" + conn + r".*action=exec", 5, n)
        srv.t.join(3)
        result("close", close and "result=ok" in close[1] and srv.ended and
               "abort" in srv.ended.lower(),
               "%s; server's %s" % (close[1] if close else "no action=close line", srv.ended))
        hook = {}
        if os.path.exists(HOOK_OUT):
            with open(HOOK_OUT) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    hook[k.strip()] = v.strip()
        status = proc_status(pid)
        # No capability held or inheritable; the bounding set is only a ceiling (the
        # unit's two), and with no_new_privs and a non-root uid nothing can be regained.
        caps_zero = all(int(hook.get(k, "1"), 16) == 0 for k in (
            "CapInh", "CapPrm", "CapEff", "CapAmb"))
        result("exec", ex and re.search(r" status=0( |$)", ex[1]) and "result=" not in ex[1] and
               hook.get("KAPROBE_EVENT") == "dead" and
               hook.get("Uid", "").split()[:1] == status["Uid"].split()[:1] and caps_zero and
               hook.get("NoNewPrivs") == "1" and hook.get("Pid") and
               hook.get("Session") == hook.get("Pid") and
               re.search(r" pid=%s " % hook.get("Pid"), ex[1]),
               "%s; hook saw event %s, pid %s in session %s, Uid %s, CapEff %s CapPrm %s "
               "CapBnd %s CapAmb %s, NoNewPrivs %s" % (
                   ex[1] if ex else "no action=exec line", hook.get("KAPROBE_EVENT"),
                   hook.get("Pid"), hook.get("Session"), hook.get("Uid"), hook.get("CapEff"),
                   hook.get("CapPrm"), hook.get("CapBnd"), hook.get("CapAmb"),
                   hook.get("NoNewPrivs")))

        def journal_dead():
            return [e for e in journal("KAPROBE_EVENT=dead", "_SYSTEMD_UNIT=%s.service" % UNIT)
                    if e.get("KAPROBE_LOCAL") == srv.local and
                    e.get("KAPROBE_REMOTE") == srv.remote]
        j = wait_for(journal_dead, 5, 0.2)
        result("journal", j and j[0].get("KAPROBE_RULE") == "svc" and
               j[0].get("PRIORITY") == "4",
               "journalctl KAPROBE_EVENT=dead: %s" % (
                   {k: v for k, v in j[0].items() if k.startswith("KAPROBE_") or
                    k == "PRIORITY"} if j else "nothing for this connection"))
    finally:
        nft("delete table inet kpt\n")
        srv.close()


def seconds(text):
    """systemd's time span ("15s", "500ms", "1min 30s") in seconds, or None."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|min|h)", text or "")
    return sum(float(n) * units[u] for n, u in parts) if parts else None


def check_alive_pings(pid):
    """1.5 x WatchdogSec after it became active, the first daemon still runs: it pings."""
    s = show("WatchdogUSec", "ActiveEnterTimestampMonotonic")
    wd = seconds(s.get("WatchdogUSec"))
    if not wd:
        result("watchdog_ping", False, "the unit has no watchdog (WatchdogUSec=%s)" %
               s.get("WatchdogUSec"))
        return
    until = int(s.get("ActiveEnterTimestampMonotonic", "0")) / 1e6 + 1.5 * wd
    time.sleep(max(0.0, until - time.monotonic()))
    now = show("MainPID", "NRestarts", "ActiveState")
    msgs = [m for m in unit_messages() if "atchdog" in m]
    result("watchdog_ping", now.get("MainPID") == str(pid) and now.get("NRestarts") == "0"
           and now.get("ActiveState") == "active" and not msgs,
           "%.1f s (1.5 x WatchdogSec=%s) after start: main pid %s -> %s, NRestarts %s%s" % (
               1.5 * wd, s.get("WatchdogUSec"), pid, now.get("MainPID"), now.get("NRestarts"),
               ("; " + msgs[-1]) if msgs else ""))


def check_watchdog(pid):
    if pid <= 0:
        raise Abort("no main pid to stop")
    before = int(show("NRestarts")["NRestarts"])
    t = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    new = restarted(pid, 20)
    took = time.monotonic() - t
    msgs = [m for m in unit_messages() if "atchdog" in m]
    after = int(show("NRestarts")["NRestarts"])
    result("watchdog", new and msgs and after == before + 1,
           "SIGSTOP to %d: %s after %.1f s; NRestarts %d -> %d; %s" % (
               pid, "running again as %d" % new if new else "not restarted", took, before,
               after, msgs[-1] if msgs else "no watchdog message in the journal"))
    if not new:  # let it run on, so that the later checks still say something
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        return ensure_running()
    return new


def check_crash(pid, sig):
    if pid <= 0:  # never kill(0, ...): that is our own process group
        raise Abort("no main pid to crash")
    before = int(show("NRestarts")["NRestarts"])
    t = time.monotonic()
    os.kill(pid, sig)
    new = restarted(pid, 15)
    took = time.monotonic() - t
    after = int(show("NRestarts")["NRestarts"])
    msgs = [m for m in unit_messages() if "Main process exited" in m]
    result("crash", new and after == before + 1,
           "%s to %d: %s after %.1f s; NRestarts %d -> %d; %s" % (
               signal.Signals(sig).name, pid,
               "running again as %d" % new if new else "not restarted", took, before, after,
               msgs[-1] if msgs else "no 'Main process exited' message"))
    if not new:  # start it again by hand for the stop check
        return ensure_running()
    return new


def ensure_running():
    """The MainPID of the running unit, started again by hand if it is down."""
    pid = running_pid()
    if pid and pid > 0:
        return pid
    sh(["systemctl", "reset-failed", UNIT])
    if sh(["systemctl", "start", UNIT], timeout=20).returncode != 0 or main_pid() <= 0:
        raise Abort("kaprobed is down and systemctl start failed")
    return main_pid()


def nft_tables():
    return sh(["nft", "list", "tables"]).stdout


def check_table(pid):
    """The gateway rule's nftables table, installed under the sandbox (no warning)."""
    said = [e.get("MESSAGE") for e in journal("_PID=%d" % pid)
            if isinstance(e.get("MESSAGE"), str) and "nftables" in e.get("MESSAGE")]
    tables = nft_tables()
    result("nft_table", "table inet kaprobed" in tables and
           any("installed" in m for m in said),
           "nft list tables: %s; kaprobed said: %s" % (
               " / ".join(tables.split("\n")).strip(), "; ".join(said) or "nothing"))


def check_stop(pid):
    t = time.monotonic()
    p = sh(["systemctl", "stop", UNIT], timeout=30)
    took = time.monotonic() - t
    s = show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "TimeoutStopUSec")
    limit = s.get("TimeoutStopUSec", "?")
    secs = seconds(limit) or 0
    result("stop", p.returncode == 0 and s.get("ActiveState") == "inactive" and
           s.get("Result") == "success" and s.get("ExecMainCode") == "1" and
           s.get("ExecMainStatus") == "0" and took < secs,
           "systemctl stop: exit %d in %.2f s (TimeoutStopSec %s); %s, Result=%s, main "
           "process code %s status %s" % (
               p.returncode, took, limit, s.get("ActiveState"), s.get("Result"),
               s.get("ExecMainCode"), s.get("ExecMainStatus")))
    tables = nft_tables()
    result("nft_gone", "kaprobed" not in tables,
           "nft list tables after stop: %s" % (tables.strip() or "none"))


EXPECTED = (r'unknown key \"no_such_key\"', "reload failed: the old configuration is kept")


def check_quiet():
    """No warning or error from kaprobed in the whole run but the bad reload's two lines
    and the verdicts (dead is logged at warning): a call the sandbox denies and kaprobed
    only logs (a state file it cannot write, ...) shows here."""
    p = sh(["journalctl", "--no-pager", "-o", "json", "-p", "warning", "-u", UNIT,
            "SYSLOG_IDENTIFIER=kaprobed"])
    bad = []
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line).get("MESSAGE")
        except ValueError:
            continue
        if not isinstance(msg, str) or re.search(r" event=(dead|reset) ", msg) or \
                any(e in msg for e in EXPECTED):
            continue
        bad.append(msg)
    result("quiet", not bad, "\n".join(bad[:10]) or
           "no other warning or error from kaprobed in the journal")


def dump():
    with open("/out/journal.txt", "w") as f:
        f.write(sh(["journalctl", "--no-pager", "-o", "short-monotonic", "-u", UNIT]).stdout)
    with open("/out/status.log.txt", "w") as f:
        f.write("\n".join(log_lines()) + "\n")
    with open("/out/systemctl-status.txt", "w") as f:
        f.write(sh(["systemctl", "status", "--no-pager", "-l", "-n", "0", UNIT]).stdout)


def main():
    t0 = time.monotonic()
    # What `make install` does without DESTDIR: the system user.
    sh(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
        "--shell", "/usr/sbin/nologin", "--user-group", "kaprobe"])
    try:
        pid = check_start()
        check_process(pid)
        check_table(pid)
        check_security()
        check_reload(pid)
        check_verdict(pid)
        check_alive_pings(pid)
        pid = check_watchdog(ensure_running())
        pid = check_crash(pid, signal.SIGSEGV)
        check_stop(pid)
        check_quiet()
    except Abort as e:
        result("aborted", False, "later checks skipped: %s" % e)
    except Exception as e:  # noqa: BLE001 - reported to the host
        result("harness", False, "%s: %s" % (type(e).__name__, e))
    finally:
        try:
            dump()
        finally:
            out.write(json.dumps({"done": True, "seconds": time.monotonic() - t0}) + "\n")
            out.close()


if __name__ == "__main__":
    main()
