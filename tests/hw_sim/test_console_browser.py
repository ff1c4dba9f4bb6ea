"""The duty officer's web console in a real headless Chromium, against a real Mosquitto, a
real gateway on the simulator and two ingest worker processes on one `$share` group.

One browser, one broker and one console for the module; each test starts what else it
needs (a gateway, a raw publisher) and waits on what the page shows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from gw import DEFAULT_INPUTS, GatewayProcess, InProcessGateway, write_config
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hw_sim.broker import Mosquitto
from hw_sim.console.app import WebConsole

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = bytes(range(32))
SITE = "test-school"
#: Upper bound for anything that takes milliseconds on loopback, in seconds.
WAIT = 20.0
#: The issue's promise: a press is on the page within this, in seconds.
PROMISE_S = 2.0
PRESSES = 200
T = TypeVar("T")

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("the browser tests need Debian's chromium and chromium-driver"
                " (scripts/setup installs them: apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

#: Every card and line on the page, as plain data (no stale element handles).
CARDS_JS = """
return Array.from(document.querySelectorAll('article.card, div.line')).map(n => ({
  id: n.dataset.eventId, gateway: n.dataset.gateway, type: n.dataset.type,
  tab: n.closest('section').id,
  name: (n.querySelector('.point-name') || {}).textContent,
  loaded: Array.from(n.querySelectorAll('img'))
    .filter(i => i.complete && i.naturalWidth > 0).length,
  captions: Array.from(n.querySelectorAll('figcaption')).map(f => f.textContent),
  failed: Array.from(n.querySelectorAll('.failed')).map(f => [f.dataset.reason, f.textContent]),
  bad: Array.from(n.querySelectorAll('.bad')).map(f => f.textContent),
  ack: (n.querySelector('.ack-status') || {}).textContent || '',
  unsynced: !!n.querySelector('.unsynced'),
  elementsInTitle: n.querySelector('h3') ? n.querySelector('h3 .point-name').children.length : 0,
}));
"""
GATEWAYS_JS = """
return Array.from(document.querySelectorAll('[data-gateway-card]')).map(n => ({
  gateway: n.dataset.gatewayCard, state: n.dataset.state, text: n.textContent}));
