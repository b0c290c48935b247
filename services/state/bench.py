"""Benchmark of the state store (not a test): durable fill recording and snapshot cost.

Usage: python -m services.state.bench [--fills N] [--orders N] [--data-dir DIR]
Prints recorded fill events per second with durable (synchronous=FULL) commits, straight
into the store and through the service's request/reply (acknowledged once on disk), then
the snapshot's size and time, and one history page's time, with ``--orders`` orders stored.
``run()`` returns the same figures as ``(name, value, unit)`` rows for ``make bench``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from services.state.service import StateService
from services.state.store import Store
from shared.bus import RequestClient
from shared.codec import encode
from shared.config import load_config
from shared.messages import RecordFill, RecordOrderEvent, Reply

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


def bench_service(data_dir: Path, count: int) -> float:
    """Record ``count`` fills through a running state service, each acknowledged durably."""
    config = load_config("state", env={
        "DATA_DIR": str(data_dir),
        "STATE_ENDPOINT": f"ipc://{data_dir}/state.ipc",
        "BUS_XSUB_ENDPOINT": f"ipc://{data_dir}/xsub.ipc",  # no bus: changes go nowhere
    })
    service = StateService(config)
    service.start()
    loop = threading.Thread(target=service.run, daemon=True)
    loop.start()
    client = RequestClient(service.ctx, config.endpoints.state, timeout_ms=5000, retries=1)
    try:
        for side in ("BUY", "SELL"):
            client.call(RecordOrderEvent(
                client_order_id=f"svc-{side.lower()}", status="NEW", bot_id=1, symbol=SYMBOL,
                side=side, order_type="MARKET", qty=Decimal(count)))
        started = time.perf_counter()
        for trade_id in range(1, count + 1):
            side = "BUY" if trade_id % 2 else "SELL"  # round trips, as bench_fills does
            client.call(RecordFill(
                symbol=SYMBOL, trade_id=trade_id, side=side, price=Decimal(f"{100 + trade_id % 7}"),
                qty=Decimal("0.01"), client_order_id=f"svc-{side.lower()}"))
        return count / (time.perf_counter() - started)
    finally:
        client.close()
        service.request_stop()
        loop.join(timeout=2)
        service.stop()


def run(fills: int = 2000, orders: int = 100_000, data_dir: Path | None = None) -> list[tuple]:
    """Every figure as a ``(name, value, unit)`` row."""
    own_dir = data_dir is None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="state-bench-"))
    rows: list[tuple[str, str, str]] = []
    try:
        rate = bench_service(data_dir / "service", fills)
        rows.append(("state fills recorded via request/reply, durable ack",
                     f"{rate:,.0f}", "events/s"))
        with Store.open(data_dir) as store:
            rate = bench_fills(store, fills)
            rows.append(("state fills recorded in the store, durable commit",
                         f"{rate:,.0f}", "events/s"))
            fill_orders(store, orders)
            snapshot_ms, snapshot = timed(store.snapshot)
            size_kib = len(encode(Reply(ok=True, result=snapshot))) / 1024
            rows.append((f"state snapshot with {orders:,} orders stored",
                         f"{snapshot_ms:.1f}", "ms"))
            rows.append((f"state snapshot size with {orders:,} orders stored "
                         f"({len(snapshot['open_orders'])} open)", f"{size_kib:.1f}",
                         "KiB msgpack"))
            page_ms, _ = timed(lambda: store.list_orders(bot_id=1, limit=100, before=50_000))
            rows.append((f"state page of 100 orders of {orders:,} (bot filter)",
                         f"{page_ms:.1f}", "ms"))
    finally:
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    for name, value, unit in run(args.fills, args.orders, args.data_dir):
        print(f"{name}: {value} {unit}")


if __name__ == "__main__":
    main()
