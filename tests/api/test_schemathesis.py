"""Property-based requests from the OpenAPI document: no route answers 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.core import NotSet

from keyrefs.api import create_app
from keyrefs.service import KeyrefsService
from keyrefs.service.tokens import Role, create_token


@pytest.fixture
def api(service: KeyrefsService) -> Iterator[tuple[TestClient, str]]:
    token = create_token(service.session, Role.CONTROL_PLANE, None, "schemathesis")
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield client, token.secret


def test_generated_requests_get_no_5xx(api: tuple[TestClient, str]) -> None:
    client, token = api
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    failures: list[str] = []

    for operation in schema.get_all_operations():
        current = operation.ok()

        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=current.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = client.request(
                case.method,
                case.formatted_path,
                params=case.query,
                json=None if isinstance(case.body, NotSet) else case.body,
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.text}")
            body = response.json() if response.content else None
            if response.status_code >= 400:
                assert set(body) == {"error"}, response.text

        check()
    assert failures == []
