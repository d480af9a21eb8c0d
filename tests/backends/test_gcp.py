"""The Google Secret Manager backend, with the real SDK against the REST fake."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from google.cloud import secretmanager
from pydantic import BaseModel

from keyrefs.backends.base import Absent, BackendContext, Found, SecretWrite
from keyrefs.backends.configs import GoogleConfig
from keyrefs.backends.gcp import (
    MAX_PAYLOAD_BYTES,
    ORGANIZATION_LABEL,
    GoogleBackend,
    GoogleBackendFactory,
    check_secret_id,
    crc32c,
    translate,
)
from keyrefs.backends.registry import load_factory
from keyrefs.backends.retry import NO_RETRY, RetryPolicy
from keyrefs.domain.coordinates import (
    ExternalCoordinate,
    ManagedCoordinate,
    parse_managed,
)
from keyrefs.errors import (
    AccessDenied,
    BackendError,
    BackendInvalidRequest,
    BackendUnavailable,
    ConfigurationError,
    InvalidCoordinate,
    KeyrefsError,
    LimitExceeded,
    Throttled,
)
from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.secret_value import SecretValue
from tests.backends.conformance import ConformanceTarget
from tests.fakes.gcp_fake import FakeSecretManager, crc32c_bitwise
from tests.fixtures.gcp import sdk_client

FAST_RETRY = RetryPolicy(max_attempts=3, max_seconds=2.0, initial_wait=0.01)

BackendMaker = Callable[..., GoogleBackend]


@pytest.fixture
def fake(gcp_fake: FakeSecretManager) -> Iterator[FakeSecretManager]:
    gcp_fake.reset()
    yield gcp_fake
    gcp_fake.reset()


@pytest.fixture
def project() -> str:
    return f"keyrefs-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_backend(fake: FakeSecretManager, project: str) -> Iterator[BackendMaker]:
    backends: list[GoogleBackend] = []

    def build(
        retry_policy: RetryPolicy = FAST_RETRY, timeout: float = 5.0, **settings: Any
    ) -> GoogleBackend:
        values: dict[str, Any] = {
            "project": project,
            "endpoint": fake.endpoint,
            "anonymous": True,
        }
        values.update(settings)
        backend = GoogleBackend(
            GoogleConfig(**values), retry_policy=retry_policy, request_timeout=timeout
        )
        backends.append(backend)
        return backend

    yield build
    for backend in backends:
        backend.close()


@pytest.fixture
def sdk(fake: FakeSecretManager) -> Iterator[secretmanager.SecretManagerServiceClient]:
    client = sdk_client(fake.endpoint)
    yield client
    client.transport.close()  # type: ignore[no-untyped-call]


def managed(**fields: Any) -> ManagedCoordinate:
    return ManagedCoordinate("organization", uuid.uuid4(), uuid.uuid4(), **fields)


def secret_write(
    coordinate: ManagedCoordinate, text: str, expires_at: datetime | None = None
) -> SecretWrite:
    return SecretWrite(
        coordinate, SecretValue(text), OrganizationId(uuid.uuid4()), expires_at
    )


def found_text(result: object) -> str:
    assert isinstance(result, Found), result
    return result.value.reveal()


def global_secret() -> secretmanager.Secret:
    automatic = secretmanager.Replication.Automatic()
    return secretmanager.Secret(
        replication=secretmanager.Replication(automatic=automatic)
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Round trips -------------------------------------------------------------


def test_write_then_read_round_trip(make_backend: BackendMaker) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "pässwörd ✓"))
    assert found_text(backend.read(coordinate)) == "pässwörd ✓"


def test_second_write_adds_version(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "first"))
    backend.write(secret_write(coordinate, "second"))

    secret = fake.secret(f"projects/{project}/secrets/{coordinate.render()}")
    assert secret is not None
    assert len(secret.versions) == 2
    creates = fake.requests_to("POST", "/secrets")
    assert [request.status for request in creates] == [200, 409]
    assert found_text(backend.read(coordinate)) == "second"


def test_read_many_reads_each(make_backend: BackendMaker) -> None:
    backend = make_backend()
    present, missing = managed(), managed()
    backend.write(secret_write(present, "one"))
    results = backend.read_many([present, missing])
    assert found_text(results[present]) == "one"
    assert results[missing] == Absent()


def test_read_missing_secret_is_absent(make_backend: BackendMaker) -> None:
    assert make_backend().read(managed()) == Absent()


def test_secret_without_versions_is_absent(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    project: str,
) -> None:
    coordinate = managed()
    sdk.create_secret(
        parent=f"projects/{project}",
        secret_id=coordinate.render(),
        secret=global_secret(),
    )
    assert make_backend().read(coordinate) == Absent()


def test_delete_removes_all_versions(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "first"))
    backend.write(secret_write(coordinate, "second"))
    backend.delete(coordinate)
    assert fake.secret(f"projects/{project}/secrets/{coordinate.render()}") is None
    assert backend.read(coordinate) == Absent()


def test_delete_absent_secret_is_no_error(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    make_backend().delete(managed())
    deletes = fake.requests_to("DELETE", "")
    assert [request.status for request in deletes] == [404]


def test_write_sends_matching_crc32c(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    make_backend().write(secret_write(managed(), "checked"))
    (add,) = fake.requests_to("POST", ":addVersion")
    assert add.body is not None
    assert add.body["payload"]["dataCrc32c"] == str(crc32c_bitwise(b"checked"))


def test_crc32c_matches_known_vector() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_corrupted_read_is_retried(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "intact"))
    fake.corrupt_accesses = 1
    assert found_text(backend.read(coordinate)) == "intact"
    assert len(fake.requests_to("GET", ":access")) == 2


def test_corrupted_read_without_retry_raises_unavailable(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    backend = make_backend(retry_policy=NO_RETRY)
    coordinate = managed()
    backend.write(secret_write(coordinate, "intact"))
    fake.corrupt_accesses = 1
    with pytest.raises(BackendUnavailable, match="CRC32C"):
        backend.read(coordinate)


# Regional and global secrets, labels, expiry ------------------------------


def test_global_secret_uses_automatic_replication(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    coordinate = managed()
    make_backend().write(secret_write(coordinate, "global"))
    secret = fake.secret(f"projects/{project}/secrets/{coordinate.render()}")
    assert secret is not None
    assert secret.replication == {"automatic": {}}


def test_regional_secret_has_no_replication(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    backend = make_backend(location="europe-west3")
    coordinate = managed()
    backend.write(secret_write(coordinate, "regional"))

    name = f"projects/{project}/locations/europe-west3/secrets/{coordinate.render()}"
    secret = fake.secret(name)
    assert secret is not None
    assert secret.replication is None
    (create,) = fake.requests_to("POST", "/locations/europe-west3/secrets")
    assert create.body is not None
    assert "replication" not in create.body
    assert fake.secret(f"projects/{project}/secrets/{coordinate.render()}") is None
    assert found_text(backend.read(coordinate)) == "regional"


def test_fake_rejects_replication_on_regional_secret(
    sdk: secretmanager.SecretManagerServiceClient, project: str
) -> None:
    with pytest.raises(google_exceptions.BadRequest):
        sdk.create_secret(
            parent=f"projects/{project}/locations/europe-west3",
            secret_id="regional",
            secret=global_secret(),
            retry=None,
        )


def test_regional_list_and_delete(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    backend = make_backend(location="us-east1")
    coordinate = managed()
    backend.write(secret_write(coordinate, "regional"))
    listed = [item.coordinate for item in backend.list_managed("keyrefs_")]
    assert listed == [coordinate]
    backend.delete(coordinate)
    name = f"projects/{project}/locations/us-east1/secrets/{coordinate.render()}"
    assert fake.secret(name) is None


def test_labels_include_organization_id(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    backend = make_backend(labels={"team": "data-eng", "env": "test"})
    coordinate = managed()
    request = secret_write(coordinate, "labelled")
    backend.write(request)
    secret = fake.secret(f"projects/{project}/secrets/{coordinate.render()}")
    assert secret is not None
    assert secret.labels == {
        "team": "data-eng",
        "env": "test",
        ORGANIZATION_LABEL: str(request.organization_id),
    }


def test_expires_at_sets_expire_time(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    coordinate = managed()
    make_backend().write(secret_write(coordinate, "short-lived", expires_at))
    secret = fake.secret(f"projects/{project}/secrets/{coordinate.render()}")
    assert secret is not None
    assert secret.expire_time == expires_at


def test_write_without_expiry_sends_no_expire_time(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    make_backend().write(secret_write(managed(), "long-lived"))
    (create,) = fake.requests_to("POST", "/secrets")
    assert create.body is not None
    assert "expireTime" not in create.body


def test_expired_secret_reads_as_absent(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "short", datetime.now(UTC) + timedelta(1)))
    secret = fake.secret(f"projects/{project}/secrets/{coordinate.render()}")
    assert secret is not None
    secret.expire_time = datetime.now(UTC) - timedelta(seconds=1)
    assert backend.read(coordinate) == Absent()


def test_expiry_in_past_raises_invalid_request(make_backend: BackendMaker) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(BackendInvalidRequest, match="expire_time"):
        make_backend().write(secret_write(managed(), "late", past))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"Team": "x"}, "label key 'Team' is invalid"),
        ({"team": "Data"}, "value of label 'team' is invalid"),
        ({ORGANIZATION_LABEL: "x"}, "is set by keyrefs"),
        ({f"k{i}": "v" for i in range(64)}, "at most 63"),
    ],
)
def test_invalid_labels_raise_configuration_error(
    make_backend: BackendMaker, labels: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_backend(labels=labels)


# Limits and the id rule ---------------------------------------------------


def test_payload_of_64_kib_is_accepted(make_backend: BackendMaker) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "x" * MAX_PAYLOAD_BYTES))
    assert len(found_text(backend.read(coordinate))) == MAX_PAYLOAD_BYTES


def test_payload_over_64_kib_raises_limit_exceeded(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    # 32,769 two-byte characters are 65,538 bytes in UTF-8.
    with pytest.raises(LimitExceeded, match="65536 bytes"):
        make_backend().write(secret_write(managed(), "é" * 32769))
    assert fake.requests == []


def test_fake_rejects_payload_over_limit(
    sdk: secretmanager.SecretManagerServiceClient, project: str
) -> None:
    secret = sdk.create_secret(
        parent=f"projects/{project}",
        secret_id="big",
        secret=global_secret(),
    )
    with pytest.raises(google_exceptions.BadRequest, match="65536"):
        sdk.add_secret_version(
            parent=secret.name,
            payload=secretmanager.SecretPayload(data=b"x" * (MAX_PAYLOAD_BYTES + 1)),
        )


def test_managed_id_is_rendered_coordinate(
    make_backend: BackendMaker, fake: FakeSecretManager, project: str
) -> None:
    coordinate = managed()
    make_backend().write(secret_write(coordinate, "identity"))
    name = f"projects/{project}/secrets/{coordinate.render()}"
    assert fake.secret(name) is not None
    assert parse_managed(name.rsplit("/", 1)[-1]) == coordinate


def test_longest_managed_coordinate_is_legal_id(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    coordinate = ManagedCoordinate(
        "workspace",
        uuid.uuid4(),
        uuid.uuid4(),
        version=999_999_999,
        prefix="k" + "x" * 31,
    )
    backend = make_backend()
    backend.write(secret_write(coordinate, "long"))
    assert found_text(backend.read(coordinate)) == "long"
    listed = [item.coordinate for item in backend.list_managed(coordinate.prefix)]
    assert listed == [coordinate]


def test_fake_rejects_illegal_secret_id(
    sdk: secretmanager.SecretManagerServiceClient, project: str
) -> None:
    with pytest.raises(google_exceptions.BadRequest, match="secret id"):
        sdk.create_secret(
            parent=f"projects/{project}",
            secret_id="has.dot",
            secret=global_secret(),
            retry=None,
        )


@pytest.mark.parametrize(
    "name",
    [
        "plain-name",
        "projects/p/secrets/has.dot",
        f"projects/p/secrets/{'a' * 256}",
        "projects/p/secrets/s/versions/1/extra",
        "projects/p/secrets/s/versions/-1",
        "projects/p/locations/l/secrets",
        "secrets/s",
    ],
)
def test_invalid_external_coordinate_raises(
    make_backend: BackendMaker, fake: FakeSecretManager, name: str
) -> None:
    backend = make_backend()
    with pytest.raises(InvalidCoordinate):
        backend.read(ExternalCoordinate(name))
    assert fake.requests == []


def test_secret_id_rule_allows_255_characters() -> None:
    assert check_secret_id("A" * 255) == "A" * 255
    with pytest.raises(InvalidCoordinate, match="1 to 255 characters"):
        check_secret_id("A" * 256)
    with pytest.raises(InvalidCoordinate, match="1 to 255 characters"):
        check_secret_id("")


def test_external_read_of_longest_fitting_id(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    project: str,
) -> None:
    # External coordinates are at most 256 characters, resource name included.
    parent = f"projects/{project}"
    secret_id = "A-z_9" * ((256 - len(parent) - len("/secrets/")) // 5)
    sdk.create_secret(
        parent=parent,
        secret_id=secret_id,
        secret=global_secret(),
    )
    sdk.add_secret_version(
        parent=f"{parent}/secrets/{secret_id}",
        payload=secretmanager.SecretPayload(data=b"edge"),
    )
    result = make_backend().read(ExternalCoordinate(f"{parent}/secrets/{secret_id}"))
    assert found_text(result) == "edge"


# External reads and version states ----------------------------------------


@pytest.fixture
def external_secret(sdk: secretmanager.SecretManagerServiceClient, project: str) -> str:
    """Create a customer-owned secret with versions "one", "two", "three"."""
    secret = sdk.create_secret(
        parent=f"projects/{project}",
        secret_id="customer-db_password",
        secret=global_secret(),
    )
    for text in ("one", "two", "three"):
        sdk.add_secret_version(
            parent=secret.name, payload=secretmanager.SecretPayload(data=text.encode())
        )
    name: str = secret.name
    return name


def test_external_read_without_version_reads_latest(
    make_backend: BackendMaker, external_secret: str
) -> None:
    result = make_backend().read(ExternalCoordinate(external_secret))
    assert found_text(result) == "three"


@pytest.mark.parametrize(
    ("version", "text"), [("1", "one"), ("2", "two"), ("latest", "three")]
)
def test_external_read_with_version(
    make_backend: BackendMaker, external_secret: str, version: str, text: str
) -> None:
    coordinate = ExternalCoordinate(f"{external_secret}/versions/{version}")
    assert found_text(make_backend().read(coordinate)) == text


def test_external_read_of_missing_version_is_absent(
    make_backend: BackendMaker, external_secret: str
) -> None:
    coordinate = ExternalCoordinate(f"{external_secret}/versions/9")
    assert make_backend().read(coordinate) == Absent()


def test_external_read_from_other_project(
    make_backend: BackendMaker, external_secret: str
) -> None:
    backend = make_backend(project="another-project")
    assert found_text(backend.read(ExternalCoordinate(external_secret))) == "three"


def test_external_regional_read(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    project: str,
) -> None:
    secret = sdk.create_secret(
        parent=f"projects/{project}/locations/asia-east1",
        secret_id="regional",
        secret=secretmanager.Secret(),
    )
    sdk.add_secret_version(
        parent=secret.name, payload=secretmanager.SecretPayload(data=b"far away")
    )
    backend = make_backend()
    assert found_text(backend.read(ExternalCoordinate(secret.name))) == "far away"
    versioned = ExternalCoordinate(f"{secret.name}/versions/1")
    assert found_text(backend.read(versioned)) == "far away"


def test_disabled_version_raises_backend_error(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    external_secret: str,
) -> None:
    sdk.disable_secret_version(name=f"{external_secret}/versions/2")
    backend = make_backend()
    coordinate = ExternalCoordinate(f"{external_secret}/versions/2")
    with pytest.raises(BackendError, match="is disabled: enable it") as caught:
        backend.read(coordinate)
    assert type(caught.value) is BackendError
    assert (
        found_text(backend.read(ExternalCoordinate(f"{external_secret}/versions/1")))
        == "one"
    )


def test_disabled_latest_version_raises_backend_error(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    external_secret: str,
) -> None:
    sdk.disable_secret_version(name=f"{external_secret}/versions/3")
    with pytest.raises(BackendError, match="is disabled"):
        make_backend().read(ExternalCoordinate(external_secret))


def test_destroyed_version_reads_as_absent(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    external_secret: str,
) -> None:
    sdk.destroy_secret_version(name=f"{external_secret}/versions/3")
    backend = make_backend()
    assert backend.read(ExternalCoordinate(f"{external_secret}/versions/3")) == Absent()
    assert backend.read(ExternalCoordinate(external_secret)) == Absent()


def test_destroyed_managed_version_reads_as_absent(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    project: str,
) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "gone soon"))
    name = f"projects/{project}/secrets/{coordinate.render()}/versions/1"
    sdk.destroy_secret_version(name=name)
    assert backend.read(coordinate) == Absent()


def test_non_utf8_payload_raises_backend_error(
    make_backend: BackendMaker,
    sdk: secretmanager.SecretManagerServiceClient,
    project: str,
) -> None:
    secret = sdk.create_secret(
        parent=f"projects/{project}",
        secret_id="binary",
        secret=global_secret(),
    )
    sdk.add_secret_version(
        parent=secret.name, payload=secretmanager.SecretPayload(data=b"\xff\xfe")
    )
    with pytest.raises(BackendError, match="not UTF-8"):
        make_backend().read(ExternalCoordinate(secret.name))


# Listing ----------------------------------------------------------------------


def test_list_managed_follows_pages(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    sdk: secretmanager.SecretManagerServiceClient,
    project: str,
) -> None:
    backend = make_backend()
    written = {managed() for _ in range(5)}
    for coordinate in written:
        backend.write(secret_write(coordinate, "listed"))
    other_prefix = managed(prefix="other_")
    backend.write(secret_write(other_prefix, "not listed"))
    sdk.create_secret(
        parent=f"projects/{project}",
        secret_id="keyrefs_not_a_coordinate",
        secret=global_secret(),
    )
    fake.max_page_size = 2

    listed = list(backend.list_managed("keyrefs_"))

    assert {item.coordinate for item in listed} == written
    lists = fake.requests_to("GET", f"projects/{project}/secrets")
    assert len(lists) == 4
    assert [bool(request.query.get("pageToken")) for request in lists] == [
        False,
        True,
        True,
        True,
    ]


def test_list_managed_reports_create_time(make_backend: BackendMaker) -> None:
    backend = make_backend()
    before = datetime.now(UTC) - timedelta(seconds=1)
    backend.write(secret_write(managed(), "dated"))
    (listed,) = list(backend.list_managed("keyrefs_"))
    assert listed.created_at is not None
    assert listed.created_at.tzinfo is not None
    assert before <= listed.created_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_list_managed_of_empty_project(make_backend: BackendMaker) -> None:
    assert list(make_backend().list_managed("keyrefs_")) == []


# Error translation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PERMISSION_DENIED", AccessDenied),
        ("UNAUTHENTICATED", AccessDenied),
        ("RESOURCE_EXHAUSTED", Throttled),
        ("UNAVAILABLE", BackendUnavailable),
        ("INTERNAL", BackendUnavailable),
        ("DEADLINE_EXCEEDED", BackendUnavailable),
        ("INVALID_ARGUMENT", BackendInvalidRequest),
        ("UNIMPLEMENTED", BackendError),
    ],
)
@pytest.mark.parametrize("operation", ["write", "read", "delete", "list", "check"])
def test_service_error_is_translated(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    status: str,
    expected: type[KeyrefsError],
    operation: str,
) -> None:
    backend = make_backend(retry_policy=NO_RETRY)
    coordinate = managed()
    calls: dict[str, Callable[[], object]] = {
        "write": lambda: backend.write(secret_write(coordinate, "value")),
        "read": lambda: backend.read(coordinate),
        "delete": lambda: backend.delete(coordinate),
        "list": lambda: list(backend.list_managed("keyrefs_")),
        "check": backend.check_connection,
    }
    fake.fail_next(1, status)
    with pytest.raises(expected) as caught:
        calls[operation]()
    assert type(caught.value) is expected
    assert "Google Secret Manager" in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (google_exceptions.NotFound("x"), BackendError),
        (google_exceptions.PermissionDenied("x"), AccessDenied),
        (google_exceptions.Forbidden("x"), AccessDenied),
        (google_exceptions.Unauthenticated("x"), AccessDenied),
        (google_exceptions.Unauthorized("x"), AccessDenied),
        (auth_exceptions.RefreshError("x"), AccessDenied),
        (auth_exceptions.InvalidOperation("x"), AccessDenied),
        (google_exceptions.TooManyRequests("x"), Throttled),
        (google_exceptions.ResourceExhausted("x"), Throttled),
        (google_exceptions.ServiceUnavailable("x"), BackendUnavailable),
        (google_exceptions.InternalServerError("x"), BackendUnavailable),
        (google_exceptions.DeadlineExceeded("x"), BackendUnavailable),
        (google_exceptions.RetryError("x", cause=None), BackendUnavailable),
        (requests.exceptions.ConnectionError("x"), BackendUnavailable),
        (requests.exceptions.ReadTimeout("x"), BackendUnavailable),
        (auth_exceptions.TransportError("x"), BackendUnavailable),
        (google_exceptions.InvalidArgument("x"), BackendInvalidRequest),
        (google_exceptions.BadRequest("x"), BackendInvalidRequest),
        (google_exceptions.FailedPrecondition("x"), BackendInvalidRequest),
        (google_exceptions.Aborted("x"), BackendError),
        (google_exceptions.MethodNotImplemented("x"), BackendError),
        (google_exceptions.Cancelled("x"), BackendError),
        (auth_exceptions.DefaultCredentialsError("x"), ConfigurationError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_translate_maps_each_sdk_exception(
    error: Exception, expected: type[KeyrefsError]
) -> None:
    translated = translate(error, "read", "projects/p/secrets/s")
    assert isinstance(translated, expected)
    assert "projects/p/secrets/s" in str(translated)


def test_failed_precondition_on_write_is_invalid_request(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    fake.fail_next(1, "FAILED_PRECONDITION")
    with pytest.raises(BackendInvalidRequest):
        make_backend(retry_policy=NO_RETRY).write(secret_write(managed(), "value"))


def test_missing_project_fails_check_connection(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    fake.fail_next(1, "NOT_FOUND")
    with pytest.raises(BackendError, match="check the storage's project"):
        make_backend(retry_policy=NO_RETRY).check_connection()


def test_check_connection_succeeds(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    make_backend().check_connection()
    (request,) = fake.requests
    assert request.query["pageSize"] == "1"


def test_transient_error_is_retried(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    backend = make_backend()
    coordinate = managed()
    backend.write(secret_write(coordinate, "after retry"))
    fake.fail_next(2, "UNAVAILABLE")
    assert found_text(backend.read(coordinate)) == "after retry"


def test_unavailable_fails_within_bounded_time(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    # The default policy of keyrefs, not FAST_RETRY; the SDK alone would retry 60 s.
    backend = make_backend(retry_policy=RetryPolicy())
    fake.fail_next(1000, "UNAVAILABLE")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.read(managed())
    elapsed = time.monotonic() - started
    assert elapsed < 5.0
    assert 2 <= len(fake.requests) <= RetryPolicy().max_attempts


def test_throttled_fails_within_bounded_time(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    backend = make_backend(retry_policy=RetryPolicy())
    fake.fail_next(1000, "RESOURCE_EXHAUSTED")
    started = time.monotonic()
    with pytest.raises(Throttled):
        backend.write(secret_write(managed(), "value"))
    assert time.monotonic() - started < 5.0


def test_connection_refused_raises_unavailable(project: str) -> None:
    config = GoogleConfig(
        project=project, endpoint=f"http://127.0.0.1:{free_port()}", anonymous=True
    )
    backend = GoogleBackend(config, retry_policy=NO_RETRY)
    with pytest.raises(BackendUnavailable, match="ConnectionError"):
        backend.read(managed())
    backend.close()


def test_request_timeout_raises_unavailable(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    backend = make_backend(retry_policy=NO_RETRY, timeout=0.2)
    fake.delay_seconds = 1.0
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="Timeout"):
        backend.read(managed())
    assert time.monotonic() - started < 1.0


def test_anonymous_request_to_token_guarded_fake_is_denied(
    make_backend: BackendMaker, fake: FakeSecretManager
) -> None:
    fake.required_token = "expected-token"
    with pytest.raises(AccessDenied, match="rejected anonymous access"):
        make_backend(retry_policy=NO_RETRY).read(managed())


# Credentials -------------------------------------------------------------------


@pytest.fixture
def service_account_key() -> tuple[dict[str, str], bytes]:
    """Return a generated service account key file's content and its public key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": "keyrefs-test",
        "private_key_id": "test-key-1",
        "private_key": private_pem.decode(),
        "client_email": "keyrefs@keyrefs-test.iam.gserviceaccount.com",
        "client_id": "1",
        # Unused with self-signed JWTs; points at loopback so nothing leaves it.
        "token_uri": "http://127.0.0.1:9/token",
    }
    return info, public_pem


