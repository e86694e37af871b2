"""SPEC §9.5: one JSON object per line with ROLLCALL_LOG_FORMAT=json, naming the level,
the part, the message, and the event and correlation ids where known; text otherwise."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from kafka import errors

from rollcall.adapters import logs


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_part_and_the_ids_in_hand(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json", logging.INFO, part="notifier")
    log = logging.getLogger("rollcall.test")
    log.info("outside any work")
    with logs.context(part="sender", correlation_id="req-1"):
        log.warning("mail %s failed", "m-1", extra={"event_id": "ev-9"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("with a traceback")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == [
        "outside any work",
        "mail m-1 failed",
        "with a traceback",
    ]
    assert lines[0]["part"] == "notifier"
    assert "correlation_id" not in lines[0]
    assert "event_id" not in lines[0]
    assert lines[1] | {"time": None} == {
        "time": None,
        "level": "warning",
        "part": "sender",
        "logger": "rollcall.test",
        "message": "mail m-1 failed",
        "correlation_id": "req-1",
        "event_id": "ev-9",
    }
    assert "ValueError: boom" in lines[2]["exception"]
    assert lines[2]["level"] == "error"


def test_text_lines_name_the_ids_too(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("text", logging.INFO, part="relay")
    with logs.context(event_id="ev-1"):
        logging.getLogger("rollcall.test").info("published")
    line = capsys.readouterr().err.strip()
    assert " INFO relay rollcall.test: published [event_id=ev-1]" in line


def test_the_kafka_clients_recovered_network_errors_are_one_line(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A race inside the Kafka client (a read on a socket it has just closed) is logged
    by it with a traceback; it recovers by itself, so the line is all that is kept."""
    logs.configure("text", part="relay")
    try:
        raise AttributeError("'NoneType' object has no attribute 'recv'")
    except AttributeError:
        logging.getLogger("kafka.net.transport").exception(
            "%s: Error receiving network data closing socket", "<conn>"
        )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "Error receiving network data closing socket: AttributeError: " in err
    assert err.count("\n") == 1
    assert " ERROR " in err  # on a transport still open: worth an operator's look


def test_a_read_on_a_transport_the_client_closed_itself_is_info(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen when a part stopped: the client's own race on the transport it had just
    closed (``[none] (closed)``) is not an error of anything an operator runs."""
    logs.configure("text", part="relay")
    try:
        raise AttributeError("'NoneType' object has no attribute 'recv'")
    except AttributeError:
        logging.getLogger("kafka.net.transport").exception(
            "%s: Error receiving network data closing socket",
            "<KafkaTCPTransport [none] (closed)>",
        )
    err = capsys.readouterr().err
    assert " INFO relay kafka.net.transport: " in err
    assert " ERROR " not in err


def test_a_refresh_failed_by_our_own_close_is_info_and_a_lost_connection_stays_an_error(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC §10.2, no ERROR line on a clean stop: a part stopping during its group join
    closes the client while its metadata refresh is in flight, and the client reports
    that refresh as failed. The stop was ours; a connection lost is not."""
    logs.configure("text", part="projector")
    cluster = logging.getLogger("kafka.cluster")
    cluster.error("Metadata refresh: failed %s", errors.Cancelled())
    cluster.error("Metadata refresh: failed %s", "Transport closed for writes")
    cluster.error("Metadata refresh: failed %s", errors.KafkaConnectionError("reset by peer"))
    lines = capsys.readouterr().err.splitlines()
    assert [" ERROR " in line for line in lines] == [False, False, True]
    assert all("Metadata refresh: failed" in line for line in lines)