"""


def artefact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("ALARMGW_ARTEFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path_factory.mktemp("broker")) as m:
        yield m


@pytest.fixture(scope="module")
def web(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebConsole]:
    db = tmp_path_factory.mktemp("console") / "console.db"
    with WebConsole(broker.host, broker.port, db=db, command_key=KEY, workers=2) as console:
        yield console


@pytest.fixture(scope="module")
def browser(web: WebConsole) -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="alarmgw-chromium-")
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000",
                "--lang=zh-CN", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=opts)
    try:
        driver.get(web.url)
        WebDriverWait(driver, WAIT).until(
            lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def cards(driver: WebDriver, gateway: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = driver.execute_script(CARDS_JS)
    return [c for c in found if gateway is None or c["gateway"] == gateway]


def wait_page(driver: WebDriver, what: Callable[[WebDriver], Any], timeout: float = WAIT,
              message: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(what, message)


def when(value: T, ok: Callable[[T], bool]) -> T | None:
    """`value` if `ok(value)`, else None (for a wait's condition)."""
    return value if ok(value) else None


def school_config(directory: Path, broker_port: int, gateway: str) -> Path:
    """A gateway with two simulated cameras (one with a pre-alarm ring), an ack lamp and
    signed commands."""
    cams = [{"id": "gate-cam", "name": "南门摄像机", "driver": "sim", "username": "admin",
             "password": "sim-pass", "width": 320, "height": 180, "shots": 1,
             "interval_s": 0.5, "pre_frames": 2, "pre_interval_s": 0.2, "timeout_s": 2.0},
            {"id": "yard-cam", "name": "操场摄像机", "driver": "sim", "username": "admin",
             "password": "sim-pass", "width": 160, "height": 90, "shots": 1,
             "interval_s": 0.5, "timeout_s": 2.0}]
    inputs = [dict(DEFAULT_INPUTS[0], cameras=["gate-cam"]), DEFAULT_INPUTS[1],
              {"id": "hall-panic", "name": "礼堂一键报警", "location": "Hall", "kind": "panic",
               "gpio": 5, "contact": "NO", "pull": "up", "cameras": ["yard-cam"]}]
    cfg = write_config(directory, broker_port=broker_port, debounce_ms=0, inputs=inputs,
                       cameras=cams, gateway=gateway, health_interval_s=1.0)
    key_file = directory / "k"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    with cfg.open("a") as f:
        f.write("\n".join(["", "[[outputs]]", 'id = "ack-lamp"', 'name = "接警确认灯"',
                           "gpio = 24", "", "[commands]", f'key_file = "{key_file}"',
                           'ack_lamp = "ack-lamp"', "ack_lamp_s = 60"]) + "\n")
    return cfg


@pytest.fixture
def school(tmp_path: Path, broker: Mosquitto) -> Iterator[InProcessGateway]:
    with InProcessGateway(school_config(tmp_path / "gw", broker.port, "gw-test")) as gw:
        yield gw


def gateway_online(driver: WebDriver, gateway: str) -> Callable[[WebDriver], bool]:
    def check(d: WebDriver) -> bool:
        return any(g["gateway"] == gateway and g["state"] == "online"
                   for g in d.execute_script(GATEWAYS_JS))
    return check


def test_a_press_is_on_the_page_within_2_s_with_its_name_and_a_picture(
        browser: WebDriver, school: InProcessGateway,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    gw = f"{SITE}/gw-test"
    wait_page(browser, gateway_online(browser, gw), WAIT, "the gateway is not online")
    assert school.panel is not None
    # The pre-alarm ring has its frames (the camera is polled every 0.2 s).
    cams = school.service.cameras
    assert cams is not None
    sim = cams.sims["gate-cam"]
    assert sim.wait_for(lambda c: c.pictures >= 2, WAIT)
    sounds_before = browser.execute_script("return window.alarmgwConsole.sounds")

    school.panel.press("gate-panic")
    start = time.monotonic()

    def shown(d: WebDriver) -> dict[str, Any] | None:
        return next((c for c in cards(d, gw) if c["type"] == "alarm"
                     and c["name"] == "南门门卫室一键报警" and c["loaded"] >= 1), None)

    card = wait_page(browser, shown, PROMISE_S, "no card with a picture within 2 s")
    assert time.monotonic() - start <= PROMISE_S
    assert card["tab"] == "alarms"
    # Every picture the alarm listed: two from before the press, one after it.
    card = wait_page(browser, lambda d: next(
        (c for c in cards(d, gw) if c["id"] == card["id"] and c["loaded"] == 3), None))
    assert sorted(c.split(" ·")[0] for c in card["captions"]) == [
        "报警前 pre-alarm 1", "报警前 pre-alarm 2", "报警后 post-alarm 1"]
    assert "新警情 New alarm" in browser.title
    assert browser.execute_script("return window.alarmgwConsole.sounds") == sounds_before + 1
    shot = artefact_dir(tmp_path_factory) / "console.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    school.panel.release("gate-panic")


def test_acknowledge_lights_the_ack_lamp_and_the_card_says_who(
        browser: WebDriver, school: InProcessGateway) -> None:
    gw = f"{SITE}/gw-test"
    wait_page(browser, gateway_online(browser, gw))
    assert school.panel is not None and school.service.outputs is not None
    school.panel.press("office-panic")
    card = wait_page(browser, lambda d: next(
        (c for c in cards(d, gw) if c["type"] == "alarm" and c["name"] == "行政楼值班室"), None))
    assert school.service.outputs.status_of("ack-lamp")["on"] is False
    name = browser.find_element(By.ID, "officer")
    name.clear()
    name.send_keys("张警官")
    browser.find_element(By.CSS_SELECTOR,
                         f'article[data-event-id="{card["id"]}"] .ack-button').click()
    card = wait_page(browser, lambda d: next(
        (c for c in cards(d, gw) if c["id"] == card["id"] and "acknowledged by" in c["ack"]),
        None))
    assert "已确认 acknowledged by 张警官" in card["ack"]
    assert "round trip" in card["ack"] and "ack-lamp 已亮 confirmed on" in card["ack"]
    # The simulated lamp's GPIO pin is on.
    assert school.service.outputs.status_of("ack-lamp")["on"] is True
    school.panel.release("office-panic")


def test_a_failing_camera_shows_the_failed_shot_with_its_reason(
        browser: WebDriver, school: InProcessGateway) -> None:
    gw = f"{SITE}/gw-test"
    assert school.panel is not None and school.service.cameras is not None
    school.service.cameras.sims["yard-cam"].set_mode("500")
    school.panel.press("hall-panic")
    card = wait_page(browser, lambda d: next(
        (c for c in cards(d, gw) if c["name"] == "礼堂一键报警" and c["failed"]), None))
    ((reason, text),) = card["failed"]
    assert reason == "http_error"
    assert "抓拍失败 failed: http_error" in text and "500" in text
    assert card["loaded"] == 0
    school.panel.release("hall-panic")


def test_a_gateway_killed_with_sigkill_turns_offline(
        browser: WebDriver, broker: Mosquitto, tmp_path: Path) -> None:
    gw = f"{SITE}/gw-kill"
    proc = GatewayProcess(write_config(tmp_path / "gw", broker_port=broker.port,
                                       gateway="gw-kill"))
    try:
        proc.start()
        wait_page(browser, gateway_online(browser, gw))
        proc.kill()
        (row,) = wait_page(browser, lambda d: [
            g for g in d.execute_script(GATEWAYS_JS)
            if g["gateway"] == gw and g["state"] == "offline"])
        assert "离线 offline" in row["text"] and "connection lost" in row["text"]
    finally:
        proc.stop()


def _publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue-gateway",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _event(gateway: str, seq: int, etype: str, name: str) -> dict[str, Any]:
    return {"v": 1, "id": f"{gateway}-{seq}", "seq": seq, "type": etype, "site": SITE,
            "gateway": gateway, "point": {"id": f"p{seq}", "name": name, "location": "<i>L</i>",
                                          "kind": "panic"},
            "source": "gpio:17", "occurred_at": "2026-11-28T15:48:02.804Z",
            "time_synced": False, "mono_ns": 1, "boot_id": "b",
            "snapshots": [{"camera": "cam", "name": "<b>cam</b>", "pre": 0, "post": 1}]}


def _publish(client: mqtt.Client, topic: str, payload: bytes,
             user: list[tuple[str, str]] | None = None) -> None:
    props = None
    if user:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = user
    client.publish(topic, payload, qos=1, properties=props).wait_for_publish(WAIT)


def test_bad_input_is_shown_escaped_and_neither_page_nor_server_falls_over(
        browser: WebDriver, broker: Mosquitto, web: WebConsole) -> None:
    gw, root = f"{SITE}/gw-rogue", f"alarmgw/v1/{SITE}/gw-rogue"
    html = '<img src="x" onerror="window.pwned=1"><b class="injected">bold</b>'
    long_name = "长" * 10 * 1024
    client = _publisher(broker)
    try:
        _publish(client, f"{root}/event", b"{not json")
        _publish(client, f"{root}/event", json.dumps(_event("gw-rogue", 1, "alarm", html))
                 .encode())
        _publish(client, f"{root}/event", json.dumps(_event("gw-rogue", 2, "alarm", long_name),
                                                     ensure_ascii=False).encode())
        _publish(client, f"{root}/snapshot/gw-rogue-1/cam", b"<html>not a picture</html>",
                 [("phase", "post"), ("shot", "1")])
        _publish(client, f"{root}/event", json.dumps(_event("gw-rogue", 3, "alarm", "正常"))
                 .encode())
        by_id = wait_page(browser, lambda d: when(
            {c["id"]: c for c in cards(d, gw)},
            lambda m: len(m) == 3 and bool(m["gw-rogue-1"]["bad"])))
    finally:
        client.disconnect()
        client.loop_stop()
    html_card = by_id["gw-rogue-1"]
    assert html_card["name"] == html  # shown as text
    assert html_card["elementsInTitle"] == 0
    assert browser.execute_script("return window.pwned === undefined"
                                  " && !document.querySelector('.injected')"
                                  " && !document.querySelector('img[src=\"x\"]')")
    assert html_card["bad"] == ["不是JPEG图片 not a JPEG (26 bytes)"]
    assert html_card["unsynced"] is True
    assert by_id["gw-rogue-2"]["name"].startswith("长" * 100)
    assert by_id["gw-rogue-3"]["name"] == "正常"
    wait_page(browser, lambda d: "refused as malformed: 1" in d.find_element(
        By.ID, "rejects").text)
    # The server still answers.
    with urllib.request.urlopen(f"{web.url}api/state", timeout=WAIT) as resp:
        assert resp.status == 200


def test_drills_and_inspection_reports_have_their_own_tab(
        browser: WebDriver, broker: Mosquitto) -> None:
    gw, root = f"{SITE}/gw-drill", f"alarmgw/v1/{SITE}/gw-drill"
    client = _publisher(broker)
    try:
        for seq, etype in ((1, "drill"), (2, "inspection_report")):
            doc = _event("gw-drill", seq, etype, f"{etype} 南门")
            doc["snapshots"] = []
            _publish(client, f"{root}/event", json.dumps(doc, ensure_ascii=False).encode())
        found = wait_page(browser, lambda d: when(cards(d, gw), lambda c: len(c) == 2))
    finally:
        client.disconnect()
        client.loop_stop()
    assert {c["type"]: c["tab"] for c in found} == {"drill": "drills",
                                                     "inspection_report": "drills"}
    browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="drills"]').click()
    assert browser.find_element(By.ID, "drills").is_displayed()
    assert not browser.find_element(By.ID, "alarms").is_displayed()
    browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="alarms"]').click()


