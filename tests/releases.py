"""The stores the earlier releases left behind (``tests/fixtures/releases``, made by
``make.py`` there with those releases' own code), loaded into a fresh database."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

FIXTURES = Path(__file__).parent / "fixtures" / "releases"
RELEASES = ("r1", "r2")
"""The first release (commit 453002d) and the second (c752a54)."""


def fixture(release: str, backend: str) -> Path:
    return FIXTURES / f"{release}.{backend}.sql"


def load_sqlite(release: str, path: Path) -> str:
    """The release's SQLite store written to ``path``; its URL."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(fixture(release, "sqlite").read_text())
        db.commit()
    return f"sqlite:///{path}"


def load_postgres(release: str, url: str) -> str:
    """The release's PostgreSQL store restored into the (empty) database at ``url``."""
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(
        [
            "psql",
            "-q",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            plain,
            "-f",
            str(fixture(release, "postgres")),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return url
