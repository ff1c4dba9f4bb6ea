"""The chaos run: faults at random while buttons are pressed at random, then count every press.

The gateway's central promise is that no committed press is ever lost and that an alarm
outruns everything else. This module proves it the way alarm-transmission equipment is
proven: for a given duration and seed, it runs the real gateway (``python -m gateway run``,
a child process on the GPIO and Modbus simulators, with two simulated digest-auth HTTP
cameras linked to the panic buttons, a small store budget, platform commands and escalation
to a sounder and the simulated SMS modem) against a real Mosquitto (with persistence, so the
platform's session survives a SIGKILL, as a production broker's would) through
:class:`hw_sim.netfault.NetFault`, with the reference :class:`hw_sim.platform.PlatformConsole`
recording and acknowledging alarms on arrival (its operator leaves a seeded few unanswered),
with the second path, SIA DC-09 (Contact ID, AES from a 0600 key file) to the simulated
receiving centre :class:`hw_sim.arc.ArcReceiver` (pysiaalarm, on loopback; ack timeout 1 s,
retries up to every 2 s, a path failing 5 s a fault), and injects one fault at a time,
chosen at random:

- ``broker_kill``: SIGKILL the broker, bring it back after a while on the same port;
- ``blackhole``: the proxy drops every byte, connections stay open (a half-open link);
- ``cut``: the proxy resets every connection, and refuses new ones for a while;
- ``latency``: the proxy holds every byte for 200-1500 ms each way;
- ``throttle``: the proxy carries 2-20 kB/s each way (a slow mobile link);
- ``gateway_kill``: SIGKILL the gateway and start it again, as systemd's Restart=always would;
- ``modbus_silent``: a Modbus module stops answering;
- ``camera_fail``: a camera answers 500, hangs, refuses connections, sends half a JPEG,
  refuses the login, or answers later than the gateway waits;
- ``modem_fail``: the modem says nothing, loses its SIM or its network, or the network
  refuses every SMS; the first time (and at random later) the operator also leaves the next
  alarm unanswered, and the modem stays broken until that alarm's SMS has failed;
- ``arc_down``: the receiving centre has gone (its sockets and connections closed);
- ``arc_blackhole``: it reads every message and answers none;
- ``arc_nak``: it refuses every message with a NAK;
- ``arc_spoilt``: it answers junk, an ACK with a bad CRC, or half an ACK;
- ``both_down``: the proxy resets MQTT and the centre is down at once (at least
  ``uplink_down_s`` + 2 s, so that an alarm kept from both paths escalates).

Each fault of the centre ends with it answering normally again. Meanwhile a second thread
presses and releases the simulated buttons (four panic buttons, one tamper switch) through
the control socket, at random. When the time is up the faults
stop, the run waits for every device fault to clear and every escalation to finish, then for
the gateway's outbox to drain (control command ``queue``) and the DC-09 path's queue too
(``status``, ``paths.dc09.queue.waiting``), and checks the console's record against the
store: every seq from 1 to ``next_seq - 1`` arrived, no id twice after
de-duplication, no seq under two ids, no gap, faults paired with fault_cleared; every
picture an event lists arrived or was reported failed, unless the store evicted it under
its budget or a SIGKILL cut it before it was taken; every alarm that no acknowledgement
could reach within ``escalation.ack_timeout_s`` escalated; an alarm left unanswered while the
link was up escalated with ``no_ack``, and none whose acknowledgement reached the gateway in
time did; every escalation has its sounder and SMS steps; every ``sms_sent`` record has its
text at the modem, and every ``sms_failed`` one a modem fault behind it. Alarm latency (the
event's CLOCK_BOOTTIME stamp to its first arrival at the console) is reported as p50/p99
for alarms committed while the link was up (no path fault active and none in the last
``settle_s``, plus 1.5 x keepalive after a black hole; device faults do not count against
the link), by fault kind, and for all alarms.

The DC-09 path is checked against the console's alarms (and tampers), which are every
committed one: each must have reached the centre as a Contact ID new event with its zone
and code (DC09_ZONES: 120 panic, 122 silent, 121 duress, 144 tamper) and been answered ACK,
the centre's messages de-duplicated by DC-09 sequence number as a receiver does (a resend
after a lost ACK keeps its number), matched by zone and code in commit order: ``lost`` (an
alarm the centre never ACKed), ``extra`` (one it got under a second number), a number
reused with other content, a DUH (the simulator refuses only codes it does not know, and
alarms have none of those), an ``arc_spoilt`` whose bad replies the gateway did not count,
or a queue left at the end fail the run. The per-path counts (both, MQTT only, DC-09 only),
the path faults raised, and the alarm latency to the centre (commit to the first ACKed
arrival, p50/p99, for alarms committed while no fault kept them from it and for all) are
reported.

``python -m hw_sim.chaos --duration 600 --seed 7`` prints one summary line and exits 1 on any
loss (``scripts/chaos`` wraps it). Only loopback, only processes it started, all stopped at
the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.control import request
from gateway.errors import GatewayError
from gateway.service import socket_path
from hw_sim.arc import ArcReceiver, Mode, write_key_file
from hw_sim.broker import Mosquitto
from hw_sim.modem import SimFault, SimModem
from hw_sim.netfault import NetFault
from hw_sim.platform import PlatformConsole

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SITE = "chaos-school"
GATEWAY = "gw-chaos"

#: The simulated inputs: (id, kind, gpio, contact).
INPUTS: tuple[tuple[str, str, int, str], ...] = (
    ("gate-panic", "panic", 17, "NO"),
    ("office-panic", "panic", 27, "NC"),
    ("box-tamper", "tamper", 22, "NC"),
)

#: The simulated Modbus modules: (device id, unit) on one RS-485 bus.
MODBUS_DEVICES: tuple[tuple[str, int], ...] = (("io3", 3), ("io4", 4))
#: The Modbus panic buttons: (id, device, discrete input, contact).
MODBUS_INPUTS: tuple[tuple[str, str, int, str], ...] = (
    ("hall-panic", "io3", 2, "NO"),
    ("gym-panic", "io4", 0, "NC"),
)
#: Every input the presses choose from.
POINTS: tuple[str, ...] = tuple(p[0] for p in INPUTS) + tuple(p[0] for p in MODBUS_INPUTS)

#: The simulated HTTP cameras (digest auth, inside the gateway) and the inputs linked to each.
CAMERAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gate-cam", ("gate-panic", "hall-panic")),
    ("yard-cam", ("gate-panic", "office-panic")),
)
#: Pictures an alarm asks of each linked camera after it, and the time between them, in s.
CAMERA_SHOTS, CAMERA_INTERVAL_S, CAMERA_TIMEOUT_S = 2, 0.5, 1.0
#: How a camera fails in `camera_fail` (hw_sim.camera modes, and "slow": answers too late).
CAMERA_FAILURES: tuple[str, ...] = ("500", "timeout", "down", "truncated", "401", "slow")
#: The store's byte budget, in bytes: small, so that the pictures of a few seconds of outage
#: fill it and the oldest give way while the run goes on.
STORE_MAX_BYTES = 96 * 1024
#: Escalation timers, in seconds: an alarm not acknowledged this long after its commit, or
#: waiting while the uplink has been down this long, sounds the sounder and texts.
ACK_TIMEOUT_S, UPLINK_DOWN_S = 8.0, 3.0
#: How often the gateway asks the modem for its SIM, network and signal, in seconds.
MODEM_CHECK_S = 5.0
#: How the modem fails in `modem_fail` (hw_sim.modem faults): it says nothing at all, has
#: no SIM, no network, or the network refuses every SMS (+CMS ERROR: 500).
MODEM_FAILURES: tuple[SimFault, ...] = ("silent", "no_sim", "not_registered", "cms_500")
#: A modem check gives up on a silent modem after about 12 s (AT, resynchronising, two
#: probes: gateway/drivers/modem/), so a silence shorter than that goes unnoticed.
MODEM_SILENT_S = (18.0, 24.0)
#: The share of alarms the platform's operator leaves unanswered, so that alarms escalate
#: for want of an acknowledgement while the uplink is fine (`no_ack`). Which ones comes from
#: the seed and the alarm's seq (:func:`operator_answers`).
UNANSWERED_SHARE = 0.07
#: The chance that a `modem_fail` after the first (the first always does) also leaves the
#: next alarm unanswered, the modem staying broken until that alarm's SMS has failed.
MODEM_UNANSWERED_P = 0.5
#: How long such a `modem_fail` waits at most for that SMS to fail, in seconds: the alarm's
#: ack timeout, a modem check on a silent modem (about 12 s) ahead of it, and the attempt.
MODEM_HOLD_S = ACK_TIMEOUT_S + 60.0
#: An `sms_failed` is explained by a modem fault that began at most this long after its
#: escalation started (the modem failing under an SMS already on its way), in seconds.
SMS_UNDER_WAY_S = 10.0
DUTY_NUMBER = "+8613800138000"

#: The DC-09 path to the simulated receiving centre (hw_sim.arc, pysiaalarm): the account,
#: one message's wait for its ACK, the longest retry backoff, and how long a path may fail
#: to deliver before it is a fault (sent on the other path), in seconds.
ARC_ACCOUNT = "1234"
DC09_ACK_TIMEOUT_S, DC09_RETRY_MAX_S, PATH_FAIL_S = 1.0, 2.0, 5.0
#: NULL supervision messages between events, in seconds.
DC09_SUPERVISION_S = 10.0
#: Each input's Contact ID zone and the code of its alarm (or tamper), as the receiving
#: centre must get it (gateway/dc09/contactid.py): 120 panic, 122 silent panic (office),
#: 121 duress (hall), 144 sensor tamper.
DC09_ZONES: dict[str, tuple[int, int]] = {
    "gate-panic": (1, 120), "office-panic": (2, 122), "box-tamper": (3, 144),
    "hall-panic": (4, 121), "gym-panic": (5, 120),
}
DC09_SILENT, DC09_DURESS = ("office-panic",), ("hall-panic",)
#: How the receiver spoils its answers in `arc_spoilt` (hw_sim.arc modes).
ARC_SPOILT: tuple[Mode, ...] = ("garbage", "bad_crc", "truncated")
#: A receiver's de-duplication window: a DC-09 sequence number seen again within this many
#: messages is a resend (the numbers wrap after gateway.store.paths.MAX_WIRE_SEQ).
DC09_DEDUP_WINDOW = 4000

#: Faults of a device, not of the path: the uplink stays up while they last.
DEVICE_FAULTS = frozenset({"modbus_silent", "camera_fail", "modem_fail"})
#: Faults of the receiving centre alone: the MQTT path stays up while they last.
ARC_FAULTS = frozenset({"arc_down", "arc_blackhole", "arc_nak", "arc_spoilt"})
#: Faults that leave the MQTT path up (its latency counts as "link up" during them).
MQTT_UP_FAULTS = DEVICE_FAULTS | ARC_FAULTS
#: Faults that keep alarms from the receiving centre (the rest leave the DC-09 path up).
DC09_DOWN_FAULTS = ARC_FAULTS | {"both_down", "gateway_kill"}
FAULTS: tuple[str, ...] = ("broker_kill", "blackhole", "cut", "latency", "throttle",
                           "gateway_kill", "modbus_silent", "camera_fail", "modem_fail",
                           "arc_down", "arc_blackhole", "arc_nak", "arc_spoilt", "both_down")


@dataclass
class SnapshotTally:
    """The pictures the delivered events listed, against what the platform received."""

    expected: int = 0
    """Pictures listed in the events' `snapshots` fields (pre + post per camera)."""
    delivered: int = 0
    """JPEGs received (unique by event, camera, phase, shot)."""
    failed: int = 0
    """`snapshot_failed` records received (a listed picture that will not come)."""
    missing: int = 0
    """Listed pictures for which neither arrived."""
    evicted: int = 0
    """Waiting bulk rows the store evicted under its byte budget (from the gateway's log)."""
    refused: int = 0
    """Pictures the store refused to take (from the gateway's log)."""
    cut_by_kill: int = 0
    """Missing pictures of events committed shortly before a SIGKILL: shots not yet taken
    live in memory only (docs/protocol/README.md), so a kill may cut them."""
    extra: int = 0
    """Pictures received that no event listed (a wrong phase or shot number)."""

    @property
    def unexplained(self) -> int:
        """Missing pictures that neither eviction, refusal nor a kill accounts for."""
        return max(0, self.missing - self.cut_by_kill - self.evicted - self.refused)


