"""``rollcall demo``: the help article's story, step by step, against a running server.

An administrator creates a training with two sessions and registration restrictions; a
learner enrolls, asks for another time, switches (confirming), then registration closes
and they try to cancel: they are warned that re-enrollment will not be possible. Their
supervisor is told by email and in the notification center.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx

from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.ui.signin import sign_in_link

ADMIN, LEARNER, SUPERVISOR = "demo-admin", "demo-lena", "demo-sam"


class Demo:
    def __init__(self, url: str, secret: str, say: Callable[[str], None]) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.secret = secret
        self.say = say

    def call(self, method: str, path: str, user: str, **kwargs: Any) -> Any:
        token = issue_token(user, self.secret, datetime.now(UTC))
        response = self.http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        body = response.json()
        if response.status_code >= 400 and body.get("error") != "confirmation_required":
            raise RuntimeError(f"{method} {path}: {response.status_code} {body}")
        return body

    def run(self, maildir: Path | None) -> None:
        say, call = self.say, self.call
        for user, name, supervisor in [
            (SUPERVISOR, "Sam Supervisor", None),
            (LEARNER, "Lena Learner", SUPERVISOR),
        ]:
            body = {"name": name, "email": f"{user}@example.com", "supervisor_id": supervisor}
            call("PUT", f"/v1/users/{user}", ADMIN, json=body)
        say("1. The administrator creates 'Fire safety' with two sessions, registration")
        say("   closing 2 days and cancellations 1 day before each session starts.")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
        sessions = [
            {
                "starts_at": (start + timedelta(days=d)).isoformat(),
                "ends_at": (start + timedelta(days=d, hours=2)).isoformat(),
                "timezone": "Europe/Berlin",
                "location": room,
                "capacity": 12,
            }
            for d, room in [(0, "Room A"), (7, "Room B")]
        ]
        training = call(
            "POST",
            "/v1/trainings",
            ADMIN,
            json={"title": "Fire safety", "description": "Leave in time.", "sessions": sessions},
        )["data"]
        tid = training["id"]
        days = {"enabled": True, "unit": "days"}
        restrictions = {
            "stop_registration": {**days, "amount": 2},
            "stop_cancellation": {**days, "amount": 1},
        }
        call("PUT", f"/v1/trainings/{tid}/restrictions", ADMIN, json=restrictions)
        first, second = (s["id"] for s in training["sessions"])

        say("2. Lena enrolls in the first session.")
        call("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json={"session_id": first})

        say("3. She clicks 'Select another training time': the system suggests one.")
        suggested = call("GET", f"/v1/me/trainings/{tid}/options", LEARNER)["suggested"]
        say(f"   suggested: {suggested['starts_at']} at {suggested['location']}")
        asked = call("POST", f"/v1/me/trainings/{tid}/switch", LEARNER, json={})
        say(f"   without confirming: {asked['error']} (nothing changed)")
        call("POST", f"/v1/me/trainings/{tid}/switch", LEARNER, json={"confirm": True})
        say("   she confirms: switched to the second session.")
        assert suggested["id"] == second

        say("4. Registration closes (the administrator moves it to 30 days before start).")
        restrictions["stop_registration"]["amount"] = 30
        call("PUT", f"/v1/trainings/{tid}/restrictions", ADMIN, json=restrictions)

        say("5. Lena tries to cancel: she is warned first.")
        warned = call("POST", f"/v1/me/trainings/{tid}/unenroll", LEARNER, json={})
        for warning in warned["details"]["warnings"]:
            say(f"   warning {warning['code']}: {warning['message']}")
        done = call(
            "POST",
            f"/v1/me/trainings/{tid}/unenroll",
            LEARNER,
            json={"confirm": True, "reason": "Clashes with a customer visit"},
        )
        say(f"   she confirms: {done['data']['status']}.")

        say("6. Sam, her supervisor, is told.")
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(entries) < 3 and time.monotonic() < deadline:
            entries = call("GET", "/v1/me/notifications", SUPERVISOR)["data"]
            time.sleep(0.2)
        for entry in reversed(entries):
            say(f"   notification center: {entry['title']}")
        if maildir is not None:
            while len(list(maildir.glob("*.eml"))) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            for path in sorted(maildir.glob("*.eml")):
                message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
                say(f"   email to {message['To']}: {message['Subject']}")
        if len(entries) < 3:
            raise RuntimeError("the supervisor was not told in time")
        self.scenery(start)

    def scenery(self, start: datetime) -> None:
        """Something to look at in the pages: Lena in a training she may still change,
        and in the line of a full session (SPEC §9.4, §9.6)."""
        call = self.call

        def one(title: str, day: int, capacity: int) -> tuple[str, str]:
            session = {
                "starts_at": (start + timedelta(days=day)).isoformat(),
                "ends_at": (start + timedelta(days=day, hours=3)).isoformat(),
                "timezone": "Europe/Berlin",
                "location": "Workshop",
                "capacity": capacity,
            }
            made = call(
                "POST", "/v1/trainings", ADMIN, json={"title": title, "sessions": [session]}
            )
            return made["data"]["id"], made["data"]["sessions"][0]["id"]

        self.say("7. For the pages: Lena enrolls in 'Forklift basics' and joins the waitlist")
        self.say("   of the full 'Crane license' session.")
        tid, sid = one("Forklift basics", 3, 8)
        call("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json={"session_id": sid})
        tid, sid = one("Crane license", 5, 1)
        call("POST", f"/v1/trainings/{tid}/enrollments", SUPERVISOR, json={"session_id": sid})
        body = {"session_id": sid, "waitlist": True}
        call("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json=body)

    def links(self) -> None:
        """One-time sign-in links to the pages for the demo's users."""
        now = datetime.now(UTC)
        base = str(self.http.base_url)
        for user, who in [(LEARNER, "learner"), (SUPERVISOR, "supervisor"), (ADMIN, "admin")]:
            self.say(f"Sign in as the {who}: {sign_in_link(base, user, self.secret, now)}")
