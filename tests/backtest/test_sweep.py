"""Parameter sweep: combos from the schema, ranking, held-out period, invalid combos skipped."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from backtest.engine import BacktestConfig
from backtest.history import read_candles
from backtest.sweep import grid, main, parse_range, run_sweep, sample
from shared.strategies.swing import SWING_PARAMS

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "klines" / "BTCUSDT_1m_20210420_first3000.csv"


def test_grid_ranges_come_from_values_or_lo_hi_step() -> None:
    space = {"ema_fast": parse_range(SWING_PARAMS["ema_fast"], "5:9:2", for_grid=True),
             "sl_tp_mode": parse_range(SWING_PARAMS["sl_tp_mode"], None, for_grid=True)}

    combos = grid(space)

    assert space["ema_fast"] == [5, 7, 9]
    assert len(combos) == 6 and {"ema_fast": 9, "sl_tp_mode": "atr"} in combos


def test_random_samples_stay_in_the_schema_bounds_and_repeat_for_a_seed() -> None:
    specs = {s.name: s for s in SWING_PARAMS.specs}
    space = {name: parse_range(specs[name], None, for_grid=False)
             for name in ("rsi_period", "stop_loss_pct", "trailing_stop")}

    first = sample(space, specs, 30, seed=3)

    assert first == sample(space, specs, 30, seed=3)
    assert all(2 <= c["rsi_period"] <= 100 for c in first)
    assert all(Decimal("0.01") <= c["stop_loss_pct"] <= Decimal("50") for c in first)


def test_sweep_ranks_by_the_in_sample_metric_and_reports_held_out() -> None:
    candles = read_candles(FIXTURE)
    combos = [{"ema_fast": f, "ema_slow": s} for f in (5, 9, 30) for s in (21, 26)]

    sweep = run_sweep(BacktestConfig(), combos, candles, metric="total_return", holdout=0.4,
                      processes=1)

    ranked = sweep["ranked"]
    values = [r["in_sample"]["total_return"] for r in ranked]
    assert values == sorted(values, reverse=True)
    assert [r["rank"] for r in ranked] == list(range(1, 5))
    assert all("held_out" in r and r["held_out"]["candles"] == 1200 for r in ranked)
    assert len(sweep["skipped"]) == 2  # ema_fast 30 >= ema_slow: refused by the schema
    assert sweep["best_in_sample_held_out_rank"] in range(1, 5)


def test_lower_drawdown_ranks_first() -> None:
    candles = read_candles(FIXTURE).slice(0, 1500)
    combos = [{"ema_fast": f} for f in (5, 9, 13)]

    sweep = run_sweep(BacktestConfig(), combos, candles, metric="max_drawdown", processes=1)

    values = [r["in_sample"]["max_drawdown"] for r in sweep["ranked"]]
    assert values == sorted(values)


@pytest.mark.timeout(120)
def test_command_line_uses_worker_processes(tmp_path, capsys) -> None:
    out = tmp_path / "sweep.json"

    code = main(["--data", str(FIXTURE), "--grid", "ema_fast=5,9", "--processes", "2",
                 "--out", str(out)])

    assert code == 0 and out.exists()
    assert "in-sample best ranks" in capsys.readouterr().out
