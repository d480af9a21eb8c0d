"""The Azure Key Vault backend: the real SDK against the HTTPS fake."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError, EnvironmentCredential
from azure.keyvault.secrets import SecretClient

from keyrefs.backends.azure import (
    MAX_NAME_LENGTH,
    MAX_VALUE_BYTES,
    NAME_RULE,
    ORGANIZATION_TAG,
    AzureBackend,
    AzureBackendFactory,
    azure_name,
    build_credential,
    parse_azure_name,
    translate_error,
)
from keyrefs.backends.base import (
    Absent,
    BackendContext,
    Found,
    SecretBackend,
    SecretWrite,
)
from keyrefs.backends.configs import AzureConfig
from keyrefs.backends.registry import load_factory
from keyrefs.backends.retry import NO_RETRY, RetryPolicy
from keyrefs.domain.coordinates import (
    ExternalCoordinate,
    ManagedCoordinate,
    ManagedScope,
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
from tests.fakes.azure_fake import DROP_CONNECTION, AzureKeyVaultFake
from tests.fixtures.azure import azure_storage_config

ORGANIZATION = OrganizationId(uuid.UUID("6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"))
STORAGE_ID = SecretStorageId(uuid.UUID("0b9a8c7d-6e5f-4a3b-9c2d-1e0f2a3b4c5d"))
LONGEST_PREFIX = "k" + "_a1" * 10 + "_"  # 32 characters, 11 underscores


@pytest.fixture
def fake(
    azure_fake: AzureKeyVaultFake, loopback_only: None
) -> Iterator[AzureKeyVaultFake]:
    azure_fake.reset()
    yield azure_fake
    azure_fake.reset()
    azure_fake.page_size = 25


def make_backend(
    fake: AzureKeyVaultFake, retry_policy: RetryPolicy = NO_RETRY, **overrides: Any
) -> AzureBackend:
    config = AzureConfig.model_validate(azure_storage_config(fake, **overrides))
    backend = AzureBackend(config, build_credential(config), retry_policy)
    return backend


@pytest.fixture
def backend(fake: AzureKeyVaultFake) -> Iterator[AzureBackend]:
    backend = make_backend(fake)
    yield backend
    backend.close()


def managed(
    version: int = 1,
    prefix: str = "keyrefs_",
    scope: ManagedScope = "organization",
) -> ManagedCoordinate:
    return ManagedCoordinate(scope, uuid.uuid4(), uuid.uuid4(), version, prefix)


def write(
    backend: SecretBackend,
    coordinate: ManagedCoordinate,
    text: str,
    expires_at: datetime | None = None,
) -> None:
    backend.write(SecretWrite(coordinate, SecretValue(text), ORGANIZATION, expires_at))


# Factory and configuration -----------------------------------------------


def test_registry_loads_azure_factory() -> None:
    factory = load_factory("azure_key_vault")

    assert isinstance(factory, AzureBackendFactory)
    assert factory.config_model is AzureConfig


def test_factory_builds_backend_from_plain_json(fake: AzureKeyVaultFake) -> None:
    factory = AzureBackendFactory()
    config = factory.config_model.model_validate(azure_storage_config(fake))
    backend = factory.create(config, BackendContext(STORAGE_ID))
    coordinate = managed()

    backend.check_connection()
    write(backend, coordinate, "from-json-config")

    assert backend.read(coordinate) == Found(SecretValue("from-json-config"))
    backend.close()


def test_factory_rejects_plain_http_vault_url(fake: AzureKeyVaultFake) -> None:
    config = AzureConfig.model_validate(
        azure_storage_config(fake, vault_url="http://127.0.0.1:1")
    )

    with pytest.raises(ConfigurationError, match="https://"):
        AzureBackendFactory().create(config, BackendContext(STORAGE_ID))


def test_factory_rejects_non_https_authority(fake: AzureKeyVaultFake) -> None:
    config = AzureConfig.model_validate(
        azure_storage_config(fake, authority_host="http://127.0.0.1:1")
    )

    with pytest.raises(ConfigurationError, match="credential settings"):
        AzureBackendFactory().create(config, BackendContext(STORAGE_ID))


def test_config_without_client_secret_uses_default_chain() -> None:
    config = AzureConfig(vault_url="https://127.0.0.1:1")

    credential = build_credential(config)

    assert type(credential).__name__ == "DefaultAzureCredential"


def test_capabilities_describe_key_vault(backend: AzureBackend) -> None:
    capabilities = backend.capabilities

    assert capabilities.native_expiry is True
    assert capabilities.versions is True
    assert capabilities.soft_delete is True
    assert capabilities.batch_read is False
    assert capabilities.max_value_bytes == MAX_VALUE_BYTES


def test_backend_repr_names_only_vault(fake: AzureKeyVaultFake) -> None:
    backend = make_backend(fake)

    assert repr(backend) == f"AzureBackend(vault_url={fake.url!r})"
    assert fake.client_secret not in repr(backend)
    backend.close()


# Round trips -------------------------------------------------------------


def test_write_then_read_round_trip(backend: AzureBackend) -> None:
    coordinate = managed()

    write(backend, coordinate, 'p@ss "wörd"\n{json}')

    assert backend.read(coordinate) == Found(SecretValue('p@ss "wörd"\n{json}'))


def test_write_again_replaces_value(backend: AzureBackend) -> None:
    coordinate = managed()

    write(backend, coordinate, "first")
    write(backend, coordinate, "second")

    assert backend.read(coordinate) == Found(SecretValue("second"))


def test_read_missing_managed_returns_absent(backend: AzureBackend) -> None:
    assert backend.read(managed()) == Absent()


def test_read_many_mixes_found_and_absent(backend: AzureBackend) -> None:
    stored, missing = managed(), managed()
    write(backend, stored, "value")

    results = backend.read_many([stored, missing])

    assert results[stored] == Found(SecretValue("value"))
    assert results[missing] == Absent()


def test_write_sends_tags_and_expiry(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    coordinate = managed()
    expires_at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)

    write(backend, coordinate, "expiring", expires_at)
    stored = fake.latest(azure_name(coordinate))

    assert stored.tags == {
        "owner": "keyrefs-tests",
        ORGANIZATION_TAG: str(ORGANIZATION),
    }
    assert stored.expires == int(expires_at.timestamp())


def test_write_without_expiry_sends_no_exp(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    coordinate = managed()

    write(backend, coordinate, "forever")

    assert fake.latest(azure_name(coordinate)).expires is None


def test_write_stores_under_mapped_name(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    coordinate = managed()

    write(backend, coordinate, "value")
    puts = [r for r in fake.vault_requests() if r.method == "PUT" and r.body]

    assert [r.path for r in puts] == [f"/secrets/{azure_name(coordinate)}"]
    assert puts[0].json()["value"] == "value"


# Name mapping ------------------------------------------------------------

TRICKY_PREFIXES = [
    "keyrefs_",
    "k",
    "a_b",
    "ab",
    "a_b_",
    "ab_",
    "a__b",
    "a_",
    "x_workspace_",
    "x_organization_",
    "xorganization",
    "v1_",
    LONGEST_PREFIX,
]
SCOPES: list[ManagedScope] = ["organization", "workspace"]
VERSIONS = [1, 2, 10, 11, 999_999_999]
IDS = [
    uuid.UUID("00000000-0000-0000-0000-000000000000"),
    uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"),
    uuid.UUID("12345678-9abc-4def-8123-456789abcdef"),
]


def tricky_coordinates() -> list[ManagedCoordinate]:
    return [
        ManagedCoordinate(scope, scope_id, secret_id, version, prefix)
        for prefix, scope, scope_id, secret_id, version in itertools.product(
            TRICKY_PREFIXES, SCOPES, IDS, IDS, VERSIONS
        )
    ]


def test_azure_names_match_key_vault_rule() -> None:
    for coordinate in tricky_coordinates():
        name = azure_name(coordinate)

        assert len(name) <= MAX_NAME_LENGTH, coordinate
        assert all(c.isascii() and (c.isalnum() or c == "-") for c in name), name
        assert name == name.lower(), name


def test_azure_names_are_injective() -> None:
    coordinates = tricky_coordinates()

    names = {azure_name(coordinate) for coordinate in coordinates}

    assert len(names) == len(coordinates)


def test_azure_name_round_trips_through_parse_managed() -> None:
    for coordinate in tricky_coordinates():
        parsed = parse_azure_name(azure_name(coordinate), coordinate.prefix)

        assert parsed == coordinate
        assert parse_managed(parsed.render(), coordinate.prefix) == coordinate


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a_b", "organization"), ("ab", "organization")),
        (("a_", "organization"), ("a", "organization")),
        (("x_workspace_", "organization"), ("x_", "workspace")),
        (("xorganization", "workspace"), ("x", "organization")),
    ],
)
def test_azure_name_separates_tricky_pair(
    first: tuple[str, ManagedScope], second: tuple[str, ManagedScope]
) -> None:
    scope_id, secret_id = IDS[2], IDS[1]
    one = ManagedCoordinate(first[1], scope_id, secret_id, 1, first[0])
    other = ManagedCoordinate(second[1], scope_id, secret_id, 1, second[0])

    assert azure_name(one) != azure_name(other)
    assert parse_azure_name(azure_name(one)) == one
    assert parse_azure_name(azure_name(other)) == other


def test_prefix_with_hyphen_is_not_a_managed_prefix() -> None:
    # "a_b" and "a-b" cannot collide: a managed prefix never contains "-".
    with pytest.raises(InvalidCoordinate):
        managed(prefix="a-b_")


def test_default_prefix_name_has_readable_form() -> None:
    coordinate = ManagedCoordinate("workspace", IDS[2], IDS[1], 3)

    assert azure_name(coordinate) == (
        "keyrefs-workspace-123456789abc4def8123456789abcdef"
        "-ffffffffffffffffffffffffffffffff-v3"
    )


def test_name_over_limit_raises_limit_exceeded() -> None:
    coordinate = managed(version=10**16, prefix=LONGEST_PREFIX)

    with pytest.raises(LimitExceeded, match=f"at most {MAX_NAME_LENGTH} characters"):
        azure_name(coordinate)


def test_largest_parseable_version_fits_longest_prefix() -> None:
    coordinate = managed(version=999_999_999, prefix=LONGEST_PREFIX)

    assert len(azure_name(coordinate)) <= MAX_NAME_LENGTH


@pytest.mark.parametrize(
    "name",
    [
        "keyrefs-organization-00",
        "KEYREFS-organization-" + "a" * 32 + "-" + "b" * 32 + "-v1",
        "keyrefs-organization-" + "a" * 32 + "-" + "b" * 32 + "-v01",
        "keyrefs-team-" + "a" * 32 + "-" + "b" * 32 + "-v1",
        "9keyrefs-organization-" + "a" * 32 + "-" + "b" * 32 + "-v1",
        "customer-database-password",
    ],
)
def test_parse_rejects_foreign_names(name: str) -> None:
    with pytest.raises(InvalidCoordinate):
        parse_azure_name(name)


def test_parse_rejects_other_prefix() -> None:
    name = azure_name(managed(prefix="other_"))

    with pytest.raises(InvalidCoordinate):
        parse_azure_name(name, "keyrefs_")


# External coordinates ----------------------------------------------------


def test_external_name_reads_latest_version(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    fake.put_secret("Customer-Db-Password", "old")
    fake.put_secret("Customer-Db-Password", "new")

    result = backend.read(ExternalCoordinate("Customer-Db-Password"))

    assert result == Found(SecretValue("new"))


def test_external_name_with_version_reads_that_version(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    old_version = fake.put_secret("customer-token", "old")
    fake.put_secret("customer-token", "new")

    result = backend.read(ExternalCoordinate(f"customer-token/{old_version}"))

    assert result == Found(SecretValue("old"))


def test_external_unknown_version_is_absent(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    fake.put_secret("customer-token", "value")

    result = backend.read(ExternalCoordinate(f"customer-token/{uuid.uuid4().hex}"))

    assert result == Absent()


def test_external_missing_name_is_absent(backend: AzureBackend) -> None:
    assert backend.read(ExternalCoordinate("no-such-secret")) == Absent()


@pytest.mark.parametrize(
    "name",
    [
        "a_b",
        "a.b",
        "x" * 128,
        "name/not-a-version",
        "name/" + "a" * 31,
        "name/",
        "/" + "a" * 32,
        "a/" + "b" * 32 + "/c",
        "https://vault.example/secrets/a",
    ],
)
def test_external_name_outside_rule_is_invalid(
    backend: AzureBackend, fake: AzureKeyVaultFake, name: str
) -> None:
    with pytest.raises(InvalidCoordinate, match=re.escape(NAME_RULE)):
        backend.read(ExternalCoordinate(name))

    assert list(fake.vault_requests()) == []


# Limits ------------------------------------------------------------------


def test_value_at_limit_is_stored(backend: AzureBackend) -> None:
    coordinate = managed()

    write(backend, coordinate, "x" * MAX_VALUE_BYTES)

    assert backend.read(coordinate) == Found(SecretValue("x" * MAX_VALUE_BYTES))


@pytest.mark.parametrize(
    "text",
    ["x" * (MAX_VALUE_BYTES + 1), "é" * (MAX_VALUE_BYTES // 2 + 1)],
    ids=["ascii", "two-byte-characters"],
)
def test_value_over_limit_raises_before_request(
    backend: AzureBackend, fake: AzureKeyVaultFake, text: str
) -> None:
    with pytest.raises(LimitExceeded, match=f"at most {MAX_VALUE_BYTES} bytes"):
        write(backend, managed(), text)

    assert list(fake.vault_requests()) == []


@pytest.fixture
def sdk_client(fake: AzureKeyVaultFake) -> Iterator[SecretClient]:
    """Return a plain SDK client on the fake, with no keyrefs checks in between."""
    config = AzureConfig.model_validate(azure_storage_config(fake))
    credential = build_credential(config)
    client = SecretClient(
        fake.url,
        credential,
        verify_challenge_resource=False,
        connection_verify=str(fake.ca_path),
        retry_total=0,
    )
    yield client
    client.close()


def test_fake_rejects_value_over_limit(sdk_client: SecretClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        sdk_client.set_secret("big", "x" * (MAX_VALUE_BYTES + 1))

    assert caught.value.status_code == 400


def test_fake_rejects_name_outside_rule(sdk_client: SecretClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        sdk_client.set_secret("a_b", "value")

    assert caught.value.status_code == 400


def test_fake_compares_names_without_case(sdk_client: SecretClient) -> None:
    sdk_client.set_secret("Mixed-Case", "value")

    assert sdk_client.get_secret("mixed-case").value == "value"


# Delete and purge --------------------------------------------------------


def test_delete_purges_and_name_can_be_set_again(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    coordinate = managed()
    name = azure_name(coordinate)
    write(backend, coordinate, "first")

    backend.delete(coordinate)

    assert backend.read(coordinate) == Absent()
    assert fake.secret_exists(name) is False
    assert fake.is_soft_deleted(name) is False
    write(backend, coordinate, "again")
    assert backend.read(coordinate) == Found(SecretValue("again"))


def test_delete_sends_delete_then_purge(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    coordinate = managed()
    name = azure_name(coordinate)
    write(backend, coordinate, "value")
    fake.requests.clear()

    backend.delete(coordinate)
    calls = [(r.method, r.path) for r in fake.vault_requests()]

    assert calls == [
        ("DELETE", f"/secrets/{name}"),
        ("GET", f"/deletedsecrets/{name}"),
        ("DELETE", f"/deletedsecrets/{name}"),
    ]


def test_delete_absent_coordinate_is_no_error(backend: AzureBackend) -> None:
    backend.delete(managed())


def test_delete_without_purge_blocks_recreation(fake: AzureKeyVaultFake) -> None:
    keeping = make_backend(fake, purge=False)
    coordinate = managed()
    write(keeping, coordinate, "first")

    keeping.delete(coordinate)

    assert fake.is_soft_deleted(azure_name(coordinate)) is True
    with pytest.raises(BackendError, match="soft-deleted") as caught:
        write(keeping, coordinate, "again")
    assert type(caught.value) is BackendError
    assert isinstance(caught.value.__cause__, ResourceExistsError)
    keeping.close()


def test_purging_backend_clears_earlier_soft_delete(fake: AzureKeyVaultFake) -> None:
    keeping = make_backend(fake, purge=False)
    purging = make_backend(fake)
    coordinate = managed()
    write(keeping, coordinate, "first")
    keeping.delete(coordinate)

    purging.delete(coordinate)
    write(purging, coordinate, "again")

    assert purging.read(coordinate) == Found(SecretValue("again"))
    keeping.close()
    purging.close()


def test_rejected_purge_names_purge_protection(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    coordinate = managed()
    write(backend, coordinate, "value")
    fake.fail_next(1, 403, "Forbidden", method="DELETE", path_prefix="/deletedsecrets")

    with pytest.raises(AccessDenied, match="purge protection"):
        backend.delete(coordinate)

    assert fake.is_soft_deleted(azure_name(coordinate)) is True


# Listing -----------------------------------------------------------------


def test_list_managed_follows_pages_and_parses_names(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    fake.page_size = 2
    ours = {managed(version=n) for n in range(1, 6)}
    for coordinate in ours:
        write(backend, coordinate, "value")
    write(backend, managed(prefix="other_"), "value")
    fake.put_secret("customer-database-password", "value")
    fake.requests.clear()

    listed = list(backend.list_managed("keyrefs_"))
    pages = [r for r in fake.vault_requests() if r.path == "/secrets"]

    assert {item.coordinate for item in listed} == ours
    assert len(listed) == len(ours)
    assert len(pages) == 4
    assert all(item.created_at is not None for item in listed)


def test_list_managed_reports_created_on(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    coordinate = managed()
    write(backend, coordinate, "value")

    (listed,) = list(backend.list_managed("keyrefs_"))

    assert listed.coordinate == coordinate
    assert listed.created_at is not None
    assert before <= listed.created_at <= before + timedelta(seconds=5)


def test_list_managed_skips_deleted(backend: AzureBackend) -> None:
    kept, deleted = managed(), managed()
    write(backend, kept, "value")
    write(backend, deleted, "value")
    backend.delete(deleted)

    listed = [item.coordinate for item in backend.list_managed("keyrefs_")]

    assert listed == [kept]


def test_list_managed_of_empty_vault_is_empty(backend: AzureBackend) -> None:
    assert list(backend.list_managed("keyrefs_")) == []


# Error translation -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AccessDenied),
        (403, AccessDenied),
        (429, Throttled),
        (400, BackendInvalidRequest),
        (409, BackendError),
        (500, BackendUnavailable),
        (503, BackendUnavailable),
        (418, BackendError),
    ],
)
def test_status_translates_to_keyrefs_error(
    backend: AzureBackend,
    fake: AzureKeyVaultFake,
    status: int,
    expected: type[KeyrefsError],
) -> None:
    coordinate = managed()
    backend.read(coordinate)  # takes the auth challenge, so the next call has a token
    operations: dict[str, Callable[[], object]] = {
        "read": lambda: backend.read(coordinate),
        "write": lambda: write(backend, coordinate, "value"),
        "delete": lambda: backend.delete(coordinate),
        "list": lambda: list(backend.list_managed("keyrefs_")),
    }

    for operation, call in operations.items():
        fake.fail_next(1, status)
        with pytest.raises(expected) as caught:
            call()

        assert type(caught.value) is expected, operation
        assert str(coordinate) in str(caught.value) or operation == "list"
        assert isinstance(caught.value.__cause__, AzureError), operation


def test_wrong_client_secret_is_access_denied(fake: AzureKeyVaultFake) -> None:
    wrong = make_backend(fake, client_secret="not-the-secret")

    with pytest.raises(AccessDenied, match="rejected the credential"):
        wrong.check_connection()
    wrong.close()


def test_unavailable_credential_is_access_denied(
    fake: AzureKeyVaultFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(variable, raising=False)
    config = AzureConfig.model_validate(azure_storage_config(fake))
    fake.revoke_tokens()
    backend = AzureBackend(config, EnvironmentCredential(), NO_RETRY)

    with pytest.raises(AccessDenied, match="no Azure credential is available") as err:
        backend.read(managed())

    assert isinstance(err.value.__cause__, CredentialUnavailableError)
    backend.close()


def test_closed_port_is_backend_unavailable(fake: AzureKeyVaultFake) -> None:
    nobody = make_backend(fake, vault_url="https://127.0.0.1:1")

    with pytest.raises(BackendUnavailable, match="could not be reached") as caught:
        nobody.read(managed())

    assert isinstance(caught.value.__cause__, ServiceRequestError)
    nobody.close()


def test_untrusted_certificate_is_backend_unavailable(
    fake: AzureKeyVaultFake,
) -> None:
    untrusting = make_backend(fake, connection_verify=True)

    with pytest.raises(BackendUnavailable, match="certificate verify failed"):
        untrusting.read(managed())

    untrusting.close()


def test_unreachable_token_endpoint_is_backend_unavailable(
    fake: AzureKeyVaultFake,
) -> None:
    fake.revoke_tokens()
    no_authority = make_backend(fake, authority_host="https://127.0.0.1:1")

    with pytest.raises(BackendUnavailable, match="token endpoint") as caught:
        no_authority.read(managed())

    assert isinstance(caught.value.__cause__, AzureError)
    no_authority.close()


def test_dropped_connection_is_backend_unavailable(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    backend.read(managed())
    fake.fail_next(1, DROP_CONNECTION)

    with pytest.raises(BackendUnavailable) as caught:
        backend.read(managed())

    assert isinstance(
        caught.value.__cause__, ServiceRequestError | ServiceResponseError
    )


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (CredentialUnavailableError("no credential"), AccessDenied),
        (ServiceRequestError("connection refused"), BackendUnavailable),
        (ServiceResponseError("connection reset"), BackendUnavailable),
        (ResourceExistsError("exists"), BackendError),
        (HttpResponseError("no status"), BackendError),
        (AzureError("other"), BackendError),
    ],
)
def test_translate_error_covers_exception_classes(
    exception: AzureError, expected: type[KeyrefsError]
) -> None:
    error = translate_error(exception, "read", "keyrefs_x", "https://127.0.0.1:1")

    assert type(error) is expected
    assert "read of keyrefs_x in https://127.0.0.1:1" in str(error)


def test_unavailable_vault_fails_within_bounded_time(
    fake: AzureKeyVaultFake,
) -> None:
    retrying = make_backend(fake, retry_policy=RetryPolicy())
    retrying.read(managed())
    fake.fail_next(1000, 503, "ServiceUnavailable", retry_after=30)
    fake.requests.clear()
    started = time.monotonic()

    with pytest.raises(BackendUnavailable):
        retrying.read(managed())
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert len(list(fake.vault_requests())) == RetryPolicy().max_attempts
    retrying.close()


def test_transient_failure_is_retried_to_success(fake: AzureKeyVaultFake) -> None:
    retrying = make_backend(fake, retry_policy=RetryPolicy())
    coordinate = managed()
    write(retrying, coordinate, "value")
    fake.fail_next(2, 503)

    assert retrying.read(coordinate) == Found(SecretValue("value"))
    retrying.close()


def test_check_connection_reads_one_page(
    backend: AzureBackend, fake: AzureKeyVaultFake
) -> None:
    backend.check_connection()
    lists = [r for r in fake.vault_requests() if r.path == "/secrets"]

    assert lists[-1].query["maxresults"] == ["1"]


# Secrecy -----------------------------------------------------------------


def test_canary_value_never_logged_or_raised(
    fake: AzureKeyVaultFake, caplog: pytest.LogCaptureFixture
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    retrying = make_backend(fake, retry_policy=RetryPolicy(max_seconds=2))
    coordinate = managed()
    errors: list[BaseException] = []

    write(retrying, coordinate, canary)
    assert retrying.read(coordinate) == Found(SecretValue(canary))
    for status in (400, 403, 409, 429, 503):
        fake.fail_next(10, status)
        try:
            write(retrying, coordinate, canary)
        except KeyrefsError as exc:
            errors.append(exc)
        fake.reset()
    with pytest.raises(LimitExceeded) as too_big:
        write(retrying, coordinate, canary * 1000)
    errors.append(too_big.value)

    assert len(errors) == 6
    assert canary not in caplog.text
    assert fake.client_secret not in caplog.text
    for error in errors:
        assert canary not in str(error)
        assert canary not in repr(error)
        assert canary not in str(error.__cause__)
    assert canary not in repr(retrying)
    retrying.close()
