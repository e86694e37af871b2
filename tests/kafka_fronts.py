"""A broker's front door with what a managed Kafka asks of its clients, for the local
broker that enforces neither (docs/operations.md, "Kafka in a real cluster").

``Front`` listens on 127.0.0.1 and passes each connection through to the broker once
the client has done what the front asks: a TLS handshake with the front's certificate
(``context``), and a SASL/SCRAM-SHA-512 login (``users``) spoken in the Kafka protocol
itself (SaslHandshake, then SaslAuthenticate; RFC 5802 with SHA-512, RFC 7677). Before
the login only ApiVersions is passed on, as a broker answers it to anyone; any other
request, a wrong password or an unknown user ends the connection. The broker
advertises the front's address, so that its clients come back through it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import threading
from contextlib import suppress
from typing import Any

from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

MECHANISM = "SCRAM-SHA-512"
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
ITERATIONS = 4096


class Front:
    def __init__(
        self,
        port: int,
        upstream: int,
        context: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.upstream, self.context, self.users = upstream, context, users
        self.server = socket.create_server(("127.0.0.1", port))
        self.logins: list[str] = []
        """Who logged in (user names), in order."""
        self.refused: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        client: socket.socket = raw
        if self.context is not None:
            try:
                client = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()  # a client that does not trust us, or speaks no TLS
                return
        broker = socket.create_connection(("127.0.0.1", self.upstream))
        if self.users is not None and not self._login(client, broker):
            for end in (client, broker):
                end.close()
            return
        threading.Thread(target=_pipe, args=(broker, client), daemon=True).start()
        _pipe(client, broker)

    def _login(self, client: socket.socket, broker: socket.socket) -> bool:
        scram = Scram(self.users or {})
        while True:
            frame = _frame(client)
            if frame is None:
                return False
            api_key, version, correlation = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:
                broker.sendall(struct.pack(">i", len(frame)) + frame)
                answer = _frame(broker)
                if answer is None:
                    return False
                client.sendall(struct.pack(">i", len(answer)) + answer)
            elif api_key == SASL_HANDSHAKE:
                asked = SaslHandshakeRequest.decode(frame, version=version, header=True)
                known = asked.mechanism == MECHANISM
                error = 0 if known else UNSUPPORTED_SASL_MECHANISM
                reply = SaslHandshakeResponse(error_code=error, mechanisms=[MECHANISM])
                _send(client, reply, version, correlation)
                if not known:
                    return False
            elif api_key == SASL_AUTHENTICATE:
                asked = SaslAuthenticateRequest.decode(frame, version=version, header=True)
                answer_bytes, problem = scram.step(bytes(asked.auth_bytes))
                reply = SaslAuthenticateResponse(
                    error_code=SASL_AUTHENTICATION_FAILED if problem else 0,
                    error_message=problem,
                    auth_bytes=answer_bytes,
                    session_lifetime_ms=0,
                )
                _send(client, reply, version, correlation)
                if problem:
                    self.refused.append(scram.user)
                    return False
                if scram.done:
                    self.logins.append(scram.user)
                    return True
            else:
                return False  # nothing else before a login


class Scram:
    """The server's side of one SCRAM-SHA-512 exchange."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.user = ""
        self.done = False
        self._first_bare = self._server_first = self._nonce = ""
        self._salt = os.urandom(16)

    def step(self, message: bytes) -> tuple[bytes, str | None]:
        """The answer to the client's next message, and what is wrong (None: nothing)."""
        text = message.decode()
        if not self._nonce:
            self._first_bare = text.split(",", 2)[2]  # after the GS2 header "n,,"
            fields = dict(p.split("=", 1) for p in self._first_bare.split(","))
            self.user = fields["n"]
            if self.user not in self.users:
                return b"", "Authentication failed: unknown user"
            self._nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
            salt = base64.b64encode(self._salt).decode()
            self._server_first = f"r={self._nonce},s={salt},i={ITERATIONS}"
            return self._server_first.encode(), None
        fields = dict(p.split("=", 1) for p in text.split(","))
        without_proof = text.rsplit(",p=", 1)[0]
        auth = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        password = self.users[self.user].encode()
        salted = hashlib.pbkdf2_hmac("sha512", password, self._salt, ITERATIONS)
        client_key = _hmac(salted, b"Client Key")
        signature = _hmac(hashlib.sha512(client_key).digest(), auth)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if fields.get("r") != self._nonce or base64.b64decode(fields["p"]) != proof:
            return b"", "Authentication failed: wrong password"
        self.done = True
        server_signature = _hmac(_hmac(salted, b"Server Key"), auth)
        return b"v=" + base64.b64encode(server_signature), None


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha512).digest()


def _send(client: socket.socket, reply: Any, version: int, correlation: int) -> None:
    reply.API_VERSION = version  # before the header: kafka-python sets a request's there
    reply.with_header(correlation_id=correlation)
    client.sendall(reply.encode(header=True, framed=True))


def _frame(source: socket.socket) -> bytes | None:
    """One size-prefixed Kafka frame, without its size; None at the end."""
    size = _exactly(source, 4)
    return None if size is None else _exactly(source, struct.unpack(">i", size)[0])


def _exactly(source: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = source.recv(count - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for end in (source, target):
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
