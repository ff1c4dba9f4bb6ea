"""`alarmgw selftest`: every part the gateway depends on, checked for real, one line each.

Each check returns PASS, FAIL (with what to check) or SKIP (with why). The
checks are a list: a feature adds its own with `register_check` (the Modbus
driver one per unit, the cameras one per camera), and `run_selftest` runs
them in order. Nothing here changes the running service: the store check
writes a scratch file beside the live database, never into it, and the
broker check connects with its own client id (the configured one plus
"-selftest"), so that it does not take over the service's session.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import ControlError, GatewayError, ServiceNotRunningError

Verdict = Literal["PASS", "FAIL", "SKIP"]

#: Appended to the configured client id by the broker check.
CLIENT_ID_SUFFIX = "-selftest"
#: Least free space on the state directory before the store check fails, in bytes.
MIN_FREE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class CheckResult:
    """One line of the selftest."""

    name: str
    verdict: Verdict
    detail: str
    """What was found."""
    hint: str = ""
    """What to check, for a FAIL."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SelftestContext:
    """What every check may use."""

    config: Config
    service: dict[str, Any] | None
    """The running service's status document; None when it is not running."""
    service_error: str | None
    """Why the service could not be asked, when it could not."""
    service_not_running: bool = False
    """Whether nothing answers on the control socket (not: it answered badly)."""


CheckFn = Callable[[SelftestContext], Iterable[CheckResult]]
_CHECKS: list[tuple[str, CheckFn]] = []


def register_check(name: str, fn: CheckFn) -> None:
    """Add a check, run after those already registered; `fn` yields one or more results."""
    _CHECKS.append((name, fn))


def checks() -> list[tuple[str, CheckFn]]:
    return list(_CHECKS)


def run_selftest(ctx: SelftestContext) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name, fn in _CHECKS:
        try:
            results.extend(fn(ctx))
        except Exception as exc:
            results.append(CheckResult(name, "FAIL", f"the check itself failed: {exc!r}",
                                       "report this as a bug, with `alarmgw logs`"))
    return results


# -- the core checks ------------------------------------------------------------------------

def check_service(ctx: SelftestContext) -> Iterable[CheckResult]:
    st = ctx.service
    if st is None:
        yield CheckResult("service", "FAIL", f"not running: {ctx.service_error}",
                          "start it with `systemctl start alarmgw`; `alarmgw logs` shows why it"
                          " stopped")
        return
    yield CheckResult("service", "PASS", f"running, pid {st['pid']}, up {st['uptime_s']:.0f} s,"
                      f" version {st['version']}")


def check_store(ctx: SelftestContext) -> Iterable[CheckResult]:
    from gateway.service import store_path
    from gateway.store import read_queue_offline

    state_dir = ctx.config.gateway.state_dir
    scratch = state_dir / f".selftest-{os.getpid()}.tmp"
    hint = (f"check that {state_dir} exists, is on a writable filesystem and belongs to the"
            " service user (systemd's StateDirectory=alarmgw makes it so), and that the SD card"
            " is not read-only (dmesg)")
    try:
        t0 = time.monotonic()
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            scratch.unlink(missing_ok=True)
        fsync_ms = (time.monotonic() - t0) * 1000
    except OSError as exc:
        yield CheckResult("store", "FAIL", f"cannot write and fsync a file in {state_dir}:"
                          f" {exc.strerror or exc}", hint)
        return
    free = os.statvfs(state_dir)
    free_bytes = free.f_bavail * free.f_frsize
    if free_bytes < MIN_FREE_BYTES:
        yield CheckResult("store", "FAIL", f"{state_dir} is writable but only"
                          f" {free_bytes / 1e6:.1f} MB are free",
                          "free space on the SD card (journalctl --vacuum-size=50M, old files);"
                          " alarms are kept regardless, snapshots give way")
        return
    store = store_path(ctx.config)
    detail = (f"{state_dir} writable (4 KiB write + fsync in {fsync_ms:.0f} ms),"
              f" {free_bytes / 1e6:.0f} MB free")
    if store.exists():
        try:
            stats, _ = read_queue_offline(store, 0)
        except GatewayError as exc:
            yield CheckResult("store", "FAIL", f"{store} cannot be read: {exc}",
                              "stop the service and move the file aside if it is corrupt"
                              " (events still in it are lost)")
            return
        detail += f"; {store.name} readable, {stats.waiting} waiting, next seq {stats.next_seq}"
    else:
        detail += f"; {store.name} not created yet (the service creates it)"
    yield CheckResult("store", "PASS", detail)


