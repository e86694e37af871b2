"""The layers of docs/architecture.md hold (import-linter, as `make lint` runs it), and
the check is real: an upward import added to a copy of the tree breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["rollcall", "domain", "projections", "consumers"]
"""The one import package, and the design card's folders it links to."""
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_tree(tmp_path: Path) -> Path:
    for folder in FOLDERS:
        shutil.copytree(  # rollcall/'s links to the others stay links, into this copy
            ROOT / folder,
            tmp_path / folder,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_line(path: Path, line: str) -> str:
    before = path.read_text()
    path.write_text(f"{before}\n{line}\n")
    return before


def test_the_layers_hold_and_an_upward_import_breaks_them(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path)
    kept = lint_imports(tree)
    assert kept.returncode == 0, kept.stdout
    assert "0 broken" in kept.stdout

    for module, upward in [
        ("rollcall/domain/rules.py", "import rollcall.adapters.db"),
        ("rollcall/adapters/clock.py", "import rollcall.application.service"),
        ("rollcall/projections/catalog.py", "import rollcall.consumers.notifier"),
        ("rollcall/application/audit.py", "import rollcall.projections.tables"),
        ("rollcall/consumers/mail.py", "import rollcall.entrypoints.settings"),
        ("rollcall/domain/training.py", "import sqlalchemy"),
    ]:
        before = add_line(tree / module, f"{upward}  # an upward import")
        broken = lint_imports(tree)
        assert broken.returncode != 0, f"{module}: {upward} was not caught"
        assert "BROKEN" in broken.stdout
        (tree / module).write_text(before)


def test_no_module_of_the_application_layer_outgrows_what_a_reader_holds() -> None:
    """Issue 34: handlers by area stay small; a module past 400 lines is split by area
    before it grows further (docs/architecture.md, "Where a new feature goes")."""
    application = ROOT / "rollcall" / "application"
    sizes = {p.name: len(p.read_text().splitlines()) for p in application.glob("*.py")}
    assert sizes, "no application modules found"
    assert {name: n for name, n in sizes.items() if n > 400} == {}
