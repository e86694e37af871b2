"""The ``rollcall`` command line."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from uuid import UUID

import httpx
import psycopg
import pydantic
import sqlalchemy.exc
import typer
import uvicorn
from eventsourcing.persistence import OperationalError as PersistenceOperationalError
from kafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from uvicorn.supervisors import Multiprocess

from rollcall.adapters import dead_letters, kafka_cluster, logs, migrations
from rollcall.adapters.contract import SCHEMAS, superseded
from rollcall.adapters.db import check_database, engine_for
from rollcall.adapters.dead_letters import DeadLetter
from rollcall.adapters.store_reader import StoreReader
from rollcall.application.commands import PutUser, SetActive
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.domain.errors import Reason, RollcallError, ValidationFailed
from rollcall.entrypoints import bootstrap, leavers, serving
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.bootstrap import jwt_secret
from rollcall.entrypoints.catalog import contract_files
from rollcall.entrypoints.dead_letters import Redriver
from rollcall.entrypoints.demo import ADMIN as DEMO_ADMIN
from rollcall.entrypoints.demo import Demo
from rollcall.entrypoints.observability import problems, registry_for, serve_health
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.settings import Settings
from rollcall.entrypoints.ui.signin import sign_in_link
from rollcall.projections.projector import (
    READ_MODELS,
    IncompleteHistory,
    OlderShape,
    ProjectionGap,
    covering,
    kafka_events,
)
from rollcall.projections.projector import replay as projector_replay

app = typer.Typer(help="Rollcall: enrollment in instructor-led training sessions.")


@contextmanager
def refusals_as_exit() -> Iterator[None]:
    """A refusal (bad input, missing setting, not found) is a message and exit status 2."""
    try:
        yield
    except RollcallError as error:
        typer.echo(f"error: {error.reason.value}: {error.message}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def unreachable_database_as_exit(settings: Settings) -> Iterator[None]:
    """A database that cannot be reached is one line naming it (password hidden), exit 1."""
    try:
        yield
    except (
        psycopg.OperationalError,
        PersistenceOperationalError,
        sqlalchemy.exc.OperationalError,
    ) as error:
        url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        reason = str(error).strip().splitlines()[0]
        typer.echo(f"error: cannot open the database {url}: {reason}", err=True)
        raise typer.Exit(1) from None


@contextmanager
def opened(settings: Settings) -> Iterator[Rollcall]:
    """The application service for one command, closed afterwards. On the embedded
    default, a data dir without a database is said to be new (a command run outside
    the directory the server runs in would otherwise answer from an empty one)."""
    database = settings.data_dir / "rollcall.sqlite3"
    if not settings.database_url and not database.exists():
        typer.echo(
            f"note: no Rollcall data in {settings.data_dir.resolve()}: starting an empty one "
            "(run where `rollcall serve` runs, or set ROLLCALL_DATA_DIR)",
            err=True,
        )
    with refusals_as_exit():
        with unreachable_database_as_exit(settings):
            rollcall = bootstrap.open_rollcall(settings)
        try:
            yield rollcall
        finally:
            rollcall.close()


def load_settings() -> Settings:
    """The settings, or one line naming the variable that is wrong and exit 2; a
    ``ROLLCALL_*`` variable that means nothing is warned about (a typo would otherwise
    silently leave a default in place)."""
    known = {f"ROLLCALL_{name.upper()}" for name in Settings.model_fields}
    for name in sorted(os.environ):
        if name.startswith("ROLLCALL_") and name not in known:
            typer.echo(f"warning: {name} is not a Rollcall setting; ignored", err=True)
    try:
        settings = Settings()
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:  # a variable's own mistake; else one of several together
            variable = "ROLLCALL_" + "_".join(str(part) for part in first["loc"]).upper()
            message = f"{variable}: {message}"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    problems = settings.kafka_security.problems()
    for problem in problems:  # all of them at once: one line each
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)
    kafka_cluster.secure(settings.kafka_security)
    return settings


def _version(show: bool) -> None:
    if show:
        typer.echo(f"rollcall {importlib.metadata.version('rollcall')}")
        raise typer.Exit()


@app.callback()
def cli(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Rollcall: enrollment in instructor-led training sessions."""


