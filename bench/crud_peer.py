"""The peer Rollcall's HTTP enroll is measured against (``bench/http_cpu.py``): the
enrollment service a team would write by hand with FastAPI and psycopg, no events.

``POST /v1/trainings/{tid}/enrollments`` checks the bearer token (HS256, as Rollcall's),
validates the body, locks the session's row (``SELECT ... FOR UPDATE``), refuses an
unknown or inactive learner, a second enrollment in the training and a full session,
inserts the enrollment and answers it as JSON. Its tables are made by ``schema``.

    ROLLCALL_DATABASE_URL=postgresql://... uvicorn bench.crud_peer:app
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import FastAPI, Header, HTTPException
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

SCHEMA = """
CREATE TABLE IF NOT EXISTS crud_users (user_id text PRIMARY KEY, active boolean NOT NULL);
CREATE TABLE IF NOT EXISTS crud_sessions (
    session_id uuid PRIMARY KEY, training_id uuid NOT NULL, capacity int,
    starts_at timestamptz NOT NULL, taken int NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS crud_enrollments (
    enrollment_id uuid PRIMARY KEY, training_id uuid NOT NULL, session_id uuid NOT NULL,
    user_id text NOT NULL, enrolled_at timestamptz NOT NULL,
    UNIQUE (training_id, user_id)
);
"""


class EnrollIn(BaseModel):
    session_id: uuid.UUID


class EnrollmentOut(BaseModel):
    id: uuid.UUID
    training_id: uuid.UUID
    session_id: uuid.UUID
    user_id: str
    enrolled_at: datetime


app = FastAPI()
pool: ConnectionPool | None = None
SECRET = os.environ.get("ROLLCALL_JWT_SECRET", "")


def connections() -> ConnectionPool:
    global pool
    if pool is None:
        url = os.environ["ROLLCALL_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
        pool = ConnectionPool(url, min_size=5, max_size=10, open=True)
    return pool


def user_of(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(401, "missing token")
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="rollcall-api")
    except jwt.PyJWTError:
        raise HTTPException(401, "invalid token") from None
    return str(claims["sub"])


@app.post("/v1/trainings/{training_id}/enrollments", status_code=201)
def enroll(
    training_id: uuid.UUID,
    body: EnrollIn,
    authorization: Annotated[str | None, Header()] = None,
) -> EnrollmentOut:
    user = user_of(authorization)
    now = datetime.now(UTC)
    with connections().connection() as conn, conn.transaction():
        found = conn.execute("SELECT active FROM crud_users WHERE user_id = %s", (user,)).fetchone()
        if found is None or not found[0]:
            raise HTTPException(403, "unknown or inactive user")
        session = conn.execute(
            "SELECT capacity, taken, starts_at FROM crud_sessions "
            "WHERE session_id = %s AND training_id = %s FOR UPDATE",
            (body.session_id, training_id),
        ).fetchone()
        if session is None:
            raise HTTPException(404, "session not found")
        capacity, taken, starts_at = session
        if starts_at <= now:
            raise HTTPException(409, "session started")
        if capacity is not None and taken >= capacity:
            raise HTTPException(409, "session full")
        enrollment_id = uuid.uuid4()
        inserted = conn.execute(
            "INSERT INTO crud_enrollments VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (training_id, user_id) DO NOTHING",
            (enrollment_id, training_id, body.session_id, user, now),
        )
        if inserted.rowcount == 0:
            raise HTTPException(409, "already enrolled")
        conn.execute(
            "UPDATE crud_sessions SET taken = taken + 1 WHERE session_id = %s",
            (body.session_id,),
        )
    return EnrollmentOut(
        id=enrollment_id,
        training_id=training_id,
        session_id=body.session_id,
        user_id=user,
        enrolled_at=now,
    )


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"status": "ok"}
