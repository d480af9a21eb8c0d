"""A planted secret value leaves the service only in a data-plane hydration."""

from __future__ import annotations

import logging
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.audit import list_events
from keyrefs.service.tokens import Role
from keyrefs.store.api_models import AuditEvent
from tests.api.conftest import SPEC, MakeCaller, actor_body

CANARY = f"canary-{uuid.uuid4().hex}"


def test_canary_only_in_hydrate_response(
    client: TestClient,
    make_caller: MakeCaller,
    service: KeyrefsService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    control = make_caller(Role.CONTROL_PLANE)
    data = make_caller(Role.DATA_PLANE)
    admin = make_caller(Role.ADMIN)
    actor, org, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    other_texts: list[str] = []

    created = client.put(
        f"/v1/actors/{actor}/config",
        json=actor_body(org, workspace, CANARY),
        headers=control.headers,
    )
    assert created.status_code == 200
    other_texts.append(created.text)
    stored = created.json()["config"]

    hydrated = client.post(
        f"/v1/actors/{actor}/config/hydrate",
        json={"config": stored},
        headers=data.headers,
    )
    assert hydrated.json()["config"]["password"] == CANARY

    # Every other way to ask for the value, and failures around it.
    attempts = [
        client.post(
            f"/v1/actors/{actor}/config/hydrate",
            json={"config": stored},
            headers=headers,
        )
        for headers in (control.headers, admin.headers, {})
    ]
    attempts.append(
        client.post(
            "/v1/config/mask",
            json={"spec": SPEC, "config": {"host": "h", "password": CANARY}},
            headers=control.headers,
        )
    )
    invalid = actor_body(org, workspace, CANARY)
    invalid["spec"] = {
        **SPEC,
        "properties": {
            **SPEC["properties"],
            "password": {"type": "integer", "airbyte_secret": True},
        },
    }
    attempts.append(
        client.put(f"/v1/actors/{actor}/config", json=invalid, headers=control.headers)
    )
    attempts.append(
        client.put(
            f"/v1/actors/{actor}/config",
            json={"workspace_id": CANARY, "organization_id": CANARY, "spec": CANARY},
            headers=control.headers,
        )
    )
    attempts.append(
        client.get(f"/v1/actors/{actor}/references", headers=control.headers)
    )
    attempts.append(client.get("/v1/storages", headers=admin.headers))
    for response in attempts:
        other_texts.append(response.text)
    assert attempts[3].json()["config"]["password"] == MASK
    masked_update = client.put(
        f"/v1/actors/{actor}/config",
        json=actor_body(org, workspace, MASK, previous_config=stored),
        headers=control.headers,
    )
    other_texts.append(masked_update.text)
    other_texts.append(client.get("/metrics").text)
    other_texts.append(client.get("/openapi.json").text)

    for text in other_texts:
        assert CANARY not in text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in str(record.args)
    assert CANARY not in caplog.text

    with service.session() as session:
        rows = list(session.scalars(select(AuditEvent)))
    assert len(rows) >= 4
    for row in rows:
        assert CANARY not in repr(
            (row.action, row.coordinates, row.result, row.token_id)
        )
    for event in list_events(service.session):
        assert CANARY not in str(event.to_json())
    assert control.token not in caplog.text
    assert data.token not in caplog.text
