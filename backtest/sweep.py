"""Parameter sweep: grid or random over the strategy's schema, on every core, with a held-out
period next to the in-sample one so over-fitting shows.

``python -m backtest.sweep --data FILE --grid ema_fast=5,9,13 ema_slow=21:41:10 --metric sharpe``
``python -m backtest.sweep --data FILE --random 40 --seed 7 --vary ema_fast ema_slow rsi_period``

Ranges: ``name=a,b,c`` (values), ``name=lo:hi:step`` (inclusive numeric range) or, for random
sampling, ``name=lo:hi`` or just the name (the schema's min..max, its choices, or true/false).
Every combination is validated by the schema; invalid ones (e.g. ``ema_fast >= ema_slow``) are
listed as skipped. The candles are split in time: the first ``1 - holdout`` fraction is
in-sample, the rest held out (warmed up on the candles just before it, never traded on them).
Combinations are ranked by the in-sample ``--metric``; the held-out value sits beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqdm import tqdm

from backtest.engine import Backtest, BacktestConfig, run_backtest
from backtest.history import CandleArrays, read_candles
from backtest.report import compute_metrics
from shared.errors import ValidationError
from shared.params import ParamSpec
from shared.strategies import STRATEGIES, get_strategy

METRICS = ("sharpe", "sortino", "total_return", "profit_factor", "win_rate", "max_drawdown")
LOWER_IS_BETTER = frozenset({"max_drawdown"})


def _number(spec: ParamSpec, text: str) -> Any:
    if spec.type == "int":
        return int(text)
    if spec.type == "decimal":
        return Decimal(text)
    if spec.type == "float":
        return float(text)
    if spec.type == "bool":
        return text.lower() == "true"
    return text


def parse_range(spec: ParamSpec, text: str | None, for_grid: bool) -> list[Any] | tuple[Any, Any]:
    """A list of values (grid or choice) or a ``(lo, hi)`` interval (random sampling)."""
    if text is None:
        if spec.type in ("choice",):
            return list(spec.choices or ())
        if spec.type == "bool":
            return [False, True]
        if spec.min is None or spec.max is None or for_grid:
            raise ValueError(f"{spec.name}: give values (name=a,b or name=lo:hi:step)")
        return (spec.min, spec.max)
    if ":" in text:
        parts = [_number(spec, p) for p in text.split(":")]
        if len(parts) == 2 and not for_grid:
            return (parts[0], parts[1])
        if len(parts) != 3:
            raise ValueError(f"{spec.name}: a range is lo:hi:step (grid) or lo:hi (random)")
        lo, hi, step = parts
        values, value = [], lo
        while value <= hi:
            values.append(value)
            value += step
        return values
    return [_number(spec, p) for p in text.split(",")]


def grid(space: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(space)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(space[n] for n in names))]


def sample(space: Mapping[str, Any], specs: Mapping[str, ParamSpec], count: int,
           seed: int) -> list[dict[str, Any]]:
    """``count`` random combinations (uniform per parameter), deterministic for ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        combo = {}
        for name, rng_def in space.items():
            spec = specs[name]
            if isinstance(rng_def, list):
                combo[name] = rng.choice(rng_def)
            elif spec.type == "int":
                combo[name] = rng.randint(int(rng_def[0]), int(rng_def[1]))
            elif spec.type == "decimal":
                value = rng.uniform(float(rng_def[0]), float(rng_def[1]))
                combo[name] = Decimal(f"{value:.4f}")
            else:
                combo[name] = round(rng.uniform(float(rng_def[0]), float(rng_def[1])), 4)
        out.append(combo)
    return out


# --------------------------------------------------------------------------- running

_CANDLES: CandleArrays | None = None


def _init_worker(candles: CandleArrays) -> None:
    global _CANDLES
    _CANDLES = candles


def split_point(n: int, holdout: float) -> int:
    return int(round(n * (1.0 - holdout)))


def evaluate(job: tuple[BacktestConfig, int, str]) -> dict[str, Any]:
    """In-sample and held-out metrics of one config (run in a worker process)."""
    config, split, driver = job
    candles = _CANDLES
    assert candles is not None
    params = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in config.params.items()}
    try:
        warmup = Backtest(config, candles.slice(0, 1)).strategy.warmup_candles()
    except (ValidationError, ValueError) as exc:
        return {"params": params, "skipped": str(exc)}
    row: dict[str, Any] = {"params": params}
    windows = {"in_sample": candles.slice(0, split)}
    if split < len(candles):
        windows["held_out"] = candles.slice(max(0, split - warmup), len(candles))
    for name, window in windows.items():
        result = run_backtest(config, window, driver=driver)
        row[name] = compute_metrics(result)
    return row


