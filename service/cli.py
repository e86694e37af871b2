"""The ``rollcall`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.contract import generated_files

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


def main() -> None:
    app()
