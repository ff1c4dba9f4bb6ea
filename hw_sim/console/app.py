"""The whole web console in one object: the record, its ingest, the command sender, the server.

`WebConsole` starts them in order and stops them in reverse. Ingest runs in this
process (one worker) or, with `workers` > 0, as that many worker processes on one
`$share/GROUP/...` subscription (`ingest.WorkerPool`), all writing the same record.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path
from typing import Any

from hw_sim.console.ingest import IngestWorker, WorkerPool
from hw_sim.console.record import Record
from hw_sim.console.web import Commander, ConsoleServer, check_bind

log = logging.getLogger(__name__)

#: The share group of the ingest workers unless one is given.
DEFAULT_GROUP = "alarmgw-console"


class WebConsole:
    """Record + ingest + commands + web server. `start()` returns the page's URL."""

    def __init__(self, broker_host: str, broker_port: int, *, db: Path | None = None,
                 web_host: str = "127.0.0.1", web_port: int = 0, allow_remote: bool = False,
                 password: str | None = None, command_key: bytes | None = None,
                 workers: int = 0, share_group: str | None = None,
                 client_id: str = "alarmgw-console-ingest",
                 tls: dict[str, Any] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """`db`: the record (a fresh temporary file when None); `workers`: ingest worker
        processes (0: one worker in this process); `share_group`: their `$share` group
        (default `alarmgw-console` with workers, none for the in-process worker);
        `tls`: `tls_ca`, `tls_cert`, `tls_key` for the broker."""
        check_bind(web_host, allow_remote=allow_remote, password=password)  # refuse early
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if db is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="alarmgw-console-")
            db = Path(self._tmp.name) / "console.db"
        self.db = db
        self.broker_host, self.broker_port = broker_host, broker_port
        self.web_host, self.web_port = web_host, web_port
        self.allow_remote, self.password = allow_remote, password
        self.command_key = command_key
        self.workers = workers
        self.share_group = share_group or (DEFAULT_GROUP if workers else None)
        self.client_id = client_id
        self.tls = tls or {}
        self.ssl_context = ssl_context
        self.record: Record | None = None
        self.worker: IngestWorker | None = None
        self.pool: WorkerPool | None = None
        self.commander: Commander | None = None
        self.server: ConsoleServer | None = None
        self.url = ""

    def start(self) -> str:
        try:
            self.record = Record(self.db)
            if self.workers:
                if self.tls:
                    raise ValueError("TLS to the broker: run the workers with"
                                     " python -m hw_sim.console.ingest --ca ...")
                self.pool = WorkerPool(self.broker_host, self.broker_port, self.db,
                                       workers=self.workers, group=str(self.share_group),
                                       id_prefix=self.client_id).start()
            else:
                self.worker = IngestWorker(self.broker_host, self.broker_port, self.record,
                                           client_id=self.client_id,
                                           share_group=self.share_group, **self.tls)
                self.worker.start()
            self.commander = Commander(self.broker_host, self.broker_port, self.command_key,
                                       **self.tls)
            self.commander.start()
            self.server = ConsoleServer(self.record, self.commander, host=self.web_host,
                                        port=self.web_port, allow_remote=self.allow_remote,
                                        password=self.password, ssl_context=self.ssl_context)
            self.url = self.server.start()
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.commander is not None:
            self.commander.stop()
            self.commander = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        if self.record is not None:
            self.record.close()
            self.record = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> WebConsole:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
