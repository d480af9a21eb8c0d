"""The Vault backend against a real OpenBao dev server.

Statuses that a dev server cannot be made to return (401, 5xx, slow replies,
replies that are not JSON, TLS) come from a small status server on 127.0.0.1.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import hvac
import pytest
import trustme
from hvac import exceptions as vault_errors
from pydantic import SecretStr

from keyrefs.backends.base import Absent, BackendContext, Found, SecretWrite
from keyrefs.backends.configs import VaultConfig
from keyrefs.backends.registry import load_factory
from keyrefs.backends.retry import NO_RETRY, RetryPolicy
from keyrefs.backends.vault import (
    MAX_VALUE_BYTES,
    VAULT_ERROR_MAP,
    VaultBackend,
    VaultBackendFactory,
)
from keyrefs.domain.coordinates import ExternalCoordinate, ManagedCoordinate
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
from tests.fakes.vault_fake import StatusServer
from tests.fixtures.vault import KV_MOUNT, OpenBaoServer, secret_exists

FAST_RETRY = RetryPolicy(
    max_attempts=3, max_seconds=2, initial_wait=0.001, max_wait=0.01
)

BackendMaker = Callable[..., VaultBackend]


# Helpers -------------------------------------------------------------------


def new_coordinate(prefix: str = "keyrefs_") -> ManagedCoordinate:
    return ManagedCoordinate("organization", uuid.uuid4(), uuid.uuid4(), prefix=prefix)


def write_request(coordinate: ManagedCoordinate, text: str) -> SecretWrite:
    return SecretWrite(coordinate, SecretValue(text), OrganizationId(uuid.uuid4()))


def found_text(result: object) -> str:
    assert isinstance(result, Found), f"expected Found, got {result!r}"
    return result.value.reveal()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def root(openbao_server: OpenBaoServer) -> Iterator[hvac.Client]:
    client = openbao_server.root_client()
    yield client
    client.adapter.close()


@pytest.fixture
def prefix() -> str:
    return unique("test")


@pytest.fixture
def make_backend(openbao_server: OpenBaoServer, prefix: str) -> Iterator[BackendMaker]:
    """Build backends against the dev server; settings override the root defaults."""
    backends: list[VaultBackend] = []

    def build(retry_policy: RetryPolicy = FAST_RETRY, **settings: Any) -> VaultBackend:
        values: dict[str, Any] = {
            "address": openbao_server.address,
            "token": openbao_server.root_token,
            "prefix": prefix,
        }
        values.update(settings)
        backend = VaultBackend(VaultConfig(**values), retry_policy)
        backends.append(backend)
        return backend

    yield build
    for backend in backends:
        backend.close()


@pytest.fixture
def backend(make_backend: BackendMaker) -> VaultBackend:
    return make_backend()


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    with StatusServer() as server:
        yield server


def status_backend(server: StatusServer, **settings: Any) -> VaultBackend:
    values: dict[str, Any] = {"address": server.address, "token": "fake-token"}
    values.update(settings)
    return VaultBackend(VaultConfig(**values), FAST_RETRY)


# Round trip ------------------------------------------------------------------


def test_write_then_read_returns_value(backend: VaultBackend) -> None:
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, "s3cret"))

    assert found_text(backend.read(coordinate)) == "s3cret"


def test_write_stores_value_field_under_prefix(
    backend: VaultBackend, root: hvac.Client, prefix: str
) -> None:
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, "s3cret"))

    response = root.secrets.kv.v2.read_secret_version(
        f"{prefix}/{coordinate.render()}",
        mount_point=KV_MOUNT,
        raise_on_deleted_version=True,
    )
    assert response["data"]["data"] == {"value": "s3cret"}


def test_write_same_coordinate_adds_version(
    backend: VaultBackend, root: hvac.Client, prefix: str
) -> None:
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, "first"))
    backend.write(write_request(coordinate, "second"))

    assert found_text(backend.read(coordinate)) == "second"
    metadata = root.secrets.kv.v2.read_secret_metadata(
        f"{prefix}/{coordinate.render()}", mount_point=KV_MOUNT
    )
    assert metadata["data"]["current_version"] == 2


def test_read_missing_secret_is_absent(backend: VaultBackend) -> None:
    assert backend.read(new_coordinate()) == Absent()


def test_read_soft_deleted_latest_version_is_absent(
    backend: VaultBackend, root: hvac.Client, prefix: str
) -> None:
    coordinate = new_coordinate()
    backend.write(write_request(coordinate, "gone soon"))

    root.secrets.kv.v2.delete_latest_version_of_secret(
        f"{prefix}/{coordinate.render()}", mount_point=KV_MOUNT
    )

    assert backend.read(coordinate) == Absent()


def test_read_many_mixes_found_and_absent(backend: VaultBackend) -> None:
    first, second, missing = new_coordinate(), new_coordinate(), new_coordinate()
    backend.write(write_request(first, "one"))
    backend.write(write_request(second, "two"))

    results = backend.read_many([first, missing, second])

    assert found_text(results[first]) == "one"
    assert found_text(results[second]) == "two"
    assert results[missing] == Absent()
    assert list(results) == [first, missing, second]


def test_delete_removes_all_versions_and_metadata(
    backend: VaultBackend, openbao_server: OpenBaoServer, prefix: str
) -> None:
    coordinate = new_coordinate()
    backend.write(write_request(coordinate, "one"))
    backend.write(write_request(coordinate, "two"))
    path = f"{prefix}/{coordinate.render()}"
    assert secret_exists(openbao_server, KV_MOUNT, path)

    backend.delete(coordinate)

    assert not secret_exists(openbao_server, KV_MOUNT, path)
    assert backend.read(coordinate) == Absent()


def test_delete_absent_secret_is_no_error(backend: VaultBackend) -> None:
    backend.delete(new_coordinate())


def test_list_managed_yields_written_coordinates(backend: VaultBackend) -> None:
    written = {new_coordinate(), new_coordinate()}
    for coordinate in written:
        backend.write(write_request(coordinate, "listed"))

    listed = list(backend.list_managed("keyrefs_"))

    assert {item.coordinate for item in listed} == written


def test_list_managed_reads_created_at_from_metadata(backend: VaultBackend) -> None:
    coordinate = new_coordinate()
    before = time.time()
    backend.write(write_request(coordinate, "listed"))

    [item] = list(backend.list_managed("keyrefs_"))

    assert item.created_at is not None
    assert item.created_at.tzinfo is not None
    assert abs(item.created_at.timestamp() - before) < 60


def test_list_managed_skips_foreign_names(
    backend: VaultBackend, root: hvac.Client, prefix: str
) -> None:
    mine = new_coordinate()
    backend.write(write_request(mine, "mine"))
    backend.write(write_request(new_coordinate(prefix="other_"), "other prefix"))
    for foreign in ["keyrefs_not_a_coordinate", "notes", "folder/inside"]:
        root.secrets.kv.v2.create_or_update_secret(
            f"{prefix}/{foreign}", {"value": "x"}, mount_point=KV_MOUNT
        )

    listed = [item.coordinate for item in backend.list_managed("keyrefs_")]

    assert listed == [mine]


def test_list_managed_of_empty_folder_yields_nothing(backend: VaultBackend) -> None:
    assert list(backend.list_managed("keyrefs_")) == []


# Paths -----------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["{}", "{}/", "/{}/", "//{}//"])
def test_prefix_spellings_name_same_folder(
    make_backend: BackendMaker, openbao_server: OpenBaoServer, spelling: str
) -> None:
    folder = unique("norm")
    coordinate = new_coordinate()

    make_backend(prefix=spelling.format(folder)).write(write_request(coordinate, "x"))

    assert secret_exists(openbao_server, KV_MOUNT, f"{folder}/{coordinate.render()}")
    assert found_text(make_backend(prefix=folder).read(coordinate)) == "x"


def test_nested_prefix_keeps_inner_slashes(
    make_backend: BackendMaker, openbao_server: OpenBaoServer
) -> None:
    folder = unique("outer")
    coordinate = new_coordinate()

    make_backend(prefix=f"/{folder}//inner/").write(write_request(coordinate, "x"))

    path = f"{folder}/inner/{coordinate.render()}"
    assert secret_exists(openbao_server, KV_MOUNT, path)


@pytest.mark.parametrize("empty_prefix", ["", "/"])
def test_empty_prefix_means_mount_root(
    make_backend: BackendMaker, openbao_server: OpenBaoServer, empty_prefix: str
) -> None:
    backend = make_backend(prefix=empty_prefix)
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, "at root"))

    assert secret_exists(openbao_server, KV_MOUNT, coordinate.render())
    assert coordinate in {item.coordinate for item in backend.list_managed("keyrefs_")}
    backend.delete(coordinate)
    assert not secret_exists(openbao_server, KV_MOUNT, coordinate.render())


@pytest.mark.parametrize("mount", ["secret/", "/secret/"])
def test_mount_spellings_name_same_mount(
    make_backend: BackendMaker, mount: str
) -> None:
    coordinate = new_coordinate()
    make_backend(mount=mount).write(write_request(coordinate, "x"))

    assert found_text(make_backend(mount="secret").read(coordinate)) == "x"


@pytest.mark.parametrize("setting", ["prefix", "mount"])
def test_dot_segments_in_settings_are_rejected(
    make_backend: BackendMaker, setting: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"'\.' or '\.\.'"):
        make_backend(**{setting: "team/../other"})


def test_empty_mount_is_rejected(make_backend: BackendMaker) -> None:
    with pytest.raises(ConfigurationError, match="mount is empty"):
        make_backend(mount="/")


def test_address_without_scheme_is_rejected(make_backend: BackendMaker) -> None:
    with pytest.raises(ConfigurationError, match="expected a URL"):
        make_backend(address="127.0.0.1:8200")


# External coordinates --------------------------------------------------------


@pytest.fixture
def external_folder(root: hvac.Client) -> str:
    folder = unique("external")
    root.secrets.kv.v2.create_or_update_secret(
        f"{folder}/db",
        {"password": "pa55", "user": "app", "port": 5432, "value": "default field"},
        mount_point=KV_MOUNT,
    )
    root.secrets.kv.v2.create_or_update_secret(
        f"{folder}/no-value-field", {"token": "token-field-text"}, mount_point=KV_MOUNT
    )
    return folder


def test_external_path_and_key_reads_field(
    backend: VaultBackend, external_folder: str
) -> None:
    result = backend.read(ExternalCoordinate(f"{external_folder}/db#password"))

    assert found_text(result) == "pa55"


def test_external_path_without_key_reads_value_field(
    backend: VaultBackend, external_folder: str
) -> None:
    result = backend.read(ExternalCoordinate(f"{external_folder}/db"))

    assert found_text(result) == "default field"


def test_external_path_ignores_configured_prefix(
    make_backend: BackendMaker, external_folder: str
) -> None:
    backend = make_backend(prefix="some/other/prefix")

    result = backend.read(ExternalCoordinate(f"{external_folder}/db#user"))

    assert found_text(result) == "app"


def test_external_path_with_outer_slashes_reads_same(
    backend: VaultBackend, external_folder: str
) -> None:
    result = backend.read(ExternalCoordinate(f"/{external_folder}/db/#user"))

    assert found_text(result) == "app"


def test_external_path_is_relative_to_mount(
    backend: VaultBackend, external_folder: str
) -> None:
    result = backend.read(ExternalCoordinate(f"secret/{external_folder}/db#user"))

    assert result == Absent()


def test_external_number_field_reads_as_json_text(
    backend: VaultBackend, external_folder: str
) -> None:
    result = backend.read(ExternalCoordinate(f"{external_folder}/db#port"))

    assert found_text(result) == "5432"


def test_external_missing_key_is_absent_and_logged(
    backend: VaultBackend, external_folder: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keyrefs.backends.vault")

    result = backend.read(ExternalCoordinate(f"{external_folder}/no-value-field"))

    assert result == Absent()
    messages = [record.getMessage() for record in caplog.records]
    assert any("no key 'value'" in message for message in messages)
    assert any("'token'" in message for message in messages)
    assert not any("token-field-text" in message for message in messages)


def test_external_missing_path_is_absent(backend: VaultBackend) -> None:
    assert backend.read(ExternalCoordinate(f"{unique('nowhere')}#key")) == Absent()


@pytest.mark.parametrize("name", ["#password", "/#password", "team/db#", "a/../b"])
def test_malformed_external_coordinate_is_rejected(
    backend: VaultBackend, name: str
) -> None:
    with pytest.raises(InvalidCoordinate):
        backend.read(ExternalCoordinate(name))


def test_managed_secret_without_value_field_is_error(
    backend: VaultBackend, root: hvac.Client, prefix: str
) -> None:
    coordinate = new_coordinate()
    root.secrets.kv.v2.create_or_update_secret(
        f"{prefix}/{coordinate.render()}", {"other": "x"}, mount_point=KV_MOUNT
    )

    with pytest.raises(BackendError, match="changed outside keyrefs"):
        backend.read(coordinate)


# Values and limits -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "pässwörd-秘密-🔑",
        "line one\nline two\r\nline three\n",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        "  padded  ",
        "",
        '{"looks": "like json"}',
        'tab\tquote"backslash\\',
    ],
    ids=["unicode", "multi-line", "pem", "padded", "empty", "json-text", "escapes"],
)
def test_value_round_trips_unchanged(backend: VaultBackend, text: str) -> None:
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, text))

    assert found_text(backend.read(coordinate)) == text


def test_value_at_limit_is_stored(backend: VaultBackend) -> None:
    coordinate = new_coordinate()
    text = "x" * MAX_VALUE_BYTES

    backend.write(write_request(coordinate, text))

    assert found_text(backend.read(coordinate)) == text


@pytest.mark.parametrize(
    "text",
    ["x" * (MAX_VALUE_BYTES + 1), "é" * (MAX_VALUE_BYTES // 2) + "x"],
    ids=["ascii", "two-byte-characters"],
)
def test_value_over_limit_is_rejected_before_call(
    backend: VaultBackend, openbao_server: OpenBaoServer, prefix: str, text: str
) -> None:
    coordinate = new_coordinate()

    with pytest.raises(LimitExceeded, match=f"at most {MAX_VALUE_BYTES} bytes"):
        backend.write(write_request(coordinate, text))

    path = f"{prefix}/{coordinate.render()}"
    assert not secret_exists(openbao_server, KV_MOUNT, path)


def test_capabilities_declare_versions_and_hard_delete() -> None:
    capabilities = VaultBackend.capabilities

    assert capabilities.versions is True
    assert capabilities.batch_read is False
    assert capabilities.soft_delete is False
    assert capabilities.native_expiry is False
    assert capabilities.max_value_bytes == 1024 * 1024


# AppRole ---------------------------------------------------------------------


def kv_policy(folder: str) -> str:
    return f"""
