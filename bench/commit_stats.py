#!/usr/bin/env python3
"""Alarm commits while the store's statistics are read: a store full of pictures beside an
empty one.

`Outbox.stats()` runs under the store's lock, from the heartbeat, from the systemd status
line after each commit and from `alarmgw status`. An alarm's commit takes the same lock.
If reading the statistics costs time in proportion to the pictures stored, every alarm
may wait behind it; this measures whether it does.

How. Two stores in a temporary directory, on the disk the benchmark runs on: one empty,
one filled to its picture budget with `Outbox.put_bulk` (`--snapshots-mb` of
`--picture-kb` pictures, 240 MB of 200 KiB by default, under a `--budget-mb` budget),
then closed and opened again, as a service restart leaves it (SQLite's own page cache
empty, the OS's as the fill left it). For each store in turn, in this one run: a thread
calls `stats()` every `--poll-ms` (100 ms), as a status screen refreshing would, and
timing each call; meanwhile this thread commits `--commits` alarms (`commit_event`,
alarm lane, a 450-byte alarm document, `synchronous=FULL`: the fsync every alarm waits
for), `--gap-ms` apart, timing each from the call to its return with
`time.perf_counter_ns()`. The first `--warmup` commits of each store are not counted.
The figures are the commits' p50/p90/p99/max per store and the ratio of the full store's
to the empty store's (target: p99 ratio under 1.5), and the stats() calls' own times.
Nothing is asserted; the pacing between commits is a plain wait (a benchmark, not a
test). Only `gateway.store` is used, through its public methods, so the script runs
unchanged against an older checkout (`PYTHONPATH`, or a copy of bench/ in that checkout:
it puts its own checkout first on the path).

    .venv/bin/python bench/commit_stats.py [--commits 500] [--snapshots-mb 240]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Percentiles, loadavg, print_machine, print_table, ratio

import gateway.store
from gateway.store import EventDraft, Lane, Outbox

TARGET_P99_RATIO = 1.5


def alarm_draft(seq: int) -> EventDraft:
    """An alarm the size the engine commits (a point with a Chinese name, no pictures)."""
    event_id = f"00000000-0000-4000-8000-{seq:012d}"
    doc = {"v": 1, "id": event_id, "seq": seq, "type": "alarm", "site": "bench-school",
           "gateway": "gw-bench",
           "point": {"id": "gate-panic", "name": "南门门卫室一键报警", "location": "South gate",
                     "kind": "panic"},
           "source": "gpio:17", "occurred_at": "2026-12-01T08:00:00.000Z", "time_synced": True,
           "mono_ns": time.clock_gettime_ns(time.CLOCK_BOOTTIME),
           "boot_id": "6f1d7c52-8a0e-4b8e-9a43-5d2c1e0f9b11", "detected_at_startup": False,
           "snapshots": [{"camera": "gate-cam", "shots": 3}]}
    payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return EventDraft(event_id=event_id, event_type="alarm", topic="event", payload=payload)


def fill(path: Path, budget: int, snapshots: int, picture: int) -> int:
    """Store `snapshots` bytes of pictures; returns how many pictures."""
    jpeg = b"\xff\xd8" + os.urandom(picture - 4) + b"\xff\xd9"
    n = snapshots // picture
    with Outbox(path, max_bytes=budget) as box:
        for i in range(n):
            box.put_bulk(f"snapshot/e{i // 3}/cam-{i % 3}", jpeg,
                         {"event_id": f"e{i // 3}", "camera": f"cam-{i % 3}", "shot": i % 3})
    return n


class Poller:
    """Calls `stats()` every `every_s` on its own thread, timing each call."""

    def __init__(self, box: Outbox, every_s: float) -> None:
        self.box = box
        self.every_s = every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-stats-poller")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter_ns()
            self.box.stats()
            self.samples.append(time.perf_counter_ns() - t0)
            self._stop.wait(self.every_s)


def run_pass(path: Path, args: argparse.Namespace, budget: int) -> tuple[list[int], list[int]]:
    """(commit times, stats() times) in ns for one store."""
    commits: list[int] = []
    with Outbox(path, max_bytes=budget) as box:
        poller = Poller(box, args.poll_ms / 1000)
        poller.start()
        try:
            for i in range(args.warmup + args.commits):
                t0 = time.perf_counter_ns()
                box.commit_event(Lane.ALARM, alarm_draft)
                t1 = time.perf_counter_ns()
                if i >= args.warmup:
                    commits.append(t1 - t0)
                time.sleep(args.gap_ms / 1000)
        finally:
            poller.stop()
    return commits, poller.samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=500, help="alarms per store (default 500)")
    ap.add_argument("--warmup", type=int, default=10, help="commits not counted (default 10)")
    ap.add_argument("--snapshots-mb", type=int, default=240,
                    help="pictures in the full store, in MB (default 240)")
    ap.add_argument("--picture-kb", type=int, default=200,
                    help="size of one picture, in KiB (default 200)")
    ap.add_argument("--budget-mb", type=int, default=256,
                    help="the store's byte budget, in MiB (default 256, the product's)")
    ap.add_argument("--poll-ms", type=float, default=100.0,
                    help="stats() every this many ms (default 100)")
    ap.add_argument("--gap-ms", type=float, default=10.0,
                    help="pause between commits, in ms (default 10)")
    args = ap.parse_args()
    print_machine()
    print(f"store: {Path(gateway.store.__file__).parent} (schema version"
          f" {gateway.store.SCHEMA_VERSION})")
    budget = args.budget_mb * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="alarmgw-bench-commit-stats-"))
    try:
        t0 = time.perf_counter()
        n = fill(work / "full.sqlite3", budget, args.snapshots_mb * 1000 * 1000,
                 args.picture_kb * 1024)
        print(f"filled: {n} pictures of {args.picture_kb} KiB in {time.perf_counter() - t0:.1f}"
              f" s; store file {(work / 'full.sqlite3').stat().st_size / 1e6:.0f} MB;"
              f" loadavg {loadavg()}")
        empty_commits, empty_stats = run_pass(work / "empty.sqlite3", args, budget)
        full_commits, full_stats = run_pass(work / "full.sqlite3", args, budget)
        print(f"done; loadavg {loadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    e, f = Percentiles.of_ns(empty_commits), Percentiles.of_ns(full_commits)
    es, fs = Percentiles.of_ns(empty_stats), Percentiles.of_ns(full_stats)
    print()
    print_table(["what (ms)", "n", "p50", "p90", "p99", "max"], [
        ["alarm commit, empty store, stats() polled", e.n, e.p50, e.p90, e.p99, e.max],
        [f"alarm commit, {args.snapshots_mb} MB of pictures, stats() polled", f.n, f.p50,
         f.p90, f.p99, f.max],
        ["  ratio full / empty", "", ratio(f.p50, e.p50), ratio(f.p90, e.p90),
         ratio(f.p99, e.p99), ratio(f.max, e.max)],
        ["stats() call, empty store", es.n, es.p50, es.p90, es.p99, es.max],
        [f"stats() call, {args.snapshots_mb} MB of pictures", fs.n, fs.p50, fs.p90, fs.p99,
         fs.max],
    ])
    r = ratio(f.p99, e.p99)
    verdict = "met" if r < TARGET_P99_RATIO else "MISSED"
    print(f"\nSUMMARY commit_stats: alarm commit with {args.snapshots_mb} MB of pictures and"
          f" stats() every {args.poll_ms:g} ms: p50 {f.p50:.2f} ms p99 {f.p99:.2f} ms max"
          f" {f.max:.2f} ms; empty store p50 {e.p50:.2f} ms p99 {e.p99:.2f} ms; p99 ratio"
          f" {r:.2f} (target < {TARGET_P99_RATIO}: {verdict}); stats() p50 {fs.p50:.2f} ms"
          f" (empty {es.p50:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
