"""Secret backends: one module per secret manager behind one protocol."""

from keyrefs.backends.base import (
    Absent,
    BackendContext,
    BackendFactory,
    Capabilities,
    Found,
    ListedSecret,
    ReadResult,
    SecretBackend,
    SecretWrite,
)

__all__ = [
    "Absent",
    "BackendContext",
    "BackendFactory",
    "Capabilities",
    "Found",
    "ListedSecret",
    "ReadResult",
    "SecretBackend",
    "SecretWrite",
]
