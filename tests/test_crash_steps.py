"""Fail or kill a process at each step of each operation; gc cleans up after.

After every crash, each stored config the caller holds still hydrates (or, for
a deleted actor, is refused as a whole), and one `gc` run with no grace period
leaves no orphan: every backend object and every secret_config row belongs to a
reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.service import KeyrefsService
from keyrefs.service.gc import GcOptions
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings
from keyrefs.store.models import LocalSecret, SecretConfig, SecretReference
from tests.conftest import new_scope
from tests.crash_worker import CRASH_EXIT_CODE, RAISED_EXIT_CODE
from tests.helpers import SECRET

SPEC = {"type": "object", "properties": {"password": SECRET, "token": SECRET}}
ROOT = Path(__file__).resolve().parents[1]

# (operation, crash point): each point is reached by its operation, which the
# test checks through the exit code.
CASES = [
    ("create", "write:1"),
    ("create", "write:2"),
    ("create", "sql=INSERT INTO secret_config:1"),
    ("create", "sql=INSERT INTO secret_reference:1"),
    ("update", "write:1"),
    ("update", "sql=INSERT INTO secret_config:1"),
    ("update", "sql=UPDATE secret_reference:1"),
    ("update", "sql=UPDATE secret_config:1"),
    ("update", "delete:1"),
    ("update", "delete:2"),
    ("ephemeral", "write:2"),
    ("delete-actor", "sql=DELETE FROM secret_reference:1"),
    ("delete-actor", "sql=UPDATE secret_config:1"),
    ("delete-actor", "delete:1"),
    ("delete-actor", "sql=DELETE FROM secret_config:1"),
    ("gc", "delete:1"),
    ("gc", "delete:2"),
    ("gc", "sql=UPDATE secret_config:1"),
    ("gc", "sql=DELETE FROM secret_config:1"),
    ("migrate", "read:1"),
    ("migrate", "write:1"),
    ("migrate", "sql=UPDATE secret_config:1"),
    ("migrate", "delete:1"),
    ("migrate", "write:2"),
]


def scope_json(scope: ActorScope) -> dict[str, str]:
    return {
        "actor_id": str(scope.actor_id),
        "workspace_id": str(scope.workspace_id),
        "organization_id": str(scope.organization_id),
    }


@pytest.fixture
def environment(make_settings: Callable[..., Settings]) -> dict[str, str]:
    make_settings()
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def prepare(service: KeyrefsService, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    organization = uuid.uuid4()
    scopes = []
    for _ in range(2):
        scope = new_scope()
        scopes.append(
            ActorScope(scope.actor_id, scope.workspace_id, OrganizationId(organization))
        )
    source = service.add_storage(
        "local", "organization", organization, OrganizationId(organization), "src", {}
    )
    held = {}
    for index, scope in enumerate(scopes):
        config = {"password": f"pw-{index}", "token": f"tk-{index}"}
        held[str(scope.actor_id)] = service.process(scope, SPEC, config)
    target = service.add_storage(
        "local", "organization", organization, OrganizationId(organization), "dst", {}
    )
    # Garbage for gc to find: an actor whose secrets are left unreferenced.
    garbage = ActorScope(
        new_scope().actor_id, scopes[0].workspace_id, OrganizationId(organization)
    )
    service.process(garbage, SPEC, {"password": "old-1", "token": "old-2"})
    with service.session() as session:
        for reference in session.scalars(
            select(SecretReference).where(SecretReference.scope_id == garbage.actor_id)
        ):
            session.delete(reference)
        session.commit()

    new_actor = ActorScope(
        new_scope().actor_id, scopes[0].workspace_id, OrganizationId(organization)
    )
    state = {
        "spec": SPEC,
        "actors": [scope_json(s) for s in scopes],
        "new_actor": scope_json(new_actor),
        "new_config": {"password": "new-pw", "token": "new-tk"},
        "update_config": {"password": "rotated-pw", "token": "rotated-tk"},
        "source_storage": str(source.id),
        "target_storage": str(target.id),
        "held": held,
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return path, state


def assert_held_configs_hydrate(service: KeyrefsService, state: dict[str, Any]) -> None:
    for actor_id, stored in state["held"].items():
        if not service.references_of_actor(uuid.UUID(actor_id)):  # type: ignore[arg-type]
            continue  # the actor's deletion committed: nothing left to hydrate
        full = service.hydrate(stored, uuid.UUID(actor_id))  # type: ignore[arg-type]
        assert set(full) == {"password", "token"}


def assert_no_orphans(service: KeyrefsService) -> None:
    config_key = (SecretConfig.secret_storage_id, SecretConfig.external_coordinate)
    with service.session() as session:

        def pairs(query: Any) -> set[tuple[Any, ...]]:
            return {tuple(row) for row in session.execute(query)}

        referenced = pairs(
            select(*config_key).join(
                SecretReference, SecretReference.secret_config_id == SecretConfig.id
            )
        )
        rows = pairs(select(*config_key).where(SecretConfig.expires_at.is_(None)))
        short_lived = pairs(
            select(*config_key).where(SecretConfig.expires_at.is_not(None))
        )
        objects = pairs(select(LocalSecret.secret_storage_id, LocalSecret.coordinate))
    assert rows == referenced, "secret_config rows without a reference"
    assert objects - short_lived == referenced, "backend objects without a reference"


@pytest.mark.parametrize("mode", ["kill", "raise"])
@pytest.mark.parametrize(("operation", "crash_point"), CASES)
def test_failure_at_step_leaves_configs_hydratable(
    service: KeyrefsService,
    environment: dict[str, str],
    tmp_path: Path,
    operation: str,
    crash_point: str,
    mode: str,
) -> None:
    state_file, state = prepare(service, tmp_path)
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.crash_worker",
            str(state_file),
            operation,
            crash_point,
            mode,
        ],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = CRASH_EXIT_CODE if mode == "kill" else RAISED_EXIT_CODE
    assert child.returncode == expected, child.stderr[-2000:]

    service.backends.close()  # rebuild backends: the child may have moved storages
    assert_held_configs_hydrate(service, state)
    if operation == "migrate":
        report = service.migrate_storage(
            SecretStorageId(uuid.UUID(state["source_storage"])),
            SecretStorageId(uuid.UUID(state["target_storage"])),
        )
        assert report.failures == []
        assert_held_configs_hydrate(service, state)
    report = service.collect_garbage(GcOptions(grace=timedelta(0)))
    assert report.failures == []
    assert_no_orphans(service)
    assert_held_configs_hydrate(service, state)
