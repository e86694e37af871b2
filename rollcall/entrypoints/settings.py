"""One Settings object, read once from the environment or a ``.env`` file (SPEC §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollcall.adapters.kafka_cluster import Security, Topics
from rollcall.adapters.logs import LogFormat


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROLLCALL_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic_prefix: str = "rollcall"
    kafka_partitions: int = Field(default=4, ge=1)
    kafka_retention_ms: int = -1
    kafka_replication_factor: int = Field(default=1, ge=1)
    """Replicas of each topic Rollcall creates: 3 on a cluster of three brokers."""
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1)
    """Replicas that must have a record before it is acknowledged (with acks=all)."""
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "rollcall@localhost"
    mail_lease_seconds: float = 60.0
    notification_retention_days: int = Field(default=365, ge=1)
    """Notification-center entries older than this are deleted (SPEC §10.4)."""
    mail_retention_days: int = Field(default=30, ge=1)
    """What a mail sent longer ago than this said, and to which address, is blanked."""
    jwt_secret: SecretStr | None = None
    token_max_hours: float = 24.0
    oidc_issuer: str | None = None
    """The company's OpenID provider, whose access tokens the API accepts (SPEC §10.3)."""
    oidc_audience: str | None = None
    oidc_user_claim: str = "sub"
    oidc_client_id: str | None = None
    """The pages' client at the provider: /ui/login signs in through it (PKCE)."""
    oidc_client_secret: SecretStr | None = None
    scim_token: SecretStr | None = None
    """The company's directory provisions users at /scim/v2 with this bearer token."""
    docs: bool = False
    rate_limit_per_minute: float = 600.0
    rate_limit_burst: int = 60
    read_wait_seconds: float = Field(default=3.0, ge=0, le=60)
    """How long a read with ``min_position`` waits for the read models at most."""
    log_format: LogFormat = "text"

    @model_validator(mode="after")
    def _provider_named_whole(self) -> Self:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("ROLLCALL_OIDC_AUDIENCE is needed with ROLLCALL_OIDC_ISSUER")
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError("ROLLCALL_OIDC_ISSUER must be the provider's URL")
        return self

    @model_validator(mode="after")
    def _replicas_that_exist(self) -> Self:
        insync = self.kafka_min_insync_replicas
        if insync is not None and insync > self.kafka_replication_factor:
            raise ValueError(
                "ROLLCALL_KAFKA_MIN_INSYNC_REPLICAS cannot exceed ROLLCALL_KAFKA_REPLICATION_FACTOR"
                " (no write could ever be acknowledged)"
            )
        return self

    @property
    def kafka_security(self) -> Security:
        password = self.kafka_sasl_password
        return Security(
            protocol=self.kafka_security_protocol.upper(),
            sasl_mechanism=self.kafka_sasl_mechanism.upper() if self.kafka_sasl_mechanism else None,
            username=self.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            ca_file=self.kafka_ssl_cafile,
            cert_file=self.kafka_ssl_certfile,
            key_file=self.kafka_ssl_keyfile,
        )

    @property
    def kafka_topics(self) -> Topics:
        return Topics(
            self.topic_prefix,
            self.kafka_partitions,
            self.kafka_replication_factor,
            self.kafka_min_insync_replicas,
            self.kafka_retention_ms,
        )

    @property
    def resolved_database_url(self) -> str:
        """The embedded default is a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rollcall.sqlite3').resolve()}"
