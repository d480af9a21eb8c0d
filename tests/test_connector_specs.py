"""Round trips on real connector specs and configs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keyrefs.domain.jsonpath import JsonPath
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from tests.conftest import SPECS_DIR


def _connectors() -> list[Any]:
    index = SPECS_DIR / "INDEX.json"
    if not index.exists():
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(
                    reason=f"connector specs not found at {SPECS_DIR}"
                ),
                id="no-specs",
            )
        ]
    entries = json.loads(index.read_text(encoding="utf-8"))["connectors"]
    return [pytest.param(entry, id=entry["connector"]) for entry in entries]


def _load(name: str) -> Any:
    return json.loads((SPECS_DIR / name).read_text(encoding="utf-8"))


def _mask_all(config: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    masked = json.loads(json.dumps(config))
    for path in paths:
        JsonPath.parse(path).set(masked, MASK)
    return masked


@pytest.mark.parametrize("connector", _connectors())
def test_connector_config_round_trip(
    service: KeyrefsService, scope: ActorScope, connector: dict[str, Any]
) -> None:
    spec = _load(connector["spec_file"])
    config = _load(connector["config_file"])
    paths = connector["secret_paths"]

    stored = service.process(scope, spec, config)

    serialized = json.dumps(stored, ensure_ascii=False)
    for path in paths:
        value = JsonPath.parse(path).get(config)
        if isinstance(value, str) and value:
            assert value not in serialized, (
                f"secret at {path} left in the stored config"
            )
        node = JsonPath.parse(path).get(stored)
        assert isinstance(node, dict) and "_secret_reference_id" in node, path
    recorded = sorted(
        r.hydration_path or "" for r in service.references_of_actor(scope.actor_id)
    )
    assert recorded == sorted(paths)
    assert service.hydrate(stored, scope.actor_id) == config

    updated = service.process(scope, spec, _mask_all(config, paths))
    assert updated == stored
    assert service.hydrate(updated, scope.actor_id) == config
