"""The local backend's encryption, and the schema the migrations create."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, update

from keyrefs.backends.base import Absent, Found, SecretWrite
from keyrefs.backends.local import LocalBackend, MasterKey
from keyrefs.domain.coordinates import ManagedCoordinate
from keyrefs.errors import BackendError, ConfigurationError, LimitExceeded
from keyrefs.ids import DEFAULT_STORAGE_ID, OrganizationId, SecretStorageId
from keyrefs.secret_value import SecretValue
from keyrefs.service import KeyrefsService
from keyrefs.service.guarded_backend import unwrap
from keyrefs.store.database import is_at_head
from keyrefs.store.models import Base, LocalDataKey, LocalSecret


def coordinate() -> ManagedCoordinate:
    return ManagedCoordinate("workspace", uuid.uuid4(), uuid.uuid4())


def write(
    backend: LocalBackend, name: ManagedCoordinate, text: str, org: uuid.UUID
) -> None:
    backend.write(SecretWrite(name, SecretValue(text), OrganizationId(org)))


@pytest.fixture
def backend(service: KeyrefsService) -> LocalBackend:
    found = unwrap(service.backends.get(DEFAULT_STORAGE_ID))
    assert isinstance(found, LocalBackend)
    return found


def test_write_read_delete(backend: LocalBackend) -> None:
    name = coordinate()
    write(backend, name, "multi\nline ünïcode", uuid.uuid4())
    result = backend.read(name)
    assert isinstance(result, Found)
    assert result.value.reveal() == "multi\nline ünïcode"
    backend.delete(name)
    assert backend.read(name) == Absent()
    backend.delete(name)


def test_one_data_key_per_organization(
    service: KeyrefsService, backend: LocalBackend
) -> None:
    first_org, second_org = uuid.uuid4(), uuid.uuid4()
    for org in (first_org, first_org, second_org):
        write(backend, coordinate(), "v", org)
    with service.session() as session:
        keys = session.scalars(select(LocalDataKey.organization_id)).all()
    assert sorted(map(str, keys)) == sorted([str(first_org), str(second_org)])


def test_ciphertext_moved_to_other_coordinate_fails(
    service: KeyrefsService, backend: LocalBackend
) -> None:
    source, target = coordinate(), coordinate()
    org = uuid.uuid4()
    write(backend, source, "original", org)
    write(backend, target, "other", org)
    with service.session() as session:
        row = session.get(LocalSecret, (DEFAULT_STORAGE_ID, source.render()))
        assert row is not None
        session.execute(
            update(LocalSecret)
            .where(LocalSecret.coordinate == target.render())
            .values(nonce=row.nonce, ciphertext=row.ciphertext)
        )
        session.commit()
    with pytest.raises(BackendError, match="integrity check"):
        backend.read(target)


def test_ciphertext_of_other_storage_fails(
    service: KeyrefsService, backend: LocalBackend
) -> None:
    name = coordinate()
    write(backend, name, "original", uuid.uuid4())
    other = LocalBackend(
        SecretStorageId(uuid.uuid4()), service.engine, service.master_key()
    )
    with service.session() as session:
        session.execute(
            update(LocalSecret)
            .where(LocalSecret.coordinate == name.render())
            .values(secret_storage_id=other._storage_id)
        )
        session.commit()
    with pytest.raises(BackendError, match="integrity check"):
        other.read(name)


def test_wrong_master_key_is_reported(
    service: KeyrefsService, backend: LocalBackend
) -> None:
    name = coordinate()
    write(backend, name, "v", uuid.uuid4())
    stranger = LocalBackend(DEFAULT_STORAGE_ID, service.engine, MasterKey(b"x" * 32))
    with pytest.raises(BackendError, match="master key"):
        stranger.read(name)


def test_value_limit(backend: LocalBackend) -> None:
    with pytest.raises(LimitExceeded, match="1048576 bytes"):
        write(backend, coordinate(), "x" * (1024 * 1024 + 1), uuid.uuid4())


def test_list_managed_parses_names(backend: LocalBackend) -> None:
    names = {coordinate() for _ in range(3)}
    for name in names:
        write(backend, name, "v", uuid.uuid4())
    listed = {item.coordinate for item in backend.list_managed("keyrefs_")}
    assert names <= listed


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "32 bytes"),
    ],
)
def test_bad_master_key_is_a_configuration_error(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        MasterKey.from_base64(text, "KEYREFS_MASTER_KEY")


def test_missing_master_key_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="keyrefs init"):
        MasterKey.from_file(tmp_path / "absent.key")


def test_master_key_repr_hides_key() -> None:
    assert "x" not in repr(MasterKey(b"x" * 32)).replace("MasterKey", "")


def test_migrations_create_the_models_schema(service: KeyrefsService) -> None:
    assert is_at_head(service.engine)
    with service.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_reference_path_unique_includes_null_paths(service: KeyrefsService) -> None:
    from sqlalchemy.exc import IntegrityError

    from keyrefs.store.models import SecretConfig, SecretReference

    scope_id = uuid.uuid4()
    with service.session() as session:
        config = SecretConfig(
            id=uuid.uuid4(),
            secret_storage_id=DEFAULT_STORAGE_ID,
            descriptor="d",
            external_coordinate="c",
            managed=True,
            value_format="text",
            tombstone=False,
        )
        session.add(config)
        session.flush()
        for _ in range(2):
            session.add(
                SecretReference(
                    id=uuid.uuid4(),
                    secret_config_id=config.id,
                    scope_type="secret_storage",
                    scope_id=scope_id,
                    hydration_path=None,
                )
            )
        with pytest.raises(IntegrityError):
            session.flush()


def test_database_file_is_private(tmp_path: Path) -> None:
    from keyrefs.store.database import create_database_engine

    database = tmp_path / "private" / "keyrefs.db"
    engine = create_database_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    engine.dispose()
    assert database.stat().st_mode & 0o777 == 0o600
