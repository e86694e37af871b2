"""The one place where Settings become running parts (cosmicpython's bootstrap)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import timedelta

from consumers.notifier import Notifier, Sender, SmtpConfig
from domain.errors import ValidationFailed
from projections.projector import Projector
from service.app import Rollcall
from service.clock import Clock
from service.db import engine_for
from service.kafka import KafkaPublisher
from service.relay import Relay
from service.scheduler import DeadlineScheduler
from service.settings import Settings

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


def relay(settings: Settings, rollcall: Rollcall) -> Relay:
    publisher = KafkaPublisher(
        require_kafka(settings), settings.topic_prefix, settings.kafka_partitions
    )
    return Relay(rollcall.store, engine_for(settings.resolved_database_url), publisher)


def projector(settings: Settings) -> Projector:
    return Projector(
        engine_for(settings.resolved_database_url), require_kafka(settings), settings.topic_prefix
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


def notifier_loops(
    settings: Settings, rollcall: Rollcall
) -> list[Callable[[threading.Event], None]]:
    """The consumer that writes entries and outbox mails, and the sender that mails them."""
    engine = engine_for(settings.resolved_database_url)
    notifier = Notifier(engine, rollcall.store, require_kafka(settings), settings.topic_prefix)
    lease = timedelta(seconds=settings.mail_lease_seconds)
    return [notifier.run, Sender(engine, smtp_config(settings), lease=lease).run]


def scheduler(rollcall: Rollcall) -> DeadlineScheduler:
    return DeadlineScheduler(rollcall)


def run_until_signalled(loops: list[Callable[[threading.Event], None]]) -> bool:
    """Run each loop in a thread until SIGINT/SIGTERM, then stop them all.

    Returns False when a part stopped on its own (a crash: the process should exit
    non-zero so an orchestrator restarts it). A part that does not stop in time is
    not waited for forever: the process exits without running interpreter shutdown,
    where a still-running thread could abort it.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=loop, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    crashed = False
    while not stop.wait(0.5):
        if not all(t.is_alive() for t in threads):
            log.error("a part stopped unexpectedly; shutting down")
            crashed = True
            stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if any(t.is_alive() for t in threads):
        log.warning("a part did not stop within 30s; exiting anyway")
        logging.shutdown()
        os._exit(1 if crashed else 0)
    return not crashed
