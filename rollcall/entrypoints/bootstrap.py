"""The one place where Settings become running parts (cosmicpython's bootstrap).

``rollcall serve`` (everything, in one process, see ``runtime``) and ``rollcall serve
PART`` build their parts here, and run them under the one supervisor.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, cast

from fastapi import FastAPI
from sqlalchemy import Engine

from rollcall.adapters.clock import Clock
from rollcall.adapters.db import engine_for
from rollcall.adapters.kafka import KafkaPublisher
from rollcall.adapters.kafka_cluster import Security, secure
from rollcall.adapters.leadership import Leadership
from rollcall.adapters.relay import Relay
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.scheduler import DeadlineScheduler
from rollcall.application.service import Rollcall
from rollcall.consumers.notifier import Notifier
from rollcall.consumers.sender import Sender, SmtpConfig
from rollcall.domain.errors import ValidationFailed
from rollcall.entrypoints import serving
from rollcall.entrypoints.api.app import create_app
from rollcall.entrypoints.api.auth import check_secret
from rollcall.entrypoints.api.limits import RateLimit
from rollcall.entrypoints.api.oidc import OidcSettings
from rollcall.entrypoints.retention import SWEEP_SECONDS, Retention
from rollcall.entrypoints.settings import Settings
from rollcall.entrypoints.supervisor import Factory, Loop, Supervisor
from rollcall.entrypoints.warmup import Warmup
from rollcall.projections.projector import Projector

log = logging.getLogger(__name__)


def open_rollcall(settings: Settings, clock: Clock | None = None) -> Rollcall:
    return Rollcall.open(settings.resolved_database_url, clock)


def ready_to_serve() -> None:
    """The last step of an API process's start, before its first request: what it has
    built so far (about 200,000 objects: modules, routes, models, the store's open
    connections) frozen out of the garbage collector's reach. A full collection walked
    all of them, and paused a worker for 140-190 ms every few thousand requests: the
    slowest of its answers (bench/http_load.py)."""
    gc.collect()
    gc.freeze()


def jwt_secret(settings: Settings) -> str:
    """The configured secret (at least 32 bytes), or one generated once into the data
    dir, created readable by its owner only from the first byte."""
    if settings.jwt_secret:
        return check_secret(settings.jwt_secret.get_secret_value())
    path = settings.data_dir / "jwt_secret"
    if not path.exists():
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48))
    return check_secret(path.read_text().strip())


def checked_security(settings: Settings) -> Security:
    """How this process's Kafka clients connect; refused with one line per mistake."""
    security = settings.kafka_security
    problems = security.problems()
    if problems:
        raise ValidationFailed("\n".join(problems))
    return security


