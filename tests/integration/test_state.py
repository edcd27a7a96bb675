"""kaprobe integration cases for live state and metrics (issue 3): the state file (JSON,
written atomically every state_interval and on SIGUSR2), the Prometheus metrics file,
`kaprobed -s`, and the event=summary status line. Real kaprobed, real kernel TCP between
namespaces; every wait polls with a deadline.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from netns import check, conf_text, fail, run, svc_rule, two_hosts
from test_cases import DEAD_AFTER, IDLE, PROBES, connect, nft_drop_all

PROMTOOL = "/usr/bin/promtool"


def start(ctx, net, extra):
    ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"],
                                conf_text("{log}", [svc_rule()], extra=extra))
    return ctx.kap


def state_path(ctx):
    return os.path.join(ctx.topo.tmp, "state.json")


def read_state(path):
    """The parsed state file, or None when it does not exist. A file that exists but is
    not valid JSON is a failure (writes are atomic: never seen half-written)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        fail("state file %s is not valid JSON (%s):\n%s" % (path, e, text[:2000]))


def find_conn(doc, c):
    for e in (doc or {}).get("connections", []):
        if e.get("local") == c.local and e.get("remote") == c.remote:
            return e
    return None


def wait_state(path, pred, timeout, what):
    """Polls the state file until pred(doc) holds; returns the doc."""
    deadline = time.monotonic() + timeout
    doc = None
    while True:
        doc = read_state(path)
        if doc is not None and pred(doc):
            return doc
        if time.monotonic() >= deadline:
            fail("timed out after %.1f s waiting for %s in the state file; last seen:\n%s" % (
                timeout, what, json.dumps(doc, indent=1)[:3000]))
        time.sleep(0.02)


def check_header(doc, kap):
    check(doc.get("version") == 1, "state file version is not 1: %r" % doc.get("version"))
    check(doc.get("pid") == kap.proc.pid, "state file pid %r, kaprobed's is %d" % (
        doc.get("pid"), kap.proc.pid))
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc.get("written", "")),
          "state file written is not UTC ISO 8601 with ms: %r" % doc.get("written"))


def status_table(ctx, kap):
    """Runs `kaprobed -s -c CONF`; returns (exit status, stdout, stderr)."""
    p = run([ctx.binary, "-s", "-c", kap.conf_path], check=False)
    return p.returncode, p.stdout, p.stderr


def table_row(out, c):
    rows = [l.split() for l in out.splitlines()]
    return next((r for r in rows if len(r) >= 8 and r[2] == c.local and r[3] == c.remote),
                None)


# --------------------------------------------------------------------------------------
# The state file lists a real connection while probing and after dead; kaprobed -s

def case_state_file(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = start(ctx, net, {"state_interval": "1s"})
    path = state_path(ctx)
    c = connect(ctx, net, 4)
    c.exchange()
    kap.log.wait_conn(c.local, c.remote, "track", 3)
    doc = wait_state(path, lambda d: find_conn(d, c) is not None, 2.5, "the connection")
    check_header(doc, kap)
    e = find_conn(doc, c)
    check(e["rule"] == "svc" and e["state"] == "watch" and e["probes_out"] == 0
          and e["rtt_ms"] is None and e["last_verdict"] is None,
          "fresh connection's entry is wrong: %s" % e)
    nft_drop_all(ctx, net["peer"])
    kap.log.wait_conn(c.local, c.remote, "probe", IDLE + 3)
    doc = wait_state(path, lambda d: (find_conn(d, c) or {}).get("state") == "probing",
                     PROBES * 0.5 + 1, "state probing")
    e = find_conn(doc, c)
    check(e["rule"] == "svc" and 1 <= e["probes_out"] <= PROBES and e["idle"] >= IDLE * 0.9
          and e["last_verdict"] is None,
          "probing connection's entry is wrong: %s" % e)
    dead = kap.log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3)
    doc = wait_state(path, lambda d: (find_conn(d, c) or {}).get("state") == "dead", 2.5,
                     "state dead")
    e = find_conn(doc, c)
    check(e["last_verdict"] == "dead" and e["probes_out"] == PROBES
          and e["idle"] >= DEAD_AFTER * 0.9 and e["verdict_age"] is not None
          and 0 <= e["verdict_age"] < 3 and e["rtt_ms"] is None,
          "dead connection's entry is wrong: %s" % e)
    rc, out, err = status_table(ctx, kap)
    check(rc == 0, "kaprobed -s exited %d: %s" % (rc, err))
    header = out.splitlines()[0] if out else ""
    check("by pid %d" % kap.proc.pid in header and "written 20" in header,
          "kaprobed -s header line lacks the time or pid: %r" % header)
    check(out.splitlines()[1].split() == ["State", "Rule", "Local", "Remote", "Idle",
                                          "Probes", "RTT", "Verdict"],
          "kaprobed -s column titles wrong:\n%s" % out)
    row = table_row(out, c)
    check(row is not None and row[0] == "dead" and row[1] == "svc" and row[5] == "3"
          and row[6] == "-" and row[7] == "dead",
          "kaprobed -s has no row 'dead svc %s %s ... 3 - dead':\n%s" % (c.local, c.remote,
                                                                       out))
    kap.stop_ok()
    return "listed as watch, probing (probes_out=%d), then dead (idle %.3f, dead line " \
           "idle=%s); kaprobed -s row: %s" % (PROBES, e["idle"], dead["idle"], " ".join(row))


