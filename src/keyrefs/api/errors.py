"""One JSON error shape, and one HTTP status per keyrefs exception class.

Every error body is `{"error": {"code": ..., "message": ...}}`. keyrefs
messages name ids, paths and coordinates, never values, so they are sent as
they are. Request validation errors list field locations and error types and
never the input. Unexpected exceptions are logged by type and traceback on the
server and answered with a fixed message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyrefs.api.metrics import Metrics
from keyrefs.errors import (
    BackendError,
    BackendUnavailable,
    Conflict,
    InvalidInput,
    KeyrefsError,
    NotFound,
    Throttled,
)
from keyrefs.service.tokens import InvalidToken, RoleNotAllowed

logger = logging.getLogger(__name__)

MAX_LISTED_VALIDATION_ERRORS = 10

# Checked in order, so a subclass comes before its family.
STATUS_BY_ERROR: list[tuple[type[KeyrefsError], int]] = [
    (InvalidToken, 401),
    (RoleNotAllowed, 403),
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (BackendUnavailable, 503),
    (Throttled, 503),
    (BackendError, 502),
]


def status_of(error: KeyrefsError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status, headers=headers
    )


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def keyrefs_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KeyrefsError)
        status = status_of(exc)
        metrics.count_error(exc.code)
        if status >= 500:
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, str(exc), headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        metrics.count_error("invalid_request")
        return error_response(422, "invalid_request", describe_validation(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        metrics.count_error(code)
        return error_response(exc.status_code, code, str(exc.detail))

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # The exception text may quote database parameters, so it is logged
        # with its traceback on the server and never sent.
        logger.error(
            "%s %s failed with %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc_info=exc,
        )
        metrics.count_error("internal_error")
        return error_response(500, "internal_error", "internal server error")

    app.add_exception_handler(KeyrefsError, keyrefs_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def describe_validation(exc: RequestValidationError) -> str:
    """List each invalid field as location and error type, without its input."""
    errors = exc.errors()
    parts = []
    for error in errors[:MAX_LISTED_VALIDATION_ERRORS]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{location or 'body'}: {error.get('type', 'invalid')}")
    more = len(errors) - MAX_LISTED_VALIDATION_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return "request is invalid: " + "; ".join(parts)


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}
