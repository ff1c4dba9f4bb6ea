"""How long a row has waited, as `alarmgw status` and `alarmgw queue` say it, when NTP steps
the wall clock.

A Raspberry Pi has no real-time clock: it may commit an alarm at "1970" and be stepped to
today by NTP a minute later, or the other way round. Within one boot the boot clock
(CLOCK_BOOTTIME, recorded with every row) never jumps, so an age from it is right whatever
the wall clock did; a row from an earlier boot can only be aged by the wall clock, and the
commands say so. The wall clock is stepped here by replacing `time.time` (and
`time.time_ns`) in this process; the boot clock is the kernel's, untouched. The commands
run in this process (`gateway.cli.program.main`), with the service stopped: they read the
store from disk.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from gw import write_config

from gateway.cli.program import main
from gateway.clock import mono_ns, read_boot_id
from gateway.config import load_config
from gateway.service import store_path
from gateway.store import EventDraft, Lane, Outbox

#: Thirty years, in seconds: the size of a step from a clock that started at the epoch.
DECADES = 30 * 365.25 * 86400
EARLIER_BOOT = "5f0c2d1e-0000-4000-8000-000000000001"


def alarm(seq: int) -> EventDraft:
    return EventDraft(event_id=f"alarm-{seq}", event_type="alarm", topic="event",
                      payload=json.dumps({"seq": seq, "type": "alarm"}).encode())


def step_wall_clock(monkeypatch: pytest.MonkeyPatch, by_s: float) -> None:
    """Step this process's wall clock by `by_s` seconds, as NTP steps the system's."""
    real, real_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real() + by_s)
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(by_s * 1e9))


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    capsys.readouterr()
    code = main(["-c", str(config), *args])
    assert code == 3, capsys.readouterr()  # the service is not running: read from disk
    return capsys.readouterr().out


# -- the computation, with both clocks given ---------------------------------------------------
# (Imported in each test: the commands' tests below need nothing but the commands.)


def test_an_age_within_this_boot_is_told_by_the_boot_clock() -> None:
    from gateway.service.status import Now, waited

    created = "2026-11-28T15:37:04.123Z"
    then = 1_795_880_224.123  # created, as seconds since the epoch
    row_mono = 7_000_000_000
    for wall in (then + 5, then + DECADES, then - DECADES):  # right, stepped on, stepped back
        now = Now(wall_s=wall, boot_ns=row_mono + 5_000_000_000, boot_id="this-boot")
        assert waited(created, row_mono, "this-boot", now) == (5.0, "boot")


def test_an_age_from_an_earlier_boot_is_the_wall_clocks_and_says_so() -> None:
    from gateway.service.status import Now, waited

    created = "2026-11-28T15:37:04.123Z"
    now = Now(wall_s=1_795_880_224.123 + 60, boot_ns=1_000_000_000, boot_id="this-boot")
    assert waited(created, 7_000_000_000, EARLIER_BOOT, now) == (60.0, "wall")
    # A row without a boot clock (written before rows had one) is aged the same way.
    assert waited(created, None, None, now) == (60.0, "wall")
    assert waited(None, None, None, now) == (None, None)


def test_the_oldest_waiting_row_is_the_first_committed_not_the_earliest_wall_time() -> None:
    from gateway.service.status import Now, oldest_waiting

    now = Now(wall_s=100.0, boot_ns=50_000_000_000, boot_id="b")
    lanes: dict[str, dict[str, Any]] = {
        # Committed first, while the clock said 2026; then NTP stepped it back to 1970.
        "alarm": {"oldest_row": 1, "oldest_created_at": "2026-11-28T15:37:04.123Z",
                  "oldest_event_id": "a", "oldest_mono_ns": 10_000_000_000,
                  "oldest_boot_id": "b"},
        "event": {"oldest_row": 2, "oldest_created_at": "1970-01-01T00:00:30.000Z",
                  "oldest_event_id": "e", "oldest_mono_ns": 20_000_000_000,
                  "oldest_boot_id": "b"},
        "bulk": {"oldest_row": None, "oldest_created_at": None, "oldest_event_id": None,
                 "oldest_mono_ns": None, "oldest_boot_id": None},
    }
    oldest = oldest_waiting(lanes, now)
    assert oldest is not None
    assert (oldest["lane"], oldest["age_s"], oldest["age_clock"]) == ("alarm", 40.0, "boot")


# -- the commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["stepped-after-the-commit", "wrong-at-the-commit"])
def test_queue_and_status_ages_stay_right_when_ntp_steps_the_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        when: str) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    if when == "wrong-at-the-commit":
        step_wall_clock(monkeypatch, -DECADES)  # a Pi that booted without network
    start = mono_ns()
    with Outbox(store_path(load_config(config))) as box:
        box.commit_event(Lane.ALARM, alarm)
    monkeypatch.undo()
    if when == "stepped-after-the-commit":
        step_wall_clock(monkeypatch, DECADES)
    else:
        pass  # NTP has put the clock right: the row's wall time is decades behind it

    res = json.loads(run(capsys, config, "queue", "--json"))
    st = json.loads(run(capsys, config, "status", "--json"))
    text_queue = run(capsys, config, "queue")
    text_status = run(capsys, config, "status")
    waited_most = (mono_ns() - start) / 1e9 + 0.1  # the ages are rounded to 0.1 s

    oldest = st["queue"]["oldest_waiting"]
    assert oldest["event_id"] == "alarm-1"
    assert 0 <= oldest["age_s"] <= waited_most
    assert oldest["age_clock"] == "boot"
    [row] = res["waiting"]
    assert row["age_clock"] == "boot"
    assert 0 <= row["age_s"] <= waited_most
    assert row["boot_id"] == read_boot_id()
    got = re.search(r"^\s+alarm\s+ready\s+seq 1\s+alarm\s+\S+\s+waited (\d+) s\s+tries 0",
                    text_queue, re.M)
    assert got, text_queue
    assert int(got.group(1)) <= waited_most
    got = re.search(r"^oldest:\s+alarm-1 in the alarm lane, waiting since \S+ \((\d+) s\)$",
                    text_status, re.M)
    assert got, text_status
    assert int(got.group(1)) <= waited_most


def test_a_row_from_an_earlier_boot_is_aged_by_the_wall_clock_and_marked_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "gw", broker_port=1)
    step_wall_clock(monkeypatch, -3600)  # committed an hour ago, by the wall clock
    with Outbox(store_path(load_config(config)), boot_id=EARLIER_BOOT) as box:
        box.commit_event(Lane.ALARM, alarm)
    monkeypatch.undo()

    [row] = json.loads(run(capsys, config, "queue", "--json"))["waiting"]
    assert row["age_clock"] == "wall"
    assert 3600 <= row["age_s"] < 3660
    oldest = json.loads(run(capsys, config, "status", "--json"))["queue"]["oldest_waiting"]
    assert oldest["age_clock"] == "wall"
    assert 3600 <= oldest["age_s"] < 3660
    text = run(capsys, config, "queue")
    assert re.search(r"waited ~60 min by the wall clock, from an earlier boot  tries 0", text), \
        text
    text = run(capsys, config, "status")
    assert re.search(r"^oldest:\s+alarm-1 in the alarm lane, waiting since \S+ \(~60 min by the"
                     r" wall clock, from an earlier boot\)$", text, re.M), text
