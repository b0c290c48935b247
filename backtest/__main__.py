"""``python -m backtest``: one backtest run, written as a JSON + HTML report.

Examples::

    python -m backtest --strategy SWING --symbol BTCUSDT --interval 1m \\
        --data data/klines/BTCUSDT_1m_20210420-20210520.csv.gz --params '{"ema_fast": 12}'
    python -m backtest --bot 1 --param-version 3 --start 2021-05-01 --end 2021-05-10 \\
        --base-url http://127.0.0.1:9010/api      # params of saved bot 1, version 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from backtest.engine import BacktestConfig, run_backtest
from backtest.history import CandleArrays, download, make_client, parse_time, read_candles
from backtest.report import compute_metrics, write_report
from shared.errors import ValidationError
from shared.strategies import STRATEGIES
from shared.strategies.base import KLINE_INTERVALS_MS


def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR", "var"))


def load_params(text: str | None) -> dict[str, Any]:
    """``--params``: a JSON object, or ``@file.json``."""
    if not text:
        return {}
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    params = json.loads(raw)
    if not isinstance(params, dict):
        raise SystemExit("--params must be a JSON object")
    return params


def saved_params(bot_id: int, version: int | None, state_dir: Path) -> dict[str, Any]:
    """Strategy, symbol, timeframe and params of a saved bot's param version (state's DB)."""
    from services.state.store import Store

    with Store.open(state_dir, default_bot=None) as store:
        return store.get_params(bot_id, version)


def load_history(args: argparse.Namespace, symbol: str, interval: str) -> CandleArrays:
    """``--data`` as given, or ``--start/--end`` downloaded (resumed) into DATA_DIR/history."""
    if args.data:
        candles = read_candles(args.data)
    else:
        if not args.start:
            raise SystemExit("give --data FILE or --start (and --end) to download")
        path = data_dir() / "history" / f"{symbol}_{interval}.csv"
        client = make_client(args.base_url)
        try:
            end_ms = parse_time(args.end) if args.end else 2**62
            download(client, symbol, interval, parse_time(args.start), end_ms, path,
                     progress=not args.no_progress)
        finally:
            client.close_connection()
        candles = read_candles(path)
    return _window(candles, args.start, args.end)


def _window(candles: CandleArrays, start: str | None, end: str | None) -> CandleArrays:
    import numpy as np

    times = candles.open_time_ms
    lo = int(np.searchsorted(times, parse_time(start))) if start else 0
    hi = int(np.searchsorted(times, parse_time(end), side="right")) if end else len(times)
    return candles.slice(lo, hi)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=list(STRATEGIES), default=None,
                        help="default SWING, or the saved bot's")
    parser.add_argument("--symbol", default=None, help="default BTCUSDT, or the saved bot's")
    parser.add_argument("--interval", choices=list(KLINE_INTERVALS_MS), default=None)
    parser.add_argument("--data", help="kline CSV (.csv or .csv.gz, the data/ format)")
    parser.add_argument("--start", help="UTC date/time or epoch ms (window, or download from)")
    parser.add_argument("--end", help="UTC date/time or epoch ms")
    parser.add_argument("--base-url", help="REST base for downloads, e.g. the simulator's "
                        "http://127.0.0.1:9010/api (default: Binance)")
    parser.add_argument("--params", help='JSON object, e.g. \'{"ema_fast": 12}\', or @file.json')
    parser.add_argument("--bot", type=int, help="take params from this saved bot ...")
    parser.add_argument("--param-version", type=int, help="... at this version (default current)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="directory of state.db (default DATA_DIR, i.e. var)")
    parser.add_argument("--balance", type=Decimal, default=Decimal("10000"),
                        help="starting quote balance (default 10000)")
    parser.add_argument("--fee", type=Decimal, default=Decimal("0.001"),
                        help="commission rate, maker and taker (default 0.001 = 0.1%%)")
    parser.add_argument("--protective", choices=("oco", "none"), default="oco",
                        help="native SL/TP OCO after each entry (default), or strategy exits only")
    parser.add_argument("--driver", choices=("auto", "pure", "fast"), default="auto")
    parser.add_argument("--out", type=Path, default=None,
                        help="reports directory (default DATA_DIR/reports)")
    parser.add_argument("--name", help="report file name (default derived from the run)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> BacktestConfig:
    saved: dict[str, Any] = {}
    if args.bot is not None:
        saved = saved_params(args.bot, args.param_version, args.state_dir or data_dir())
    params = {**saved.get("params", {}), **load_params(args.params)}
    return BacktestConfig(
        strategy=args.strategy or saved.get("strategy", "SWING"),
        symbol=args.symbol or saved.get("symbol", "BTCUSDT"),
        interval=args.interval or saved.get("timeframe", "1m"),
        params=params, starting_quote=args.balance, fee_rate=args.fee,
        protective=args.protective,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        config.strategy_params()  # every bad field at once, before any download
        candles = load_history(args, config.symbol, config.interval)
        result = run_backtest(config, candles, driver=args.driver, progress=not args.no_progress)
    except ValidationError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 2
    json_path, html_path = write_report(result, args.out or data_dir() / "reports", args.name)
    metrics = compute_metrics(result)
    print(json.dumps({k: metrics[k] for k in ("total_return", "max_drawdown", "sharpe",
                                             "sortino", "win_rate", "profit_factor", "trades",
                                             "exposure", "fees_paid")}, indent=1))
    print(f"{len(candles):,} candles in {result.elapsed_s:.2f} s ({result.driver} driver)")
    print(f"report: {json_path}\n        {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
