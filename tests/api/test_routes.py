"""Every route of the HTTP API, with each role allowed and rejected."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.tokens import Role, revoke_token
from keyrefs.store.api_models import AuditEvent
from tests.api.conftest import SPEC, MakeCaller, actor_body


def assert_error(
    response: httpx.Response, status: int, code: str | None = None
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code


def put_actor(
    client: httpx.Client,
    headers: dict[str, str],
    actor_id: uuid.UUID,
    organization_id: uuid.UUID,
    workspace_id: uuid.UUID,
    password: str = "pw",
) -> httpx.Response:
    return client.put(
        f"/v1/actors/{actor_id}/config",
        json=actor_body(organization_id, workspace_id, password),
        headers=headers,
    )


# Happy paths -------------------------------------------------------------


def test_process_hydrate_round_trip(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    data = make_caller(Role.DATA_PLANE)
    actor, org, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    response = put_actor(client, control.headers, actor, org, workspace, "pw-1")
    assert response.status_code == 200, response.text
    stored = response.json()["config"]
    assert stored["host"] == "db.internal"
    assert "_secret_reference_id" in stored["password"]

    hydrated = client.post(
        f"/v1/actors/{actor}/config/hydrate",
        json={"config": stored},
        headers=data.headers,
    )
    assert hydrated.status_code == 200, hydrated.text
    assert hydrated.json()["config"] == {"host": "db.internal", "password": "pw-1"}


def test_update_with_mask_keeps_secret(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    data = make_caller(Role.DATA_PLANE)
    actor, org, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = put_actor(client, control.headers, actor, org, workspace, "pw-1").json()

    body = actor_body(org, workspace, MASK, previous_config=first["config"])
    second = client.put(
        f"/v1/actors/{actor}/config", json=body, headers=control.headers
    )
    assert second.status_code == 200, second.text
    hydrated = client.post(
        f"/v1/actors/{actor}/config/hydrate",
        json={"config": second.json()["config"]},
        headers=data.headers,
    )
    assert hydrated.json()["config"]["password"] == "pw-1"


def test_mask_replaces_secret_fields(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    response = client.post(
        "/v1/config/mask",
        json={"spec": SPEC, "config": {"host": "h", "password": "pw"}},
        headers=control.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"config": {"host": "h", "password": MASK}}


def test_references_and_delete_actor(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    data = make_caller(Role.DATA_PLANE)
    actor, org, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stored = put_actor(client, control.headers, actor, org, workspace).json()["config"]

    listed = client.get(f"/v1/actors/{actor}/references", headers=control.headers)
    assert listed.status_code == 200, listed.text
    references = listed.json()["references"]
    assert [r["hydration_path"] for r in references] == ["$.password"]
    config_id = references[0]["secret_config_id"]

    by_config = client.get(
        f"/v1/secret-configs/{config_id}/references", headers=control.headers
    )
    assert by_config.status_code == 200, by_config.text
    assert [r["id"] for r in by_config.json()["references"]] == [references[0]["id"]]

    deleted = client.delete(f"/v1/actors/{actor}", headers=control.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    after = client.get(f"/v1/actors/{actor}/references", headers=control.headers)
    assert after.json() == {"references": []}
    hydrated = client.post(
        f"/v1/actors/{actor}/config/hydrate",
        json={"config": stored},
        headers=data.headers,
    )
    assert_error(hydrated, 404, "reference_not_found")


def test_storages_add_list_tombstone(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    admin = make_caller(Role.ADMIN)
    org = uuid.uuid4()
    body = {
        "type": "local",
        "scope": "organization",
        "scope_id": str(org),
        "descriptor": "own",
        "config": {},
    }
    added = client.post("/v1/storages", json=body, headers=admin.headers)
    assert added.status_code == 201, added.text
    storage_id = added.json()["id"]
    assert added.json()["tombstone"] is False

    duplicate = client.post("/v1/storages", json=body, headers=admin.headers)
    assert_error(duplicate, 409, "conflict")

    listed = client.get("/v1/storages", headers=admin.headers)
    ids = [s["id"] for s in listed.json()["storages"]]
    assert storage_id in ids
    assert str(DEFAULT_STORAGE_ID) in ids

    removed = client.delete(f"/v1/storages/{storage_id}", headers=admin.headers)
    assert removed.status_code == 200, removed.text
    assert removed.json()["tombstone"] is True

    default = client.delete(f"/v1/storages/{DEFAULT_STORAGE_ID}", headers=admin.headers)
    assert_error(default, 422, "invalid_input")
    missing = client.delete(f"/v1/storages/{uuid.uuid4()}", headers=admin.headers)
    assert_error(missing, 404, "storage_not_found")


def test_storage_unknown_type_is_invalid(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    admin = make_caller(Role.ADMIN)
    body = {
        "type": "no-such-backend",
        "scope": "organization",
        "scope_id": str(uuid.uuid4()),
        "descriptor": "x",
        "config": {},
    }
    response = client.post("/v1/storages", json=body, headers=admin.headers)
    assert_error(response, 422, "invalid_input")


def test_healthz_and_metrics_need_no_token(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "keyrefs_http_requests_total" in metrics.text
    assert 'route="/healthz"' in metrics.text


def test_metrics_label_route_templates_only(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    actor = uuid.uuid4()
    client.get(f"/v1/actors/{actor}/references", headers=control.headers)
    text = client.get("/metrics").text
    assert str(actor) not in text
    assert 'route="/v1/actors/{actor_id}/references"' in text


def test_openapi_lists_every_route(client: httpx.Client) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == {
        "/v1/actors/{actor_id}/config",
        "/v1/actors/{actor_id}/config/hydrate",
        "/v1/config/mask",
        "/v1/actors/{actor_id}",
        "/v1/actors/{actor_id}/references",
        "/v1/secret-configs/{secret_config_id}/references",
        "/v1/storages",
        "/v1/storages/{storage_id}",
        "/healthz",
    }


# Roles -------------------------------------------------------------------

ACTOR = uuid.UUID("11111111-1111-4111-8111-111111111111")
ROUTES: list[tuple[str, str, dict[str, object] | None, Role]] = [
    (
        "PUT",
        f"/v1/actors/{ACTOR}/config",
        actor_body(uuid.uuid4(), uuid.uuid4()),
        Role.CONTROL_PLANE,
    ),
    (
        "POST",
        f"/v1/actors/{ACTOR}/config/hydrate",
        {"config": {"host": "h"}},
        Role.DATA_PLANE,
    ),
    ("POST", "/v1/config/mask", {"spec": SPEC, "config": {}}, Role.CONTROL_PLANE),
    ("DELETE", f"/v1/actors/{ACTOR}", None, Role.CONTROL_PLANE),
    ("GET", f"/v1/actors/{ACTOR}/references", None, Role.CONTROL_PLANE),
    ("GET", f"/v1/secret-configs/{ACTOR}/references", None, Role.CONTROL_PLANE),
    (
        "POST",
        "/v1/storages",
        {
            "type": "local",
            "scope": "organization",
            "scope_id": str(uuid.uuid4()),
            "descriptor": "roles",
            "config": {},
        },
        Role.ADMIN,
    ),
    ("GET", "/v1/storages", None, Role.ADMIN),
    ("DELETE", f"/v1/storages/{uuid.uuid4()}", None, Role.ADMIN),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
def test_roles_allowed_and_rejected(
    client: httpx.Client,
    make_caller: MakeCaller,
    method: str,
    path: str,
    body: dict[str, object] | None,
    allowed: Role,
) -> None:
    for role in Role:
        caller = make_caller(role)
        response = client.request(method, path, json=body, headers=caller.headers)
        if role is allowed:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500, (role, response.text)
        else:
            assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
def test_tokens_missing_or_malformed(
    client: httpx.Client,
    method: str,
    path: str,
    body: dict[str, object] | None,
    allowed: Role,
) -> None:
    header_sets: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "bearer\ttab"},
    ]
    for headers in header_sets:
        response = client.request(method, path, json=body, headers=headers)
        assert_error(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_token_is_rejected(
    client: httpx.Client, make_caller: MakeCaller, service: KeyrefsService
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    ok = client.get(f"/v1/actors/{uuid.uuid4()}/references", headers=control.headers)
    assert ok.status_code == 200
    revoke_token(service.session, control.token_id)
    response = client.get(
        f"/v1/actors/{uuid.uuid4()}/references", headers=control.headers
    )
    assert_error(response, 401, "invalid_token")


# Tenant isolation ----------------------------------------------------------


def test_other_org_actor_is_not_found(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    control_a = make_caller(Role.CONTROL_PLANE, org_a)
    control_b = make_caller(Role.CONTROL_PLANE, org_b)
    data_b = make_caller(Role.DATA_PLANE, org_b)
    actor, workspace = uuid.uuid4(), uuid.uuid4()
    created = put_actor(client, control_a.headers, actor, org_a, workspace)
    assert created.status_code == 200, created.text
    stored = created.json()["config"]
    config_id = client.get(
        f"/v1/actors/{actor}/references", headers=control_a.headers
    ).json()["references"][0]["secret_config_id"]

    for guessed in (actor, uuid.uuid4()):
        references = client.get(
            f"/v1/actors/{guessed}/references", headers=control_b.headers
        )
        assert_error(references, 404, "actor_not_found")
        deleted = client.delete(f"/v1/actors/{guessed}", headers=control_b.headers)
        assert_error(deleted, 404, "actor_not_found")
        hydrated = client.post(
            f"/v1/actors/{guessed}/config/hydrate",
            json={"config": stored},
            headers=data_b.headers,
        )
        assert_error(hydrated, 404, "actor_not_found")
    by_config = client.get(
        f"/v1/secret-configs/{config_id}/references", headers=control_b.headers
    )
    assert_error(by_config, 404, "secret_config_not_found")
    guessed_config = client.get(
        f"/v1/secret-configs/{uuid.uuid4()}/references", headers=control_b.headers
    )
    assert_error(guessed_config, 404, "secret_config_not_found")
    assert by_config.json()["error"]["message"].replace(
        config_id, "ID"
    ) == guessed_config.json()["error"]["message"].replace(
        guessed_config.url.path.split("/")[3], "ID"
    )


def test_other_org_actor_cannot_be_overwritten(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    control_a = make_caller(Role.CONTROL_PLANE, org_a)
    control_b = make_caller(Role.CONTROL_PLANE, org_b)
    actor, workspace = uuid.uuid4(), uuid.uuid4()
    assert put_actor(client, control_a.headers, actor, org_a, workspace).is_success

    as_own_org = put_actor(client, control_b.headers, actor, org_b, uuid.uuid4())
    assert_error(as_own_org, 404, "actor_not_found")
    claiming_a = put_actor(client, control_b.headers, actor, org_a, workspace)
    assert_error(claiming_a, 404, "actor_not_found")
    workspace_of_a = put_actor(
        client, control_b.headers, uuid.uuid4(), org_b, workspace
    )
    assert_error(workspace_of_a, 404)


def test_unlimited_token_owner_mismatch_conflicts(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    actor, org, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert put_actor(client, control.headers, actor, org, workspace).is_success

    other_org = put_actor(client, control.headers, actor, uuid.uuid4(), workspace)
    assert_error(other_org, 409, "conflict")
    other_workspace = put_actor(client, control.headers, actor, org, uuid.uuid4())
    assert_error(other_workspace, 409, "conflict")


def test_foreign_reference_hidden_from_limited_token(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    control_a = make_caller(Role.CONTROL_PLANE, org_a)
    control_b = make_caller(Role.CONTROL_PLANE, org_b)
    data_b = make_caller(Role.DATA_PLANE, org_b)
    stored_a = put_actor(
        client, control_a.headers, uuid.uuid4(), org_a, uuid.uuid4(), "pw-a"
    ).json()["config"]
    actor_b = uuid.uuid4()
    put_actor(client, control_b.headers, actor_b, org_b, uuid.uuid4(), "pw-b")

    stolen = {"host": "h", "password": stored_a["password"]}
    guessed = {"host": "h", "password": {"_secret_reference_id": str(uuid.uuid4())}}
    messages = []
    for config in (stolen, guessed):
        response = client.post(
            f"/v1/actors/{actor_b}/config/hydrate",
            json={"config": config},
            headers=data_b.headers,
        )
        assert_error(response, 404, "reference_not_found")
        assert "pw-a" not in response.text
        messages.append(response.json()["error"]["message"])
    assert messages[0] == messages[1]


def test_limited_admin_sees_own_storages_only(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    admin_a = make_caller(Role.ADMIN, org_a)
    admin_b = make_caller(Role.ADMIN, org_b)
    body = {
        "type": "local",
        "scope": "organization",
        "scope_id": str(org_a),
        "descriptor": "a",
        "config": {},
    }
    added = client.post("/v1/storages", json=body, headers=admin_a.headers)
    assert added.status_code == 201, added.text
    storage_id = added.json()["id"]

    listed_b = client.get("/v1/storages", headers=admin_b.headers).json()["storages"]
    assert listed_b == []
    listed_a = client.get("/v1/storages", headers=admin_a.headers).json()["storages"]
    assert [s["id"] for s in listed_a] == [storage_id]

    for target in (storage_id, str(uuid.uuid4()), str(DEFAULT_STORAGE_ID)):
        response = client.delete(f"/v1/storages/{target}", headers=admin_b.headers)
        assert_error(response, 404, "storage_not_found")
    in_other_org = client.post("/v1/storages", json=body, headers=admin_b.headers)
    assert_error(in_other_org, 404)

    workspace = uuid.uuid4()
    workspace_body = {**body, "scope": "workspace", "scope_id": str(workspace)}
    assert client.post(
        "/v1/storages", json=workspace_body, headers=admin_a.headers
    ).is_success
    workspace_in_b = {**workspace_body, "descriptor": "b"}
    response = client.post("/v1/storages", json=workspace_in_b, headers=admin_b.headers)
    assert_error(response, 404)


# Malformed bodies ------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes]] = [
    ("not json", b"{not json"),
    ("array", b"[]"),
    (
        "wrong types",
        b'{"workspace_id": 5, "organization_id": [], "spec": 1, "config": "x"}',
    ),
    ("missing fields", b"{}"),
    (
        "bad uuid",
        b'{"workspace_id": "secret-looking-value", "organization_id": "x", '
        b'"spec": {}, "config": {}}',
    ),
    (
        "extra field",
        b'{"workspace_id": "00000000-0000-4000-8000-000000000000", '
        b'"organization_id": "00000000-0000-4000-8000-000000000000", '
        b'"spec": {}, "config": {}, "more": 1}',
    ),
]


@pytest.mark.parametrize(
    ("name", "content"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_malformed_body_is_rejected(
    client: httpx.Client, make_caller: MakeCaller, name: str, content: bytes
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    response = client.put(
        f"/v1/actors/{uuid.uuid4()}/config",
        content=content,
        headers={**control.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 422, "invalid_request")
    assert "secret-looking-value" not in response.text


def test_invalid_config_names_path_not_value(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    body = actor_body(uuid.uuid4(), uuid.uuid4())
    body["config"] = {"password": "only-the-secret"}
    response = client.put(
        f"/v1/actors/{uuid.uuid4()}/config", json=body, headers=control.headers
    )
    assert_error(response, 422, "invalid_config")
    assert "only-the-secret" not in response.text


def test_huge_body_gets_413(client: httpx.Client, make_caller: MakeCaller) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    body = actor_body(uuid.uuid4(), uuid.uuid4(), "x" * (2 * 1024 * 1024))
    response = client.put(
        f"/v1/actors/{uuid.uuid4()}/config", json=body, headers=control.headers
    )
    assert_error(response, 413, "request_too_large")


def test_huge_chunked_body_gets_413(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)

    def chunks() -> object:
        for _ in range(40):
            yield b"x" * 65536

    response = client.put(
        f"/v1/actors/{uuid.uuid4()}/config",
        content=chunks(),  # type: ignore[arg-type]
        headers={**control.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "request_too_large")


def test_deep_nesting_is_rejected(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    depth = 100_000
    content = (
        b'{"spec": {}, "config": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    )
    response = client.post(
        "/v1/config/mask",
        content=content,
        headers={**control.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 422, "too_deeply_nested")


def test_brackets_inside_strings_do_not_count(
    client: httpx.Client, make_caller: MakeCaller
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    response = client.post(
        "/v1/config/mask",
        json={"spec": SPEC, "config": {"host": "[{" * 500 + '\\"'}},
        headers=control.headers,
    )
    assert response.status_code == 200, response.text


def test_unknown_route_has_error_shape(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.post("/healthz"), 405, "method_not_allowed")


# Audit -------------------------------------------------------------------------


def test_audit_records_writes_and_failures(
    client: httpx.Client, make_caller: MakeCaller, service: KeyrefsService
) -> None:
    control = make_caller(Role.CONTROL_PLANE)
    data = make_caller(Role.DATA_PLANE)
    actor, org, workspace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stored = put_actor(client, control.headers, actor, org, workspace).json()["config"]
    client.post(
        f"/v1/actors/{actor}/config/hydrate",
        json={"config": stored},
        headers=data.headers,
    )
    client.post(
        f"/v1/actors/{actor}/config/hydrate",
        json={"config": {"p": {"_secret_reference_id": str(uuid.uuid4())}}},
        headers=data.headers,
    )
    client.delete(f"/v1/actors/{actor}", headers=control.headers)

    with service.session() as session:
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.actor_id == actor)
                .order_by(AuditEvent.occurred_at)
            )
        )
    summary = [(e.action, e.result) for e in events]
    assert summary == [
        ("actor.process", "ok"),
        ("actor.hydrate", "ok"),
        ("actor.hydrate", "reference_not_found"),
        ("actor.delete", "ok"),
    ]
    assert events[0].token_id == control.token_id
    assert events[1].token_id == data.token_id
    assert stored["password"]["_secret"] in events[0].coordinates
    assert '"$[\\"password\\"]"' in events[0].coordinates
    # Hydration records the coordinates it read, from the stored config's markers.
    assert stored["password"]["_secret"] in events[1].coordinates
