"""SPEC §10.1: every event reaches every consumer, or says loudly why not. The sample
of every published event type, and one story that uses every feature together, run
through the relay, Kafka, the projector and the notifier on both stores: nothing is
dead-lettered, every notice the story makes arrives once (entry and mail), and the
read models equal a replay from the store."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from uuid import UUID

import pytest
from sqlalchemy import select

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.contract import by_ce_type
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.adapters.store_reader import Decoder
from rollcall.application.service import Rollcall
from rollcall.entrypoints.catalog import _story as sample_story
from rollcall.entrypoints.personal_data import report
from rollcall.projections import people
from rollcall.projections.tables import LIVE
from tests.pipeline import Pipeline, dump, replayed, stored
from tests.scenario import ADMIN, LEARNER, SUPERVISOR, World
from tests.story import Told, every_feature


@pytest.fixture
def pipeline(
    rollcall: Rollcall,
    database_url: str,
    broker: LocalBroker,
    topic_prefix: str,
    catcher: MailCatcher,
    clock: ManualClock,
) -> Iterator[Pipeline]:
    running = Pipeline(rollcall, database_url, broker, topic_prefix, catcher, clock, projector=True)
    yield running
    running.close()


def test_the_story_of_every_feature_tells_everyone_once_through_every_consumer(
    pipeline: Pipeline,
    rollcall: Rollcall,
    clock: ManualClock,
    catcher: MailCatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R15, SPEC §9.4, §10.1: every notice of the story, exactly once, entry and mail;
    the lock of a training with a waitlist tells the participants' supervisor (it told
    nobody when the training's own Waitlisted event was taken for the enrollment's).
    SPEC §10.4: no name, e-mail address or reason reaches a log line of any part."""
    caplog.set_level(logging.DEBUG, logger="rollcall")
    caplog.set_level(logging.INFO)
    story = every_feature(World(rollcall, clock))
    pipeline.settle()
    assert pipeline.dead_lettered == 0
    assert pipeline.dead_letters() == []
    assert pipeline.entries() == story.told.notices
    assert pipeline.mails() == story.told.notices
    told = sum(story.told.notices.values())
    pipeline.until(lambda: len(catcher.received()) >= told)
    assert len(catcher.received()) == told
    assert ("sam", "attendance") in pipeline.entries()
    live, as_held = dump(pipeline.engine), stored(pipeline.engine)
    held_about_the_learner(pipeline, rollcall, clock, story.told)
    nothing_personal_logged(pipeline, caplog.records)
    assert live == replayed(pipeline.engine, rollcall)
    assert stored(pipeline.engine) == as_held  # the same text, not only the same values


def test_the_sample_of_every_event_type_passes_through_every_consumer(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock
) -> None:
    """SPEC §10.1: the story that makes the shipped sample of every event type, handled
    by the projector and the notifier with no dead letter; the read models equal a
    replay."""
    sample_story(rollcall, clock)
    decoder = Decoder(rollcall.store.mapper)
    published = {
        decoder.event(n).type
        for n in rollcall.store.recorder.select_notifications(start=1, limit=10_000)
    }
    assert published == set(by_ce_type())
    pipeline.settle()
    assert pipeline.dead_lettered == 0
    assert pipeline.dead_letters() == []
    live = dump(pipeline.engine)
    assert live == replayed(pipeline.engine, rollcall)


def held_about_the_learner(
    pipeline: Pipeline, rollcall: Rollcall, clock: ManualClock, told: Told
) -> None:
    """SPEC §10.4: the personal-data report of the story's learner holds everything the
    story made about her, through every consumer: her entry, every enrollment, every
    event of them from the store, every notice to her (entry and mail), and what her
    supervisor was told about her; and nothing addressed to anybody else."""
    with pipeline.engine.connect() as conn:
        found = report(rollcall, conn, ADMIN, LEARNER, clock.now())
    assert found["directory"]["id"] == LEARNER
    with pipeline.engine.connect() as conn:
        ids = set(people.enrollment_ids_of(conn, LIVE, LEARNER))
    assert {e["enrollment_id"] for e in found["enrollments"]} == ids
    stored = [e for aggregate in ids for e in rollcall.store.events.get(UUID(aggregate))]
    user = rollcall.directory_entry(ADMIN, LEARNER)["key"]
    stored += list(rollcall.store.events.get(UUID(str(user))))
    assert len(found["history"]) == len(stored)
    mine = Counter({kind: n for (to, kind), n in told.notices.items() if to == LEARNER})
    assert Counter(entry["kind"] for entry in found["notifications"]) == mine
    assert len(found["mail"]) == sum(mine.values())
    assert {m["recipient_id"] for m in found["mail"]} == {LEARNER}
    about = found["sent_to_others_about_them"]
    assert {entry["recipient_id"] for entry in about["notifications"]} == {SUPERVISOR}
    assert {entry["data"]["learner_id"] for entry in about["notifications"]} == {LEARNER}
    assert len(about["mail"]) == len(about["notifications"])
    assert {m["recipient_id"] for m in about["mail"]} == {SUPERVISOR}


def nothing_personal_logged(pipeline: Pipeline, records: list[logging.LogRecord]) -> None:
    with pipeline.engine.connect() as conn:
        users = conn.execute(select(LIVE.users.c.name, LIVE.users.c.email)).all()
        reasons = conn.execute(
            select(LIVE.enrollments.c.unenroll_reason).where(
                LIVE.enrollments.c.unenroll_reason.is_not(None)
            )
        ).scalars()
        personal = {v for row in users for v in row} | {r for r in reasons if len(r) > 3}
    assert len(personal) > 4  # the story's people, their addresses and reasons
    assert records  # the parts did log
    logged = "\n".join(
        record.getMessage() + (logging.Formatter().formatException(record.exc_info)
                               if record.exc_info else "")
        for record in records
    )  # fmt: skip
    assert not {value for value in personal if value in logged}
