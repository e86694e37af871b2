"""SPEC §9.6 with §9.7, in-process on both stores: the pages escape what learners and
administrators wrote, refuse control characters and oversized fields with a readable
answer that changes nothing, and never act on a form without the session's CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rollcall.entrypoints.ui import signin
from tests.api import SECRET, Client, session
from tests.scenario import ADMIN, LEARNER


def signed_in(c: Client, user: str) -> str:
    """Sign ``user`` in on the client; the CSRF token of their session."""
    cookie = signin.new_session(c.engine, user, SECRET, datetime.now(UTC))
    c.http.cookies.set(signin.COOKIE, cookie, path="/ui")
    found = signin.session_of(c.engine, cookie, SECRET, datetime.now(UTC))
    assert found is not None
    return found.csrf


def enrolled(c: Client, title: str) -> tuple[str, str]:
    body = {"title": title, "sessions": [session(c.clock, 10)]}
    data = c.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    tid, sid = data["id"], data["sessions"][0]["id"]
    c.ok("POST", f"/v1/trainings/{tid}/enrollments", LEARNER, json={"session_id": sid})
    return tid, sid


def post(c: Client, path: str, form: dict[str, Any]) -> Any:
    return c.http.post(path, data=form, follow_redirects=False)


def test_markup_from_learners_and_administrators_is_shown_as_text(client: Client) -> None:
    enrolled(client, "<script>alert(1)</script> & <b>bold</b>")
    client.project()
    signed_in(client, LEARNER)
    page = client.http.get("/ui/").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_control_characters_and_huge_reasons_are_refused_and_change_nothing(
    client: Client,
) -> None:
    tid, _ = enrolled(client, "Forklift")
    csrf = signed_in(client, LEARNER)
    before = client.stored()
    nul = post(
        client,
        f"/ui/trainings/{tid}/unenroll",
        {"csrf": csrf, "reason": "bad\x00reason", "confirm": "true", "seen": ""},
    )
    assert nul.status_code == 303
    assert nul.headers["location"] == "/ui/?error=validation_error"
    huge = post(
        client,
        f"/ui/trainings/{tid}/unenroll",
        {"csrf": csrf, "reason": "x" * 50_000, "confirm": "true", "seen": ""},
    )
    assert huge.status_code == 422
    assert client.stored() == before
    answer = client.http.get(nul.headers["location"]).text
    assert "The request is not valid." in answer


def test_a_form_without_the_sessions_token_does_nothing(client: Client) -> None:
    tid, _ = enrolled(client, "Forklift")
    signed_in(client, LEARNER)
    before = client.stored()
    for form in ({}, {"csrf": "guess"}, {"csrf": signin.csrf_token("another", SECRET)}):
        answer = post(client, f"/ui/trainings/{tid}/unenroll", {**form, "confirm": "true"})
        assert answer.status_code == 403
    assert client.stored() == before


def test_administrators_pages_are_theirs(client: Client) -> None:
    tid, _ = enrolled(client, "Forklift")
    signed_in(client, LEARNER)
    assert client.http.get("/ui/admin").status_code == 403
    assert client.http.get(f"/ui/admin/trainings/{tid}").status_code == 403
    signed_in(client, ADMIN)
    client.project()
    assert client.http.get(f"/ui/admin/trainings/{tid}").status_code == 200


def test_a_new_secret_or_ending_a_persons_sessions_closes_every_copy_of_their_cookie(
    client: Client,
) -> None:
    """SPEC §10.2: sessions are the server's. A rotated secret ends every session (no
    cookie signed with the old one verifies); ending a person's sessions (what a
    deactivation does) ends each of them, and nobody else's."""
    now = datetime.now(UTC)
    first = signin.new_session(client.engine, LEARNER, SECRET, now)
    second = signin.new_session(client.engine, LEARNER, SECRET, now)
    other = signin.new_session(client.engine, ADMIN, SECRET, now)
    rotated = "a-rotated-secret-of-32-bytes-long!"
    assert signin.session_of(client.engine, first, rotated, now) is None
    assert signin.end_sessions_of(client.engine, LEARNER, now) == 2
    assert signin.session_of(client.engine, first, SECRET, now) is None
    assert signin.session_of(client.engine, second, SECRET, now) is None
    assert signin.session_of(client.engine, other, SECRET, now) is not None
    client.http.cookies.set(signin.COOKIE, second, path="/ui")
    answer = client.http.get("/ui/", follow_redirects=False)
    assert answer.status_code == 401
    assert "Sign in" in answer.text


def test_a_csv_of_people_is_enrolled_from_the_administrators_page(client: Client) -> None:
    """SPEC §10.3: the upload does what the API's bulk enrollment does, one outcome per
    person on the page; a file that is no CSV of ids changes nothing."""
    data = client.ok(
        "POST",
        "/v1/trainings",
        ADMIN,
        json={"title": "Induction", "sessions": [session(client.clock, 10, capacity=1)]},
    )["data"]
    tid, sid = data["id"], data["sessions"][0]["id"]
    csrf = signed_in(client, ADMIN)
    url = f"/ui/admin/trainings/{tid}/sessions/{sid}/bulk"
    people = "user_id\nlena\n otto \n\nnobody-here\n<b>x</b>\n"
    answer = client.http.post(
        url,
        data={"csrf": csrf, "waitlist": "true"},
        files={"people": ("people.csv", people.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert answer.status_code == 200, answer.headers.get("location")
    assert "1 enrolled, 1 on the waitlist, 2 not enrolled." in answer.text
    assert "&lt;b&gt;x&lt;/b&gt;" in answer.text  # shown as text
    assert "<b>x</b>" not in answer.text
    training = client.ok("GET", f"/v1/trainings/{tid}", ADMIN)
    assert training["sessions"][0]["seats_taken"] == 1
    before = client.stored()
    for bad in (b"\xff\xfe\x00binary", b"x" * 70_000):
        refused = client.http.post(
            url,
            data={"csrf": csrf},
            files={"people": ("people.csv", bad, "text/csv")},
            follow_redirects=False,
        )
        assert refused.status_code == 303
        assert "error=validation_error" in refused.headers["location"]
    assert client.stored() == before
    learner_csrf = signed_in(client, LEARNER)
    forbidden = client.http.post(
        url,
        data={"csrf": learner_csrf},
        files={"people": ("people.csv", b"otto\n", "text/csv")},
        follow_redirects=False,
    )
    assert "error=forbidden" in forbidden.headers["location"]
    assert client.stored() == before


def test_a_learner_whose_directory_names_a_time_zone_reads_their_own_time_too(
    client: Client,
) -> None:
    """SPEC §10.3: the pages show a session where it is held and, for a person whose
    entry names another time zone (from the company's directory), on their clock too;
    a zone Rollcall does not know changes nothing."""
    enrolled(client, "Fire safety")  # held in Europe/Berlin (tests/api.py)
    client.project()
    signed_in(client, LEARNER)
    assert "; for you " not in client.http.get("/ui/").text
    entry = client.ok("GET", f"/v1/users/{LEARNER}", ADMIN)
    mine = {k: entry[k] for k in ("name", "email", "supervisor_id", "roles", "permissions")}
    for zone, shown in (("America/New_York", True), ("Mars/Olympus_Mons", False)):
        client.ok("PUT", f"/v1/users/{LEARNER}", ADMIN, json={**mine, "timezone": zone})
        for page in ("/ui/", "/ui/catalog"):
            text = client.http.get(page).text
            assert ("; for you " in text) is shown, (zone, page)
            assert ("(UTC-0" in text) is shown, (zone, page)
