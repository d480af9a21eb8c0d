"""A secret value that does not show itself in a repr, str or log line."""

from __future__ import annotations

import json
from typing import Any, Literal

ValueFormat = Literal["text", "json"]

MASK = "**********"


class SecretValue:
    """A secret's payload, with the JSON type it had in the config.

    `str()` and `repr()` print the mask. Only `reveal()` and `to_json()` return
    the value, and only hydration and backends call them.
    """

    __slots__ = ("_format", "_text")

    def __init__(self, text: str, value_format: ValueFormat = "text") -> None:
        self._text = text
        self._format: ValueFormat = value_format

    @classmethod
    def from_json(cls, value: Any) -> SecretValue:
        """Wrap a config value: strings stay text, other JSON types become JSON."""
        if isinstance(value, str):
            return cls(value, "text")
        return cls(json.dumps(value, separators=(",", ":"), ensure_ascii=False), "json")

    @property
    def value_format(self) -> ValueFormat:
        return self._format

    def reveal(self) -> str:
        """Return the payload as the text stored in the backend."""
        return self._text

    def to_json(self) -> Any:
        """Return the value as the JSON value it was in the config."""
        if self._format == "json":
            return json.loads(self._text)
        return self._text

    def encoded_size(self) -> int:
        return len(self._text.encode("utf-8"))

    def __repr__(self) -> str:
        return f"SecretValue({MASK})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return self._text == other._text and self._format == other._format

    def __hash__(self) -> int:
        return hash((self._text, self._format))

    def __reduce__(self) -> Any:
        raise TypeError("SecretValue cannot be pickled")
