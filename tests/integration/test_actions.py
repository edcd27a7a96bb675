"""kaprobe integration cases for issue 3's actions on verdicts and configuration reload.

actions_*: on_dead = close | rst | exec:PATH and on_reset = exec:PATH, carried out for real
(the local program's socket really errors, the exec'd program really runs).
reload_*: SIGHUP with a bad file (old rules kept) and a good one (rules re-applied).
"""

import os
import signal
import stat
import time

from netns import check, conf_text, endpoint, fail, run, svc_rule, two_hosts
from test_cases import (DEAD_AFTER, IDLE, PROBES, Conn, check_dead_timing, connect,
                        fmt_events, nft_drop_all, nft_drop_port, vanish)

# A verdict's action must reach the local program within this many seconds of its line.
ACT_WITHIN = 1.0


def start(ctx, net, rules, extra=None):
    ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf_text("{log}", rules, extra=extra))
    return ctx.kap


def rule_with(port=5432, name="svc", **kw):
    _, kv = svc_rule(port)
    kv.update(kw)
    return (name, kv)


def action_line(log, c, action, after=None, timeout=3.0):
    return log.wait(lambda e: e.get("event") == "action" and e.get("action") == action and
                    e.get("local") == c.local and e.get("remote") == c.remote,
                    timeout, "event=action action=%s for %s" % (action, c.local),
                    log.alive, after)


def err_after(peer, dead, what):
    """The program's blocked read fails; returns (errno, seconds after the dead line)."""
    e = peer.wait_err(3, expect_ok=False)
    check(e["ok"], "%s: the program's read did not fail within 3 s of dead: %s" % (
        what, e["line"]))
    took = float(e["err_t"]) - dead.t
    check(took <= ACT_WITHIN, "%s: read failed %.3f s after the dead line (> %.1f s): %s" % (
        what, took, ACT_WITHIN, e["line"]))
    return e["errno"], took


def nft_drop_from_peer(ctx, ns):
    """One-way loss: the peer's packets never leave its namespace; ours still reach it."""
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptoneway",
        "add chain inet kptoneway out_c { type filter hook output priority -10; policy drop; }",
        ""]))


def nft_undrop_all(ctx, ns):
    ctx.topo.nft(ns, "delete table inet kptdrop\n")


def dead_of(log, c, timeout=DEAD_AFTER + 3):
    return log.wait_conn(c.local, c.remote, "dead", timeout)


# --------------------------------------------------------------------------------------
# close

def case_actions_close(ctx):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [rule_with(on_dead="close")])
    c = connect(ctx, net, 4)
    t_last = c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = dead_of(kap.log, c)
    check_dead_timing(d, t_last, DEAD_AFTER, "close")
    a = action_line(kap.log, c, "close", after=d)
    check(a.get("result") == "ok" and a.get("verdict") == "dead",
          "close action: expected result=ok verdict=dead: %s" % a.raw)
    errno, took = err_after(c.srv, d, "close")
    check(errno in ("ECONNABORTED", "ECONNRESET", "ETIMEDOUT"),
          "close: the program's read failed with %s, expected a connection error" % errno)
    kap.stop_ok()
    return "SOCK_DESTROY result=ok; the program's read failed with %s %.3f s after dead" % (
        errno, took)


def case_actions_close_dualstack(ctx):
    """A server listening on [::] (dual stack) with an IPv4 client: its socket is IPv6 with
    v4-mapped addresses, while kaprobed sees IPv4 packets. close must still find it."""
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [rule_with(on_dead="close")])
    srv = ctx.peer(net["local"], "server")
    srv.listen("::", 5432)
    cli = ctx.peer(net["peer"], "client")
    info = cli.connect(net[4]["local"], 5432)
    acc = srv.accept()
    check(acc["laddr"].startswith("::ffff:"), "server socket is not dual-stack: %s" %
          acc["line"])
    c = Conn(srv, cli, endpoint(net[4]["local"], 5432),
             endpoint(info["laddr"], int(info["lport"])))
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = dead_of(kap.log, c)
    a = action_line(kap.log, c, "close", after=d)
    check(a.get("result") == "ok", "close of a dual-stack socket: %s" % a.raw)
    errno, took = err_after(c.srv, d, "close dual-stack")
    kap.stop_ok()
    return "IPv4 client of a [::] listener: SOCK_DESTROY result=ok; read failed with %s " \
           "%.3f s after dead" % (errno, took)


