"""The local backend: AES-256-GCM ciphertexts in keyrefs' own database.

Each organization gets one random 256-bit data key, stored wrapped
(AES-256-GCM) by the master key. A secret is encrypted under its
organization's data key with the storage id and the coordinate as associated
data, so a ciphertext copied to another row or storage fails to decrypt.
No plaintext is written to the database.

This backend keeps its rows in the `local_secret` and `local_data_key` tables
of the keyrefs database, in sessions of its own: a write commits before the
service's transaction starts, like a write to any external secret manager.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

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
from keyrefs.domain.coordinates import Coordinate, ManagedCoordinate, parse_managed
from keyrefs.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    InvalidCoordinate,
    LimitExceeded,
)
from keyrefs.ids import SecretStorageId
from keyrefs.secret_value import SecretValue
from keyrefs.store.models import LocalDataKey, LocalSecret

MASTER_KEY_BYTES = 32
NONCE_BYTES = 12
# A limit of this backend's own, so that one config cannot fill the database.
MAX_VALUE_BYTES = 1024 * 1024
WRITE_ATTEMPTS = 3


class MasterKey:
    """The 256-bit key that wraps the data keys; its repr never shows it."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigurationError(
                f"master key is {len(key)} bytes long: expected {MASTER_KEY_BYTES} "
                "bytes, base64-encoded (create one with `openssl rand -base64 32`)"
            )
        self._aead = AESGCM(key)

    @classmethod
    def from_base64(cls, text: str, source: str) -> MasterKey:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"master key from {source} is not valid base64: expected the "
                "base64 encoding of 32 random bytes"
            ) from None
        return cls(key)

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise ConfigurationError(
                f"master key file {path} does not exist: run `keyrefs init` to "
                "create it on a new database, restore the file if the database "
                "already holds secrets, or set KEYREFS_MASTER_KEY or "
                "KEYREFS_MASTER_KEY_FILE"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"master key file {path} cannot be read: {type(exc).__name__}"
            ) from None
        return cls.from_base64(text, f"file {path}")

    @staticmethod
    def create_file(path: Path) -> None:
        """Write a new random master key to `path` with mode 0600."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = base64.b64encode(os.urandom(MASTER_KEY_BYTES)).decode("ascii")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text + "\n")

    def wrap(self, data_key: bytes, organization_id: uuid.UUID) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(
            nonce, data_key, _data_key_aad(organization_id)
        )

    def unwrap(self, wrapped: bytes, organization_id: uuid.UUID) -> bytes:
        nonce, ciphertext = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, _data_key_aad(organization_id))
        except InvalidTag:
            raise BackendError(
                f"data key of organization {organization_id} does not decrypt "
                "under this master key: the master key is not the one the key "
                "was created with"
            ) from None

    def __repr__(self) -> str:
        return "MasterKey(**********)"


def _data_key_aad(organization_id: uuid.UUID) -> bytes:
    return b"keyrefs-data-key\x00" + organization_id.bytes


def _secret_aad(storage_id: uuid.UUID, coordinate: str) -> bytes:
    return b"keyrefs-secret\x00" + storage_id.bytes + coordinate.encode("utf-8")


class LocalConfig(BaseModel):
    """The local backend needs no settings of its own."""

    model_config = ConfigDict(extra="forbid")


class LocalBackend:
    capabilities = Capabilities(batch_read=True, max_value_bytes=MAX_VALUE_BYTES)

    def __init__(
        self, storage_id: SecretStorageId, engine: Engine, master_key: MasterKey
    ):
        self._storage_id = storage_id
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._master_key = master_key
        self._data_keys: dict[uuid.UUID, AESGCM] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBackend(storage_id={self._storage_id})"

    def write(self, request: SecretWrite) -> None:
        name = request.coordinate.render()
        if request.value.encoded_size() > MAX_VALUE_BYTES:
            raise LimitExceeded(
                f"secret {name} is {request.value.encoded_size()} bytes: the local "
                f"backend stores at most {MAX_VALUE_BYTES} bytes per secret"
            )
        # Two writers of one actor can plan the same next version at once; the
        # second insert then collides, and replacing the row again wins.
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                self._write_row(request, name)
                return
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS:
                    raise BackendUnavailable(
                        f"secret {name} was written concurrently {attempt} times; retry"
                    ) from None

    def _write_row(self, request: SecretWrite, name: str) -> None:
        with self._session() as session:
            key_id, aead = self._data_key(session, request.organization_id)
            nonce = os.urandom(NONCE_BYTES)
            ciphertext = aead.encrypt(
                nonce,
                request.value.reveal().encode("utf-8"),
                _secret_aad(self._storage_id, name),
            )
            session.execute(
                delete(LocalSecret).where(
                    LocalSecret.secret_storage_id == self._storage_id,
                    LocalSecret.coordinate == name,
                )
            )
            session.add(
                LocalSecret(
                    secret_storage_id=self._storage_id,
                    coordinate=name,
                    data_key_id=key_id,
                    nonce=nonce,
                    ciphertext=ciphertext,
                )
            )
            session.commit()

    def read(self, coordinate: Coordinate) -> ReadResult:
        return self.read_many([coordinate])[coordinate]

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        by_name = {coordinate.render(): coordinate for coordinate in coordinates}
        results: dict[Coordinate, ReadResult] = dict.fromkeys(coordinates, Absent())
        with self._session() as session:
            rows = session.scalars(
                select(LocalSecret).where(
                    LocalSecret.secret_storage_id == self._storage_id,
                    LocalSecret.coordinate.in_(list(by_name)),
                )
            ).all()
            for row in rows:
                aead = self._data_key_by_id(session, row.data_key_id)
                results[by_name[row.coordinate]] = Found(self._decrypt(aead, row))
        return results

    def delete(self, coordinate: ManagedCoordinate) -> None:
        with self._session() as session:
            session.execute(
                delete(LocalSecret).where(
                    LocalSecret.secret_storage_id == self._storage_id,
                    LocalSecret.coordinate == coordinate.render(),
                )
            )
            session.commit()

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        with self._session() as session:
            rows = session.execute(
                select(LocalSecret.coordinate, LocalSecret.created_at).where(
                    LocalSecret.secret_storage_id == self._storage_id,
                    LocalSecret.coordinate.startswith(prefix, autoescape=True),
                )
            ).all()
        for name, created_at in rows:
            try:
                coordinate = parse_managed(name, prefix)
            except InvalidCoordinate:
                continue
            yield ListedSecret(coordinate, created_at)

    def check_connection(self) -> None:
        with self._session() as session:
            session.execute(select(LocalDataKey.id).limit(1))

    def close(self) -> None:
        pass

    # Keys ---------------------------------------------------------------

    def _decrypt(self, aead: AESGCM, row: LocalSecret) -> SecretValue:
        try:
            plaintext = aead.decrypt(
                row.nonce, row.ciphertext, _secret_aad(self._storage_id, row.coordinate)
            )
        except InvalidTag:
            raise BackendError(
                f"ciphertext of {row.coordinate} in storage {self._storage_id} "
                "failed its integrity check: it was altered or moved"
            ) from None
        return SecretValue(plaintext.decode("utf-8"))

    def _data_key(
        self, session: Session, organization_id: uuid.UUID
    ) -> tuple[uuid.UUID, AESGCM]:
        row = session.scalar(
            select(LocalDataKey).where(LocalDataKey.organization_id == organization_id)
        )
        if row is None:
            row = self._create_data_key(session, organization_id)
        return row.id, self._data_key_by_id(session, row.id, row)

    def _create_data_key(
        self, session: Session, organization_id: uuid.UUID
    ) -> LocalDataKey:
        key = AESGCM.generate_key(bit_length=256)
        row = LocalDataKey(
            id=uuid.uuid4(),
            organization_id=organization_id,
            wrapped_key=self._master_key.wrap(key, organization_id),
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            # Another writer created the organization's key first: use theirs.
            existing = session.scalar(
                select(LocalDataKey).where(
                    LocalDataKey.organization_id == organization_id
                )
            )
            assert existing is not None
            return existing
        return row

    def _data_key_by_id(
        self, session: Session, key_id: uuid.UUID, row: LocalDataKey | None = None
    ) -> AESGCM:
        with self._lock:
            cached = self._data_keys.get(key_id)
        if cached is not None:
            return cached
        if row is None:
            row = session.get(LocalDataKey, key_id)
        if row is None:
            raise BackendError(f"data key {key_id} of the local backend is missing")
        aead = AESGCM(self._master_key.unwrap(row.wrapped_key, row.organization_id))
        with self._lock:
            self._data_keys[key_id] = aead
        return aead

    def _session(self) -> _TranslatingSession:
        return _TranslatingSession(self._sessions)


class _TranslatingSession:
    """A session context that turns database outages into BackendUnavailable."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._session = sessions()

    def __enter__(self) -> Session:
        return self._session

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._session.close()
        if isinstance(exc, OperationalError):
            raise BackendUnavailable(
                "the local backend's database is unavailable: "
                f"{type(exc.orig).__name__}"
            ) from exc


class LocalBackendFactory:
    storage_type: ClassVar[str] = "local"
    config_model: ClassVar[type[BaseModel]] = LocalConfig

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        engine = context.resources.get("engine")
        master_key = context.resources.get("master_key")
        if not isinstance(engine, Engine) or not isinstance(master_key, MasterKey):
            raise ConfigurationError(
                "the local backend needs the keyrefs database engine and a master key"
            )
        return LocalBackend(context.storage_id, engine, master_key)
