#!/usr/bin/env python3
"""make bench, scale figures (issue 8): N connections (KAPROBE_BENCH_CONNS, default
100 000) between two namespaces, kaprobed on the server's side with one rule (idle 6 s,
interval 1 s, probes 3, log_level info), run twice: connections opened before kaprobed
starts (discovery), then kaprobed running while they open (capture). Each run waits for
round 1, silences half the peers (nft drop on the client side) and prints what
tests/integration/scale.py measures: tracked, round 1, probe lateness, dead verdicts and
their error against the kernel's last-received, false dead, uncertain, pcap and softnet
drops, learn retries, CPU per round, RSS per connection, status-log bytes per round, the
longest loop stall ("n/a" for what the daemon does not report).

Figures only: never fails the build. Every namespace and process is removed at the end,
also on failure or Ctrl-C.

  python3 tests/bench/scale.py KAPROBED [N] [disc|cap ...]
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import netns  # noqa: E402
import scale  # noqa: E402

MODES = {"disc": "discovery: opened before kaprobed starts",
         "cap": "capture: kaprobed running while they open"}


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 0
    binary = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    modes = sys.argv[3:] or ["disc", "cap"]
    if os.geteuid() != 0:
        print("  root needed (namespaces): scale benchmark skipped")
        return 0
    if not os.access(binary, os.X_OK):
        print("  %s: not built: scale benchmark skipped" % binary)
        return 0
    netns.install_signal_handlers()
    print("  (one rule: idle %gs, interval %gs, probes %d; log_level info, summary_interval "
          "%ds, state_file none, every other key at its default; half the peers, those of "
          "%s, silenced after round 1)" % (scale.IDLE, scale.INTERVAL, scale.PROBES,
                                           scale.SUMMARY_INTERVAL, scale.SILENT))
    for mode in modes:
        print("-- %d connections, %s" % (n, MODES[mode]))
        sys.stdout.flush()
        topo = netns.Topo("bench-scale-" + mode)
        t = time.monotonic()
        try:
            F = scale.scale_run(topo, binary, n, mode, say=lambda s: print(s, flush=True))
            for line in scale.format_figures(F):
                print(line)
            if F.get("errors"):
                print("  level=error lines: %s" % " | ".join(F["errors"]))
            if F.get("exit") not in (0, None):
                print("  kaprobed exited with status %s" % F["exit"])
        except KeyboardInterrupt:
            print("  interrupted: namespaces and processes removed")
            topo.cleanup()
            return 0
        except Exception as e:  # a figure, never a build failure
            print("  scale benchmark (%s) failed: %s" % (mode, str(e).splitlines()[0]))
        finally:
            topo.cleanup()
        print("  (run took %.0f s)" % (time.monotonic() - t))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
