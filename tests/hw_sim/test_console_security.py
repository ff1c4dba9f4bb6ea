"""The web console is secure by default: loopback only, a password for anything else,
no answer to a foreign Host (DNS rebinding), no POST from another origin, and a strict
Content-Security-Policy on every response."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gw import REPO

from hw_sim.console.record import Record
from hw_sim.console.web import ConsoleRefused, ConsoleServer, check_bind

WAIT = 20.0


@pytest.fixture
def record(tmp_path: Path) -> Iterator[Record]:
    with Record(tmp_path / "console.db") as r:
        r.add_event("s/g", {"v": 1, "id": "e1", "seq": 1, "type": "alarm",
                            "point": {"id": "p", "name": "南门"}})
        yield r


def request(server: ConsoleServer, method: str, path: str, *, host: str | None = None,
            headers: dict[str, str] | None = None, body: bytes | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{server.port}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_a_non_loopback_address_is_refused_without_allow_remote_and_a_password() -> None:
    assert check_bind("127.0.0.1", allow_remote=False, password=None) is True
    assert check_bind("localhost", allow_remote=False, password=None) is True
    with pytest.raises(ConsoleRefused, match="loopback only unless --web-allow-remote"):
        check_bind("0.0.0.0", allow_remote=False, password=None)
    with pytest.raises(ConsoleRefused, match="needs a password"):
        check_bind("0.0.0.0", allow_remote=True, password=None)
    assert check_bind("0.0.0.0", allow_remote=True, password="s3cret") is False


def test_the_command_line_refuses_a_public_address() -> None:
    res = subprocess.run([sys.executable, "-m", "hw_sim.platform", "--web", "0.0.0.0:0"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "loopback only unless --web-allow-remote" in res.stderr


def test_a_loopback_console_answers_only_its_own_host_names_with_strict_headers(
        record: Record) -> None:
    with ConsoleServer(record, None) as server:
        status, headers, body = request(server, "GET", "/")
        assert status == 200 and b"/static/console.js" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert request(server, "GET", "/", host=f"localhost:{server.port}")[0] == 200
        # A name an attacker's DNS points at 127.0.0.1.
        assert request(server, "GET", "/api/state", host=f"evil.example:{server.port}")[0] == 421
        assert request(server, "GET", "/static/../record.py")[0] == 404


def test_an_acknowledgement_needs_the_console_header_json_and_a_command_key(
        record: Record) -> None:
    body = json.dumps({"event_id": "e1", "operator": "张警官"}).encode()
    ok_headers = {"Content-Type": "application/json", "X-Alarmgw-Console": "1"}
    with ConsoleServer(record, None) as server:
        # A form posted from another site's page carries neither.
        assert request(server, "POST", "/api/ack", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded"})[0] == 403
        assert request(server, "POST", "/api/ack", body=body, headers={
            **ok_headers, "Origin": "http://evil.example"})[0] == 403
        status, _, answer = request(server, "POST", "/api/ack", body=body, headers=ok_headers)
        assert status == 503 and b"no command key" in answer
        bad = json.dumps({"event_id": "e1", "operator": "x" * 65}).encode()
        assert request(server, "POST", "/api/ack", body=bad, headers=ok_headers)[0] == 400
        unknown = json.dumps({"event_id": "nope", "operator": "张"}).encode()
        assert request(server, "POST", "/api/ack", body=unknown, headers=ok_headers)[0] == 404


def test_with_a_password_every_request_needs_it(record: Record) -> None:
    def auth(password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"duty:{password}".encode())
                .decode()}

    with ConsoleServer(record, None, password="s3cret") as server:
        status, headers, _ = request(server, "GET", "/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        assert request(server, "GET", "/api/state", headers=auth("wrong"))[0] == 401
        status, _, body = request(server, "GET", "/api/state", headers=auth("s3cret"))
        assert status == 200 and json.loads(body)["cards"][0]["id"] == "e1"
