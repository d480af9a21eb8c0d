"""JSON Lines input and output of `keyrefs hydrate --input`.

Each input line is `{"actor_id": UUID, "config": {...}}`; blank lines are
skipped. Each output line is `{"line": N, "actor_id": ..., "config": {...}}`
or `{"line": N, "actor_id": ..., "error": {"code": ..., "message": ...}}`, in
input order. A line that cannot be parsed gets an error line of its own, so
the other lines are still hydrated.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from keyrefs.errors import InvalidInput, KeyrefsError
from keyrefs.ids import ActorId
from keyrefs.service import KeyrefsService


@dataclass(frozen=True)
class HydrationLine:
    """One input line: its number and either a request or the parse error."""

    number: int
    actor_id: str | None
    config: object = None
    error: KeyrefsError | None = None


def parse_lines(text: str, source: str) -> list[HydrationLine]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            lines.append(_parse_line(raw, number, source))
    return lines


def _parse_line(raw: str, number: int, source: str) -> HydrationLine:
    where = f"--input {source} line {number}"
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        error = InvalidInput(f"{where} is not valid JSON: column {exc.colno}")
        return HydrationLine(number, None, error=error)
    except RecursionError:
        return HydrationLine(number, None, error=InvalidInput(f"{where} is too deep"))
    if not isinstance(document, dict):
        error = InvalidInput(
            f'{where} must be an object {{"actor_id": ..., "config": ...}}'
        )
        return HydrationLine(number, None, error=error)
    actor_text = document.get("actor_id")
    try:
        uuid.UUID(str(actor_text))
    except ValueError:
        error = InvalidInput(f"{where}: actor_id is missing or not a UUID")
        return HydrationLine(number, None, error=error)
    if "config" not in document:
        error = InvalidInput(f"{where}: config is missing")
        return HydrationLine(number, str(actor_text), error=error)
    return HydrationLine(number, str(actor_text), config=document["config"])


def hydrate_lines(
    service: KeyrefsService, lines: list[HydrationLine]
) -> tuple[list[dict[str, Any]], int]:
    """Hydrate every parsed line in one batch.

    Returns the output documents and the exit code: 0 when every line was
    hydrated, else the exit code of the first line that failed.
    """
    requests = [line for line in lines if line.error is None]
    results = service.hydrate_many(
        [(line.config, ActorId(uuid.UUID(str(line.actor_id)))) for line in requests]
    )
    by_number = {
        line.number: (result.config, result.error)
        for line, result in zip(requests, results, strict=True)
    }
    output = []
    exit_code = 0
    for line in lines:
        config, error = by_number.get(line.number, (None, line.error))
        document: dict[str, Any] = {"line": line.number, "actor_id": line.actor_id}
        if error is not None:
            document["error"] = {"code": error.code, "message": str(error)}
            exit_code = exit_code or error.exit_code
        else:
            document["config"] = config
        output.append(document)
    return output, exit_code
