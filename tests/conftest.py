"""Shared fixtures: databases (SQLite, and PostgreSQL when configured), services."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from keyrefs.ids import ActorId, OrganizationId, WorkspaceId
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings

pytest_plugins = [
    "tests.fixtures.vault",
    "tests.fixtures.aws",
    "tests.fixtures.gcp",
    "tests.fixtures.azure",
    "tests.fixtures.flags",
]

POSTGRES_URL_VARIABLE = "KEYREFS_TEST_POSTGRES_URL"
SPECS_DIR = Path(__file__).resolve().parents[2] / "shared" / "specs"
TEST_MASTER_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every KEYREFS_* variable, so no test reads the developer's settings."""
    for name in list(os.environ):
        if name.startswith("KEYREFS_") and name != POSTGRES_URL_VARIABLE:
            monkeypatch.delenv(name)


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


def _database_params() -> list[object]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgres",
            id="postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    postgres_url() is None, reason=f"{POSTGRES_URL_VARIABLE} is not set"
                ),
            ],
        ),
    ]


def make_postgres_schema_url(base_url: str) -> tuple[str, Callable[[], None]]:
    """Create a fresh schema and return a URL whose search_path is that schema."""
    schema = f"kr_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(base_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keyrefs.db'}"
        return
    base = postgres_url()
    assert base is not None
    url, drop = make_postgres_schema_url(base)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def make_settings(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Build settings from KEYREFS_* variables, as the CLI does."""

    def build(**variables: str) -> Settings:
        monkeypatch.setenv("KEYREFS_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("KEYREFS_DATABASE_URL", database_url)
        monkeypatch.setenv("KEYREFS_MASTER_KEY", TEST_MASTER_KEY)
        for name, value in variables.items():
            monkeypatch.setenv(f"KEYREFS_{name.upper()}", value)
        return Settings()

    return build


@pytest.fixture
def service(make_settings: Callable[..., Settings]) -> Iterator[KeyrefsService]:
    keyrefs = KeyrefsService(make_settings())
    keyrefs.init()
    try:
        yield keyrefs
    finally:
        keyrefs.close()


def new_scope() -> ActorScope:
    return ActorScope(
        ActorId(uuid.uuid4()), WorkspaceId(uuid.uuid4()), OrganizationId(uuid.uuid4())
    )


@pytest.fixture
def scope() -> ActorScope:
    return new_scope()
