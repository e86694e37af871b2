"""SPEC §9.6 in a real browser: Debian's headless Chromium driven by Playwright against
``rollcall serve`` (everything embedded: store, broker, projector, notifier, mail
catcher), as a learner, a supervisor and an administrator use the pages; an axe-core
check of each page; screenshots at desktop and phone width (``tests/browser/shots``,
not committed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from rollcall.adapters.embedded import free_port
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.api.deps import STALE_HEADER
from rollcall.entrypoints.ui.signin import sign_in_link
from tests.infra import wait_for

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parents[2] / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(__file__).parent / "shots"
SECRET = "browser-suite-secret-of-at-least-32-bytes!"
ADMIN, LEARNER, SUPERVISOR = "ada", "lena", "sam"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class Server:
    """``rollcall serve`` in its own directory, with a known token secret."""

    def __init__(self, home: Path, **settings: str) -> None:
        """``settings``: more ``ROLLCALL_*`` variables, by their lowercase names."""
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")},
            "ROLLCALL_JWT_SECRET": SECRET,
            **{f"ROLLCALL_{name.upper()}": value for name, value in settings.items()},
        }
        self.cli = str(Path(sys.executable).with_name("rollcall"))
        self.process = subprocess.Popen(
            [self.cli, "serve", "--port", str(self.port)],
            cwd=home,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(home / "serve.log").open("w"),
        )
        wait_for(self.up, timeout=60, interval=0.2)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [self.cli, *args], cwd=self.home, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def call(self, method: str, path: str, user: str = ADMIN, **kwargs: Any) -> Any:
        token = issue_token(user, SECRET, datetime.now(UTC))
        answer = self.http.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        assert answer.status_code < 400, answer.text
        body = answer.json()
        if method != "GET" and isinstance(body, dict) and isinstance(body.get("position"), int):
            # Another user's pages read the read models, which follow the store through
            # Kafka: a page opened before they include this command showed the state
            # before it (a catalog without the new training's card, seen in CI).
            wait_for(lambda: self.shown(body["position"]), timeout=30)
        return body

    def shown(self, position: int) -> bool:
        """Do the read models (the catalog, the rosters) include this store position?"""
        token = issue_token(ADMIN, SECRET, datetime.now(UTC))
        answer = self.http.get(
            "/v1/trainings",
            params={"min_position": position, "limit": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        return answer.status_code == 200 and STALE_HEADER not in answer.headers

    def link(self, user: str) -> str:
        return sign_in_link(self.url, user, SECRET, datetime.now(UTC))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("serve"))
    try:
        running.run(
            "users", "add", ADMIN, "--name", "Ada Admin", "--email", "ada@example.com", "--admin"
        )
        for user, body in [
            (SUPERVISOR, {"name": "Sam Supervisor", "email": "sam@example.com"}),
            (
                LEARNER,
                {"name": "Lena Learner", "email": "lena@example.com", "supervisor_id": SUPERVISOR},
            ),
        ]:
            running.call("PUT", f"/v1/users/{user}", json=body)
        yield running
    finally:
        running.stop()
        assert "Traceback" not in (running.home / "serve.log").read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def sign_in(browser: Browser, server: Server, user: str, size: dict[str, int] = DESKTOP) -> Page:
    # axe-core is injected into the page, which the pages' own CSP forbids (as it should:
    # the policy itself is checked in test_forged_forms_and_spent_links_are_refused).
    page = browser.new_context(viewport=size, bypass_csp=True).new_page()  # type: ignore[arg-type]
    page.goto(server.link(user))
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    return page


def training(server: Server, title: str, days: tuple[float, ...], capacity: int = 10) -> Any:
    def session(day: float) -> dict[str, Any]:
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=day)
        return {
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "timezone": "Europe/Berlin",
            "location": f"Room {day:g}",
            "capacity": capacity,
        }

    body = {"title": title, "sessions": [session(d) for d in days]}
    return server.call("POST", "/v1/trainings", json=body)["data"]


def accessible(page: Page, name: str) -> None:
    """axe-core on the page: no serious or critical violation; screenshots of it.
    Called on a page that has loaded: axe is added to the document's head, and a page
    still loading after a link was followed may have none yet."""
    page.wait_for_load_state("load")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    serious = [
        {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], json.dumps(serious, indent=1)
    SHOTS.mkdir(exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]


def card(page: Page, title: str) -> Any:
    return page.locator("article.card").filter(has=page.get_by_role("heading", name=title))


def test_a_learner_switches_with_the_dialog_and_unenrolls_with_the_warning(
    server: Server, browser: Browser
) -> None:
    t = training(server, "Forklift basics", (10, 12))
    page = sign_in(browser, server, LEARNER)
    page.get_by_role("navigation").get_by_role("link", name="Catalog").click()
    forklift = card(page, "Forklift basics")
    forklift.get_by_role("button", name="Enroll").first.click()
    expect(card(page, "Forklift basics")).to_contain_text("not started")
    accessible(page, "my-trainings")

    card(page, "Forklift basics").get_by_role("link", name="Select another training time").click()
    expect(page.get_by_role("radio", name="(suggested)")).to_be_checked()
    accessible(page, "switch")
    page.get_by_role("button", name="Switch").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    mine = server.call("GET", "/v1/me/trainings", LEARNER)
    assert [e["session"]["id"] for e in mine] == [t["sessions"][0]["id"]]  # unchanged
    # By keyboard: Enter opens the dialog, focus is inside it, Escape closes it unsent.
    page.get_by_role("button", name="Switch").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.activeElement.closest('dialog') !== null")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.url.endswith("/switch")

    page.get_by_role("button", name="Switch").click()
    page.get_by_role("dialog").get_by_role("button", name="Switch").click()
    expect(card(page, "Forklift basics")).to_contain_text("Room 12")

    # Registration closes (30 days before each session): leaving now is for good.
    closed = {"enabled": True, "amount": 30, "unit": "days"}
    off = {"enabled": False, "amount": 0, "unit": "hours"}
    written = server.call(
        "PUT",
        f"/v1/trainings/{t['id']}/restrictions",
        json={"stop_registration": closed, "stop_cancellation": off},
    )
    page.goto(f"{server.url}/ui/?after={written['position']}")  # once the views have it
    forklift = card(page, "Forklift basics")
    forklift.get_by_label("Reason (optional)").fill("Project deadline")
    forklift.get_by_role("button", name="Unenroll").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("you will not be able to enroll again")
    dialog.get_by_role("button", name="Unenroll").click()
    expect(card(page, "Forklift basics")).to_contain_text("unenrolled")
    history = server.call("GET", f"/v1/users/{LEARNER}/history")["events"]
    assert history[-1]["data"]["reason"] == "Project deadline"


def test_a_supervisor_sees_the_bell_count_rise_and_the_entry(
    server: Server, browser: Browser
) -> None:
    t = training(server, "Fire drill", (20,))
    page = sign_in(browser, server, SUPERVISOR)
    before = int(page.locator("#unread").inner_text())
    server.call(
        "POST",
        f"/v1/trainings/{t['id']}/enrollments",
        LEARNER,
        json={"session_id": t["sessions"][0]["id"]},
    )

    def risen() -> bool:
        page.reload()
        return int(page.locator("#unread").inner_text()) > before

    wait_for(risen, timeout=30, interval=0.5)
    page.get_by_role("button", name="Notifications").click()
    panel = page.get_by_role("region", name="Latest notifications")
    expect(panel).to_contain_text("Lena Learner enrolled in Fire drill")
    accessible(page, "notifications")
    count = int(page.locator("#unread").inner_text())
    panel.get_by_role("button", name="Mark as read: Lena Learner enrolled in Fire drill").click()
    expect(page.locator("#unread")).to_have_text(str(count - 1))
    page.get_by_role("navigation").get_by_role("link", name="My team").click()
    expect(page.get_by_role("table")).to_contain_text("Fire drill")
    accessible(page, "team")


def test_an_administrator_restricts_and_locks_and_the_learner_sees_why(
    server: Server, browser: Browser
) -> None:
    t = training(server, "First aid", (15, 16))
    server.call(
        "POST",
        f"/v1/trainings/{t['id']}/enrollments",
        LEARNER,
        json={"session_id": t["sessions"][0]["id"]},
    )
    admin = sign_in(browser, server, ADMIN)
    admin.get_by_role("navigation").get_by_role("link", name="Administration").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Trainings")
    accessible(admin, "admin-trainings")
    admin.get_by_role("link", name="First aid").click()
    admin.get_by_role("group", name="Stop cancellations").get_by_label("Enabled").check()
    admin.locator("#cancellation-amount").fill("2")
    admin.locator("#cancellation-unit").select_option("days")
    admin.get_by_role("button", name="Save restrictions").click()
    expect(admin.locator("#cancellation-amount")).to_have_value("2")
    first_reminder = admin.get_by_role("group", name="First reminder")
    first_reminder.get_by_label("Send it").check()
    first_reminder.get_by_label("Amount").fill("2")
    first_reminder.get_by_label("Unit").select_option("days")
    admin.get_by_role("button", name="Save reminders").click()
    expect(
        admin.get_by_role("group", name="First reminder").get_by_label("Send it")
    ).to_be_checked()
    reminders = server.call("GET", f"/v1/trainings/{t['id']}")["reminders"]
    assert reminders["before_session"] == [{"amount": 2, "unit": "days"}]
    admin.get_by_role("button", name="Lock the participant list").click()
    expect(admin.locator("#list-state")).to_have_text("locked")
    expect(admin.get_by_role("listitem").filter(has_text="Lena Learner").first).to_be_visible()
    second = admin.locator("section.card").nth(1)
    second.get_by_text("Reschedule or move this session").click()
    second.get_by_label("Location").fill("Hall 3")
    second.get_by_role("button", name="Save the session").click()
    second = admin.locator("section.card").nth(1)
    expect(second.get_by_role("heading", level=3)).to_contain_text("Hall 3")
    second.get_by_label("Reason for cancelling").fill("Trainer ill")
    second.get_by_role("button", name="Cancel this session").click()
    admin.get_by_role("dialog").get_by_role("button", name="Cancel the session").click()
    expect(admin.locator("section.card").nth(1).get_by_role("heading", level=3)).to_contain_text(
        "(cancelled)"
    )
    accessible(admin, "admin-training")

    learner = sign_in(browser, server, LEARNER, PHONE)
    first_aid = card(learner, "First aid")
    expect(first_aid.get_by_role("button", name="Unenroll")).to_be_disabled()
    expect(first_aid).to_contain_text("The participant list of this training is locked.")
    expect(first_aid.get_by_role("button", name="Select another training time")).to_be_disabled()
    learner.get_by_role("navigation").get_by_role("link", name="Catalog").click()
    expect(learner.get_by_role("heading", level=1)).to_have_text("Trainings open for registration")
    accessible(learner, "catalog")


def test_a_full_session_offers_its_waitlist(server: Server, browser: Browser) -> None:
    t = training(server, "Crane license", (25,), capacity=1)
    server.call(
        "POST",
        f"/v1/trainings/{t['id']}/enrollments",
        SUPERVISOR,
        json={"session_id": t["sessions"][0]["id"]},
    )
    page = sign_in(browser, server, LEARNER)
    page.get_by_role("navigation").get_by_role("link", name="Catalog").click()
    card(page, "Crane license").get_by_role("button", name="Join the waitlist").click()
    crane = card(page, "Crane license")
    expect(crane).to_contain_text("number 1 on the waitlist")
    crane.get_by_role("button", name="Leave the waitlist").click()
    expect(card(page, "Crane license")).to_contain_text("unenrolled")


def test_an_administrator_enrolls_a_file_of_people(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    """SPEC §10.3: a CSV of user ids uploaded on a session; the page says what became of
    each person, and passes axe."""
    t = training(server, "Induction", (40,), capacity=1)
    people = tmp_path / "people.csv"
    people.write_text(f"user_id\n{LEARNER}\n{SUPERVISOR}\nnobody-here\n")
    admin = sign_in(browser, server, ADMIN)
    admin.goto(f"{server.url}/ui/admin/trainings/{t['id']}")
    session = admin.locator("section.card").first
    session.get_by_text("Enroll people from a file").click()
    session.get_by_label("A CSV file of user ids").set_input_files(str(people))
    session.get_by_label("When the session is full, put the rest on its waitlist").check()
    session.get_by_role("button", name="Enroll these people").click()
    expect(admin.get_by_role("status")).to_have_text(
        "1 enrolled, 1 on the waitlist, 1 not enrolled."
    )
    expect(admin.get_by_role("row").filter(has_text="nobody-here")).to_contain_text(
        "Not enrolled: user nobody-here not found."
    )
    accessible(admin, "admin-bulk")
    admin.get_by_role("link", name="Back to the training").click()
    expect(admin.locator("section.card").first).to_contain_text("1 of 1 seats taken, 1 waiting")


def test_forged_forms_and_spent_links_are_refused(server: Server, browser: Browser) -> None:
    link = server.link(LEARNER)
    page = browser.new_context().new_page()
    page.goto(link)
    expect(page.get_by_role("heading", name="My trainings")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["rollcall_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert SECRET not in page.content()

    again = httpx.get(link, follow_redirects=False)
    assert again.status_code == 400
    assert "already used" in again.text
    expired = sign_in_link(server.url, LEARNER, SECRET, datetime.now(UTC) - timedelta(hours=1))
    old = httpx.get(expired, follow_redirects=False)
    assert old.status_code == 400
    assert "expired" in old.text
    # A form posted from elsewhere, with the session cookie but without the token.
    forged = httpx.post(
        f"{server.url}/ui/logout",
        cookies={"rollcall_session": session["value"]},
        data={"csrf": "guess"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    unsigned = httpx.get(f"{server.url}/ui/", follow_redirects=False)
    assert unsigned.status_code == 401
    outsider = browser.new_context(bypass_csp=True).new_page()
    outsider.goto(f"{server.url}/ui/")
    expect(outsider.get_by_role("heading", name="Sign in")).to_be_visible()
    accessible(outsider, "sign-in")
    policy = unsigned.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_signing_out_ends_the_session_for_a_copied_cookie_too(
    server: Server, browser: Browser
) -> None:
    """SPEC §10.2 (ASVS 3.3.1): the cookie copied before signing out opens nothing
    afterwards; it opened "My trainings" for eight hours when sign-out only deleted it
    from the browser."""
    page = sign_in(browser, server, LEARNER)
    copied = {c["name"]: c for c in page.context.cookies()}["rollcall_session"]["value"]
    assert httpx.get(f"{server.url}/ui/", cookies={"rollcall_session": copied}).status_code == 200
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    after = httpx.get(f"{server.url}/ui/", cookies={"rollcall_session": copied})
    assert after.status_code == 401
    assert "Sign in" in after.text
    again = browser.new_context()
    again.add_cookies([{"name": "rollcall_session", "value": copied, "url": f"{server.url}/ui/"}])
    stale = again.new_page()
    stale.goto(f"{server.url}/ui/")
    expect(stale.get_by_role("heading", name="Sign in")).to_be_visible()


def test_enrolling_where_one_could_not_cancel_later_asks_first(
    server: Server, browser: Browser
) -> None:
    t = training(server, "Night shift safety", (30,))
    late = {"enabled": True, "amount": 40, "unit": "days"}  # cancellations already stopped
    off = {"enabled": False, "amount": 0, "unit": "hours"}
    server.call(
        "PUT",
        f"/v1/trainings/{t['id']}/restrictions",
        json={"stop_registration": off, "stop_cancellation": late},
    )
    page = sign_in(browser, server, LEARNER)
    page.get_by_role("navigation").get_by_role("link", name="Catalog").click()
    card(page, "Night shift safety").get_by_role("button", name="Enroll").click()
    expect(page.get_by_role("heading", name="Please confirm")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("you will not be able to cancel")
    accessible(page, "confirm")
    page.get_by_role("button", name="Confirm").click()
    expect(card(page, "Night shift safety")).to_contain_text("not started")
