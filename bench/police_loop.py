#!/usr/bin/env python3
"""Press -> platform ack -> acknowledgement lamp on, over N presses (default 200).

The gateway runs in-process on the simulator (debounce 0, so the figure is
the loop, not the debounce), with a GPIO output as its ack lamp. A platform
in the same process (the reference console, `auto_ack_s=0`) acknowledges
each alarm the moment it arrives, with a signed `ack` command. One sample
runs from just before the simulated press to the moment the gateway drives
the lamp's pin high (the GPIO output's `set(True)`, timed by wrapping it in
this process; no gateway code changes). Between samples the lamp is switched
off by hand and the button released, each waited for.

Stages are printed too: press -> alarm at the platform, alarm -> ack sent,
ack sent -> lamp on. Target (issue): p99 under 50 ms on loopback.

    .venv/bin/python bench/police_loop.py [--presses 200]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Percentiles, print_machine, print_table, write_config

from gateway import outputs as outputs_mod
from gateway.config import load_config
from gateway.service import Service
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

KEY = bytes(range(32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    print_machine()
    work = Path(tempfile.mkdtemp(prefix="alarmgw-bench-police-"))
    lamp_on = threading.Event()
    lamp_at: list[int] = []
    original_set = outputs_mod.GpioSwitch.set

    def timed_set(self: Any, on: bool) -> None:
        original_set(self, on)
        if on and self.settings.id == "ack-lamp":
            lamp_at.append(time.perf_counter_ns())
            lamp_on.set()

    outputs_mod.GpioSwitch.set = timed_set  # type: ignore[method-assign]
    broker = Mosquitto(work / "broker")
    try:
        broker.start()
        (work / "cmd.key").write_text(KEY.hex())
        cfg_path = write_config(work / "gw", broker_port=broker.port, gateway="gw-bench",
                                debounce_ms=0, inputs=[
                                    {"id": "gate-panic", "name": "南门", "kind": "panic",
                                     "gpio": 17, "contact": "NO", "pull": "up"}])
        with cfg_path.open("a") as f:
            f.write('\n[[outputs]]\nid = "ack-lamp"\nname = "接警确认灯"\ngpio = 23\n'
                    f'\n[commands]\nkey_file = "{work / "cmd.key"}"\nack_lamp = "ack-lamp"\n'
                    "ack_lamp_s = 0\n")
        cfg = load_config(cfg_path)
        service = Service(cfg)
        console = PlatformConsole(broker.host, broker.port, persistent=False,
                                  command_key=KEY, auto_ack_s=0.0, operator="bench")
        console.start()
        service.start()
        try:
            assert console.wait_for(lambda c: bool(c.status), 10)
            panel, outputs = service.sim, service.outputs
            assert panel is not None and outputs is not None
            total: list[int] = []
            to_alarm: list[int] = []
            to_ack: list[int] = []
            to_lamp: list[int] = []
            for i in range(args.warmup + args.presses):
                lamp_on.clear()
                n_alarms = len(console.events_of("alarm"))
                t0 = time.perf_counter_ns()
                panel.press("gate-panic")
                if not lamp_on.wait(10):
                    print(f"press {i}: lamp not on within 10 s", file=sys.stderr)
                    return 1
                t_lamp = lamp_at[-1]
                console.wait_for(lambda c, n=n_alarms: len(c.events_of("alarm")) > n, 10)
                event = console.events_of("alarm")[-1]
                rec = next(r for r in reversed(console.raw) if r.topic.endswith("/event"))
                sent = console.acks_sent[event["id"]][1]
                if i >= args.warmup:
                    total.append(t_lamp - t0)
                    arrived_ns = int(rec.arrived_mono * 1e9)
                    sent_ns = int(sent * 1e9)
                    # perf_counter and monotonic share CLOCK_MONOTONIC on Linux.
                    to_alarm.append(arrived_ns - t0)
                    to_ack.append(sent_ns - arrived_ns)
                    to_lamp.append(t_lamp - sent_ns)
                panel.release("gate-panic")
                outputs.set("ack-lamp", False, None, by="bench")
                outputs.wait_applied("ack-lamp", 5)
                console.wait_for(lambda c, n=n_alarms: len(c.events_of("restore")) > n, 10)
        finally:
            service.stop()
            console.stop()
    finally:
        outputs_mod.GpioSwitch.set = original_set  # type: ignore[method-assign]
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for name, sample in (("press -> lamp on (the loop)", total),
                         ("  press -> alarm at the platform", to_alarm),
                         ("  alarm -> ack sent by the platform", to_ack),
                         ("  ack sent -> lamp pin driven", to_lamp)):
        p = Percentiles.of_ns(sample)
        rows.append([name, p.n, p.p50, p.p90, p.p99, p.max])
    print()
    print_table(["what (ms)", "n", "p50", "p90", "p99", "max"], rows)
    p = Percentiles.of_ns(total)
    verdict = "met" if p.p99 < 50 else "MISSED"
    print(f"\nSUMMARY police loop: press -> ack -> lamp p50 {p.p50:.2f} ms p99 {p.p99:.2f} ms"
          f" over {p.n} presses (target p99 < 50 ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
