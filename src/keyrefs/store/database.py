"""Engines, sessions and schema upgrades."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_database_engine(url: str, **options: Any) -> Engine:
    """Create an engine for `url`; SQLite files get foreign keys and WAL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "KEYREFS_DATABASE_URL is not a valid SQLAlchemy URL: expected for "
            "example sqlite:///path/keyrefs.db or "
            "postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, **options)
    # The service reads and writes with up to 32 threads at once.
    options = {"pool_size": 10, "max_overflow": 30, **options}
    return create_engine(url, pool_pre_ping=True, **options)


def _create_sqlite_engine(url: str, **options: Any) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        # The file holds ciphertexts and wrapped keys: readable by its owner only.
        Path(database).touch(mode=0o600, exist_ok=True)
        options = {"pool_size": 10, "max_overflow": 30, **options}
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def configure(connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is switched off so that BEGIN is
        # emitted by SQLAlchemy below, as its documentation recommends.
        connection.isolation_level = None
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if database and database != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock at the start, so two writers queue on
        # busy_timeout instead of failing with "database is locked" mid-way.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Config:
    # Alembic is imported here, not at the top: only `init` and tests need it.
    from alembic.config import Config

    config = Config()
    location = resources.files("keyrefs.store") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Apply every pending Alembic migration."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def is_at_head(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(engine))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(script.get_heads())
