"""SPEC §10.3: signing in to the pages through the company's OpenID provider, in
Debian's Chromium, against a certified provider run locally (npm's ``oidc-provider``,
installed by ``make browser``): authorization code with PKCE, the provider's own login
and consent pages, back into a session of §9.6. An answer of another sign-in (its
``state``) or another issuer, and a person without an account, are refused."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from rollcall.adapters.embedded import free_port
from tests.browser.test_pages import Server, accessible, browser
from tests.infra import wait_for

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module-scoped Chromium of test_pages.py
ROOT = Path(__file__).resolve().parents[2]
INSTALLED = ROOT / ".cache" / "oidc"
CLIENT_ID, CLIENT_SECRET = "rollcall-pages", "a-client-secret-for-the-test-only"


@pytest.fixture(scope="module")
def signed_through_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (INSTALLED / "node_modules" / "oidc-provider").exists():
        pytest.fail("npm's oidc-provider is missing: `make test` installs it into .cache/oidc")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    home = tmp_path_factory.mktemp("provider")
    server = Server(
        home,
        oidc_issuer=issuer,
        oidc_audience="rollcall-api",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    script = INSTALLED / "oidc_provider.mjs"  # beside its node_modules, where node looks
    shutil.copy(Path(__file__).with_name("oidc_provider.mjs"), script)
    provider = subprocess.Popen(
        ["node", str(script)],
        cwd=INSTALLED,
        env={"PORT": str(port), "REDIRECT": f"{server.url}/ui/callback", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=(home / "provider.log").open("w"),
    )
    try:
        wait_for(lambda: _answers(f"{issuer}/.well-known/openid-configuration"), timeout=30)
        server.run("users", "add", "lena", "--name", "Lena Learner", "--email", "lena@example.com")
        yield server
    finally:
        provider.terminate()
        provider.wait(timeout=10)
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_learner_signs_in_through_the_provider(
    signed_through_provider: Server, browser: Browser
) -> None:
    server = signed_through_provider
    page = browser.new_context(bypass_csp=True).new_page()
    page.goto(f"{server.url}/ui/login")
    page.locator("input[name=login]").fill("lena")
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()
    page.locator("button[type=submit]").click()  # the provider's consent
    expect(page.get_by_role("heading", level=1)).to_have_text("My trainings")
    expect(page.get_by_role("button", name="Sign out (Lena Learner)")).to_be_visible()
    accessible(page, "signed-in-through-provider")


def test_a_person_without_an_account_is_not_let_in(
    signed_through_provider: Server, browser: Browser
) -> None:
    server = signed_through_provider
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/ui/login")
    page.locator("input[name=login]").fill("mallory")
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()
    page.locator("button[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text("mallory has no active account")


def test_an_answer_of_another_sign_in_or_another_issuer_is_refused(
    signed_through_provider: Server,
) -> None:
    server = signed_through_provider
    with httpx.Client(base_url=server.url) as browser_like:
        started = browser_like.get("/ui/login")
        assert started.status_code == 303
        asked = parse_qs(urlsplit(started.headers["location"]).query)
        assert asked["code_challenge_method"] == ["S256"]
        assert asked["client_id"] == [CLIENT_ID]
        state = asked["state"][0]
        for query in (
            {"code": "x", "state": "another-sign-in"},
            {"code": "x", "state": state, "iss": "https://evil.example.com"},
        ):
            refused = browser_like.get("/ui/callback", params=query)
            assert refused.status_code == 400
            assert "Sign-in failed" in refused.text
            assert "rollcall_session" not in refused.cookies
    with httpx.Client(base_url=server.url) as stranger:  # never started one
        refused = stranger.get("/ui/callback", params={"code": "x", "state": "y"})
        assert refused.status_code == 400