def probe_broker(config: Config, timeout_s: float | None = None) -> CheckResult:
    """Connect to the broker as the service would (TLS handshake, MQTT CONNECT with the
    configured credentials) and wait for its CONNACK, under a client id of its own."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from gateway.uplink.tls import describe_connect_error, make_tls_context

    b = config.broker
    where = f"{b.host}:{b.port}"
    client_id = b.client_id + CLIENT_ID_SUFFIX
    timeout = timeout_s if timeout_s is not None else max(b.connect_timeout_s, 2.0)
    try:
        ctx = make_tls_context(b)
    except GatewayError as exc:
        return CheckResult("broker", "FAIL", str(exc), "check the files under [broker.tls]")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.connect_timeout = timeout
    if b.username is not None:
        client.username_pw_set(b.username, b.password)
    if ctx is not None:
        client.tls_set_context(ctx)
    got: dict[str, Any] = {}

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                   props: Properties | None) -> None:
        got["rc"] = rc
        sock = c.socket()
        if isinstance(sock, ssl.SSLSocket):
            cert = sock.getpeercert() or {}
            subject = {str(r[0][0]): str(r[0][1]) for r in cert.get("subject", ()) if r}
            got["tls"] = f"{sock.version()} peer {subject.get('commonName')}"

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    t0 = time.monotonic()
    try:
        try:
            client.connect(b.host, b.port, keepalive=max(b.keepalive_s, 5), clean_start=True,
                           properties=props)
        except Exception as exc:
            return CheckResult("broker", "FAIL",
                               describe_connect_error(exc, where, tls=ctx is not None),
                               _clock_hint(config) if _is_certificate_time_error(exc)
                               else _broker_hint(config))
        deadline = time.monotonic() + timeout
        while "rc" not in got and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
        ms = (time.monotonic() - t0) * 1000
        rc = got.get("rc")
        if rc is None:
            why = ("closed the connection before CONNACK" if client.socket() is None
                   else f"sent no CONNACK within {timeout:.0f} s")
            cert_hint = (" (with mutual TLS this is how a refused client certificate looks:"
                         " check broker.tls.cert and broker.tls.key)") if ctx is not None else ""
            return CheckResult("broker", "FAIL", f"broker {where} {why}{cert_hint}",
                               _broker_hint(config))
        if rc.is_failure:
            return CheckResult("broker", "FAIL", f"broker {where} refused client id {client_id}:"
                               f" {rc}", "check broker.username and the password, the client"
                               " certificate and the platform's ACL for this gateway")
        tls = got.get("tls") or ("PLAINTEXT" if ctx is None else "TLS")
        who = f" as {b.username}" if b.username else ""
        return CheckResult("broker", "PASS", f"{where} {tls}, CONNACK {rc} in {ms:.0f} ms"
                           f" (client id {client_id}{who})")
    finally:
        try:
            if client.is_connected():
                client.disconnect()
                client.loop(timeout=0.1)
        except Exception:
            pass
        sock = client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _broker_hint(config: Config) -> str:
    b = config.broker
    return (f"check that the network reaches {b.host} port {b.port} (ping, `nc -vz {b.host}"
            f" {b.port}`), that broker.host and broker.port are right, the firewall, and for"
            " TLS that broker.tls.ca signs the broker's certificate")


#: OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID and X509_V_ERR_CERT_HAS_EXPIRED.
_CERT_TIME_ERRORS = (9, 10)


def _is_certificate_time_error(exc: BaseException) -> bool:
    """Whether a TLS verification failed on a certificate's dates (expired, not yet valid):
    with a Pi's clock, the clock is the first suspect."""
    return isinstance(exc, ssl.SSLCertVerificationError) and (
        exc.verify_code in _CERT_TIME_ERRORS
        or any(w in (exc.verify_message or "") for w in ("expired", "not yet valid")))


