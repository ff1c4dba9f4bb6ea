"""The DC-09 path's thread: every event this path carries, from the store to the
receiving centre's ACK, and the supervision of the path between them.

One thread owns the link (gateway.dc09.link). It takes the path's next event from the
store (gateway.store.paths: alarms first, then in commit order), maps it to Contact ID
(gateway.dc09.contactid), sends it and waits for the receiver's answer:

- ACK: delivered on this path; the queue row is deleted, the delivery hook told.
- NAK: the receiver rejected the message's timestamp or could not take it now; the link
  has taken the receiver's clock from the NAK, and the message is sent again at once,
  then with backoff.
- DUH: the receiver does not understand this message (an event code it does not know).
  Sending it again cannot help: it is counted and logged as refused, with the event's id,
  and taken off this path's queue (the platform still gets it over MQTT).
- no answer, or no connection: the path is failing; the message is retried with backoff
  (1 s doubling to `retry_max_s`, 30 s by default; a newly committed event tries again at
  once) until it is ACKed.

Between events the thread sends supervision messages (NULL, or a Contact ID 602 periodic
test) at the configured interval, counted from the last exchange the receiver answered;
while the other path is in fault the interval is the failover one (the remaining path
then carries the category alone). Nothing here writes to disk but a message's first
sequence number and its deletion when ACKed: supervision costs no write.

A message to the receiving centre never waits for MQTT, and MQTT never waits for it: they
share the store's lock only for the moments of a take and a delete.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.clock import utc_iso
from gateway.config.paths import Dc09Settings
from gateway.dc09.contactid import ContactId, for_event, manual_test, periodic_test
from gateway.dc09.frames import Identity
from gateway.dc09.link import Dc09Link, Outcome
from gateway.errors import StoreError
from gateway.store import Outbox
from gateway.store.paths import MAX_WIRE_SEQ, PathRow

log = logging.getLogger(__name__)

PATH = "dc09"
BACKOFF_MIN_S = 1.0
#: A NAK is answered by one immediate retry with the receiver's clock; more back off.
NAK_RETRIES_AT_ONCE = 1
#: Sequence numbers of messages that are not events (supervision, path tests): numbered
#: in memory, apart from the events' (gateway.store.paths.MAX_WIRE_SEQ), since numbering
#: them from the events' counter on disk would cost a write per poll.
OTHER_SEQ_FIRST, OTHER_SEQ_LAST = MAX_WIRE_SEQ + 1, 9999
#: The link's counters of answers it could not use (the rest count outcomes).
BAD_REPLIES = frozenset({"crc", "length", "truncated", "malformed", "decrypt", "account",
                         "other_seq", "junk_bytes", "overflow"})


@dataclass
class _TestRequest:
    point: str
    done: threading.Event
    outcome: Outcome | None = None


class Dc09Path:
    """The DC-09 path: its thread, its link, its state for `alarmgw status`."""

    def __init__(self, settings: Dc09Settings, store: Outbox, *,
                 on_delivered: Callable[[PathRow], None] | None = None,
                 link: Dc09Link | None = None) -> None:
        """`on_delivered`: called on the path's thread when the receiver ACKed an event
        (it must not block); `link`: the receiver connection (default: from `settings`)."""
        self.settings = settings
        self.store = store
        self.on_delivered = on_delivered
        ident = Identity(account=settings.account, receiver=settings.receiver,
                         line=settings.line, key=settings.key)
        self.link = link if link is not None else Dc09Link(
            settings.host, settings.port, settings.transport, ident,
            ack_timeout_s=settings.ack_timeout_s, connect_timeout_s=settings.ack_timeout_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tests: queue.SimpleQueue[_TestRequest] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._failover = False
        self._delivered_unwritten: set[int] = set()
        #: Monotonic time of the last exchange the receiver answered (None: none yet).
        self._last_answer: float | None = None
        self._failing_since: float | None = None
        self._next_poll = time.monotonic()
        self._other_seq = OTHER_SEQ_FIRST + int(time.monotonic_ns()) % (
            OTHER_SEQ_LAST - OTHER_SEQ_FIRST + 1)
        self.state: dict[str, Any] = {
            "endpoint": settings.endpoint, "role": settings.role,
            "encrypted": settings.key is not None, "sent": 0, "acked": 0, "nak": 0,
            "duh": 0, "timeout": 0, "error": 0, "polls": 0, "last_ack_at": None,
            "last_error": None, "refused": [],
        }

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        if s.key is None:
            log.warning("DC-09 path to %s: no key_file, messages go unencrypted (anyone on"
                        " the way can read or forge them); see alarmgw check-config", s.endpoint)
        self._thread = threading.Thread(target=self._run, name="dc09-path", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        self.link.abort()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.link.close()

    def wake(self) -> None:
        """An event this path carries was committed: send it now (any thread)."""
        self._wake.set()

    def set_failover(self, other_path_failed: bool) -> None:
        """The other path is (or is no longer) in fault: supervise at the failover rate."""
        with self._lock:
            if self._failover == other_path_failed:
                return
            self._failover = other_path_failed
            if self._last_answer is not None:
                self._next_poll = self._last_answer + self._interval()
        self._wake.set()

    # -- what others ask -----------------------------------------------------------

    def failing_for(self, now: float | None = None) -> float | None:
        """Seconds since this path last failed to deliver with no success since, or None
        while it works (a fault is raised by the path watch past `path_fail_s`)."""
        with self._lock:
            since = self._failing_since
        if since is None:
            return None
        return (time.monotonic() if now is None else now) - since

    def status(self) -> dict[str, Any]:
        """For `alarmgw status`: the receiver, last ACK and round trip, queue, next poll."""
        now = time.monotonic()
        with self._lock:
            s = dict(self.state)
            s["refused"] = list(self.state["refused"])
            s["failing_for_s"] = (None if self._failing_since is None
                                  else round(now - self._failing_since, 1))
            s["last_answer_age_s"] = (None if self._last_answer is None
                                      else round(now - self._last_answer, 1))
            s["supervision_interval_s"] = self._interval()
            s["supervision_due_in_s"] = round(max(0.0, self._next_poll - now), 1)
            s["failover"] = self._failover
        s["rtt_ms"] = (None if self.link.last_rtt_s is None
                       else round(self.link.last_rtt_s * 1000, 1))
        s["clock_offset_s"] = round(self.link.offset_s, 3)
        s["bad_replies"] = {k: v for k, v in self.link.counters.items() if k in BAD_REPLIES}
        s["connects"] = self.link.counters.get("connects", 0)
        s["resyncs"] = self.link.counters.get("resyncs", 0)
        try:
            q = self.store.path_stats(PATH)
            s["queue"] = {"waiting": q.waiting, "oldest_event_id": q.oldest_event_id,
                          "oldest_created_at": q.oldest_created_at,
                          "oldest_mono_ns": q.oldest_mono_ns,
                          "oldest_boot_id": q.oldest_boot_id}
        except StoreError as exc:
            s["queue"] = {"error": str(exc)}
        return s

    def send_test(self, point: str, timeout: float) -> Outcome | None:
        """`alarmgw test-alarm --path dc09`: a 601 manual test of `point` on this path
        alone (not stored: it proves the path, it is not an event). None: the thread did
        not get to it within `timeout`."""
        req = _TestRequest(point, threading.Event())
        self._tests.put(req)
        self._wake.set()
        req.done.wait(timeout)
        return req.outcome

    # -- the thread --------------------------------------------------------------

    def _interval(self) -> float:
        s = self.settings
        return s.supervision_failover_s if self._failover else s.supervision_s

    def _run(self) -> None:
        backoff = 0.0
        naks = 0
        while not self._stop.is_set():
            if backoff > 0:
                self._wake.wait(backoff)
                self._wake.clear()
                if self._stop.is_set():
                    break
            try:
                kind = self._turn()
            except Exception as exc:  # a bug must not end the path silently: it fails
                log.exception("DC-09 path: unexpected error; retrying")
                self._note_error(f"internal error: {exc!r} (see the log)")
                kind = "error"
            if kind == "idle":
                backoff = 0.0
            elif kind == "ack":
                backoff, naks = 0.0, 0
            elif kind == "nak" and naks < NAK_RETRIES_AT_ONCE:
                naks += 1
                backoff = 0.0
            elif kind in ("duh", "skipped"):
                backoff = 0.0
            else:
                backoff = min(self.settings.retry_max_s, max(BACKOFF_MIN_S, backoff * 2))

    def _turn(self) -> str:
        """Path tests, then the next event, else supervision when due, else wait for a
        wake-up (a commit, a test, a stop) or the next poll: the outcome's kind, or "idle"
        when nothing was sent."""
        self._serve_tests()
        try:
            rows = self.store.path_take(PATH, 1, self._delivered_unwritten)
        except StoreError as exc:
            log.error("DC-09 path: cannot read its queue: %s", exc)
            self._note_error(str(exc))
            return "error"
        if rows:
            return self._send_event(rows[0])
        self._flush_delivered()
        now = time.monotonic()
        with self._lock:
            due = self._next_poll
        if now < due:
            self._wake.wait(due - now)
            self._wake.clear()
            return "idle"
        return self._poll()

    def _send_event(self, row: PathRow) -> str:
        try:
            doc = json.loads(row.payload)
            cid = for_event(doc, self.settings)
        except (ValueError, TypeError) as exc:
            log.error("DC-09 path: event %s (seq %s) cannot be read (%s); not sent on this"
                      " path", row.event_id, row.seq, exc)
            cid = None
        if cid is None:
            # Not carried any more (the config changed since it was queued).
            self._done(row)
            return "skipped"
        outcome = self._exchange(cid, row.wire_seq)
        if outcome.kind == "ack":
            self._done(row)
            if self.on_delivered is not None:
                self.on_delivered(row)
        elif outcome.kind == "duh":
            log.error("DC-09 path: the receiving centre %s answered DUH (does not understand)"
                      " to %s of event %s (seq %s): not sent again on this path; check the"
                      " Contact ID code with the centre, or map it with [paths.dc09] codes",
                      self.settings.endpoint, cid.text(), row.event_id, row.seq)
            with self._lock:
                refused = self.state["refused"]
                refused.append({"event_id": row.event_id, "seq": row.seq,
                                "contact_id": cid.text(), "at": utc_iso(time.time_ns())})
                del refused[:-10]
            self._done(row)
        return outcome.kind

    def _poll(self) -> str:
        s = self.settings
        if s.supervision == "602":
            outcome = self._exchange(periodic_test(s), self._next_other_seq())
        else:
            outcome = self._exchange(None, self._next_other_seq())
        with self._lock:
            self.state["polls"] += 1
            if outcome.kind != "ack":
                # Polled again soon: a lost poll must not wait a whole interval.
                self._next_poll = time.monotonic() + min(self._interval(),
                                                         self.settings.retry_max_s)
        return outcome.kind

    def _serve_tests(self) -> None:
        while True:
            try:
                req = self._tests.get_nowait()
            except queue.Empty:
                return
            message = manual_test(self.settings, req.point)
            req.outcome = self._exchange(message, self._next_other_seq())
            req.done.set()

    def _next_other_seq(self) -> int:
        seq = self._other_seq
        self._other_seq = OTHER_SEQ_FIRST if seq >= OTHER_SEQ_LAST else seq + 1
        return seq

    def _exchange(self, cid: ContactId | None, seq: int) -> Outcome:
        """Send one message (None: a NULL supervision message) and note how it went."""
        if cid is None:
            outcome = self.link.send("NULL", "", seq)
        else:
            outcome = self.link.send("ADM-CID", cid.data(self.settings.account), seq)
        now = time.monotonic()
        with self._lock:
            self.state["sent"] += 1
            self.state[outcome.kind if outcome.kind != "ack" else "acked"] += 1
            if outcome.kind in ("ack", "duh", "nak"):
                # The receiver answered: the path works (a NAK is an answer too).
                self._last_answer = now
                self._next_poll = now + self._interval()
            if outcome.kind in ("ack", "duh"):
                if self._failing_since is not None:
                    log.warning("DC-09 path to %s works again (failing for %.0f s)",
                                self.settings.endpoint, now - self._failing_since)
                self._failing_since = None
                self.state["last_error"] = None
                if outcome.kind == "ack":
                    self.state["last_ack_at"] = utc_iso(time.time_ns())
            else:
                if self._failing_since is None:
                    self._failing_since = now
                    log.warning("DC-09 path to %s: %s: %s", self.settings.endpoint,
                                outcome.kind, outcome.detail)
                self.state["last_error"] = f"{outcome.kind}: {outcome.detail}"
        return outcome

    def _note_error(self, msg: str) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self.state["last_error"] = msg

    def _done(self, row: PathRow) -> None:
        self._delivered_unwritten.add(row.rowid)
        self._flush_delivered()

    def _flush_delivered(self) -> None:
        if not self._delivered_unwritten:
            return
        try:
            self.store.path_done(PATH, sorted(self._delivered_unwritten))
            self._delivered_unwritten.clear()
        except StoreError as exc:
            # A full disk: the row stays queued on disk (a restart sends it again, the
            # receiver de-duplicates by sequence); in memory it is done.
            log.error("DC-09 path: cannot record %d deliveries: %s",
                      len(self._delivered_unwritten), exc)
