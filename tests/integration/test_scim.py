"""SPEC §10.3, SCIM 2.0: the company's directory provisions Rollcall's over real HTTP,
with the whole system running (the projector answers lists, the relay publishes).

The compliance checker ``scim2-tester`` discovers the service from what it publishes
and runs every check it has against it; then the flows a real directory drives: a
person created from the parts of their name and their manager, found by ``userName``,
deactivated as a leaver (Azure's ``"Replace"``/``"False"`` spelling), deleted, and
created again."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_client import BaseSyncSCIMClient
from scim2_tester import Status, check_server

from rollcall.adapters.clock import ManualClock
from rollcall.adapters.embedded import LocalBroker, MailCatcher
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.scim.resources import CORE, ENTERPRISE
from tests.conftest import T0
from tests.infra import runtime_settings, wait_for
from tests.scenario import ADMIN, World

SECRET = "test-secret-for-the-scim-suite-only-0123456789"
TOKEN = "scim-token-of-the-company-directory-0123456789"
MEDIA = "application/scim+json"


class Checker(BaseSyncSCIMClient):
    """scim2-client over our httpx client (its own engine wants the ``httpx2`` fork,
    which would also change what Starlette's TestClient uses in the rest of the suite)."""

    def __init__(self, http: httpx.Client) -> None:
        super().__init__()
        self.http = http

    def _stays_under_base_url(self, endpoint: str) -> bool:
        url = self.http.build_request("GET", endpoint).url
        base = self.http.base_url
        return url.host == base.host and url.port == base.port and url.path.startswith(base.path)

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, url, **kwargs)


