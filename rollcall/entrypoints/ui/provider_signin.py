"""Signing in to the pages through the company's OpenID provider (SPEC §10.3): the
authorization code flow with PKCE, Rollcall a confidential client of the provider.

``/ui/login`` sends the browser to the provider with a fresh ``state``, ``nonce`` and
PKCE challenge, kept for ten minutes in a cookie sealed with the server's secret (only
for ``/ui/callback``, ``SameSite=Lax`` so the provider's redirect brings it). The
callback checks the state, that the answer names our provider as its issuer (RFC 9207)
when it says, exchanges the code with the verifier and the client's secret, and
checks the ID token: the provider's signature, this client as audience, this sign-in's
nonce. Its user (``ROLLCALL_OIDC_USER_CLAIM``) must be an active directory user; then
the session of §9.6 starts as for a sign-in link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.deps import Api
from rollcall.entrypoints.api.oidc import TIMEOUT_SECONDS, OidcTokens, refused

STATE_COOKIE = "rollcall_login"
STATE_TTL = timedelta(minutes=10)
STATE_AUDIENCE = "rollcall-login"


def configured(services: Api) -> bool:
    oidc = services.tokens.oidc
    return oidc is not None and bool(oidc.settings.client_id)


def _provider(services: Api) -> OidcTokens:
    oidc = services.tokens.oidc
    if oidc is None or not oidc.settings.client_id:
        raise refused("No OpenID provider is configured for the pages.")
    return oidc


def _redirect_uri(request: Request) -> str:
    return str(request.url_for("callback"))


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def start(request: Request, services: Api) -> Response:
    """To the provider's authorization endpoint, this sign-in's secrets in a cookie."""
    oidc = _provider(services)
    endpoint = str(oidc.discovered()["authorization_endpoint"])
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": oidc.settings.client_id,
        "redirect_uri": _redirect_uri(request),
        "scope": "openid",
        "state": state,
        "nonce": nonce,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    answer = RedirectResponse(f"{endpoint}?{urlencode(query)}", status_code=303)
    now = datetime.now(UTC)
    sealed = jwt.encode(
        {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "aud": STATE_AUDIENCE,
            "iat": now,
            "exp": now + STATE_TTL,
        },
        services.jwt_secret,
        algorithm="HS256",
    )
    answer.set_cookie(
        STATE_COOKIE,
        sealed,
        max_age=int(STATE_TTL.total_seconds()),
        path="/ui/callback",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return answer


def finish(
    request: Request, services: Api, code: str, state: str, iss: str | None, error: str
) -> str:
    """The active directory user this callback signs in; ``RollcallError`` otherwise."""
    oidc = _provider(services)
    if error:
        raise refused(f"the provider answered {error[:100]}")
    kept = _kept(request, services)
    if not state or not hmac.compare_digest(state, str(kept["state"])):
        raise refused("this answer is not of the sign-in this browser started")
    if iss is not None and iss != oidc.settings.issuer:
        raise refused("the answer comes from another issuer")
    id_token = _exchanged(oidc, code, str(kept["verifier"]), _redirect_uri(request))
    user_id = oidc.person_of(id_token, str(oidc.settings.client_id), str(kept["nonce"]))
    if not services.rollcall.is_known_user(user_id):
        raise refused(f"{user_id} has no active account in Rollcall")
    return user_id


def _kept(request: Request, services: Api) -> dict[str, Any]:
    sealed = request.cookies.get(STATE_COOKIE)
    if not sealed:
        raise refused("this browser started no sign-in (or took more than 10 minutes)")
    try:
        found: dict[str, Any] = jwt.decode(
            sealed, services.jwt_secret, algorithms=["HS256"], audience=STATE_AUDIENCE
        )
    except jwt.InvalidTokenError:
        raise refused("this browser's sign-in expired; start again") from None
    return found


def _exchanged(oidc: OidcTokens, code: str, verifier: str, redirect_uri: str) -> str:
    """The ID token the provider gives for ``code`` and the PKCE verifier."""
    endpoint = str(oidc.discovered()["token_endpoint"])
    settings = oidc.settings
    try:
        answer = httpx.post(
            endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(str(settings.client_id), settings.client_secret or ""),
            timeout=TIMEOUT_SECONDS,
        )
    except httpx.HTTPError:
        raise RollcallError(Reason.UNAVAILABLE, details={"retry_after": 2}) from None
    if answer.status_code != 200:
        raise refused("the provider refused the sign-in's code")
    id_token = answer.json().get("id_token")
    if not isinstance(id_token, str):
        raise refused("the provider gave no ID token")
    return id_token
