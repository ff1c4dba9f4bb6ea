"""Supervision of the transmission paths: a path that cannot deliver for `path_fail_s` is a
fault (point `path-mqtt` or `path-dc09`), which the other path carries.

How long each path has been failing is told by the path itself: the MQTT path since its
connection went down or since the oldest alarm or event row of this boot has waited for its
PUBACK, whichever is longer (a half-open connection delivers nothing either); the DC-09
path since its first message or poll without an answer after the last one answered. The
watch reads those figures every second, in memory; a fault is raised once, when the time
passes `path_fail_s`, and cleared once when the path delivers again. While the MQTT path
is in fault the DC-09 path is supervised at its failover interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.clock import mono_ns
from gateway.events import FaultChange
from gateway.supervision.watch_thread import WatchThread

log = logging.getLogger(__name__)

#: The point ids of path faults, by path.
DEVICE_IDS = {"mqtt": "path-mqtt", "dc09": "path-dc09"}
NAMES = {"mqtt": "MQTT path to the police platform", "dc09": "DC-09 path to the receiving centre"}


class PathWatch(WatchThread):
    """Raises `path-mqtt` / `path-dc09` faults; tells the DC-09 path when MQTT has failed."""

    def __init__(self, failing_for: dict[str, Callable[[], float | None]],
                 where: dict[str, str], door: Callable[[FaultChange], None], *,
                 path_fail_s: float, on_failed: Callable[[str, bool], None] | None = None,
                 check_every_s: float = 1.0) -> None:
        """`failing_for`: per path ("mqtt", "dc09"), seconds it has been unable to deliver
        (None: it works); `where`: each path's endpoint, for the fault's source;
        `on_failed(path, failed)`: told when a path's fault opens or closes."""
        super().__init__("path-watch", check_every_s)
        self._failing_for = failing_for
        self._where = where
        self._door = door
        self.path_fail_s = path_fail_s
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self.open: dict[str, bool] = dict.fromkeys(failing_for, False)

    def check_now(self) -> None:
        with self._lock:
            for path, failing_for in self._failing_for.items():
                t = failing_for()
                failed = t is not None and t >= self.path_fail_s
                if failed == self.open[path]:
                    continue
                self.open[path] = failed
                reason = (f"the {NAMES[path]} ({self._where[path]}) has not delivered for"
                          f" {t:.0f} s (path_fail_s = {self.path_fail_s:g}): check the"
                          " network, the far end and `alarmgw status`" if failed else "")
                if failed:
                    log.error("path %s failed: %s", path, reason)
                else:
                    log.warning("path %s delivers again", path)
                self._door(FaultChange(DEVICE_IDS[path], NAMES[path], self._where[path],
                                       failed, reason, mono_ns(),
                                       detail={"path": path, "path_fail_s": self.path_fail_s}))
                if self._on_failed is not None:
                    self._on_failed(path, failed)

    def status(self) -> dict[str, bool]:
        with self._lock:
            return dict(self.open)


class MqttFailing:
    """How long the MQTT path has been failing, from the uplink's state and the queue."""

    def __init__(self, connected: Callable[[], bool],
                 oldest_wait_s: Callable[[], float | None]) -> None:
        """`connected`: whether the uplink is connected; `oldest_wait_s`: how long the
        oldest alarm or event row of this boot has waited for its PUBACK (None: none)."""
        self._connected = connected
        self._oldest = oldest_wait_s
        self._down_since: float | None = None

    def __call__(self) -> float | None:
        now = time.monotonic()
        if self._connected():
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        down = None if self._down_since is None else now - self._down_since
        waiting = self._oldest()
        if down is None and waiting is None:
            return None
        return max(down or 0.0, waiting or 0.0)
