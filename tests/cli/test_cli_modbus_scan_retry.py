"""`alarmgw modbus-scan` asks a unit that did not answer again: one lost frame on RS-485 must
not make a present module look absent at commissioning.

The simulated module drops its first request (`set_fault(unit, "silent", count=1)`): a
real pymodbus server behind a socat pty pair (RTU) or on loopback (TCP).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_cli import alarmgw

from gateway.drivers.modbus import FrameRing, RtuLink, scan
from gateway.drivers.modbus.scan import SCAN_TRIES
from hw_sim.modbus import SimRtuBus, SimTcpBus


def test_a_unit_that_lost_its_first_request_is_found_on_the_retry(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    with SimRtuBus(port, [2, 4], baud=19200) as sim:
        sim.set_fault(4, "silent", count=1)  # one lost frame
        res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(port), "--baud",
                      "19200", "--units", "1-5")
        assert res.returncode == 0, res.stderr
        out = res.stdout
        assert f"2 unit(s) answer on {port} 19200 8N1: 2, 4" in out, out
        assert re.search(r"^\s+unit 4\s+FOUND\s+[\d.]+ ms\s+holding register 0 = 0"
                         r" \(answered on try 2 of 2\)$", out, re.M), out
        assert re.search(r"^\s+unit 2\s+FOUND\s+[\d.]+ ms\s+holding register 0 = 0$", out,
                         re.M), out
        assert "answered only when asked again (4)" in out
        assert sim.requests_to(4) == 2 and sim.requests_to(2) == 1

        sim.set_fault(4, "silent", count=1)
        doc = json.loads(alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(port),
                                 "--baud", "19200", "--units", "1-5", "--json").stdout)
    assert doc["found"] == [2, 4]
    tries = {r["unit"]: (r["result"], r["tries"]) for r in doc["results"]}
    assert tries == {1: ("timeout", SCAN_TRIES), 2: ("answers", 1), 3: ("timeout", SCAN_TRIES),
                     4: ("answers", 2), 5: ("timeout", SCAN_TRIES)}


def test_the_retry_waits_the_bus_s_inter_frame_gap(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    with SimRtuBus(port, [4], baud=9600) as sim:
        sim.set_fault(4, "silent", count=1)
        ring = FrameRing()
        link = RtuLink("scan", str(port), baud=9600, parity="N", stopbits=1, ring=ring)
        try:
            [r] = scan(link, [4], 0.1)
        finally:
            link.close()
    assert (r.present, r.result, r.tries) == (True, "answers", 2)
    frames = ring.last(10)
    assert [f["dir"] for f in frames] == ["tx", "--", "tx", "rx"]
    silence_ms = frames[1]["ago_ms"] - frames[2]["ago_ms"]
    assert silence_ms >= link.gap_s * 1000, (silence_ms, link.gap_s)


def test_a_tcp_module_that_lost_a_request_is_found_too(tmp_path: Path) -> None:
    module = SimTcpBus([1])
    module.start()
    try:
        module.set_fault(1, "silent", count=1)
        res = alarmgw(tmp_path / "none.toml", "modbus-scan", "--host", "127.0.0.1",
                      "--tcp-port", str(module.port), "--units", "1", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        [r] = json.loads(res.stdout)["results"]
        assert (r["present"], r["tries"]) == (True, 2)
    finally:
        module.stop()


def test_a_garbled_reply_is_not_asked_again(tmp_path: Path) -> None:
    """Only silence is retried: a bad CRC is an answer (someone is there), said as it is."""
    port = tmp_path / "ttyUSB0"
    with SimRtuBus(port, [7], baud=19200) as sim:
        sim.set_fault(7, "bad-crc")
        doc = json.loads(alarmgw(tmp_path / "none.toml", "modbus-scan", "--port", str(port),
                                 "--baud", "19200", "--units", "7", "--json").stdout)
        assert sim.requests_to(7) == 1
    [r] = doc["results"]
    assert (r["result"], r["tries"]) == ("crc", 1)