def _clock_hint(config: Config) -> str:
    b = config.broker
    return ("check the gateway's clock first: `timedatectl` (a Pi has no real-time clock:"
            " after a power cut without network its time is wrong until NTP, UDP port 123,"
            " syncs it); if the clock is right, the broker's certificate is out of its dates:"
            f" `openssl s_client -connect {b.host}:{b.port} </dev/null | openssl x509 -noout"
            " -dates`, and ask the platform operator to renew it")


def check_broker(ctx: SelftestContext) -> Iterable[CheckResult]:
    yield probe_broker(ctx.config)


def check_uplink(ctx: SelftestContext) -> Iterable[CheckResult]:
    st = ctx.service
    if st is None:
        yield CheckResult("uplink", "SKIP", "the service is not running")
        return
    up = st.get("uplink") or {}
    q = st.get("queue") or {}
    if up.get("connected"):
        yield CheckResult("uplink", "PASS", f"the service is connected to {up.get('broker')}"
                          f" since {up.get('since')}; {q.get('waiting', '?')} waiting")
    else:
        yield CheckResult("uplink", "FAIL", f"the service's uplink to {up.get('broker')} is"
                          f" DOWN since {up.get('since') or 'start'}: {up.get('last_error')};"
                          f" {q.get('waiting', '?')} waiting",
                          "see the broker line above and `alarmgw logs`")


def check_inputs(ctx: SelftestContext) -> Iterable[CheckResult]:
    st = ctx.service
    if st is None:
        yield CheckResult("inputs", "SKIP", "the service is not running (it holds the pins)")
        return
    points = st.get("inputs") or []
    unknown = [p["id"] for p in points if p.get("active") is None]
    active = [p["id"] for p in points if p.get("active")]
    if unknown:
        yield CheckResult("inputs", "FAIL", f"no reading yet from {', '.join(unknown)}",
                          "check `alarmgw logs` for GPIO errors")
    elif active:
        yield CheckResult("inputs", "FAIL", f"ACTIVE now: {', '.join(active)}",
                          "reset a latched button with its key; an NC contact or tamper loop"
                          " that reads active is open: check its wiring (`alarmgw inputs"
                          " --watch` while you work on it)")
    else:
        yield CheckResult("inputs", "PASS", f"{len(points)} inputs read, all normal")


def check_faults(ctx: SelftestContext) -> Iterable[CheckResult]:
    st = ctx.service
    if st is None:
        yield CheckResult("faults", "SKIP", "the service is not running")
        return
    faults = st.get("faults") or []
    if faults:
        yield CheckResult("faults", "FAIL", "; ".join(
            f"{f['device']} ({f.get('source')}): {f.get('reason')}" for f in faults),
            "each fault says what to check; it clears by itself once the device recovers")
    else:
        yield CheckResult("faults", "PASS", "no device faults")


def check_clock(ctx: SelftestContext) -> Iterable[CheckResult]:
    clock = Clock(ctx.config.clock.sync_source)
    method = clock.sync_method()
    if clock.is_synced():
        yield CheckResult("clock", "PASS", f"synced ({method})")
    else:
        yield CheckResult("clock", "FAIL", f"NOT synced ({method}): event times are guesses",
                          "check `timedatectl`, that the network reaches an NTP server (UDP port"
                          " 123) and the servers in /etc/systemd/timesyncd.conf")


for _name, _fn in (("service", check_service), ("store", check_store),
                   ("broker", check_broker), ("uplink", check_uplink),
                   ("inputs", check_inputs), ("faults", check_faults),
                   ("clock", check_clock)):
    register_check(_name, _fn)


def context_for(config: Config, ask: Callable[[dict[str, Any]], Any]) -> SelftestContext:
    """Build the context, asking the running service (through `ask`) for its status."""
    try:
        return SelftestContext(config, ask({"cmd": "status"}), None)
    except ServiceNotRunningError as exc:
        return SelftestContext(config, None, str(exc), service_not_running=True)
    except ControlError as exc:
        return SelftestContext(config, None, f"it does not answer properly: {exc}")


def config_failure(problem: str) -> list[CheckResult]:
    """The selftest of a config that does not load: that, and every other check skipped."""
    results = [CheckResult("config", "FAIL", problem,
                           "fix the key named, then `alarmgw check-config`")]
    results += [CheckResult(name, "SKIP", "needs a valid config") for name, _ in _CHECKS]
    return results