def case_actions_close_gone(ctx):
    """The local socket vanished unseen before dead: the kernel answers ENOENT."""
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [rule_with(on_dead="close")])
    c = connect(ctx, net, 4)
    c.exchange()
    # The server's abort RST never leaves (nor is captured): kaprobed still tracks it.
    ctx.topo.nft(net["local"], "\n".join([
        "add table inet kptrst",
        "add chain inet kptrst out_c { type filter hook output priority -10; policy accept; }",
        "add rule inet kptrst out_c tcp flags & rst == rst drop",
        ""]))
    nft_drop_all(ctx, net["peer"])
    c.srv.cmd("abort")
    d = dead_of(kap.log, c)
    a = action_line(kap.log, c, "close", after=d)
    check(a.get("result") == "error" and "No such file" in a.get("error", ""),
          "close of a socket already gone: expected result=error error=\"No such file or "
          "directory\" (ENOENT): %s" % a.raw)
    check(kap.proc.alive(), "kaprobed exited after a failed close")
    # The lookup must not have fallen back to the listening socket and destroyed it.
    nft_undrop_all(ctx, net["peer"])
    cli2 = ctx.peer(net["peer"], "client-again")
    r = cli2.connect(net[4]["local"], 5432, 3)
    c.srv.accept()
    check(r["ok"], "the listening socket is gone after the close action: %s" % r["line"])
    kap.stop_ok()
    return "close of a vanished socket logged: %s" % a.raw.split("result=", 1)[1]


# --------------------------------------------------------------------------------------
# rst

def case_actions_rst(ctx):
    """One-way loss: the peer hears us but we do not hear it. Both programs get a RST."""
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [rule_with(on_dead="rst")])
    c = connect(ctx, net, 4)
    t_last = c.exchange()
    nft_drop_from_peer(ctx, net["peer"])
    d = dead_of(kap.log, c)
    check_dead_timing(d, t_last, DEAD_AFTER, "rst")
    a = action_line(kap.log, c, "rst", after=d)
    check(a.get("result") == "ok", "rst action: expected result=ok: %s" % a.raw)
    e_loc, t_loc = err_after(c.srv, d, "rst, local program")
    check(e_loc == "ECONNRESET", "rst: local program got %s, expected ECONNRESET" % e_loc)
    e_peer, t_peer = err_after(c.cli, d, "rst, peer program")
    check(e_peer == "ECONNRESET", "rst: peer program got %s, expected ECONNRESET" % e_peer)
    kap.stop_ok()
    return "local ECONNRESET %.3f s and peer ECONNRESET %.3f s after dead" % (t_loc, t_peer)


def case_actions_rst6(ctx):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [rule_with(on_dead="rst")])
    c = connect(ctx, net, 6)
    c.exchange()
    nft_drop_from_peer(ctx, net["peer"])
    d = dead_of(kap.log, c)
    a = action_line(kap.log, c, "rst", after=d)
    check(a.get("result") == "ok", "rst action: expected result=ok: %s" % a.raw)
    e_loc, t_loc = err_after(c.srv, d, "rst6, local program")
    e_peer, t_peer = err_after(c.cli, d, "rst6, peer program")
    check(e_loc == "ECONNRESET" and e_peer == "ECONNRESET",
          "rst6: local got %s, peer got %s, expected ECONNRESET both" % (e_loc, e_peer))
    kap.stop_ok()
    return "IPv6: local ECONNRESET %.3f s, peer %.3f s after dead" % (t_loc, t_peer)


# --------------------------------------------------------------------------------------
# exec

