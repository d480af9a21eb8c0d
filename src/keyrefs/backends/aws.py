"""The AWS Secrets Manager backend, through boto3.

A managed coordinate maps to the secret name it renders to, unchanged: its
characters are a subset of the names AWS accepts, so the mapping is
deterministic, collision-free and reversible by `parse_managed`. External
coordinates are a secret name or an ARN.

Retries happen once, in `call_with_retry`: botocore is configured for a single
attempt per call, so one keyrefs call makes at most `RetryPolicy.max_attempts`
requests. A call lasts at most the policy's `max_seconds` plus one request's
connect and read timeouts, and the backoff waits.

botocore logs request parameters and response bodies at DEBUG, and these
contain secret values and session credentials. Building a client installs a
filter on three botocore loggers in this process: it replaces every logged body
and parameter set (of any service), and any other argument that names a
secret field or session token, with a placeholder.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    HTTPClientError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.model import OperationModel
from pydantic import BaseModel

from keyrefs.backends.base import (
    Absent,
    BackendContext,
    Capabilities,
    Found,
    ListedSecret,
    ReadResult,
    SecretBackend,
    SecretWrite,
)
from keyrefs.backends.configs import AwsConfig
from keyrefs.backends.retry import DEFAULT_RETRY, RetryPolicy, call_with_retry
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
from keyrefs.secret_value import SecretValue

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import (
        BatchGetSecretValueResponseTypeDef,
        ListSecretsResponseTypeDef,
        SecretValueEntryTypeDef,
    )

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Limits of AWS Secrets Manager: the value and name limits of CreateSecret,
# 20 ids per BatchGetSecretValue call, and the `Tag` type's 128-character keys
# and 256-character values (the TagResource prose says 127 and 255, which this
# check does not enforce). moto enforces none of them, so the backend does.
MAX_VALUE_BYTES = 65_536
MAX_BATCH_IDS = 20
MAX_TAGS = 50
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
NAME_RULE = "1 to 512 characters from A-Z, a-z, 0-9 and / _ + = . @ -"
_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):[0-9]{12}"
    r":secret:(?P<name>[A-Za-z0-9/_+=.@-]{1,512})"
)
# An ARN ends with the name, a hyphen and six random characters.
_ARN_SUFFIX_LENGTH = 7

ORGANIZATION_TAG = "keyrefs-organization-id"
# SecretString must not be empty, so an empty managed value is stored as this
# SecretBinary. keyrefs writes every other value as SecretString, so a managed
# secret with this binary value can only be an empty value.
EMPTY_VALUE_BINARY = b"\x00"
LIST_PAGE_SIZE = 100
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
ASSUME_ROLE_SECONDS = 3600

_NOT_FOUND = "ResourceNotFoundException"
_EXISTS = "ResourceExistsException"
_ERROR_CLASSES: dict[str, type[BackendError]] = {
    "AccessDeniedException": AccessDenied,
    "AccessDenied": AccessDenied,
    "UnrecognizedClientException": AccessDenied,
    "InvalidClientTokenId": AccessDenied,
    "ExpiredTokenException": AccessDenied,
    "ExpiredToken": AccessDenied,
    "ThrottlingException": Throttled,
    "Throttling": Throttled,
    "TooManyRequestsException": Throttled,
    "InternalServiceError": BackendUnavailable,
    "InternalFailure": BackendUnavailable,
    "ServiceUnavailable": BackendUnavailable,
    "InvalidParameterException": BackendInvalidRequest,
    "InvalidRequestException": BackendInvalidRequest,
    "ValidationException": BackendInvalidRequest,
    "LimitExceededException": BackendInvalidRequest,
}
_ADVICE: dict[type[KeyrefsError], str] = {
    AccessDenied: "check that the credentials are valid and that their IAM policy "
    "allows this action on the secret",
    Throttled: "retry later or lower the request rate",
    BackendUnavailable: "retry later, and check endpoint_url and the network",
    BackendInvalidRequest: "check the secret's state, for example a pending deletion",
    BackendError: "check the AWS error code",
}


def translate_error(
    exc: ClientError | BotoCoreError, action: str, hide: str | None = None
) -> KeyrefsError:
    """Return the keyrefs exception for an SDK exception raised during `action`.

    `hide` is a secret value to cut from the service's message before it is
    quoted, in case the service echoes a request parameter.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        detail = str(error.get("Message", ""))
        if hide:
            detail = detail.replace(hide, "**********")
        return _service_error(code, detail, action)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigurationError(
            f"{action} failed: no complete AWS credentials were found. Set "
            "access_key_id and secret_access_key or role_arn in the storage "
            "config, or provide credentials to the standard AWS chain "
            "(environment, shared config files, instance or container role)"
        )
    if isinstance(exc, NoRegionError | InvalidRegionError):
        return ConfigurationError(
            f"{action} failed: the AWS region is missing or invalid "
            f"({type(exc).__name__}): set region, for example 'us-east-1'"
        )
    if isinstance(exc, BotoConnectionError | ConnectionClosedError | HTTPClientError):
        return BackendUnavailable(
            f"{action} failed: AWS Secrets Manager could not be reached "
            f"({type(exc).__name__}): {_ADVICE[BackendUnavailable]}"
        )
    if isinstance(exc, ParamValidationError):
        return BackendInvalidRequest(
            f"{action} failed: botocore rejected the request parameters "
            "(ParamValidationError)"
        )
    return BackendError(f"{action} failed in botocore: {type(exc).__name__}")


