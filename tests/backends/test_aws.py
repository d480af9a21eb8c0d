"""The AWS Secrets Manager backend against moto in server mode, over HTTP.

Error paths that moto cannot produce (denied access, throttling, service
failures, timeouts) run against `tests.fakes.aws_fake`, a scripted server on
127.0.0.1 that responds in the AWS JSON and query protocols.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoRegionError,
    ReadTimeoutError,
)
from moto.sts.models import sts_backends

from keyrefs.backends import aws
from keyrefs.backends.aws import (
    MAX_BATCH_IDS,
    MAX_VALUE_BYTES,
    ORGANIZATION_TAG,
    AwsBackendFactory,
    AwsSecretsManagerBackend,
    build_client,
    translate_error,
)
from keyrefs.backends.base import (
    Absent,
    BackendContext,
    Found,
    ReadResult,
    SecretWrite,
)
from keyrefs.backends.configs import AwsConfig
from keyrefs.backends.registry import load_factory
from keyrefs.backends.retry import RetryPolicy
from keyrefs.domain.coordinates import (
    Coordinate,
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
from tests.fakes.aws_fake import (
    AwsFake,
    FakeResponse,
    ReceivedRequest,
    closed_port_url,
    json_error,
    json_response,
    query_error,
    unresponsive_listener,
)
from tests.fixtures.aws import REGION, moto_client, moto_config

pytestmark = pytest.mark.usefixtures("aws_environment")

ORGANIZATION = OrganizationId(uuid.uuid4())
FAST_RETRY = RetryPolicy(
    max_attempts=3, max_seconds=5, initial_wait=0.001, max_wait=0.002
)
ROLE_ACCOUNT = "111111111111"


class CallRecorder:
    """Record the operations, parameters and signatures of a client's requests."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: list[str] = []
        self.security_tokens: list[str | None] = []
        client.meta.events.register(
            "provide-client-params.secrets-manager.*", self._record_call
        )
        client.meta.events.register("before-send.secrets-manager.*", self._record_send)

    def _record_call(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def _record_send(self, request: Any, **kwargs: Any) -> None:
        headers = request.headers
        self.authorizations.append(_text(headers.get("Authorization")))
        token = headers.get("X-Amz-Security-Token")
        self.security_tokens.append(None if token is None else _text(token))

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


BackendMaker = Callable[..., tuple[AwsSecretsManagerBackend, CallRecorder]]


@pytest.fixture
def make_backend() -> Iterator[BackendMaker]:
    """Build backends from config dicts, each with a recorder of its calls."""
    built: list[AwsSecretsManagerBackend] = []

    def make(
        config: dict[str, Any],
        connect_timeout: float = 2.0,
        read_timeout: float = 2.0,
        **options: Any,
    ) -> tuple[AwsSecretsManagerBackend, CallRecorder]:
        model = AwsConfig.model_validate(config)
        client = build_client(
            model,
            role_session_name="keyrefs-test",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        recorder = CallRecorder(client)
        backend = AwsSecretsManagerBackend(client, model, **options)
        built.append(backend)
        return backend, recorder

    yield make
    for backend in built:
        backend.close()


@pytest.fixture
def backend(
    make_backend: BackendMaker, moto_server: str
) -> tuple[AwsSecretsManagerBackend, CallRecorder]:
    return make_backend(moto_config(moto_server))


@pytest.fixture
def secrets(moto_server: str) -> Any:
    return moto_client(moto_server)


@pytest.fixture
def fake() -> Iterator[AwsFake]:
    server = AwsFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_backend(
    make_backend: BackendMaker, fake: AwsFake
) -> tuple[AwsSecretsManagerBackend, AwsFake]:
    backend, _ = make_backend(moto_config(fake.url), retry=FAST_RETRY)
    return backend, fake


def new_coordinate(prefix: str = "keyrefs_") -> ManagedCoordinate:
    return ManagedCoordinate(
        scope="organization",
        scope_id=ORGANIZATION,
        secret_id=uuid.uuid4(),
        prefix=prefix,
    )


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


def write(
    backend: AwsSecretsManagerBackend, coordinate: ManagedCoordinate, text: str
) -> None:
    backend.write(SecretWrite(coordinate, SecretValue(text), ORGANIZATION))


def found_text(result: ReadResult) -> str:
    assert isinstance(result, Found), result
    return result.value.reveal()


# Factory and names ---------------------------------------------------------


def test_registry_loads_aws_factory() -> None:
    factory = load_factory("aws_secrets_manager")

    assert isinstance(factory, AwsBackendFactory)
    assert factory.config_model is AwsConfig


def test_factory_backend_writes_and_reads(moto_server: str) -> None:
    factory = AwsBackendFactory()
    config = AwsConfig.model_validate(moto_config(moto_server))
    context = BackendContext(storage_id=SecretStorageId(uuid.uuid4()))
    backend = factory.create(config, context)
    coordinate = new_coordinate()

    backend.write(SecretWrite(coordinate, SecretValue("factory-value"), ORGANIZATION))

    assert found_text(backend.read(coordinate)) == "factory-value"
    assert backend.capabilities.batch_read
    assert backend.capabilities.versions
    assert backend.capabilities.soft_delete
    assert backend.capabilities.max_value_bytes == 65_536
    backend.check_connection()
    backend.close()


def test_managed_name_is_rendered_coordinate(backend: Any, secrets: Any) -> None:
    aws_backend, _ = backend
    coordinate = new_coordinate(new_prefix())

    write(aws_backend, coordinate, "value")

    description = secrets.describe_secret(SecretId=coordinate.render())
    assert description["Name"] == coordinate.render()
    assert parse_managed(description["Name"], coordinate.prefix) == coordinate


def test_conformance_target_sees_written_secret(
    aws_conformance: ConformanceTarget, make_backend: BackendMaker
) -> None:
    aws_backend, _ = make_backend(aws_conformance.config)
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "value")
    exists_after_write = aws_conformance.object_exists(coordinate.render())
    aws_backend.delete(coordinate)

    assert aws_conformance.storage_type == "aws_secrets_manager"
    assert exists_after_write
    assert not aws_conformance.object_exists(coordinate.render())


# Write, read, delete ---------------------------------------------------------


def test_write_then_read_returns_value(backend: Any) -> None:
    aws_backend, recorder = backend
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "first-value")

    assert found_text(aws_backend.read(coordinate)) == "first-value"
    assert recorder.operations() == ["CreateSecret", "GetSecretValue"]


