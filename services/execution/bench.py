"""Benchmark of execution (not a test): intent-to-order-acknowledged latency and intents/s.

Usage: python -m services.execution.bench [--intents N]
Starts the exchange simulator (port 0), a state service and the execution service in this
process over ipc sockets, claims bot 1's lease, then sends ``N`` MARKET intents one after
another. Each reply comes after the exchange acknowledged the order, so the round trip is the
intent-to-acknowledged latency. ``run()`` returns ``(name, value, unit)`` rows for
``make bench``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import zmq

from services.exchange_sim.market import build_market
from services.exchange_sim.ratelimit import RateLimits
from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import Venue, spec_for
from services.execution.outbox import ExecutionDb
from services.execution.service import ExecutionService
from services.state.service import StateService
from shared import messages as m
from shared.bus import RequestClient
from shared.clock import SYSTEM_CLOCK
from shared.config import Config, Endpoints, load_config
from shared.filters import default_symbols
from shared.service import ServiceThread


def _config(service: str, endpoints: Endpoints, data_dir: Path, sim_port: int) -> Config:
    return replace(load_config(service, env={}), endpoints=endpoints,
                   data_dir=data_dir / "data" / service, sim_port=sim_port)


def bench_intents(count: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="exec-bench-"))
    endpoints = Endpoints(bus_xsub=f"ipc://{tmp}/xsub", bus_xpub=f"ipc://{tmp}/xpub",
                          state=f"ipc://{tmp}/state", execution=f"ipc://{tmp}/exec",
                          marketdata=f"ipc://{tmp}/md")
    specs = {name: spec_for(f) for name, f in default_symbols().items()}
    # Binance allows 100 orders per 10 s; lifted here: this measures execution's own cost.
    limits = RateLimits(orders_per_10s=1_000_000, orders_per_day=10_000_000)
    sim = SimServer(Venue(market=build_market(SYSTEM_CLOCK, {}, history_s=900, specs=specs),
                          limits=limits), port=0)
    sim.start()
    state = ServiceThread(StateService(_config("state", endpoints, tmp, sim.port)), join_s=5.0)
    execution = ServiceThread(ExecutionService(_config("execution", endpoints, tmp, sim.port)),
                              join_s=5.0)
    ctx = zmq.Context()
    try:
        deadline = time.monotonic() + 20
        while not execution.service.last_sync_ts and time.monotonic() < deadline:
            time.sleep(0.05)
        to_state = RequestClient(ctx, endpoints.state, timeout_ms=5000, retries=1)
        epoch = to_state.call(m.ClaimLease(bot_id=1, owner="bench", ttl_s=600))["value"]["epoch"]
        client = RequestClient(ctx, endpoints.execution, timeout_ms=10000, retries=1)
        client.call(m.SetRiskConfig(changes={"max_position_quote": "1000000000"}))
        latencies = []
        started = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            reply = client.request(m.SubmitIntent(
                intent_id=f"bench-{i}", bot_id="1", epoch=epoch, symbol="BTCUSDT", side="BUY",
                order_type="MARKET", quote_qty=Decimal("11")))
            latencies.append(time.perf_counter() - t0)
            if not reply.ok:
                raise RuntimeError(f"intent refused: {reply.error_message}")
        total = time.perf_counter() - started
        client.close()
        to_state.close()
    finally:
        ctx.destroy(linger=0)
        execution.close()
        state.close()
        sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    latencies.sort()
    return {"p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "per_s": count / total}


def bench_history(fills: int, bots: int = 10) -> dict[str, float]:
    """Milliseconds of the reads execution makes per intent and per reconcile pass, with
    ``fills`` fills (and as many orders) of ``bots`` bots already recorded."""
    tmp = Path(tempfile.mkdtemp(prefix="exec-history-"))
    db = ExecutionDb(tmp)
    try:
        with db.tx() as conn:
            for i in range(fills):
                side = "BUY" if i % 2 == 0 else "SELL"
                conn.execute("INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             ("BTCUSDT", i, str(i % bots), f"c{i}", side, "0.001",
                              "0.000001", "BTC", i))
                conn.execute("INSERT INTO orders (client_order_id, bot_id, symbol, side, type,"
                             " role, status, executed_qty, created_ms, updated_ms, orig_qty)"
                             " VALUES (?, ?, ?, ?, 'MARKET', 'entry', 'FILLED', '0.001', ?, ?,"
                             " '0.001')", (f"c{i}", str(i % bots), "BTCUSDT", side, i, i))
        holder = SimpleNamespace(db=db, filters=default_symbols())

        def ms(call: Callable[[int], object], times: int) -> float:
            started = time.perf_counter()
            for k in range(times):
                call(k)
            return (time.perf_counter() - started) / times * 1000

        return {
            "position_ms": ms(lambda k: ExecutionService.position_qty(
                holder, str(k % bots), "BTCUSDT"), 20),  # type: ignore[arg-type]
            "filled_ms": ms(lambda k: db.filled_qty(f"c{k * 7}"), 200),
            "open_ms": ms(lambda k: db.open_orders(), 200),
        }
    finally:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run(count: int = 200, fills: int = 100_000) -> list[tuple[str, str, str]]:
    result = bench_intents(count)
    history = bench_history(fills)
    per_bot = f"{fills // 10:,}"
    return [
        ("execution: intent to order acknowledged, p50 (simulator)",
         f"{result['p50_ms']:.1f}", "ms"),
        ("execution: intent to order acknowledged, p99 (simulator)",
         f"{result['p99_ms']:.1f}", "ms"),
        ("execution: sustained intents, one client (venue order limit lifted)",
         f"{result['per_s']:.0f}", "intents/s"),
        (f"execution: a bot's sellable quantity with {per_bot} fills of its own recorded"
         f" ({fills:,} in all)", f"{history['position_ms']:.1f}", "ms per intent"),
        (f"execution: recorded fills of one order, {fills:,} fills recorded",
         f"{history['filled_ms']:.3f}", "ms"),
        (f"execution: open orders, {fills:,} orders recorded", f"{history['open_ms']:.3f}",
         "ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=200)
    args = parser.parse_args()
    for name, value, unit in run(args.intents):
        print(f"{name}: {value} {unit}")


if __name__ == "__main__":
    main()
