"""SPEC §10.4 retention on both databases, through the real notifier and sender:
notification-center entries are deleted after ``ROLLCALL_NOTIFICATION_RETENTION_DAYS``,
what a sent mail said and to which address is blanked after
``ROLLCALL_MAIL_RETENTION_DAYS``; mail not yet sent, and newer entries, are kept; a
blanked mail is never made again."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from rollcall.adapters.clock import ManualClock
from rollcall.application.service import Rollcall
from rollcall.consumers.outbox import outbox
from rollcall.entrypoints.retention import Retention
from rollcall.entrypoints.settings import Settings
from rollcall.projections.tables import LIVE
from tests.pipeline import Pipeline
from tests.scenario import LEARNER, OTHER, World


def held(pipeline: Pipeline) -> tuple[list[str], list[tuple[str, str, str]]]:
    """(entry recipients, (recipient, address, text) of each mail), in a stable order."""
    with pipeline.engine.connect() as conn:
        entries = conn.execute(
            select(LIVE.notifications.c.recipient_id).order_by(LIVE.notifications.c.position)
        ).scalars()
        mails = conn.execute(
            select(outbox.c.recipient_id, outbox.c.recipient_email, outbox.c.text).order_by(
                outbox.c.created_at, outbox.c.message_id
            )
        ).all()
        return list(entries), [tuple(m) for m in mails]


def test_old_entries_are_deleted_and_old_sent_mail_is_blanked(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock
) -> None:
    defaults = Settings()
    assert (defaults.notification_retention_days, defaults.mail_retention_days) == (365, 30)
    world = World(rollcall, clock)
    early = world.training(days=(400, 410))
    world.enroll(early, LEARNER)  # day 0: told, mailed, sent
    pipeline.settle()
    day_zero = len(held(pipeline)[1])  # to the learner, and to her supervisor
    clock.advance(timedelta(days=31))
    world.enroll(early, OTHER)  # day 31: told, mailed, sent
    pipeline.settle()
    entries, mails = held(pipeline)
    assert LEARNER in entries
    assert all(address and text for _, address, text in mails)
    assert len(mails) > day_zero > 0

    retention = Retention(pipeline.engine, clock)
    assert retention.sweep() == (0, day_zero)  # day 31: the day-0 mails are past 30 days
    entries, mails = held(pipeline)
    assert [(address, text) for _, address, text in mails[:day_zero]] == [("", "")] * day_zero
    assert all(address and text for _, address, text in mails[day_zero:])
    assert LEARNER in entries  # entries are kept for a year
    assert retention.sweep() == (0, 0)

    clock.advance(timedelta(days=335))  # day 366
    deleted, _ = retention.sweep()
    after, _ = held(pipeline)
    assert deleted == len(entries) - len(after) > 0
    assert LEARNER not in after  # the day-0 entries
    pipeline.settle()  # nothing makes them again
    assert held(pipeline)[0] == after
