"""The default storage's backend config, built from KEYREFS_* settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from keyrefs.backends.base import BackendFactory
from keyrefs.errors import ConfigurationError
from keyrefs.settings import Settings, parse_tags


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def environment_config_values(settings: Settings) -> dict[str, Any]:
    """Collect the settings of the backend KEYREFS_SECRET_STORAGE names."""
    name = settings.secret_storage
    if name == "vault":
        return {
            "address": settings.vault_address,
            "token": _secret(settings.vault_token),
            "role_id": settings.vault_role_id,
            "secret_id": _secret(settings.vault_secret_id),
            "mount": settings.vault_mount,
            "prefix": settings.vault_prefix,
            "namespace": settings.vault_namespace,
        }
    if name == "aws":
        try:
            tags = parse_tags(settings.aws_tags)
        except ValueError as exc:
            raise ConfigurationError(f"KEYREFS_AWS_TAGS is invalid: {exc}") from None
        return {
            "region": settings.aws_region,
            "endpoint_url": settings.aws_endpoint_url,
            "kms_key_id": settings.aws_kms_key_id,
            "tags": tags,
            "access_key_id": settings.aws_access_key_id,
            "secret_access_key": _secret(settings.aws_secret_access_key),
            "role_arn": settings.aws_role_arn,
            "external_id": settings.aws_external_id,
        }
    if name == "gcp":
        return {
            "project": settings.gcp_project,
            "location": settings.gcp_location,
            "credentials_file": settings.gcp_credentials_file,
            "endpoint": settings.gcp_endpoint,
        }
    if name == "azure":
        return {
            "vault_url": settings.azure_vault_url,
            "tenant_id": settings.azure_tenant_id,
            "client_id": settings.azure_client_id,
            "client_secret": _secret(settings.azure_client_secret),
        }
    return {}


def environment_config(settings: Settings, factory: BackendFactory) -> BaseModel:
    values = {
        k: v for k, v in environment_config_values(settings).items() if v is not None
    }
    try:
        return factory.config_model.model_validate(values)
    except ValidationError as exc:
        raise ConfigurationError(
            f"settings for KEYREFS_SECRET_STORAGE={settings.secret_storage} are "
            "invalid: "
            + describe_validation_error(exc, env_prefix=_env_prefix(settings))
        ) from None


def _env_prefix(settings: Settings) -> str:
    return f"KEYREFS_{settings.secret_storage.upper()}_"


def describe_validation_error(exc: ValidationError, env_prefix: str = "") -> str:
    """List each invalid field and the rule, without echoing the input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(item) for item in error["loc"])
        if env_prefix and location:
            location = env_prefix + location.upper()
        parts.append(f"{location or 'config'}: {error['msg']}")
    return "; ".join(parts)
