"""Where a running ``rollcall serve`` can be reached, written down in its data dir.

The embedded broker listens on a port chosen at start, and the API on the port asked
for; the command line's tools (``rollcall login-link``, ``rollcall dead-letters``,
``rollcall replay --source kafka``) and the subscriber example read them here, so
nobody has to copy an address from the server's banner. The record is removed when
the server stops; one left by a server that was killed names a process that is gone,
and is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

RECORD = "serve.json"


def write(data_dir: Path, api: str, kafka: str) -> None:
    record = {"api": api, "kafka": kafka, "pid": os.getpid()}
    path = data_dir / RECORD
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record) + "\n")
    partial.replace(path)  # readers never see half a record


def remove(data_dir: Path) -> None:
    path = data_dir / RECORD
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


def running(data_dir: Path) -> dict[str, Any] | None:
    """The record of the server running on ``data_dir``; None when there is none (or the
    process that wrote it is gone)."""
    try:
        record: dict[str, Any] = json.loads((data_dir / RECORD).read_text())
        os.kill(int(record["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ProcessLookupError):
        return None
    except PermissionError:  # alive, another user's
        pass
    return record