SCHEMAS_DIR = Path(str(SCHEMAS))


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="where the contract files go")] = SCHEMAS_DIR,
    check: Annotated[bool, typer.Option(help="fail on differences instead of writing")] = False,
) -> None:
    """Generate the JSON Schemas and the AsyncAPI document of the published events.

    Schemas of earlier versions of an event type are kept (never deleted); anything
    else not generated is removed."""
    files = contract_files()
    stale = sorted(
        name
        for name, content in files.items()
        if not (out / name).exists() or (out / name).read_text() != content
    )
    extra = (
        sorted(
            str(p.relative_to(out))
            for p in out.rglob("*")
            if p.is_file()
            if str(p.relative_to(out)) not in files
            and not superseded(str(p.relative_to(out)), files)
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
    api = "api"
    relay = "relay"
    projector = "projector"
    notifier = "notifier"
    scheduler = "scheduler"


@app.command()
def serve(
    part: Annotated[Part | None, typer.Argument(help="one part only; default: everything")] = None,
    host: Annotated[str, typer.Option(help="API address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="a part run alone: serve /healthz, /readyz, /metrics on this port"),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="`serve api`: worker processes (one per core)"),
    ] = 1,
) -> None:
    """Run Rollcall until interrupted (configured by ROLLCALL_* variables).

    With no part: everything in one process, starting a local Kafka-compatible broker
    and a local SMTP catcher unless ROLLCALL_KAFKA_BOOTSTRAP / ROLLCALL_SMTP_HOST are set.
    """
    settings = load_settings()
    if part is None:
        logs.configure(settings.log_format, logging.WARNING)
        serve_everything(settings, host, port)
        return
    logs.configure(settings.log_format, logging.INFO, part.value)
    if part is Part.api:
        serve_api(settings, host, port, workers)
        return
    with opened(settings) as rollcall:
        wiring = bootstrap.Wiring(settings, rollcall)
        try:
            with refusals_as_exit():  # the settings a part needs, checked before it starts
                if part is Part.notifier:
                    bootstrap.smtp_config(settings)
                if part is not Part.scheduler:
                    bootstrap.require_kafka(settings)
            parts = wiring.factories(part.value)
            if metrics_port is not None:
                store = rollcall.store
                serve_health(
                    metrics_port,
                    registry_for(wiring.engine, store),
                    lambda: problems(wiring.engine, store, settings.kafka_bootstrap),
                    host,
                )
            typer.echo(f"rollcall {part.value}: running on {settings.resolved_database_url}")
            if not bootstrap.run_until_signalled(parts):
                raise typer.Exit(1)
        finally:
            wiring.close()


GRACE_SECONDS = 8
"""How long a stopping API waits for requests in flight: a part asked to stop (SIGTERM)
exits within 10 s (SPEC §10.2)."""
WORKER_START_SECONDS = 120
"""How long a worker of ``serve api --workers N`` may take to start before it is taken
for hung. uvicorn's 5 s killed workers still importing on a busy host, over and over."""


class _Server(uvicorn.Server):
    """uvicorn's server, which, stopped by a signal, exits 0 like every other part:
    uvicorn raises the signal again once it has shut down, so the process ended 143."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_api(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """The HTTP API alone (production: several replicas behind a load balancer; in one
    replica, ``workers`` processes sharing its port)."""
    with opened(settings) as rollcall:
        wiring = bootstrap.Wiring(settings, rollcall)
        try:
            with refusals_as_exit():  # settings checked and migrations run once, here
                # Only a process that serves warms up: the parent of --workers N checks
                # and migrates, then hands over to the workers.
                app_ = wiring.api(settings.kafka_bootstrap, warm=workers == 1)
            if workers == 1:
                bootstrap.ready_to_serve()
                _Server(
                    uvicorn.Config(
                        app_,
                        host=host,
                        port=port,
                        log_level="info",
                        log_config=None,
                        server_header=False,
                        timeout_graceful_shutdown=GRACE_SECONDS,
                    )
                ).run()
                return
        finally:
            wiring.close()
    config = uvicorn.Config(
        "rollcall.entrypoints.asgi:create",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
        timeout_worker_healthcheck=WORKER_START_SECONDS,
    )
    Multiprocess(config, sockets=[listening_socket(config)]).run()


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The socket the workers share, with Nagle's algorithm off for every connection it
    accepts (Linux passes the option on). uvicorn binds it without naming TCP, so
    asyncio does not switch Nagle off itself, and each keep-alive answer waited 40 ms
    for the client's delayed acknowledgement (bench/http_load.py)."""
    listening = config.bind_socket()
    if listening.family in (socket.AF_INET, socket.AF_INET6):
        listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listening


@app.command()
def migrate() -> None:
    """Bring Rollcall's operational tables (positions, mail outbox, notification read
    marks, idempotency keys) to this version's schema. Every part also does it when it
    starts; run it first to upgrade before rolling out."""
    settings = load_settings()
    url = settings.resolved_database_url
    shown = make_url(url).render_as_string(hide_password=True)
    with refusals_as_exit(), unreachable_database_as_exit(settings):
        check_database(url)
        engine = engine_for(url)
        try:
            before, after = migrations.migrate(engine)
        finally:
            engine.dispose()
    if before == after:
        typer.echo(f"{shown}: already at {after}")
    else:
        typer.echo(f"{shown}: migrated from {before or 'no revision'} to {after}")


@app.command()
def topics(
    check: Annotated[
        bool, typer.Option(help="exit 1 if an existing topic is made otherwise than set")
    ] = False,
) -> None:
    """Create the Kafka topics if missing (ROLLCALL_KAFKA_PARTITIONS, _REPLICATION_FACTOR,
    _MIN_INSYNC_REPLICAS, _RETENTION_MS), and report existing ones made otherwise:
    fewer partitions or replicas, less retention, compaction; one line each."""
    settings = load_settings()
    wanted = settings.kafka_topics
    with refusals_as_exit():
        try:
            mismatches = kafka_cluster.ensure_topics(bootstrap.require_kafka(settings), wanted)
        except KafkaError as error:
            raise ValidationFailed(f"the broker cannot be reached: {error}") from None
    for mismatch in mismatches:
        typer.echo(f"{'error' if check else 'warning'}: topic {mismatch}", err=True)
    if check and mismatches:
        raise typer.Exit(1)
    typer.echo(f"topics ready: {', '.join(wanted.names.values())}")


def serve_everything(settings: Settings, host: str, port: int) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with refusals_as_exit(), unreachable_database_as_exit(settings):
        runtime = Runtime(settings, host, port).start()
    typer.echo(f"Rollcall is running (data in {settings.data_dir.resolve()})")
    typer.echo(f"  API            {runtime.url}/v1")
    typer.echo(f"  OpenAPI        {runtime.url}/openapi.json")
    typer.echo(f"  pages          {runtime.url}/ui/ (sign in: rollcall login-link USER_ID)")
    if settings.docs:
        typer.echo(f"  API docs       {runtime.url}/docs")
    typer.echo(f"  database       {settings.resolved_database_url}")
    kafka = settings.kafka_bootstrap or f"{runtime.broker.bootstrap} (local broker)"  # type: ignore[union-attr]
    typer.echo(f"  Kafka          {kafka}")
    mail = settings.smtp_host or f"local catcher, messages in {runtime.maildir.resolve()}"
    typer.echo(f"  mail           {mail}")
    typer.echo("Press Ctrl-C to stop.")
    failed = False
    try:
        while not stop.wait(0.5):
            if not runtime.healthy():
                typer.echo("the API stopped unexpectedly; shutting down", err=True)
                failed = True
                break
    finally:
        runtime.stop()
        typer.echo("stopped")
    if failed:
        raise typer.Exit(1)


users = typer.Typer(help="Manage the directory.")
app.add_typer(users, name="users")


@users.command("add")
def users_add(
    user_id: str,
    name: Annotated[str, typer.Option(help="full name")],
    email: Annotated[str, typer.Option(help="email address")],
    supervisor: Annotated[str | None, typer.Option(help="supervisor's user id")] = None,
    admin: Annotated[bool, typer.Option(help="account administrator")] = False,
    permission: Annotated[list[str] | None, typer.Option(help="a permission (repeat)")] = None,
) -> None:
    """Create or update a directory entry (works on a fresh install: no token needed)."""
    settings = load_settings()
    with opened(settings) as rollcall:
        roles = ["admin"] if admin else []
        result = rollcall.put_user(
            PutUser(
                actor_id=SYSTEM_ACTOR,
                user_id=user_id,
                name=name,
                email=email,
                supervisor_id=supervisor,
                roles=roles,
                permissions=permission or [],
            )
        )
        typer.echo(json.dumps(result.value))


@users.command("deactivate")
def users_deactivate(user_id: str) -> None:
    """A leaver (SPEC §10.3): their access ends, their seats in sessions not started and
    their places in line are given up, each line moves up; their history stays."""
    settings = load_settings()
    with opened(settings) as rollcall:
        engine = engine_for(settings.resolved_database_url)
        try:
            cmd = SetActive(actor_id=SYSTEM_ACTOR, user_id=user_id, active=False)
            result = leavers.deactivate(rollcall, engine, cmd)
        finally:
            engine.dispose()
        typer.echo(json.dumps(result.value))


@users.command("reactivate")
def users_reactivate(user_id: str) -> None:
    """Access again for a deactivated user; no seat is given back."""
    settings = load_settings()
    with opened(settings) as rollcall:
        result = rollcall.set_active(SetActive(actor_id=SYSTEM_ACTOR, user_id=user_id, active=True))
        typer.echo(json.dumps(result.value))


@app.command()
def token(
    user_id: str,
    hours: Annotated[float, typer.Option(help="validity")] = 12.0,
) -> None:
    """Print a bearer token for a user of the directory (development and bootstrap)."""
    settings = load_settings()
    with opened(settings) as rollcall, refusals_as_exit():
        if not 0 < hours <= settings.token_max_hours:
            raise ValidationFailed(
                f"--hours must be more than 0 and at most ROLLCALL_TOKEN_MAX_HOURS "
                f"({settings.token_max_hours:g})"
            )
        require_active(rollcall, user_id)
        secret = jwt_secret(settings)
    typer.echo(issue_token(user_id, secret, datetime.now(UTC), timedelta(hours=hours)))


def require_active(rollcall: Rollcall, user_id: str) -> None:
    """A token or a sign-in link is for an active directory user only."""
    if not rollcall.get_user(SYSTEM_ACTOR, user_id)["active"]:
        raise RollcallError(Reason.UNAUTHORIZED, f"user {user_id} is deactivated")


@app.command("login-link")
def login_link(
    user_id: str,
    url: Annotated[
        str | None,
        typer.Option(help="where the API serves /ui (default: the server on this data dir)"),
    ] = None,
) -> None:
    """Print a one-time sign-in link to the web pages for a user (15 minutes)."""
    settings = load_settings()
    if url is None:
        record = serving.running(settings.data_dir)
        url = str(record["api"]) if record else "http://127.0.0.1:8000"
    with opened(settings) as rollcall, refusals_as_exit():
        require_active(rollcall, user_id)
        secret = jwt_secret(settings)
    typer.echo(sign_in_link(url, user_id, secret, datetime.now(UTC)))


@app.command()
def history(aggregate_id: UUID) -> None:
    """Show an aggregate's full history, in order, as JSON lines."""
    settings = load_settings()
    with opened(settings) as rollcall:
        for entry in rollcall.history(SYSTEM_ACTOR, aggregate_id):
            typer.echo(json.dumps(entry))


@app.command()
def export(
    from_position: Annotated[int, typer.Option("--from", help="first store position")] = 1,
) -> None:
    """Every stored event as a CloudEvent per line, ordered by store position; the
    progress and the time left on standard error."""
    settings = load_settings()
    with opened(settings) as rollcall:
        engine = engine_for(settings.resolved_database_url)
        start = max(1, from_position)
        last = rollcall.store.recorder.max_notification_id() or 0
        with progress_bar("export") as progress:
            task = progress.add_task("export", total=max(0, last - start + 1))
            for batch in StoreReader(rollcall.store, engine).batches(start, 5000):
                typer.echo("\n".join(json.dumps(event.document()) for event in batch))
                progress.advance(task, batch[-1].position + 1 - start)
                start = batch[-1].position + 1
        engine.dispose()


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="a running `rollcall serve`")] = "http://127.0.0.1:8000",
) -> None:
    """Walk through the help article's story against a running server, step by step.

    Uses this install's data dir: its token secret, and its mail catcher's inbox.
    """
    settings = load_settings()
    with opened(settings) as rollcall:
        rollcall.put_user(
            PutUser(
                actor_id=SYSTEM_ACTOR,
                user_id=DEMO_ADMIN,
                name="Demo Admin",
                email="admin@example.com",
                supervisor_id=None,
                roles=["admin"],
            )
        )
    maildir = None if settings.smtp_host else settings.data_dir / "mail"
    try:
        demo = Demo(url, jwt_secret(settings), typer.echo)
        demo.run(maildir)
        demo.links()
    except (RuntimeError, httpx.HTTPError) as error:
        typer.echo(f"demo failed: {error}", err=True)
        raise typer.Exit(1) from None