def _key(metric: str):
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get("in_sample", {}).get(metric)
        return (1, 0.0) if value is None else (0, sign * value)

    return key


def run_sweep(base: BacktestConfig, combos: Iterable[Mapping[str, Any]], candles: CandleArrays,
              metric: str = "sharpe", holdout: float = 0.3, processes: int | None = None,
              driver: str = "auto", progress: bool = False) -> dict[str, Any]:
    """Every combo over the in-sample and held-out windows, ranked by the in-sample metric."""
    split = split_point(len(candles), holdout)
    jobs = [(replace(base, params={**dict(base.params), **combo}), split, driver)
            for combo in combos]
    processes = processes or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), disable=not progress, unit="run", desc="sweep")
    if processes == 1 or len(jobs) < 2:
        _init_worker(candles)
        rows = []
        for job in jobs:
            rows.append(evaluate(job))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes, initializer=_init_worker, initargs=(candles,)) as pool:
            rows = []
            for row in pool.imap(evaluate, jobs, chunksize=1):  # keeps the order of ``jobs``
                rows.append(row)
                bar.update()
    bar.close()
    done = sorted((r for r in rows if "skipped" not in r), key=_key(metric))
    for rank, row in enumerate(done, 1):
        row["rank"] = rank
    held = [r for r in done if r.get("held_out", {}).get(metric) is not None]
    return {
        "kind": "sweep", "metric": metric, "holdout": holdout, "split_index": split,
        "processes": processes, "config": base.to_dict(),
        "ranked": done, "skipped": [r for r in rows if "skipped" in r],
        "best_in_sample_held_out_rank": _held_rank(done, held, metric),
    }


def _held_rank(done: list[dict], held: list[dict], metric: str) -> int | None:
    """Where the in-sample winner lands when ranked on the held-out period (1 = still best)."""
    if not done or not held:
        return None
    by_held = sorted(held, key=lambda r: _key(metric)({"in_sample": r["held_out"]}))
    return next((i for i, r in enumerate(by_held, 1) if r is done[0]), None)


def format_table(sweep: dict[str, Any], top: int = 20) -> str:
    metric = sweep["metric"]
    lines = [f"{'rank':>4}  {'in-sample ' + metric:>20}  {'held-out ' + metric:>20}  params"]
    for row in sweep["ranked"][:top]:
        ins = row["in_sample"].get(metric)
        out = row.get("held_out", {}).get(metric)
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        lines.append(f"{row['rank']:>4}  {fmt(ins):>20}  {fmt(out):>20}  "
                     f"{json.dumps(row['params'])}")
    lines.append(f"in-sample best ranks #{sweep['best_in_sample_held_out_rank']} on the "
                 f"held-out period; {len(sweep['skipped'])} combos skipped (invalid)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backtest.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=list(STRATEGIES), default="SWING")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--interval", default="1m")
    parser.add_argument("--data", required=True)
    parser.add_argument("--params", default="{}", help="fixed params (JSON)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--grid", nargs="+", metavar="NAME=VALUES")
    mode.add_argument("--random", type=int, metavar="N", help="N random combos of --vary")
    parser.add_argument("--vary", nargs="+", default=[], metavar="NAME[=RANGE]")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metric", choices=METRICS, default="sharpe")
    parser.add_argument("--holdout", type=float, default=0.3, help="held-out fraction (end)")
    parser.add_argument("--processes", type=int, default=None, help="default: all cores")
    parser.add_argument("--fee", type=Decimal, default=Decimal("0.001"))
    parser.add_argument("--balance", type=Decimal, default=Decimal("10000"))
    parser.add_argument("--out", type=Path, default=None, help="write the sweep JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    specs = {s.name: s for s in get_strategy(args.strategy).params_schema.specs}
    items = args.grid or args.vary
    space: dict[str, Any] = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in specs:
            parser.error(f"unknown parameter {name!r}; allowed: {', '.join(specs)}")
        space[name] = parse_range(specs[name], text or None, for_grid=bool(args.grid))
    combos = grid(space) if args.grid else sample(space, specs, args.random, args.seed)
    base = BacktestConfig(strategy=args.strategy, symbol=args.symbol, interval=args.interval,
                          params=json.loads(args.params), fee_rate=args.fee,
                          starting_quote=args.balance)
    sweep = run_sweep(base, combos, read_candles(args.data), args.metric, args.holdout,
                      args.processes, progress=not args.no_progress)
    print(format_table(sweep))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(sweep, indent=1, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