path "secret/data/{folder}/*" {{ capabilities = ["create", "read", "update"] }}
path "secret/metadata/{folder}/*" {{ capabilities = ["read", "list", "delete"] }}
path "secret/metadata/{folder}" {{ capabilities = ["list"] }}
"""


@pytest.fixture
def approle(root: hvac.Client, prefix: str) -> Callable[..., dict[str, Any]]:
    """Create an AppRole allowed on the test's prefix; return its credentials."""
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    policy = unique("approle-policy")
    root.sys.create_or_update_policy(policy, kv_policy(prefix))

    def create(**role_settings: Any) -> dict[str, Any]:
        role = unique("role")
        root.auth.approle.create_or_update_approle(
            role, token_policies=[policy], **role_settings
        )
        role_id = root.auth.approle.read_role_id(role)["data"]["role_id"]
        secret_id = root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        return {"role_id": role_id, "secret_id": secret_id, "policy": policy}

    return create


def revoke_tokens_with_policy(root: hvac.Client, policy: str) -> int:
    revoked = 0
    for accessor in root.auth.token.list_accessors()["data"]["keys"]:
        data = root.auth.token.lookup_accessor(accessor)["data"]
        if policy in (data.get("policies") or []):
            root.auth.token.revoke_accessor(accessor)
            revoked += 1
    return revoked


