"""API tokens: creation, lookup by hash, listing and revocation.

A token is shown once, when it is created. The database stores only the
SHA-256 digest: a token carries 256 random bits, so a fast unsalted hash
cannot be brute-forced and a stolen table yields no usable token. Slow
password hashes (bcrypt, Argon2) exist for low-entropy human passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select

from keyrefs.errors import InvalidInput, KeyrefsError, NotFound
from keyrefs.ids import PLATFORM_ORGANIZATION_ID, OrganizationId
from keyrefs.service import audit
from keyrefs.service.audit import SessionSource
from keyrefs.store.api_models import ApiToken
from keyrefs.store.types import utc_now

logger = logging.getLogger(__name__)

TOKEN_BYTES = 32
MAX_DESCRIPTION_LENGTH = 256


class Role(StrEnum):
    ADMIN = "admin"
    CONTROL_PLANE = "control-plane"
    DATA_PLANE = "data-plane"


class InvalidToken(KeyrefsError):
    """The bearer token is missing, malformed, unknown or revoked."""

    code = "invalid_token"


class RoleNotAllowed(KeyrefsError):
    """The token is valid, but its role may not call this operation."""

    code = "forbidden"


class TokenNotFound(NotFound):
    """No API token exists with the id."""

    code = "token_not_found"


@dataclass(frozen=True)
class Principal:
    """The caller that a valid token identifies; holds no token or hash."""

    token_id: uuid.UUID
    role: Role
    organization_id: OrganizationId | None


@dataclass(frozen=True)
class TokenView:
    """An API token as `token list` prints it, without its hash."""

    id: uuid.UUID
    role: Role
    organization_id: uuid.UUID | None
    description: str
    created_at: datetime
    revoked_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "role": self.role.value,
            "organization_id": _optional_str(self.organization_id),
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "revoked_at": _optional_str(self.revoked_at),
        }


@dataclass(frozen=True)
class NewToken:
    """A created token. `secret` is the only copy of the token text."""

    view: TokenView
    secret: str

    def __repr__(self) -> str:
        return f"NewToken(view={self.view!r}, secret='***')"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    sessions: SessionSource,
    role: Role,
    organization_id: OrganizationId | None,
    description: str,
) -> NewToken:
    """Create a token, record it in the audit log and return its text once."""
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f"token description must be at most {MAX_DESCRIPTION_LENGTH} characters"
        )
    if organization_id == PLATFORM_ORGANIZATION_ID:
        raise InvalidInput(
            f"organization {organization_id} is the platform's own id and owns the "
            "default storage: limit the token to a customer organization"
        )
    secret = secrets.token_urlsafe(TOKEN_BYTES)
    row = ApiToken(
        id=uuid.uuid4(),
        token_hash=hash_token(secret),
        role=role.value,
        organization_id=organization_id,
        description=description,
        created_at=utc_now(),
        revoked_at=None,
    )
    with sessions() as session, session.begin():
        session.add(row)
        session.flush()
        view = _view(row)
        audit.add_event(
            session,
            audit.Event(
                action="token.create",
                token_id=row.id,
                organization_id=organization_id,
            ),
        )
    logger.info("created %s token %s", role.value, row.id)
    return NewToken(view, secret)


def authenticate(sessions: SessionSource, token: str) -> Principal:
    """Return the caller of a bearer token; raise InvalidToken otherwise."""
    digest = hash_token(token)
    with sessions() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The lookup by digest already matched, so the comparison is a second,
    # constant-time check that does not depend on how the database compares.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise InvalidToken("the bearer token is invalid")
    if row.revoked_at is not None:
        raise InvalidToken("the bearer token is invalid")
    organization = row.organization_id
    return Principal(
        token_id=row.id,
        role=Role(row.role),
        organization_id=OrganizationId(organization) if organization else None,
    )


def list_tokens(sessions: SessionSource) -> list[TokenView]:
    with sessions() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at))
        return [_view(row) for row in rows]


def revoke_token(sessions: SessionSource, token_id: uuid.UUID) -> TokenView:
    """Mark a token revoked; revoking a revoked token keeps its first time."""
    with sessions() as session, session.begin():
        row = session.get(ApiToken, token_id)
        if row is None:
            raise TokenNotFound(f"API token {token_id} does not exist")
        if row.revoked_at is None:
            row.revoked_at = utc_now()
        session.flush()
        audit.add_event(
            session,
            audit.Event(
                action="token.revoke",
                token_id=row.id,
                organization_id=row.organization_id,
            ),
        )
        view = _view(row)
    logger.info("revoked token %s", token_id)
    return view


def _view(row: ApiToken) -> TokenView:
    return TokenView(
        id=row.id,
        role=Role(row.role),
        organization_id=row.organization_id,
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _optional_str(value: object | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
