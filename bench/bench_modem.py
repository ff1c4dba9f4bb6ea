"""How long the SMS driver itself takes, against the simulated modem on a pseudo-terminal.

A real network takes 2 to 10 s to accept an SMS; this measures what the driver and the AT
dialogue add on top (setup commands, prompt, parts), how long a check() takes, and how
long it takes to report a modem that does not answer. Prints p50/p99/max in ms.

    .venv/bin/python bench/bench_modem.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.drivers.modem import Modem, split_sms
from gateway.errors import ModemNotAnsweringError
from hw_sim.modem import SimModem

ALARM = "南门门卫室一键报警 ALARM 15:37"
DUTY = "+8613800138000"


def measure(runs: int, fn: Callable[[], object]) -> list[float]:
    """Run `fn` `runs` times; return the durations in ms."""
    out: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    print(f"{name:<44} n={len(ms):<4} p50={q[49]:7.2f} ms  p99={q[98]:7.2f} ms"
          f"  max={max(ms):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    long_text = ALARM * 8
    print(f"'{ALARM}' is 1 SMS; {len(long_text)} characters make "
          f"{len(split_sms(long_text))} SMS")
    with tempfile.TemporaryDirectory() as tmp, SimModem(Path(tmp)) as sim:
        with Modem(sim.port, timeout_s=1.0) as modem:
            modem.open()
            report("check()", measure(args.runs, modem.check))
            report("send_sms() 1 part", measure(args.runs, lambda: modem.send_sms(DUTY, ALARM)))
            report(f"send_sms() {len(split_sms(long_text))} parts",
                   measure(args.runs, lambda: modem.send_sms(DUTY, long_text)))
            report("split_sms() of the long text",
                   measure(args.runs, lambda: split_sms(long_text)))
        sim.set_fault("silent")
        for timeout in (0.5, 3.0):
            with Modem(sim.port, timeout_s=timeout) as modem:

                def dead(m: Modem = modem) -> None:
                    try:
                        m.check()
                    except ModemNotAnsweringError:
                        return
                    raise AssertionError("a silent modem answered")

                report(f"silent modem reported (timeout_s={timeout})", measure(3, dead))


if __name__ == "__main__":
    main()
