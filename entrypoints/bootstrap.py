"""The one place where Settings become running parts (cosmicpython's bootstrap).

``rollcall serve`` (everything, in one process, see ``runtime``) and ``rollcall serve
PART`` build their parts here, and run them under the one supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine

from adapters.clock import Clock
from adapters.db import engine_for
from adapters.kafka import KafkaPublisher
from adapters.relay import Relay
from adapters.store_reader import StoreReader
from application.scheduler import DeadlineScheduler
from application.service import Rollcall
from consumers.notifier import Notifier, Sender, SmtpConfig
from domain.errors import ValidationFailed
from entrypoints.settings import Settings
from entrypoints.supervisor import Factory, Loop, Supervisor
from projections.projector import Projector

log = logging.getLogger(__name__)


def open_rollcall(settings: Settings, clock: Clock | None = None) -> Rollcall:
    return Rollcall.open(settings.resolved_database_url, clock)


def require_kafka(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ValidationFailed(
            "ROLLCALL_KAFKA_BOOTSTRAP is not set: a single part needs a running broker "
            "(`rollcall serve` with no part starts a local one)"
        )
    return settings.kafka_bootstrap


def smtp_config(settings: Settings) -> SmtpConfig:
    if not settings.smtp_host:
        raise ValidationFailed(
            "ROLLCALL_SMTP_HOST is not set: the notifier alone needs an SMTP server "
            "(`rollcall serve` with no part starts a local catcher)"
        )
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpConfig(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        settings.smtp_username,
        password,
        settings.smtp_starttls,
    )


@dataclass
class Wiring:
    """Real adapters for one process: each part is built afresh by its factory, so a
    supervisor restarting a part gets new connections and Kafka clients."""

    settings: Settings
    rollcall: Rollcall
    kafka: str | None = None
    smtp: SmtpConfig | None = None
    clock: Clock | None = None
    scheduler_interval: float = 1.0

    @cached_property
    def engine(self) -> Engine:
        return engine_for(self.settings.resolved_database_url)

    @cached_property
    def reader(self) -> StoreReader:
        return StoreReader(self.rollcall.store, self.engine)

    @property
    def _kafka(self) -> str:
        return self.kafka or require_kafka(self.settings)

    def publisher(self) -> KafkaPublisher:
        s = self.settings
        return KafkaPublisher(self._kafka, s.topic_prefix, s.kafka_partitions, s.kafka_retention_ms)

    def relay(self) -> Relay:
        return Relay(self.rollcall.store, self.engine, self.publisher())

    def projector(self) -> Projector:
        return Projector(self.engine, self._kafka, self.settings.topic_prefix, self.reader)

    def notifier(self) -> Notifier:
        return Notifier(
            self.engine,
            self.rollcall.store,
            self._kafka,
            self.settings.topic_prefix,
            self.clock,
            self.reader,
        )

    def sender(self) -> Sender:
        lease = timedelta(seconds=self.settings.mail_lease_seconds)
        return Sender(self.engine, self.smtp or smtp_config(self.settings), self.clock, lease)

    def scheduler(self) -> DeadlineScheduler:
        return DeadlineScheduler(self.rollcall)

    def factories(self, part: str) -> dict[str, Factory]:
        """The loops of one part of ``rollcall serve PART`` (the notifier is two)."""
        interval = self.scheduler_interval
        parts: dict[str, dict[str, Factory]] = {
            "relay": {"relay": lambda: self.relay().run},
            "projector": {"projector": lambda: self.projector().run},
            "notifier": {"notifier": lambda: self.notifier().run, "sender": self._sender},
            "scheduler": {
                "scheduler": lambda: _with_interval(self.scheduler().run, interval),
            },
        }
        return parts[part]

    def _sender(self) -> Loop:
        return self.sender().run

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def _with_interval(run: Callable[[threading.Event, float], None], interval: float) -> Loop:
    return lambda stop: run(stop, interval)


def run_until_signalled(parts: dict[str, Factory]) -> bool:
    """Run the parts until SIGINT/SIGTERM; False when one failed (the process should
    exit non-zero so that an orchestrator restarts it). A part that does not stop in
    time is not waited for forever: the process exits without interpreter shutdown,
    where a still-running thread could abort it."""
    supervisor = Supervisor(restart=False)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop.set())
    for name, factory in parts.items():
        supervisor.start(name, factory)
    supervisor.stop.wait()
    if not supervisor.shutdown(timeout=30):
        log.warning("a part did not stop within 30s; exiting anyway")
        logging.shutdown()
        os._exit(1 if supervisor.failed else 0)
    return not supervisor.failed
