"""SPEC §10.3, bulk enrollment, in-process over HTTP on both stores: up to 1,000 people
into one session by a manager, each their own command with its own outcome, in the
order given; a full session refuses the rest (``session_full``) or, when asked, puts
them in its line."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import pytest

from rollcall.application.commands import PutUser, SetActive
from rollcall.application.service import SYSTEM_ACTOR
from rollcall.domain.training import Training
from tests.api import Client
from tests.scenario import ADMIN, LEARNER, MANAGER

pytestmark = pytest.mark.timeout(600)


def people(c: Client, count: int) -> list[str]:
    user_ids = [f"bulk{i:04d}" for i in range(count)]
    for user_id in user_ids:
        c.rollcall.put_user(
            PutUser(actor_id=SYSTEM_ACTOR, user_id=user_id, name=user_id, email="b@example.com")
        )
    return user_ids


def bulk(c: Client, tid: str, body: dict[str, Any], user: str = ADMIN) -> list[dict[str, Any]]:
    answer = c.ok("POST", f"/v1/trainings/{tid}/enrollments/bulk", user, json=body)
    results: list[dict[str, Any]] = answer["data"]["results"]
    return results


def test_a_thousand_people_into_six_hundred_seats(client: Client) -> None:
    tid, sids = client.training(capacity=600)
    user_ids = people(client, 1000)
    results = bulk(client, tid, {"session_id": sids[0], "user_ids": user_ids})
    assert [r["user_id"] for r in results] == user_ids
    outcomes = Counter((r["outcome"], r.get("error")) for r in results)
    assert outcomes == {("enrolled", None): 600, ("refused", "session_full"): 400}
    training = client.rollcall.store.repository.get(UUID(tid))
    assert isinstance(training, Training)
    assert set(training.participants) == {
        r["user_id"] for r in results if r["outcome"] == "enrolled"
    }


def test_the_rest_wait_in_line_and_each_refusal_is_that_of_a_single_enroll(
    client: Client,
) -> None:
    tid, sids = client.training(capacity=2)
    user_ids = people(client, 4)
    client.rollcall.set_active(SetActive(actor_id=ADMIN, user_id=user_ids[3], active=False))
    body = {
        "session_id": sids[0],
        "user_ids": [LEARNER, *user_ids, "nobody-here"],
        "waitlist": True,
    }
    results = bulk(client, tid, body, user=MANAGER)
    by_user = {r["user_id"]: (r["outcome"], r.get("error")) for r in results}
    assert Counter(by_user.values()) == {
        ("enrolled", None): 2,
        ("waitlisted", None): 2,
        ("refused", "user_deactivated"): 1,
        ("refused", "not_found"): 1,
    }
    again = bulk(client, tid, {"session_id": sids[0], "user_ids": [LEARNER]})
    assert again[0]["error"] == "already_enrolled"


@pytest.mark.parametrize(
    "user_ids",
    [[], ["a", "a"], [f"u{i}" for i in range(1001)]],
    ids=["none", "twice", "too-many"],
)
def test_an_empty_repeated_or_too_long_list_is_refused_whole(
    client: Client, user_ids: list[str]
) -> None:
    tid, sids = client.training()
    client.refused(
        422,
        "validation_error",
        "POST",
        f"/v1/trainings/{tid}/enrollments/bulk",
        json={"session_id": sids[0], "user_ids": user_ids},
    )
