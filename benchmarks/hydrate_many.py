"""Hydrate 1,000 configs with hydrate_many against 1,000 single hydrations.

Run: python -m benchmarks.hydrate_many
"""

from __future__ import annotations

import time

from benchmarks.common import config_with, new_scope, print_row, service, spec_with

CONFIGS = 1_000
SECRETS = 2


def main() -> dict[str, float]:
    print(f"(4) {CONFIGS} configs of {SECRETS} secrets, local backend on SQLite")
    with service() as keyrefs:
        spec = spec_with(SECRETS)
        items = []
        for index in range(CONFIGS):
            scope = new_scope()
            stored = keyrefs.process(scope, spec, config_with(SECRETS, f"c{index}"))
            items.append((stored, scope.actor_id))
        keyrefs.hydrate_many(items[:10])

        start = time.perf_counter()
        results = keyrefs.hydrate_many(items)
        batch = time.perf_counter() - start
        assert all(result.error is None for result in results)

        start = time.perf_counter()
        for stored, actor_id in items:
            keyrefs.hydrate(stored, actor_id)
        single = time.perf_counter() - start
    print_row("", "hydrate_many s", "1,000 hydrate s", "single / many")
    print_row("", round(batch, 3), round(single, 3), round(single / batch, 1))
    return {"many": batch, "single": single}


if __name__ == "__main__":
    main()
