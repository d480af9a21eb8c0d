"""Find backend factories by storage type.

Built-in backends are listed here; any installed distribution can add one
through the `keyrefs.backends` entry point group, naming its storage type.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from keyrefs.backends.base import BackendFactory
from keyrefs.errors import ConfigurationError, MissingExtra

ENTRY_POINT_GROUP = "keyrefs.backends"

# storage type -> (module:factory, optional extra that installs its SDK)
BUILTIN_FACTORIES: dict[str, tuple[str, str | None]] = {
    "local": ("keyrefs.backends.local:LocalBackendFactory", None),
    "vault": ("keyrefs.backends.vault:VaultBackendFactory", "vault"),
    "aws_secrets_manager": ("keyrefs.backends.aws:AwsBackendFactory", "aws"),
    "google_secret_manager": ("keyrefs.backends.gcp:GoogleBackendFactory", "gcp"),
    "azure_key_vault": ("keyrefs.backends.azure:AzureBackendFactory", "azure"),
}

# The short names KEYREFS_SECRET_STORAGE accepts, mapped to storage types.
ENVIRONMENT_NAMES: dict[str, str] = {
    "local": "local",
    "vault": "vault",
    "aws": "aws_secrets_manager",
    "gcp": "google_secret_manager",
    "azure": "azure_key_vault",
}


def load_factory(storage_type: str) -> BackendFactory:
    """Return the factory for `storage_type`; raise a clear error when it is missing."""
    builtin = BUILTIN_FACTORIES.get(storage_type)
    if builtin is not None:
        target, extra = builtin
        return _import_factory(target, storage_type, extra)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == storage_type:
            factory_class = entry_point.load()
            factory: BackendFactory = factory_class()
            return factory
    known = sorted(set(BUILTIN_FACTORIES) | available_storage_types())
    raise ConfigurationError(
        f"unknown storage type {storage_type!r}: expected one of {', '.join(known)}"
    )


def available_storage_types() -> set[str]:
    return {entry_point.name for entry_point in entry_points(group=ENTRY_POINT_GROUP)}


def _import_factory(
    target: str, storage_type: str, extra: str | None
) -> BackendFactory:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise MissingExtra(
            f"storage type {storage_type!r} needs packages that are not installed "
            f"({exc.name}): install them with `pip install 'keyrefs[{extra}]'`"
        ) from None
    factory: BackendFactory = getattr(module, attribute)()
    return factory