def test_service_account_json_sends_signed_jwt(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    service_account_key: tuple[dict[str, str], bytes],
) -> None:
    info, public_pem = service_account_key
    backend = make_backend(anonymous=False, credentials_json=json.dumps(info))
    assert backend.read(managed()) == Absent()
    (request,) = fake.requests
    assert request.authorization is not None
    token = request.authorization.removeprefix("Bearer ")
    claims = jwt.decode(token, certs=public_pem)  # type: ignore[no-untyped-call]
    assert claims["iss"] == info["client_email"]


def test_wrong_token_is_permission_denied(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    service_account_key: tuple[dict[str, str], bytes],
) -> None:
    info, _ = service_account_key
    fake.required_token = "another-token"
    backend = make_backend(
        retry_policy=NO_RETRY, anonymous=False, credentials_json=json.dumps(info)
    )
    with pytest.raises(AccessDenied, match="Forbidden"):
        backend.write(secret_write(managed(), "value"))


def test_unauthenticated_with_credentials_is_access_denied(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    service_account_key: tuple[dict[str, str], bytes],
) -> None:
    info, _ = service_account_key
    fake.fail_next(5, "UNAUTHENTICATED")
    backend = make_backend(
        retry_policy=NO_RETRY, anonymous=False, credentials_json=json.dumps(info)
    )
    with pytest.raises(AccessDenied, match="Unauthorized"):
        backend.read(managed())