class Source(StrEnum):
    store = "store"
    kafka = "kafka"


ReadModel = StrEnum("ReadModel", {name: name for name in READ_MODELS})  # type: ignore[misc]


def progress_bar(label: str) -> Progress:
    """A long command's progress on standard error (standard output may be its data):
    done of total, elapsed and, once the rate is known, the time left."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


@app.command()
def replay(
    source: Annotated[Source, typer.Option(help="rebuild from the event store or Kafka")] = (
        Source.store
    ),
    only: Annotated[
        list[ReadModel] | None,
        typer.Option(help="rebuild these read models only, leaving the others as they are"),
    ] = None,
) -> None:
    """Rebuild the read models from scratch into fresh tables, then swap them in."""
    settings = load_settings()
    with opened(settings) as rollcall:
        engine = engine_for(settings.resolved_database_url)
        stored = rollcall.store.recorder.max_notification_id() or 0
        if source is Source.store:
            batches = StoreReader(rollcall.store, engine).batches()
        else:
            with refusals_as_exit():
                kafka = bootstrap.require_kafka(settings)
            batches = covering(kafka_events(kafka, settings.topic_prefix), stored)
        # Kafka holds the stored events and, after a lost record, repeats: about `stored`.
        with progress_bar("replay") as progress:
            task = progress.add_task("replay", total=stored)
            try:
                applied = projector_replay(
                    engine,
                    batches,
                    lambda n: progress.advance(task, n),
                    only=None if only is None else [str(m) for m in only],
                )
            except (ProjectionGap, IncompleteHistory) as error:
                progress.stop()
                typer.echo(
                    f"error: Kafka does not hold the whole history ({error}); nothing was "
                    "changed. Replay from the store: rollcall replay --source store",
                    err=True,
                )
                raise typer.Exit(2) from None
            except OlderShape as error:
                progress.stop()
                typer.echo(f"error: {error}; nothing was changed: rollcall replay", err=True)
                raise typer.Exit(2) from None
        rebuilt = "read models" if only is None else ", ".join(str(m) for m in only)
        typer.echo(f"{applied} events applied; {rebuilt} swapped in")


dead_letters_app = typer.Typer(
    help="Records a part could not handle, parked in the dead-letter topic (SPEC 10.1)."
)
app.add_typer(dead_letters_app, name="dead-letters")


def _dead_letters(settings: Settings) -> tuple[Engine, list[DeadLetter]]:
    with refusals_as_exit():
        kafka = bootstrap.broker_of(settings)
    engine = engine_for(settings.resolved_database_url)
    migrations.migrate(engine)
    return engine, dead_letters.read(kafka, settings.topic_prefix, engine)


@dead_letters_app.command("list")
def dead_letters_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Every dead letter, oldest first: its id, part, source, event type, error, and when
    it was redriven (blank: still waiting)."""
    settings = load_settings()
    engine, found = _dead_letters(settings)
    engine.dispose()
    for dead in found:
        row = dead.summary()
        if as_json:
            typer.echo(json.dumps(row))
        else:
            waiting = row["redriven_at"] or "waiting"
            typer.echo(
                f"{row['id']:>8}  {row['part']:<9}  {waiting:<25}  {row['source']}  "
                f"{row['type'] or '-'}  {row['error']}"
            )
    if not as_json:
        left = sum(1 for dead in found if dead.redriven_at is None)
        typer.echo(f"{len(found)} dead letter(s), {left} waiting", err=True)


