"""The ``rollcall`` command line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domain.errors import RollcallError
from projections.projector import kafka_events, store_events
from projections.projector import replay as projector_replay
from service import bootstrap
from service.contract import generated_files
from service.db import engine_for
from service.settings import Settings

app = typer.Typer(help="Rollcall: enrollment in instructor-led training sessions.")


@app.callback()
def cli() -> None:
    """Rollcall: enrollment in instructor-led training sessions."""


SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="where the contract files go")] = SCHEMAS_DIR,
    check: Annotated[bool, typer.Option(help="fail on differences instead of writing")] = False,
) -> None:
    """Generate the JSON Schemas and the AsyncAPI document of the published events."""
    files = generated_files()
    stale = sorted(
        name
        for name, content in files.items()
        if not (out / name).exists() or (out / name).read_text() != content
    )
    extra = (
        sorted(
            str(p.relative_to(out))
            for p in out.rglob("*.json")
            if str(p.relative_to(out)) not in files
        )
        if out.exists()
        else []
    )
    if check:
        for name in stale + extra:
            typer.echo(f"out of date: {name}", err=True)
        raise typer.Exit(1 if stale or extra else 0)
    for name in extra:
        (out / name).unlink()
    for name in stale:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(files[name])
    typer.echo(f"{len(stale)} written, {len(extra)} removed, {len(files)} files in {out}")


class Part(StrEnum):
    relay = "relay"
    projector = "projector"
    notifier = "notifier"
    scheduler = "scheduler"


@app.command()
def serve(part: Annotated[Part, typer.Argument(help="the part to run")]) -> None:
    """Run one part of Rollcall until interrupted (configured by ROLLCALL_* variables)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    rollcall = bootstrap.open_rollcall(settings)
    try:
        parts: dict[Part, Callable[[], list[Callable[[threading.Event], None]]]] = {
            Part.relay: lambda: [bootstrap.relay(settings, rollcall).run],
            Part.projector: lambda: [bootstrap.projector(settings).run],
            Part.notifier: lambda: bootstrap.notifier_loops(settings, rollcall),
            Part.scheduler: lambda: [bootstrap.scheduler(rollcall).run],
        }
        loops = parts[part]()
        typer.echo(f"rollcall {part.value}: running on {settings.resolved_database_url}")
        bootstrap.run_until_signalled(loops)
    except RollcallError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        rollcall.close()


class Source(StrEnum):
    store = "store"
    kafka = "kafka"


@app.command()
def replay(
    source: Annotated[Source, typer.Option(help="rebuild from the event store or Kafka")] = (
        Source.store
    ),
) -> None:
    """Rebuild every read model from scratch into fresh tables, then swap them in."""
    settings = Settings()
    rollcall = bootstrap.open_rollcall(settings)
    engine = engine_for(settings.resolved_database_url)
    try:
        if source is Source.store:
            total = rollcall.store.recorder.max_notification_id() or 0
            batches = store_events(rollcall.store)
        else:
            total = None
            batches = kafka_events(bootstrap.require_kafka(settings), settings.topic_prefix)
        with Progress(
            TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as progress:
            task = progress.add_task("replay", total=total)
            applied = projector_replay(engine, batches, lambda n: progress.advance(task, n))
        typer.echo(f"{applied} events applied; read models swapped in")
    except RollcallError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        rollcall.close()


def main() -> None:
    app()
