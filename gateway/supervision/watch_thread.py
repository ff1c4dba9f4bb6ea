"""The thread behind a supervision that looks every few seconds (clock, disk).

Each look reads memory and a syscall or two; it writes nothing unless the state
it watches changes, so a look on a timer costs the SD card nothing.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class WatchThread:
    """Calls `check_now()` every `check_every_s` seconds, or at once when woken."""

    def __init__(self, name: str, check_every_s: float) -> None:
        """`name`: the thread's name, also in its log lines; `check_every_s`: seconds
        between two looks."""
        self.check_every_s = check_every_s
        self._name = name
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def check_now(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Look now (thread-safe, never blocks)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop:
            try:
                self.check_now()
            except Exception:
                log.exception("%s: check failed", self._name)
            self._wake.wait(self.check_every_s)
            self._wake.clear()