def test_write_existing_name_puts_new_version(backend: Any, secrets: Any) -> None:
    aws_backend, recorder = backend
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "first-value")
    write(aws_backend, coordinate, "second-value")

    assert found_text(aws_backend.read(coordinate)) == "second-value"
    assert recorder.operations()[:3] == [
        "CreateSecret",
        "CreateSecret",
        "PutSecretValue",
    ]
    versions = secrets.list_secret_version_ids(SecretId=coordinate.render())
    assert len(versions["Versions"]) == 2


def test_empty_value_round_trips(backend: Any, secrets: Any) -> None:
    aws_backend, _ = backend
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "")
    first_read = aws_backend.read(coordinate)
    batch_read = aws_backend.read_many([coordinate])
    write(aws_backend, coordinate, "now set")
    write(aws_backend, coordinate, "")

    assert found_text(first_read) == ""
    assert found_text(batch_read[coordinate]) == ""
    assert found_text(aws_backend.read(coordinate)) == ""
    stored = secrets.get_secret_value(SecretId=coordinate.render())
    assert stored["SecretBinary"] == b"\x00"


def test_external_zero_byte_binary_is_not_empty(backend: Any, secrets: Any) -> None:
    aws_backend, _ = backend
    name = f"binary/{uuid.uuid4().hex}"
    secrets.create_secret(Name=name, SecretBinary=b"\x00")

    assert found_text(aws_backend.read(ExternalCoordinate(name))) == "\x00"


def test_read_missing_secret_is_absent(backend: Any) -> None:
    aws_backend, _ = backend

    assert aws_backend.read(new_coordinate()) == Absent()


