"""Bearer tokens: HS256 JWTs whose ``sub`` is the directory user id."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt

from domain.errors import Reason, RollcallError
from domain.user import validate_user_id

ALGORITHM = "HS256"


def issue_token(
    user_id: str, secret: str, now: datetime, ttl: timedelta = timedelta(hours=12)
) -> str:
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl}, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> str:
    """The user id of a valid, unexpired token; ``unauthorized`` otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
        return validate_user_id(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise RollcallError(Reason.UNAUTHORIZED, "The token has expired.") from None
    except (jwt.InvalidTokenError, RollcallError):
        raise RollcallError(Reason.UNAUTHORIZED, "The token is not valid.") from None
