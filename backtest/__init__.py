"""Backtester: history download, event-driven runs of the real strategy classes through the
shared fill model, reports (JSON + HTML), parameter sweeps and benchmarks.

See ``docs/backtesting.md``. Entry points: ``python -m backtest`` (a run or a sweep) and
``python -m backtest.history`` (download klines).
"""