def test_delete_removes_without_recovery(backend: Any, secrets: Any) -> None:
    aws_backend, recorder = backend
    coordinate = new_coordinate()
    write(aws_backend, coordinate, "value")

    aws_backend.delete(coordinate)

    assert aws_backend.read(coordinate) == Absent()
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.describe_secret(SecretId=coordinate.render())
    delete_calls = [params for name, params in recorder.calls if name == "DeleteSecret"]
    assert delete_calls[0]["ForceDeleteWithoutRecovery"] is True
    # No recovery window keeps the name, so it can be created again at once.
    write(aws_backend, coordinate, "again")
    assert found_text(aws_backend.read(coordinate)) == "again"


def test_delete_absent_secret_is_no_error(backend: Any) -> None:
    aws_backend, _ = backend

    aws_backend.delete(new_coordinate())


def test_delete_not_found_response_is_no_error(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    fake.responder = lambda request: json_error("ResourceNotFoundException")

    aws_backend.delete(new_coordinate())

    assert fake.operations() == ["DeleteSecret"]


# External coordinates ---------------------------------------------------------


def test_external_name_and_arn_read(backend: Any, secrets: Any) -> None:
    aws_backend, _ = backend
    name = f"team/{uuid.uuid4().hex}/db-password"
    arn = secrets.create_secret(Name=name, SecretString="external-value")["ARN"]

    by_name = aws_backend.read(ExternalCoordinate(name))
    by_arn = aws_backend.read(ExternalCoordinate(arn))
    by_partial_arn = aws_backend.read(ExternalCoordinate(arn[:-7]))

    assert found_text(by_name) == "external-value"
    assert found_text(by_arn) == "external-value"
    assert found_text(by_partial_arn) == "external-value"


def test_read_many_matches_arns_to_values(backend: Any, secrets: Any) -> None:
    aws_backend, _ = backend
    name = f"team/{uuid.uuid4().hex}"
    arn = secrets.create_secret(Name=name, SecretString="arn-value")["ARN"]
    other = f"team/{uuid.uuid4().hex}"
    secrets.create_secret(Name=other, SecretString="name-value")
    coordinates: list[Coordinate] = [
        ExternalCoordinate(arn),
        ExternalCoordinate(arn[:-7]),
        ExternalCoordinate(other),
    ]

    results = aws_backend.read_many(coordinates)

    assert found_text(results[coordinates[0]]) == "arn-value"
    assert found_text(results[coordinates[1]]) == "arn-value"
    assert found_text(results[coordinates[2]]) == "name-value"


def test_external_arn_of_other_region_rejected(backend: Any) -> None:
    aws_backend, recorder = backend
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"

    with pytest.raises(InvalidCoordinate, match="eu-west-1"):
        aws_backend.read(ExternalCoordinate(arn))
    assert recorder.calls == []


def test_binary_secret_read_as_text(backend: Any, secrets: Any) -> None:
    aws_backend, _ = backend
    name = f"binary/{uuid.uuid4().hex}"
    secrets.create_secret(Name=name, SecretBinary=b"binary-text")

    assert found_text(aws_backend.read(ExternalCoordinate(name))) == "binary-text"


# Batch reads ---------------------------------------------------------------


def test_read_many_of_50_makes_3_batch_calls(backend: Any) -> None:
    aws_backend, recorder = backend
    coordinates = [new_coordinate() for _ in range(50)]
    for index, coordinate in enumerate(coordinates):
        write(aws_backend, coordinate, f"value-{index}")
    recorder.calls.clear()

    results = aws_backend.read_many(coordinates)

    assert recorder.operations() == ["BatchGetSecretValue"] * 3
    sizes = [len(params["SecretIdList"]) for _, params in recorder.calls]
    assert sizes == [MAX_BATCH_IDS, MAX_BATCH_IDS, 10]
    for index, coordinate in enumerate(coordinates):
        assert found_text(results[coordinate]) == f"value-{index}"


def test_read_many_exactly_20_is_one_call(backend: Any) -> None:
    aws_backend, recorder = backend
    coordinates = [new_coordinate() for _ in range(20)]

    results = aws_backend.read_many(coordinates)

    assert recorder.operations() == ["BatchGetSecretValue"]
    assert all(result == Absent() for result in results.values())


def test_read_many_mixes_found_and_absent(backend: Any) -> None:
    aws_backend, _ = backend
    present = new_coordinate()
    missing = new_coordinate()
    write(aws_backend, present, "present-value")

    results = aws_backend.read_many([present, missing, present])

    assert found_text(results[present]) == "present-value"
    assert results[missing] == Absent()
    assert len(results) == 2


def test_read_many_sends_duplicate_once(backend: Any) -> None:
    aws_backend, recorder = backend
    coordinate = new_coordinate()

    aws_backend.read_many([coordinate, coordinate])

    assert recorder.calls[0][1]["SecretIdList"] == [coordinate.render()]


def test_read_many_empty_makes_no_call(backend: Any) -> None:
    aws_backend, recorder = backend

    assert aws_backend.read_many([]) == {}
    assert recorder.calls == []


def test_read_many_per_id_access_denied_raises(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    denied = new_coordinate()
    missing = new_coordinate()

    def respond(request: ReceivedRequest) -> FakeResponse:
        return json_response(
            {
                "SecretValues": [],
                "Errors": [
                    {
                        "SecretId": missing.render(),
                        "ErrorCode": "ResourceNotFoundException",
                    },
                    {
                        "SecretId": denied.render(),
                        "ErrorCode": "AccessDeniedException",
                        "Message": "not authorized",
                    },
                ],
            }
        )

    fake.responder = respond

    with pytest.raises(AccessDenied, match=denied.render()):
        aws_backend.read_many([missing, denied])


def test_read_many_per_id_throttling_retried(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    coordinate = new_coordinate()
    error = {"SecretId": coordinate.render(), "ErrorCode": "ThrottlingException"}
    fake.responder = lambda request: json_response(
        {"SecretValues": [], "Errors": [error]}
    )

    with pytest.raises(Throttled):
        aws_backend.read_many([coordinate])
    assert fake.operations() == ["BatchGetSecretValue"] * FAST_RETRY.max_attempts


def test_read_many_per_id_not_found_is_absent(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    coordinate = new_coordinate()
    error = {"SecretId": coordinate.render(), "ErrorCode": "ResourceNotFoundException"}
    fake.responder = lambda request: json_response(
        {"SecretValues": [], "Errors": [error]}
    )

    assert aws_backend.read_many([coordinate]) == {coordinate: Absent()}


def test_read_many_follows_next_token(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    first = new_coordinate()
    second = new_coordinate()

    def respond(request: ReceivedRequest) -> FakeResponse:
        coordinate = second if "NextToken" in request.parameters else first
        entry = {
            "Name": coordinate.render(),
            "ARN": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:x-AbCdEf",
            "SecretString": f"value of {coordinate.secret_id}",
        }
        payload: dict[str, Any] = {"SecretValues": [entry], "Errors": []}
        if "NextToken" not in request.parameters:
            payload["NextToken"] = "page-2"
        return json_response(payload)

    fake.responder = respond

    results = aws_backend.read_many([first, second])

    assert found_text(results[second]) == f"value of {second.secret_id}"
    assert found_text(results[first]) == f"value of {first.secret_id}"
    assert len(fake.requests) == 2


def test_read_many_unanswered_id_raises(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    coordinate = new_coordinate()
    fake.responder = lambda request: json_response({"SecretValues": [], "Errors": []})

    with pytest.raises(BackendError, match="neither a value nor an error"):
        aws_backend.read_many([coordinate])


# Listing ------------------------------------------------------------------


def test_list_managed_pages_through_results(
    make_backend: BackendMaker, moto_server: str, secrets: Any
) -> None:
    aws_backend, recorder = make_backend(moto_config(moto_server), list_page_size=2)
    prefix = new_prefix()
    written = {new_coordinate(prefix) for _ in range(5)}
    for coordinate in written:
        write(aws_backend, coordinate, "value")
    write(aws_backend, new_coordinate(new_prefix()), "other prefix")
    secrets.create_secret(Name=f"{prefix}not-a-coordinate", SecretString="x")
    recorder.calls.clear()

    listed = list(aws_backend.list_managed(prefix))

    assert {item.coordinate for item in listed} == written
    assert len(listed) == 5
    assert all(item.created_at is not None for item in listed)
    list_calls = [params for name, params in recorder.calls if name == "ListSecrets"]
    assert len(list_calls) >= 3
    assert list_calls[0]["Filters"] == [{"Key": "name", "Values": [prefix]}]
    assert all(params["MaxResults"] == 2 for params in list_calls)


def test_list_managed_skips_deleted_secrets(backend: Any) -> None:
    aws_backend, _ = backend
    prefix = new_prefix()
    kept = new_coordinate(prefix)
    deleted = new_coordinate(prefix)
    write(aws_backend, kept, "value")
    write(aws_backend, deleted, "value")

    aws_backend.delete(deleted)

    assert [item.coordinate for item in aws_backend.list_managed(prefix)] == [kept]


def test_list_managed_rejects_illegal_prefix(backend: Any) -> None:
    aws_backend, _ = backend

    with pytest.raises(InvalidCoordinate):
        list(aws_backend.list_managed("!keyrefs_"))


# KMS, tags and credentials ---------------------------------------------------


def test_kms_key_applied_on_create(
    make_backend: BackendMaker, moto_server: str, secrets: Any
) -> None:
    key_id = moto_client(moto_server, "kms").create_key()["KeyMetadata"]["KeyId"]
    aws_backend, recorder = make_backend(moto_config(moto_server, kms_key_id=key_id))
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "encrypted-value")

    assert recorder.calls[0][1]["KmsKeyId"] == key_id
    description = secrets.describe_secret(SecretId=coordinate.render())
    assert description["KmsKeyId"] == key_id
    assert found_text(aws_backend.read(coordinate)) == "encrypted-value"


def test_tags_applied_on_create(
    make_backend: BackendMaker, moto_server: str, secrets: Any
) -> None:
    tags = {"team": "data", "environment": "test"}
    aws_backend, _ = make_backend(moto_config(moto_server, tags=tags))
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "value")

    description = secrets.describe_secret(SecretId=coordinate.render())
    stored = {tag["Key"]: tag["Value"] for tag in description["Tags"]}
    assert stored == {**tags, ORGANIZATION_TAG: str(ORGANIZATION)}


@pytest.mark.parametrize(
    "tags",
    [
        {ORGANIZATION_TAG: "mine"},
        {"aws:reserved": "x"},
        {"k" * 129: "x"},
        {"key": "v" * 257},
        {"key": "aws:value"},
        {f"key-{index}": "x" for index in range(50)},
    ],
    ids=[
        "organization-tag",
        "aws-prefix",
        "long-key",
        "long-value",
        "aws-value",
        "too-many",
    ],
)
def test_invalid_tags_rejected(moto_server: str, tags: dict[str, str]) -> None:
    config = AwsConfig.model_validate(moto_config(moto_server, tags=tags))

    with pytest.raises(ConfigurationError):
        AwsBackendFactory().create(
            config, BackendContext(storage_id=SecretStorageId(uuid.uuid4()))
        )


def test_static_keys_sign_requests(
    make_backend: BackendMaker, moto_server: str
) -> None:
    config = moto_config(moto_server, access_key_id="AKIDSTATICKEY")
    aws_backend, recorder = make_backend(config)

    aws_backend.read(new_coordinate())

    assert "Credential=AKIDSTATICKEY/" in recorder.authorizations[0]


def test_default_chain_uses_environment_keys(
    make_backend: BackendMaker, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    aws_backend, recorder = make_backend(
        {"region": REGION, "endpoint_url": moto_server}
    )

    aws_backend.read(new_coordinate())

    assert "Credential=AKIDFROMCHAIN/" in recorder.authorizations[0]


def test_no_credentials_raises_configuration_error(
    make_backend: BackendMaker, moto_server: str
) -> None:
    aws_backend, recorder = make_backend(
        {"region": REGION, "endpoint_url": moto_server}
    )

    with pytest.raises(ConfigurationError, match="no complete AWS credentials"):
        aws_backend.read(new_coordinate())
    assert recorder.authorizations == []


def test_session_token_without_keys_rejected(moto_server: str) -> None:
    config = AwsConfig.model_validate(
        {"region": REGION, "endpoint_url": moto_server, "session_token": "token"}
    )

    with pytest.raises(ConfigurationError, match="session_token"):
        build_client(config)


def test_invalid_region_raises_configuration_error(moto_server: str) -> None:
    config = AwsConfig.model_validate(moto_config(moto_server, region="not a region!"))

    with pytest.raises(ConfigurationError, match="region"):
        build_client(config)


def test_no_region_error_is_configuration_error() -> None:
    # The config model requires a region, so botocore's NoRegionError cannot
    # arise through it: the translation is checked directly.
    error = translate_error(NoRegionError(), "read of x")

    assert isinstance(error, ConfigurationError)
    assert "set region" in str(error)


def _assumed_roles(role_arn: str) -> list[Any]:
    roles = sts_backends[ROLE_ACCOUNT]["aws"].assumed_roles
    return [role for role in roles if role.role_arn == role_arn]


def new_role_arn() -> str:
    return f"arn:aws:iam::{ROLE_ACCOUNT}:role/keyrefs-{uuid.uuid4().hex[:12]}"


def test_assumed_role_with_external_id(
    make_backend: BackendMaker, moto_server: str, secrets: Any
) -> None:
    role_arn = new_role_arn()
    config = moto_config(moto_server, role_arn=role_arn, external_id="external-42")
    aws_backend, recorder = make_backend(config)
    coordinate = new_coordinate()

    write(aws_backend, coordinate, "role-value")

    roles = _assumed_roles(role_arn)
    assert [role.external_id for role in roles] == ["external-42"]
    assert roles[0].session_name == "keyrefs-test"
    assert f"Credential={roles[0].access_key_id}/" in recorder.authorizations[0]
    assert recorder.security_tokens[0] == roles[0].session_token
    # moto keeps the secrets of the role's account apart from the test account.
    assert found_text(aws_backend.read(coordinate)) == "role-value"
    with pytest.raises(secrets.exceptions.ResourceNotFoundException):
        secrets.describe_secret(SecretId=coordinate.render())


def test_assumed_role_reused_until_near_expiry(
    make_backend: BackendMaker, moto_server: str
) -> None:
    role_arn = new_role_arn()
    aws_backend, _ = make_backend(moto_config(moto_server, role_arn=role_arn))

    for _ in range(3):
        aws_backend.read(new_coordinate())

    assert len(_assumed_roles(role_arn)) == 1


def test_assumed_role_refreshed_before_expiry(
    make_backend: BackendMaker, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore 1.44 refreshes credentials that expire within 15 minutes (its
    # advisory refresh timeout), so a 900-second role session is refreshed on
    # the next request.
    monkeypatch.setattr(aws, "ASSUME_ROLE_SECONDS", 900)
    role_arn = new_role_arn()
    aws_backend, recorder = make_backend(moto_config(moto_server, role_arn=role_arn))

    aws_backend.read(new_coordinate())
    aws_backend.read(new_coordinate())

    roles = _assumed_roles(role_arn)
    assert len(roles) == 2
    assert f"Credential={roles[1].access_key_id}/" in recorder.authorizations[1]


def test_assume_role_denied_is_access_denied(
    make_backend: BackendMaker,
    moto_server: str,
    fake: AwsFake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake.url)
    fake.responder = lambda request: query_error("AccessDenied", "not trusted")
    role_arn = new_role_arn()
    aws_backend, recorder = make_backend(
        moto_config(moto_server, role_arn=role_arn), retry=FAST_RETRY
    )

    with pytest.raises(AccessDenied, match=role_arn):
        aws_backend.read(new_coordinate())
    assert fake.operations() == ["AssumeRole"]
    assert recorder.authorizations == []


# Limits and the name rule ---------------------------------------------------


def test_value_at_limit_is_stored(backend: Any) -> None:
    aws_backend, _ = backend
    coordinate = new_coordinate()
    text = "x" * MAX_VALUE_BYTES

    write(aws_backend, coordinate, text)

    assert found_text(aws_backend.read(coordinate)) == text


@pytest.mark.parametrize(
    "text",
    ["x" * (MAX_VALUE_BYTES + 1), "é" * (MAX_VALUE_BYTES // 2 + 1)],
    ids=["ascii", "two-byte-characters"],
)
def test_value_over_limit_raises_limit_exceeded(backend: Any, text: str) -> None:
    aws_backend, recorder = backend
    coordinate = new_coordinate()

    with pytest.raises(LimitExceeded, match="65536 bytes") as raised:
        write(aws_backend, coordinate, text)
    assert coordinate.render() in str(raised.value)
    assert recorder.calls == []


@pytest.mark.parametrize(
    "name",
    [
        "with space",
        "hash#sign",
        "unicode-é",
        "star*",
        "arn:aws:s3:::bucket/key",
        "arn:aws:secretsmanager:us-east-1:12345:secret:short-account",
    ],
)
def test_name_rule_rejects_external_name(backend: Any, name: str) -> None:
    aws_backend, recorder = backend

    with pytest.raises(InvalidCoordinate) as raised:
        aws_backend.read(ExternalCoordinate(name))
    with pytest.raises(InvalidCoordinate):
        aws_backend.read_many([ExternalCoordinate(name)])
    assert recorder.calls == []
    assert "invalid" in str(raised.value) or "not a Secrets Manager" in str(
        raised.value
    )


@pytest.mark.parametrize("name", ["a", "path/to/db_pass+1=ok.v@host-x", "n" * 256])
def test_name_rule_accepts_legal_names(backend: Any, name: str) -> None:
    aws_backend, _ = backend

    assert aws_backend.read(ExternalCoordinate(name)) == Absent()


def test_name_rule_message_names_allowed_characters(backend: Any) -> None:
    aws_backend, _ = backend

    with pytest.raises(InvalidCoordinate, match="1 to 512 characters"):
        aws_backend.read(ExternalCoordinate("with space"))


# Error translation ---------------------------------------------------------


ERROR_CODES: list[tuple[str, int, type[KeyrefsError]]] = [
    ("AccessDeniedException", 400, AccessDenied),
    ("UnrecognizedClientException", 400, AccessDenied),
    ("ExpiredTokenException", 400, AccessDenied),
    ("ThrottlingException", 400, Throttled),
    ("TooManyRequestsException", 400, Throttled),
    ("InternalServiceError", 500, BackendUnavailable),
    ("ServiceUnavailable", 503, BackendUnavailable),
    ("InvalidParameterException", 400, BackendInvalidRequest),
    ("InvalidRequestException", 400, BackendInvalidRequest),
    ("ValidationException", 400, BackendInvalidRequest),
    ("SomeFutureException", 400, BackendError),
]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    ERROR_CODES,
    ids=[code for code, _, _ in ERROR_CODES],
)
def test_error_code_translation(
    fake_backend: Any, code: str, status: int, expected: type[KeyrefsError]
) -> None:
    aws_backend, fake = fake_backend
    fake.responder = lambda request: json_error(code, "scripted failure", status)
    coordinate = new_coordinate()
    operations: list[tuple[str, Callable[[], object]]] = [
        ("read", lambda: aws_backend.read(coordinate)),
        ("batch read", lambda: aws_backend.read_many([coordinate])),
        ("write", lambda: write(aws_backend, coordinate, "value")),
        ("delete", lambda: aws_backend.delete(coordinate)),
        ("list", lambda: list(aws_backend.list_managed("keyrefs_"))),
        ("connection check", aws_backend.check_connection),
    ]

    for operation, call in operations:
        with pytest.raises(expected) as raised:
            call()
        assert type(raised.value) is expected, operation
        assert code in str(raised.value), operation
        assert operation in str(raised.value), operation


def test_access_denied_on_missing_name_is_access_denied(fake_backend: Any) -> None:
    # With a narrow IAM policy, AWS returns AccessDeniedException for a name
    # that does not exist, because it does not disclose whether it exists.
    aws_backend, fake = fake_backend
    fake.responder = lambda request: json_error(
        "AccessDeniedException", "User is not authorized to perform GetSecretValue"
    )
    name = f"missing/{uuid.uuid4().hex}"

    with pytest.raises(AccessDenied, match=name):
        aws_backend.read(ExternalCoordinate(name))
    assert fake.operations() == ["GetSecretValue"]


def test_not_found_response_is_absent(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    fake.responder = lambda request: json_error("ResourceNotFoundException")

    assert aws_backend.read(new_coordinate()) == Absent()


def test_throttled_read_makes_policy_attempts(
    make_backend: BackendMaker, fake: AwsFake
) -> None:
    # The default policy makes 5 attempts, and botocore must not add its own.
    aws_backend, _ = make_backend(moto_config(fake.url))
    fake.responder = lambda request: json_error("ThrottlingException", "slow down")
    started = time.monotonic()

    with pytest.raises(Throttled):
        aws_backend.read(new_coordinate())

    assert fake.operations() == ["GetSecretValue"] * 5
    assert time.monotonic() - started < 10


def test_unavailable_then_success_is_retried(fake_backend: Any) -> None:
    aws_backend, fake = fake_backend
    answers = [
        json_error("ServiceUnavailable", status=503),
        json_response({"Name": "db", "SecretString": "recovered"}),
    ]
    fake.responder = lambda request: answers.pop(0)

    assert found_text(aws_backend.read(ExternalCoordinate("db"))) == "recovered"
    assert fake.operations() == ["GetSecretValue", "GetSecretValue"]


def test_endpoint_connection_error_is_unavailable(make_backend: BackendMaker) -> None:
    aws_backend, _ = make_backend(moto_config(closed_port_url()), retry=FAST_RETRY)

    with pytest.raises(BackendUnavailable, match="could not be reached") as raised:
        aws_backend.read(new_coordinate())
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


def test_connect_timeout_is_unavailable(make_backend: BackendMaker) -> None:
    with unresponsive_listener() as url:
        aws_backend, _ = make_backend(
            moto_config(url), connect_timeout=0.2, retry=RetryPolicy(max_attempts=1)
        )

        with pytest.raises(BackendUnavailable) as raised:
            aws_backend.read(new_coordinate())

    assert isinstance(raised.value.__cause__, ConnectTimeoutError)


def test_read_timeout_is_unavailable(make_backend: BackendMaker, fake: AwsFake) -> None:
    fake.responder = lambda request: FakeResponse(
        200, b'{"SecretString": "late"}', delay_seconds=1.0
    )
    aws_backend, _ = make_backend(
        moto_config(fake.url), read_timeout=0.2, retry=RetryPolicy(max_attempts=2)
    )

    with pytest.raises(BackendUnavailable) as raised:
        aws_backend.read(new_coordinate())

    assert isinstance(raised.value.__cause__, ReadTimeoutError)
    assert fake.operations() == ["GetSecretValue"] * 2


# Secret values in logs and errors ---------------------------------------------


def test_no_canary_in_logs_or_errors(
    backend: Any,
    fake_backend: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    aws_backend, _ = backend
    failing_backend, fake = fake_backend
    canary = f"canary-{uuid.uuid4().hex}"
    coordinate = new_coordinate()
    caplog.set_level(logging.DEBUG)

    write(aws_backend, coordinate, canary)
    write(aws_backend, coordinate, canary)
    read_result = aws_backend.read(coordinate)
    batch_result = aws_backend.read_many([coordinate])
    fake.responder = lambda request: json_error(
        "ValidationException", f"value {canary} failed to satisfy a constraint"
    )
    with pytest.raises(BackendInvalidRequest) as raised:
        write(failing_backend, coordinate, canary)

    assert found_text(read_result) == canary
    assert found_text(batch_result[coordinate]) == canary
    assert canary not in str(raised.value)
    assert canary not in repr(raised.value)
    assert canary not in "".join(traceback.format_exception(raised.value))
    assert "**********" in str(raised.value)
    assert caplog.records
    for record in caplog.records:
        assert canary not in record.getMessage(), record.name
        assert canary not in (record.exc_text or ""), record.name


def test_session_credentials_not_logged(
    make_backend: BackendMaker, moto_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    role_arn = new_role_arn()
    aws_backend, _ = make_backend(moto_config(moto_server, role_arn=role_arn))

    aws_backend.read(new_coordinate())

    role = _assumed_roles(role_arn)[0]
    for record in caplog.records:
        message = record.getMessage()
        assert role.session_token not in message, record.name
        assert role.secret_access_key not in message, record.name


def test_backend_repr_shows_no_keys(moto_server: str) -> None:
    config = AwsConfig.model_validate(
        moto_config(moto_server, secret_access_key="very-secret-key")
    )
    aws_backend = AwsSecretsManagerBackend(build_client(config), config)

    assert "very-secret-key" not in repr(aws_backend)
    assert REGION in repr(aws_backend)
    aws_backend.close()