@dataclass
class EscalationTally:
    """What the gateway did by itself, as its `escalation` events and the modem say."""

    alarms: int = 0
    """Alarms escalated (distinct `for_event`)."""
    reasons: dict[str, int] = field(default_factory=dict)
    """`no_ack` / `uplink_down` -> alarms."""
    steps: dict[str, int] = field(default_factory=dict)
    """`sounder_on`, `sms_sent`, `sms_failed`, `sounder_failed` -> events."""
    sms_at_modem: int = 0
    """Whole messages the simulated modem accepted."""
    unescalated: list[int] = field(default_factory=list)
    """Seqs of alarms that had to escalate (no ack could have come within ack_timeout_s)
    and did not, with no SIGKILL to excuse it."""
    excused_by_kill: int = 0
    """Alarms that had to escalate but whose gateway was SIGKILLed before it could."""
    sms_unconfirmed: list[int] = field(default_factory=list)
    """Alarm seqs with an `sms_sent` event but no text at the modem."""
    unanswered: int = 0
    """Alarms the platform's operator left unacknowledged."""
    no_ack_missed: list[int] = field(default_factory=list)
    """Seqs of unanswered alarms, committed while the link was up, that escalated for
    another reason than `no_ack` (no kill to excuse it)."""
    no_ack_after_ack: list[int] = field(default_factory=list)
    """Seqs of alarms that escalated with `no_ack` although their acknowledgement reached
    the gateway within ack_timeout_s (its result was back at the platform by then)."""
    incomplete: list[int] = field(default_factory=list)
    """Seqs of escalated alarms without a sounder step (`sounder_on`/`sounder_failed`) or
    an SMS step (`sms_sent`/`sms_failed`), with no kill to excuse it."""
    sms_failed_modem_ok: list[int] = field(default_factory=list)
    """Seqs of alarms with an `sms_failed` whose escalation started while no modem fault
    was injected (nor began within SMS_UNDER_WAY_S after)."""
    modem_faults: int = 0
    """`fault` events of the SMS modem (point `modem`)."""

    @property
    def failures(self) -> int:
        """Escalations the rules demand and did not happen, or happened against them."""
        return (len(self.unescalated) + len(self.sms_unconfirmed) + len(self.no_ack_missed)
                + len(self.no_ack_after_ack) + len(self.incomplete)
                + len(self.sms_failed_modem_ok))


@dataclass
class Dc09Tally:
    """The alarms the store committed, against what the receiving centre ACKed."""

    alarms: int = 0
    """Alarms (and tampers) committed: the platform's record of them (it has every one)."""
    arrived: int = 0
    """Alarms at the receiving centre: Contact ID new events of the alarm codes, answered
    ACK, unique by DC-09 sequence number."""
    copies: int = 0
    """Messages of those alarms the receiver took in any mode (spoilt answers included)."""
    resent: int = 0
    """Copies beyond the first of a sequence number (a resend after a lost ACK)."""
    lost: list[int] = field(default_factory=list)
    """Seqs of committed alarms the receiving centre never ACKed (by zone and code, the
    last ones of their kind, as the path keeps commit order)."""
    extra: int = 0
    """Alarms at the centre beyond those committed, by zone and code (an alarm sent again
    under a new sequence number: the centre would see it twice)."""
    seq_conflicts: int = 0
    """Sequence numbers that came back, within the de-duplication window, with other
    content (a receiver would drop the second as a resend)."""
    both: int = 0
    """Alarms on both paths (the platform's record is the MQTT path's)."""
    mqtt_only: int = 0
    """Alarms on the MQTT path alone (the `lost` ones)."""
    dc09_only: int = 0
    """Alarms at the centre that the platform does not have."""
    answers: dict[str, int] = field(default_factory=dict)
    """What the receiver answered, by kind: ACK, NAK, DUH, none, garbage, bad_crc, ..."""
    spoilt_unnoticed: int = 0
    """`arc_spoilt` faults whose spoilt answers the gateway counted no bad reply for."""
    bad_replies: int = 0
    """Bad replies the gateway counted during the `arc_spoilt` faults (its status)."""
    path_faults: dict[str, int] = field(default_factory=dict)
    """`fault` events of the paths themselves (path-mqtt, path-dc09) at the platform."""
    latency_up_ms: list[float] = field(default_factory=list)
    """Commit to first ACKed arrival at the centre, alarms committed while no fault kept
    them from it (DC09_DOWN_FAULTS and their recovery)."""
    latency_all_ms: list[float] = field(default_factory=list)
    drained: bool = True
    """The path's queue was empty at the end."""

    @property
    def failures(self) -> int:
        return (len(self.lost) + self.extra + self.seq_conflicts + self.spoilt_unnoticed
                + self.answers.get("DUH", 0) + (0 if self.drained else 1))


