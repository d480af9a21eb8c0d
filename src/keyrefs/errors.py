"""The keyrefs exception tree.

Every error keyrefs raises derives from `KeyrefsError`. The four families are
`InvalidInput` (the caller sent something keyrefs cannot accept), `NotFound`
(a secret, reference or storage does not exist), `BackendError` (a secret
manager failed or refused) and `ConfigurationError` (settings are wrong).
Each class carries `transient`, True when retrying the same call may succeed,
and `exit_code`, which the CLI returns for it.

Messages name paths, coordinates and ids. They never contain a secret value,
and no exception keeps a value on an attribute.
"""

from __future__ import annotations


class KeyrefsError(Exception):
    """Base of every keyrefs error."""

    exit_code = 1
    transient = False
    code = "internal_error"


class ConfigurationError(KeyrefsError):
    """Settings or the environment are invalid, so keyrefs cannot start."""

    exit_code = 2
    code = "configuration_error"


class MissingExtra(ConfigurationError):
    """A backend was chosen whose optional dependencies are not installed."""

    code = "missing_extra"


# Invalid input -----------------------------------------------------------


class InvalidInput(KeyrefsError):
    """The caller sent a spec, config or argument that keyrefs rejects."""

    exit_code = 3
    code = "invalid_input"


class InvalidSpec(InvalidInput):
    """The connector spec is not a usable JSON Schema."""

    code = "invalid_spec"


class InvalidConfig(InvalidInput):
    """The config does not validate against the spec."""

    code = "invalid_config"


class MaskWithoutStoredSecret(InvalidInput):
    """A mask was sent at a path where nothing is stored to restore."""

    code = "mask_without_stored_secret"


class ForeignReference(InvalidInput):
    """A config names a reference or secret that belongs to another actor."""

    code = "foreign_reference"


class ExternalSecretNotAllowed(InvalidInput):
    """An external secret was named in a storage that may not hold one."""

    code = "external_secret_not_allowed"


class InvalidCoordinate(InvalidInput):
    """A coordinate does not have the expected form for its backend."""

    code = "invalid_coordinate"


class LimitExceeded(InvalidInput):
    """A value or name is over a limit of the secret manager."""

    code = "limit_exceeded"


class Conflict(KeyrefsError):
    """The request conflicts with the current state (for example a duplicate)."""

    exit_code = 3
    code = "conflict"


class ConcurrentUpdate(Conflict):
    """A secret the request reuses was deleted meanwhile; retrying can succeed."""

    transient = True
    code = "concurrent_update"


# Not found ---------------------------------------------------------------


class NotFound(KeyrefsError):
    """Something the caller named does not exist."""

    exit_code = 4
    code = "not_found"


class SecretNotFound(NotFound):
    """The backend has no secret under the coordinate."""

    code = "secret_not_found"


class ReferenceNotFound(NotFound):
    """No secret reference exists for a marker or id."""

    code = "reference_not_found"


class StorageNotFound(NotFound):
    """No secret storage exists with the id."""

    code = "storage_not_found"


class SecretExpired(NotFound):
    """A short-lived secret is past its expiry time."""

    code = "secret_expired"


# Backend failures --------------------------------------------------------


class BackendError(KeyrefsError):
    """A secret manager failed or refused a request."""

    exit_code = 5
    code = "backend_error"


class AccessDenied(BackendError):
    """The secret manager refused the credentials for this request."""

    code = "access_denied"


class BackendUnavailable(BackendError):
    """The secret manager could not be reached or failed on its side."""

    transient = True
    code = "backend_unavailable"


class Throttled(BackendError):
    """The secret manager rejected the request because of its rate limit."""

    transient = True
    code = "throttled"


class BackendInvalidRequest(BackendError):
    """The secret manager rejected the request as malformed."""

    code = "backend_invalid_request"