def _press_and_release(gw: InProcessGateway, point: str, n: int,
                       at: dict[int, Callable[[], None]]) -> list[str]:
    """Press and release `point` n times, each time until the engine has committed it;
    returns the ids of the alarms committed. Calls `at[i]` before press i."""
    assert gw.panel is not None and gw.service.engine is not None
    engine = gw.service.engine
    ids: list[str] = []

    def last() -> dict[str, Any]:
        (status,) = [p for p in engine.call(engine.points_status).result(10) if p["id"] == point]
        return status["last_event"] or {}

    for i in range(n):
        if i in at:
            at[i]()
        for active, etype in ((True, "alarm"), (False, "restore")):
            before = last().get("id")
            (gw.panel.press if active else gw.panel.release)(point)
            deadline = time.monotonic() + WAIT
            while not (last().get("type") == etype and last().get("id") != before):
                assert time.monotonic() < deadline, f"press {i}: no {etype} committed"
                time.sleep(0.002)  # the engine gives no signal from outside: look again
            if active:
                ids.append(str(last()["id"]))
    return ids


def test_two_ingest_workers_one_killed_every_alarm_on_the_page_exactly_once(
        browser: WebDriver, broker: Mosquitto, web: WebConsole, tmp_path: Path) -> None:
    """A console of its own (two worker processes on `$share/kill-test`). One worker is
    stopped (SIGSTOP: what the broker gives it stays unacknowledged), then SIGKILLed; the
    pool starts it again with the same client id and the broker sends it what it had."""
    gw = f"{SITE}/gw-many"
    cfg = write_config(tmp_path / "gw", broker_port=broker.port, debounce_ms=0,
                       gateway="gw-many", inputs=[DEFAULT_INPUTS[0]])
    with WebConsole(broker.host, broker.port, db=tmp_path / "console.db", workers=2,
                    share_group="kill-test") as console:
        assert console.pool is not None and console.record is not None
        pool, record = console.pool, console.record
        victim = pool.pid(0)
        main_page = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(console.url)
        try:
            with InProcessGateway(cfg) as gateway:
                ids = _press_and_release(gateway, "gate-panic", PRESSES, {
                    PRESSES // 3: lambda: os.kill(victim, signal.SIGSTOP),
                    PRESSES // 2: lambda: os.kill(victim, signal.SIGKILL)})
                assert len(set(ids)) == PRESSES
                assert pool.wait_restarts(1, WAIT)
                assert pool.pid(0) != victim
                deadline = time.monotonic() + WAIT * 2
                while record.event_count(gw, "alarm") < PRESSES:
                    assert time.monotonic() < deadline, (
                        f"{record.event_count(gw, 'alarm')} of {PRESSES} alarms recorded")
                    time.sleep(0.05)  # the workers write from other processes: look again
            shown = wait_page(browser, lambda d: when(
                [c["id"] for c in cards(d, gw) if c["type"] == "alarm"],
                lambda c: len(c) >= PRESSES), WAIT * 2, "the page never showed every alarm")
            assert len(shown) == PRESSES  # exactly once each
            assert set(shown) == set(ids)  # none missing
            assert sorted(record.event_ids(gw, "alarm")) == sorted(ids)
            deliveries = record.deliveries()
            print("deliveries per worker:", deliveries)
            # Mosquitto kept what it had sent the dead worker in its session and sent it
            # again (DUP) to the worker restarted with the same client id.
            assert deliveries[pool.ids[0]]["redelivered"] > 0
        finally:
            browser.close()
            browser.switch_to.window(main_page)
