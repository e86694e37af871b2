"""One Settings object, read once from the environment or a ``.env`` file (SPEC §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollcall.adapters.logs import LogFormat


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROLLCALL_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic_prefix: str = "rollcall"
    kafka_partitions: int = 4
    kafka_retention_ms: int = -1
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "rollcall@localhost"
    mail_lease_seconds: float = 60.0
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

    @property
    def resolved_database_url(self) -> str:
        """The embedded default is a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rollcall.sqlite3').resolve()}"
