"""Hydrate 20 secrets on OpenBao, against 20 raw hvac reads, with and without delay.

Run: python -m benchmarks.vault_hydrate
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import hvac

from benchmarks.common import (
    ROOT_TOKEN,
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

SECRETS = 20
REPEATS = 15


def measure(url: str) -> dict[str, float]:
    with service(**vault_variables(url)) as keyrefs:
        scope = new_scope()
        stored = keyrefs.process(scope, spec_with(SECRETS), config_with(SECRETS, "v"))
        keyrefs_time = median_seconds(
            lambda: keyrefs.hydrate(stored, scope.actor_id), REPEATS
        )

    clients = [
        hvac.Client(url=url, token=ROOT_TOKEN, timeout=10) for _ in range(SECRETS)
    ]
    paths = [f"bench-raw/{i}" for i in range(SECRETS)]
    for path in paths:
        clients[0].secrets.kv.v2.create_or_update_secret(
            path, secret={"value": path}, mount_point="secret"
        )

    def read(index: int) -> None:
        clients[index].secrets.kv.v2.read_secret_version(
            paths[index], mount_point="secret", raise_on_deleted_version=True
        )

    with ThreadPoolExecutor(max_workers=SECRETS) as pool:
        concurrent = median_seconds(
            lambda: list(pool.map(read, range(SECRETS))), REPEATS
        )

    def sequential_reads() -> None:
        for path in paths:
            clients[0].secrets.kv.v2.read_secret_version(
                path, mount_point="secret", raise_on_deleted_version=True
            )

    sequential = median_seconds(sequential_reads, max(3, REPEATS // 3))
    for client in clients:
        client.adapter.close()
    return {"keyrefs": keyrefs_time, "concurrent": concurrent, "sequential": sequential}


def main() -> dict[str, dict[str, float]]:
    print(f"(1) Vault/OpenBao: hydrate {SECRETS} secrets, median of {REPEATS} runs")
    figures = {}
    with ExitStack() as stack:
        port = stack.enter_context(openbao_server())
        direct = f"http://127.0.0.1:{port}"
        delayed = stack.enter_context(delaying_proxy(port))
        for label, url in (("direct", direct), ("proxy 10 ms each way", delayed)):
            result = measure(url)
            figures[label] = result
            print_row(label, "keyrefs ms", "20 concurrent ms", "20 sequential ms")
            print_row(
                "",
                round(result["keyrefs"] * 1000, 1),
                round(result["concurrent"] * 1000, 1),
                round(result["sequential"] * 1000, 1),
            )
            print_row(
                "  keyrefs / concurrent (goal <= 1.15)",
                round(result["keyrefs"] / result["concurrent"], 2),
            )
            print_row(
                "  sequential / keyrefs (goal >= 10)",
                round(result["sequential"] / result["keyrefs"], 2),
            )
    return figures


if __name__ == "__main__":
    main()
