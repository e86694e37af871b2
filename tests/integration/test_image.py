"""docker/Dockerfile cannot be built here (no Docker engine), so its build stage is
replayed: a wheel is built from exactly the files it copies, installed on its own, and
run. A package, template or entry point missing from the image fails here."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from rollcall.adapters.contract import generated_files
from rollcall.adapters.embedded import free_port
from rollcall.adapters.migrations import head
from tests.integration.test_cli import ADD_ADMIN

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def build_stage_sources() -> list[str]:
    """What the build stage (``FROM ... AS build``) copies from the build context."""
    sources: list[str] = []
    stage = None
    for line in DOCKERFILE.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["FROM"]:
            stage = words[-1] if len(words) >= 4 and words[-2].upper() == "AS" else None
        elif words[:1] == ["COPY"] and stage == "build":
            assert not any(w.startswith("--from") for w in words), line
            sources.extend(words[1:-1])
    return sources


def test_the_build_stage_copies_every_package_and_the_project_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == [
        "rollcall",
        "rollcall.*",
    ]
    linked = {  # the design card's folders, which rollcall/ links to
        str(p.resolve().relative_to(ROOT)) for p in (ROOT / "rollcall").iterdir() if p.is_symlink()
    }
    assert linked == {"domain", "projections", "consumers"}
    packages = {"rollcall", *linked}
    copied = set(build_stage_sources())
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"


def test_a_wheel_built_from_the_image_sources_installs_and_runs(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for source in build_stage_sources():
        origin, target = ROOT / source, context / source
        if origin.is_dir():  # as Docker's COPY: links stay links
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(origin, target, symlinks=True, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(context)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("rollcall-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )

    (entry_points,) = site.glob("rollcall-*.dist-info/entry_points.txt")
    assert "rollcall = rollcall.entrypoints.cli:main" in entry_points.read_text()
    # SPEC §10.3: one top-level import package; the design card's folders are inside it.
    installed = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"rollcall"}
    for top_level in site.glob("rollcall-*.dist-info/top_level.txt"):
        assert top_level.read_text().split() == ["rollcall"]
    templates = sorted(p.name for p in (ROOT / "consumers" / "templates").iterdir())
    shipped = site / "rollcall" / "consumers" / "templates"
    assert sorted(p.name for p in shipped.iterdir()) == templates

    # The installed copy, not this checkout, answers: run from elsewhere, site first.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env |= {"PYTHONPATH": str(site), "ROLLCALL_DATA_DIR": str(tmp_path / "data")}
    script = (
        "import sys, rollcall.entrypoints.cli as cli, rollcall.consumers.mail as mail; "
        "print(cli.__file__, mail.__file__, file=sys.stderr); "
        "sys.argv = ['rollcall', *sys.argv[1:]]; cli.main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *ADD_ADMIN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imported = done.stderr.splitlines()[0].split()  # then the note of a new data dir
    assert all(path.startswith(str(site)) for path in imported), done.stderr
    assert json.loads(done.stdout)["roles"] == ["admin"]


def test_the_wheel_runs_in_an_empty_venv_with_its_declared_dependencies_alone(
    tmp_path: Path,
) -> None:
    """What the production image does: install the wheel with what it declares (no test
    or embedded extra) into a venv that has nothing else, then run the CLI and the API.
    A runtime import that only an extra provides fails here (issue: the image that could
    not start because ``httpx`` was a test dependency)."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("rollcall-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "--disable-pip-version-check", "-q", "install", str(wheel)],
        check=True,
        timeout=600,
    )
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    # PyPI's packages named as Rollcall's layers once were change nothing (SPEC §10.3):
    # Rollcall imports only its own package. (Their code alone: ``adapters`` would pull
    # in a machine-learning stack.)
    subprocess.run(
        [str(venv / "bin" / "pip"), "-q", "install", "--no-deps", "entrypoints", "adapters"],
        check=True,
        timeout=600,
    )
    assert "aiosmtpd" not in installed, "the embedded extra leaked into the image"
    assert "calfkit" not in installed, "the embedded extra leaked into the image"
    assert "pytest" not in installed

    rollcall = str(venv / "bin" / "rollcall")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env |= {"ROLLCALL_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": ""}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [rollcall, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    assert run("--help").returncode == 0
    # The contract and the migrations are package data: both must be in the wheel.
    shipped = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from rollcall.adapters.contract import shipped_schemas; "
            "from rollcall.adapters.migrations import head;"
            "print(len(shipped_schemas()), head())",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shipped.returncode == 0, shipped.stderr
    count, revision = shipped.stdout.split()
    assert int(count) == len(generated_files()) - 1  # every schema; the AsyncAPI document aside
    assert revision == head()
    added = run(*ADD_ADMIN)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["roles"] == ["admin"]
    # The embedded default needs the extra: one clear line, not a traceback.
    embedded = run("serve")
    assert embedded.returncode == 2, embedded.stderr
    assert "embedded" in embedded.stderr
    assert "Traceback" not in embedded.stderr

    port = free_port()
    api = subprocess.Popen(
        [rollcall, "serve", "api", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert api.poll() is None, api.stdout.read() if api.stdout else ""
                assert time.monotonic() < deadline, "serve api did not answer"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert answer.json()["info"]["title"] == "Rollcall"
    finally:
        api.terminate()
        api.wait(timeout=30)