@dead_letters_app.command("redrive")
def dead_letters_redrive(
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="ids to give again (default: every waiting one)"),
    ] = None,
) -> None:
    """Give dead letters to their part again, after the cause is fixed. Each counts once
    in effect however often it is given; one the part still fails on stays waiting, and
    the command exits 1."""
    settings = load_settings()
    engine, found = _dead_letters(settings)
    by_id = {dead.id: dead for dead in found}
    unknown = sorted(set(ids or ()) - set(by_id))
    if unknown:
        typer.echo(f"error: no dead letter {', '.join(unknown)}", err=True)
        raise typer.Exit(2)
    chosen = [by_id[i] for i in ids] if ids else [d for d in found if d.redriven_at is None]
    failed = 0
    with opened(settings) as rollcall:
        redriver = Redriver(engine, rollcall.store)
        for dead in chosen:
            why = redriver.redrive(dead)
            if why is None:
                typer.echo(f"{dead.id}: redriven to the {dead.part}")
            else:
                failed += 1
                typer.echo(f"{dead.id}: still refused: {why}", err=True)
    engine.dispose()
    if failed:
        raise typer.Exit(1)


def main() -> None:
    # Everything Rollcall writes (the database with every name and email, mail, the
    # token secret) is readable by its owner only: files 0600, directories 0700.
    os.umask(0o077)
    app()