class Directory:
    """The company's directory, as an HTTP client of ``/scim/v2``."""

    def __init__(self, runtime: Runtime, clock: ManualClock) -> None:
        self.runtime = runtime
        self.clock = clock
        self.base = f"{runtime.url}/scim/v2"
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": MEDIA}
        self.http = httpx.Client(base_url=self.base, headers=auth, timeout=30)
        self.api = httpx.Client(base_url=runtime.url, timeout=30)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(MEDIA)
        return response.json()

    def error(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        """An error answer in SCIM's shape (RFC 7644 §3.12)."""
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert body["status"] == str(status)
        return body

    def as_user(self, user: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = issue_token(user, SECRET, datetime.now(UTC))
        headers = {"Authorization": f"Bearer {token}"}
        return self.api.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def directory(
    database_url: str, broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> Iterator[Directory]:
    clock = ManualClock(T0)
    with MailCatcher() as catcher:
        settings = runtime_settings(
            tmp_path,
            database_url,
            broker.bootstrap,
            topic_prefix,
            catcher.port,
            SECRET,
            scim_token=TOKEN,
        )
        with Runtime(settings, clock=clock) as runtime:
            World(runtime.rollcall, clock)  # the directory of tests/scenario.py
            yield Directory(runtime, clock)


def test_the_compliance_checker_passes_every_check_that_applies(directory: Directory) -> None:
    """scim2-tester, from discovery to deletion: no check fails; the ones it skips are
    those the service says do not apply (searching several resource types at once)."""
    client = Checker(directory.http)
    results = check_server(client)
    report = Counter(result.status for result in results)
    print("\nscim2-tester:", {status.name: n for status, n in report.items()})
    for result in results:
        print(f"  {result.status.name:8} {result.title}: {result.reason}")
    failed = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
    assert not failed, "\n".join(f"{r.title}: {r.reason}" for r in failed)
    passed = {r.title for r in results if r.status is Status.SUCCESS}
    for expected in (
        "object_creation",
        "object_query",
        "object_query_without_id",
        "object_replacement",
        "object_deletion",
        "check_replace_attribute",
        "check_add_attribute",
        "check_remove_attribute",
    ):
        assert expected in passed, f"{expected} did not run"
    skipped = {r.reason for r in results if r.status is Status.SKIPPED}
    assert all("several resource types" in reason for reason in skipped), skipped


AZURE_ID = "auth0|5f7c8ec7c33c6c004bbafe82"


def _person(directory: Directory, manager: str, **extra: Any) -> dict[str, Any]:
    """A person as a directory such as Azure's sends them: name in parts, several
    addresses and phone numbers (not kept), the manager by their SCIM id."""
    return {
        "schemas": [CORE, ENTERPRISE],
        "userName": AZURE_ID,
        "externalId": "E-1042",
        "name": {"givenName": "Tina", "familyName": "Temp"},
        "emails": [
            {"value": "tina.private@example.org", "type": "home"},
            {"value": "tina@example.com", "type": "work", "primary": True},
        ],
        "phoneNumbers": [{"value": "+41 44 000 00 00", "type": "work"}],
        "timezone": "Europe/Zurich",
        "locale": "de-CH",
        ENTERPRISE: {"manager": {"value": manager}, "department": "Sales"},
        **extra,
    }


def _find(directory: Directory, user_name: str) -> list[dict[str, Any]]:
    found = directory.ok("GET", "/Users", params={"filter": f'userName eq "{user_name}"'})
    assert found["totalResults"] == len(found.get("Resources", []))
    return list(found.get("Resources", []))


def test_a_directory_provisions_a_person_and_lets_them_go_as_a_leaver(
    directory: Directory,
) -> None:
    """SPEC §10.3: created from what the directory sends, found by userName, their
    supervisor the manager; ``active: false`` makes them a leaver (seat released,
    token 401), DELETE removes them from SCIM's view (history stays), and creating the
    same userName again takes them back, without their seat."""
    (supervisor,) = _find(directory, "sam")
    response = directory.http.post("/Users", json=_person(directory, supervisor["id"]))
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["id"]
    assert response.headers["Location"] == f"{directory.base}/Users/{key}"
    assert response.headers["ETag"] == created["meta"]["version"]
    assert created["userName"] == AZURE_ID
    assert created["name"] == {"formatted": "Tina Temp"}
    assert created["emails"] == [{"value": "tina@example.com"}]
    assert created[ENTERPRISE]["manager"]["value"] == supervisor["id"]
    assert (created["externalId"], created["timezone"], created["locale"]) == (
        "E-1042",
        "Europe/Zurich",
        "de-CH",
    )
    assert "phoneNumbers" not in created
    entry = directory.as_user(ADMIN, "GET", f"/v1/users/{AZURE_ID}").json()
    assert (entry["supervisor_id"], entry["email"], entry["timezone"]) == (
        "sam",
        "tina@example.com",
        "Europe/Zurich",
    )
    assert [u["id"] for u in _find(directory, AZURE_ID)] == [key]
    assert _find(directory, "nobody-here") == []
    taken = directory.error("POST", "/Users", 409, json=_person(directory, supervisor["id"]))
    assert taken["scimType"] == "uniqueness"

    # Tina enrolls, then leaves the company: Azure's spelling of a deactivation.
    training = directory.as_user(ADMIN, "POST", "/v1/trainings", json=_training(directory))
    tid, sid = training.json()["data"]["id"], training.json()["data"]["sessions"][0]["id"]
    enroll = {"session_id": sid}
    path = f"/v1/trainings/{tid}/enrollments"
    assert directory.as_user(AZURE_ID, "POST", path, json=enroll).status_code == 201
    off = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
    }
    patched = directory.ok("PATCH", f"/Users/{key}", json=off)
    assert patched["active"] is False
    assert directory.as_user(AZURE_ID, "GET", "/v1/me/trainings").status_code == 401
    wait_for(lambda: _seat(directory, path) == (False, "user_deactivated"))

    # Deleted: SCIM finds them no more; the directory keeps their history.
    deleted = directory.http.delete(f"/Users/{key}")
    assert deleted.status_code == 204, deleted.text
    directory.error("GET", f"/Users/{key}", 404)
    assert _find(directory, AZURE_ID) == []
    wait_for(lambda: key not in _listed_ids(directory))
    kept = directory.as_user(ADMIN, "GET", f"/v1/users/{AZURE_ID}").json()
    assert kept["active"] is False
    history = directory.as_user(ADMIN, "GET", f"/v1/users/{AZURE_ID}/history").json()
    assert [e["type"] for e in history["events"] if "User" in e["type"]][-2:] == [
        "rollcall.user.UserDeactivated",
        "rollcall.user.UserRemoved",
    ]

    # Hired again: the same entry, access again, no seat given back.
    response = directory.http.post("/Users", json=_person(directory, supervisor["id"]))
    assert response.status_code == 201, response.text
    assert (response.json()["id"], response.json()["active"]) == (key, True)
    assert directory.as_user(AZURE_ID, "GET", "/v1/me/trainings").status_code == 200
    assert _seat(directory, path) == (False, "user_deactivated")


def _seat(directory: Directory, path: str) -> tuple[bool, str | None] | None:
    """Tina's enrollment in the training's list: held or not, and why it ended."""
    listed = directory.as_user(ADMIN, "GET", path)
    if listed.status_code == 404:  # the projector has not seen the training yet
        return None
    mine = [e for e in listed.json()["data"] if e["user_id"] == AZURE_ID]
    return (mine[0]["active"], mine[0]["unenroll_reason"]) if mine else None


def _training(directory: Directory) -> dict[str, Any]:
    starts = directory.clock.now() + timedelta(days=10)
    session = {
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "timezone": "Europe/Zurich",
        "capacity": 5,
    }
    return {"title": "Onboarding", "sessions": [session]}


def _listed_ids(directory: Directory) -> set[str]:
    listed = directory.ok("GET", "/Users", params={"count": 200})
    return {u["id"] for u in listed.get("Resources", [])}


def test_what_the_service_refuses_it_says_in_scims_shape(directory: Directory) -> None:
    """RFC 7644 §3.12 errors: no or a wrong token 401, an unknown id 404, a filter other
    than ``userName eq`` 400 invalidFilter, a changed userName 400 mutability, a
    stale ``If-Match`` 412, an unknown manager 400 invalidValue; nothing stored."""
    stranger = httpx.get(f"{directory.base}/Users", headers={"Authorization": "Bearer nope"})
    assert stranger.status_code == 401
    assert stranger.headers["WWW-Authenticate"] == "Bearer"
    assert stranger.json()["status"] == "401"
    directory.error("GET", f"/Users/{uuid.uuid4()}", 404)
    directory.error("GET", "/Users/not-an-id", 404)
    bad = directory.error("GET", "/Users", 400, params={"filter": 'emails co "example"'})
    assert bad["scimType"] == "invalidFilter"
    unknown = directory.error("POST", "/Users", 400, json=_person(directory, "no-such-manager"))
    assert unknown["scimType"] == "invalidValue"
    assert _find(directory, AZURE_ID) == []
    (lena,) = _find(directory, "lena")
    renamed = {**lena, "userName": "lena2"}
    assert directory.error("PUT", f"/Users/{lena['id']}", 400, json=renamed)["scimType"] == (
        "mutability"
    )
    stale = {"If-Match": 'W/"0"'}
    directory.error("PUT", f"/Users/{lena['id']}", 412, json=lena, headers=stale)
    no_mail = {**lena, "emails": []}
    directory.error("PUT", f"/Users/{lena['id']}", 400, json=no_mail)
    assert directory.ok("GET", f"/Users/{lena['id']}") == lena


def test_hostile_input_is_a_scim_400_and_stores_nothing(directory: Directory) -> None:
    """SPEC §9.7 through SCIM: control characters, a body that is not JSON or not an
    object, an over-long value are 400 in SCIM's shape and store nothing; markup is
    kept as text."""
    (supervisor,) = _find(directory, "sam")
    base = _person(directory, supervisor["id"])
    for body in (
        {**base, "userName": "tina\x00temp"},
        {**base, "name": {"formatted": "Tina\nTemp"}},
        {**base, "timezone": "Europe/Zurich\r\nX-Injected: 1"},
        {**base, "userName": "x" * 256},
        {**base, "emails": [{"value": "not an address"}]},
    ):
        directory.error("POST", "/Users", 400, json=body)
    for raw in (b"{not json", b"[1, 2]", b'"text"'):
        directory.error("POST", "/Users", 400, content=raw)
    assert _find(directory, AZURE_ID) == []
    markup = {**base, "name": {"formatted": "<script>alert(1)</script> & Co"}}
    created = directory.ok("POST", "/Users", 201, json=markup)
    assert created["name"]["formatted"] == "<script>alert(1)</script> & Co"
