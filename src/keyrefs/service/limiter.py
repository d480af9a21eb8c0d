"""Request rate limits per secret storage: token buckets with throttle backoff.

Each storage gets one bucket, whose rate comes from `KEYREFS_<BACKEND>_MAX_RPS`
for the storage's type. The defaults sit below the quotas the vendors publish:

- AWS Secrets Manager: GetSecretValue 10,000 requests per second and
  BatchGetSecretValue 100 requests per second, per account and region. The
  default is 5,000 requests per second plus a second bucket of 80 batch reads
  per second.
- Azure Key Vault: 4,000 secret transactions per 10 seconds per vault, that is
  400 per second. The default is 300.
- Google Secret Manager: 90,000 secret version accesses per minute per project,
  that is 1,500 per second. The default is 1,200.
- Vault and OpenBao publish no quota (operators configure rate limit quotas
  themselves). The default of 500 per second is a guess that keeps one
  keyrefs process from saturating a small cluster.

The local backend is the keyrefs database itself and has no limit by default.
A rate of 0 turns the limit off.

The limits apply per process: several keyrefs processes that share one
account, vault or project share its quota, so set the rates lower for them.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from keyrefs.settings import Settings

DEFAULT_MAX_RPS = {
    "vault": 500.0,
    "aws_secrets_manager": 5_000.0,
    "google_secret_manager": 1_200.0,
    "azure_key_vault": 300.0,
    "local": 0.0,
}
DEFAULT_AWS_BATCH_MAX_RPS = 80.0

# Backoff after a call that still ended Throttled once the backend's own
# retries (backends/retry.py) gave up: every caller of the storage waits.
BACKOFF_INITIAL_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """A token bucket: `rate` tokens per second, at most `burst` stored.

    `acquire` blocks until the tokens are available; callers queue in the
    order they reserve tokens, because a reservation may drive the balance
    negative and the next caller then waits for it to refill.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._tokens = self.burst
        self._updated = clock()
        self._paused_until = 0.0
        self._throttle_streak = 0
        self._lock = threading.Lock()

    def acquire(self, cost: float = 1.0) -> float:
        """Take `cost` tokens, sleeping until they are there; return the wait."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            wait = max(0.0, self._paused_until - now)
            # The balance at the end of the pause decides the rest of the wait.
            balance = self._tokens + wait * self.rate - cost
            if balance < 0:
                wait += -balance / self.rate
            self._tokens -= cost
        if wait > 0:
            self._sleep(wait)
        return wait

    def record_throttle(self) -> float:
        """Pause the bucket for a jittered, growing backoff; return the pause."""
        with self._lock:
            self._throttle_streak += 1
            ceiling = min(
                BACKOFF_MAX_SECONDS,
                BACKOFF_INITIAL_SECONDS * 2 ** (self._throttle_streak - 1),
            )
            pause = self._jitter(ceiling / 2, ceiling)
            now = self._clock()
            self._refill(now)
            self._paused_until = max(self._paused_until, now + pause)
            return pause

    def record_success(self) -> None:
        with self._lock:
            self._throttle_streak = 0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)


@dataclass(frozen=True)
class RateLimits:
    """Requests per second per storage type; 0 or a missing type means no limit."""

    max_rps: dict[str, float]
    aws_batch_max_rps: float = DEFAULT_AWS_BATCH_MAX_RPS

    def bucket_for(
        self,
        storage_type: str,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> TokenBucket | None:
        rate = self.max_rps.get(storage_type, 0.0)
        return TokenBucket(rate, clock=clock, sleep=sleep) if rate > 0 else None

    def batch_bucket_for(
        self,
        storage_type: str,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> TokenBucket | None:
        """Return the extra bucket of batch reads, which only AWS has."""
        if storage_type != "aws_secrets_manager" or self.aws_batch_max_rps <= 0:
            return None
        return TokenBucket(self.aws_batch_max_rps, clock=clock, sleep=sleep)


NO_LIMITS = RateLimits(max_rps={}, aws_batch_max_rps=0.0)


def batch_request_count(item_count: int, batch_size: int | None) -> int:
    """Return how many requests a batch read of `item_count` items makes."""
    if item_count <= 0:
        return 0
    if batch_size is None:
        return 1
    return math.ceil(item_count / batch_size)


def limits_from_settings(settings: Settings) -> RateLimits:
    """Build the limits from the `KEYREFS_<BACKEND>_MAX_RPS` settings."""
    return RateLimits(
        max_rps={
            "vault": settings.vault_max_rps,
            "aws_secrets_manager": settings.aws_max_rps,
            "google_secret_manager": settings.gcp_max_rps,
            "azure_key_vault": settings.azure_max_rps,
            "local": settings.local_max_rps,
        },
        aws_batch_max_rps=settings.aws_batch_max_rps,
    )
