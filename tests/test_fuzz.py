"""Fuzzing with hypothesis: the config loader and Modbus replies never crash the gateway.

A bounded number of examples runs in CI. What may come out is named: a bad config is a
ConfigError (naming the file and key), a bad Modbus reply is a ModbusError (the driver turns
it into a fault), never another exception, never a hang.
"""

from __future__ import annotations

import math
import socket
import struct
import tempfile
import threading
from pathlib import Path

from gw import write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.drivers.modbus import FrameRing, TcpLink, _check_reply, decode_read, read_pdu
from gateway.errors import ConfigError, ModbusError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: TOML values of every type, some sensible for some keys and most not.
toml_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: "nan" if math.isnan(f) else ("inf" if f == math.inf else
                                               "-inf" if f == -math.inf else repr(f))),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"')
                             .replace("\n", "\\n").replace("\r", "\\r")
                             .replace("\t", "\\t") + '"'),
    st.lists(st.integers(-5, 70000), max_size=3).map(lambda xs: "[" + ", ".join(map(str, xs))
                                                     + "]"),
    st.just("{ a = 1 }"),
)


def _base_config(directory: Path) -> list[str]:
    path = write_config(directory, broker_port=1883, debounce_ms=30)
    return path.read_text(encoding="utf-8").splitlines()


@FUZZ
@given(data=st.data())
def test_config_loader_names_every_bad_value(data: st.DataObject) -> None:
    # Not tmp_path: hypothesis runs many examples in one test call.
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        lines = _base_config(directory)
        keyed = [i for i, line in enumerate(lines) if " = " in line]
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.sampled_from(keyed))
            key = lines[i].split(" = ", 1)[0]
            lines[i] = f"{key} = {data.draw(toml_values)}"
        if data.draw(st.booleans()):
            # An unknown key, or a line of noise, somewhere.
            at = data.draw(st.integers(0, len(lines)))
            lines.insert(at, data.draw(st.sampled_from(
                ["bogus = 1", "[surprise]", "[[inputs]]", "= 3", "gpio = -1"])))
        path = directory / "config.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(table=st.sampled_from(["di", "coil", "ir", "hr"]), count=st.integers(1, 32),
       reply=st.binary(max_size=80))
def test_decode_read_rejects_any_bad_reply_with_a_value_error(table: str, count: int,
                                                              reply: bytes) -> None:
    try:
        values = decode_read(table, count, reply)
    except ValueError:
        return
    assert len(values) == count


@FUZZ
@given(fc=st.sampled_from([1, 2, 3, 4]), reply=st.binary(max_size=40))
def test_check_reply_raises_only_modbus_errors(fc: int, reply: bytes) -> None:
    try:
        ex = _check_reply("bus", 1, read_pdu(fc, 0, 8), reply, sent_ns=0, rtt=0.0)
    except ModbusError:
        return
    assert ex.reply[0] == fc


class _OneShotModule:
    """A loopback 'Modbus TCP module' that answers the first request with given bytes."""

    def __init__(self, answer: bytes, close_after: bool) -> None:
        self.answer = answer
        self.close_after = close_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fuzz-module")
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(5)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(300)
                conn.sendall(self.answer)
                if not self.close_after:
                    self.done.wait(5)
            except OSError:
                pass

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.listener.close()


@settings(max_examples=60, deadline=None)
@given(answer=st.one_of(
           st.binary(max_size=40),
           # A plausible MBAP header with a random length and body: truncated frames.
           st.tuples(st.integers(0, 3), st.integers(0, 300), st.binary(max_size=20)).map(
               lambda t: struct.pack(">HHHB", 1, 0, t[1], 1) + bytes([t[0] + 1]) + t[2])),
       close_after=st.booleans())
def test_tcp_link_survives_any_reply(answer: bytes, close_after: bool) -> None:
    module = _OneShotModule(answer, close_after)
    link = TcpLink("lan", "127.0.0.1", module.port, 1.0, FrameRing())
    try:
        try:
            ex = link.transact(1, read_pdu(2, 0, 8), 0.1)
        except ModbusError:
            return  # a closed connection too: ModbusLinkError, a lost link to the poller
        assert ex.reply[0] == 2
    finally:
        link.close()
        module.close()
