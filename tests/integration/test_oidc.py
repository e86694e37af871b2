"""SPEC §10.3: the API as a resource server of the company's OpenID provider. A local
provider (discovery document and key set over real HTTP, keys that rotate) signs access
tokens with RS256, PS256 and ES256; Rollcall accepts those of its issuer and audience,
finds a rotated key, and refuses the rest with 401 (503 while the provider cannot be
reached). Its own HS256 tokens keep working beside them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rollcall.adapters.clock import ManualClock
from rollcall.application.commands import PutUser
from rollcall.application.service import SYSTEM_ACTOR, Rollcall
from rollcall.domain.errors import Reason, RollcallError
from rollcall.entrypoints.api.oidc import OidcSettings, OidcTokens
from tests.api import Client, api_client
from tests.scenario import LEARNER

AUDIENCE = "rollcall-api"
SUBJECT = "auth0|5f7c8ec7c33c6c004bbafe82"


class Provider:
    """An OpenID provider's public side: its discovery document and its key set."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}  # kid -> private key
        self.published: list[str] = []  # the kids in the key set
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks"}
                elif self.path == "/jwks":
                    provider.fetches += 1
                    body = {"keys": [provider.jwk(kid) for kid in provider.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, kid: str, algorithm: str, publish: bool = True) -> None:
        if algorithm == "ES256":
            self.keys[kid] = (algorithm, ec.generate_private_key(ec.SECP256R1()))
        else:
            self.keys[kid] = (algorithm, rsa.generate_private_key(65537, 2048))
        if publish:
            self.published.append(kid)

    def jwk(self, kid: str) -> dict[str, Any]:
        algorithm, key = self.keys[kid]
        family = jwt.algorithms.ECAlgorithm if algorithm == "ES256" else jwt.algorithms.RSAAlgorithm
        found: dict[str, Any] = json.loads(family.to_jwk(key.public_key()))
        return {**found, "kid": kid, "use": "sig", "alg": algorithm}

    def token(self, kid: str, **claims: Any) -> str:
        algorithm, key = self.keys[kid]
        now = datetime.now(UTC)
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": SUBJECT,
            "iat": now,
            "exp": now + timedelta(hours=1),
            **claims,
        }
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    made = Provider()
    made.add("rsa-1", "RS256")
    made.add("pss-1", "PS256")
    made.add("ec-1", "ES256")
    yield made
    made.close()


@pytest.fixture
def served(
    provider: Provider, rollcall: Rollcall, database_url: str, clock: ManualClock
) -> Iterator[Client]:
    rollcall.put_user(
        PutUser(actor_id=SYSTEM_ACTOR, user_id=SUBJECT, name="Ivy Idp", email="ivy@example.com")
    )
    settings = OidcSettings(provider.issuer, AUDIENCE)
    with api_client(rollcall, database_url, clock, oidc=settings, oidc_cooldown=0) as client:
        yield client


