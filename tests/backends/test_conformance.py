"""One suite, every backend: process, update, hydrate and delete real configs.

Each backend's fixture module provides `<name>_conformance`, a running server
or protocol fake and a way to look at it without keyrefs. The local backend
runs as a customer-owned storage here too, so every backend takes the same path.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keyrefs.domain.jsonpath import JsonPath
from keyrefs.ids import OrganizationId
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from keyrefs.store.models import LocalSecret
from tests.backends.conformance import ConformanceTarget
from tests.conftest import SPECS_DIR

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
CONNECTORS = ["destination-snowflake", "destination-weaviate", "source-mysql"]
BACKENDS = ["local", "vault", "aws", "gcp", "azure"]


def _connector_files(name: str) -> tuple[Any, Any, list[str]]:
    index_file = SPECS_DIR / "INDEX.json"
    if index_file.exists():
        index = json.loads(index_file.read_text(encoding="utf-8"))
        [entry] = [c for c in index["connectors"] if c["connector"] == name]
        spec = json.loads((SPECS_DIR / entry["spec_file"]).read_text(encoding="utf-8"))
        config = json.loads(
            (SPECS_DIR / entry["config_file"]).read_text(encoding="utf-8")
        )
        return spec, config, entry["secret_paths"]
    spec = json.loads(
        (EXAMPLES_DIR / "source-postgres.spec.json").read_text(encoding="utf-8")
    )
    config = json.loads(
        (EXAMPLES_DIR / "source-postgres.config.json").read_text(encoding="utf-8")
    )
    paths = [
        "$.password",
        "$.tunnel_method.ssh_key",
        "$.extra_headers[0].value",
        "$.extra_headers[1].value",
    ]
    return spec, config, paths


@pytest.fixture
def local_conformance(service: KeyrefsService) -> ConformanceTarget:
    def object_exists(name: str) -> bool:
        with service.session() as session:
            found = session.scalars(
                select(LocalSecret.coordinate).where(LocalSecret.coordinate == name)
            ).first()
        return found is not None

    return ConformanceTarget("local", {}, object_exists)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest) -> ConformanceTarget:
    found = request.getfixturevalue(f"{request.param}_conformance")
    assert isinstance(found, ConformanceTarget)
    return found


def _coordinates(stored: dict[str, Any], paths: list[str]) -> dict[str, str]:
    return {path: JsonPath.parse(path).get(stored)["_secret"] for path in paths}


@pytest.mark.parametrize("connector", CONNECTORS)
def test_backend_conformance(
    service: KeyrefsService,
    scope: ActorScope,
    target: ConformanceTarget,
    connector: str,
) -> None:
    spec, config, paths = _connector_files(connector)
    storage = service.add_storage(
        target.storage_type,
        "organization",
        scope.organization_id,
        OrganizationId(scope.organization_id),
        f"conformance-{uuid.uuid4().hex[:8]}",
        target.config,
    )

    stored = service.process(scope, spec, config)
    names = _coordinates(stored, paths)
    for path in paths:
        node = JsonPath.parse(path).get(stored)
        assert node["_secret_storage_id"] == str(storage.id), path
        assert target.object_exists(node["_secret"]), f"no backend object for {path}"
    assert service.hydrate(stored, scope.actor_id) == config

    changed_path = paths[0]
    update = json.loads(json.dumps(config))
    for path in paths:
        JsonPath.parse(path).set(update, MASK)
    JsonPath.parse(changed_path).set(update, "rotated-value-ü\nline two")
    updated = service.process(scope, spec, update)
    new_names = _coordinates(updated, paths)
    assert new_names[changed_path] != names[changed_path]
    assert target.object_exists(new_names[changed_path])
    assert not target.object_exists(names[changed_path]), "old version not deleted"
    expected = json.loads(json.dumps(config))
    JsonPath.parse(changed_path).set(expected, "rotated-value-ü\nline two")
    assert service.hydrate(updated, scope.actor_id) == expected

    service.delete_actor(scope.actor_id)
    for name in new_names.values():
        assert not target.object_exists(name), f"{name} left after delete-actor"
    assert service.references_of_actor(scope.actor_id) == []
