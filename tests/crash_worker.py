"""A child process that runs one keyrefs operation and kills itself at a chosen step.

Usage: python -m tests.crash_worker STATE_FILE OPERATION CRASH_POINT MODE

CRASH_POINT is `KIND:N`. With MODE `kill` the process exits with
CRASH_EXIT_CODE just before the Nth event of that kind, without cleanup, as a
killed process would. With MODE `raise` an InjectedFailure is raised there
instead, so the code's own error handling runs, and the process exits with
RAISED_EXIT_CODE. Kinds are
`write`, `delete` and `read` (calls to the local backend), `commit` (database
commits) and `sql=FRAGMENT` (a statement containing FRAGMENT).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from keyrefs.backends.local import LocalBackend
from keyrefs.ids import ActorId, OrganizationId, SecretStorageId, WorkspaceId
from keyrefs.service import KeyrefsService
from keyrefs.service.gc import GcOptions
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings

CRASH_EXIT_CODE = 99
RAISED_EXIT_CODE = 98


class InjectedFailure(Exception):
    pass


class CrashPoint:
    def __init__(self, text: str, mode: str) -> None:
        kind, _, count = text.rpartition(":")
        self.kind = kind
        self.remaining = int(count)
        self.mode = mode

    def reached(self, kind: str, detail: str = "") -> None:
        matches = kind == self.kind or (
            self.kind.startswith("sql=") and kind == "sql" and self.kind[4:] in detail
        )
        if not matches:
            return
        self.remaining -= 1
        if self.remaining == 0:
            if self.mode == "raise":
                raise InjectedFailure(f"{self.kind} reached")
            sys.stdout.flush()
            os._exit(CRASH_EXIT_CODE)


def install(point: CrashPoint, service: KeyrefsService) -> None:
    def wrap(name: str, kind: str) -> None:
        original: Callable[..., Any] = getattr(LocalBackend, name)

        def crashing(self: LocalBackend, *args: Any) -> Any:
            point.reached(kind)
            return original(self, *args)

        setattr(LocalBackend, name, crashing)

    wrap("write", "write")
    wrap("delete", "delete")
    wrap("read_many", "read")

    @event.listens_for(service.engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        point.reached("sql", statement)

    @event.listens_for(service.engine, "commit")
    def commit(conn: Any) -> None:
        point.reached("commit")


def scope_of(entry: dict[str, str]) -> ActorScope:
    return ActorScope(
        ActorId(uuid.UUID(entry["actor_id"])),
        WorkspaceId(uuid.UUID(entry["workspace_id"])),
        OrganizationId(uuid.UUID(entry["organization_id"])),
    )


def run(state: dict[str, Any], operation: str, service: KeyrefsService) -> None:
    spec = state["spec"]
    if operation == "create":
        service.process(scope_of(state["new_actor"]), spec, state["new_config"])
    elif operation == "update":
        service.process(scope_of(state["actors"][0]), spec, state["update_config"])
    elif operation == "ephemeral":
        scope = scope_of(state["actors"][0])
        service.process(scope, spec, state["update_config"], ttl=timedelta(minutes=5))
    elif operation == "delete-actor":
        service.delete_actor(scope_of(state["actors"][0]).actor_id)
    elif operation == "gc":
        service.collect_garbage(GcOptions(grace=timedelta(0)))
    elif operation == "migrate":
        service.migrate_storage(
            SecretStorageId(uuid.UUID(state["source_storage"])),
            SecretStorageId(uuid.UUID(state["target_storage"])),
        )
    else:
        raise SystemExit(f"unknown operation {operation!r}")


def main() -> None:
    state_file, operation, crash_point, mode = sys.argv[1:5]
    state = json.loads(Path(state_file).read_text(encoding="utf-8"))
    service = KeyrefsService(Settings())
    install(CrashPoint(crash_point, mode), service)
    try:
        run(state, operation, service)
    except InjectedFailure:
        service.close()
        sys.exit(RAISED_EXIT_CODE)
    service.close()


if __name__ == "__main__":
    main()
