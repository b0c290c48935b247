"""Run every benchmark and write docs/benchmarks.md (``make bench``)."""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = [
    "tests.bench.codec",
    "tests.bench.bus",
    "services.state.bench",
    "services.strategy.bench",
    "services.marketdata.bench",
    "services.exchange_sim.bench",
    "services.gateway.bench",
    "services.execution.bench",
    "backtest.bench",
    "tests.bench.stack",
]


def main() -> None:
    rows: list[tuple] = []
    failed: list[str] = []
    for name in SUITES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        if not hasattr(module, "run"):
            print(f"skipping {name}: no run()", file=sys.stderr)
            continue
        print(f"running {name} ...", file=sys.stderr)
        try:
            results = list(module.run())
        except Exception as exc:  # one broken suite must not hide the others' figures
            traceback.print_exc()
            results = [(f"{name}: FAILED", f"{type(exc).__name__}: {exc}"[:120], "-")]
            failed.append(name)
        for row in results:
            print(" | ".join(row), file=sys.stderr)
            rows.append(row)
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}.",
        "Figures vary between runs by a few percent; compare rows of the same run.",
        "",
        "| measure | value | unit |",
        "| --- | ---: | --- |",
        *[f"| {name} | {value} | {unit} |" for name, value, unit in rows],
        "",
    ]
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
