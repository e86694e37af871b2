"""docker/compose.yaml cannot be run here (no Docker engine), so it is checked: every
Rollcall service runs a real `rollcall` command, uses only variables the settings know,
and ports, dependencies and health checks are consistent."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer._click.core import Command, Context  # Typer bundles its own Click
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from rollcall.entrypoints.cli import app as cli_app
from rollcall.entrypoints.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
KNOWN = {f"ROLLCALL_{name.upper()}" for name in Settings.model_fields}


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def command_problem(args: list[str]) -> str | None:
    """Parse ``args`` with the real CLI (without running it): None if it is valid."""
    command: Command = typer.main.get_command(cli_app)
    name = "rollcall"
    try:
        while isinstance(command, TyperGroup) and args:
            sub = command.get_command(Context(command), args[0])
            if sub is None:
                return f"unknown command {args[0]!r} under {name!r}"
            name, command, args = args[0], sub, args[1:]
        command.make_context(name, list(args))
    except ClickException as error:
        return f"{name}: {error.format_message()}"
    return None


def problems(compose: dict[str, Any]) -> list[str]:
    found = []
    services: dict[str, Any] = compose["services"]
    ours = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("rollcall")}
    if not ours:
        found.append("no service runs the rollcall image")
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                found.append(f"{name}: depends on unknown service {dependency}")
            elif dependency == name:
                found.append(f"{name}: depends on itself")
    for name, service in ours.items():
        command = service.get("command") or []
        if command[:1] != ["rollcall"]:
            found.append(f"{name}: command must start with rollcall, got {command}")
        elif problem := command_problem(command[1:]):
            found.append(f"{name}: {problem}")
        for variable in service.get("environment", {}):
            if variable not in KNOWN:
                found.append(f"{name}: unknown variable {variable}")
        for mapping in service.get("ports", []):
            container = str(mapping).rsplit(":", 1)[-1]
            if "--port" not in command or command[command.index("--port") + 1] != container:
                found.append(f"{name}: publishes {container} but does not listen there")
    for name in ("postgres", "kafka", "api"):
        if "healthcheck" not in services.get(name, {}):
            found.append(f"{name}: no health check")
    return found


def test_compose_file_is_consistent() -> None:
    compose = load()
    assert problems(compose) == []
    parts = {tuple(s["command"][1:3]) for s in compose["services"].values() if "command" in s}
    assert {
        ("serve", "api"),
        ("serve", "relay"),
        ("serve", "projector"),
        ("serve", "notifier"),
        ("serve", "scheduler"),
        ("topics",),
    } <= parts
    assert compose["services"]["projector"]["deploy"]["replicas"] == 2
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


@pytest.mark.parametrize(
    ("service", "change", "expected"),
    [
        ("relay", {"command": ["rollcall", "serve", "relayy"]}, "relayy"),
        ("relay", {"command": ["rollcall", "frobnicate"]}, "unknown command 'frobnicate'"),
        ("api", {"command": ["rollcall", "serve", "api", "--prot", "8000"]}, "--prot"),
        ("notifier", {"environment": {"ROLLCALL_SMTP_HOSTNAME": "x"}}, "ROLLCALL_SMTP_HOSTNAME"),
        ("scheduler", {"depends_on": {"zookeeper": {}}}, "zookeeper"),
        ("api", {"ports": ["8000:9000"]}, "9000"),
    ],
)
def test_compose_checks_catch_mistakes(service: str, change: dict[str, Any], expected: str) -> None:
    compose = copy.deepcopy(load())
    compose["services"][service].update(change)
    found = problems(compose)
    assert found
    assert any(expected in p for p in found), found


def test_dockerfile_is_pinned_and_non_root() -> None:
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    arguments = dict(
        line.removeprefix("ARG ").split("=", 1)
        for line in dockerfile.splitlines()
        if line.startswith("ARG ") and "=" in line
    )
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], line.split()[1])
        for line in dockerfile.splitlines()
        if line.startswith("FROM")
    ]
    assert len(bases) == 2  # multi-stage: the build tools stay out of the image
    assert all(re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", base) for base in bases), bases
    # A numeric user, so that Kubernetes' runAsNonRoot can verify it is not root.
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users
    assert all(u.split(":")[0].isdigit() and u.split(":")[0] != "0" for u in users)
    assert "\nHEALTHCHECK " in dockerfile
    ignored = (COMPOSE.parent.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", ".env"} <= set(ignored)


CLUSTER = COMPOSE.with_name("compose.cluster.yaml")


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base`` as compose merges files: mappings key by key, the rest
    replaced."""
    result = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def test_the_cluster_profile_has_three_brokers_replication_3_and_tls_for_clients() -> None:
    """SPEC §10.5's example cluster: docker/compose.cluster.yaml over compose.yaml. Every
    Rollcall part reaches the three brokers through TLS with the CA the `certs` service
    makes, creates topics with 3 replicas and min.insync.replicas 2, and two relays run
    (one leads)."""
    cluster: dict[str, Any] = yaml.safe_load(CLUSTER.read_text())
    compose = merged(load(), cluster)
    assert problems(compose) == []
    services = compose["services"]
    brokers = {n: s for n, s in services.items() if n.startswith("kafka")}
    assert set(brokers) == {"kafka", "kafka-2", "kafka-3"}
    ids = {s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()}
    assert ids == {"1", "2", "3"}
    voters = brokers["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert sorted(v.split("@")[1].split(":")[0] for v in voters) == sorted(brokers)
    certs = services["certs"]["command"][0]
    advertised = set()
    for name, broker in brokers.items():
        env = broker["environment"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert "CLIENTS:SSL" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        assert env["KAFKA_SSL_KEYSTORE_LOCATION"] == f"/certs/{name}.p12"
        assert "certs:/certs:ro" in broker["volumes"]
        advertised |= {a for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",") if "CLIENTS" in a}
    assert "for host in kafka kafka-2 kafka-3" in certs
    assert "-ext san=dns:$$host" in certs  # each certificate names its broker
    ours = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("rollcall")}
    for name, service in ours.items():
        env = service["environment"]
        assert env["ROLLCALL_KAFKA_SECURITY_PROTOCOL"] == "SSL", name
        assert env["ROLLCALL_KAFKA_SSL_CAFILE"] == "/certs/ca.pem", name
        assert (
            env["ROLLCALL_KAFKA_REPLICATION_FACTOR"],
            env["ROLLCALL_KAFKA_MIN_INSYNC_REPLICAS"],
        ) == ("3", "2")
        assert {f"CLIENTS://{b}" for b in env["ROLLCALL_KAFKA_BOOTSTRAP"].split(",")} == advertised
        assert "certs:/certs:ro" in service["volumes"], name
    assert services["relay"]["deploy"]["replicas"] == 2
