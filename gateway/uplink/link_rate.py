"""How fast the uplink's link carries bytes, and how many picture bytes it lets ahead.

An alarm published behind pictures already on the wire waits for them (TCP has no
overtaking), so the bytes of bulk rows in flight are bounded in time: at most what the
measured PUBACK rate carries in `BULK_AHEAD_S`, within fixed bounds.
"""

from __future__ import annotations

#: Most bytes of bulk rows (snapshots) published and not yet acknowledged, at least one
#: row: an alarm published meanwhile waits behind at most this much (plus one picture)
#: on the wire, about half a second on a 2 Mbit/s mobile uplink.
BULK_BYTES_IN_FLIGHT = 128 * 1024
#: On a slower link the bound is in time: bulk bytes in flight at most what the measured
#: link rate carries in this many seconds (at least one row), so that an alarm never waits
#: longer than this behind pictures, whether the link does 2 Mbit/s or 2 kB/s.
BULK_AHEAD_S = 0.5
#: The bound before the link's rate has been measured (the first PUBACKs), in bytes.
BULK_BYTES_UNMEASURED = 32 * 1024


class LinkRate:
    """The rate at which the broker acknowledges bytes, from the spacing of PUBACKs.

    Each batch of PUBACKs counts its rows' bytes over the time since the later of their
    publication and the previous PUBACK: back to back on a busy link that is the link's
    transmission rate; for a lone row it includes a round trip, which errs on the slow
    (safe) side. A decaying sum keeps the last few seconds' worth.
    """

    def __init__(self, decay: float = 0.7) -> None:
        self._decay = decay
        self._bytes = 0.0
        self._secs = 0.0
        self._last_ack: float | None = None

    def new_connection(self) -> None:
        self._last_ack = None  # the estimate itself carries over: the link is the same

    def acked(self, now: float, rows: list[tuple[int, float]]) -> None:
        """`rows`: (bytes, monotonic time published) of the rows acknowledged at `now`."""
        if not rows:
            return
        start = min(sent for _, sent in rows)
        if self._last_ack is not None:
            start = max(start, self._last_ack)
        self._last_ack = now
        secs = now - start
        if secs <= 0:
            return
        self._bytes = self._decay * self._bytes + sum(size for size, _ in rows)
        self._secs = self._decay * self._secs + secs

    def bytes_per_s(self) -> float | None:
        return self._bytes / self._secs if self._secs > 0 else None

    def bulk_cap(self) -> int:
        """Most bulk bytes to have in flight now, in bytes."""
        rate = self.bytes_per_s()
        if rate is None:
            return BULK_BYTES_UNMEASURED
        return int(min(BULK_BYTES_IN_FLIGHT, rate * BULK_AHEAD_S))
