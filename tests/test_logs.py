"""Logging for journald on an SD card: priority prefixes, no secrets, no line per retry."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import pytest
from gw import GatewayProcess, InProcessGateway, password_broker, write_config
from sdsock import NotifySocket

from gateway.logs import JournalFormatter, OnChangeLog, SecretFilter
from hw_sim.broker import Mosquitto

WAIT = 10.0


def test_journal_format_from_a_real_process(tmp_path: Path, broker: Mosquitto) -> None:
    """Under systemd (JOURNAL_STREAM names stderr) every line starts with its priority and
    carries no timestamp: journald adds the time and files the line by priority."""
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    log_path = tmp_path / "journal-stream.log"
    log_path.touch()
    st = log_path.stat()
    proc = GatewayProcess(config, log_path, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        proc.start()
    finally:
        assert proc.stop() == 0
    lines = log_path.read_text().splitlines()
    assert lines, "nothing was logged"
    for line in lines:
        assert re.match(r"^<[0-7]>", line), line
        assert not re.match(r"^<\d>\d{4}-\d\d-\d\d", line), f"a timestamp of its own: {line}"
    started = r"^<6>gateway\.service\.service: alarmgw 0\.1\.0 started"
    assert any(re.match(started, ln) for ln in lines), lines


def test_plain_format_elsewhere(tmp_path: Path, broker: Mosquitto) -> None:
    config = write_config(tmp_path / "gw", broker_port=broker.port)
    env = {"JOURNAL_STREAM": "1:1"}  # a stream that is not our stderr: not under journald
    proc = GatewayProcess(config, env=env)
    try:
        proc.start()
    finally:
        assert proc.stop() == 0
    started = [ln for ln in proc.log().splitlines() if "started" in ln]
    plain = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO gateway\.service\.service:"
    assert started and re.match(plain, started[0]), started


def test_journal_formatter_prefixes_every_line_of_a_traceback() -> None:
    try:
        raise ValueError("bad frame\nsecond line")
    except ValueError:
        record = logging.getLogger("gateway.x").makeRecord(
            "gateway.x", logging.ERROR, __file__, 1, "modbus unit %d failed", (3,), None)
        import sys

        record.exc_info = sys.exc_info()
    text = JournalFormatter().format(record)
    lines = text.split("\n")
    assert lines[0] == "<3>gateway.x: modbus unit 3 failed"
    assert len(lines) > 3
    assert all(ln.startswith("<3>") for ln in lines), lines


def test_secret_filter_masks_messages_args_and_tracebacks() -> None:
    secret = "s3cret-Pa55word"
    f = SecretFilter([secret, None, "ab"])  # None and too-short values are ignored
    logger = logging.getLogger("test.secrets")
    try:
        raise RuntimeError(f"login as gw with {secret} failed")
    except RuntimeError:
        import sys

        record = logger.makeRecord("test.secrets", logging.ERROR, __file__, 1,
                                   "connect with password %s to %s", (secret, "broker"), None)
        record.exc_info = sys.exc_info()
    assert f.filter(record)
    formatted = logging.Formatter().format(record)
    assert secret not in formatted
    assert "connect with password *** to broker" in formatted
    assert "login as gw with *** failed" in formatted
    plain = logger.makeRecord("test.secrets", logging.INFO, __file__, 1, "about ab", (), None)
    assert f.filter(plain)
    assert plain.getMessage() == "about ab"


def test_no_secret_in_a_verbose_log(tmp_path: Path) -> None:
    """The password reaches the broker, never the log, even with debug logging."""
    secret = "s3cret-Pa55word"
    with password_broker(tmp_path / "b", "gw-test", secret) as broker:
        config = write_config(tmp_path / "gw", broker_port=broker.port,
                              broker={"username": "gw-test", "password": secret})
        with NotifySocket() as sock:
            proc = GatewayProcess(config, args=["-v"], env={"NOTIFY_SOCKET": sock.address})
            try:
                proc.start()
                # The login worked (the broker refuses anyone without the password).
                assert sock.wait_for_status(lambda s: s.startswith("uplink connected"), WAIT), \
                    f"{sock.received}\n{proc.log()}"
            finally:
                proc.stop()
    text = proc.log()
    assert f"connected to broker 127.0.0.1:{broker.port}" in text
    assert secret not in text


# -- repeated errors -----------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_on_change_log(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    logger = logging.getLogger("test.onchange")
    lim = OnChangeLog(logger, summary_s=600.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.onchange"):
        for _ in range(50):
            lim.problem("modbus unit 3: no reply")
            clock.t += 5.0
        assert [r.getMessage() for r in caplog.records] == ["modbus unit 3: no reply"]
        for _ in range(100):  # past the summary period: one summary line
            lim.problem("modbus unit 3: no reply")
            clock.t += 5.0
        summaries = [r.getMessage() for r in caplog.records[1:]]
        assert len(summaries) == 1, summaries
        assert summaries[0].startswith("still failing (")
        assert summaries[0].endswith("): modbus unit 3: no reply")
        lim.problem("modbus unit 3: bad CRC")  # a change is logged at once
        assert caplog.records[-1].getMessage() == "modbus unit 3: bad CRC"
        lim.resolved("modbus unit 3 answers again")
        assert re.fullmatch(r"modbus unit 3 answers again \(after 1 failed attempts over \d+ s\)",
                            caplog.records[-1].getMessage())
        lim.resolved("again")  # nothing open: nothing logged
    assert len(caplog.records) == 4
    assert lim.suppressed == 148


def test_dead_broker_is_logged_once_not_per_retry(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with Mosquitto(tmp_path / "b") as broker:
        port = broker.port
    config = write_config(tmp_path / "gw", broker_port=port)  # nothing listens there now
    with caplog.at_level(logging.WARNING, logger="gateway.uplink.mqtt"), \
            InProcessGateway(config) as gw:
        uplink = gw.service.uplink
        assert uplink is not None
        cond = threading.Condition()

        def changed() -> None:
            with cond:
                cond.notify_all()

        uplink.add_watcher(changed)
        with cond:
            assert cond.wait_for(lambda: uplink.state()["connect_failures"] >= 5, WAIT)
    refused = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
    assert f"127.0.0.1:{port}" in refused[0].getMessage()


def test_journal_stream_detection_needs_our_stderr() -> None:
    from gateway.logs import stderr_is_journal

    assert not stderr_is_journal({})
    assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"})
    st = os.fstat(2)
    assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
