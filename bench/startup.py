"""An API process's start (SPEC §10.6): from ``exec`` to the first 200 of ``/healthz``
for ``rollcall serve api`` on a store that holds data, beside a minimal FastAPI app
under uvicorn (one route) on the same machine in the same run.

    python -m bench.startup [--runs 5] [--sqlite]

Each run starts a new process and polls every 10 ms. The store is filled once
(bench/common.py's ``fill``, 20,000 events) and projected before the first run, so a
start finds read models of this release's shape (no rebuild). SPEC §10.6: Rollcall's
median ≤ 2 × the minimal app's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import database, fill, until_answering
from rollcall.adapters.db import engine_for
from rollcall.adapters.embedded import free_port
from rollcall.adapters.store import open_store
from rollcall.adapters.store_reader import StoreReader
from rollcall.projections.projector import create_tables, replay

MINIMAL = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}
    """
)


def started(command: list[str], port: int, env: dict[str, str], cwd: Path) -> float:
    """Seconds from starting ``command`` to its first 200 on ``/healthz``."""
    began = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        until_answering(process, f"http://127.0.0.1:{port}/healthz")
        return time.perf_counter() - began
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as folder, database(args.sqlite) as url:
        here = Path(folder)
        store = open_store(url)
        fill(store, 20_000)
        engine = engine_for(url)
        create_tables(engine)
        replay(engine, StoreReader(store, engine).batches())
        store.close()
        engine.dispose()
        (here / "minimal.py").write_text(MINIMAL)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
        env |= {"ROLLCALL_DATABASE_URL": url, "ROLLCALL_DATA_DIR": str(here / "var")}
        rollcall, minimal = [], []
        for _ in range(args.runs):
            port = free_port()
            rollcall.append(
                started(
                    [str(bin_dir / "rollcall"), "serve", "api", "--port", str(port)],
                    port,
                    env,
                    here,
                )
            )
            port = free_port()
            minimal.append(
                started(
                    [str(bin_dir / "uvicorn"), "minimal:app", "--port", str(port)], port, env, here
                )
            )
    ours, theirs = statistics.median(rollcall), statistics.median(minimal)
    print(f"rollcall serve api: median {ours:.2f}s  ({', '.join(f'{t:.2f}' for t in rollcall)})")
    print(f"minimal FastAPI:    median {theirs:.2f}s  ({', '.join(f'{t:.2f}' for t in minimal)})")
    print(f"ratio {ours / theirs:.2f}   (SPEC §10.6: ≤ 2)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
