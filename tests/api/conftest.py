"""Fixtures of the HTTP API tests: an app over the `service` fixture, tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

from keyrefs.api import create_app
from keyrefs.ids import OrganizationId
from keyrefs.service import KeyrefsService
from keyrefs.service.tokens import Role, create_token
from tests.helpers import SECRET

SPEC = {
    "type": "object",
    "required": ["host"],
    "properties": {"host": {"type": "string"}, "password": SECRET},
}


@dataclass(frozen=True)
class Caller:
    """A token and the headers that send it."""

    token_id: uuid.UUID
    token: str
    organization_id: uuid.UUID | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeCaller = Callable[..., Caller]


@pytest.fixture
def client(service: KeyrefsService) -> Iterator[httpx.Client]:
    # TestClient is an httpx.Client that runs the ASGI app in-process; it
    # raises server exceptions, so a 500 fails the test with its traceback.
    with TestClient(create_app(service), base_url="http://keyrefs.test") as http:
        yield http


@pytest.fixture
def make_caller(service: KeyrefsService) -> MakeCaller:
    def make(role: Role, organization_id: uuid.UUID | None = None) -> Caller:
        organization = OrganizationId(organization_id) if organization_id else None
        created = create_token(service.session, role, organization, "test")
        return Caller(created.view.id, created.secret, organization_id)

    return make


def actor_body(
    organization_id: uuid.UUID,
    workspace_id: uuid.UUID,
    password: str = "pw",
    **extra: object,
) -> dict[str, object]:
    return {
        "workspace_id": str(workspace_id),
        "organization_id": str(organization_id),
        "spec": SPEC,
        "config": {"host": "db.internal", "password": password},
        **extra,
    }