@dataclass
class ChaosResult:
    """What a chaos run counted."""

    seed: int
    duration_s: float
    faults: dict[str, int]
    presses: int
    """Press or release requests the gateway accepted."""
    refused: int
    """Press or release requests made while the gateway was down (not committed: not lost)."""
    committed: int
    """Events the store committed (next_seq - 1)."""
    delivered: int
    """Unique events at the console."""
    lost: list[int]
    """Committed seqs the console never received."""
    seq_twice: list[int]
    """Seqs that arrived under two different ids."""
    gaps: list[int]
    redelivered: int
    """Copies the console received and de-duplicated (at-least-once delivery at work)."""
    device_faults: int = 0
    """`fault` events the platform received (each must be matched by a `fault_cleared`)."""
    unpaired_faults: dict[str, int] = field(default_factory=dict)
    """Device -> `fault` events minus `fault_cleared` events, where not zero."""
    alarm_latency_up_ms: list[float] = field(default_factory=list)
    worst_up: list[tuple[float, int]] = field(default_factory=list)
    """The slowest alarms with the link up: (ms, seq), slowest first (for the log)."""
    """Alarms committed while the uplink was up (device faults included)."""
    alarm_latency_all_ms: list[float] = field(default_factory=list)
    alarm_latency_fault_ms: dict[str, list[float]] = field(default_factory=dict)
    """Fault kind -> latency of the alarms committed while it (or its recovery) lasted."""
    snapshots: SnapshotTally = field(default_factory=SnapshotTally)
    escalation: EscalationTally = field(default_factory=EscalationTally)
    dc09: Dc09Tally = field(default_factory=Dc09Tally)
    drained: bool = True

    @property
    def ok(self) -> bool:
        return self.drained and not (self.lost or self.seq_twice or self.gaps
                                     or self.unpaired_faults or self.snapshots.unexplained
                                     or self.snapshots.extra or self.escalation.failures
                                     or self.dc09.failures)

    def summary(self) -> str:
        up = sorted(self.alarm_latency_up_ms)
        every = sorted(self.alarm_latency_all_ms)
        device = sorted(v for k, vs in self.alarm_latency_fault_ms.items()
                        if k in DEVICE_FAULTS for v in vs)
        camera = sorted(self.alarm_latency_fault_ms.get("camera_fail", []))
        worst = " ".join(f"{k}={_pct(v, 100)}" for k, v in sorted(
            self.alarm_latency_fault_ms.items()) if v)
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        sn, es, dc = self.snapshots, self.escalation, self.dc09
        dc_up, dc_all = sorted(dc.latency_up_ms), sorted(dc.latency_all_ms)
        answers = " ".join(f"{k}={v}" for k, v in sorted(dc.answers.items()))
        path_faults = " ".join(f"{k}={v}" for k, v in sorted(
            {"path-dc09": 0, "path-mqtt": 0, **dc.path_faults}.items()))
        reasons = " ".join(f"{k}={v}" for k, v in sorted(
            {"no_ack": 0, "uplink_down": 0, **es.reasons}.items()))
        steps = " ".join(f"{k}={v}" for k, v in sorted(
            {"sounder_on": 0, "sms_sent": 0, "sms_failed": 0, **es.steps}.items()))
        return (f"chaos {'PASS' if self.ok else 'FAIL'}: seed={self.seed}"
                f" duration={self.duration_s:.0f}s faults[{faults}]"
                f" presses={self.presses} refused={self.refused}"
                f" committed={self.committed} delivered={self.delivered}"
                f" lost={len(self.lost)} seq_twice={len(self.seq_twice)}"
                f" gaps={len(self.gaps)} redelivered={self.redelivered}"
                f" device_faults={self.device_faults}"
                f" unpaired_faults={sum(abs(v) for v in self.unpaired_faults.values())}"
                f" drained={'yes' if self.drained else 'NO'}"
                f" snapshots[expected={sn.expected} delivered={sn.delivered} failed={sn.failed}"
                f" missing={sn.missing} evicted={sn.evicted} refused={sn.refused}"
                f" cut_by_kill={sn.cut_by_kill} unexplained={sn.unexplained} extra={sn.extra}]"
                f" escalations[alarms={es.alarms} {reasons} {steps}"
                f" unanswered={es.unanswered} modem_faults={es.modem_faults}"
                f" sms_at_modem={es.sms_at_modem} unescalated={len(es.unescalated)}"
                f" no_ack_missed={len(es.no_ack_missed)}"
                f" no_ack_after_ack={len(es.no_ack_after_ack)}"
                f" incomplete={len(es.incomplete)}"
                f" sms_failed_modem_ok={len(es.sms_failed_modem_ok)}"
                f" excused_by_kill={es.excused_by_kill}"
                f" sms_unconfirmed={len(es.sms_unconfirmed)}]"
                f" dc09[alarms={dc.alarms} arrived={dc.arrived} lost={len(dc.lost)}"
                f" extra={dc.extra} seq_conflicts={dc.seq_conflicts} copies={dc.copies}"
                f" resent={dc.resent} both={dc.both} mqtt_only={dc.mqtt_only}"
                f" dc09_only={dc.dc09_only} drained={'yes' if dc.drained else 'NO'}"
                f" answers({answers}) bad_replies={dc.bad_replies}"
                f" spoilt_unnoticed={dc.spoilt_unnoticed} path_faults({path_faults})"
                f" latency_arc_up(n={len(dc_up)}) p50={_pct(dc_up, 50)} p99={_pct(dc_up, 99)}"
                f" max={_pct(dc_up, 100)} ms; all(n={len(dc_all)}) p50={_pct(dc_all, 50)}"
                f" p99={_pct(dc_all, 99)} max={_pct(dc_all, 100)} ms]"
                f" alarm_latency_link_up(n={len(up)}) p50={_pct(up, 50)} p99={_pct(up, 99)}"
                f" max={_pct(up, 100)} ms; during device faults(n={len(device)})"
                f" p50={_pct(device, 50)} max={_pct(device, 100)} ms, camera_fail(n={len(camera)})"
                f" max={_pct(camera, 100)} ms; all alarms(n={len(every)})"
                f" p50={_pct(every, 50)} max={_pct(every, 100)} ms; worst by fault[{worst}] ms")


def _pct(values: list[float], p: float) -> str:
    if not values:
        return "-"
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return f"{sorted(values)[k]:.0f}"


