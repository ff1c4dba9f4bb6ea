"""Simulated hardware dies with the process that runs it.

A Mosquitto or socat started by the simulator must not outlive a gateway or a
test that was SIGKILLed (an orphaned socat keeps its pty link, and the next
start finds the port taken). `die_with_parent` is a `preexec_fn` that asks the
kernel to SIGKILL the child when its parent goes (Linux PR_SET_PDEATHSIG).

The kernel ties this to the *thread* that started the child: start simulated
hardware from a thread that lives as long as it should (the main thread, or
the service's own).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

_PR_SET_PDEATHSIG = 1

# Loaded here, in the parent: between fork and exec the child only makes one plain
# system call (no library loading, no locks), which is what makes this preexec_fn safe
# in a threaded process.
_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name, use_errno=True) if _libc_name else None
_SIGKILL = int(signal.SIGKILL)


def die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that forked it ends."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
