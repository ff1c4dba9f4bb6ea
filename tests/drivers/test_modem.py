"""The SMS modem: the AT driver against the simulated modem on a real pseudo-terminal.

The driver opens the socat pseudo-terminal with pyserial exactly as it opens /dev/ttyUSB2
on a Pi; the simulator decodes what it is asked to send with its own decoder, so a wrong
number, a broken character or a bad split shows up as a wrong recorded message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.modem import (
    ELLIPSIS,
    SMS_UCS2_UNITS,
    Modem,
    ModemStatus,
    decode_ucs2,
    encode_ucs2,
    join_sms,
    main,
    mask_number,
    normalize_number,
    split_sms,
    utf16_units,
)
from gateway.errors import (
    GatewayError,
    ModemClosedError,
    ModemError,
    ModemNetworkError,
    ModemNotAnsweringError,
    ModemOpenError,
    ModemSimError,
    ModemSmsError,
    ModemTimeoutError,
    SmsInputError,
)
from hw_sim.modem import SimModem

#: Per-command timeout the tests give the driver, in seconds: short, so failures are quick.
TIMEOUT = 0.3
#: How long the network may take per SMS part in the tests, in seconds.
SEND_TIMEOUT = 1.0
#: Slack over a computed bound for scheduling and the 50 ms read polls, in seconds.
SLACK = 1.0

ALARM = "南门门卫室一键报警 ALARM 15:37"
DUTY = "+8613800138000"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimModem]:
    with SimModem(tmp_path / "modem") as s:
        yield s


@pytest.fixture
def modem(sim: SimModem) -> Iterator[Modem]:
    with Modem(sim.port, timeout_s=TIMEOUT, send_timeout_s=SEND_TIMEOUT) as m:
        yield m


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run `fn`; return (its result or the exception it raised, seconds it took)."""
    start = time.monotonic()
    try:
        result: Any = fn()
    except Exception as exc:
        result = exc
    return result, time.monotonic() - start


#: The longest a call to a modem that never answers may take: the liveness AT, a quiet
#: drain (0.1 s) and two probes.
NO_ANSWER_BOUND = 0.1 + 3 * TIMEOUT + SLACK


# -- messages arrive intact -------------------------------------------------------------------


def test_chinese_message_arrives_intact_to_the_right_number(sim: SimModem, modem: Modem) -> None:
    refs = modem.send_sms("+86 138-0013-8000", ALARM)

    [message] = sim.wait_for_messages(1)
    assert message.number == DUTY
    assert message.text == ALARM
    [part] = message.parts
    assert part.text == ALARM  # one message: no "(1/1)" prefix
    assert (part.charset, part.dcs, part.toda) == ("UCS2", 8, 145)
    assert refs == [part.ref]
    assert modem.sent_total == 1


def test_national_number_uses_the_national_type_of_address(sim: SimModem, modem: Modem) -> None:
    modem.send_sms("13800138000", "报警")

    [part] = sim.wait_for_parts(1)
    assert (part.number, part.toda) == ("13800138000", 129)


def test_characters_outside_the_bmp_travel_as_surrogate_pairs(sim: SimModem,
                                                              modem: Modem) -> None:
    text = "𠮷野家门卫室 😀 报警"  # 𠮷 is CJK Extension B, as in some real names
    modem.send_sms(DUTY, text)

    [part] = sim.wait_for_parts(1)
    assert part.text == text
    assert "D842DFB7" in part.raw  # U+20BB7 as its UTF-16 surrogate pair


def test_long_message_is_split_into_numbered_parts_that_reassemble(sim: SimModem,
                                                                   modem: Modem) -> None:
    text = ("一键报警 ALARM 南门门卫室 (南门) 15:37:02, 北京市第一中学, 请立即出警。"
            "Guard: 王师傅 13900000000. 摄像头 gate-1, gate-2 已抓拍; 无人确认 60 秒。") * 2
    refs = modem.send_sms(DUTY, text)

    [message] = sim.wait_for_messages(1)
    assert message.text == text
    n = len(message.parts)
    assert n >= 3 and refs == [p.ref for p in message.parts]
    for i, part in enumerate(message.parts, start=1):
        assert part.text.startswith(f"({i}/{n}) ")
        assert len(bytes.fromhex(part.raw)) <= 2 * SMS_UCS2_UNITS  # 140 octets per SMS
    assert len(set(refs)) == n


