#!/usr/bin/env python3
"""check_contrib.py: checks contrib/ against what kaprobed writes (make contrib-check).

- Every PromQL expression of the Grafana dashboard (panel targets, and the selectors of its
  variables' label_values/query_result queries), with Grafana's variables replaced, parses:
  all are written as recording rules into a temporary file for `promtool check rules`.
- Every metric name those expressions and the alert rules use is one kaprobed writes (the
  names of a metrics file rendered by build/.../metrics_sample, itself linted with
  `promtool check metrics`), one of node_exporter's textfile series, `up`, or (in the
  rules) a series the rules file records.
- Every alert of the rules file has a `promtool test rules` case (alertname: NAME).
- --selftest: the checks above must fail on a dashboard with a misspelt metric name and on
  one with a syntax error.

Standard library only. Exit 0 when all is well, 1 with the reasons otherwise.
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

# Series from elsewhere that the dashboard and the rules may use.
OTHER_SERIES = {"node_textfile_mtime_seconds", "node_textfile_scrape_error", "up"}

# Words of PromQL that look like metric names: operators, modifiers, aggregations.
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar",
    "count", "count_values", "bottomk", "topk", "quantile", "start", "end", "atan2",
}

GRAFANA_RANGES = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")
GRAFANA_VARS = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


# ---- expressions ------------------------------------------------------------------------

def grafana_to_promql(expr):
    """Grafana's variables replaced: ranges by 5m, the others (label matchers) by .*."""
    expr = GRAFANA_RANGES.sub("5m", expr)
    return GRAFANA_VARS.sub(".*", expr)


