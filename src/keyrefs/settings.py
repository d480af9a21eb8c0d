"""Settings of keyrefs, read from KEYREFS_* environment variables.

The CLI and the server build one `Settings` object and hand it to the
service; nothing reads the environment at import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from keyrefs.backends.registry import ENVIRONMENT_NAMES

DEFAULT_HOME = Path("~/.local/share/keyrefs")
DATABASE_FILE_NAME = "keyrefs.db"
MASTER_KEY_FILE_NAME = "master.key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYREFS_", extra="ignore")

    home: Path = DEFAULT_HOME
    database_url: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    secret_storage: str = "local"
    managed_prefix: str = "keyrefs_"
    # Prefix of the secrets written while keyrefs.persist-references is off.
    # Garbage collection sweeps only `managed_prefix`, which must not overlap
    # it, because those secrets have no secret_config rows until a backfill.
    legacy_prefix: str = "legacy_"
    # A flagd flag file (JSON), evaluated in-process; without it every flag
    # takes its default.
    flags_file: Path | None = None

    vault_address: str | None = None
    vault_token: SecretStr | None = None
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    vault_mount: str = "secret"
    vault_prefix: str = "keyrefs"
    vault_namespace: str | None = None

    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    aws_kms_key_id: str | None = None
    aws_tags: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_role_arn: str | None = None
    aws_external_id: str | None = None

    gcp_project: str | None = None
    gcp_location: str | None = None
    gcp_credentials_file: str | None = None
    gcp_endpoint: str | None = None

    azure_vault_url: str | None = None
    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None

    # Seconds that hydrated values stay cached; 0 turns the cache off.
    cache_ttl: float = Field(default=0.0, ge=0)
    # Bounds of that cache: entries, and bytes of cached values.
    cache_max_entries: int = Field(default=10_000, ge=1)
    cache_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1)

    # Requests per second per storage of each backend type; 0 means no limit.
    # service/limiter.py explains the defaults.
    vault_max_rps: float = Field(default=500.0, ge=0)
    aws_max_rps: float = Field(default=5_000.0, ge=0)
    aws_batch_max_rps: float = Field(default=80.0, ge=0)
    gcp_max_rps: float = Field(default=1_200.0, ge=0)
    azure_max_rps: float = Field(default=300.0, ge=0)
    local_max_rps: float = Field(default=0.0, ge=0)

    @field_validator("secret_storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if value not in ENVIRONMENT_NAMES:
            raise ValueError(
                f"KEYREFS_SECRET_STORAGE={value!r} is not a known storage: "
                f"expected one of {', '.join(ENVIRONMENT_NAMES)}"
            )
        return value

    @model_validator(mode="after")
    def _separate_prefixes(self) -> Settings:
        managed, legacy = self.managed_prefix, self.legacy_prefix
        if managed.startswith(legacy) or legacy.startswith(managed):
            raise ValueError(
                f"KEYREFS_LEGACY_PREFIX={legacy!r} overlaps KEYREFS_MANAGED_PREFIX="
                f"{managed!r}: garbage collection would delete legacy secrets; "
                "choose prefixes where neither starts with the other"
            )
        return self

    @property
    def home_path(self) -> Path:
        return self.home.expanduser()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_path / DATABASE_FILE_NAME}"

    @property
    def default_storage_type(self) -> str:
        return ENVIRONMENT_NAMES[self.secret_storage]

    @property
    def default_master_key_path(self) -> Path:
        """Path of the key file: next to a SQLite database, else in KEYREFS_HOME."""
        if self.master_key_file is not None:
            return self.master_key_file.expanduser()
        url = make_url(self.resolved_database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (
            None,
            "",
            ":memory:",
        ):
            return Path(url.database).expanduser().parent / MASTER_KEY_FILE_NAME
        return self.home_path / MASTER_KEY_FILE_NAME


def parse_tags(text: str | None) -> dict[str, str]:
    """Parse `k=v,k2=v2`; a value may contain `=`, a key may not be empty."""
    tags: dict[str, str] = {}
    if not text:
        return tags
    for item in text.split(","):
        key, separator, value = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(
                f"tag {item!r} is invalid: expected key=value pairs separated by ','"
            )
        tags[key] = value.strip()
    return tags
