"""SPEC §10.4 on both databases: every text, JSON and byte column of every table a
Rollcall database holds is classified by the personal-data policy
(``domain/privacy.py``), so a new column that could hold a name is noticed."""

from __future__ import annotations

from sqlalchemy import JSON, LargeBinary, String, inspect
from sqlalchemy.types import TypeEngine

from rollcall.adapters.db import engine_for
from rollcall.application.service import Rollcall
from rollcall.domain.privacy import STORE, TABLES
from rollcall.projections.projector import create_tables

STORE_TABLES = {"stored_events", "stored_snapshots", "rollcall_events", "rollcall_snapshots"}


def holds_text(kind: TypeEngine[object]) -> bool:
    return isinstance(kind, String | JSON | LargeBinary) or type(kind).__name__ in {
        "BYTEA",
        "JSONB",
        "BLOB",
    }


def test_every_text_column_of_every_table_is_classified(
    rollcall: Rollcall, database_url: str
) -> None:
    engine = engine_for(database_url)
    create_tables(engine)
    inspector = inspect(engine)
    names = set(inspector.get_table_names())
    assert names & STORE_TABLES, "the store's tables are where the policy expects them"
    assert set(TABLES) <= names, set(TABLES) - names
    for table in names:
        text = {c["name"] for c in inspector.get_columns(table) if holds_text(c["type"])}
        declared = STORE if table in STORE_TABLES else TABLES.get(table)
        assert declared is not None, f"{table} is not in domain/privacy.py"
        assert text <= declared.keys(), (table, text - declared.keys())
    engine.dispose()
