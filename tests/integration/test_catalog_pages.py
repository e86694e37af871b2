"""The catalog a page at a time (SPEC §10.6, R11) through HTTP on both databases: each
training open for registration appears once, placed by its earliest open session, with
its open sessions; filters narrow trainings and sessions alike; the clock at query time
decides what is open; the pages follow the same cursor; bad input is a 422."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import inspect, text

from rollcall.entrypoints.ui.learner import CATALOG_PAGE
from rollcall.projections.projector import shape_is_stale
from tests.api import Client, restrictions, session
from tests.integration.test_pages_input import signed_in
from tests.scenario import ADMIN, LEARNER

DAYS = {"enabled": True, "unit": "days"}


def training(c: Client, title: str, days: list[float], **extra: Any) -> tuple[str, list[str]]:
    body = {"title": title, "sessions": [session(c.clock, d) for d in days], **extra}
    data = c.ok("POST", "/v1/trainings", ADMIN, json=body)["data"]
    return data["id"], [s["id"] for s in data["sessions"]]


def every_page(c: Client, query: str = "", limit: int = 2) -> list[dict[str, Any]]:
    """The whole catalog, following ``next_cursor``; checks ``Link`` on the way."""
    entries: list[dict[str, Any]] = []
    path = f"/v1/catalog?limit={limit}{query}"
    while True:
        response = c.call("GET", path, LEARNER)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= limit
        entries += page["data"]
        if page["next_cursor"] is None:
            assert "Link" not in response.headers
            return entries
        assert len(page["data"]) == limit
        path = f"/v1/catalog?limit={limit}{query}&cursor={page['next_cursor']}"
        assert response.headers["Link"] == f'<{path}>; rel="next"'


def test_each_open_training_once_by_its_earliest_open_session(client: Client) -> None:
    c = client
    late, late_sids = training(c, "Late", [30, 2])  # placed by day 2
    early, _ = training(c, "Early", [1])
    middle, middle_sids = training(c, "Middle", [3, 5, 40])
    cancelled, cancelled_sids = training(c, "Only cancelled", [4])
    c.ok("POST", f"/v1/trainings/{cancelled}/sessions/{cancelled_sids[0]}/cancel", ADMIN, json={})
    c.ok("POST", f"/v1/trainings/{middle}/sessions/{middle_sids[1]}/cancel", ADMIN, json={})
    training(c, "Nothing yet", [])
    locked, _ = training(c, "Locked", [6])
    c.ok("PUT", f"/v1/trainings/{locked}/lock", ADMIN, json={"locked": True})
    c.project()

    entries = every_page(c)
    assert [e["id"] for e in entries] == [early, late, middle, locked]
    by_id = {e["id"]: e for e in entries}
    assert [s["id"] for s in by_id[late]["sessions"]] == late_sids  # day 2, day 30
    assert [s["starts_at"] for s in by_id[late]["sessions"]] == sorted(
        s["starts_at"] for s in by_id[late]["sessions"]
    )
    assert [s["id"] for s in by_id[middle]["sessions"]] == [middle_sids[0], middle_sids[2]]
    assert by_id[locked]["locked"] is True  # listed, and says why it takes nobody (R4)
    assert by_id[locked]["sessions"][0]["open_for_registration"] is False
    assert every_page(c, limit=500) == entries  # the pages add up to the whole list


def test_the_clock_at_query_time_moves_a_training_to_its_next_open_session(
    client: Client,
) -> None:
    """R11, R14: a session leaves the catalog at its registration deadline even before a
    DeadlinePassed is recorded; its training moves to the place of its next one."""
    c = client
    moving, sids = training(c, "Moving", [2, 8])
    steady, _ = training(c, "Steady", [4])
    c.ok("PUT", f"/v1/trainings/{moving}/restrictions", ADMIN,
         json=restrictions({**DAYS, "amount": 1}, None))  # fmt: skip
    c.project()
    assert [e["id"] for e in every_page(c)] == [moving, steady]
    c.clock.advance(timedelta(days=1, hours=1))  # day 2's registration closed at day 1
    later = every_page(c)
    assert [e["id"] for e in later] == [steady, moving]
    assert [s["id"] for s in later[1]["sessions"]] == [sids[1]]
    c.clock.advance(timedelta(days=10))
    assert every_page(c) == []


def test_filters_narrow_trainings_and_their_sessions(client: Client) -> None:
    c = client
    percent, _ = training(c, "100% Forklift", [3])
    fork, fork_sids = training(c, "forklift basics", [1, 9, 20])
    other, _ = training(c, "Fire safety", [2])
    c.project()
    assert [e["id"] for e in every_page(c, "&q=FORK")] == [fork, percent]
    assert [e["id"] for e in every_page(c, "&q=" + quote("0%"))] == [percent]
    assert every_page(c, "&q=" + quote("_")) == []  # no title has an underscore

    now = c.clock.now()
    window = f"&from={quote((now + timedelta(days=5)).isoformat())}" + (
        f"&to={quote((now + timedelta(days=10)).isoformat())}"
    )
    (entry,) = every_page(c, window)
    assert (entry["id"], [s["id"] for s in entry["sessions"]]) == (fork, [fork_sids[1]])
    # tests/api.session names each room after its day
    assert [e["id"] for e in every_page(c, "&location=room%202")] == [other, fork]
    by_location = {e["id"]: e for e in every_page(c, "&location=room%202")}
    assert [s["location"] for s in by_location[fork]["sessions"]] == ["Room 20"]


def test_bad_paging_and_filters_are_refused_with_422(client: Client) -> None:
    training(client, "Forklift", [3])
    client.project()
    for query in (
        "cursor=not-a-cursor",
        "cursor=WyJ4Il0",  # a list of one value: not this list's key
        "limit=0",
        "limit=501",
        "from=2027-03-01T09:00:00",  # no offset: an instant must say where it is
        "to=tomorrow",
        "q=" + "x" * 201,
    ):
        answer = client.call("GET", f"/v1/catalog?{query}", LEARNER)
        assert answer.status_code == 422, (query, answer.text)


def test_the_catalog_page_pages_and_searches(client: Client) -> None:
    """The learner's page (docs/pages.md): 20 trainings to a page, "More trainings"
    follows the cursor, a title search narrows it and keeps the search while paging;
    a cursor the page did not give out leads back to the first page, saying so."""
    c = client
    titles = [f"Course {n:02d}" + (" forklift" if n % 2 else "") for n in range(25)]
    for n, title in enumerate(titles):
        training(c, title, [1 + n / 24])
    c.project()
    signed_in(c, LEARNER)
    first = c.http.get("/ui/catalog")
    assert first.status_code == 200
    shown = re.findall(r"<h2 id=\"c-[^\"]+\">([^<]+)</h2>", first.text)
    assert shown == titles[:CATALOG_PAGE]
    more = re.search(r'<a href="([^"]+)" rel="next">More trainings</a>', first.text)
    assert more is not None
    rest = c.http.get(html.unescape(more.group(1))).text
    assert re.findall(r"<h2 id=\"c-[^\"]+\">([^<]+)</h2>", rest) == titles[CATALOG_PAGE:]
    assert 'rel="next"' not in rest
    assert "First page" in rest

    search = c.http.get("/ui/catalog", params={"q": "FORKLIFT"}).text
    found = re.findall(r"<h2 id=\"c-[^\"]+\">([^<]+)</h2>", search)
    assert found == [t for t in titles if "forklift" in t]  # 12: one page
    assert 'value="FORKLIFT"' in search
    none = c.http.get("/ui/catalog", params={"q": "<b>nothing</b>"}).text
    assert "No training open for registration has “&lt;b&gt;nothing&lt;/b&gt;”" in none
    forged = c.http.get("/ui/catalog", params={"cursor": "forged", "q": "fork"})
    assert forged.status_code == 200
    assert str(forged.url).endswith("/ui/catalog?q=fork&error=validation_error")
    assert re.findall(r"<h2 id=\"c-[^\"]+\">([^<]+)</h2>", forged.text) == found
    assert 'role="alert"' in forged.text or 'class="alert"' in forged.text


def test_titles_have_a_trigram_index_on_postgresql_only(client: Client) -> None:
    """``q`` is answered from ``ix_rm_trainings_title`` on PostgreSQL (pg_trgm, made by
    migration r0009); SQLite has no such index, and neither store then takes its read
    models for an older release's and rebuilds them at every start."""
    engine = client.engine
    found = {i["name"]: i for i in inspect(engine).get_indexes("rm_trainings")}
    on_postgres = engine.dialect.name == "postgresql"
    assert ("ix_rm_trainings_title" in found) is on_postgres
    if on_postgres:
        with engine.connect() as conn:
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_rm_trainings_title'")
            ).scalar_one()
        assert "USING gin (lower((title)::text) gin_trgm_ops)" in definition
    assert shape_is_stale(engine) is False
