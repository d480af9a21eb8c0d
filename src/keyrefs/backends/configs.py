"""Validated connection settings of each built-in backend.

These models import no SDK, so a storage's config can be checked before its
backend's extra is installed. Credentials are `SecretStr`, masked in reprs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultConfig(_BackendConfig):
    """HashiCorp Vault or OpenBao, KV version 2."""

    address: str = Field(min_length=1)
    token: SecretStr | None = None
    role_id: str | None = None
    secret_id: SecretStr | None = None
    mount: str = "secret"
    prefix: str = "keyrefs"
    namespace: str | None = None
    # True, False, or the path of a CA bundle, as hvac's `verify` takes it.
    verify: bool | str = True
    timeout_seconds: float = 10.0

    @model_validator(mode="after")
    def _one_auth_method(self) -> VaultConfig:
        if self.token is None and (self.role_id is None or self.secret_id is None):
            raise ValueError("Vault needs a token, or an AppRole role_id and secret_id")
        return self


class AwsConfig(_BackendConfig):
    """AWS Secrets Manager."""

    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    role_arn: str | None = None
    external_id: str | None = None
    kms_key_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsConfig:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "access_key_id and secret_access_key must be given together"
            )
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id needs role_arn: it applies to AssumeRole")
        return self


class GoogleConfig(_BackendConfig):
    """Google Secret Manager."""

    project: str = Field(min_length=1)
    location: str | None = None
    credentials_file: str | None = None
    credentials_json: SecretStr | None = None
    # An API endpoint such as http://127.0.0.1:PORT, for tests and private endpoints.
    endpoint: str | None = None
    # Use anonymous credentials; only sensible with `endpoint` pointing at a fake.
    anonymous: bool = False
    labels: dict[str, str] = Field(default_factory=dict)


class AzureConfig(_BackendConfig):
    """Azure Key Vault."""

    vault_url: str = Field(min_length=1)
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # The Microsoft Entra ID host that issues tokens (default: the public cloud).
    # When set, it is used as given and MSAL's instance discovery is turned off.
    authority_host: str | None = None
    # Purge after delete, so a managed name can be used again at once.
    purge: bool = True
    tags: dict[str, str] = Field(default_factory=dict)
    # True, False, or the path of a CA bundle for the vault's TLS certificate.
    connection_verify: bool | str = True
    # Check that the auth challenge names the vault's domain; keep True in production.
    verify_challenge_resource: bool = True

    @model_validator(mode="after")
    def _client_secret_complete(self) -> AzureConfig:
        given = [self.tenant_id, self.client_id, self.client_secret]
        if any(value is not None for value in given) and None in given:
            raise ValueError(
                "a client-secret credential needs tenant_id, client_id and "
                "client_secret; give all three or none for the default chain"
            )
        return self
