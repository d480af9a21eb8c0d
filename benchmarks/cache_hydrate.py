"""Repeated hydration of one config of 20 secrets, cache on and off, on OpenBao.

Run: python -m benchmarks.cache_hydrate
"""

from __future__ import annotations

from contextlib import ExitStack

from benchmarks.common import (
    config_with,
    median_seconds,
    new_scope,
    openbao_server,
    print_row,
    service,
    spec_with,
    vault_variables,
)
from benchmarks.proxy import delaying_proxy

REPEATS = 30


def measure(url: str, cache_ttl: str) -> float:
    # No rate limit, so that cache off measures the reads, not the bucket.
    variables = {**vault_variables(url), "vault_max_rps": "0"}
    with service(cache_ttl=cache_ttl, **variables) as keyrefs:
        scope = new_scope()
        stored = keyrefs.process(scope, spec_with(20), config_with(20, "c"))
        return median_seconds(lambda: keyrefs.hydrate(stored, scope.actor_id), REPEATS)


def main() -> dict[str, dict[str, float]]:
    print(f"(5) Vault/OpenBao: hydrate one config of 20 secrets {REPEATS} times")
    figures = {}
    with ExitStack() as stack:
        port = stack.enter_context(openbao_server())
        delayed = stack.enter_context(delaying_proxy(port))
        print_row("", "cache off ms", "cache on ms", "off / on")
        for label, url in (
            ("direct", f"http://127.0.0.1:{port}"),
            ("proxy 10 ms each way", delayed),
        ):
            off, on = measure(url, "0"), measure(url, "60")
            figures[label] = {"off": off, "on": on}
            print_row(
                label, round(off * 1000, 2), round(on * 1000, 2), round(off / on, 1)
            )
    return figures


if __name__ == "__main__":
    main()