def test_text_beyond_max_parts_is_cut_with_an_ellipsis(sim: SimModem,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with Modem(sim.port, timeout_s=TIMEOUT, send_timeout_s=SEND_TIMEOUT, max_parts=2) as m:
        m.send_sms(DUTY, "报警" * 200)

    [message] = sim.wait_for_messages(1)
    assert len(message.parts) == 2
    assert message.text.endswith(ELLIPSIS)
    assert ("报警" * 200).startswith(message.text[:-1])
    assert any("cut to 2 messages" in r.getMessage() for r in caplog.records)


def test_bad_input_is_refused_before_anything_is_sent(sim: SimModem, modem: Modem) -> None:
    with pytest.raises(SmsInputError, match="not usable"):
        modem.send_sms("call 110", ALARM)
    with pytest.raises(SmsInputError, match="empty"):
        modem.send_sms(DUTY, "")
    assert not any(c.upper().startswith("AT+CMGS") for c in sim.commands)


# -- unsolicited codes, echo, numeric results, leftovers --------------------------------------

URCS = ['+CMTI: "SM",3', "RING", "^RSSI: 18", "+CREG: 1", '+CREG: 1,"00C3","1A2B"',
        "SMS Ready", "^BOOT:123,0,0,0,72", "+CPIN: READY"]


def test_unsolicited_codes_do_not_confuse_the_driver(sim: SimModem, modem: Modem) -> None:
    sim.urcs = URCS  # before every answer, inside answers, before the prompt and +CMGS
    sim.registration = "roaming"  # the solicited +CREG says 5; the URCs say 1
    sim.rssi = 17

    status = modem.check()
    sim.emit("RING")  # and some while the driver is idle
    sim.emit('+CMT: "+8613900000000",,"26/11/28,15:37:00+32"')
    refs = modem.send_sms(DUTY, ALARM)

    assert (status.sim, status.registration, status.rssi) == ("ready", "roaming", 17)
    assert (status.manufacturer, status.model, status.imei) == (
        sim.manufacturer, sim.model, sim.imei)
    [message] = sim.wait_for_messages(1)
    assert (message.number, message.text) == (DUTY, ALARM)
    assert refs == [message.parts[0].ref]


def test_a_modem_that_echoes_again_after_a_reset(sim: SimModem, modem: Modem) -> None:
    modem.open()
    sim.echo = True  # as after a power blip that did not drop the USB port

    status = modem.check()  # the echoed "AT+CGMI" must not be taken for the make
    modem.send_sms(DUTY, ALARM * 3)  # a series: the echoed hex text must not be an answer

    assert (status.manufacturer, status.model, status.imei) == (
        sim.manufacturer, sim.model, sim.imei)
    [message] = sim.wait_for_messages(1)
    assert message.text == ALARM * 3


def test_a_modem_set_to_numeric_results_is_switched_back(sim: SimModem, modem: Modem) -> None:
    sim.verbose = False  # ATV0 stored in its profile: "0" for OK

    modem.send_sms(DUTY, ALARM)

    assert sim.wait_for_messages(1)[0].text == ALARM
    assert "ATV1" in sim.commands


def test_an_sms_left_half_typed_by_a_dead_process_is_aborted(sim: SimModem) -> None:
    with serial.Serial(sim.port, 115200, timeout=TIMEOUT) as raw:
        raw.write(b'AT+CMGF=1\rAT+CMGS="13800138000"\r')
        assert raw.read_until(b"> ").endswith(b"> ")
        raw.write(b"half a mess")  # and then the process died
    with Modem(sim.port, timeout_s=TIMEOUT, send_timeout_s=SEND_TIMEOUT) as m:
        m.send_sms(DUTY, ALARM)

    [part] = sim.wait_for_parts(1)
    assert (part.number, part.text) == (DUTY, ALARM)


# -- check() -----------------------------------------------------------------------------------


def test_check_reports_sim_registration_and_signal(sim: SimModem, modem: Modem) -> None:
    status = modem.check()

    assert status.is_ready and status.problems() == []
    assert (status.sim, status.registration, status.rssi, status.signal_dbm) == (
        "ready", "home", 20, -73)
    assert status.imei == sim.imei
    assert modem.last_status == status
    json.dumps(status.as_dict(), ensure_ascii=False)


@pytest.mark.parametrize(("setup", "expected"), [
    ({"sim": "absent"}, ("not_inserted", "not_registered", "no SIM card")),
    ({"sim": "puk"}, ("puk_required", "not_registered", "blocked (PUK)")),
    ({"registration": "searching"}, ("ready", "searching", "not registered to a network")),
    ({"registration": "denied"}, ("ready", "denied", "denied registration")),
    ({"rssi": 4}, ("ready", "home", "weak signal (-105 dBm")),
    ({"rssi": 99}, ("ready", "home", "no signal")),
])
def test_check_reports_what_stands_in_the_way(sim: SimModem, modem: Modem, setup: dict[str, Any],
                                              expected: tuple[str, str, str]) -> None:
    sim_state, registration, problem = expected
    for key, value in setup.items():
        setattr(sim, key, value)

    status = modem.check()

    assert (status.sim, status.registration) == (sim_state, registration)
    assert not status.is_ready or setup.get("rssi") is not None
    assert any(problem in p for p in status.problems()), status.problems()


def test_check_unlocks_the_sim_with_the_configured_pin(tmp_path: Path) -> None:
    with SimModem(tmp_path, pin="4321") as sim:
        sim.set_fault("sim_pin")
        with Modem(sim.port, timeout_s=TIMEOUT, pin="4321") as m:
            status = m.check()
            m.send_sms(DUTY, ALARM)

        assert status.sim == "ready"
        assert sim.wait_for_messages(1)[0].text == ALARM


def test_a_wrong_pin_is_tried_once_only(tmp_path: Path) -> None:
    with SimModem(tmp_path, pin="4321") as sim:
        sim.set_fault("sim_pin")
        with Modem(sim.port, timeout_s=TIMEOUT, pin="1111") as m:
            with pytest.raises(ModemSimError, match="refused the PIN") as first:
                m.send_sms(DUTY, ALARM)
            with pytest.raises(ModemSimError, match="refused the configured PIN") as second:
                m.send_sms(DUTY, ALARM)

        assert first.value.code == 16 and second.value.command == "AT+CPIN"
        assert sum(c.startswith("AT+CPIN=") for c in sim.commands) == 1
        assert sim.pin_tries == 2 and sim.parts == []


def test_a_locked_sim_without_a_pin_is_reported(sim: SimModem, modem: Modem) -> None:
    sim.pin = "4321"
    sim.set_fault("sim_pin")

    with pytest.raises(ModemSimError, match="asks for its PIN: put the SIM's PIN in"):
        modem.send_sms(DUTY, ALARM)
    assert modem.check().sim == "pin_required"


# -- failures: the right error, a useful message, and promptly --------------------------------


def test_a_modem_that_does_not_answer_is_reported_promptly(sim: SimModem, modem: Modem) -> None:
    sim.set_fault("silent")

    exc, took = timed(lambda: modem.send_sms(DUTY, ALARM))
    check_exc, check_took = timed(modem.check)

    assert isinstance(exc, ModemNotAnsweringError)
    assert isinstance(exc, (GatewayError, OSError, TimeoutError))
    assert (exc.port, exc.command) == (sim.port, "AT")
    assert f"modem on {sim.port} does not answer AT: check the port" in str(exc)
    assert "ModemManager" in str(exc)
    assert isinstance(check_exc, ModemNotAnsweringError)
    assert took < NO_ANSWER_BOUND and check_took < NO_ANSWER_BOUND
    assert sim.parts == []


def test_a_modem_that_falls_silent_after_working_is_not_answering(sim: SimModem,
                                                                   modem: Modem) -> None:
    modem.send_sms(DUTY, ALARM)
    sim.set_fault("silent")

    exc, took = timed(lambda: modem.send_sms(DUTY, ALARM))

    assert isinstance(exc, ModemNotAnsweringError) and took < NO_ANSWER_BOUND
    assert len(sim.parts) == 1


def test_error_to_cmgs_is_diagnosed(sim: SimModem, modem: Modem) -> None:
    sim.set_fault("cmgs_error")

    exc, took = timed(lambda: modem.send_sms(DUTY, ALARM))

    assert isinstance(exc, ModemSmsError)
    assert (exc.command, exc.code, exc.reply) == ("AT+CMGS", None, "ERROR")
    assert "AT+CMGS failed with ERROR; SIM ready, registered (home), -73 dBm" in str(exc)
    assert "SMS to ordinary numbers" in str(exc)
    assert took < 12 * TIMEOUT + SLACK
    assert sim.parts == []


def test_cms_error_500_is_diagnosed(sim: SimModem, modem: Modem) -> None:
    sim.set_fault("cms_500")

    with pytest.raises(ModemSmsError, match=r"failed with \+CMS ERROR: 500") as caught:
        modem.send_sms(DUTY, ALARM)

    assert (caught.value.code, caught.value.sent_refs) == (500, [])


def test_cms_error_330_says_how_to_set_the_sms_centre(sim: SimModem, modem: Modem) -> None:
    sim.sms_reply = "+CMS ERROR: 330"

    with pytest.raises(ModemSmsError) as caught:
        modem.send_sms(DUTY, ALARM)

    assert caught.value.code == 330
    assert ("+CMS ERROR: 330 SMSC address unknown: set the SMS centre with AT+CSCA"
            in str(caught.value))


def test_no_sim_is_a_sim_error(sim: SimModem, modem: Modem) -> None:
    sim.set_fault("no_sim")

    exc, took = timed(lambda: modem.send_sms(DUTY, ALARM))

    assert isinstance(exc, ModemSimError)
    assert (exc.command, exc.code, exc.reply) == ("AT+CPIN", 10, "+CME ERROR: 10")
    assert "cannot send SMS: no SIM card: check that a SIM is inserted" in str(exc)
    assert took < 10 * TIMEOUT + SLACK


def test_no_network_is_a_network_error(sim: SimModem, modem: Modem) -> None:
    sim.set_fault("not_registered")

    with pytest.raises(ModemNetworkError, match="331 no network service: the modem is not on a"
                       " network: check the antenna") as caught:
        modem.send_sms(DUTY, ALARM)

    assert caught.value.code == 331


def test_a_failure_in_the_middle_of_a_series_says_what_went(sim: SimModem, modem: Modem) -> None:
    sim.sms_reply = "+CMS ERROR: 42"
    sim.sms_reply_after_parts = 1

    with pytest.raises(ModemSmsError, match="congestion") as caught:
        modem.send_sms(DUTY, ALARM * 5)

    [first] = sim.parts
    assert caught.value.sent_refs == [first.ref]
    assert first.text.startswith("(1/")


def test_a_slow_modem_within_the_timeout_works(sim: SimModem) -> None:
    sim.set_fault("slow", delay_s=0.1)
    sim.sms_delay_s = 0.5  # the network takes its time, within send_timeout_s

    with Modem(sim.port, timeout_s=1.0, send_timeout_s=2.0) as m:
        m.send_sms(DUTY, ALARM)

    assert sim.wait_for_messages(1)[0].text == ALARM


def test_a_modem_slower_than_the_timeout_is_reported_and_recovered(sim: SimModem,
                                                                    modem: Modem) -> None:
    sim.set_fault("slow", delay_s=3 * TIMEOUT)

    exc, took = timed(lambda: modem.send_sms(DUTY, ALARM))

    assert isinstance(exc, ModemTimeoutError)
    assert took < NO_ANSWER_BOUND
    # Its late answers must not be taken for the next command's.
    sim.set_fault("none")
    sim.wait_idle()
    modem.send_sms(DUTY, "第二条 " + ALARM)
    [message] = sim.wait_for_messages(1)
    assert message.text == "第二条 " + ALARM


def test_a_network_slower_than_the_send_timeout_is_reported(sim: SimModem, modem: Modem) -> None:
    sim.sms_delay_s = 5 * SEND_TIMEOUT

    exc, took = timed(lambda: modem.send_sms(DUTY, ALARM))

    assert isinstance(exc, ModemTimeoutError)
    assert exc.command == "AT+CMGS"
    assert "gave no result within 1 s" in str(exc) and "+86138****8000" in str(exc)
    assert DUTY not in str(exc)  # duty numbers stay out of logs and fault reasons
    assert took < 10 * TIMEOUT + SEND_TIMEOUT + SLACK


def test_a_missing_port_is_an_open_error(tmp_path: Path) -> None:
    with (Modem(str(tmp_path / "ttyUSB9"), timeout_s=TIMEOUT) as m,
          pytest.raises(ModemOpenError, match="does not exist: is the modem plugged in")):
        m.send_sms(DUTY, ALARM)


def test_a_port_held_by_another_program_is_an_open_error(sim: SimModem, modem: Modem) -> None:
    modem.open()
    with (Modem(sim.port, timeout_s=TIMEOUT) as other,
          pytest.raises(ModemOpenError, match="another program holds it")):
        other.check()


def test_an_unplugged_modem_is_reported_and_reopened_when_back(tmp_path: Path) -> None:
    workdir = tmp_path / "modem"
    with Modem(str(workdir / "modem"), timeout_s=TIMEOUT, send_timeout_s=SEND_TIMEOUT) as m:
        with SimModem(workdir) as sim:
            m.send_sms(DUTY, ALARM)
            assert sim.wait_for_messages(1)
        # Unplugged: socat and its pseudo-terminals are gone.
        exc, took = timed(lambda: m.send_sms(DUTY, ALARM))
        assert isinstance(exc, ModemError) and took < NO_ANSWER_BOUND
        with pytest.raises(ModemOpenError, match="does not exist"):
            m.check()
        # Plugged back in.
        with SimModem(workdir) as sim:
            m.send_sms(DUTY, ALARM)
            assert sim.wait_for_messages(1)[0].text == ALARM


# -- threads -------------------------------------------------------------------------------------


def test_concurrent_senders_do_not_interleave_their_series(sim: SimModem, modem: Modem) -> None:
    numbers = [f"+861390000000{i}" for i in range(4)]
    texts = {n: f"{n[-1]}号按钮 " + ALARM * 3 for n in numbers}
    errors: list[BaseException] = []

    def send(number: str) -> None:
        try:
            for _ in range(2):
                modem.send_sms(number, texts[number])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,), name=f"sender-{n}") for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    messages = sim.wait_for_messages(8)
    assert sorted((m.number, m.text) for m in messages) == sorted(
        (n, texts[n]) for n in numbers for _ in range(2))
    # Each series went out as one block: the parts list is the messages' parts in order.
    assert [p for m in messages for p in m.parts] == sim.parts


