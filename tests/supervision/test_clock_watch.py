"""The clock: its NTP state, and a fault while it stays unsynced too long after boot."""

from __future__ import annotations

from pathlib import Path

import pytest
from gw import InProcessGateway, write_config

import gateway.clock as clockmod
from gateway.clock import Clock, clock_sync_state
from gateway.drivers import FaultChange
from gateway.supervision.clock_watch import DEVICE_ID, ClockWatch
from hw_sim.broker import Mosquitto
from hw_sim.platform import PlatformConsole

WAIT = 10.0
GATEWAY = "test-school/gw-test"


class Boot:
    """A CLOCK_BOOTTIME the test moves, in seconds."""

    def __init__(self, s: float) -> None:
        self.s = s

    def __call__(self) -> int:
        return int(self.s * 1e9)


def test_fault_after_the_threshold_since_boot_and_clear_on_sync() -> None:
    clock = Clock("assume-unsynced")
    boot = Boot(30.0)
    changes: list[FaultChange] = []
    watch = ClockWatch(clock, changes.append, fault_after_s=60.0, boottime_ns=boot)
    watch.check_now()
    assert changes == []  # 30 s after boot: normal for a Pi that waits for the network
    assert watch.unsynced_for_s() == pytest.approx(30.0)
    boot.s = 61.0
    watch.check_now()
    (fault,) = changes
    assert (fault.device_id, fault.active) == (DEVICE_ID, True)
    assert "61 s since boot" in fault.reason
    assert "timedatectl" in fault.reason
    watch.check_now()
    assert len(changes) == 1  # one fault per failure
    clock.source = "assume-synced"
    boot.s = 100.0
    watch.check_now()
    assert [(c.device_id, c.active) for c in changes[1:]] == [(DEVICE_ID, False)]
    assert watch.unsynced_for_s() is None

    # Sync lost later: the threshold counts from when it was lost, not from boot.
    clock.source = "assume-unsynced"
    boot.s = 5000.0
    watch.check_now()
    assert len(changes) == 2
    boot.s = 5059.0
    watch.check_now()
    assert len(changes) == 2
    boot.s = 5061.0
    watch.check_now()
    assert changes[-1].active is True
    assert "since it lost sync" in changes[-1].reason


def test_zero_threshold_turns_the_fault_off() -> None:
    changes: list[FaultChange] = []
    watch = ClockWatch(Clock("assume-unsynced"), changes.append, fault_after_s=0,
                       boottime_ns=Boot(1e6))
    watch.start()
    watch.check_now()
    watch.stop()
    assert changes == []


def test_clock_fault_reaches_the_platform(tmp_path: Path, broker: Mosquitto) -> None:
    config = write_config(tmp_path / "gw", broker_port=broker.port,
                          sync_source="assume-unsynced", unsynced_fault_s=1)
    with PlatformConsole(broker.host, broker.port, persistent=False) as console, \
            InProcessGateway(config) as gw:
        assert console.wait_for(lambda c: bool(c.events_of("fault", DEVICE_ID)), WAIT), \
            console.events_of()
        (fault,) = console.events_of("fault", DEVICE_ID)
        assert fault["time_synced"] is False
        assert fault["source"] == "ntp:assume-unsynced"
        assert "NTP-synced" in fault["detail"]["reason"]
        svc = gw.service
        assert [f["device"] for f in svc.status()["faults"]] == [DEVICE_ID]
        svc.clock.source = "assume-synced"
        assert svc.clockwatch is not None
        svc.clockwatch.check_now()
        assert console.wait_for(lambda c: bool(c.events_of("fault_cleared", DEVICE_ID)), WAIT)
        assert svc.status()["faults"] == []


def test_sync_state_falls_back_to_timesyncd_where_adjtimex_is_blocked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the unit's ProtectClock=yes, adjtimex(2) fails with EPERM: timesyncd's flag
    file tells instead."""
    flag = tmp_path / "timesync" / "synchronized"
    monkeypatch.setattr(clockmod, "_adjtimex_blocked", True)
    monkeypatch.setattr(clockmod, "TIMESYNCD_FLAG", flag)
    assert clock_sync_state() == (None, "unknown")  # no timesyncd here
    flag.parent.mkdir()
    assert clock_sync_state() == (False, "timesyncd")  # running, not synced yet
    flag.touch()
    assert clock_sync_state() == (True, "timesyncd")
    clock = Clock("kernel")
    assert clock.is_synced() is True
    assert clock.sync_method() == "timesyncd"


def test_sync_state_from_the_kernel() -> None:
    synced, method = clock_sync_state()
    assert method in ("adjtimex", "timesyncd", "unknown")
    if method == "adjtimex":
        assert isinstance(synced, bool)
