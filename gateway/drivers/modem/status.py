"""What a modem check found, and what stands in the way of an SMS, in a technician's words."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from gateway.drivers.modem.codes import CHECK_NET, CHECK_PIN, CHECK_SIM

SimState = Literal["ready", "pin_required", "puk_required", "not_inserted", "failure", "busy",
                   "locked", "unknown"]
Registration = Literal["home", "roaming", "searching", "denied", "not_registered", "unknown"]


@dataclass(frozen=True)
class ModemStatus:
    """What `Modem.check()` found.

    `rssi` is the 27.007 signal level 0..31 (None when the modem does not know it: no
    network), `ber` the bit error rate class 0..7 (None when unknown).
    """

    port: str
    sim: SimState
    registration: Registration
    rssi: int | None
    ber: int | None
    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None
    sim_detail: str = ""
    """The modem's own words about the SIM, e.g. "SIM PIN" or "+CME ERROR: 10"."""

    @property
    def signal_dbm(self) -> int | None:
        """Received signal strength in dBm (-113 to -51), or None when unknown."""
        return None if self.rssi is None else -113 + 2 * self.rssi

    @property
    def registered(self) -> bool:
        """Whether the modem is on a network (home or roaming)."""
        return self.registration in ("home", "roaming")

    @property
    def is_ready(self) -> bool:
        """Whether an SMS can be expected to go: SIM ready and registered."""
        return self.sim == "ready" and self.registered

    def problems(self) -> list[str]:
        """What stands in the way of sending an SMS, in words for a technician."""
        out: list[str] = []
        sim_words: dict[str, str] = {
            "not_inserted": "no SIM card: " + CHECK_SIM,
            "pin_required": "the SIM asks for its PIN: " + CHECK_PIN,
            "puk_required": "the SIM is blocked (PUK): unblock it in a phone with the carrier's"
                            " PUK code; do not guess",
            "failure": "the SIM fails: " + CHECK_SIM + "; replace the SIM if it persists",
            "busy": "the SIM is still starting: check again in a minute",
            "locked": f"the SIM is locked ({self.sim_detail}): unlock it with a phone",
            "unknown": f"the SIM state is unknown ({self.sim_detail or 'no answer'})",
        }
        if self.sim != "ready":
            out.append(sim_words[self.sim])
        if self.sim == "ready" and not self.registered:
            if self.registration == "denied":
                out.append("the network denied registration: the SIM may not be activated, paid"
                           " or real-name registered: call the carrier")
            else:
                out.append(f"not registered to a network ({self.registration}): {CHECK_NET}")
        if self.sim == "ready" and self.rssi is None:
            out.append("no signal: check the antenna and its cable")
        elif self.rssi is not None and self.rssi < 10:
            out.append(f"weak signal ({self.signal_dbm} dBm, rssi {self.rssi}): move the antenna"
                       " outside the metal cabinet or near a window")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict with the derived fields too."""
        d = asdict(self)
        d.update(signal_dbm=self.signal_dbm, registered=self.registered,
                 ready=self.is_ready, problems=self.problems())
        return d