def test_close_from_another_thread_ends_a_send_in_progress(sim: SimModem) -> None:
    sim.sms_delay_s = 30.0  # the network never answers in time
    result: list[BaseException] = []
    slow = Modem(sim.port, timeout_s=TIMEOUT, send_timeout_s=60.0)

    def send() -> None:
        try:
            slow.send_sms(DUTY, ALARM)
        except BaseException as exc:
            result.append(exc)

    sender = threading.Thread(target=send, name="sender")
    sender.start()
    try:
        sim.wait_for_command("AT+CMGS")
        exc, took = timed(slow.close)
        sender.join(2 * TIMEOUT + SLACK)
    finally:
        slow.close()
        sender.join()

    assert exc is None and took < TIMEOUT + SLACK
    assert len(result) == 1 and isinstance(result[0], ModemClosedError)


def test_the_engine_thread_is_refused(modem: Modem) -> None:
    caught: list[BaseException] = []

    def engine() -> None:
        try:
            modem.send_sms(DUTY, ALARM)
        except BaseException as exc:
            caught.append(exc)

    t = threading.Thread(target=engine, name="engine")
    t.start()
    t.join()
    assert len(caught) == 1 and isinstance(caught[0], RuntimeError)
    assert "engine thread" in str(caught[0])


def test_nothing_is_left_open(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    with SimModem(tmp_path) as sim, Modem(sim.port, timeout_s=TIMEOUT) as m:
        m.send_sms(DUTY, ALARM)
        sim.wait_for_messages(1)
    assert set(os.listdir("/proc/self/fd")) <= before
    assert not (tmp_path / "modem").exists()


# -- the shell tool --------------------------------------------------------------------------------


def test_shell_tool_checks_and_sends(sim: SimModem, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", sim.port, "--json", "--timeout", str(TIMEOUT)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is True and report["signal_dbm"] == -73

    assert main(["send", sim.port, DUTY, ALARM]) == 0
    assert sim.wait_for_messages(1)[0].text == ALARM

    sim.set_fault("silent")
    assert main(["check", sim.port, "--timeout", str(TIMEOUT)]) == 2
    assert "does not answer AT" in capsys.readouterr().err


# -- the encoding itself -------------------------------------------------------------------------

any_text = st.text(min_size=1, max_size=600)


@settings(max_examples=400, deadline=None)
@given(text=any_text, max_parts=st.integers(min_value=1, max_value=12))
def test_any_text_splits_into_parts_that_fit_and_round_trip(text: str, max_parts: int) -> None:
    parts = split_sms(text, max_parts)

    assert 1 <= len(parts) <= max_parts
    for part in parts:
        assert utf16_units(part) <= SMS_UCS2_UNITS
        assert len(bytes.fromhex(encode_ucs2(part))) <= 140
        assert decode_ucs2(encode_ucs2(part)) == part  # no pair was cut in two
    joined = join_sms(parts)
    if joined == text:
        return
    # Only a text too long for max_parts may differ: it is then cut, ending in "…".
    assert joined.endswith(ELLIPSIS) and text.startswith(joined[:-1])
    assert utf16_units(text) > SMS_UCS2_UNITS
    assert len(parts) == max_parts


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=300))
def test_text_that_fits_the_budget_is_never_cut(text: str) -> None:
    parts = split_sms(text, max_parts=10)  # 10 parts hold at least 10 * 63 units
    assert join_sms(parts) == text
    assert len(parts) == 1 or all(p.startswith(f"({i}/{len(parts)}) ")
                                  for i, p in enumerate(parts, start=1))