def _service_error(code: str, detail: str, action: str) -> BackendError:
    error_class = _ERROR_CLASSES.get(code, BackendError)
    message = f"{action} failed: AWS returned {code}"
    if detail:
        message += f" ({detail})"
    return error_class(f"{message}: {_ADVICE[error_class]}")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# Names -------------------------------------------------------------------


def managed_name(coordinate: ManagedCoordinate) -> str:
    """Return the AWS secret name of a managed coordinate: its rendering."""
    name = coordinate.render()
    _check_name(name)
    return name


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidCoordinate(
            f"secret name {name!r} is invalid in AWS Secrets Manager: expected "
            f"{NAME_RULE}"
        )


def _check_value_size(name: str, value: SecretValue) -> None:
    size = value.encoded_size()
    if size > MAX_VALUE_BYTES:
        raise LimitExceeded(
            f"secret {name} is {size} bytes in UTF-8: AWS Secrets Manager stores "
            f"at most {MAX_VALUE_BYTES} bytes per secret value"
        )


def _matches_id(secret_id: str, entry: SecretValueEntryTypeDef) -> bool:
    if not secret_id.startswith("arn:"):
        return entry.get("Name") == secret_id
    arn = entry.get("ARN", "")
    partial = arn[:-_ARN_SUFFIX_LENGTH] if len(arn) > _ARN_SUFFIX_LENGTH else ""
    return secret_id in (arn, partial)


def _value_arguments(text: str) -> dict[str, Any]:
    if text == "":
        return {"SecretBinary": EMPTY_VALUE_BINARY}
    return {"SecretString": text}


