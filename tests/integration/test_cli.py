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
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "lena"

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
    broker_log = tmp_path / "var" / "broker.log"
    if command == ["serve"]:  # the local broker had started; it must not outlive the failure
        assert broker_log.exists()
        assert holders(broker_log) == []