def write_config(directory: Path, proxy_port: int, keepalive_s: int, *,
                 modem_port: str | None = None, command_key: bytes | None = None,
                 arc_port: int | None = None, arc_key: str | None = None) -> Path:
    """The gateway's config: GPIO and Modbus simulators, simulated cameras linked to the
    panic buttons, a small store budget, the broker through the proxy with fast reconnects,
    (with `modem_port` and `command_key`) platform commands and escalation by SMS, and
    (with `arc_port` and `arc_key`) the DC-09 path, encrypted, to a receiving centre."""
    lines = ["[gateway]", f'site = "{SITE}"', f'id = "{GATEWAY}"', 'state_dir = "state"',
             'runtime_dir = "run"', "", "[broker]", 'host = "127.0.0.1"',
             f"port = {proxy_port}", "plaintext = true", f"keepalive_s = {keepalive_s}",
             "reconnect_min_s = 0.1", "reconnect_max_s = 1.0", "connect_timeout_s = 3.0",
             "", "[store]", f"max_bytes = {STORE_MAX_BYTES}", "keep_acked = 20",
             "", "[clock]", 'sync_source = "assume-synced"',
             "", "[gpio]", 'backend = "mock"', "debounce_ms = 0"]

    def cameras_of(point: str) -> str:
        linked = [cam for cam, points in CAMERAS if point in points]
        return "cameras = [" + ", ".join(f'"{c}"' for c in linked) + "]"

    for point, kind, pin, contact in INPUTS:
        lines += ["", "[[inputs]]", f'id = "{point}"', f'name = "{point}"',
                  'location = "chaos"', f'kind = "{kind}"', f"gpio = {pin}",
                  f'contact = "{contact}"', 'pull = "up"', cameras_of(point)]
    # Modbus modules simulated inside the gateway (pymodbus over a socat pty pair):
    # a fault after 2 failed requests, probes every 0.2 s. The port is absolute: a
    # relative one is resolved through the simulator's pty link.
    tty = directory.resolve() / "run" / "ttyRS485"
    lines += ["", "[modbus]", "simulator = true", "fail_after = 2", "probe_interval_s = 0.2",
              "", "[[modbus.buses]]", 'id = "rs485"', 'type = "rtu"',
              f'port = "{tty}"', "baud = 115200", "timeout_ms = 30",
              "poll_interval_ms = 20"]
    for dev, unit in MODBUS_DEVICES:
        lines += ["", "[[modbus.devices]]", f'id = "{dev}"', 'bus = "rs485"', f"unit = {unit}",
                  f'name = "{dev}"', 'location = "chaos"']
    for point, dev, address, contact in MODBUS_INPUTS:
        lines += ["", "[[inputs]]", f'id = "{point}"', f'name = "{point}"',
                  'location = "chaos"', 'kind = "panic"',
                  f'modbus = {{ device = "{dev}", table = "di", address = {address} }}',
                  f'contact = "{contact}"', cameras_of(point)]
    # Small pictures, taken often: the pre-alarm ring polls every second, which is also
    # how a failed camera is noticed (2 failures) and its recovery seen.
    for cam, _points in CAMERAS:
        lines += ["", "[[cameras]]", f'id = "{cam}"', f'name = "{cam}"', 'location = "chaos"',
                  'driver = "sim"', 'username = "admin"', 'password = "sim-password"',
                  "width = 320", "height = 180", f"shots = {CAMERA_SHOTS}",
                  f"interval_s = {CAMERA_INTERVAL_S}", "pre_frames = 1", "pre_interval_s = 1",
                  f"timeout_s = {CAMERA_TIMEOUT_S}", "probe_interval_s = 1", "fault_after = 2"]
    if modem_port is not None and command_key is not None:
        key_file = write_key_file(directory.resolve() / "command.key", command_key.hex())
        lines += ["", "[[outputs]]", 'id = "sounder"', 'name = "sounder"', 'location = "chaos"',
                  "gpio = 24",
                  "", "[commands]", f'key_file = "{key_file}"',
                  "", "[escalation]", f"ack_timeout_s = {ACK_TIMEOUT_S}",
                  f"uplink_down_s = {UPLINK_DOWN_S}", 'sounder = "sounder"', "sounder_s = 5",
                  f'sms_to = ["{DUTY_NUMBER}"]',
                  "", "[escalation.modem]", f'port = "{modem_port}"', "sms_timeout_s = 5",
                  f"check_interval_s = {MODEM_CHECK_S}"]
    if arc_port is not None and arc_key is not None:
        key_file = write_key_file(directory.resolve() / "dc09.key", arc_key)
        zones = ", ".join(f"{p} = {z}" for p, (z, _code) in DC09_ZONES.items())
        lines += ["", "[paths]", f"path_fail_s = {PATH_FAIL_S}",
                  "", "[paths.dc09]", 'host = "127.0.0.1"', f"port = {arc_port}",
                  f'account = "{ARC_ACCOUNT}"', 'receiver = "1"', 'line = "1"',
                  f'key_file = "{key_file}"', f"ack_timeout_s = {DC09_ACK_TIMEOUT_S}",
                  f"retry_max_s = {DC09_RETRY_MAX_S}", f"supervision_s = {DC09_SUPERVISION_S}",
                  f"zones = {{ {zones} }}",
                  "silent = [" + ", ".join(f'"{p}"' for p in DC09_SILENT) + "]",
                  "duress = [" + ", ".join(f'"{p}"' for p in DC09_DURESS) + "]"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Gateway:
    """`python -m gateway run` as a child process that can be SIGKILLed and restarted."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.socket = socket_path(load_config(config))
        self.log_path = config.parent / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "-c", str(self.config), "run"],
                stdout=logf, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chaos: gateway exited with {self.proc.returncode};"
                                   f" see {self.log_path}")
            try:
                self.control({"cmd": "ping"}, timeout=1.0)
                return
            except (GatewayError, OSError):
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"chaos: gateway not serving after {timeout} s;"
                                       f" see {self.log_path}") from None
            # The control socket is the only readiness signal a child gives.
            time.sleep(0.05)

    def control(self, req: dict[str, Any], timeout: float = 5.0) -> Any:
        return request(self.socket, req, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the gateway, and then what it had started (the simulator's socat).

        On a Pi the gateway starts no processes; on the simulator the Modbus bus is a socat
        pty pair, which would outlive a SIGKILLed gateway and keep the pty link alive.
        """
        if self.proc is None:
            return
        orphans = _descendants(self.proc.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 5.0
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.02)  # not our children: nothing to wait() on

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _descendants(pid: int) -> list[int]:
    """The pids of `pid`'s children, grandchildren and so on (from /proc)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


class ChaosRun:
    """One seeded run; :meth:`run` returns the counts.

    Args:
        workdir: where the broker, the gateway's state, the modem's pty and the logs go.
        duration_s: how long faults and presses go on, in seconds (longer if the first
            deck of faults is not through by then: every kind is injected at least once).
        seed: the random seed (faults, their lengths, presses).
        keepalive_s: the gateway's MQTT keepalive, in seconds.
        settle_s: how long after a fault ends the link does not yet count as up, in seconds.
        drain_timeout_s: how long the run waits for the outbox to drain at the end, in s.
    """

    def __init__(self, workdir: Path, duration_s: float, seed: int, *, keepalive_s: int = 2,
                 settle_s: float = 2.0, drain_timeout_s: float = 120.0) -> None:
        self.workdir = workdir
        self.duration_s = duration_s
        self.seed = seed
        self.keepalive_s = keepalive_s
        self.settle_s = settle_s
        self.drain_timeout_s = drain_timeout_s
        self.rng = random.Random(seed)
        self.press_rng = random.Random(seed + 1)
        self.faults: dict[str, int] = {f: 0 for f in FAULTS}
        self.windows: list[tuple[int, int, str]] = []
        """(start, end, fault) of each fault and its recovery, CLOCK_BOOTTIME ns."""
        self.kills: list[int] = []
        """When the gateway was SIGKILLed, CLOCK_BOOTTIME ns."""
        self.presses = 0
        self.refused = 0
        self._stop = threading.Event()
        self._silence_lock = threading.Lock()
        self._silence_from: int | None = None
        """While set (CLOCK_BOOTTIME ns), the next alarm committed after it is unanswered."""
        self._silenced: str | None = None
        """The id of the alarm a `modem_fail` left unanswered, once it arrived."""
        self.broker = Mosquitto(workdir / "broker", extra_conf=(
            f"persistence true\npersistence_location {workdir / 'broker-db'}/\n"
            # Save the platform's queued messages at once: a production broker keeps
            # them durable, and a SIGKILL a second after a PUBACK must not lose them.
            "autosave_on_changes true\nautosave_interval 1\n"))
        (workdir / "broker-db").mkdir(parents=True, exist_ok=True)
        # The modem is outside the gateway, as a USB modem is: it outlives a SIGKILL.
        self.modem = SimModem(workdir / "modem")
        self.command_key = os.urandom(32)
        # The receiving centre is outside the gateway too; AES-256 (32 hex characters).
        self.arc_key = secrets.token_hex(16).upper()
        self.arc = ArcReceiver({ARC_ACCOUNT: self.arc_key})
        self.spoilt_faults: list[tuple[int, int]] = []
        """(spoilt answers the receiver sent, bad replies the gateway counted) of each
        `arc_spoilt` fault."""
        self.proxy: NetFault | None = None
        self.console: PlatformConsole | None = None
        self.gateway: Gateway | None = None

    # -- the run ----------------------------------------------------------

    def run(self) -> ChaosResult:
        try:
            self.broker.start()
            self.modem.start()
            self.arc.start()
            self.proxy = NetFault(self.broker.host, self.broker.port).start()
            # The platform acknowledges alarms as soon as they arrive (接警确认): an alarm
            # escalates when the path kept it (or its ack) away too long, or when it is one
            # of the few the operator does not answer.
            self.console = PlatformConsole(self.broker.host, self.broker.port,
                                           client_id="alarmgw-chaos-platform",
                                           command_key=self.command_key, auto_ack_s=0.0,
                                           operator="chaos", answer=self._answers)
            self.console.start()
            cfg = write_config(self.workdir / "gw", self.proxy.port, self.keepalive_s,
                               modem_port=self.modem.port, command_key=self.command_key,
                               arc_port=self.arc.port, arc_key=self.arc_key)
            self.gateway = Gateway(cfg)
            self.gateway.start()
            presser = threading.Thread(target=self._press_loop, name="chaos-presses")
            presser.start()
            try:
                self._fault_loop()
            finally:
                self._stop.set()
                presser.join()
            return self._finish()
        finally:
            if self.gateway is not None:
                self.gateway.stop()
            if self.console is not None:
                self.console.stop()
            if self.proxy is not None:
                self.proxy.stop()
            self.arc.stop()
            self.modem.stop()
            self.broker.stop()

    def _press_loop(self) -> None:
        """Press and release random inputs at random intervals until stopped."""
        assert self.gateway is not None
        held: set[str] = set()
        while not self._stop.wait(self.press_rng.uniform(0.05, 0.6)):
            point = self.press_rng.choice(POINTS)
            action = "release" if point in held else "press"
            try:
                self.gateway.control({"cmd": "sim", "action": action, "input": point},
                                     timeout=2.0)
            except (GatewayError, OSError) as exc:
                self.refused += 1
                log.debug("chaos: %s %s refused: %s", action, point, exc)
                continue
            self.presses += 1
            held ^= {point}

    def _answers(self, doc: dict[str, Any]) -> bool:
        """The console's operator: whether to acknowledge this alarm (MQTT thread)."""
        if doc.get("type") != "alarm":
            return True
        with self._silence_lock:
            since = self._silence_from
            if since is not None and int(doc.get("mono_ns", 0)) >= since:
                self._silence_from = None
                self._silenced = str(doc.get("id"))
                return False
        return operator_answers(self.seed, int(doc.get("seq", 0)))

    def _silenced_sms_done(self, console: PlatformConsole) -> bool:
        """True once the alarm a `modem_fail` left unanswered has recorded its SMS step."""
        with self._silence_lock:
            eid = self._silenced
        return eid is not None and any(
            e.get("detail", {}).get("for_event") == eid
            and e.get("detail", {}).get("step") in ("sms_sent", "sms_failed")
            for e in console.events_of("escalation"))

    def _fault_loop(self) -> None:
        """One fault at a time from a shuffled deck, so each kind recurs every len(FAULTS)
        faults; the first deck is always dealt to the end, so that every kind is injected."""
        assert self.proxy is not None and self.gateway is not None
        end = time.monotonic() + self.duration_s
        deck: list[str] = []
        while not self._stop.wait(self.rng.uniform(2.0, 6.0)):
            first_deck_done = all(self.faults.values())
            if time.monotonic() >= end and first_deck_done:
                return
            if not deck:
                deck = list(FAULTS)
                self.rng.shuffle(deck)
            fault = deck.pop()
            length = self.rng.uniform(0.5, 3.0 * self.keepalive_s + 2)
            modem_how: SimFault = "silent"
            unanswered = False
            if fault == "modem_fail":
                modem_how = self.rng.choice(MODEM_FAILURES)
                # An escalation must meet a broken modem now and then (sms_failed): the
                # operator leaves an alarm unanswered while it is broken.
                unanswered = (self.rng.random() < MODEM_UNANSWERED_P
                              or self.faults["modem_fail"] == 0)
                # Long enough for the gateway's modem check to see it.
                length = (self.rng.uniform(*MODEM_SILENT_S) if modem_how == "silent"
                          else max(length, MODEM_CHECK_S + 2.0))
            elif fault == "both_down":
                # Long enough that an alarm kept from both paths escalates `uplink_down`.
                length = max(length, UPLINK_DOWN_S + 2.0)
            if first_deck_done:
                length = min(length, max(0.0, end - time.monotonic()))
            start = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            log.info("chaos: %s for %.1f s", fault, length)
            self.faults[fault] += 1
            self._inject(fault, length, modem_how, unanswered)
            stop = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            # A black-holed connection stays dead after the path heals until the gateway's
            # silence check (1.5 x keepalive) gives it up: the link is down until then.
            settle = self.settle_s + (1.5 * self.keepalive_s if fault == "blackhole" else 0.0)
            if fault in ARC_FAULTS or fault == "both_down":
                # The DC-09 path retries within retry_max_s and one ack timeout.
                settle = max(settle, self.settle_s + DC09_RETRY_MAX_S + DC09_ACK_TIMEOUT_S)
            self.windows.append((start, stop + int(settle * 1e9), fault))

    def _inject(self, fault: str, length: float, modem_how: SimFault = "silent",
                unanswered: bool = False) -> None:
        assert self.proxy is not None and self.gateway is not None
        assert self.console is not None
        if fault == "broker_kill":
            # A broker is not killed again before it has saved the platform's session.
            while not self.console.connected.wait(0.5) and not self._stop.is_set():
                pass
            self.broker.kill()
            self._stop.wait(length)
            self.broker.start()
            self.console.connected.wait(10)
        elif fault == "blackhole":
            self.proxy.blackhole()
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "cut":
            self.proxy.cut()
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "latency":
            self.proxy.latency(self.rng.uniform(200, 1500))
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "throttle":
            # A slow mobile link: 2 to 20 kB/s (log-uniform) each way.
            self.proxy.throttle(math.exp(self.rng.uniform(math.log(2000), math.log(20000))))
            self._stop.wait(length)
            self.proxy.pass_()
        elif fault == "modbus_silent":
            dev = self.rng.choice(MODBUS_DEVICES)[0]
            self._modbus_fault(dev, "silent")
            self._stop.wait(length)
            self._modbus_fault(dev, "ok")
        elif fault == "camera_fail":
            cam = self.rng.choice(CAMERAS)[0]
            how = self.rng.choice(CAMERA_FAILURES)
            slow_s = self.rng.uniform(1.5, 3.0) * CAMERA_TIMEOUT_S
            if how == "slow":
                self._camera(cam, latency_s=slow_s)
            else:
                self._camera(cam, mode=how)
            self._stop.wait(length)
            self._camera(cam, mode="ok", latency_s=0.0)
        elif fault == "modem_fail":
            self.modem.set_fault(modem_how)
            if unanswered:
                with self._silence_lock:
                    self._silence_from = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
                    self._silenced = None
            self._stop.wait(length)
            if unanswered:
                # The next alarm escalates ack_timeout_s after its commit: keep the modem
                # broken until its SMS has been tried.
                if not self.console.wait_for(self._silenced_sms_done, MODEM_HOLD_S):
                    log.warning("chaos: no SMS step for the unanswered alarm %s within"
                                " %.0f s of the modem failing", self._silenced, MODEM_HOLD_S)
                with self._silence_lock:
                    self._silence_from = None
            self.modem.set_fault("none")
        elif fault == "arc_down":
            # The receiver has gone: its sockets and every connection closed.
            self._arc_mode("down", length)
        elif fault == "arc_blackhole":
            # It reads every message and answers none.
            self._arc_mode("silent", length)
        elif fault == "arc_nak":
            # It refuses every message (a NAK with its clock).
            self._arc_mode("nak", length)
        elif fault == "arc_spoilt":
            how = self.rng.choice(ARC_SPOILT)
            before_bad = self._dc09_bad_replies()
            before_sent = self.arc.answered.get(how, 0)
            self._arc_mode(how, length)
            sent = self.arc.answered.get(how, 0) - before_sent
            bad = self._dc09_bad_replies(above=before_bad if sent else None)
            self.spoilt_faults.append((sent, max(0, bad - before_bad)))
        elif fault == "both_down":
            # Both paths at once (the site's router has gone): the proxy resets MQTT, the
            # receiver is down.
            self.proxy.cut()
            self.arc.mode = "down"
            self._stop.wait(length)
            self.arc.mode = "normal"
            self.proxy.pass_()
        elif fault == "gateway_kill":
            self.kills.append(time.clock_gettime_ns(time.CLOCK_BOOTTIME))
            self.gateway.kill()
            # systemd restarts it (RestartSec is 5 s in production; shortened here).
            self._stop.wait(min(length, 1.0))
            self.gateway.start()

    def _arc_mode(self, mode: Mode, length: float) -> None:
        """The receiving centre answers in `mode` for `length` seconds, then normally."""
        self.arc.mode = mode
        self._stop.wait(length)
        self.arc.mode = "normal"

    def _dc09_bad_replies(self, above: int | None = None) -> int:
        """The bad replies the gateway's DC-09 link has counted (its status); with `above`,
        wait up to two ack timeouts for the count to pass it (the reply of the last attempt
        under the fault may still be waited for)."""
        assert self.gateway is not None
        deadline = time.monotonic() + 2 * DC09_ACK_TIMEOUT_S + 1.0
        n = 0
        while True:
            try:
                st = self.gateway.control({"cmd": "status"}, timeout=5.0)
                n = sum(int(v) for v in st["paths"]["dc09"]["bad_replies"].values())
            except (GatewayError, OSError, KeyError, TypeError) as exc:
                log.warning("chaos: no DC-09 status: %s", exc)
            if above is None or n > above or time.monotonic() >= deadline:
                return n
            # The gateway is another process: polling its control socket is the only view.
            time.sleep(0.2)

    def _modbus_fault(self, device: str, mode: str) -> None:
        """Make a simulated module misbehave (or mend it); the modules live in the gateway."""
        assert self.gateway is not None
        try:
            self.gateway.control({"cmd": "sim", "action": "modbus-fault", "device": device,
                                  "mode": mode})
        except (GatewayError, OSError) as exc:
            log.warning("chaos: cannot set module %s %s: %s", device, mode, exc)

    def _camera(self, camera: str, *, mode: str | None = None,
                latency_s: float | None = None) -> None:
        """Make a simulated camera misbehave (or mend it); the cameras live in the gateway."""
        assert self.gateway is not None
        try:
            self.gateway.control({"cmd": "sim-camera", "camera": camera, "mode": mode,
                                  "latency_s": latency_s}, timeout=10.0)
        except (GatewayError, OSError) as exc:
            log.warning("chaos: cannot set camera %s mode=%s latency=%s: %s", camera, mode,
                        latency_s, exc)

    # -- the count ----------------------------------------------------------

    def _settle(self, timeout: float) -> bool:
        """Wait until every device fault is cleared, every camera has taken the shots its
        alarms asked for, and every escalation started has recorded its last step."""
        assert self.gateway is not None and self.console is not None
        console = self.console
        quiet_until = time.monotonic() + ACK_TIMEOUT_S + 2.0  # the last alarms' timers
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self.gateway.control({"cmd": "status"}, timeout=10.0)
            except (GatewayError, OSError) as exc:
                log.warning("chaos: status while settling: %s", exc)
                time.sleep(0.5)
                continue
            escalated = {p["event_id"] for p in st["police"]["escalation"]["waiting_for_ack"]
                         if p["escalated"]}
            finished = {str(e.get("detail", {}).get("for_event"))
                        for e in console.events_of("escalation")
                        if e.get("detail", {}).get("step") in ("sms_sent", "sms_failed")}
            if (not st["faults"] and not any(c["active_bursts"] for c in st["cameras"])
                    and escalated <= finished and time.monotonic() >= quiet_until):
                return True
            # The gateway is another process: polling its control socket is the only view.
            time.sleep(0.5)
        log.warning("chaos: not settled within %.0f s", timeout)
        return False

    def _finish(self) -> ChaosResult:
        assert self.gateway is not None and self.console is not None
        console = self.console
        # A fault open at a SIGKILL is cleared 60 s after the restart at the latest.
        self._settle(90.0)
        deadline = time.monotonic() + self.drain_timeout_s
        drained = dc09_drained = False
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = self.gateway.control({"cmd": "queue", "limit": 1})["stats"]
            drained = drained or stats["waiting"] == 0
            if drained:
                # The DC-09 path's queue: `status`, paths.dc09.queue.waiting.
                st = self.gateway.control({"cmd": "status"}, timeout=10.0)
                if st["paths"]["dc09"]["queue"].get("waiting") == 0:
                    dc09_drained = True
                    break
            # The outbox lives in another process: its control socket is the only view.
            time.sleep(0.2)
        committed = int(stats.get("next_seq", 1)) - 1
        want = set(range(1, committed + 1))  # the platform must have every one of these
        gw = f"{SITE}/{GATEWAY}"

        def have_all(c: PlatformConsole) -> bool:
            rec = c.gateways.get(gw)
            return rec is not None and want <= rec.seqs

        console.wait_for(have_all, 30)
        events = console.ordered(gw)
        listed = sum(int(s.get("pre", 0)) + int(s.get("post", 0))
                     for e in events for s in e.get("snapshots") or [])
        # Drained means the broker has every picture; the console gets them a moment later.
        console.wait_for(lambda c: len(c.snapshots) + len(c.snapshot_failures) >= listed, 5)
        offset = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        first: dict[str, float] = {}
        acked: dict[str, float] = {}
        with console._cond:
            raws = list(console.raw)
            snaps = [(s.event_id, s.camera, s.phase, s.shot) for s in console.snapshots]
            fails = [(str(f.get("event_id")), str(f.get("camera")), str(f.get("phase")),
                      int(f.get("shot", 0))) for f in console.snapshot_failures]
            unanswered = set(console.unanswered)
        for r in raws:
            if r.topic.endswith("/event"):
                try:
                    eid = json.loads(r.payload)["id"]
                except (ValueError, KeyError, TypeError):
                    continue
                first.setdefault(eid, r.arrived_mono * 1e9 + offset)
            elif r.topic.endswith("/cmd/result"):
                # The first successful ack result: the gateway had the ack by then.
                try:
                    res = json.loads(r.payload)
                    if res.get("op") != "ack" or not res.get("ok"):
                        continue
                    eid = str(res["result"]["event_id"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                acked.setdefault(eid, r.arrived_mono * 1e9 + offset)
        result = tally(committed, events, first, self.windows)
        log_text = self.gateway.log_path.read_text(encoding="utf-8", errors="replace")
        evicted = sum(int(n) for n in _EVICTED.findall(log_text))
        refused = len(_REFUSED.findall(log_text))
        shots_s = (CAMERA_SHOTS - 1) * CAMERA_INTERVAL_S + CAMERA_TIMEOUT_S + 1.0
        result.snapshots = tally_snapshots(events, snaps, fails, evicted=evicted,
                                           refused=refused, kills=self.kills,
                                           cut_window_ns=int(shots_s * 1e9))
        result.escalation = tally_escalations(
            events, first, acked, kills=self.kills,
            sms_texts=[m.text for m in self.modem.messages], ack_timeout_s=ACK_TIMEOUT_S,
            unanswered=unanswered,
            path_faults=[(s, e) for s, e, k in self.windows if k not in MQTT_UP_FAULTS],
            modem_faults=[(s, e) for s, e, k in self.windows if k == "modem_fail"])
        result.seed, result.duration_s = self.seed, self.duration_s
        result.faults, result.presses, result.refused = dict(self.faults), self.presses, \
            self.refused
        result.redelivered, result.drained = console.duplicates, drained
        result.dc09 = tally_dc09(events, self.arc.events, self.windows,
                                 answers=dict(self.arc.answered),
                                 spoilt_faults=self.spoilt_faults)
        result.dc09.drained = dc09_drained
        return result


#: The store's log line for an eviction under the byte budget (gateway/store/).
_EVICTED = re.compile(r"store budget of \d+ bytes reached: evicted (\d+) waiting bulk rows")
#: The snapshot lane's log line for a picture the store would not take (gateway/snapshots/).
_REFUSED = re.compile(r"camera \S+: cannot store ")
#: The alarm's seq in an escalation SMS (gateway/police/escalation.py, sms_text).
_SMS_SEQ = re.compile(r"\bseq (\d+)\b")


def tally(committed: int, events: list[dict[str, Any]], first_arrival_ns: dict[str, float],
          windows: list[tuple[int, int]] | list[tuple[int, int, str]]) -> ChaosResult:
    """Count what the platform received against what the store committed.

    Args:
        committed: events the store committed (its next_seq - 1).
        events: the unique events the platform received (one gateway).
        first_arrival_ns: event id -> first arrival, CLOCK_BOOTTIME ns.
        windows: (start, end) or (start, end, fault) of each fault and its recovery,
            CLOCK_BOOTTIME ns; an alarm committed in one counts as "link up" only when
            the fault is a device's or the receiving centre's (MQTT_UP_FAULTS), not the
            MQTT path's.
    """
    want = set(range(1, committed + 1))
    by_seq: dict[int, set[str]] = {}
    for e in events:
        by_seq.setdefault(int(e["seq"]), set()).add(str(e["id"]))
    lost = sorted(want - set(by_seq))
    seq_twice = sorted(s for s, ids in by_seq.items() if len(ids) > 1)
    top = max(by_seq, default=0)
    gaps = [s for s in range(1, top + 1) if s not in by_seq]
    balance: dict[str, int] = {}
    for e in events:
        if e.get("type") in ("fault", "fault_cleared"):
            dev = str(e.get("point", {}).get("id"))
            balance[dev] = balance.get(dev, 0) + (1 if e["type"] == "fault" else -1)
    spans = [(w[0], w[1], str(w[2]) if len(w) > 2 else "fault")
             for w in windows]
    up: list[float] = []
    worst_up: list[tuple[float, int]] = []
    every: list[float] = []
    by_fault: dict[str, list[float]] = {}
    for e in events:
        if e.get("type") != "alarm" or e["id"] not in first_arrival_ns:
            continue
        t = int(e["mono_ns"])
        ms = (first_arrival_ns[e["id"]] - t) / 1e6
        every.append(ms)
        during = {kind for s, end, kind in spans if s <= t <= end}
        for kind in during:
            by_fault.setdefault(kind, []).append(ms)
        if during <= MQTT_UP_FAULTS:
            up.append(ms)
            worst_up.append((ms, int(e["seq"])))
    return ChaosResult(seed=0, duration_s=0.0, faults={}, presses=0, refused=0,
                       committed=committed, delivered=len(events), lost=lost,
                       seq_twice=seq_twice, gaps=gaps, redelivered=0,
                       alarm_latency_up_ms=up, alarm_latency_all_ms=every,
                       worst_up=sorted(worst_up, reverse=True)[:5],
                       alarm_latency_fault_ms=by_fault,
                       device_faults=sum(1 for e in events if e.get("type") == "fault"),
                       unpaired_faults={d: n for d, n in balance.items() if n})


#: Contact ID codes of the alarms the chaos inputs raise (DC09_ZONES).
DC09_ALARM_CODES = frozenset(str(code) for _zone, code in DC09_ZONES.values())


def tally_dc09(events: list[dict[str, Any]], arc_events: list[dict[str, Any]],
               windows: Sequence[tuple[int, int, str]], *,
               answers: Mapping[str, int] | None = None,
               spoilt_faults: Sequence[tuple[int, int]] = ()) -> Dc09Tally:
    """Count the alarms the platform has (every committed one: `tally` checks that) against
    the alarms the receiving centre ACKed.

    The centre's messages are de-duplicated by DC-09 sequence number, as a receiver does
    (a resend after a lost ACK carries the same number); an alarm has arrived when one of
    its copies was answered ACK (mode "normal"). Alarms are matched by zone and Contact ID
    code (DC09_ZONES): the path sends alarms in commit order, so the k-th alarm of a zone
    at the centre is the k-th committed; restores, faults and supervision also travel and
    are left out by their qualifier and code.

    Args:
        events: the unique events the platform received (one gateway).
        arc_events: what the receiver took (hw_sim.arc.ArcReceiver.events), oldest first.
        windows: (start, end, fault) of each fault and its recovery, CLOCK_BOOTTIME ns: an
            alarm committed in one of DC09_DOWN_FAULTS does not count as "centre up".
        answers: what the receiver answered, by kind (ArcReceiver.answered).
        spoilt_faults: (spoilt answers sent, bad replies the gateway counted) per
            `arc_spoilt` fault.
    """
    t = Dc09Tally(answers=dict(answers or {}))
    t.spoilt_unnoticed = sum(1 for sent, bad in spoilt_faults if sent and not bad)
    t.bad_replies = sum(bad for _sent, bad in spoilt_faults)
    alarms = sorted((e for e in events if e.get("type") in ("alarm", "tamper")),
                    key=lambda e: int(e["seq"]))
    t.alarms = len(alarms)
    for e in events:
        pid = str(e.get("point", {}).get("id"))
        if e.get("type") == "fault" and pid.startswith("path-"):
            t.path_faults[pid] = t.path_faults.get(pid, 0) + 1
    # One entry per message the receiver would keep: [content, first ACKed arrival].
    entries: list[tuple[tuple[str, str, str], list[int | None]]] = []
    latest: dict[str, int] = {}
    """Sequence number -> its latest entry."""
    for r in arc_events:
        if r.get("message_type") != "ADM-CID" or r.get("account") != ARC_ACCOUNT:
            continue
        content = (str(r.get("event_qualifier")), str(r.get("event_type")), str(r.get("ri")))
        is_alarm = content[0] == "1" and content[1] in DC09_ALARM_CODES
        seq = str(r.get("sequence"))
        acked = r.get("answer") == "normal"
        at = int(r["arrived_ns"]) if acked else None
        known = latest.get(seq)
        if known is not None and len(entries) - known <= DC09_DEDUP_WINDOW:
            if entries[known][0] != content:
                t.seq_conflicts += 1
                log.warning("chaos: DC-09 sequence %s came back as %s, first %s", seq,
                            content, entries[known][0])
                continue
            t.copies += is_alarm
            t.resent += is_alarm
            if entries[known][1][0] is None:
                entries[known][1][0] = at
            continue
        latest[seq] = len(entries)
        entries.append((content, [at]))
        t.copies += is_alarm
    arrivals: dict[tuple[int, str], list[int]] = {}
    for (qualifier, code, ri), (first,) in entries:
        if qualifier == "1" and code in DC09_ALARM_CODES and first is not None and ri.isdigit():
            arrivals.setdefault((int(ri), code), []).append(first)
    t.arrived = sum(len(v) for v in arrivals.values())
    committed: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for e in alarms:
        zone, cid = DC09_ZONES.get(str(e.get("point", {}).get("id")), (0, 0))
        committed.setdefault((zone, str(cid)), []).append(e)
    down = [(s, end) for s, end, kind in windows if kind in DC09_DOWN_FAULTS]
    for key in sorted(set(committed) | set(arrivals)):
        sent, got = committed.get(key, []), sorted(arrivals.get(key, []))
        matched = min(len(sent), len(got))
        t.both += matched
        t.lost += [int(e["seq"]) for e in sent[matched:]]
        t.extra += len(got) - matched
        for e, at in zip(sent[:matched], got[:matched], strict=True):
            mono = int(e["mono_ns"])
            ms = (at - mono) / 1e6
            t.latency_all_ms.append(ms)
            if not any(s <= mono <= end for s, end in down):
                t.latency_up_ms.append(ms)
    t.lost.sort()
    t.mqtt_only, t.dc09_only = len(t.lost), t.extra
    return t


Shot = tuple[str, str, str, int]
"""(event id, camera, phase, shot): one listed picture."""


def tally_snapshots(events: list[dict[str, Any]], snapshots: list[Shot], failures: list[Shot],
                    *, evicted: int, refused: int, kills: list[int],
                    cut_window_ns: int) -> SnapshotTally:
    """Count the pictures the events listed against the JPEGs and `snapshot_failed` records
    the platform received.

    Args:
        events: the unique events the platform received (one gateway).
        snapshots, failures: the unique pictures and failure records received.
        evicted, refused: bulk rows the store evicted or refused (from the gateway's log).
        kills: when the gateway was SIGKILLed, CLOCK_BOOTTIME ns.
        cut_window_ns: how long after its event's commit a listed picture may still be only
            in memory (its shot not yet taken), in ns.
    """
    pictures, records = set(snapshots), set(failures)
    received = pictures | records
    listed_all: set[Shot] = set()
    t = SnapshotTally(evicted=evicted, refused=refused)
    for e in events:
        listed: set[Shot] = set()
        for s in e.get("snapshots") or []:
            cam = str(s["camera"])
            listed |= {(str(e["id"]), cam, "pre", i) for i in range(1, int(s["pre"]) + 1)}
            listed |= {(str(e["id"]), cam, "post", i) for i in range(1, int(s["post"]) + 1)}
        if not listed:
            continue
        listed_all |= listed
        t.expected += len(listed)
        t.delivered += len(listed & pictures)
        t.failed += len(listed & records - pictures)
        missing = len(listed - received)
        t.missing += missing
        mono = int(e["mono_ns"])
        if missing and any(mono <= k <= mono + cut_window_ns for k in kills):
            t.cut_by_kill += missing
    t.extra = len(received - listed_all)
    return t


def operator_answers(seed: int, seq: int) -> bool:
    """Whether the console's operator acknowledges alarm `seq` in a run seeded `seed`: the
    same answer for the same seq in every run, whatever else the timing changes."""
    return random.Random(f"{seed}/{seq}").random() >= UNANSWERED_SHARE


def tally_escalations(events: list[dict[str, Any]], first_arrival_ns: dict[str, float],
                      acked: Mapping[str, float], *, kills: list[int], sms_texts: list[str],
                      ack_timeout_s: float, unanswered: Collection[str] = (),
                      path_faults: Sequence[tuple[int, int]] = (),
                      modem_faults: Sequence[tuple[int, int]] = ()) -> EscalationTally:
    """Count the escalations, and check the ones the rules demand (gateway/police/escalation.py:
    an alarm escalates once, `uplink_down` when no PUBACK came within uplink_down_s of its
    commit, `no_ack` when no acknowledgement came within ack_timeout_s).

    An alarm must escalate when no acknowledgement can have reached the gateway within
    `ack_timeout_s` of its commit: it reached the platform later than that (the platform
    acknowledges on arrival), or no acknowledgement for it ever succeeded (the operator left
    it unanswered, or the ack was lost). An unanswered alarm committed while the link was up
    must escalate with `no_ack`; an alarm whose ack was back at the platform within
    `ack_timeout_s` must not. Every escalation records a sounder step and an SMS step; an
    `sms_sent` must have its text at the modem, and an `sms_failed` a modem fault around the
    escalation's start. A SIGKILL of its gateway within `ack_timeout_s` + 30 s of the
    commit excuses an alarm (what waits is in memory).

    Args:
        events: the unique events the platform received (one gateway).
        first_arrival_ns: event id -> first arrival, CLOCK_BOOTTIME ns.
        acked: ids of the alarms whose `ack` command the gateway answered ok -> when that
            answer first reached the platform, CLOCK_BOOTTIME ns.
        kills: when the gateway was SIGKILLed, CLOCK_BOOTTIME ns.
        sms_texts: the whole messages the modem accepted.
        ack_timeout_s: the gateway's escalation.ack_timeout_s, in seconds.
        unanswered: ids of the alarms the platform's operator left unacknowledged.
        path_faults: (start, end) of each fault of the path and its recovery, CLOCK_BOOTTIME
            ns: an alarm committed in one may escalate with `uplink_down` instead.
        modem_faults: (start, end) of each injected modem fault and its recovery,
            CLOCK_BOOTTIME ns.
    """
    t = EscalationTally(sms_at_modem=len(sms_texts), unanswered=len(unanswered))
    reason_of: dict[str, str] = {}
    steps_of: dict[str, set[str]] = {}
    started: dict[str, int] = {}
    seq_of: dict[str, int] = {}
    sms_sent: set[int] = set()
    for e in events:
        if e.get("type") == "fault" and e.get("point", {}).get("id") == "modem":
            t.modem_faults += 1
        if e.get("type") != "escalation":
            continue
        d = e.get("detail", {})
        step, alarm = str(d.get("step")), str(d.get("for_event"))
        t.steps[step] = t.steps.get(step, 0) + 1
        reason_of.setdefault(alarm, str(d.get("reason")))
        steps_of.setdefault(alarm, set()).add(step)
        mono = int(e.get("mono_ns", 0))
        started[alarm] = min(started.get(alarm, mono), mono)
        seq_of[alarm] = int(d.get("for_seq", -1))
        if step == "sms_sent":
            sms_sent.add(seq_of[alarm])
    t.alarms = len(reason_of)
    for why in reason_of.values():
        t.reasons[why] = t.reasons.get(why, 0) + 1
    texted = {int(m) for text in sms_texts for m in _SMS_SEQ.findall(text)}
    t.sms_unconfirmed = sorted(sms_sent - texted)
    grace_ns = int((ack_timeout_s + 30.0) * 1e9)
    timeout_ns = ack_timeout_s * 1e9
    under_way_ns = int(SMS_UNDER_WAY_S * 1e9)
    commits = {str(e["id"]): int(e["mono_ns"]) for e in events if e.get("type") == "alarm"}

    def excused(mono: int, seq: int, why: str) -> bool:
        kill = next((k for k in kills if mono <= k <= mono + grace_ns), None)
        if kill is not None:
            t.excused_by_kill += 1
            log.info("chaos: alarm seq %d %s, excused: its gateway was SIGKILLed %.1f s after"
                     " its commit", seq, why, (kill - mono) / 1e9)
        return kill is not None

    for alarm, steps in sorted(steps_of.items(), key=lambda kv: seq_of[kv[0]]):
        complete = bool({"sounder_on", "sounder_failed"} & steps
                        and {"sms_sent", "sms_failed"} & steps)
        if not complete and not excused(commits.get(alarm, started[alarm]), seq_of[alarm],
                                        f"escalated with only {sorted(steps)}"):
            t.incomplete.append(seq_of[alarm])
        if "sms_failed" in steps and not any(s - under_way_ns <= started[alarm] <= end
                                             for s, end in modem_faults):
            t.sms_failed_modem_ok.append(seq_of[alarm])
    for e in events:
        if e.get("type") != "alarm":
            continue
        eid, mono, seq = str(e["id"]), int(e["mono_ns"]), int(e["seq"])
        reason = reason_of.get(eid)
        if reason == "no_ack" and eid in acked and acked[eid] - mono <= timeout_ns:
            t.no_ack_after_ack.append(seq)
        if (eid in unanswered and reason is not None and reason != "no_ack"
                and not any(s <= mono <= end for s, end in path_faults)
                and not excused(mono, seq, f"unanswered, escalated with {reason}")):
            t.no_ack_missed.append(seq)
        arrival = first_arrival_ns.get(eid)
        late = arrival is None or arrival - mono > timeout_ns
        if not (late or eid not in acked) or reason is not None:
            continue
        if not excused(mono, seq, "did not escalate"):
            t.unescalated.append(seq)
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw_sim.chaos", description=__doc__.split(
        "\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of faults (60)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--keepalive", type=int, default=2, help="gateway MQTT keepalive, s (2)")
    p.add_argument("--workdir", type=Path, help="keep broker, state and logs here"
                   " (default: a temporary directory, removed unless the run fails)")
    p.add_argument("-v", "--verbose", action="store_true", help="log each fault")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.duration <= 0:
        p.error("--duration must be > 0")
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="alarmgw-chaos-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    result = ChaosRun(workdir, args.duration, args.seed, keepalive_s=args.keepalive).run()
    print(result.summary(), flush=True)
    if args.verbose and result.worst_up:
        print("slowest alarms with the link up: " + ", ".join(
            f"seq {seq} {ms:.0f} ms" for ms, seq in result.worst_up), flush=True)
    if not result.ok:
        if result.lost:
            print(f"lost seqs: {result.lost[:50]}", flush=True)
        if result.dc09.lost:
            print(f"alarms the receiving centre never ACKed, seqs: {result.dc09.lost[:50]}",
                  flush=True)
        if tmp is not None:
            print(f"kept for inspection: {workdir}", flush=True)
            tmp._finalizer.detach()  # type: ignore[attr-defined]
        return 1
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
