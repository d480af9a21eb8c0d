"""Bearer token authentication and role checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyrefs.service import KeyrefsService
from keyrefs.service.tokens import (
    InvalidToken,
    Principal,
    Role,
    RoleNotAllowed,
    authenticate,
)

# `secrets.token_urlsafe(32)` makes 43 characters; longer input is not a token.
MAX_TOKEN_LENGTH = 256

_bearer = HTTPBearer(
    auto_error=False, description="An API token from `keyrefs token create`."
)


def get_service(request: Request) -> KeyrefsService:
    service: KeyrefsService = request.app.state.service
    return service


ServiceDep = Annotated[KeyrefsService, Depends(get_service)]


def get_principal(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the bearer token; raise InvalidToken when missing or invalid."""
    if credentials is None:
        raise InvalidToken("missing bearer token: send Authorization: Bearer TOKEN")
    token = credentials.credentials
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("the bearer token is invalid")
    return authenticate(service.session, token)


def require_role(role: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role is not role:
            raise RoleNotAllowed(
                f"a {principal.role.value} token may not call this operation: "
                f"it needs a token with the role {role.value}"
            )
        return principal

    return check


AdminCaller = Annotated[Principal, Depends(require_role(Role.ADMIN))]
ControlPlaneCaller = Annotated[Principal, Depends(require_role(Role.CONTROL_PLANE))]
DataPlaneCaller = Annotated[Principal, Depends(require_role(Role.DATA_PLANE))]
