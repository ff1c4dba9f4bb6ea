"""Carrying out platform commands: ack, drill, ping, snapshot, output.

The uplink hands each message from the cmd topic to `CommandDispatcher.submit`,
which only enqueues. The dispatcher's intake thread authenticates each command in
arrival order (`gateway.uplink.commands`: signature, freshness, replayed ids), and
hands it on; the result is stored in the outbox's event lane for the uplink to
publish on `cmd/result`. A refused command changes nothing and is answered with the
reason; nothing here runs in the engine's or the uplink's thread, so a slow command
never delays an alarm.

An `ack` takes its own path: the intake thread records it and stops the alarm's
escalation at once (`first_ack_listeners`), before it looks at the next command;
the lamp (`ack_listeners`, which may wait seconds for an output) and the answer
follow on the acks thread. Every other op (a drill, a snapshot, an output) is
carried out on the work thread, so none of them ever delays an acknowledgement.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.clock import Clock, utc_iso
from gateway.config import CommandSettings
from gateway.engine import Committed, Engine
from gateway.errors import StoreError
from gateway.events import PROTOCOL_VERSION
from gateway.store import Lane, Outbox
from gateway.uplink.commands import Command, CommandChecker, Refusal

log = logging.getLogger(__name__)

_RECENT_EVENTS = 10_000

_T = TypeVar("_T")


@dataclass
class _Ack:
    """An acknowledgement recorded and its escalation stopped; the lamp and answer follow."""

    cmd: Command
    event_id: str
    point_id: str
    ack: dict[str, Any]
    result: dict[str, Any]


class Unsupported(Exception):
    """The op is known but this gateway cannot carry it out (e.g. no cameras)."""


class CommandDispatcher:
    """Validates and carries out platform commands on its own thread."""

    def __init__(self, settings: CommandSettings, *, site: str, gateway: str, engine: Engine,
                 outbox: Outbox, clock: Clock, wake_uplink: Callable[[], None],
                 ping_info: Callable[[], dict[str, Any]]) -> None:
        self.settings = settings
        self.site = site
        self.gateway = gateway
        self.engine = engine
        self.outbox = outbox
        self.clock = clock
        self._wake = wake_uplink
        self._ping_info = ping_info
        self.checker = CommandChecker(settings.key, settings.require_signature,
                                      settings.max_age_s, settings.max_future_s)
        # Ids seen before a restart stay refused: with the clock unsynced after a power
        # cut, freshness cannot be judged and the id is all that stops an old command.
        self.checker.preload(outbox.recent_commands(self.checker.remember))
        self.checker.persist = lambda cid: outbox.remember_command(cid, self.checker.remember)
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._acks: queue.SimpleQueue[_Ack | None] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[Command | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._events: OrderedDict[str, tuple[str, str, int]] = OrderedDict()
        self._events_lock = threading.Lock()
        self.handlers: dict[str, Callable[[Command], dict[str, Any]]] = {
            "ping": self._ping,
            "ack": self._ack,
            "drill": self._drill,
            "snapshot": self._unsupported("snapshot", "this gateway has no cameras configured"),
            "output": self._unsupported("output", "this gateway has no outputs configured"),
        }
        """Op name -> handler returning the result; features replace or add theirs."""
        self.first_ack_listeners: list[
            Callable[[str, str, dict[str, Any]], dict[str, Any]]] = []
        """fn(event_id, point_id, ack) as soon as an ack is recorded, in order, on the
        intake thread before any later command is looked at: stop the escalation, a
        drill's step. They must not block. Each returns details merged into the result."""
        self.ack_listeners: list[Callable[[str, str, dict[str, Any]], dict[str, Any]]] = []
        """fn(event_id, point_id, ack) then, in order, on the acks thread: light the lamp
        (may wait seconds for the output). Each returns details merged into the result."""
        self.counters: dict[str, int] = {}
        self._counters_lock = threading.Lock()
        if not settings.require_signature:
            log.warning("platform commands are accepted WITHOUT signatures"
                        " (commands.require_signature = false): anyone who can publish to"
                        " the cmd topic can acknowledge alarms; do not run this way in"
                        " production")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, name="commands", daemon=True),
            threading.Thread(target=self._run_acks, name="commands-ack", daemon=True),
            threading.Thread(target=self._run_work, name="commands-work", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._queue.put(None)  # the intake thread then stops the other two
        for t in self._threads:
            t.join(10.0)
        self._threads = []

    def submit(self, payload: bytes) -> None:
        """Hand in one cmd-topic message. Thread-safe; never blocks."""
        self._queue.put(payload)

    def on_committed(self, committed: Committed) -> None:
        """Service listener: remember recent events so an ack finds its point at once."""
        with self._events_lock:
            self._events[committed.event_id] = (committed.point_id, committed.type,
                                                committed.seq)
            while len(self._events) > _RECENT_EVENTS:
                self._events.popitem(last=False)

    def _run(self) -> None:
        """The intake thread: every command is checked here, in arrival order (so replays
        and ids are judged as before); an ack is recorded and its escalation stopped here,
        everything slower is handed on."""
        try:
            while True:
                payload = self._queue.get()
                if payload is None:
                    return
                try:
                    self._take(payload)
                except Exception:
                    log.exception("commands: unexpected error handling a command")
        finally:
            self._acks.put(None)
            self._work.put(None)

    def _take(self, payload: bytes) -> None:
        cmd = self._check(payload)
        if cmd is None:
            return
        if cmd.op == "ack" and self.handlers.get("ack") == self._ack:
            started, _ = self._attempt(cmd, self._ack_first)
            if started is not None:
                self._acks.put(started)
        else:
            self._work.put(cmd)

    def _run_acks(self) -> None:
        while True:
            started = self._acks.get()
            if started is None:
                return
            try:
                self._finish_ack(started)
            except Exception:
                log.exception("commands: unexpected error finishing an ack")

    def _finish_ack(self, started: _Ack) -> dict[str, Any]:
        result, refused = self._attempt(started.cmd, lambda _cmd: self._ack_then(started))
        if result is None:
            assert refused is not None
            return refused
        return self._done(started.cmd, result)

    def _run_work(self) -> None:
        while True:
            cmd = self._work.get()
            if cmd is None:
                return
            try:
                self._carry_out(cmd)
            except Exception:
                log.exception("commands: unexpected error carrying out a command")

    # -- handling ------------------------------------------------------------

    def handle(self, payload: bytes) -> dict[str, Any]:
        """Check and carry out one command in the calling thread (an ack with all its
        listeners); store and return its result document."""
        refused: dict[str, Any] = {}
        cmd = self._check(payload, refused)
        if cmd is None:
            return refused
        return self._carry_out(cmd)

    def _check(self, payload: bytes, refused: dict[str, Any] | None = None
               ) -> Command | None:
        """The command, or None when it is refused (answered; the answer in `refused`)."""
        try:
            return self.checker.check(payload, clock_synced=self.clock.is_synced())
        except Refusal as refusal:
            self._count(refusal.code)
            log.warning("platform command %s (op %s) refused: %s", refusal.id or "?",
                        refusal.op or "?", refusal)
            doc = self._answer(refusal.id, refusal.op, False, refusal.code,
                               reason=refusal.reason, result=None)
            if refused is not None:
                refused.update(doc)
            return None

    def _carry_out(self, cmd: Command) -> dict[str, Any]:
        result, refused = self._attempt(cmd, self.handlers[cmd.op])
        if result is None:
            assert refused is not None
            return refused
        return self._done(cmd, result)

    def _attempt(self, cmd: Command, fn: Callable[[Command], _T]
                 ) -> tuple[_T | None, dict[str, Any] | None]:
        """(fn(cmd), None), or (None, the answer) when it was refused or failed."""
        try:
            return fn(cmd), None
        except Unsupported as exc:
            self._count("not_supported")
            return None, self._answer(cmd.id, cmd.op, False, "not_supported",
                                      reason=str(exc), result=None)
        except Refusal as refusal:
            self._count(refusal.code)
            log.warning("platform command %s (%s) refused: %s", cmd.id, cmd.op, refusal)
            return None, self._answer(cmd.id, cmd.op, False, refusal.code,
                                      reason=refusal.reason, result=None)
        except Exception as exc:
            self._count("failed")
            log.exception("platform command %s (%s) failed", cmd.id, cmd.op)
            return None, self._answer(cmd.id, cmd.op, False, "failed",
                                      reason=f"{type(exc).__name__}: {exc}", result=None)

    def _done(self, cmd: Command, result: dict[str, Any]) -> dict[str, Any]:
        self._count("ok")
        log.info("platform command %s (%s) done", cmd.id, cmd.op)
        return self._answer(cmd.id, cmd.op, True, "ok", reason=None, result=result)

    def _count(self, code: str) -> None:
        with self._counters_lock:
            self.counters[code] = self.counters.get(code, 0) + 1

    def _answer(self, cid: str | None, op: str | None, ok: bool, code: str, *,
                reason: str | None, result: dict[str, Any] | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": cid, "op": op, "ok": ok,
                               "code": code, "site": self.site, "gateway": self.gateway,
                               "at": utc_iso(time.time_ns())}
        if reason is not None:
            doc["reason"] = reason
        if result is not None:
            doc["result"] = result
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            self.outbox.put_message(Lane.EVENT, "cmd/result", payload)
            self._wake()
        except Exception:
            log.exception("commands: could not store the result of %s", cid)
        return doc

    # -- ops -------------------------------------------------------------------

    def _ping(self, cmd: Command) -> dict[str, Any]:
        return self._ping_info()

    def _ack(self, cmd: Command) -> dict[str, Any]:
        """The whole ack in one thread (`handle`); the intake thread splits it in two."""
        return self._ack_then(self._ack_first(cmd))

    def _ack_first(self, cmd: Command) -> _Ack:
        """Record the ack and run the first listeners (the escalation stops)."""
        event_id = str(cmd.args["event_id"])
        with self._events_lock:
            known = self._events.get(event_id)
        if known is not None:
            point_id, etype, seq = known
        else:
            doc = self.outbox.find_event(event_id)
            if doc is None:
                raise Refusal("unknown_event", f"no event {event_id!r} on this gateway (or it"
                              " is too old to be kept)", cmd.id, cmd.op)
            point_id, etype, seq = doc["point"]["id"], doc["type"], int(doc["seq"])
        operator = str(cmd.args["operator"])
        note = cmd.args.get("note")
        try:
            received_at = self.outbox.record_ack(event_id, cmd.id, operator,
                                                 str(note) if note is not None else None,
                                                 cmd.issued_at)
        except StoreError as exc:
            # The acknowledgement still counts (lamp, escalation); only its record is lost.
            received_at = utc_iso(time.time_ns())
            log.error("commands: could not record the acknowledgement of event seq %d by %s:"
                      " %s", seq, operator, exc)
        ack = {"event_id": event_id, "point": point_id, "type": etype, "seq": seq,
               "operator": operator, "received_at": received_at}
        log.warning("ALARM ACKNOWLEDGED by the platform: event seq %d (%s of %s) by %s",
                    seq, etype, point_id, operator)
        result: dict[str, Any] = dict(ack)
        result["lamp"] = None
        self._notify(self.first_ack_listeners, event_id, point_id, ack, result)
        return _Ack(cmd, event_id, point_id, ack, result)

    def _ack_then(self, started: _Ack) -> dict[str, Any]:
        """The rest of an ack (the lamp); its result."""
        self._notify(self.ack_listeners, started.event_id, started.point_id, started.ack,
                     started.result)
        return started.result

    @staticmethod
    def _notify(listeners: list[Callable[[str, str, dict[str, Any]], dict[str, Any]]],
                event_id: str, point_id: str, ack: dict[str, Any],
                result: dict[str, Any]) -> None:
        for fn in listeners:
            try:
                result.update(fn(event_id, point_id, ack))
            except Exception:
                log.exception("commands: ack listener %r failed", fn)

    def _drill(self, cmd: Command) -> dict[str, Any]:
        point = str(cmd.args["point"])
        operator = str(cmd.args.get("operator", "platform"))
        engine = self.engine
        try:
            committed = engine.call(
                lambda: engine.raise_test(point, True, f"platform:{operator}")).result(10.0)
        except KeyError as exc:
            raise Refusal("bad_args", str(exc.args[0] if exc.args else exc), cmd.id,
                          cmd.op) from exc
        return {"event_id": committed.event_id, "seq": committed.seq, "point": point}

    @staticmethod
    def _unsupported(op: str, reason: str) -> Callable[[Command], dict[str, Any]]:
        def handler(cmd: Command) -> dict[str, Any]:
            raise Unsupported(reason)
        return handler
