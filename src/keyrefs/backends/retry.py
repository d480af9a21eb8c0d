"""Retry of transient backend errors with jittered exponential backoff."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from keyrefs.errors import KeyrefsError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retries of one backend call."""

    max_attempts: int = 5
    max_seconds: float = 10.0
    initial_wait: float = 0.05
    max_wait: float = 2.0


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, KeyrefsError) and exc.transient


def call_with_retry(
    operation: str,
    target: str,
    call: Callable[[], T],
    policy: RetryPolicy = DEFAULT_RETRY,
) -> T:
    """Run `call`, retrying transient keyrefs errors; `target` names a coordinate."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "retrying %s of %s after attempt %d failed: %s",
            operation,
            target,
            state.attempt_number,
            type(error).__name__,
        )

    retrying = Retrying(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(policy.max_attempts)
        | stop_after_delay(policy.max_seconds),
        wait=wait_random_exponential(
            multiplier=policy.initial_wait, max=policy.max_wait
        ),
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(call)