@given(text=st.text())
def test_ucs2_encoding_round_trips(text: str) -> None:
    encoded = encode_ucs2(text)
    assert len(encoded) == 4 * utf16_units(text)
    assert decode_ucs2(encoded) == text
    assert encoded == text.encode("utf-16-be").hex().upper()


def test_split_uses_the_fewest_parts_and_fills_them() -> None:
    assert split_sms("a" * 70) == ["a" * 70]
    parts = split_sms("a" * 71)
    assert parts == ["(1/2) " + "a" * 64, "(2/2) " + "a" * 7]
    # A surrogate pair that would straddle the limit moves whole to the next part.
    parts = split_sms("a" * 63 + "😀" + "b" * 10)
    assert parts[0] == "(1/2) " + "a" * 63 and parts[1].startswith("(2/2) 😀")


def test_lone_surrogates_become_replacement_characters() -> None:
    assert decode_ucs2(encode_ucs2("报\ud800警")) == "报\ufffd警"


@pytest.mark.parametrize(("raw", "clean"), [
    ("+86 138-0013-8000", "+8613800138000"), ("(010) 6552.9988", "01065529988"),
    ("110", "110")])
def test_numbers_are_normalised(raw: str, clean: str) -> None:
    assert normalize_number(raw) == clean


@pytest.mark.parametrize("raw", ["", "+", "12", "+86-138-0013-800a", "1" * 21, "++8613800138000"])
def test_malformed_numbers_are_refused(raw: str) -> None:
    with pytest.raises(SmsInputError, match="not usable"):
        normalize_number(raw)


def test_numbers_are_masked_in_logs() -> None:
    assert mask_number(DUTY) == "+86138****8000"
    assert mask_number("110") == "***10"


def test_signal_levels_map_to_dbm() -> None:
    assert ModemStatus("/dev/ttyUSB2", "ready", "home", 31, 0).signal_dbm == -51
    assert ModemStatus("/dev/ttyUSB2", "ready", "home", 0, 0).signal_dbm == -113
    assert ModemStatus("/dev/ttyUSB2", "ready", "home", None, None).signal_dbm is None
