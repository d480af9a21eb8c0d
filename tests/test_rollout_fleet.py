"""A fleet of legacy configs in OpenBao taken through the whole rollout.

Expand (flags off), dual-write for one organization, backfill, reads by
reference id, contract: every config hydrates to the same full config at
every step.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keyrefs.ids import ActorId, OrganizationId, WorkspaceId
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.contract import contract_file
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings
from tests.fixtures.flags import flag_file
from tests.fixtures.vault import KV_MOUNT, OpenBaoServer
from tests.helpers import reference_count
from tests.rollout_support import (
    SPEC,
    plant_legacy_actor,
    read_lines,
    run_backfill,
    write_lines,
)

PERSIST = "keyrefs.persist-references"
READ_BY_ID = "keyrefs.read-by-reference-id"


class Fleet:
    """Services over one database and one OpenBao prefix, one per flag file."""

    def __init__(
        self,
        make_settings: Callable[..., Settings],
        server: OpenBaoServer,
        tmp_path: Path,
    ) -> None:
        self._make_settings = make_settings
        self._tmp_path = tmp_path
        self._server = server
        self.prefix = f"fleet/{uuid.uuid4().hex}"
        self._phase = 0

    def service(
        self,
        enabled_for: dict[str, list[uuid.UUID]],
        disabled_for: dict[str, list[uuid.UUID]],
    ) -> KeyrefsService:
        self._phase += 1
        path = flag_file(
            self._tmp_path / f"flags-{self._phase}.json", enabled_for, disabled_for
        )
        settings = self._make_settings(
            secret_storage="vault",
            vault_address=self._server.address,
            vault_token=self._server.root_token,
            vault_prefix=self.prefix,
            flags_file=str(path),
        )
        keyrefs = KeyrefsService(settings)
        keyrefs.init()
        return keyrefs

    def write_straight(self, coordinate: str, value: str) -> None:
        client = self._server.root_client()
        try:
            client.secrets.kv.v2.create_or_update_secret(
                f"{self.prefix}/{coordinate}", {"value": value}, mount_point=KV_MOUNT
            )
        finally:
            client.adapter.close()


def scope_of(record: dict[str, Any]) -> ActorScope:
    return ActorScope(
        ActorId(uuid.UUID(record["actor_id"])),
        WorkspaceId(uuid.UUID(record["workspace_id"])),
        OrganizationId(uuid.UUID(record["organization_id"])),
    )


def assert_fleet_hydrates(
    service: KeyrefsService,
    records: list[dict[str, Any]],
    fulls: list[dict[str, Any]],
) -> None:
    for record, full in zip(records, fulls, strict=True):
        scope = scope_of(record)
        hydrated = service.hydrate(
            record["config"], scope.actor_id, scope.organization_id
        )
        assert hydrated == full, f"actor {record['actor_id']}"


def test_fleet_rollout_end_to_end(
    make_settings: Callable[..., Settings],
    openbao_server: OpenBaoServer,
    tmp_path: Path,
) -> None:
    fleet = Fleet(make_settings, openbao_server, tmp_path)
    first, second = uuid.uuid4(), uuid.uuid4()
    both = [first, second]

    # Expand: keyrefs runs, every flag off, configs stay legacy.
    expand = fleet.service({}, {PERSIST: both, READ_BY_ID: both})
    records, fulls = [], []
    for index in range(6):
        organization = both[index % 2]
        record, full = plant_legacy_actor(
            expand, organization, uuid.uuid4(), str(index), fleet.write_straight
        )
        records.append(record)
        fulls.append(full)
    assert_fleet_hydrates(expand, records, fulls)
    update = {**fulls[1], "password": MASK, "token": MASK, "nested": {"key": MASK}}
    unchanged = expand.process(
        scope_of(records[1]), SPEC, update, previous_config=records[1]["config"]
    )
    assert unchanged == records[1]["config"]
    assert reference_count(expand) == 0
    expand.close()

    # Dual-write for the first organization only; reads stay by coordinate.
    dual = fleet.service({PERSIST: [first]}, {PERSIST: [second], READ_BY_ID: both})
    new_scope = ActorScope(
        ActorId(uuid.uuid4()), WorkspaceId(uuid.uuid4()), OrganizationId(first)
    )
    new_full = {"host": "new", "password": "pw-new", "token": "tok-new"}
    new_stored = dual.process(new_scope, SPEC, new_full)
    assert "_secret_reference_id" in new_stored["password"]
    legacy_scope = ActorScope(
        ActorId(uuid.uuid4()), WorkspaceId(uuid.uuid4()), OrganizationId(second)
    )
    legacy_stored = dual.process(legacy_scope, SPEC, new_full)
    assert set(legacy_stored["password"]) == {"_secret"}
    for scope, stored in ((new_scope, new_stored), (legacy_scope, legacy_stored)):
        records.append(
            {
                "actor_id": str(scope.actor_id),
                "workspace_id": str(scope.workspace_id),
                "organization_id": str(scope.organization_id),
                "spec": SPEC,
                "config": stored,
            }
        )
        fulls.append(new_full)
    assert_fleet_hydrates(dual, records, fulls)
    dual.close()

    # Backfill every stored config; all secrets are found in OpenBao.
    migrate = fleet.service({PERSIST: both}, {READ_BY_ID: both})
    source = write_lines(tmp_path / "fleet.jsonl", records)
    summary = run_backfill(
        migrate,
        source,
        tmp_path / "backfilled.jsonl",
        verify=True,
        prefixes=("airbyte_", "legacy_", "keyrefs_"),
    )
    assert summary.missing_count == 0
    assert summary.failed_count == 0
    backfilled = read_lines(tmp_path / "backfilled.jsonl")
    assert_fleet_hydrates(migrate, backfilled, fulls)
    migrate.close()

    # Reads by reference id for everyone.
    by_id = fleet.service({PERSIST: both, READ_BY_ID: both}, {})
    assert_fleet_hydrates(by_id, backfilled, fulls)
    rotated_full = {**fulls[0], "token": "tok-rotated"}
    rotated = by_id.process(
        scope_of(backfilled[0]),
        SPEC,
        {**rotated_full, "password": MASK, "nested": {"key": MASK}},
        previous_config=backfilled[0]["config"],
    )
    assert by_id.hydrate(rotated, scope_of(backfilled[0]).actor_id) == rotated_full
    backfilled[0]["config"], fulls[0] = rotated, rotated_full
    write_lines(tmp_path / "backfilled.jsonl", backfilled)

    # Contract: markers keep only their reference ids.
    contract_file(by_id.engine, tmp_path / "backfilled.jsonl", tmp_path / "c.jsonl")
    contracted = read_lines(tmp_path / "c.jsonl")
    assert set(contracted[2]["config"]["nested"]["key"]) == {"_secret_reference_id"}
    assert_fleet_hydrates(by_id, contracted, fulls)
    by_id.close()
