"""Logs (SPEC §9.5): text for people, or one JSON object per line for collectors.

Every line names its part (api, relay, projector, notifier, scheduler) and, where the
work in hand has them, the correlation id of the request that started it and the id
of the event being handled. Code states them once for a stretch of work
(``context(...)``) or per line (``extra={"event_id": ...}``); the formatter adds them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
FIELDS = ("part", "correlation_id", "event_id")

_part: ContextVar[str | None] = ContextVar("rollcall_part", default=None)
_correlation_id: ContextVar[str | None] = ContextVar("rollcall_correlation_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("rollcall_event_id", default=None)
_VARS = {"part": _part, "correlation_id": _correlation_id, "event_id": _event_id}
_process_part = "rollcall"


def correlation_id() -> str | None:
    """The correlation id of the work in hand (an HTTP request's), if any."""
    return _correlation_id.get()


def new_correlation_id() -> str:
    return str(uuid.uuid4())


@contextmanager
def context(
    *, part: str | None = None, correlation_id: str | None = None, event_id: str | None = None
) -> Iterator[None]:
    """Name the part, correlation id or event id of every line logged inside."""
    given = {"part": part, "correlation_id": correlation_id, "event_id": event_id}
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in given.items() if value]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _Context(logging.Filter):
    """Puts the part and the ids on each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if record.part is None:  # type: ignore[attr-defined]
            record.part = _process_part
        return True


def fold_kafka_network_tracebacks() -> None:
    """Fold the tracebacks of the Kafka client's recovered network errors into their one
    line, whichever handler writes them (``_OneLine``); and say as what it is the
    failure of a request the client had in flight when we closed it (``_OwnClose``)."""
    for name in ("kafka.net.transport", "kafka.net.connection", "kafka.net.selector"):
        network = logging.getLogger(name)  # a logger's filters see its own records only
        if not any(isinstance(f, _OneLine) for f in network.filters):
            network.addFilter(_OneLine())
    cluster = logging.getLogger("kafka.cluster")
    if not any(isinstance(f, _OwnClose) for f in cluster.filters):
        cluster.addFilter(_OwnClose())


class _OwnClose(logging.Filter):
    """A client closed while its metadata refresh was in flight (a part asked to stop
    during its group join) reports the refresh as failed, at ERROR: with "Transport
    closed for writes" when the close met the request on its way out, with the client's
    ``Cancelled`` when the connection it waited on was closed cleanly (a lost one fails
    its requests with its own error, which stays an ERROR). The close was ours, nothing
    failed: said at INFO."""

    OURS = ("Transport closed for writes", "Cancelled")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and self._ours(record):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True

    def _ours(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return message.startswith("Metadata refresh: failed") and any(
            cause in message for cause in self.OURS
        )


class _OneLine(logging.Filter):
    """The Kafka client's network layer logs connection errors it recovers from itself
    (it closes the connection and dials again) with a traceback; one of them is a race
    of its own, a read on a socket it has just closed. They say nothing an operator
    can act on beyond their one line, so the traceback is folded into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            if self._own_race(record.msg, error):
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True

    @staticmethod
    def _own_race(message: str, error: BaseException) -> bool:
        """The read on a transport the client had already closed (``[none] (closed)``,
        its socket gone): nothing was lost, no connection failed; said at INFO."""
        return (
            isinstance(error, AttributeError)
            and "(closed)" in message
            and "'NoneType' object has no attribute 'recv'" in message
        )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "part": getattr(record, "part", _process_part),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("correlation_id", "event_id"):
            value = getattr(record, name, None)
            if value:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(part)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={getattr(record, name)}" for name in FIELDS[1:] if getattr(record, name)]
        return f"{line} [{' '.join(ids)}]" if ids else line


def configure(fmt: LogFormat = "text", level: int = logging.INFO, part: str = "rollcall") -> None:
    """Send every log line (ours, uvicorn's, the libraries') to stderr in ``fmt``."""
    global _process_part
    _process_part = part
    handler = logging.StreamHandler()
    handler.addFilter(_Context())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    fold_kafka_network_tracebacks()
