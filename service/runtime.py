"""Everything in one process: the embedded default of SPEC §8, and the HTTP tests' stack.

Starts a local Kafka-compatible broker unless ``ROLLCALL_KAFKA_BOOTSTRAP`` is set and a
local SMTP catcher (mail kept under the data dir) unless ``ROLLCALL_SMTP_HOST`` is set;
then the relay, projector, notifier, mail sender and scheduler as threads, and the API.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import uvicorn

from consumers.notifier import Notifier, Sender, SmtpConfig
from projections.projector import Projector
from service.api.app import create_app
from service.app import Rollcall
from service.bootstrap import smtp_config
from service.clock import Clock
from service.db import engine_for
from service.embedded import LocalBroker, MailCatcher, free_port
from service.kafka import KafkaPublisher
from service.relay import Relay
from service.scheduler import DeadlineScheduler
from service.settings import Settings

log = logging.getLogger(__name__)


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or one generated once into the data dir."""
    if settings.jwt_secret:
        return settings.jwt_secret.get_secret_value()
    path = settings.data_dir / "jwt_secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


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
        self.stop_event = threading.Event()
        self.broker: LocalBroker | None = None
        self.catcher: MailCatcher | None = None
        self._threads: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None
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
        settings.data_dir.mkdir(parents=True, exist_ok=True)
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
        url = settings.resolved_database_url
        self.rollcall = Rollcall.open(url, self.clock)
        resources.callback(self.rollcall.close)
        self.engine = engine_for(url)
        resources.callback(self.engine.dispose)
        prefix, partitions = settings.topic_prefix, settings.kafka_partitions
        publisher = KafkaPublisher(bootstrap, prefix, partitions)
        resources.callback(publisher.close)
        publisher.prepare()  # topics exist before any consumer subscribes
        relay = Relay(self.rollcall.store, self.engine, publisher)
        projector = Projector(self.engine, bootstrap, prefix)
        resources.callback(projector.close)
        notifier = Notifier(self.engine, self.rollcall.store, bootstrap, prefix, self.clock)
        resources.callback(notifier.close)
        lease = timedelta(seconds=settings.mail_lease_seconds)
        sender = Sender(self.engine, smtp, self.clock, lease=lease)
        scheduler = DeadlineScheduler(self.rollcall)
        app = create_app(self.rollcall, self.engine, jwt_secret(settings))
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=self.host, port=self.port, log_level="warning")
        )
        loops: list[Callable[[threading.Event], None]] = [
            relay.run,
            projector.run,
            notifier.run,
            sender.run,
            lambda stop: scheduler.run(stop, self.scheduler_interval),
        ]
        for loop in loops:
            self._spawn(lambda loop=loop: loop(self.stop_event))  # type: ignore[misc]
        self._spawn(self._server.run)
        deadline = time.monotonic() + 60
        ready = [projector.ready, notifier.loop.ready]
        while not (self._server.started and all(r.is_set() for r in ready)):
            if time.monotonic() > deadline:
                raise TimeoutError("Rollcall did not become ready")
            time.sleep(0.02)
        return self

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def healthy(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self.stop_event.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=15)
        self._resources.close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