def approle_backend(
    make_backend: BackendMaker, credentials: dict[str, Any]
) -> VaultBackend:
    return make_backend(
        token=None,
        role_id=credentials["role_id"],
        secret_id=SecretStr(credentials["secret_id"]),
    )


def login_count(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        "AppRole login succeeded" in record.getMessage() for record in caplog.records
    )


def test_approle_login_allows_round_trip(
    make_backend: BackendMaker, approle: Callable[..., dict[str, Any]]
) -> None:
    backend = approle_backend(make_backend, approle())
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, "via approle"))

    assert found_text(backend.read(coordinate)) == "via approle"
    backend.check_connection()
    assert [item.coordinate for item in backend.list_managed("keyrefs_")] == [
        coordinate
    ]
    backend.delete(coordinate)
    assert backend.read(coordinate) == Absent()


def test_approle_logs_in_once_for_many_calls(
    make_backend: BackendMaker,
    approle: Callable[..., dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="keyrefs.backends.vault")
    backend = approle_backend(make_backend, approle())

    for _ in range(3):
        backend.read(new_coordinate())

    assert login_count(caplog) == 1


def test_approle_logs_in_again_after_ttl(
    make_backend: BackendMaker,
    approle: Callable[..., dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="keyrefs.backends.vault")
    backend = approle_backend(make_backend, approle(token_ttl="2s", token_max_ttl="2s"))
    coordinate = new_coordinate()
    backend.write(write_request(coordinate, "before expiry"))

    time.sleep(2.5)

    assert found_text(backend.read(coordinate)) == "before expiry"
    assert login_count(caplog) == 2
    rejections = [
        r for r in caplog.records if "rejected the AppRole token" in r.getMessage()
    ]
    assert rejections == []


def test_approle_logs_in_again_when_token_revoked(
    make_backend: BackendMaker,
    approle: Callable[..., dict[str, Any]],
    root: hvac.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="keyrefs.backends.vault")
    credentials = approle()
    backend = approle_backend(make_backend, credentials)
    coordinate = new_coordinate()
    backend.write(write_request(coordinate, "survives revocation"))

    assert revoke_tokens_with_policy(root, credentials["policy"]) == 1

    assert found_text(backend.read(coordinate)) == "survives revocation"
    assert login_count(caplog) == 2
    assert any("rejected the AppRole token" in r.getMessage() for r in caplog.records)


def test_approle_denied_path_skips_relogin(
    make_backend: BackendMaker,
    approle: Callable[..., dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="keyrefs.backends.vault")
    backend = approle_backend(make_backend, approle())
    backend.read(new_coordinate())

    with pytest.raises(AccessDenied):
        backend.read(ExternalCoordinate(f"{unique('elsewhere')}/db"))

    assert login_count(caplog) == 1


def test_approle_wrong_secret_id_is_access_denied(
    make_backend: BackendMaker, approle: Callable[..., dict[str, Any]]
) -> None:
    credentials = approle()
    credentials["secret_id"] = str(uuid.uuid4())
    backend = approle_backend(make_backend, credentials)

    with pytest.raises(AccessDenied, match="AppRole login"):
        backend.read(new_coordinate())


# Access control ----------------------------------------------------------------


@pytest.fixture
def narrow_token(root: hvac.Client, prefix: str) -> str:
    """A token whose only KV policy covers the test's prefix."""
    policy = unique("narrow")
    root.sys.create_or_update_policy(policy, kv_policy(prefix))
    response = root.auth.token.create(policies=[policy], ttl="10m")
    token: str = response["auth"]["client_token"]
    return token


def test_narrow_policy_allows_own_prefix(
    make_backend: BackendMaker, narrow_token: str
) -> None:
    backend = make_backend(token=narrow_token)
    coordinate = new_coordinate()

    backend.write(write_request(coordinate, "allowed"))

    assert found_text(backend.read(coordinate)) == "allowed"
    backend.check_connection()


def test_narrow_policy_other_path_denied(
    make_backend: BackendMaker, narrow_token: str, root: hvac.Client
) -> None:
    folder = unique("forbidden")
    root.secrets.kv.v2.create_or_update_secret(
        f"{folder}/db", {"value": "x"}, mount_point=KV_MOUNT
    )
    backend = make_backend(token=narrow_token)

    with pytest.raises(AccessDenied, match="permission denied") as caught:
        backend.read(ExternalCoordinate(f"{folder}/db"))

    assert isinstance(caught.value.__cause__, vault_errors.Forbidden)
    assert f"secret/{folder}/db" in str(caught.value)


def test_narrow_policy_unwritten_path_denied(
    make_backend: BackendMaker, narrow_token: str
) -> None:
    backend = make_backend(token=narrow_token)

    with pytest.raises(AccessDenied):
        backend.read(ExternalCoordinate(f"{unique('never-written')}/db"))


def test_narrow_policy_other_prefix_denied(
    make_backend: BackendMaker, narrow_token: str
) -> None:
    backend = make_backend(token=narrow_token, prefix=unique("other"))

    with pytest.raises(AccessDenied):
        backend.write(write_request(new_coordinate(), "x"))
    with pytest.raises(AccessDenied):
        backend.delete(new_coordinate())
    with pytest.raises(AccessDenied):
        list(backend.list_managed("keyrefs_"))


def test_wrong_token_is_access_denied(make_backend: BackendMaker) -> None:
    backend = make_backend(token="not-a-real-token")

    with pytest.raises(AccessDenied):
        backend.read(new_coordinate())


# Connection check ------------------------------------------------------------


def test_check_connection_passes_for_kv2_mount(backend: VaultBackend) -> None:
    backend.check_connection()


def test_check_connection_wrong_token_names_token(make_backend: BackendMaker) -> None:
    backend = make_backend(token="not-a-real-token")

    with pytest.raises(AccessDenied, match="rejected the token"):
        backend.check_connection()


def test_check_connection_kv1_mount_is_error(
    make_backend: BackendMaker, root: hvac.Client
) -> None:
    mount = unique("kv1")
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    try:
        with pytest.raises(BackendError, match="KV version 1 mount") as caught:
            make_backend(mount=mount).check_connection()
    finally:
        root.sys.disable_secrets_engine(mount)

    assert "needs KV version 2" in str(caught.value)


def test_check_connection_other_engine_is_error(make_backend: BackendMaker) -> None:
    with pytest.raises(BackendError, match="'cubbyhole' mount"):
        make_backend(mount="cubbyhole").check_connection()


def test_check_connection_missing_mount_is_access_denied(
    make_backend: BackendMaker,
) -> None:
    with pytest.raises(AccessDenied, match="does not exist"):
        make_backend(mount=unique("no-such-mount")).check_connection()


def test_check_connection_closed_port_is_unavailable(
    make_backend: BackendMaker,
) -> None:
    backend = make_backend(address=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(BackendUnavailable):
        backend.check_connection()


# Namespaces --------------------------------------------------------------------


def test_namespace_keeps_secrets_apart(
    make_backend: BackendMaker, openbao_server: OpenBaoServer, prefix: str
) -> None:
    namespace = unique("ns")
    root = openbao_server.root_client()
    root.sys.create_namespace(namespace)
    in_namespace = hvac.Client(
        url=openbao_server.address, token=openbao_server.root_token, namespace=namespace
    )
    in_namespace.sys.enable_secrets_engine(
        "kv", path=KV_MOUNT, options={"version": "2"}
    )
    coordinate = new_coordinate()
    path = f"{prefix}/{coordinate.render()}"
    try:
        backend = make_backend(namespace=namespace)
        backend.check_connection()
        backend.write(write_request(coordinate, "namespaced"))

        stored = in_namespace.secrets.kv.v2.read_secret_version(
            path, mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
        assert stored["data"]["data"] == {"value": "namespaced"}
        assert not secret_exists(openbao_server, KV_MOUNT, path)
        assert make_backend().read(coordinate) == Absent()
    finally:
        in_namespace.sys.disable_secrets_engine(KV_MOUNT)
        root.sys.delete_namespace(namespace)


# Error translation: real server --------------------------------------------------


def test_closed_port_is_unavailable_after_retries(
    make_backend: BackendMaker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keyrefs.backends.retry")
    backend = make_backend(address=f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(BackendUnavailable, match="could not be reached") as caught:
        backend.read(new_coordinate())

    assert caught.value.transient
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == FAST_RETRY.max_attempts - 1


def test_rate_limit_quota_is_throttled(
    make_backend: BackendMaker, root: hvac.Client
) -> None:
    mount = unique("throttled")
    quota = unique("quota")
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    root.sys.create_or_update_quota(quota, rate=1, path=f"{mount}/", interval="60s")
    try:
        backend = make_backend(mount=mount, retry_policy=NO_RETRY)
        backend.read(new_coordinate())

        with pytest.raises(Throttled, match="rate limit") as caught:
            backend.read(new_coordinate())
    finally:
        root.sys.delete_quota(quota)
        root.sys.disable_secrets_engine(mount)

    assert caught.value.transient


def test_check_and_set_required_is_invalid_request(
    backend: VaultBackend, root: hvac.Client, prefix: str
) -> None:
    coordinate = new_coordinate()
    root.secrets.kv.v2.update_metadata(
        f"{prefix}/{coordinate.render()}", cas_required=True, mount_point=KV_MOUNT
    )

    with pytest.raises(BackendInvalidRequest, match="check-and-set") as caught:
        backend.write(write_request(coordinate, "x"))

    assert not caught.value.transient


# Error translation: status server ------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BackendInvalidRequest),
        (401, AccessDenied),
        (403, AccessDenied),
        (429, Throttled),
        (500, BackendUnavailable),
        (501, BackendError),
        (502, BackendUnavailable),
        (503, BackendUnavailable),
        (418, BackendError),
    ],
)
@pytest.mark.parametrize("operation", ["read", "write", "delete", "list"])
def test_status_translates_to_keyrefs_error(
    status_server: StatusServer,
    status: int,
    expected: type[BackendError],
    operation: str,
) -> None:
    status_server.respond(status)
    backend = status_backend(status_server)
    coordinate = new_coordinate()
    calls: dict[str, Callable[[], object]] = {
        "read": lambda: backend.read(coordinate),
        "write": lambda: backend.write(write_request(coordinate, "x")),
        "delete": lambda: backend.delete(coordinate),
        "list": lambda: list(backend.list_managed("keyrefs_")),
    }

    with pytest.raises(expected) as caught:
        calls[operation]()

    assert type(caught.value) is expected
    assert isinstance(caught.value.__cause__, vault_errors.VaultError)


def test_not_found_status_on_read_is_absent(status_server: StatusServer) -> None:
    status_server.respond(404)

    assert status_backend(status_server).read(new_coordinate()) == Absent()


def test_unavailable_status_is_retried_then_raised(
    status_server: StatusServer,
) -> None:
    status_server.respond(503)

    with pytest.raises(BackendUnavailable):
        status_backend(status_server).read(new_coordinate())

    assert len(status_server.request_paths) == FAST_RETRY.max_attempts


def test_invalid_request_is_not_retried(status_server: StatusServer) -> None:
    status_server.respond(400)

    with pytest.raises(BackendInvalidRequest):
        status_backend(status_server).read(new_coordinate())

    assert len(status_server.request_paths) == 1


def test_slow_server_times_out_as_unavailable(status_server: StatusServer) -> None:
    status_server.delay = 1.0
    backend = status_backend(status_server, timeout_seconds=0.2)

    with pytest.raises(BackendUnavailable, match="Timeout"):
        backend.read(new_coordinate())


def test_reply_without_json_is_backend_error(status_server: StatusServer) -> None:
    status_server.respond(200, b"<html>proxy login</html>")

    with pytest.raises(BackendError, match="without a JSON `data` object"):
        status_backend(status_server).read(new_coordinate())


def test_every_hvac_error_class_has_translation() -> None:
    classes = [
        member
        for _, member in inspect.getmembers(vault_errors, inspect.isclass)
        if issubclass(member, vault_errors.VaultError)
    ]

    missing = [cls.__name__ for cls in classes if cls not in VAULT_ERROR_MAP]

    assert classes
    assert missing == []


# TLS ---------------------------------------------------------------------------


@pytest.fixture
def tls_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StatusServer, str]]:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path_factory.mktemp("vault-tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with StatusServer(tls=context) as server:
        server.respond(200, b'{"data": {"data": {"value": "over tls"}}}')
        yield server, str(bundle)


def test_verify_with_ca_bundle_reads_over_tls(
    tls_server: tuple[StatusServer, str],
) -> None:
    server, bundle = tls_server

    result = status_backend(server, verify=bundle).read(new_coordinate())

    assert found_text(result) == "over tls"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_skips_certificate_check(
    tls_server: tuple[StatusServer, str],
) -> None:
    server, _ = tls_server

    result = status_backend(server, verify=False).read(new_coordinate())

    assert found_text(result) == "over tls"


def test_untrusted_certificate_is_permanent_error(
    tls_server: tuple[StatusServer, str],
) -> None:
    server, _ = tls_server

    with pytest.raises(BackendError, match="TLS handshake failed") as caught:
        status_backend(server, verify=True).read(new_coordinate())

    assert not caught.value.transient


# Factory -----------------------------------------------------------------------


def test_registry_loads_vault_factory() -> None:
    factory = load_factory("vault")

    assert isinstance(factory, VaultBackendFactory)
    assert factory.storage_type == "vault"
    assert factory.config_model is VaultConfig


def test_factory_builds_working_backend(
    openbao_server: OpenBaoServer, prefix: str
) -> None:
    config = VaultConfig(
        address=openbao_server.address, token=SecretStr("root"), prefix=prefix
    )
    backend = VaultBackendFactory().create(
        config, BackendContext(SecretStorageId(uuid.uuid4()))
    )
    coordinate = new_coordinate()
    try:
        backend.check_connection()
        backend.write(write_request(coordinate, "from factory"))
        assert found_text(backend.read(coordinate)) == "from factory"
    finally:
        backend.close()


def test_backend_repr_hides_token(openbao_server: OpenBaoServer) -> None:
    token = f"hvs.{uuid.uuid4().hex}"
    backend = VaultBackend(
        VaultConfig(address=openbao_server.address, token=SecretStr(token))
    )

    assert token not in repr(backend)
    backend.close()


# No secret in logs ---------------------------------------------------------------


def test_canary_value_appears_in_no_log_or_error(
    backend: VaultBackend,
    status_server: StatusServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"canary-{uuid.uuid4().hex}"
    coordinate = new_coordinate()
    texts: list[str] = []

    backend.write(write_request(coordinate, canary))
    results = backend.read_many([coordinate, new_coordinate()])
    texts.append(repr(results))
    texts.extend(repr(item) for item in backend.list_managed("keyrefs_"))
    backend.delete(coordinate)

    status_server.respond(
        400, b'{"errors": ["rejected value ' + canary.encode() + b'"]}'
    )
    failing = status_backend(status_server)
    errors: list[str] = []
    for status in (400, 500):
        status_server.status = status
        with pytest.raises(KeyrefsError) as caught:
            failing.write(write_request(coordinate, canary))
        errors.extend([str(caught.value), repr(caught.value)])

    assert found_text(results[coordinate]) == canary
    assert [text for text in texts + errors if canary in text] == []
    assert all("message is withheld" in text for text in errors)
    leaked = [record.name for record in caplog.records if canary in record.getMessage()]
    assert leaked == []
    assert caplog.records


# Conformance target ----------------------------------------------------------------


def test_conformance_target_sees_backend_objects(
    vault_conformance: ConformanceTarget,
) -> None:
    factory = VaultBackendFactory()
    config = factory.config_model.model_validate(vault_conformance.config)
    backend = factory.create(config, BackendContext(SecretStorageId(uuid.uuid4())))
    coordinate = new_coordinate()
    try:
        backend.write(write_request(coordinate, "conformance"))
        assert vault_conformance.object_exists(coordinate.render())

        backend.delete(coordinate)
        assert not vault_conformance.object_exists(coordinate.render())
    finally:
        backend.close()

    assert vault_conformance.storage_type == "vault"
