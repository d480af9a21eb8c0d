"""Hydrate 20 secrets on AWS (moto over HTTP) against one raw BatchGetSecretValue.

Run: python -m benchmarks.aws_hydrate
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import boto3

from benchmarks.common import (
    AWS_KEY,
    AWS_REGION,
    aws_variables,
    config_with,
    median_seconds,
    moto_server,
    new_scope,
    print_row,
    service,
    spec_with,
)
from benchmarks.proxy import delaying_proxy
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.service.guarded_backend import unwrap

REPEATS = 15


def batch_calls(keyrefs: object, count: int) -> int:
    """Return the BatchGetSecretValue calls one hydration of `count` secrets makes."""
    from keyrefs.service import KeyrefsService

    assert isinstance(keyrefs, KeyrefsService)
    scope = new_scope()
    stored = keyrefs.process(scope, spec_with(count), config_with(count, "n"))
    client = unwrap(keyrefs.backends.get(DEFAULT_STORAGE_ID))._client  # type: ignore[attr-defined]
    calls: list[str] = []
    client.meta.events.register(
        "before-call.secrets-manager.BatchGetSecretValue",
        lambda **_: calls.append("batch"),
    )
    keyrefs.hydrate(stored, scope.actor_id)
    return len(calls)


def measure(url: str) -> dict[str, float]:
    with service(**aws_variables(url)) as keyrefs:
        scope = new_scope()
        stored = keyrefs.process(scope, spec_with(20), config_with(20, "a"))
        keyrefs_time = median_seconds(
            lambda: keyrefs.hydrate(stored, scope.actor_id), REPEATS
        )
        names = [stored[f"field_{i}"]["_secret"] for i in range(20)]
        client = boto3.client(
            "secretsmanager",
            endpoint_url=url,
            region_name=AWS_REGION,
            aws_access_key_id=AWS_KEY,
            aws_secret_access_key=AWS_KEY,
        )
        raw = median_seconds(
            lambda: client.batch_get_secret_value(SecretIdList=names), REPEATS
        )
        calls_20 = batch_calls(keyrefs, 20)
        calls_50 = batch_calls(keyrefs, 50)
    return {
        "keyrefs": keyrefs_time,
        "raw": raw,
        "calls_20": calls_20,
        "calls_50": calls_50,
    }


def main() -> dict[str, dict[str, float]]:
    print(f"(2) AWS Secrets Manager on moto: hydrate 20 secrets, median of {REPEATS}")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    figures = {}
    with ExitStack() as stack:
        port = stack.enter_context(moto_server())
        delayed = stack.enter_context(delaying_proxy(port))
        for label, url in (
            ("direct", f"http://127.0.0.1:{port}"),
            ("proxy 10 ms each way", delayed),
        ):
            result = measure(url)
            figures[label] = result
            print_row(label, "keyrefs ms", "raw batch ms")
            print_row(
                "", round(result["keyrefs"] * 1000, 1), round(result["raw"] * 1000, 1)
            )
            print_row(
                "  keyrefs / raw batch (goal <= 1.15)",
                round(result["keyrefs"] / result["raw"], 2),
            )
            print_row(
                "  batch calls for 20 / 50 secrets",
                f"{result['calls_20']:.0f} / {result['calls_50']:.0f}",
            )
    return figures


if __name__ == "__main__":
    main()
