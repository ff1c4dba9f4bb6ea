"""Time as a gateway without a real-time clock must record it.

A Raspberry Pi has no RTC: after a power cut without network its wall clock
is wrong until NTP syncs. So every event carries three clocks: the wall
time (UTC) and whether the kernel considered it synchronised, and the
monotonic boot time in nanoseconds with the boot id, which orders and
spaces events exactly within one boot whatever the wall clock did.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

#: How the gateway tells whether its wall clock is synchronised (`clock.sync_source` in the
#: config): 'kernel' asks the kernel (adjtimex, or systemd-timesyncd's flag file), the two
#: 'assume-' values are for tests and for sites that know better.
ClockSource = Literal["kernel", "assume-synced", "assume-unsynced"]

_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

# adjtimex(2) returns TIME_ERROR (5) while the kernel's clock is unsynchronised
# (STA_UNSYNC set). This is what timedatectl's "System clock synchronized"
# reports, read without a subprocess or D-Bus.
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only its size and layout prefix matter here.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


def _load_adjtimex() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        func = ctypes.CDLL(name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.POINTER(_Timex)]
    func.restype = ctypes.c_int
    return func


_adjtimex = _load_adjtimex()
_adjtimex_blocked = False

# systemd-timesyncd (Raspberry Pi OS's NTP client) touches this file once it has
# synchronised the clock in this boot; /run is emptied at every boot.
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


def kernel_clock_synced() -> bool | None:
    """Whether the kernel reports its clock synchronised; None if it cannot tell."""
    return clock_sync_state()[0]


def clock_sync_state() -> tuple[bool | None, str]:
    """(synced, how it was told): the kernel's NTP state through adjtimex(2), or, where a
    seccomp filter forbids adjtimex (the unit's ProtectClock=yes), systemd-timesyncd's
    flag file; (None, "unknown") when neither can tell."""
    global _adjtimex_blocked
    if _adjtimex is not None and not _adjtimex_blocked:
        tx = _Timex()
        state: int = _adjtimex(ctypes.byref(tx))
        if state >= 0:
            return state != _TIME_ERROR, "adjtimex"
        if ctypes.get_errno() in (errno.EPERM, errno.EACCES, errno.ENOSYS):
            _adjtimex_blocked = True
            log.debug("clock: adjtimex is not allowed here; reading systemd-timesyncd's"
                      " state instead")
    try:
        if TIMESYNCD_FLAG.exists():
            return True, "timesyncd"
        if TIMESYNCD_FLAG.parent.is_dir():
            return False, "timesyncd"
    except OSError:
        pass
    return None, "unknown"


def read_boot_id() -> str:
    """The kernel's id of this boot; a fresh random one if the kernel has none."""
    try:
        return _BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        return str(uuid.uuid4())


def mono_ns() -> int:
    """Nanoseconds since boot, counting suspend (CLOCK_BOOTTIME)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def utc_iso(wall_ns: int) -> str:
    """RFC 3339 UTC time with milliseconds, e.g. 2026-11-28T15:37:04.123Z."""
    dt = datetime.fromtimestamp(wall_ns / 1e9, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Clock:
    """The gateway's view of time: wall, monotonic, boot id and sync state."""

    def __init__(self, source: ClockSource = "kernel") -> None:
        self.source = source
        self.boot_id = read_boot_id()

    def is_synced(self) -> bool:
        """Whether wall time can be trusted now (NTP-synced or told so by config)."""
        if self.source == "assume-synced":
            return True
        if self.source == "assume-unsynced":
            return False
        synced = kernel_clock_synced()
        return bool(synced)

    def sync_method(self) -> str:
        """How `is_synced` knows: 'config', 'adjtimex', 'timesyncd' or 'unknown'."""
        if self.source != "kernel":
            return "config"
        return clock_sync_state()[1]

    def now(self) -> tuple[int, int]:
        """(wall time in ns since the epoch, monotonic boot time in ns), read together."""
        return time.time_ns(), mono_ns()

    def wall_at(self, at_mono_ns: int) -> int:
        """Wall time in ns of a past monotonic instant, by today's offset between the two."""
        wall, mono = self.now()
        return wall - (mono - at_mono_ns)