def require_kafka(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ValidationFailed(
            "ROLLCALL_KAFKA_BOOTSTRAP is not set: a single part needs a running broker "
            "(`rollcall serve` with no part starts a local one)"
        )
    return settings.kafka_bootstrap


def broker_of(settings: Settings) -> str:
    """The broker a command-line tool talks to: the configured one, else the local broker
    of the ``rollcall serve`` running on this data dir (``rollcall/entrypoints/serving.py``)."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    record = serving.running(settings.data_dir)
    if record is None:
        raise ValidationFailed(
            "ROLLCALL_KAFKA_BOOTSTRAP is not set and no `rollcall serve` runs on "
            f"{settings.data_dir.resolve()}: start it, or name the broker"
        )
    return str(record["kafka"])


def oidc_settings(settings: Settings) -> OidcSettings | None:
    """The OpenID provider whose tokens the API accepts beside its own, if any."""
    if not settings.oidc_issuer or not settings.oidc_audience:
        return None
    secret = settings.oidc_client_secret
    return OidcSettings(
        settings.oidc_issuer,
        settings.oidc_audience,
        settings.oidc_user_claim,
        settings.oidc_client_id,
        secret.get_secret_value() if secret else None,
    )


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


PARTS = ("relay", "projector", "notifier", "scheduler")
"""The long-running parts besides the API (``rollcall serve PART`` runs one)."""


@dataclass
class Wiring:
    """Real adapters for one process: each part is built afresh by its factory, so a
    supervisor restarting a part gets new connections and Kafka clients. ``built``
    holds the latest instance of each part (readiness checks look at it)."""

    settings: Settings
    rollcall: Rollcall
    kafka: str | None = None
    smtp: SmtpConfig | None = None
    clock: Clock | None = None
    scheduler_interval: float = 1.0
    retention_interval: float = SWEEP_SECONDS
    built: dict[str, object] = field(default_factory=dict)
    warmups: list[Warmup] = field(default_factory=list)

    def __post_init__(self) -> None:
        secure(checked_security(self.settings))

    @cached_property
    def mail_queued(self) -> threading.Event:
        """The notifier sets it when it queues mail; the sender beside it wakes."""
        return threading.Event()

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
        return KafkaPublisher(
            self._kafka,
            s.topic_prefix,
            s.kafka_partitions,
            s.kafka_retention_ms,
            # The embedded broker (``rollcall serve`` started it) cannot describe topics.
            check_topics=bool(s.kafka_bootstrap),
            replication_factor=s.kafka_replication_factor,
            min_insync_replicas=s.kafka_min_insync_replicas,
        )

    def relay(self) -> Relay:
        """A relay that publishes while it leads; a second one stands by (SPEC §10.5)."""
        leadership = Leadership(self.engine, "relay")
        return Relay(self.rollcall.store, self.engine, self.publisher(), leadership=leadership)

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
            queued=self.mail_queued,
            organizer=self.settings.mail_from,
        )

    def sender(self) -> Sender:
        lease = timedelta(seconds=self.settings.mail_lease_seconds)
        smtp = self.smtp or smtp_config(self.settings)
        return Sender(self.engine, smtp, self.clock, lease, wake=self.mail_queued)

    def scheduler(self) -> DeadlineScheduler:
        return DeadlineScheduler(self.rollcall, leadership=Leadership(self.engine, "scheduler"))

    def retention(self) -> Retention:
        s = self.settings
        return Retention(
            self.engine,
            self.clock or self.rollcall.clock,
            s.notification_retention_days,
            s.mail_retention_days,
        )

    def api(self, kafka: str | None, warm: bool = True) -> FastAPI:
        """The HTTP API on this process's application service and database; ``warm``:
        its cache warmed with the trainings in use (``rollcall/entrypoints/warmup.py``),
        for a process that will serve it (not the parent of ``--workers N``)."""
        s = self.settings
        app = create_app(
            self.rollcall,
            self.engine,
            jwt_secret(s),
            s.token_max_hours,
            read_wait=s.read_wait_seconds,
            docs=s.docs,
            rate_limit=RateLimit(s.rate_limit_per_minute, s.rate_limit_burst),
            kafka=kafka,
            oidc=oidc_settings(s),
            scim_token=s.scim_token.get_secret_value() if s.scim_token else None,
        )
        if warm:
            app.state.api.warmup = Warmup(self.rollcall, self.engine).start()
            self.warmups.append(app.state.api.warmup)
        return app

    def factories(self, part: str) -> dict[str, Factory]:
        """The loops of one part (the notifier is two: the notifier and its sender)."""
        parts: dict[str, dict[str, Callable[[], Any]]] = {
            "relay": {"relay": self.relay},
            "projector": {"projector": self.projector},
            "notifier": {"notifier": self.notifier, "sender": self.sender},
            "scheduler": {"scheduler": self.scheduler, "retention": self.retention},
        }
        return {name: self._recorded(name, build) for name, build in parts[part].items()}

    def _recorded(self, name: str, build: Callable[[], Any]) -> Factory:
        def factory() -> Loop:
            self.built[name] = part = build()
            if name == "scheduler":
                return _with_interval(part.run, self.scheduler_interval)
            if name == "retention":
                return _with_interval(part.run, self.retention_interval)
            return cast(Loop, part.run)

        return factory

    def close(self) -> None:
        for warmup in self.warmups:
            warmup.stop()
        if "engine" in self.__dict__:
            self.engine.dispose()


def _with_interval(run: Callable[[threading.Event, float], None], interval: float) -> Loop:
    return lambda stop: run(stop, interval)


STOP_SECONDS = 9
"""How long a part asked to stop may take to finish what it holds: the process exits
within 10 s of SIGTERM (SPEC §10.2)."""


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
    if not supervisor.shutdown(timeout=STOP_SECONDS):
        log.warning("a part did not stop within %ss; exiting anyway", STOP_SECONDS)
        logging.shutdown()
        os._exit(1 if supervisor.failed else 0)
    return not supervisor.failed
