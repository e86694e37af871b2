"""The `rollcall` command line on a fresh install (SPEC §7, §8)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

CLI = str(Path(sys.executable).with_name("rollcall"))
ADD_ADMIN = ("users", "add", "ada", "--name", "Ada", "--email", "ada@example.com", "--admin")
"""Bootstraps a fresh install: the first administrator."""


def run(
    tmp: Path, *args: str, ok: bool = True, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env.update({f"ROLLCALL_{name.upper()}": value for name, value in settings.items()})
    done = subprocess.run(
        [CLI, *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_bootstrap_token_history_export_replay_and_schemas(tmp_path: Path) -> None:
    added = json.loads(run(tmp_path, *ADD_ADMIN).stdout)
    assert added["roles"] == ["admin"]
    run(
        tmp_path,
        "users",
        "add",
        "lena",
        "--name",
        "Lena",
        "--email",
        "lena@example.com",
        "--supervisor",
        "ada",
    )
    bad = run(tmp_path, "users", "add", "x", "--name", "X", "--email", "nope", ok=False)
    assert "validation_error" in bad.stderr

    token = run(tmp_path, "token", "lena").stdout.strip()
    secret = (tmp_path / "var" / "jwt_secret").read_text().strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="rollcall-api")
    assert claims["sub"] == "lena"
    assert claims["iss"] == "rollcall"

    exported = [json.loads(line) for line in run(tmp_path, "export").stdout.splitlines()]
    assert [e["position"] for e in exported] == [1, 2]
    assert exported[0]["type"] == "rollcall.user.UserRegistered.v1"
    assert [
        json.loads(x)["position"]
        for x in run(tmp_path, "export", "--from", "2").stdout.splitlines()
    ] == [2]

    history = [
        json.loads(line)
        for line in run(tmp_path, "history", exported[1]["subject"]).stdout.splitlines()
    ]
    assert history[0]["data"]["user_id"] == "lena"
    assert (
        "not_found"
        in run(tmp_path, "history", "00000000-0000-0000-0000-000000000009", ok=False).stderr
    )

    replayed = run(tmp_path, "replay")
    assert "2 events applied" in replayed.stdout
    run(tmp_path, "schemas", "--check")
    assert "ROLLCALL_KAFKA_BOOTSTRAP" in run(tmp_path, "serve", "relay", ok=False).stderr


UNREACHABLE = "postgresql://rollcall:s3cret@127.0.0.1:1/rollcall"


def holders(path: Path) -> list[str]:
    """Processes that have ``path`` open (Linux /proc)."""
    found = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if fd.readlink() == path:
                found.append(fd.parts[2])
    return found


@pytest.mark.parametrize("command", [["export"], ["serve"]])
def test_an_unreachable_database_is_one_clear_line_and_leaves_nothing_running(
    tmp_path: Path, command: list[str]
) -> None:
    done = run(tmp_path, *command, ok=False, database_url=UNREACHABLE)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot open the database postgresql://rollcall:***@")
    assert "s3cret" not in done.stderr
    assert "Traceback" not in done.stderr
    # The database is checked before anything starts: no local broker was left behind
    # (none was even started).
    broker_log = tmp_path / "var" / "broker.log"
    assert not broker_log.exists() or holders(broker_log) == []


def test_a_database_that_is_not_rollcalls_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """SPEC §9.7: start-up refuses a foreign database with one line, writing nothing."""
    import hashlib
    import sqlite3

    (tmp_path / "var").mkdir()
    foreign = tmp_path / "var" / "rollcall.sqlite3"
    with contextlib.closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Acme')")
        conn.commit()
    before = hashlib.sha256(foreign.read_bytes()).hexdigest()
    for args in (ADD_ADMIN, ("serve",)):
        refused = run(tmp_path, *args, ok=False)
        assert refused.returncode == 2
        assert "not Rollcall's database" in refused.stderr
        assert "customers" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["rollcall.sqlite3"]


def test_what_rollcall_writes_is_private_to_its_owner(tmp_path: Path) -> None:
    run(tmp_path, *ADD_ADMIN)
    run(tmp_path, "token", "ada")
    var = tmp_path / "var"
    assert var.stat().st_mode & 0o777 == 0o700
    for path in var.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_token_refuses_unknown_users_and_lifetimes_past_the_maximum(tmp_path: Path) -> None:
    run(tmp_path, *ADD_ADMIN)
    ghost = run(tmp_path, "token", "ghost", ok=False)
    assert "not_found" in ghost.stderr
    too_long = run(tmp_path, "token", "ada", "--hours", "48", ok=False)
    assert "ROLLCALL_TOKEN_MAX_HOURS" in too_long.stderr
    assert run(tmp_path, "token", "ada", "--hours", "48", token_max_hours="72").stdout


def test_a_database_written_by_a_newer_rollcall_is_refused(tmp_path: Path) -> None:
    import sqlite3

    run(tmp_path, *ADD_ADMIN)
    database = tmp_path / "var" / "rollcall.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute("UPDATE rollcall_positions SET position = 99 WHERE name = 'rollcall:schema'")
        conn.commit()
    refused = run(
        tmp_path, "users", "add", "x", "--name", "X", "--email", "x@example.com", ok=False
    )
    assert refused.returncode == 2
    assert "newer Rollcall (schema 99" in refused.stderr


def test_users_deactivate_and_reactivate_a_leaver(tmp_path: Path) -> None:
    """SPEC §10.3 from a shell: ``rollcall users deactivate`` ends a leaver's access (no
    token is minted for them), ``reactivate`` gives it back."""
    run(tmp_path, *ADD_ADMIN)
    run(tmp_path, "users", "add", "lena", "--name", "Lena", "--email", "lena@example.com")
    left = json.loads(run(tmp_path, "users", "deactivate", "lena").stdout)
    assert (left["active"], left["released"]) == (False, [])
    refused = run(tmp_path, "token", "lena", ok=False)
    assert "unauthorized" in refused.stderr
    assert "deactivated" in refused.stderr
    back = json.loads(run(tmp_path, "users", "reactivate", "lena").stdout)
    assert back["active"] is True
    assert run(tmp_path, "token", "lena").stdout.count(".") == 2
    missing = run(tmp_path, "users", "deactivate", "nobody", ok=False)
    assert "not_found" in missing.stderr


def test_a_command_on_a_data_dir_without_data_says_so_and_links_go_to_the_running_server(
    tmp_path: Path,
) -> None:
    """Issue 41: run outside the server's directory, a command says which data dir it
    opened and that it was empty; ``login-link`` names the address of the server that
    runs on the data dir (its ``serve.json``), not a fixed port."""
    from rollcall.entrypoints import serving

    first = run(tmp_path, *ADD_ADMIN)
    assert f"no Rollcall data in {(tmp_path / 'var').resolve()}" in first.stderr
    assert "no Rollcall data" not in run(tmp_path, "token", "ada").stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = run(elsewhere, "token", "ada", ok=False)
    assert "no Rollcall data in" in lost.stderr
    assert "user ada not found" in lost.stderr

    assert run(tmp_path, "login-link", "ada").stdout.startswith("http://127.0.0.1:8000/ui/login?")
    serving.write(tmp_path / "var", "http://127.0.0.1:8123", "127.0.0.1:9999")  # alive: us
    link = run(tmp_path, "login-link", "ada").stdout
    assert link.startswith("http://127.0.0.1:8123/ui/login?token=")
    given = run(tmp_path, "login-link", "ada", "--url", "https://rollcall.example.com").stdout
    assert given.startswith("https://rollcall.example.com/ui/login?token=")