def _entry_value(
    secret_id: str, entry: Mapping[str, Any], managed: bool
) -> SecretValue:
    text = entry.get("SecretString")
    if isinstance(text, str):
        return SecretValue(text)
    binary = entry.get("SecretBinary")
    if managed and binary == EMPTY_VALUE_BINARY:
        return SecretValue("")
    if isinstance(binary, bytes):
        try:
            return SecretValue(binary.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    raise BackendError(
        f"secret {secret_id} has no text value: keyrefs reads SecretString, or "
        "SecretBinary that is UTF-8 text"
    )


# Logging -----------------------------------------------------------------

# Compared in lowercase. The session token is also a signed header, which
# botocore.auth logs in the canonical request.
_SENSITIVE_MARKERS = (
    "secretstring",
    "secretbinary",
    "secretaccesskey",
    "sessiontoken",
    "x-amz-security-token",
)
_BODY_LOGGERS = ("botocore.auth", "botocore.endpoint", "botocore.parsers")
_filter_lock = threading.Lock()


# Messages whose arguments botocore fills with a request's parameters or a
# response's body. Every argument but the operation is hidden, because a
# service may echo a request parameter in an error body.
_BODY_MESSAGES = ("Making request for", "Response body")
_HIDDEN = "<hidden by keyrefs: may contain a secret>"


class _SensitiveArgumentFilter(logging.Filter):
    """Hide log arguments that may contain a secret value or session credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, tuple) or not record.args:
            return True
        if str(record.msg).startswith(_BODY_MESSAGES):
            # Keep the operation model, which names the operation.
            record.args = tuple(
                argument if isinstance(argument, OperationModel) else _HIDDEN
                for argument in record.args
            )
        elif any(_is_sensitive(argument) for argument in record.args):
            record.args = tuple(
                _HIDDEN if _is_sensitive(argument) else argument
                for argument in record.args
            )
        return True


def _is_sensitive(argument: object) -> bool:
    text = repr(argument).lower()
    return any(marker in text for marker in _SENSITIVE_MARKERS)


def install_log_filter() -> None:
    """Add the filter to botocore's body loggers, once per process."""
    with _filter_lock:
        for name in _BODY_LOGGERS:
            botocore_logger = logging.getLogger(name)
            if not any(
                isinstance(item, _SensitiveArgumentFilter)
                for item in botocore_logger.filters
            ):
                botocore_logger.addFilter(_SensitiveArgumentFilter())


# Clients and credentials ---------------------------------------------------


class _AssumeRole:
    """Fetch temporary credentials for a role, in botocore's refresh format."""

    def __init__(
        self, sts: Any, role_arn: str, external_id: str | None, session_name: str
    ) -> None:
        self._sts = sts
        self._role_arn = role_arn
        self._external_id = external_id
        self._session_name = session_name

    def __call__(self) -> dict[str, str]:
        arguments: dict[str, Any] = {
            "RoleArn": self._role_arn,
            "RoleSessionName": self._session_name,
            "DurationSeconds": ASSUME_ROLE_SECONDS,
        }
        if self._external_id is not None:
            arguments["ExternalId"] = self._external_id
        logger.info("assuming role %s for AWS Secrets Manager", self._role_arn)
        try:
            response = self._sts.assume_role(**arguments)
        except (ClientError, BotoCoreError) as exc:
            raise translate_error(exc, f"AssumeRole of {self._role_arn}") from exc
        credentials = response["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }


class _FixedCredentialProvider(CredentialProvider):
    METHOD = "keyrefs-assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def build_client(
    config: AwsConfig,
    role_session_name: str = "keyrefs",
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> SecretsManagerClient:
    """Create a Secrets Manager client with the credentials `config` selects.

    Without keys the standard AWS chain applies. With `role_arn`, the keys or
    the chain only call STS AssumeRole, and botocore refreshes the role's
    credentials before they expire. The STS endpoint is AWS's, or the one
    that botocore's `AWS_ENDPOINT_URL_STS` setting names.
    """
    install_log_filter()
    botocore_config = Config(
        region_name=config.region,
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="keyrefs",
    )
    try:
        session = _base_session(config)
        if config.role_arn is not None:
            session = _role_session(session, config, botocore_config, role_session_name)
        return session.client(
            "secretsmanager", endpoint_url=config.endpoint_url, config=botocore_config
        )
    except (NoRegionError, InvalidRegionError) as exc:
        raise translate_error(exc, "creating the AWS Secrets Manager client") from exc
    except ValueError as exc:
        raise ConfigurationError(
            f"endpoint_url {config.endpoint_url!r} is invalid: expected a URL "
            "such as https://secretsmanager.us-east-1.amazonaws.com"
        ) from exc


def _base_session(config: AwsConfig) -> boto3.Session:
    if config.access_key_id is None or config.secret_access_key is None:
        if config.session_token is not None:
            raise ConfigurationError(
                "session_token needs access_key_id and secret_access_key"
            )
        return boto3.Session(region_name=config.region)
    token = config.session_token
    return boto3.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key.get_secret_value(),
        aws_session_token=token.get_secret_value() if token is not None else None,
        region_name=config.region,
    )


def _role_session(
    source: boto3.Session, config: AwsConfig, botocore_config: Config, name: str
) -> boto3.Session:
    assert config.role_arn is not None
    sts = source.client("sts", config=botocore_config)
    fetch = _AssumeRole(sts, config.role_arn, config.external_id, name)
    credentials = DeferredRefreshableCredentials(
        refresh_using=fetch, method=_FixedCredentialProvider.METHOD
    )
    core_session = botocore.session.get_session()
    core_session.register_component(
        "credential_provider",
        CredentialResolver([_FixedCredentialProvider(credentials)]),
    )
    return boto3.Session(botocore_session=core_session, region_name=config.region)


def _check_tags(tags: Mapping[str, str]) -> None:
    if ORGANIZATION_TAG in tags:
        raise ConfigurationError(
            f"tag {ORGANIZATION_TAG!r} is set by keyrefs itself: remove it from tags"
        )
    if len(tags) > MAX_TAGS - 1:
        raise ConfigurationError(
            f"{len(tags)} tags are configured: AWS allows {MAX_TAGS} per secret "
            f"and keyrefs adds {ORGANIZATION_TAG!r}, so give at most {MAX_TAGS - 1}"
        )
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY_LENGTH or key.lower().startswith("aws:"):
            raise ConfigurationError(
                f"tag key {key!r} is invalid: expected 1 to {MAX_TAG_KEY_LENGTH} "
                "characters, not starting with the prefix 'aws:' that AWS reserves"
            )
        if len(value) > MAX_TAG_VALUE_LENGTH or value.lower().startswith("aws:"):
            raise ConfigurationError(
                f"value of tag {key!r} is invalid: expected at most "
                f"{MAX_TAG_VALUE_LENGTH} characters, not starting with the prefix "
                "'aws:' that AWS reserves"
            )


# The backend ---------------------------------------------------------------


class AwsSecretsManagerBackend:
    """Secrets in one region of AWS Secrets Manager."""

    capabilities = Capabilities(
        batch_read=True,
        versions=True,
        soft_delete=True,
        max_value_bytes=MAX_VALUE_BYTES,
    )

    def __init__(
        self,
        client: SecretsManagerClient,
        config: AwsConfig,
        retry: RetryPolicy = DEFAULT_RETRY,
        list_page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        _check_tags(config.tags)
        self._client = client
        self._config = config
        self._retry = retry
        self._list_page_size = list_page_size

    def __repr__(self) -> str:
        return (
            f"AwsSecretsManagerBackend(region={self._config.region!r}, "
            f"endpoint_url={self._config.endpoint_url!r})"
        )

    def write(self, request: SecretWrite) -> None:
        name = managed_name(request.coordinate)
        _check_value_size(name, request.value)
        text = request.value.reveal()
        tags = {**self._config.tags, ORGANIZATION_TAG: str(request.organization_id)}
        create_arguments: dict[str, Any] = {
            "Name": name,
            **_value_arguments(text),
            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
        }
        if self._config.kms_key_id is not None:
            create_arguments["KmsKeyId"] = self._config.kms_key_id

        def create_or_put() -> None:
            try:
                self._client.create_secret(**create_arguments)
            except ClientError as exc:
                if _error_code(exc) != _EXISTS:
                    raise
                self._client.put_secret_value(SecretId=name, **_value_arguments(text))

        self._call("write", name, create_or_put, hide=text)

    def read(self, coordinate: Coordinate) -> ReadResult:
        secret_id = self._secret_id(coordinate)

        def get() -> ReadResult:
            try:
                response = self._client.get_secret_value(SecretId=secret_id)
            except ClientError as exc:
                if _error_code(exc) == _NOT_FOUND:
                    return Absent()
                raise
            managed = isinstance(coordinate, ManagedCoordinate)
            return Found(_entry_value(secret_id, response, managed))

        return self._call("read", secret_id, get)

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        """Read with BatchGetSecretValue, at most `MAX_BATCH_IDS` ids per call."""
        ids = {coordinate: self._secret_id(coordinate) for coordinate in coordinates}
        unique_ids = list(dict.fromkeys(ids.values()))
        managed_ids = {
            secret_id
            for coordinate, secret_id in ids.items()
            if isinstance(coordinate, ManagedCoordinate)
        }
        by_id: dict[str, ReadResult] = {}
        for start in range(0, len(unique_ids), MAX_BATCH_IDS):
            chunk = unique_ids[start : start + MAX_BATCH_IDS]
            target = f"{len(chunk)} secrets from {chunk[0]}"
            read_chunk = functools.partial(self._read_chunk, chunk, managed_ids)
            by_id.update(self._call("batch read", target, read_chunk))
        return {coordinate: by_id[secret_id] for coordinate, secret_id in ids.items()}

    def delete(self, coordinate: ManagedCoordinate) -> None:
        """Delete at once, without the recovery window, so the name is free again."""
        name = managed_name(coordinate)

        def force_delete() -> None:
            try:
                self._client.delete_secret(
                    SecretId=name, ForceDeleteWithoutRecovery=True
                )
            except ClientError as exc:
                if _error_code(exc) != _NOT_FOUND:
                    raise

        self._call("delete", name, force_delete)

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        if prefix:
            _check_name(prefix)
        token: str | None = None
        while True:
            list_page = functools.partial(self._list_page, prefix, token)
            page = self._call("list", f"prefix {prefix!r}", list_page)
            for entry in page.get("SecretList", []):
                listed = self._listed(entry.get("Name", ""), prefix, entry)
                if listed is not None:
                    yield listed
            token = page.get("NextToken")
            if not token:
                return

    def check_connection(self) -> None:
        """Call ListSecrets, which `list_managed` needs as well."""
        self._call(
            "connection check",
            f"region {self._config.region}",
            lambda: self._client.list_secrets(MaxResults=1),
        )

    def close(self) -> None:
        self._client.close()

    # Steps -------------------------------------------------------------

    def _call(
        self,
        operation: str,
        target: str,
        call: Callable[[], T],
        hide: str | None = None,
    ) -> T:
        def attempt() -> T:
            logger.debug("AWS Secrets Manager %s of %s", operation, target)
            try:
                return call()
            except (ClientError, BotoCoreError) as exc:
                error = translate_error(exc, f"{operation} of {target}", hide)
                if hide and hide in str(exc):
                    # The service echoed the value: keep it out of tracebacks.
                    raise error from None
                raise error from exc

        return call_with_retry(operation, target, attempt, self._retry)

    def _secret_id(self, coordinate: Coordinate) -> str:
        if isinstance(coordinate, ManagedCoordinate):
            return managed_name(coordinate)
        return self._external_id(coordinate)

    def _external_id(self, coordinate: ExternalCoordinate) -> str:
        name = coordinate.name
        if not name.startswith("arn:"):
            _check_name(name)
            return name
        match = _ARN.fullmatch(name)
        if match is None:
            raise InvalidCoordinate(
                f"{name!r} is not a Secrets Manager secret ARN: expected "
                "arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX"
            )
        if match["region"] != self._config.region:
            raise InvalidCoordinate(
                f"secret ARN {name} is in region {match['region']}, but this storage "
                f"uses region {self._config.region}: add a storage for that region"
            )
        return name

    def _read_chunk(
        self, chunk: list[str], managed_ids: set[str]
    ) -> dict[str, ReadResult]:
        responses: list[BatchGetSecretValueResponseTypeDef] = []
        token: str | None = None
        while True:
            arguments: dict[str, Any] = {"SecretIdList": chunk}
            if token:
                arguments["NextToken"] = token
            response = self._client.batch_get_secret_value(**arguments)
            responses.append(response)
            token = response.get("NextToken")
            if not token:
                break

        results: dict[str, ReadResult] = {}
        for response in responses:
            for error in response.get("Errors", []):
                secret_id = error.get("SecretId", "")
                code = error.get("ErrorCode", "Unknown")
                if code != _NOT_FOUND:
                    detail = error.get("Message", "")
                    raise _service_error(code, detail, f"batch read of {secret_id}")
                results[secret_id] = Absent()
        values = [entry for response in responses for entry in response["SecretValues"]]
        for secret_id in chunk:
            if secret_id not in results:
                managed = secret_id in managed_ids
                results[secret_id] = self._found_in(secret_id, values, managed)
        return results

    def _found_in(
        self, secret_id: str, values: list[SecretValueEntryTypeDef], managed: bool
    ) -> ReadResult:
        for entry in values:
            if _matches_id(secret_id, entry):
                return Found(_entry_value(secret_id, entry, managed))
        raise BackendError(
            f"batch read of {secret_id} failed: BatchGetSecretValue returned "
            "neither a value nor an error for it"
        )

    def _list_page(self, prefix: str, token: str | None) -> ListSecretsResponseTypeDef:
        arguments: dict[str, Any] = {"MaxResults": self._list_page_size}
        if prefix:
            arguments["Filters"] = [{"Key": "name", "Values": [prefix]}]
        if token:
            arguments["NextToken"] = token
        return self._client.list_secrets(**arguments)

    @staticmethod
    def _listed(
        name: str, prefix: str, entry: Mapping[str, Any]
    ) -> ListedSecret | None:
        # Keep exact prefix matches only, whatever the service's filter matched.
        if not name.startswith(prefix):
            return None
        try:
            coordinate = parse_managed(name, prefix)
        except InvalidCoordinate:
            return None
        created = entry.get("CreatedDate")
        return ListedSecret(
            coordinate, created if isinstance(created, datetime) else None
        )


class AwsBackendFactory:
    storage_type: ClassVar[str] = "aws_secrets_manager"
    config_model: ClassVar[type[BaseModel]] = AwsConfig

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        if not isinstance(config, AwsConfig):
            raise ConfigurationError(
                f"the aws_secrets_manager backend needs an AwsConfig, not "
                f"{type(config).__name__}"
            )
        # RoleSessionName allows 64 characters: "keyrefs-" and a UUID use 44.
        client = build_client(config, role_session_name=f"keyrefs-{context.storage_id}")
        return AwsSecretsManagerBackend(client, config)
