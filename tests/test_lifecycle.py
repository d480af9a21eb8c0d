"""Short-lived secrets and garbage collection."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from keyrefs.backends.base import SecretWrite
from keyrefs.domain.coordinates import ManagedCoordinate
from keyrefs.domain.durations import parse_duration
from keyrefs.errors import (
    BackendUnavailable,
    ConcurrentUpdate,
    InvalidInput,
    SecretExpired,
)
from keyrefs.ids import DEFAULT_STORAGE_ID, OrganizationId
from keyrefs.secret_value import MASK, SecretValue
from keyrefs.service import KeyrefsService
from keyrefs.service.gc import GcOptions
from keyrefs.service.types import ActorScope
from keyrefs.store.models import SecretConfig
from keyrefs.store.types import utc_now
from tests.helpers import SECRET, config_coordinates, local_coordinates

SPEC = {"type": "object", "properties": {"password": SECRET, "token": SECRET}}
NO_GRACE = GcOptions(grace=timedelta(0))


def age_rows(service: KeyrefsService, by: timedelta) -> None:
    with service.session() as session:
        session.execute(update(SecretConfig).values(created_at=utc_now() - by))
        session.commit()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0s", "10", "1w", "-5m", "1.5h", "h"])
def test_invalid_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a positive whole number"):
        parse_duration(text)


def test_short_lived_config_hydrates_without_references(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, {"password": "pw"}, ttl=timedelta(minutes=5))
    assert "_secret_reference_id" not in stored["password"]
    assert service.references_of_actor(scope.actor_id) == []
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw"}


def test_short_lived_config_keeps_saved_secret_for_masks(
    service: KeyrefsService, scope: ActorScope
) -> None:
    saved = service.process(scope, SPEC, {"password": "saved", "token": "t"})
    check = service.process(
        scope, SPEC, {"password": MASK, "token": "edited"}, ttl=timedelta(minutes=5)
    )
    assert check["password"]["_secret"] == saved["password"]["_secret"]
    assert service.hydrate(check, scope.actor_id) == {
        "password": "saved",
        "token": "edited",
    }
    # The saved config is untouched by the check.
    assert service.hydrate(saved, scope.actor_id) == {"password": "saved", "token": "t"}


def test_expired_secret_is_a_clear_error_and_collected(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, {"password": "pw"}, ttl=timedelta(minutes=5))
    with service.session() as session:
        session.execute(
            update(SecretConfig).values(expires_at=utc_now() - timedelta(seconds=1))
        )
        session.commit()
    with pytest.raises(SecretExpired, match=r"\$\.password"):
        service.hydrate(stored, scope.actor_id)
    report = service.collect_garbage(GcOptions())
    assert report.counts[str(DEFAULT_STORAGE_ID)]["expired"] == 1
    assert local_coordinates(service) == set()


def test_short_lived_external_secret_is_rejected(
    service: KeyrefsService, scope: ActorScope
) -> None:
    with pytest.raises(InvalidInput, match="short-lived"):
        service.process(
            scope, SPEC, {"password": {"_secret": "x"}}, ttl=timedelta(minutes=1)
        )


def test_gc_removes_orphans_after_grace(
    service: KeyrefsService, scope: ActorScope
) -> None:
    live = service.process(scope, SPEC, {"password": "pw"})
    orphan = ManagedCoordinate("workspace", scope.workspace_id, uuid.uuid4())
    backend = service.backends.get(DEFAULT_STORAGE_ID)
    backend.write(
        SecretWrite(orphan, SecretValue("left"), OrganizationId(scope.organization_id))
    )

    young = service.collect_garbage(GcOptions())
    assert young.counts[str(DEFAULT_STORAGE_ID)]["orphaned"] == 0
    dry = service.collect_garbage(GcOptions(dry_run=True, grace=timedelta(0)))
    assert dry.counts[str(DEFAULT_STORAGE_ID)]["orphaned"] == 1
    assert orphan.render() in local_coordinates(service)

    report = service.collect_garbage(NO_GRACE)
    assert report.counts[str(DEFAULT_STORAGE_ID)]["orphaned"] == 1
    assert local_coordinates(service) == {live["password"]["_secret"]}
    assert service.hydrate(live, scope.actor_id) == {"password": "pw"}


def test_gc_removes_unreferenced_rows_and_keeps_referenced(
    service: KeyrefsService, scope: ActorScope
) -> None:
    live = service.process(scope, SPEC, {"password": "pw"})
    with service.session() as session:
        session.add(
            SecretConfig(
                id=uuid.uuid4(),
                secret_storage_id=DEFAULT_STORAGE_ID,
                descriptor="keyrefs_stale",
                external_coordinate=ManagedCoordinate(
                    "workspace", uuid.uuid4(), uuid.uuid4()
                ).render(),
                managed=True,
                value_format="text",
                tombstone=False,
            )
        )
        session.commit()
    age_rows(service, timedelta(hours=2))
    report = service.collect_garbage(GcOptions())
    assert report.counts[str(DEFAULT_STORAGE_ID)]["unreferenced"] == 1
    assert config_coordinates(service) == {live["password"]["_secret"]}
    assert service.hydrate(live, scope.actor_id) == {"password": "pw"}


def test_gc_never_touches_external_rows(service: KeyrefsService) -> None:
    with service.session() as session:
        session.add(
            SecretConfig(
                id=uuid.uuid4(),
                secret_storage_id=DEFAULT_STORAGE_ID,
                descriptor="customer/secret",
                external_coordinate="customer/secret",
                managed=False,
                value_format="text",
                tombstone=False,
            )
        )
        session.commit()
    age_rows(service, timedelta(days=2))
    service.collect_garbage(NO_GRACE)
    assert "customer/secret" in config_coordinates(service)


def test_gc_outage_keeps_rows_and_retries_later(
    service: KeyrefsService, scope: ActorScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = service.process(scope, SPEC, {"password": "pw"})
    backend = service.backends.get(DEFAULT_STORAGE_ID)
    original_delete = backend.delete

    def unavailable(coordinate: object) -> None:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(backend, "delete", unavailable)
    service.delete_actor(scope.actor_id)
    report = service.collect_garbage(NO_GRACE)
    assert [f["error"] for f in report.failures] == ["backend_unavailable"]
    assert first["password"]["_secret"] in config_coordinates(service)

    monkeypatch.setattr(backend, "delete", original_delete)
    report = service.collect_garbage(NO_GRACE)
    assert report.failures == []
    assert report.counts[str(DEFAULT_STORAGE_ID)]["unreferenced"] == 1
    assert config_coordinates(service) == set()
    assert local_coordinates(service) == set()


def test_gc_limit_bounds_deletions(service: KeyrefsService, scope: ActorScope) -> None:
    backend = service.backends.get(DEFAULT_STORAGE_ID)
    for _ in range(3):
        name = ManagedCoordinate("workspace", scope.workspace_id, uuid.uuid4())
        backend.write(
            SecretWrite(name, SecretValue("x"), OrganizationId(scope.organization_id))
        )
    report = service.collect_garbage(GcOptions(grace=timedelta(0), limit=2))
    assert report.counts[str(DEFAULT_STORAGE_ID)]["orphaned"] == 2
    assert len(local_coordinates(service)) == 1


def test_tombstoned_config_is_not_reused(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, {"password": "pw"})
    with service.session() as session:
        session.execute(update(SecretConfig).values(tombstone=True))
        session.commit()
    with pytest.raises(ConcurrentUpdate, match=r"\$\.password"):
        service.process(scope, SPEC, {"password": MASK})
    with service.session() as session:
        assert session.scalars(select(SecretConfig.tombstone)).all() == [True]
    assert stored["password"]["_secret"] in local_coordinates(service)


def test_zero_duration_only_where_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    with pytest.raises(ValueError, match="a positive whole number"):
        parse_duration("0s")


def test_gc_of_unknown_storage_is_not_found(service: KeyrefsService) -> None:
    from keyrefs.errors import StorageNotFound

    with pytest.raises(StorageNotFound):
        service.collect_garbage(GcOptions(storage_id=uuid.uuid4()))  # type: ignore[arg-type]


def test_overlong_duration_is_invalid() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("999999999d")
