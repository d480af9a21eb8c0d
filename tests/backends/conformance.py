"""What each backend's fixture module hands the shared conformance suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConformanceTarget:
    """A running secret manager (real server or wire-level fake) to test against.

    `config` is the JSON config that `keyrefs storage add` takes for the
    storage type. `object_exists` looks, through the vendor SDK and not
    through keyrefs, for the object that a rendered managed coordinate maps
    to, so the suite checks the backend's own view.
    """

    storage_type: str
    config: dict[str, Any]
    object_exists: Callable[[str], bool]
