"""SQL statements per process call with 1, 20 and 100 secrets, create and update.

Run: python -m benchmarks.sql_statements
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from benchmarks.common import config_with, new_scope, print_row, service, spec_with
from keyrefs.backends.memory import MemoryBackend
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.service import KeyrefsService

COUNTS = (1, 20, 100)


def count_statements(keyrefs: KeyrefsService) -> dict[int, tuple[int, int]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(keyrefs.engine, "before_cursor_execute", record)
    figures = {}
    for count in COUNTS:
        scope, spec = new_scope(), spec_with(count)
        statements.clear()
        keyrefs.process(scope, spec, config_with(count, "a"))
        create = len(statements)
        statements.clear()
        keyrefs.process(scope, spec, config_with(count, "b"))
        figures[count] = (create, len(statements))
    event.remove(keyrefs.engine, "before_cursor_execute", record)
    return figures


def main() -> dict[str, dict[int, tuple[int, int]]]:
    print("(3) SQL statements per process call (SQLite)")
    results = {}
    with service() as keyrefs:
        keyrefs.backends.put(DEFAULT_STORAGE_ID, MemoryBackend(), "memory")
        results["memory backend"] = count_statements(keyrefs)
    with service() as keyrefs:
        results["local backend"] = count_statements(keyrefs)
    for label, figures in results.items():
        print_row(label, *(f"{n} secrets" for n in COUNTS))
        print_row("  create", *(figures[n][0] for n in COUNTS))
        print_row("  update (every value new)", *(figures[n][1] for n in COUNTS))
    return results


if __name__ == "__main__":
    main()
