"""Bearer tokens: HS256 JWTs whose ``sub`` is the directory user id (SPEC §7, §9.7).

Tokens name their issuer and audience, both checked, and live at most
``ROLLCALL_TOKEN_MAX_HOURS``: a token minted for longer is refused even if its
signature is good. The secret must be at least 32 bytes (HS256's key size).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt

from rollcall.domain.errors import Reason, RollcallError, ValidationFailed
from rollcall.domain.user import validate_user_id
from rollcall.entrypoints.api.oidc import OidcTokens

ALGORITHM = "HS256"
ISSUER = "rollcall"
AUDIENCE = "rollcall-api"
SECRET_MIN_BYTES = 32
DEFAULT_MAX_HOURS = 24.0


def check_secret(secret: str) -> str:
    if len(secret.encode()) < SECRET_MIN_BYTES:
        raise ValidationFailed(
            f"ROLLCALL_JWT_SECRET must be at least {SECRET_MIN_BYTES} bytes "
            f"(it has {len(secret.encode())})"
        )
    return secret


def issue_token(
    user_id: str, secret: str, now: datetime, ttl: timedelta = timedelta(hours=12)
) -> str:
    claims = {"sub": user_id, "iat": now, "exp": now + ttl, "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str, max_hours: float = DEFAULT_MAX_HOURS) -> str:
    """The user id of a valid, unexpired token; ``unauthorized`` otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "iat", "iss", "aud"]},
        )
        if claims["exp"] - claims["iat"] > max_hours * 3600:
            raise RollcallError(
                Reason.UNAUTHORIZED, f"The token lives longer than {max_hours:g} hours."
            )
        return validate_user_id(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise RollcallError(Reason.UNAUTHORIZED, "The token has expired.") from None
    except RollcallError as error:
        if error.reason is Reason.UNAUTHORIZED:
            raise
        raise RollcallError(Reason.UNAUTHORIZED, "The token is not valid.") from None
    except jwt.InvalidTokenError:
        raise RollcallError(Reason.UNAUTHORIZED, "The token is not valid.") from None


class Tokens:
    """Every bearer token the API accepts: HS256 with the shared secret (the embedded
    run and ``rollcall token``) and, when an OpenID provider is configured, its tokens
    (``rollcall/entrypoints/api/oidc.py``), told apart by their algorithm."""

    def __init__(self, secret: str, max_hours: float, oidc: OidcTokens | None = None) -> None:
        self.secret = secret
        self.max_hours = max_hours
        self.oidc = oidc

    def user_of(self, token: str) -> str:
        if self.oidc is not None:
            try:
                algorithm = jwt.get_unverified_header(token).get("alg")
            except jwt.InvalidTokenError:
                raise RollcallError(Reason.UNAUTHORIZED, "The token is not valid.") from None
            if algorithm != ALGORITHM:
                return self.oidc.user_of(token)
        return verify_token(token, self.secret, self.max_hours)