def test_service_account_file_is_loaded(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    service_account_key: tuple[dict[str, str], bytes],
    tmp_path: Any,
) -> None:
    info, _ = service_account_key
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    backend = make_backend(anonymous=False, credentials_file=str(key_file))
    backend.check_connection()
    (request,) = fake.requests
    assert request.authorization is not None
    assert request.authorization.startswith("Bearer ")


def test_invalid_credentials_json_hides_its_content(make_backend: BackendMaker) -> None:
    planted = "not-json-" + uuid.uuid4().hex
    with pytest.raises(ConfigurationError, match="cannot be loaded") as caught:
        make_backend(anonymous=False, credentials_json=planted)
    assert planted not in str(caught.value)


def test_missing_credentials_file_raises_configuration_error(
    make_backend: BackendMaker, tmp_path: Any
) -> None:
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        make_backend(anonymous=False, credentials_file=str(tmp_path / "absent.json"))


def test_two_credential_sources_raise_configuration_error(
    make_backend: BackendMaker, tmp_path: Any
) -> None:
    with pytest.raises(ConfigurationError, match="give at most one"):
        make_backend(credentials_file=str(tmp_path / "key.json"))


def test_location_without_endpoint_uses_regional_endpoint(project: str) -> None:
    # Building a client sends no request, so no Google host is contacted.
    config = GoogleConfig(project=project, location="europe-west1", anonymous=True)
    backend = GoogleBackend(config)
    client = backend._client("europe-west1")
    assert client.api_endpoint == "secretmanager.europe-west1.rep.googleapis.com"
    backend.close()


