"""Signing in to the web pages (SPEC §9.6): one-time links, session cookies, CSRF.

``rollcall login-link USER_ID`` prints a link carrying a short-lived signed token
(15 minutes) with an id of its own; opening it records that id, so a link works once
and a second use is refused, and sets the session cookie: a signed token naming the
user and a random session id, HttpOnly, SameSite=Strict, Secure when the request came
over HTTPS, scoped to ``/ui``. Every form carries a CSRF token derived from the
session id with the server's secret, checked on each POST; a page never shows the
secret, the bearer tokens or the cookie's value.

The server keeps each session (``ui_sessions``, SPEC §10.2): a cookie is good only
while its session is recorded and not ended. Signing out ends it, so a copy of the
cookie taken before is refused afterwards; deactivating a user ends all of theirs;
a new secret ends every session, since no cookie signed with the old one verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from rollcall.adapters.db import Instant
from rollcall.domain.user import validate_user_id
from rollcall.entrypoints.api.auth import ALGORITHM, ISSUER

LINK_AUDIENCE = "rollcall-ui-sign-in"
SESSION_AUDIENCE = "rollcall-ui-session"
LINK_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=8)
COOKIE = "rollcall_session"

_metadata = MetaData()  # made by rollcall/adapters/migrations (r0003), never by create_all
used_links = Table(
    "ui_sign_in_links",
    _metadata,
    Column("link_id", String(64), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=False),
)
sessions = Table(  # made by rollcall/adapters/migrations (r0007)
    "ui_sessions",
    _metadata,
    Column("session_id", String(64), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("created_at", Instant, nullable=False),
    Column("expires_at", Instant, nullable=False),
    Column("ended_at", Instant),
)


class SignInRefused(Exception):
    """The link or the cookie is not (or no longer) good: a sentence for the page."""


@dataclass(frozen=True)
class Session:
    user_id: str
    session_id: str
    csrf: str


def sign_in_link(base_url: str, user_id: str, secret: str, now: datetime) -> str:
    """A one-time link to sign ``user_id`` in, valid for ``LINK_TTL``."""
    claims = {
        "sub": validate_user_id(user_id),
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "exp": now + LINK_TTL,
        "iss": ISSUER,
        "aud": LINK_AUDIENCE,
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return f"{base_url.rstrip('/')}/ui/login?token={token}"


def redeem(engine: Engine, token: str, secret: str, now: datetime) -> str:
    """The user a link signs in, recording its use; refused when expired, forged or used."""
    claims = _decode(token, secret, LINK_AUDIENCE, "This sign-in link")
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(used_links).values(link_id=claims["jti"], user_id=claims["sub"], used_at=now)
            )
    except IntegrityError:
        raise SignInRefused("This sign-in link was already used. Ask for a new one.") from None
    return str(claims["sub"])


def new_session(engine: Engine, user_id: str, secret: str, now: datetime) -> str:
    """Start a session: recorded by the server, and the cookie's value that names it."""
    session_id = secrets.token_urlsafe(18)
    with engine.begin() as conn:
        conn.execute(
            delete(sessions).where(sessions.c.expires_at < now - SESSION_TTL)  # long gone
        )
        conn.execute(
            insert(sessions).values(
                session_id=session_id, user_id=user_id, created_at=now, expires_at=now + SESSION_TTL
            )
        )
    claims = {
        "sub": user_id,
        "sid": session_id,
        "iat": now,
        "exp": now + SESSION_TTL,
        "iss": ISSUER,
        "aud": SESSION_AUDIENCE,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def session_of(engine: Engine, cookie: str | None, secret: str, now: datetime) -> Session | None:
    """The session a cookie names, while the server holds it open; None otherwise."""
    if not cookie:
        return None
    try:
        claims = _decode(cookie, secret, SESSION_AUDIENCE, "Your session")
    except SignInRefused:
        return None
    session_id, user_id = str(claims["sid"]), str(claims["sub"])
    with engine.connect() as conn:
        open_ = conn.execute(
            select(sessions.c.session_id).where(
                sessions.c.session_id == session_id,
                sessions.c.user_id == user_id,
                sessions.c.ended_at.is_(None),
                sessions.c.expires_at > now,
            )
        ).first()
    if open_ is None:
        return None
    return Session(user_id, session_id, csrf_token(session_id, secret))


def end_session(engine: Engine, session_id: str, now: datetime) -> None:
    """Sign out: the session ends on the server, whatever copies of its cookie exist."""
    with engine.begin() as conn:
        conn.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id, sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )


def end_sessions_of(engine: Engine, user_id: str, now: datetime) -> int:
    """End every open session of a user (a deactivation); returns how many."""
    with engine.begin() as conn:
        ended = conn.execute(
            update(sessions)
            .where(sessions.c.user_id == user_id, sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )
    return int(ended.rowcount)


def csrf_token(session_id: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")


def _decode(token: str, secret: str, audience: str, what: str) -> dict[str, object]:
    try:
        claims: dict[str, object] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=audience,
            options={"require": ["sub", "exp", "iat", "iss", "aud"]},
        )
        validate_user_id(str(claims["sub"]))
    except jwt.ExpiredSignatureError:
        raise SignInRefused(f"{what} has expired. Ask for a new sign-in link.") from None
    except Exception:
        raise SignInRefused(f"{what} is not valid.") from None
    return claims
