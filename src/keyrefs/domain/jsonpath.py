"""Concrete JSONPaths such as `$.credentials.client_secret` or `$.keys[1]['a.b']`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED = re.compile(r"\['((?:[^'\\]|\\.)*)'\]")
_INDEX = re.compile(r"\[(\d+)\]")
_DOTTED = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")

Segment = str | int


@dataclass(frozen=True, order=True)
class JsonPath:
    """A path of object keys and array indices from the config root."""

    segments: tuple[Segment, ...] = ()

    def child(self, segment: Segment) -> JsonPath:
        return JsonPath((*self.segments, segment))

    def render(self) -> str:
        parts = ["$"]
        for segment in self.segments:
            if isinstance(segment, int):
                parts.append(f"[{segment}]")
            elif _IDENTIFIER.fullmatch(segment):
                parts.append(f".{segment}")
            else:
                escaped = segment.replace("\\", "\\\\").replace("'", "\\'")
                parts.append(f"['{escaped}']")
        return "".join(parts)

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Parse a path written by `render`; raise ValueError on anything else."""
        if not text.startswith("$"):
            raise ValueError(f"JSON path {text!r} does not start with '$'")
        segments: list[Segment] = []
        position = 1
        while position < len(text):
            for pattern in (_DOTTED, _INDEX, _QUOTED):
                match = pattern.match(text, position)
                if match:
                    break
            else:
                raise ValueError(f"JSON path {text!r} is invalid at offset {position}")
            group = match.group(1)
            if pattern is _INDEX:
                segments.append(int(group))
            elif pattern is _QUOTED:
                segments.append(re.sub(r"\\(.)", r"\1", group))
            else:
                segments.append(group)
            position = match.end()
        return cls(tuple(segments))

    def get(self, document: Any) -> Any:
        """Return the node at this path; raise KeyError when it is absent."""
        node = document
        for segment in self.segments:
            if isinstance(segment, int):
                if not isinstance(node, list) or segment >= len(node):
                    raise KeyError(self.render())
            elif not isinstance(node, dict) or segment not in node:
                raise KeyError(self.render())
            node = node[segment]
        return node

    def set(self, document: Any, value: Any) -> None:
        """Replace the node at this path, which must exist and not be the root."""
        if not self.segments:
            raise ValueError("cannot replace the root of a document")
        parent = JsonPath(self.segments[:-1]).get(document)
        parent[self.segments[-1]] = value

    def __str__(self) -> str:
        return self.render()


ROOT = JsonPath()


def iter_nodes(document: Any, path: JsonPath = ROOT) -> Iterator[tuple[JsonPath, Any]]:
    """Yield every node of a JSON document with its path, parents first."""
    yield path, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from iter_nodes(value, path.child(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from iter_nodes(value, path.child(index))