# Factory and conformance target ---------------------------------------------------


def test_registry_loads_google_factory() -> None:
    factory = load_factory("google_secret_manager")
    assert isinstance(factory, GoogleBackendFactory)
    assert factory.config_model is GoogleConfig


def test_factory_rejects_other_config() -> None:
    context = BackendContext(SecretStorageId(uuid.uuid4()))
    with pytest.raises(ConfigurationError, match="needs a GoogleConfig"):
        GoogleBackendFactory().create(_OtherConfig(), context)


class _OtherConfig(BaseModel):
    project: str = "p"


def test_backend_capabilities(make_backend: BackendMaker) -> None:
    capabilities = make_backend().capabilities
    assert capabilities.native_expiry is True
    assert capabilities.versions is True
    assert capabilities.batch_read is False
    assert capabilities.max_value_bytes == MAX_PAYLOAD_BYTES


def test_conformance_target_sees_backend_objects(
    gcp_conformance: ConformanceTarget,
) -> None:
    factory = load_factory(gcp_conformance.storage_type)
    config = factory.config_model.model_validate(gcp_conformance.config)
    backend = factory.create(config, BackendContext(SecretStorageId(uuid.uuid4())))
    coordinate = managed()
    backend.write(secret_write(coordinate, "conformance"))
    assert gcp_conformance.object_exists(coordinate.render()) is True
    backend.delete(coordinate)
    assert gcp_conformance.object_exists(coordinate.render()) is False
    backend.close()