def hs256(claims: dict[str, Any], key: bytes) -> str:
    """A token signed by hand (PyJWT rightly refuses to key HMAC with a public key): the
    old algorithm-confusion attack on servers that let the token choose."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    plain = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    signed = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    signed += b"." + part(json.dumps(plain).encode())
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return (signed + b"." + part(mac)).decode()


def status(client: Client, token: str) -> int:
    answer = client.http.get("/v1/me/trainings", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code


@pytest.mark.parametrize("kid", ["rsa-1", "pss-1", "ec-1"])
def test_the_providers_tokens_name_their_user(served: Client, provider: Provider, kid: str) -> None:
    assert status(served, provider.token(kid)) == 200


def test_tokens_of_another_audience_issuer_key_or_algorithm_are_401(
    served: Client, provider: Provider
) -> None:
    provider.add("unpublished", "RS256", publish=False)
    now = datetime.now(UTC)
    _, rsa_key = provider.keys["rsa-1"]
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    unsigned = jwt.encode(claims, None, algorithm="none")
    refused = {
        "another audience": provider.token("rsa-1", aud="another-api"),
        "another issuer": provider.token("rsa-1", iss="https://evil.example.com"),
        "a key it does not publish": provider.token("unpublished"),
        "alg none": unsigned,
        "expired": provider.token(
            "rsa-1", iat=now - timedelta(hours=2), exp=now - timedelta(hours=1)
        ),
        "longer than tokens live": provider.token("rsa-1", exp=now + timedelta(hours=101)),
        "no user id": provider.token("rsa-1", sub="has/slash"),
        "HS256 keyed with the provider's public key": hs256(claims, public_pem),
        "nobody in the directory": provider.token("rsa-1", sub="nobody-in-the-directory"),
    }
    for why, token in refused.items():
        answer = served.http.get("/v1/me/trainings", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, why
        assert answer.json()["error"] == "unauthorized", why


def test_a_rotated_key_is_fetched_when_a_token_names_it(served: Client, provider: Provider) -> None:
    assert status(served, provider.token("rsa-1")) == 200
    fetched = provider.fetches
    provider.add("rsa-2", "RS256")  # the provider rotates: the new key is published
    provider.published.remove("rsa-1")
    assert status(served, provider.token("rsa-2")) == 200
    assert provider.fetches == fetched + 1
    assert status(served, provider.token("rsa-1")) == 401  # retired


def test_rollcalls_own_tokens_still_work_beside_the_providers(served: Client) -> None:
    assert served.call("GET", "/v1/me/trainings", LEARNER).status_code == 200


def test_a_provider_that_cannot_be_reached_is_503_never_a_way_in(
    rollcall: Rollcall, database_url: str, clock: ManualClock
) -> None:
    gone = Provider()
    gone.add("rsa-1", "RS256")
    token = gone.token("rsa-1")
    settings = OidcSettings(gone.issuer, AUDIENCE)
    gone.close()
    with api_client(rollcall, database_url, clock, oidc=settings) as client:
        answer = client.http.get("/v1/me/trainings", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]


def test_the_user_is_the_claim_the_settings_name(
    provider: Provider, rollcall: Rollcall, database_url: str, clock: ManualClock
) -> None:
    """``ROLLCALL_OIDC_USER_CLAIM``: a company whose directory ids are e-mail addresses."""
    rollcall.put_user(
        PutUser(actor_id=SYSTEM_ACTOR, user_id="ivy@example.com", name="Ivy", email="i@example.com")
    )
    settings = OidcSettings(provider.issuer, AUDIENCE, user_claim="email")
    with api_client(rollcall, database_url, clock, oidc=settings) as client:
        assert status(client, provider.token("rsa-1", email="ivy@example.com")) == 200
        assert status(client, provider.token("rsa-1")) == 401  # no e-mail claim


def call(client: Client, method: str, path: str, token: str, **kwargs: Any) -> Any:
    return client.http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def test_a_service_acts_with_its_scopes_as_service_client_id(
    served: Client, provider: Provider
) -> None:
    """SPEC §10.3, service accounts: a client's own token (no directory user) acts
    with the Rollcall scopes it carries, and is recorded as ``service:<client_id>``."""
    writer = provider.token(
        "rsa-1", sub="ci-bot@clients", client_id="ci-bot", scope="rollcall.write"
    )
    body = {"title": "Induction", "sessions": []}
    created = call(served, "POST", "/v1/trainings", writer, json=body)
    assert created.status_code == 201, created.text
    tid = created.json()["data"]["id"]
    audit = served.ok("GET", f"/v1/audit/{tid}", "ada")
    assert {e["actor_id"] for e in audit["events"]} == {"service:ci-bot"}

    reader = provider.token("rsa-1", sub="report-job", azp="reports", scp=["rollcall.read"])
    assert call(served, "GET", "/v1/trainings", reader).status_code == 200
    refused = call(served, "POST", "/v1/trainings", reader, json=body)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"

    no_scope = provider.token("rsa-1", sub="x@clients", client_id="x", scope="openid")
    assert call(served, "GET", "/v1/trainings", no_scope).status_code == 401


def test_a_persons_token_issued_to_a_client_is_that_persons(
    served: Client, provider: Provider
) -> None:
    """A token naming a directory user acts as them, whatever client asked for it."""
    token = provider.token("rsa-1", azp="portal", scope="openid rollcall.admin")
    assert call(served, "GET", "/v1/me/trainings", token).status_code == 200
    body = {"title": "Induction", "sessions": []}
    assert call(served, "POST", "/v1/trainings", token, json=body).status_code == 403


def test_an_id_token_of_another_sign_in_or_client_is_refused(provider: Provider) -> None:
    """The pages' sign-in (SPEC §10.3): the ID token must carry the nonce this
    browser's sign-in sent, and name this client as its audience."""
    tokens = OidcTokens(OidcSettings(provider.issuer, AUDIENCE, client_id="pages"), 24)
    good = provider.token("rsa-1", aud="pages", nonce="n-1")
    assert tokens.person_of(good, "pages", "n-1") == SUBJECT
    for why, token in {
        "another sign-in": good,
        "another client": provider.token("rsa-1", aud="elsewhere", nonce="n-2"),
        "no nonce": provider.token("rsa-1", aud="pages"),
        "not a token at all": "not.a-token",
    }.items():
        with pytest.raises(RollcallError) as refused:
            tokens.person_of(token, "pages", "n-2")
        assert refused.value.reason is Reason.UNAUTHORIZED, why
