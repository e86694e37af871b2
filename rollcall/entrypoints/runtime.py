"""Everything in one process: the embedded default of SPEC §8, and the HTTP tests' stack.

Starts a local Kafka-compatible broker unless ``ROLLCALL_KAFKA_BOOTSTRAP`` is set and a
local SMTP catcher (mail kept under the data dir) unless ``ROLLCALL_SMTP_HOST`` is set;
then the relay, projector, notifier, mail sender and scheduler under one supervisor
that restarts a failed part with backoff, and the API. A local broker that dies is
started again on the same port (empty: the relay notices and publishes again).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import cast

import uvicorn

from rollcall.adapters.clock import Clock
from rollcall.adapters.db import check_database
from rollcall.adapters.embedded import LocalBroker, MailCatcher, free_port
from rollcall.application.service import Rollcall
from rollcall.consumers.notifier import Notifier
from rollcall.consumers.sender import SmtpConfig
from rollcall.entrypoints import serving
from rollcall.entrypoints.bootstrap import PARTS, Wiring, smtp_config
from rollcall.entrypoints.settings import Settings
from rollcall.entrypoints.supervisor import Supervisor
from rollcall.projections.projector import Projector

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int | None = None,
        clock: Clock | None = None,
        scheduler_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port or free_port()
        self.clock = clock
        self.scheduler_interval = scheduler_interval
        self.supervisor = Supervisor(restart=True)
        self.broker: LocalBroker | None = None
        self.catcher: MailCatcher | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._resources = ExitStack()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def maildir(self) -> Path:
        return self.settings.data_dir / "mail"

    def start(self) -> Runtime:
        """Start every part; if one cannot start, stop what already runs (a local broker
        must not outlive a failed start) and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Runtime:
        settings = self.settings
        resources = self._resources
        check_database(settings.resolved_database_url)  # before anything is written
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.data_dir.chmod(0o700)  # also one made by an earlier release, 0755
        bootstrap = settings.kafka_bootstrap
        if not bootstrap:
            self.broker = LocalBroker(log_path=settings.data_dir / "broker.log").start()
            resources.callback(self.broker.stop)
            bootstrap = self.broker.bootstrap
        if settings.smtp_host:
            smtp = smtp_config(settings)
        else:
            self.catcher = MailCatcher(maildir=self.maildir).start()
            resources.callback(self.catcher.stop)
            smtp = SmtpConfig("127.0.0.1", self.catcher.port, settings.mail_from)
        self.rollcall = Rollcall.open(settings.resolved_database_url, self.clock)
        resources.callback(self.rollcall.close)
        wiring = Wiring(
            settings, self.rollcall, bootstrap, smtp, self.clock, self.scheduler_interval
        )
        resources.callback(wiring.close)
        self.wiring = wiring
        self.engine = wiring.engine
        publisher = wiring.publisher()
        resources.callback(publisher.close)
        publisher.prepare()  # topics exist before any consumer subscribes

        supervisor = self.supervisor
        if self.broker is not None:
            supervisor.start("broker", lambda: self.broker.watch)  # type: ignore[union-attr]
        for part in PARTS:
            for name, factory in wiring.factories(part).items():
                supervisor.start(name, factory)

        app = wiring.api(bootstrap)
        self.app = app
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=self.host,
                port=self.port,
                log_level="warning",
                log_config=None,
                server_header=False,
                timeout_graceful_shutdown=8,
            )
        )
        self._server_thread = threading.Thread(target=self._server.run, daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 60
        while not (self._server.started and self._consumers_ready()):
            if time.monotonic() > deadline:
                raise TimeoutError("Rollcall did not become ready")
            if not self._server_thread.is_alive():
                raise RuntimeError(f"the API could not start on {self.url}")
            time.sleep(0.02)
        serving.write(settings.data_dir, self.url, bootstrap)
        resources.callback(serving.remove, settings.data_dir)
        return self

    @property
    def projector(self) -> Projector | None:
        return cast(Projector | None, self.wiring.built.get("projector"))

    @property
    def notifier(self) -> Notifier | None:
        return cast(Notifier | None, self.wiring.built.get("notifier"))

    def _consumers_ready(self) -> bool:
        """The projector and notifier hold their partitions (the group join is done)."""
        return all(
            part is not None and part.ready.is_set()
            for part in (self.projector, self.notifier.loop if self.notifier else None)
        )

    def healthy(self) -> bool:
        """The API serves and the supervisor runs (it restarts any part that fails)."""
        server_up = self._server_thread is not None and self._server_thread.is_alive()
        return server_up and self.supervisor.alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=15)
        self.supervisor.shutdown(timeout=15)
        self._resources.close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