# Secret values stay out of logs and errors ----------------------------------------


def test_no_canary_in_logs_or_errors(
    make_backend: BackendMaker,
    fake: FakeSecretManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    backend = make_backend()
    coordinate = managed()
    errors: list[BaseException] = []

    backend.write(secret_write(coordinate, canary))
    backend.write(secret_write(coordinate, canary))
    assert found_text(backend.read(coordinate)) == canary
    for status in ("UNAVAILABLE", "INVALID_ARGUMENT", "PERMISSION_DENIED"):
        fake.fail_next(5, status)
        with pytest.raises(KeyrefsError) as caught:
            backend.write(secret_write(coordinate, canary))
        errors.append(caught.value)
        fake.reset()
    with pytest.raises(LimitExceeded) as too_big:
        backend.write(secret_write(coordinate, canary * 2000))
    errors.append(too_big.value)
    fake.corrupt_accesses = 10
    with pytest.raises(BackendUnavailable) as corrupted:
        backend.read(coordinate)
    errors.append(corrupted.value)

    assert caplog.records, "expected DEBUG records from the backend"
    for record in caplog.records:
        assert canary not in record.getMessage()
    for error in errors:
        assert canary not in str(error)
        assert canary not in repr(error)
        assert error.__cause__ is None or canary not in str(error.__cause__)
    assert canary not in repr(backend)