# --------------------------------------------------------------------------------------
# SIGUSR2 writes it at once (state_interval = 0: only then)

def usr2_and_wait(kap, path, pred, what):
    t = time.monotonic()
    os.kill(kap.proc.pid, signal.SIGUSR2)
    doc = wait_state(path, pred, 1.0, what + " after SIGUSR2")
    return doc, time.monotonic() - t


def case_state_usr2(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = start(ctx, net, {"state_interval": "0"})
    path = state_path(ctx)
    time.sleep(0.5)  # what must NOT happen: a write without SIGUSR2
    check(not os.path.exists(path), "state_interval = 0, no SIGUSR2, yet %s was written" % path)
    doc, t1 = usr2_and_wait(kap, path, lambda d: True, "the state file")
    check_header(doc, kap)
    check(doc["connections"] == [], "no connection yet, but the file lists: %s" %
          doc["connections"])
    c = connect(ctx, net, 4)
    c.exchange()
    kap.log.wait_conn(c.local, c.remote, "track", 3)
    w0 = doc["written"]
    doc, t2 = usr2_and_wait(kap, path, lambda d: d["written"] != w0 and find_conn(d, c),
                            "a rewrite listing the connection")
    e = find_conn(doc, c)
    check(e["rule"] == "svc" and e["state"] == "watch", "entry is wrong: %s" % e)
    w1 = doc["written"]
    doc, t3 = usr2_and_wait(kap, path, lambda d: d["written"] != w1, "a third write")
    kap.stop_ok()
    return "no file without SIGUSR2; each SIGUSR2 rewrote it within %.0f, %.0f, %.0f ms" % (
        t1 * 1000, t2 * 1000, t3 * 1000)


# --------------------------------------------------------------------------------------
# A reader polling in a loop never sees a partial file

BULK = r"""
import socket, sys
role, addr, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
socks = []
if role == "server":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(n)
    print("listening", flush=True)
    for _ in range(n):
        socks.append(ls.accept()[0])
else:
    for _ in range(n):
        s = socket.create_connection((addr, port))
        s.sendall(b"x")
        socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"""

NBULK = 150


def bulk_connections(ctx, net, n, port=5432):
    a = net[4]
    srv = ctx.topo.spawn(net["local"], [sys.executable, "-c", BULK, "server", a["local"],
                                        str(port), str(n)], "bulk-server")
    srv.wait_line(lambda l: l == "listening", 5, "bulk server listening")
    cli = ctx.topo.spawn(net["peer"], [sys.executable, "-c", BULK, "client", a["local"],
                                       str(port), str(n)], "bulk-client")
    cli.wait_line(lambda l: l == "ready", 10, "bulk client connected")
    srv.wait_line(lambda l: l == "ready", 10, "bulk server accepted")


def case_state_atomic(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = start(ctx, net, {"state_interval": "1s"})
    path = state_path(ctx)
    bulk_connections(ctx, net, NBULK)
    wait_state(path, lambda d: len(d["connections"]) == NBULK, 3,
               "%d connections" % NBULK)
    stop = threading.Event()
    seen = {"reads": 0, "bad": [], "written": set(), "sizes": set()}

    def reader():
        while not stop.is_set():
            try:
                with open(path, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                seen["bad"].append("file missing")
                continue
            seen["reads"] += 1
            seen["sizes"].add(len(raw))
            try:
                doc = json.loads(raw)
                if len(doc["connections"]) != NBULK:
                    raise ValueError("%d connections" % len(doc["connections"]))
                seen["written"].add(doc["written"])
            except (ValueError, KeyError) as e:
                seen["bad"].append("%s (%d bytes)" % (e, len(raw)))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            os.kill(kap.proc.pid, signal.SIGUSR2)
            time.sleep(0.005)
    finally:
        stop.set()
        t.join(5)
    bad = seen["bad"]
    check(not bad, "%d of %d reads saw a partial or missing file, e.g. %s" % (
        len(bad), seen["reads"] + len(bad), bad[:3]))
    check(seen["reads"] >= 100 and len(seen["written"]) >= 20,
          "too little overlap to judge: %d reads, %d distinct writes" % (
              seen["reads"], len(seen["written"])))
    # A write is spread over loop iterations (and the last SIGUSR2 may have asked for one
    # more): its temporary file exists until it is renamed, but none may stay behind.
    deadline = time.monotonic() + 2.0
    while True:
        leftovers = [n for n in os.listdir(ctx.topo.tmp) if n.startswith(".state.json.")]
        if not leftovers or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    check(not leftovers, "temporary files left behind: %s" % leftovers)
    kap.stop_ok()
    return "%d reads during %d rewrites of a %d-connection file (%d..%d bytes): all whole" % (
        seen["reads"], len(seen["written"]), NBULK, min(seen["sizes"]), max(seen["sizes"]))


# --------------------------------------------------------------------------------------
# The metrics file: promtool accepts it, and the values are right

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text):
    """{(name, labels-text): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            fail("metrics line not in the text format: %r" % line)
        key = (m.group(1), m.group(2) or "")
        if key in out:
            fail("metrics sample repeated: %r" % line)
        out[key] = float(m.group(3))
    return out


def read_metrics(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def case_state_metrics(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    if not os.access(PROMTOOL, os.X_OK):
        fail("%s not installed (tests/deps.sh installs prometheus)" % PROMTOOL)
    mpath = os.path.join(ctx.topo.tmp, "kaprobe.prom")
    kap = start(ctx, net, {"metrics_file": mpath, "metrics_interval": "1s",
                           "max_connections": "5000"})
    log = kap.log
    c = connect(ctx, net, 4)
    c.exchange()
    alive = log.wait_conn(c.local, c.remote, "alive", IDLE + 3)
    nft_drop_all(ctx, net["peer"])
    log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3, after=alive)
    deadline = time.monotonic() + 2.5
    while True:
        text = read_metrics(mpath)
        m = parse_metrics(text) if text else {}
        if m.get(("kaprobe_verdicts_total", '{kind="dead"}')) == 1:
            break
        if time.monotonic() >= deadline:
            fail("metrics file never showed the dead verdict:\n%s" % text)
        time.sleep(0.05)
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=20)
    check(p.returncode == 0, "promtool check metrics failed (%d):\n%s%s\n--- file:\n%s" % (
        p.returncode, p.stdout, p.stderr, text))
    evs = c.events(log)
    n_probe = sum(1 for e in evs if e["event"] == "probe")
    n_reply = sum(1 for e in evs if e["event"] == "reply")
    n_alive = sum(1 for e in evs if e["event"] == "alive")
    want = {
        ("kaprobe_connections", '{rule="svc",state="dead"}'): 1,
        ("kaprobe_connections", '{rule="svc",state="watch"}'): 0,
        ("kaprobe_connections", '{rule="svc",state="probing"}'): 0,
        ("kaprobe_probes_sent_total", ""): n_probe,
        ("kaprobe_replies_total", ""): n_reply,
        ("kaprobe_verdicts_total", '{kind="alive"}'): n_alive,
        ("kaprobe_verdicts_total", '{kind="dead"}'): 1,
        ("kaprobe_verdicts_total", '{kind="reset"}'): 0,
        ("kaprobe_verdicts_total", '{kind="unreachable"}'): 0,
        ("kaprobe_rtt_seconds_count", ""): n_reply,
        ("kaprobe_rtt_seconds_bucket", '{le="+Inf"}'): n_reply,
        ("kaprobe_pcap_drops_total", ""): 0,
        ("kaprobe_decode_errors_total", ""): 0,
        ("kaprobe_ignored_packets_total", '{reason="bad_rst"}'): 0,
        ("kaprobe_max_connections", ""): 5000,
        ("kaprobe_table_full_total", ""): 0,
    }
    wrong = ["%s%s = %s, expected %s" % (k[0], k[1], m.get(k), v)
             for k, v in want.items() if m.get(k) != v]
    check(not wrong, "wrong metric values:\n  %s\n--- file:\n%s" % ("\n  ".join(wrong), text))
    stall = m.get(("kaprobe_loop_stall_max_seconds", ""))
    check(stall is not None and 0 < stall < 1.0,
          "kaprobe_loop_stall_max_seconds %r: expected a gauge above 0 and below 1 s" % stall)
    check(n_reply >= 1 and n_probe == n_reply + PROBES, "status log has %d probes and %d "
          "replies; expected the replies + %d" % (n_probe, n_reply, PROBES))
    rtt_sum = m.get(("kaprobe_rtt_seconds_sum", ""), -1)
    rtts = [float(e["rtt"]) / 1000 for e in evs if e["event"] == "reply"]
    check(abs(rtt_sum - sum(rtts)) <= 1e-6 * len(rtts) + 1e-9,  # lines: ms, 3 decimals
          "kaprobe_rtt_seconds_sum %s, the reply lines sum to %.6f" % (rtt_sum, sum(rtts)))
    le_1s = m.get(("kaprobe_rtt_seconds_bucket", '{le="1"}'))
    check(le_1s == n_reply, "replies within 1 s: bucket le=1 is %s, expected %d" % (
        le_1s, n_reply))
    kap.stop_ok()
    tot = re.search(r"totals: .*loop_stall_max_ms=([0-9.]+)", kap.proc.text("err"))
    check(tot is not None and 0 < float(tot.group(1)) < 1000,
          "no totals line with loop_stall_max_ms (0 < ms < 1000) on stderr:\n%s" %
          kap.proc.text("err")[-2000:])
    return "promtool OK; probes_sent=%d replies=%d verdicts alive=%d dead=1, connections " \
           "{svc,dead}=1, rtt histogram count %d sum %.6f s" % (
               n_probe, n_reply, n_alive, n_reply, rtt_sum)


# --------------------------------------------------------------------------------------
# The event=summary line

def case_state_summary(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = start(ctx, net, {"summary_interval": "1s"})
    log = kap.log
    first = log.wait(lambda e: e.get("event") == "summary", 2.5, "a first event=summary",
                     kap.proc.alive)
    check(first.get("tracked") == "0" and first.get("probes_sent") == "0",
          "first summary, before any connection: %s" % first.raw)
    c = connect(ctx, net, 4)
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    dead = log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3)
    s = log.wait(lambda e: e.get("event") == "summary", 2.5, "event=summary after dead",
                 kap.proc.alive, after=dead)
    want = {"tracked": "1", "observed": "0", "probing": "0", "dead": "1", "reset": "0",
            "probes_sent": str(PROBES), "replies": "0", "pcap_drops": "0",
            "uncertain": "0", "learn_retries": "0", "unconfirmed": "0", "stalled": "0",
            "stall_dead": "0"}
    wrong = ["%s=%s (expected %s)" % (k, s.get(k), v) for k, v in want.items()
             if s.get(k) != v]
    check(not wrong, "summary after dead: %s: %s" % (", ".join(wrong), s.raw))
    check(0 <= s.num("probe_late_max_ms") < 1000.0,
          "summary probe_late_max_ms out of range: %s" % s.raw)
    keys = list(s.keys())
    check(keys[:2] == ["ts", "event"] and keys[2:] == list(want) + ["probe_late_max_ms"],
          "summary fields not in the documented order: %s" % s.raw)
    n = sum(1 for e in log.events if e.get("event") == "summary" and e.idx < s.idx)
    span = s.t - first.t
    check(n >= span - 1, "only %d summary lines in %.1f s at summary_interval = 1s" % (n, span))
    kap.stop_ok()
    return s.raw.split(" ", 1)[1]


# --------------------------------------------------------------------------------------
# A state file that cannot be written: one warning per distinct errno, the loop goes on

def case_state_write_error(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    # A directory the daemon's user cannot write (kaprobed creates missing ones at start,
    # as root, for its user; an existing one it leaves alone).
    d = os.path.join(ctx.topo.tmp, "later")
    os.mkdir(d, 0o755)
    path = os.path.join(d, "state.json")
    kap = start(ctx, net, {"state_file": path, "state_interval": "1s"})
    log = kap.log

    def warns():
        log.poll()
        return [e for e in log.events if e.get("level") == "warning" and path in
                e.get("msg", "") and "not written" in e.get("msg", "")]
    w = log.wait(lambda e: e.get("level") == "warning" and path in e.get("msg", "") and
                 "not written" in e.get("msg", ""), 2.5,
                 "a warning about %s" % path, kap.proc.alive)
    check("Permission denied" in w.get("msg", ""), "warning lacks the errno: %s" % w.raw)
    t = time.monotonic()
    for _ in range(3):  # three more failed writes (one a second, and on SIGUSR2)
        os.kill(kap.proc.pid, signal.SIGUSR2)
        time.sleep(0.4)
    check(kap.proc.alive(), "kaprobed died after failed state writes")
    check(len(warns()) == 1, "expected one warning for repeated EACCES, got:\n%s" % "\n".join(
        e.raw for e in warns()))
    os.chmod(d, 0o1777)
    doc = wait_state(path, lambda x: True, 2.5, "the state file once its directory is writable")
    check_header(doc, kap)
    kap.stop_ok()
    return "one warning (%s) for %.1f s of failed writes; written once the directory " \
           "became writable" % (w["msg"], time.monotonic() - t)


# --------------------------------------------------------------------------------------
# kaprobed -s with no usable state file: exit 1 and a clear message

def case_state_cli_errors(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    tmp = ctx.topo.tmp
    cases = [
        ("missing", os.path.join(tmp, "nodir", "state.json"), None,
         "cannot read the state file %s/nodir/state.json: No such file or directory" % tmp),
        ("garbage", os.path.join(tmp, "garbage.json"), "\x00\x01not json at all",
         "malformed"),
        ("truncated", os.path.join(tmp, "cut.json"),
         '{"version":1,"pid":1,"written":"2026-11-23T12:00:00.000Z","connections":[\n'
         '{"rule":"svc","local":"192.0.2.1:5432","remote":"192.0.2.2:4', "truncated"),
        ("none", "none", None, "state_file is none"),
    ]
    done = []
    for what, state_file, content, msg in cases:
        if content is not None:
            with open(state_file, "w") as f:
                f.write(content)
        conf = os.path.join(tmp, "%s.ini" % what)
        with open(conf, "w") as f:
            f.write(conf_text(os.path.join(tmp, "status.log"), [svc_rule()],
                              extra={"state_file": state_file}))
        p = run([ctx.binary, "-s", "-c", conf], check=False)
        check(p.returncode == 1 and msg in p.stderr and p.stdout == "",
              "%s state file: expected exit 1, no output and %r on stderr; got exit %d, "
              "stdout %r, stderr %r" % (what, msg, p.returncode, p.stdout, p.stderr))
        done.append(what)
    return "exit 1 with a message for a %s state file" % ", ".join(done)


CASES = [
    ("state_file", case_state_file),
    ("state_usr2", case_state_usr2),
    ("state_atomic", case_state_atomic),
    ("state_metrics", case_state_metrics),
    ("state_summary", case_state_summary),
    ("state_write_error", case_state_write_error),
    ("state_cli_errors", case_state_cli_errors),
]