def variable_expr(query):
    """The PromQL inside a Grafana variable query, or None when it has none."""
    m = re.match(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", query, re.S)
    if m:
        return m.group(1)
    m = re.match(r"^\s*query_result\((.*)\)\s*$", query, re.S)
    if m:
        return m.group(1)
    return None


def dashboard_exprs(node, where="dashboard", out=None):
    """[(where, expr)] of every panel target and query variable, nested rows included."""
    if out is None:
        out = []
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            where = "panel %r" % node["title"]
        expr = node.get("expr")
        if isinstance(expr, str) and expr.strip():
            out.append(("%s %s" % (where, node.get("refId", "")), expr))
        for item in node.get("templating", {}).get("list", []):
            q = item.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if item.get("type") == "query" and isinstance(q, str):
                inner = variable_expr(q)
                if inner is not None:
                    out.append(("variable $%s" % item.get("name"), inner))
        for key, val in node.items():
            if key != "templating":
                dashboard_exprs(val, where, out)
    elif isinstance(node, list):
        for val in node:
            dashboard_exprs(val, where, out)
    return out


def metric_names(expr):
    """The metric names an expression selects (a lexical scan: strings, label matchers,
    ranges and grouping clauses removed; identifiers not followed by '(' kept)."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]*)"', expr))
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)", s):
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or m.group(1).lower() in KEYWORDS:
            continue
        names.add(m.group(1))
    return names


# ---- promtool ---------------------------------------------------------------------------

def promtool_parse(promtool, exprs):
    """Error text of `promtool check rules` on exprs as recording rules, or None."""
    rules = {"groups": [{"name": "contrib_check", "rules": [
        {"record": "contrib_check:expr_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}
    fd, path = tempfile.mkstemp(suffix=".yml", prefix="kaprobe-contrib-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(rules, f)  # JSON is YAML
        p = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if p.returncode == 0:
        return None
    lines = [ln.strip() for ln in (p.stdout + p.stderr).splitlines()]
    return "\n    ".join(ln.replace(path + ": ", "") for ln in lines
                         if ln and not ln.startswith(("Checking", "FAILED")))


def written_names(promtool, path):
    """Metric names of a metrics file (after `promtool check metrics` on it)."""
    with open(path) as f:
        text = f.read()
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("%s: promtool check metrics failed:\n%s%s" % (path, p.stdout, p.stderr))
    names = {re.match(r"[A-Za-z_:][\w:]*", line).group(0)
             for line in text.splitlines() if line and not line.startswith("#")}
    if not any(n.startswith("kaprobe_") for n in names):
        sys.exit("%s: no kaprobe_ sample" % path)
    return names


# ---- the rules file (the few YAML forms it uses) ----------------------------------------

def rules_file(path):
    """(exprs, recorded names, alert names) of a Prometheus rules file: `expr:` plain,
    quoted, or a block scalar (>, >-, |, |-) on the lines indented below it."""
    lines = open(path).read().splitlines()
    exprs, recorded, alerts = [], set(), []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(?:-\s+)?(record|alert):\s*(\S+)\s*$", line)
        if m:
            (recorded.add if m.group(1) == "record" else alerts.append)(m.group(2).strip("'\""))
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", line)
        if not m:
            continue
        indent, val = len(m.group(1)), m.group(2)
        if val in (">", ">-", "|", "|-", ">+", "|+"):
            body = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt.strip())
            val = " ".join(body)
        elif val.startswith('"'):
            val = json.loads(val)
        elif val.startswith("'"):
            val = val[1:-1].replace("''", "'")
        exprs.append(("%s:%d" % (os.path.basename(path), i + 1), val))
    return exprs, recorded, alerts


# ---- the checks -------------------------------------------------------------------------

def check_dashboard(promtool, dash, allowed, errors):
    found = dashboard_exprs(dash)
    if not found:
        errors.append("dashboard: no PromQL expression found")
        return 0
    exprs = [grafana_to_promql(e) for _, e in found]
    if promtool_parse(promtool, exprs):  # name the culprits one by one
        for (where, raw), e in zip(found, exprs):
            err = promtool_parse(promtool, [e])
            if err:
                errors.append("dashboard %s: does not parse: %s\n    %s" % (where, raw, err))
    for (where, raw), e in zip(found, exprs):
        for name in sorted(metric_names(e) - allowed):
            errors.append("dashboard %s: %s is not a metric kaprobed writes: %s" % (
                where, name, raw))
    return len(found)


def check_rules(rules_path, tests, allowed, errors):
    exprs, recorded, alerts = rules_file(rules_path)
    for where, e in exprs:
        for name in sorted(metric_names(e) - allowed - recorded):
            errors.append("%s: %s is not a metric kaprobed writes: %s" % (where, name, e))
    tested = set()
    for t in tests:
        tested |= set(re.findall(r"^\s*alertname:\s*(\S+)\s*$", open(t).read(), re.M))
    for a in alerts:
        if a not in tested:
            errors.append("%s: alert %s has no promtool test (alertname: %s)" % (
                rules_path, a, a))
    return len(exprs), len(alerts)


def mutated(dash, old, new):
    """A copy of the dashboard with old replaced by new in its first expression having it."""
    text = json.dumps(dash)
    for where, e in dashboard_exprs(dash):
        if old in e:
            return json.loads(text.replace(json.dumps(e), json.dumps(e.replace(old, new, 1)), 1))
    sys.exit("selftest: no expression contains %r" % old)


def selftest(promtool, dash, allowed):
    """The checker itself: a misspelt metric and a syntax error must each be reported."""
    cases = [("misspelt metric", "kaprobe_probes_sent_total", "kaprobe_probe_sent_total"),
             ("syntax error", "sum by (rule, state) (", "sum by (rule, state) ((")]
    for what, old, new in cases:
        errors = []
        check_dashboard(promtool, mutated(copy.deepcopy(dash), old, new), allowed, errors)
        if not errors:
            sys.exit("selftest: a dashboard with a %s passed the check" % what)
    return len(cases)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--promtool", default="/usr/bin/promtool")
    ap.add_argument("--metrics", required=True, help="a metrics file kaprobed's code wrote")
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--tests", nargs="+", required=True, help="promtool test files")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    if not os.access(a.promtool, os.X_OK):
        sys.exit("%s not found (tests/deps.sh installs the Debian package prometheus)" %
                 a.promtool)
    allowed = written_names(a.promtool, a.metrics) | OTHER_SERIES
    with open(a.dashboard) as f:
        dash = json.load(f)
    errors = []
    n_dash = check_dashboard(a.promtool, dash, allowed, errors)
    n_rules, n_alerts = check_rules(a.rules, a.tests, allowed, errors)
    if errors:
        print("contrib check: %d problem(s):\n  %s" % (len(errors), "\n  ".join(errors)))
        return 1
    n_self = selftest(a.promtool, dash, allowed) if a.selftest else 0
    print("contrib check: %d dashboard expressions parse and name only written metrics; "
          "%d rule expressions name only written or recorded metrics; %d alerts tested%s" % (
              n_dash, n_rules, n_alerts,
              "; selftest: %d broken dashboards caught" % n_self if a.selftest else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