def write_script(ctx, name, body):
    path = os.path.join(ctx.topo.tmp, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def wait_file(path, timeout, what, alive):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            fail("timed out after %.1f s waiting for %s (%s)" % (timeout, what, path))
        if not alive():
            fail("kaprobed exited while waiting for %s" % what)
        time.sleep(0.02)
    with open(path) as f:
        return f.read()


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def case_actions_exec(ctx):
    """A program gets the verdict in a clean environment, without privileges."""
    net = two_hosts(ctx.topo)
    out = os.path.join(ctx.topo.tmp, "out")
    # The shell's own /proc entry shows exactly what execve() gave it.
    script = write_script(ctx, "record.sh", "\n".join([
        'd=%s' % out,
        'tr "\\000" "\\n" < /proc/$$/environ > "$d.env"',
        'cat /proc/$$/status > "$d.status"',
        'i=$(readlink /proc/$$/fd/0); o=$(readlink /proc/$$/fd/1)',
        'echo "stdin=$i stdout=$o" > "$d.std"',
        'ls -l /proc/$$/fd/ > "$d.fd"',
        'mv "$d.env" "$d.env.done"',
        "exit 3", ""]))
    kap = start(ctx, net, [rule_with(on_dead="log, exec:" + script)])
    c = connect(ctx, net, 4)
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = dead_of(kap.log, c)
    text = wait_file(out + ".env.done", 3, "the exec: program's record", kap.proc.alive)
    env = dict(l.split("=", 1) for l in text.splitlines() if "=" in l)
    want = {"KAPROBE_EVENT": "dead", "KAPROBE_RULE": "svc", "KAPROBE_LOCAL": c.local,
            "KAPROBE_REMOTE": c.remote, "KAPROBE_PROBES": str(PROBES),
            "KAPROBE_REASON": "no-reply", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for k, v in want.items():
        check(env.get(k) == v, "exec env: %s=%r, expected %r; environment:\n%s" % (
            k, env.get(k), v, text))
    check(abs(float(env.get("KAPROBE_IDLE", "-1")) - d.num("idle")) < 0.01,
          "exec env: KAPROBE_IDLE=%s, the dead line says idle=%s" % (
              env.get("KAPROBE_IDLE"), d.get("idle")))
    extra = sorted(set(env) - set(want) - {"KAPROBE_IDLE"})
    check(not extra, "exec env has more than the event's fields and PATH: %s" % extra)
    fds = open(out + ".fd").read()
    check("socket:" not in fds, "the exec: program inherited sockets:\n%s" % fds)
    std = open(out + ".std").read().strip()
    check(std == "stdin=/dev/null stdout=/dev/null",
          "the exec: program's stdin/stdout are not /dev/null: %s" % std)
    st = proc_status(kap.proc.pid)
    cs = {}
    with open(out + ".status") as f:
        for line in f:
            k, _, v = line.partition(":")
            cs[k] = v.strip()
    for k in ("CapInh", "CapAmb"):
        check(int(cs[k], 16) == 0, "exec: program has %s=%s, expected none" % (k, cs[k]))
    uid = st["Uid"].split()[0]
    if uid != "0":  # the daemon dropped root: its program runs as that user, no capabilities
        check(cs["Uid"].split()[0] == uid, "exec: program uid %s, daemon uid %s" % (
            cs["Uid"], uid))
        for k in ("CapPrm", "CapEff"):
            check(int(cs[k], 16) == 0, "exec: program has %s=%s, expected none" % (k, cs[k]))
        privs = "uid %s, no capabilities" % uid
    else:
        privs = "daemon still root in this build (no privilege drop): uid/caps not checked"
    a = action_line(kap.log, c, "exec", after=d)
    check(a.get("status") == "3" and a.get("path") == script,
          "exec action line: expected path=%s status=3: %s" % (script, a.raw))
    kap.stop_ok()
    return "program ran with the 8 event variables only, stdin/stdout /dev/null, no sockets; " \
           "status=3 logged (%s)" % privs


def case_actions_exec_reset(ctx):
    net = two_hosts(ctx.topo)
    out = os.path.join(ctx.topo.tmp, "reset.env")
    script = write_script(ctx, "onreset.sh",
                          'tr "\\000" "\\n" < /proc/$$/environ > %s.tmp; mv %s.tmp %s\n' % (
                              out, out, out))
    kap = start(ctx, net, [rule_with(on_reset="exec:" + script)])
    c = connect(ctx, net, 4)
    c.exchange()
    vanish(ctx, net, c)
    r = kap.log.wait_conn(c.local, c.remote, "reset", DEAD_AFTER + 3)
    text = wait_file(out, 3, "the on_reset program's record", kap.proc.alive)
    env = dict(l.split("=", 1) for l in text.splitlines() if "=" in l)
    check(env.get("KAPROBE_EVENT") == "reset" and env.get("KAPROBE_LOCAL") == c.local and
          env.get("KAPROBE_PROBES") == r.get("probes") and "KAPROBE_REASON" not in env,
          "on_reset env wrong (reset line %s):\n%s" % (r.raw, text))
    a = action_line(kap.log, c, "exec", after=r)
    check(a.get("status") == "0" and a.get("verdict") == "reset",
          "on_reset exec line: expected status=0 verdict=reset: %s" % a.raw)
    kap.stop_ok()
    return "on_reset program got KAPROBE_EVENT=reset, status=0 logged"


def case_actions_exec_timeout(ctx):
    net = two_hosts(ctx.topo)
    # The shell waits for a child: both must go (the whole process group is killed).
    nap = "sleep 29.%03d" % (os.getpid() % 1000)
    script = write_script(ctx, "slow.sh", nap + "\necho not reached\n")
    kap = start(ctx, net, [rule_with(on_dead="exec:" + script)],
                extra={"action_timeout": "1s"})
    c = connect(ctx, net, 4)
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = dead_of(kap.log, c)
    a = action_line(kap.log, c, "exec", after=d, timeout=4)
    took = a.t - d.t
    check(a.get("result") == "timeout" and a.get("signal") == "TERM",
          "slow program: expected signal=TERM result=timeout: %s" % a.raw)
    check(0.9 <= took <= 1.6, "slow program killed %.3f s after dead, expected ~1 s" % took)
    deadline = time.monotonic() + 1.0
    while True:
        left = run(["pgrep", "-f", "^" + nap + "$"], check=False).stdout.split()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in left:  # clean up before failing
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    check(not left, "the slow program's child (%s) still ran: pids %s" % (nap, left))
    kap.stop_ok()
    return "killed by SIGTERM %.3f s after dead (action_timeout 1s), its sleep too" % took


def case_actions_exec_bad(ctx):
    net = two_hosts(ctx.topo)
    missing = os.path.join(ctx.topo.tmp, "missing.sh")
    noexec = os.path.join(ctx.topo.tmp, "noexec.sh")
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(noexec, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    rules = [rule_with(5432, "a", on_dead="exec:" + missing),
             rule_with(5433, "b", on_dead="exec:" + noexec)]
    conf = os.path.join(ctx.topo.tmp, "check.ini")
    with open(conf, "w") as f:
        f.write(conf_text(os.path.join(ctx.topo.tmp, "x.log"), rules).replace(
            "{tmp}", ctx.topo.tmp))
    p = run([ctx.binary, "-n", "-c", conf], check=False)
    check(p.returncode == 0 and "configuration OK" in p.stdout,
          "kaprobed -n: a bad exec: path is a warning, not an error: %d %s %s" % (
              p.returncode, p.stdout, p.stderr))
    check(missing in p.stderr and noexec in p.stderr and "warning" in p.stderr,
          "kaprobed -n does not warn about both paths:\n%s" % p.stderr)
    kap = start(ctx, net, rules)
    ca = connect(ctx, net, 4, 5432, "-a")
    cb = connect(ctx, net, 4, 5433, "-b")
    ca.exchange()
    cb.exchange()
    nft_drop_all(ctx, net["peer"])
    lines = []
    for c, word in ((ca, "No such file"), (cb, "not executable")):
        d = dead_of(kap.log, c)
        a = action_line(kap.log, c, "exec", after=d)
        check(a.get("result") == "error" and word in a.get("error", ""),
              "exec of a bad path: expected result=error error=\"...%s...\": %s" % (word, a.raw))
        lines.append(a.get("error"))
    check(kap.proc.alive(), "kaprobed exited after a bad exec:")
    kap.stop_ok()
    return "kaprobed -n warns; at run time: %s" % "; ".join(lines)


# --------------------------------------------------------------------------------------
# reload

def rewrite(ctx, rules, extra=None):
    """Replaces the running daemon's config file (write + rename), then SIGHUP."""
    kap = ctx.kap
    text = conf_text(kap.log_path, rules, extra=extra) if isinstance(rules, list) else rules
    tmp = kap.conf_path + ".new"
    with open(tmp, "w") as f:
        f.write(text.replace("{tmp}", ctx.topo.tmp))
    os.rename(tmp, kap.conf_path)
    os.kill(kap.proc.pid, signal.SIGHUP)


def case_reload_bad(ctx):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [svc_rule()])
    log = kap.log
    c = connect(ctx, net, 4)
    c.exchange()
    bad = conf_text(kap.log_path, [svc_rule()]).replace("probes = 3", "probes = 0") + \
        "\n[broken\nnonsense\n"
    rewrite(ctx, bad)
    fail_line = log.wait(lambda e: e.get("level") == "error" and "old configuration" in
                         e.get("msg", ""), 3, "the failed-reload line", log.alive)
    errs = [e for e in log.errors() if e.idx < fail_line.idx]
    where = [e["msg"] for e in errs if e.get("msg", "").startswith(kap.conf_path + ":")]
    check(len(where) >= 2, "expected each error as FILE:LINE: (probes, section), got:\n%s" % (
        "\n".join(e.raw for e in errs)))
    check(any("probes" in m for m in where), "no error names probes:\n%s" % "\n".join(where))
    # stderr is written first, but read by another thread here: wait for it.
    deadline = time.monotonic() + 2.0
    while not any("level=error" in l for _, l in list(kap.proc.err)) and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    check(any("level=error" in l for _, l in list(kap.proc.err)),
          "the errors did not reach stderr within 2 s")
    # The old rules still probe: a verdict after the failed reload.
    t_last = c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3, after=fail_line)
    check_dead_timing(d, t_last, DEAD_AFTER, "after a failed reload")
    kap.stop_ok()
    return "%d FILE:LINE errors logged, old rules kept: dead %.3f s after the last segment" % (
        len(where), d.t - t_last)


def case_reload_good(ctx):
    net = two_hosts(ctx.topo)
    a = rule_with(5432, "a")
    b = rule_with(5433, "b")
    new = rule_with(5434, "c")
    kap = start(ctx, net, [a, b])
    log = kap.log
    x = connect(ctx, net, 4, 5432, "-x")   # mid-probe at the reload
    y = connect(ctx, net, 4, 5433, "-y")   # its rule goes away
    z = connect(ctx, net, 4, 5434, "-z")   # no rule before, one after
    y.exchange()
    log.wait_conn(y.local, y.remote, "track", 3)
    z.exchange()
    t_last = x.exchange()
    nft_drop_port(ctx, net["peer"], 5432)
    idle = log.wait_conn(x.local, x.remote, "idle", IDLE + 2)
    check(not z.events(log), "port 5434 was tracked before any rule named it:\n%s" %
          fmt_events(z.events(log)))
    # The new rule goes first: rule a's index changes, its parameters do not.
    rewrite(ctx, [new, a])
    done = log.wait(lambda e: e.get("msg") == "configuration reloaded", 3,
                    "the reload line", log.alive)
    check(done.get("rules") == "2" and done.get("untracked") == "1",
          "reload line: expected rules=2 untracked=1: %s" % done.raw)
    check(done.t < t_last + DEAD_AFTER - 0.3,
          "the reload came too late to be mid-probe: %s" % done.raw)
    u = log.wait_conn(y.local, y.remote, "untrack", 1)
    check(u.get("reason") == "config" and u.get("rule") == "b",
          "untrack line: expected rule=b reason=config: %s" % u.raw)
    d = log.wait_conn(x.local, x.remote, "dead", DEAD_AFTER + 2)
    took = check_dead_timing(d, t_last, DEAD_AFTER, "mid-probe across the reload")
    xe = x.events(log)
    check([e["event"] for e in xe].count("idle") == 1 and d.get("rule") == "a" and
          d.get("probes") == str(PROBES),
          "the probe round was restarted or lost its rule across the reload:\n%s" %
          fmt_events(xe))
    z.exchange()
    tz = log.wait_conn(z.local, z.remote, "track", 3)
    check(tz.get("rule") == "c", "new port tracked under rule %s, expected c" % tz.get("rule"))
    y.exchange()
    time.sleep(0.3)  # y's traffic is now captured or not; any line would be wrong
    ye = [e for e in y.events(log) if e.idx > u.idx]
    check(not ye, "the untracked connection came back:\n%s" % fmt_events(ye))
    check(idle.idx < done.idx, "reload before the probe round began")
    kap.stop_ok()
    return "mid-probe connection dead %.3f s after its last segment (old schedule %.1f s); " \
           "untrack reason=config; new port tracked under the new rule" % (took, DEAD_AFTER)


def case_reload_restart_keys(ctx):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [svc_rule()])
    log = kap.log
    rewrite(ctx, conf_text(kap.log_path, [svc_rule()], interface="eth0"))
    w = log.wait(lambda e: e.get("level") == "warning" and "interface" in e.get("msg", ""), 3,
                 "a warning about interface", log.alive)
    log.wait(lambda e: e.get("msg") == "configuration reloaded", 3, "the reload line",
             log.alive)
    # Still capturing on every interface: a loopback connection is tracked.
    c = connect(ctx, {"local": net["local"], "peer": net["local"],
                      4: {"local": "127.0.0.1"}}, 4)
    c.exchange()
    log.wait_conn(c.local, c.remote, "track", 3)
    kap.stop_ok()
    return "interface change refused with a warning (%s); still capturing on any" % w["msg"]


CASES = [
    ("actions_close", case_actions_close),
    ("actions_close_gone", case_actions_close_gone),
    ("actions_close_dualstack", case_actions_close_dualstack),
    ("actions_rst", case_actions_rst),
    ("actions_rst6", case_actions_rst6),
    ("actions_exec", case_actions_exec),
    ("actions_exec_reset", case_actions_exec_reset),
    ("actions_exec_timeout", case_actions_exec_timeout),
    ("actions_exec_bad", case_actions_exec_bad),
    ("reload_bad", case_reload_bad),
    ("reload_good", case_reload_good),
    ("reload_restart_keys", case_reload_restart_keys),
]
