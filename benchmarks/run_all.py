"""Run every benchmark in one process and print the machine they ran on.

Run: python -m benchmarks.run_all
"""

from __future__ import annotations

import os
import platform

from benchmarks import (
    aws_hydrate,
    cache_hydrate,
    hydrate_many,
    sql_statements,
    vault_hydrate,
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}"
    )
    for module in (
        vault_hydrate,
        aws_hydrate,
        sql_statements,
        hydrate_many,
        cache_hydrate,
    ):
        module.main()
        print()


if __name__ == "__main__":
    main()
