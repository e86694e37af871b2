"""Bearer tokens of the company's OpenID provider (SPEC §10.3): Rollcall as a resource
server.

The provider is found by discovery (``{issuer}/.well-known/openid-configuration``) the
first time a token of it arrives; its keys come from the ``jwks_uri`` there, through
PyJWT's ``PyJWKClient``: the key set is cached for five minutes and fetched again for a
key id it does not hold (a rotation), at most once per ``cooldown`` seconds, so tokens
naming made-up key ids cannot make Rollcall hammer the provider. A token must be signed
with RS256, PS256 or ES256 by a key of that set, name the configured issuer and
audience, carry ``exp`` and ``iat``, and live no longer than tokens may; its user is
the configured claim (``sub`` unless told otherwise). The provider being unreachable
is a passing fault (503), never a reason to let a token in.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from rollcall.application.access import SCOPES, SERVICE_PREFIX, service_scopes
from rollcall.domain.errors import Reason, RollcallError, ValidationFailed
from rollcall.domain.user import validate_user_id

ALGORITHMS = ("RS256", "PS256", "ES256")
DISCOVERY = "/.well-known/openid-configuration"
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    user_claim: str = "sub"
    client_id: str | None = None
    """Signing in to the pages through the provider (authorization code with PKCE)."""
    client_secret: str | None = None


def _scopes(claims: dict[str, Any]) -> list[str]:
    """``scope`` (RFC 9068: one string, space-separated) or ``scp`` (a list)."""
    scope, scp = claims.get("scope"), claims.get("scp")
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scp, list):
        return [s for s in scp if isinstance(s, str)]
    return []


def refused(message: str) -> RollcallError:
    return RollcallError(Reason.UNAUTHORIZED, message)


class OidcTokens:
    """Verifies the provider's access tokens; one per API process (thread-safe)."""

    def __init__(
        self,
        settings: OidcSettings,
        max_hours: float,
        cooldown: float = 30.0,
        is_user: Callable[[str], bool] = lambda user_id: True,
    ) -> None:
        """``is_user``: whether a subject is an active directory user (a token of a
        client that names one is that person's, not the service's)."""
        self.settings = settings
        self.max_hours = max_hours
        self.cooldown = cooldown
        self.is_user = is_user
        self._keys: jwt.PyJWKClient | None = None
        self._discovery: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def user_of(self, token: str) -> str:
        """The user id a valid token of the provider names; 401 otherwise (503 while
        the provider cannot be asked for its keys)."""
        claims = self._verified(token, self.settings.audience, ["exp", "iat", "iss", "aud"])
        if claims["exp"] - claims["iat"] > self.max_hours * 3600:
            raise refused(f"The token lives longer than {self.max_hours:g} hours.")
        subject = claims.get(self.settings.user_claim)
        service = self._service(claims, subject)
        if service is not None:
            return service
        try:
            return validate_user_id(subject)  # type: ignore[arg-type]
        except ValidationFailed:
            raise refused(f"The token's {self.settings.user_claim} is not a user id.") from None

    def _verified(self, token: str, audience: str, required: list[str]) -> dict[str, Any]:
        """The claims of ``token`` once signed with one of the provider's keys, by one of
        the accepted algorithms, for ``audience``, from the issuer, unexpired."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise refused("The token is not valid.") from None
        if algorithm not in ALGORITHMS:
            raise refused("The token is not signed with RS256, PS256 or ES256.")
        key = self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                issuer=self.settings.issuer,
                audience=audience,
                options={"require": required},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise refused("The token has expired.") from None
        except jwt.InvalidTokenError:
            raise refused("The token is not valid.") from None
        return claims

    def _service(self, claims: dict[str, Any], subject: Any) -> str | None:
        """``service:<client_id>`` for a service's own token: one that names a client
        (``client_id`` or ``azp``) and carries Rollcall's scopes, and no directory user
        (SPEC §10.3). Its scopes are what the request may do (``service_scopes``)."""
        client = claims.get("client_id") or claims.get("azp")
        scopes = frozenset(_scopes(claims)) & frozenset(SCOPES)
        if not isinstance(client, str) or not scopes:
            return None
        if isinstance(subject, str) and self.is_user(subject):
            return None  # a person's token, issued to that client
        if not client or len(client) > 200 or any(ord(c) < 32 or c == "/" for c in client):
            raise refused("The token's client_id is not valid.")
        service_scopes.set(scopes)
        return f"{SERVICE_PREFIX}{client}"

    def _signing_key(self, token: str) -> jwt.PyJWK:
        keys = self._key_set()
        try:
            return keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise RollcallError(Reason.UNAVAILABLE, details={"retry_after": 2}) from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError):
            raise refused("The token is signed with a key the provider does not hold.") from None

    def _key_set(self) -> jwt.PyJWKClient:
        """The provider's key set, found by discovery on first use (not cached while
        the provider cannot be reached)."""
        jwks_uri = str(self.discovered()["jwks_uri"])
        with self._lock:
            if self._keys is None:
                self._keys = jwt.PyJWKClient(
                    jwks_uri, lifespan=300, timeout=TIMEOUT_SECONDS, cooldown_duration=self.cooldown
                )
            return self._keys

    def discovered(self) -> dict[str, Any]:
        """The provider's discovery document (kept once read): where its keys, its
        authorization and its token endpoints are."""
        with self._lock:
            if self._discovery is None:
                self._discovery = self._discover()
            return self._discovery

    def _discover(self) -> dict[str, Any]:
        url = self.settings.issuer.rstrip("/") + DISCOVERY
        try:
            answer = httpx.get(url, timeout=TIMEOUT_SECONDS)
            answer.raise_for_status()
            document: dict[str, Any] = answer.json()
        except (httpx.HTTPError, ValueError):
            raise RollcallError(Reason.UNAVAILABLE, details={"retry_after": 2}) from None
        if document.get("issuer") != self.settings.issuer or "jwks_uri" not in document:
            raise refused("The OpenID provider's discovery document names another issuer.")
        return document

    def person_of(self, id_token: str, client_id: str, nonce: str) -> str:
        """The user an ID token from the sign-in names (SPEC §10.3): signed by the
        provider, for this client, of this sign-in (``nonce``); 401 otherwise."""
        claims = self._verified(id_token, client_id, ["exp", "iat", "iss", "aud", "nonce"])
        if not hmac.compare_digest(str(claims["nonce"]), nonce):
            raise refused("The ID token is of another sign-in.")
        try:
            return validate_user_id(claims.get(self.settings.user_claim))  # type: ignore[arg-type]
        except ValidationFailed:
            raise refused(f"The ID token's {self.settings.user_claim} is not a user id.") from None
