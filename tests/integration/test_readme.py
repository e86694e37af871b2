"""The README's in-process example runs as written (a change to the service's calls
that forgot the README fails here)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def test_the_in_process_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.read_text().split("## In-process use", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the README has no in-process example"
    (tmp_path / "var").mkdir()
    script = tmp_path / "example.py"
    script.write_text(found.group(1))
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(script))
    rollcall = namespace["rc"]
    try:
        events = rollcall.history("ada", namespace["tid"])
        assert [e["type"].rsplit(".", 1)[-1] for e in events][-2:] == ["SeatTaken", "SeatReleased"]
    finally:
        rollcall.close()
