"""SPEC §8: `rollcall serve` with no configuration, in an empty directory, runs
everything (local broker, SMTP catcher, SQLite under ./var); the seed's story driven over
HTTP ends with the supervisor's and the learner's mail in the catcher; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx

from rollcall.adapters.embedded import free_port
from tests.infra import wait_for


def test_serve_with_no_configuration_runs_the_seed_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    cli = str(Path(sys.executable).with_name("rollcall"))
    port = free_port()
    server = subprocess.Popen(
        [cli, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(lambda: _up(port), timeout=60, interval=0.2)
        demo = subprocess.run(
            [cli, "demo", "--url", f"http://127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stderr
        assert "warning reenrollment_not_possible" in demo.stdout
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=60)
    assert server.returncode == 0
    assert "/openapi.json" in out
    assert "/ui/ (sign in: rollcall login-link USER_ID)" in out
    assert "stopped" in out
    assert (tmp_path / "var" / "rollcall.sqlite3").exists()
    mails = [
        BytesParser(policy=policy.default).parsebytes(p.read_bytes())
        for p in sorted((tmp_path / "var" / "mail").glob("*.eml"))
    ]
    assert "Sign in as the learner: http" in demo.stdout
    story = [m for m in mails if "Fire safety" in m["Subject"]]
    assert sorted((m["To"], m["Subject"]) for m in story) == [
        ("demo-lena@example.com", "You are enrolled in Fire safety"),
        ("demo-lena@example.com", "You are no longer enrolled in Fire safety"),
        ("demo-lena@example.com", "Your session of Fire safety changed"),
        ("demo-sam@example.com", "Lena Learner enrolled in Fire safety"),
        ("demo-sam@example.com", "Lena Learner switched sessions of Fire safety"),
        ("demo-sam@example.com", "Lena Learner unenrolled from Fire safety"),
    ]


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
