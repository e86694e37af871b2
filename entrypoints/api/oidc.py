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

import threading
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from domain.errors import Reason, RollcallError, ValidationFailed
from domain.user import validate_user_id

ALGORITHMS = ("RS256", "PS256", "ES256")
DISCOVERY = "/.well-known/openid-configuration"
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    user_claim: str = "sub"


def refused(message: str) -> RollcallError:
    return RollcallError(Reason.UNAUTHORIZED, message)


class OidcTokens:
    """Verifies the provider's access tokens; one per API process (thread-safe)."""

    def __init__(self, settings: OidcSettings, max_hours: float, cooldown: float = 30.0) -> None:
        self.settings = settings
        self.max_hours = max_hours
        self.cooldown = cooldown
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def user_of(self, token: str) -> str:
        """The user id a valid token of the provider names; 401 otherwise (503 while
        the provider cannot be asked for its keys)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise refused("The token is not valid.") from None
        if header.get("alg") not in ALGORITHMS:
            raise refused("The token is not signed with RS256, PS256 or ES256.")
        key = self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                issuer=self.settings.issuer,
                audience=self.settings.audience,
                options={"require": ["exp", "iat", "iss", "aud"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise refused("The token has expired.") from None
        except jwt.InvalidTokenError:
            raise refused("The token is not valid.") from None
        if claims["exp"] - claims["iat"] > self.max_hours * 3600:
            raise refused(f"The token lives longer than {self.max_hours:g} hours.")
        subject = claims.get(self.settings.user_claim)
        try:
            return validate_user_id(subject)  # type: ignore[arg-type]
        except ValidationFailed:
            raise refused(f"The token's {self.settings.user_claim} is not a user id.") from None

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
        with self._lock:
            if self._keys is None:
                self._keys = jwt.PyJWKClient(
                    self._jwks_uri(),
                    lifespan=300,
                    timeout=TIMEOUT_SECONDS,
                    cooldown_duration=self.cooldown,
                )
            return self._keys

    def _jwks_uri(self) -> str:
        url = self.settings.issuer.rstrip("/") + DISCOVERY
        try:
            answer = httpx.get(url, timeout=TIMEOUT_SECONDS)
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError):
            raise RollcallError(Reason.UNAVAILABLE, details={"retry_after": 2}) from None
        if document.get("issuer") != self.settings.issuer or "jwks_uri" not in document:
            raise refused("The OpenID provider's discovery document names another issuer.")
        return str(document["jwks_uri"])
