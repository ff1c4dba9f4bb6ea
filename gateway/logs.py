"""Logging for a service that journald keeps on an SD card.

- Under systemd (stderr is the journal stream named by `$JOURNAL_STREAM`),
  every line starts with its syslog priority (`<3>` error, `<4>` warning,
  ...) and carries no timestamp of its own: journald adds the time and
  files the line at that priority, so `journalctl -p warning` works. Each
  line of a traceback gets the prefix, so it is not filed as info.
- `SecretFilter` replaces known secrets (the broker password) in every
  record, whatever logged it, arguments and tracebacks included.
- `OnChangeLog` logs a recurring problem (a dead device or link tried again
  and again) when it starts and when it changes, then a summary every few
  minutes while it lasts, and once when it is over, never on every attempt:
  each journal line is a write to the SD card.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable

#: syslog priorities by logging level (sd-daemon.h's SD_ERR, SD_WARNING, ...).
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return _PRIORITY[logging.DEBUG]


def stderr_is_journal(environ: dict[str, str] | None = None) -> bool:
    """True when stderr is connected to journald (systemd sets `JOURNAL_STREAM=dev:inode`)."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = stream.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message`, the prefix on every line, no timestamp."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class SecretFilter(logging.Filter):
    """Replaces each of `secrets` with '***' in the records it sees."""

    MASK = "***"

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        # Very short strings would mask innocent text; a password that short is a problem
        # of its own.
        for s in secrets:
            if s and len(s) >= 4 and s not in self.secrets:
                self.secrets.append(s)
        self.secrets.sort(key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, self.MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True  # a bad format string: logging reports it itself
        masked = self._mask(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self._mask(record.stack_info)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


def setup_logging(verbose: bool = False, secrets: Iterable[str | None] = ()) -> SecretFilter:
    """Configure the root logger for the `alarmgw` program (only its entry point calls this).

    Returns the secret filter, to which more secrets may be added later.
    """
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    secret_filter = SecretFilter(secrets)
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("paho").setLevel(logging.WARNING)
    return secret_filter


class OnChangeLog:
    """Logs a recurring problem on change plus a periodic summary, never every occurrence.

    `problem(msg)` logs `msg` the first time and whenever it differs from the
    last one; the same message again only counts, and while it keeps coming a
    summary ("still: ... (N times in the last 600 s)") is logged every
    `summary_s` seconds. `resolved(msg)` logs once that the problem is over.
    """

    def __init__(self, logger: logging.Logger, *, summary_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`summary_s`: seconds between two summaries of the same problem;
        `clock`: monotonic time source, in seconds."""
        self.logger = logger
        self.summary_s = summary_s
        self._clock = clock
        self.current: str | None = None
        self.count = 0
        """Occurrences of the current problem since it began."""
        self._window = 0
        self._since = 0.0
        self._last_summary = 0.0
        self.suppressed = 0
        """Occurrences not logged on their own (for tests and status)."""

    def problem(self, msg: str, level: int = logging.WARNING) -> None:
        now = self._clock()
        if msg != self.current:
            if self.current is None:
                self._since = now
            self.current = msg
            self.count = 1
            self._window = 0
            self._last_summary = now
            self.logger.log(level, "%s", msg)
            return
        self.count += 1
        self._window += 1
        if now - self._last_summary >= self.summary_s:
            self.logger.log(level, "still failing (%d more times in the last %.0f s, since"
                            " %.0f s ago): %s", self._window, now - self._last_summary,
                            now - self._since, msg)
            self._window = 0
            self._last_summary = now
        else:
            self.suppressed += 1

    def resolved(self, msg: str, level: int = logging.INFO) -> None:
        """The problem is over: log `msg` with how long it lasted (nothing if none was open)."""
        if self.current is None:
            return
        now = self._clock()
        self.logger.log(level, "%s (after %d failed attempts over %.0f s)", msg, self.count,
                        now - self._since)
        self.current = None
        self.count = 0
        self._window = 0
