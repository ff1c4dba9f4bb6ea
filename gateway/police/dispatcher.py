"""Carrying out platform commands: ack, drill, ping, snapshot, output.

The uplink hands each message from the cmd topic to `CommandDispatcher.submit`,
which only enqueues. The dispatcher's own thread authenticates it
(`gateway.uplink.commands`), carries it out, and stores the result in the
outbox's event lane for the uplink to publish on `cmd/result`. A refused
command changes nothing and is answered with the reason; nothing here runs in
the engine's or the uplink's thread, so a slow command never delays an alarm.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock, utc_iso
from gateway.config import CommandSettings
from gateway.engine import Committed, Engine
from gateway.errors import StoreError
from gateway.events import PROTOCOL_VERSION
from gateway.store import Lane, Outbox
from gateway.uplink.commands import Command, CommandChecker, Refusal

log = logging.getLogger(__name__)

_RECENT_EVENTS = 10_000


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
        self._thread: threading.Thread | None = None
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
        self.ack_listeners: list[Callable[[str, str, dict[str, Any]], dict[str, Any]]] = []
        """fn(event_id, point_id, ack) after an ack is recorded: light the lamp, stop an
        escalation; each returns details merged into the result."""
        self.counters: dict[str, int] = {}
        self._counters_lock = threading.Lock()
        if not settings.require_signature:
            log.warning("platform commands are accepted WITHOUT signatures"
                        " (commands.require_signature = false): anyone who can publish to"
                        " the cmd topic can acknowledge alarms; do not run this way in"
                        " production")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

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
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            try:
                self.handle(payload)
            except Exception:
                log.exception("commands: unexpected error handling a command")

    # -- handling ------------------------------------------------------------

    def handle(self, payload: bytes) -> dict[str, Any]:
        """Check and carry out one command; store and return its result document."""
        try:
            cmd = self.checker.check(payload, clock_synced=self.clock.is_synced())
        except Refusal as refusal:
            self._count(refusal.code)
            log.warning("platform command %s (op %s) refused: %s", refusal.id or "?",
                        refusal.op or "?", refusal)
            return self._answer(refusal.id, refusal.op, False, refusal.code,
                                reason=refusal.reason, result=None)
        handler = self.handlers[cmd.op]
        try:
            result = handler(cmd)
        except Unsupported as exc:
            self._count("not_supported")
            return self._answer(cmd.id, cmd.op, False, "not_supported", reason=str(exc),
                                result=None)
        except Refusal as refusal:
            self._count(refusal.code)
            log.warning("platform command %s (%s) refused: %s", cmd.id, cmd.op, refusal)
            return self._answer(cmd.id, cmd.op, False, refusal.code, reason=refusal.reason,
                                result=None)
        except Exception as exc:
            self._count("failed")
            log.exception("platform command %s (%s) failed", cmd.id, cmd.op)
            return self._answer(cmd.id, cmd.op, False, "failed",
                                reason=f"{type(exc).__name__}: {exc}", result=None)
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
        for fn in self.ack_listeners:
            try:
                result.update(fn(event_id, point_id, ack))
            except Exception:
                log.exception("commands: ack listener %r failed", fn)
        return result

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
