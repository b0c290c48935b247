"""Benchmark of the state store (not a test): durable fill recording and snapshot cost.

Usage: python -m services.state.bench [--fills N] [--orders N] [--data-dir DIR]
Prints recorded fill events per second with durable (synchronous=FULL) commits, then the
snapshot's size and time, and one history page's time, with ``--orders`` orders stored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from services.state.store import Store

SYMBOL = "BTCUSDT"


def bench_fills(store: Store, count: int) -> float:
    """Record ``count`` alternating buy/sell fills of bot 1, one transaction each."""
    store.record_order_event({
        "client_order_id": "bench-buy", "bot_id": 1, "symbol": SYMBOL, "side": "BUY",
        "type": "MARKET", "qty": "1000", "status": "NEW",
    })
    store.record_order_event({
        "client_order_id": "bench-sell", "bot_id": 1, "symbol": SYMBOL, "side": "SELL",
        "type": "MARKET", "qty": "1000", "status": "NEW",
    })
    started = time.perf_counter()
    for trade_id in range(1, count + 1):
        side = "BUY" if trade_id % 2 else "SELL"
        store.record_fill({
            "symbol": SYMBOL, "trade_id": trade_id, "client_order_id": f"bench-{side.lower()}",
            "side": side, "price": f"{100 + trade_id % 7}.25",
            "qty": "0.01" if side == "BUY" else "0.00999",  # what the BUY fee left
            "commission": "0.00001" if side == "BUY" else "0.001",
            "commission_asset": "BTC" if side == "BUY" else "USDT",
        })
    return count / (time.perf_counter() - started)


def fill_orders(store: Store, count: int, open_count: int = 100) -> None:
    """Bulk-load ``count`` orders straight into the table (setup, not measured)."""
    now = int(time.time() * 1000)
    rows = [
        (f"hist-{index}", str(index), 1, SYMBOL, "BUY" if index % 2 else "SELL", "LIMIT",
         "100.5", "0.01", "NEW" if index >= count - open_count else "FILLED",
         "0" if index >= count - open_count else "0.01", "1.005", now - count + index,
         now - count + index)
        for index in range(count)
    ]
    conn = store._conn  # bench setup only: the Store has no bulk-import method
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO orders (client_order_id, exchange_order_id, bot_id, symbol, side, type,"
        " price, qty, status, executed_qty, cumulative_quote_qty, created_at_ms,"
        " updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")


def timed(function, repeat: int = 5) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls, in milliseconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best * 1000, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="state-bench-"))
    try:
        with Store.open(data_dir) as store:
            rate = bench_fills(store, args.fills)
            print(f"state: {args.fills} fills recorded, {rate:,.0f} events/s (durable commits)")
            fill_orders(store, args.orders)
            snapshot_ms, snapshot = timed(store.snapshot)
            size_kb = len(json.dumps(snapshot).encode()) / 1024
            print(f"state: snapshot with {args.orders:,} orders stored: {snapshot_ms:.1f} ms,"
                  f" {size_kb:.1f} KiB JSON ({len(snapshot['open_orders'])} open orders)")
            page_ms, _ = timed(lambda: store.list_orders(bot_id=1, limit=100, before=50_000))
            print(f"state: one page of 100 orders (bot filter, before=50000): {page_ms:.1f} ms")
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
