"""SPEC §9.3, as a property: for random trainings, restrictions, locks, seats and
clocks, what a learner is shown (``GET /v1/me/trainings``, ``options``, the catalog)
agrees with what the commands then do: offered ⇒ it succeeds (with confirmation); not
offered ⇒ it is refused, with the reason shown. Through HTTP, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollcall.application.commands import PutUser
from rollcall.application.service import SYSTEM_ACTOR
from tests.api import Client, restrictions, session
from tests.scenario import ADMIN, LEARNER

FILLERS = [f"filler{i}" for i in range(4)]

situations = st.fixed_dictionaries(
    {
        "sessions": st.lists(
            st.tuples(st.sampled_from([1, 2, 5, 10]), st.sampled_from([1, 2, None])),
            min_size=1,
            max_size=3,
        ),
        "preassigned": st.booleans(),
        "registration": st.none() | st.integers(0, 6),
        "cancellation": st.none() | st.integers(0, 6),
        "locked": st.booleans(),
        "enrolled_in": st.none() | st.integers(0, 2),
        "fillers": st.lists(st.integers(0, 2), max_size=4),
        "hours_later": st.integers(0, 6 * 24),
        "action": st.sampled_from(["switch", "unenroll", "move", "enroll"]),
        "target": st.integers(0, 2),
    }
)


def arrange(c: Client, s: dict[str, Any]) -> tuple[str, list[str], bool]:
    """The situation: a training, its seats taken by an administrator, then its
    restrictions and lock, then time passes. Returns (training, sessions, enrolled)."""
    body = {
        "title": "Property",
        "session_selection": "preassigned" if s["preassigned"] else "participant",
        "sessions": [session(c.clock, days, capacity) for days, capacity in s["sessions"]],
    }
    data = c.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    tid, sids = data["id"], [x["id"] for x in data["sessions"]]
    enrolled = False
    for user, index in [(LEARNER, s["enrolled_in"]), *zip(FILLERS, s["fillers"], strict=False)]:
        if index is None or index >= len(sids):
            continue
        path = f"/v1/trainings/{tid}/enrollments"
        answer = c.call("POST", path, ADMIN, json={"session_id": sids[index], "user_id": user})
        assert answer.status_code in (201, 409), answer.text  # 409: that session is full
        enrolled = enrolled or (user == LEARNER and answer.status_code == 201)

    def days(n: int | None) -> dict[str, Any] | None:
        return None if n is None else {"enabled": True, "amount": n, "unit": "days"}

    limits = restrictions(days(s["registration"]), days(s["cancellation"]))
    c.ok("PUT", f"/v1/trainings/{tid}/restrictions", ADMIN, json=limits)
    c.ok("PUT", f"/v1/trainings/{tid}/lock", ADMIN, json={"locked": s["locked"]})
    c.clock.advance(timedelta(hours=s["hours_later"]))
    return tid, sids, enrolled


def outcome(response: Any) -> str:
    """``ok``, or the refusal's reason code."""
    if response.status_code in (200, 201):
        return "ok"
    assert response.status_code in (409, 422), response.text
    return str(response.json()["error"])


def example(**changes: Any) -> dict[str, Any]:
    """A situation every run checks, so that both sides (done, refused) are always met."""
    base: dict[str, Any] = {
        "sessions": [(10, 2), (5, 2)],
        "preassigned": False,
        "registration": None,
        "cancellation": None,
        "locked": False,
        "enrolled_in": 0,
        "fillers": [],
        "hours_later": 0,
        "action": "switch",
        "target": 1,
    }
    return {**base, **changes}


EXAMPLES = [
    example(),  # switch: done
    example(action="unenroll"),  # done
    example(action="move"),  # done
    example(action="enroll", enrolled_in=None),  # done
    example(locked=True),  # switch refused: participant_list_locked
    example(action="unenroll", cancellation=4, hours_later=7 * 24),  # deadline day 6: passed
    example(fillers=[1, 1]),  # the other session is full: no_other_session
    example(action="move", fillers=[1, 1]),  # session_full
    example(action="enroll", enrolled_in=None, preassigned=True),  # preassigned_session
    example(action="enroll", enrolled_in=None, registration=6, target=0),  # closed
]


def examples(cases: list[dict[str, Any]]) -> Any:
    def with_them(test: Any) -> Any:
        for case in reversed(cases):
            test = hypothesis.example(situation=case)(test)
        return test

    return with_them


TRAINING_WIDE = {"preassigned_session", "participant_list_locked"}


def test_what_is_offered_is_what_the_commands_do(client: Client) -> None:
    for filler in FILLERS:
        client.rollcall.put_user(
            PutUser(actor_id=SYSTEM_ACTOR, user_id=filler, name=filler, email=f"{filler}@x.org")
        )
    seen: set[tuple[str, str]] = set()

    @given(situation=situations)
    @examples(EXAMPLES)
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def check(situation: dict[str, Any]) -> None:
        c = client
        tid, sids, enrolled = arrange(c, situation)
        options = c.ok("GET", f"/v1/me/trainings/{tid}/options", LEARNER)
        eligible = [o["id"] for o in options["eligible"]]
        assert (options["reason"] is None) == bool(eligible), options
        c.project()
        if enrolled:
            (mine,) = [
                e for e in c.ok("GET", "/v1/me/trainings", LEARNER) if e["training_id"] == tid
            ]
            actions = mine["actions"]
            # the list and the options agree on switching
            assert actions["switch"]["available"] == bool(eligible), (actions, options)
            if not eligible:
                assert actions["switch"]["reason"] == options["reason"]
        action = situation["action"]
        me = f"/v1/me/trainings/{tid}"
        if enrolled and action in ("switch", "unenroll"):
            shown = actions[action]
            done = outcome(c.call("POST", f"{me}/{action}", LEARNER, json={"confirm": True}))
            assert done == ("ok" if shown["available"] else shown["reason"]), (shown, done)
            seen.add((action, done))
        elif enrolled and action == "move":
            target = sids[situation["target"] % len(sids)]
            body = {"confirm": True, "session_id": target}
            done = outcome(c.call("POST", f"{me}/switch", LEARNER, json=body))
            assert (done == "ok") == (target in eligible), (target, eligible, done)
            if target == options["current_session_id"]:
                assert done == "validation_error"  # already there
            seen.add(("move", done))
        elif not enrolled:
            target = sids[situation["target"] % len(sids)]
            listed = {
                s["id"]: s
                for entry in c.ok("GET", "/v1/catalog", LEARNER)["data"]
                if entry["id"] == tid
                for s in entry["sessions"]
            }
            for sid, shown in listed.items():  # the catalog offers what options offers
                offered = shown["open_for_registration"] and shown["seats_left"] != 0
                offered = offered and not situation["preassigned"]
                assert offered == (sid in eligible), (shown, eligible)
            body = {"session_id": target, "confirm": True}
            done = outcome(c.call("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json=body))
            assert (done == "ok") == (target in eligible), (target, eligible, done)
            if options["reason"] in TRAINING_WIDE:
                assert done == options["reason"]
            seen.add(("enroll", done))
        # Each example alone: the learner leaves this training, so their calendar (SPEC
        # §9.4) never carries a seat from one example into the next.
        c.call("POST", f"/v1/trainings/{tid}/enrollments/{LEARNER}/unenroll", ADMIN, json={})

    check()
    for action in ("switch", "unenroll", "move", "enroll"):  # both sides were met
        assert (action, "ok") in seen
        assert any(a == action and done != "ok" for a, done in seen), action
