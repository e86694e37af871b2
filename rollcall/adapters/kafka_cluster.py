"""A real Kafka cluster (SPEC §10.5): how every client reaches it (TLS, SASL), and the
topics Rollcall creates in it and checks at start.

Every Kafka client of a process talks to the same cluster, with the same credentials:
the wiring sets them once at start (``secure``), and each client is made with
``connection(bootstrap)``. Mistakes in them are found before anything connects, one
line each (``Security.problems``)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from rollcall.adapters.contract import AGGREGATES

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEAD_LETTER = "deadletter"
UNLIMITED = -1


@dataclass(frozen=True)
class Security:
    """``ROLLCALL_KAFKA_SECURITY_PROTOCOL`` and what goes with it."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in {"SSL", "SASL_SSL"}

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def problems(self) -> list[str]:
        """What is wrong, one line per mistake, naming the variables to fix."""
        v = "ROLLCALL_KAFKA_"
        if self.protocol not in PROTOCOLS:
            return [f"{v}SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}"]
        found = []
        if self.sasl and self.sasl_mechanism is None:
            found.append(f"{v}SASL_MECHANISM is needed with {v}SECURITY_PROTOCOL={self.protocol}")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in MECHANISMS:
            found.append(f"{v}SASL_MECHANISM must be one of {', '.join(MECHANISMS)}")
        if self.sasl and not (self.username and self.password):
            found.append(f"{v}SASL_USERNAME and {v}SASL_PASSWORD are needed with SASL")
        if not self.sasl and (self.sasl_mechanism or self.username or self.password):
            found.append(f"{v}SASL_* is set but {v}SECURITY_PROTOCOL={self.protocol} uses no SASL")
        files = {"SSL_CAFILE": self.ca_file, "SSL_CERTFILE": self.cert_file}
        files["SSL_KEYFILE"] = self.key_file
        for name, path in files.items():
            if path is not None and not Path(path).is_file():
                found.append(f"{v}{name}: {path} is not a file")
        if (self.cert_file is None) != (self.key_file is None):
            found.append(f"{v}SSL_CERTFILE and {v}SSL_KEYFILE go together (a client certificate)")
        if not self.tls and any(files.values()):
            found.append(f"{v}SSL_* is set but {v}SECURITY_PROTOCOL={self.protocol} uses no TLS")
        return found

    def client_config(self) -> dict[str, Any]:
        """The settings every kafka-python client takes for this."""
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            config |= {"ssl_check_hostname": True, "ssl_cafile": self.ca_file}
            config |= {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}
        if self.sasl:
            config |= {"sasl_mechanism": self.sasl_mechanism}
            config |= {"sasl_plain_username": self.username, "sasl_plain_password": self.password}
        return config


_security = Security()


def secure(security: Security) -> None:
    """Every Kafka client this process makes from now on uses ``security``."""
    global _security
    _security = security


def connection(bootstrap: str) -> dict[str, Any]:
    """The connection settings of a client of the cluster at ``bootstrap``."""
    return {"bootstrap_servers": bootstrap, **_security.client_config()}


@dataclass(frozen=True)
class Topics:
    """The topics Rollcall creates, and how: ``ROLLCALL_KAFKA_PARTITIONS``,
    ``_REPLICATION_FACTOR``, ``_MIN_INSYNC_REPLICAS`` (None: the broker's default) and
    ``_RETENTION_MS`` (-1: forever, so that a new subscriber can read all history)."""

    prefix: str
    partitions: int = 4
    replication_factor: int = 1
    min_insync_replicas: int | None = None
    retention_ms: int = UNLIMITED

    @property
    def names(self) -> dict[str, str]:
        """Aggregate -> topic name, plus the dead-letter topic."""
        names = {aggregate: f"{self.prefix}.{aggregate}" for aggregate in AGGREGATES}
        names[DEAD_LETTER] = f"{self.prefix}.{DEAD_LETTER}"
        return names

    def configs(self) -> dict[str, str]:
        configs = {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return configs

    def create_missing(self, admin: KafkaAdminClient) -> list[str]:
        """Create the topics that are missing; return their names."""
        existing = set(admin.list_topics())
        created = []
        for name in self.names.values():
            if name not in existing:
                topic = NewTopic(
                    name, self.partitions, self.replication_factor, topic_configs=self.configs()
                )
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([topic])
                    created.append(name)
        return created

    def mismatches(self, admin: KafkaAdminClient, configs: bool = True) -> list[str]:
        """Existing topics made otherwise than these settings say, one line each:
        fewer partitions (keys would map elsewhere), fewer replicas or in-sync replicas
        (an acknowledged write could be lost), less retention (history missing for
        new subscribers), or compaction (older events of an aggregate dropped).
        ``configs``: also ask for the topics' configurations (a broker that cannot
        describe them is not asked)."""
        found = []
        names = sorted(self.names.values())
        for topic in admin.describe_topics(names):
            name, partitions = topic["name"], topic.get("partitions") or []
            if topic.get("error_code") or not partitions:
                continue  # missing: created, not checked
            if len(partitions) < self.partitions:
                found.append(f"{name}: {len(partitions)} partitions, wanted {self.partitions}")
            replicas = min(len(p.get("replica_nodes") or []) for p in partitions)
            if replicas < self.replication_factor:
                found.append(
                    f"{name}: replication factor {replicas}, wanted {self.replication_factor}"
                )
        if configs:
            found.extend(self._config_mismatches(admin, names))
        return found

    def _config_mismatches(self, admin: KafkaAdminClient, names: list[str]) -> list[str]:
        wanted_retention = float("inf") if self.retention_ms < 0 else self.retention_ms
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        try:
            described = admin.describe_configs(resources, config_filter="all")
        except KafkaError:
            log.debug("the broker cannot describe topic configurations", exc_info=True)
            return []
        found = []
        for name, configs in sorted(described.get("topic", {}).items()):
            retention = _value(configs, "retention.ms")
            if retention is not None and 0 <= int(retention) < wanted_retention:
                found.append(f"{name}: retention.ms={int(retention)}, wanted {self.retention_ms}")
            policy = _value(configs, "cleanup.policy")
            if policy is not None and "compact" in policy:
                found.append(f"{name}: cleanup.policy={policy}, wanted delete")
            insync = _value(configs, "min.insync.replicas")
            if self.min_insync_replicas and insync and int(insync) < self.min_insync_replicas:
                found.append(
                    f"{name}: min.insync.replicas={insync}, wanted {self.min_insync_replicas}"
                )
        return found


def _value(configs: dict[str, Any], key: str) -> str | None:
    entry = configs.get(key)
    value = entry.get("value") if isinstance(entry, dict) else entry
    return None if value is None else str(value)


def ensure_topics(bootstrap: str, topics: Topics, configs: bool = True) -> list[str]:
    """Create the missing topics; return the existing ones' mismatches, one line each."""
    admin = KafkaAdminClient(**connection(bootstrap), request_timeout_ms=10_000)
    try:
        topics.create_missing(admin)
        return topics.mismatches(admin, configs)
    finally:
        admin.close()
