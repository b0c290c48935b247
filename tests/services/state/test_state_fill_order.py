"""Fills are booked in exchange order (trade time, then trade id), whatever order they arrive in.

The REST answer, the user-data stream and reconciliation deliver one bot's fills out of
order; the position, realised PnL, completed trades and per-fill PnL must still be those of
FIFO over the fills in exchange order, and a replica folding the published changes must
end up with the snapshot.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.state import db
from services.state.store import Store
from shared.clock import TestClock
from shared.replica import View

T0 = 1_700_000_000_000


def memory_store() -> Store:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    db.migrate(conn)
    return Store(conn, clock=TestClock())


def fill(trade_id, side, price, qty, fee, fee_asset, ts_ms, bot_id=1, symbol="BTCUSDT"):
    return {
        "symbol": symbol, "trade_id": trade_id, "bot_id": bot_id, "side": side,
        "price": price, "qty": qty, "commission": fee, "commission_asset": fee_asset,
        "ts_ms": ts_ms,
    }


# Two buys (fee in base), a sell that empties exactly the first buy's lot (fee in quote), a
# sell that closes the round trip, then a buy and a partial sell in the same millisecond (the
# trade id orders them: 10 after 9, numerically).
FILLS = [
    fill(7, "BUY", "100", "1", "0.001", "BTC", T0),
    fill(8, "BUY", "110", "0.5", "0.0005", "BTC", T0 + 1000),
    fill(5, "SELL", "120", "0.999", "0.11988", "USDT", T0 + 2000),
    fill(6, "SELL", "115", "0.4995", "0.0574425", "USDT", T0 + 3000),
    fill(9, "BUY", "105", "0.2", "0.0002", "BTC", T0 + 4000),
    fill(10, "SELL", "108", "0.1", "0.0108", "USDT", T0 + 4000),
]


ReplicaView = View  # the replica's own view: it drops a trade taken back (``trade_deleted``)


def book(fills, *, view=False):
    """Record ``fills`` in the given order; return what a client sees afterwards."""
    store = memory_store()
    replica = ReplicaView(store.snapshot(), recent=50) if view else None
    try:
        for item in fills:
            outcome = store.record_fill(item)
            assert outcome.result == "recorded"
            if replica is not None:
                for change in outcome.changes:
                    assert change.seq == replica.seq + 1
                    replica.seq = change.seq
                    replica.apply(change.kind, change.payload)
        result = seen(store)
        if replica is not None:
            assert replica.to_snapshot() == store.snapshot()
        return result
    finally:
        store.close()


def seen(store: Store) -> dict:
    """Positions, trades (without their row ids) and each fill's realised PnL."""
    trades = store.list_trades(limit=1000)["items"]
    fills = store.list_fills(limit=1000)["items"]
    return {
        "positions": store.list_positions(),
        "trades": sorted(
            ({k: v for k, v in t.items() if k != "id"} for t in trades),
            key=lambda t: (t["bot_id"], t["symbol"], t["closed_at_ms"], t["opened_at_ms"]),
        ),
        "fill_pnl": sorted((f["symbol"], f["trade_id"], f["realized_pnl"]) for f in fills),
    }


def exchange_order(fills):
    return sorted(fills, key=lambda f: (f["ts_ms"], int(f["trade_id"])))


def test_in_order_booking_is_the_reference():
    expected = book(exchange_order(FILLS))
    [position] = expected["positions"]
    assert position["qty"] == "0.0998"  # 0.2 - 0.0002 fee - 0.1 sold
    [trade] = expected["trades"]
    assert trade["buy_qty"] == "1.5" and trade["sell_qty"] == "1.4985"
    # cost 100 + 55 = 155; proceeds 119.88 - 0.11988 + 57.4425 - 0.0574425 = 177.1451775
    assert Decimal(trade["pnl"]) == Decimal("177.1451775") - Decimal("155")
    # realised: the trip's PnL plus the partial sell: 10.8 - 0.0108 - 0.1/0.1998 of 21
    partial = Decimal("10.8") - Decimal("0.0108") - (Decimal(21) * Decimal("0.1")
                                                     / Decimal("0.1998")).quantize(
        Decimal("1e-12"))
    assert Decimal(position["realized_pnl"]) == Decimal(trade["pnl"]) + partial


def test_every_arrival_order_gives_the_exchange_order_result():
    expected = book(exchange_order(FILLS))
    for order in itertools.permutations(FILLS):
        assert book(list(order)) == expected, [f["trade_id"] for f in order]


def test_a_replica_folding_the_changes_converges_whatever_the_order():
    expected = book(exchange_order(FILLS))
    rng = random.Random(7)
    orders = [list(FILLS), list(reversed(FILLS))]
    for _ in range(40):
        orders.append(rng.sample(FILLS, len(FILLS)))
    for order in orders:
        assert book(order, view=True) == expected


def test_a_late_buy_takes_back_a_trade_closed_too_early():
    store = memory_store()
    try:
        store.record_fill(FILLS[0])  # buy 1 (0.999 after the fee)
        store.record_fill(FILLS[2])  # sell 0.999: flat, a trade
        assert len(store.list_trades()["items"]) == 1
        late = store.record_fill(FILLS[1])  # the buy between them at the exchange
        kinds = [change.kind for change in late.changes]
        assert kinds[0] == "fill" and "position" in kinds and "trade_deleted" in kinds
        assert store.list_trades()["items"] == []
        assert store.get_position(1, "BTCUSDT")["qty"] == "0.4995"
    finally:
        store.close()


def test_a_late_sell_corrects_the_order_pnl_of_later_sells():
    store = memory_store()
    try:
        store.record_order_event({
            "client_order_id": "s1", "bot_id": 1, "symbol": "BTCUSDT", "side": "SELL",
            "type": "MARKET", "qty": "0.5", "status": "NEW",
        })
        store.record_fill(fill(1, "BUY", "100", "1", "0", "", T0))
        store.record_fill(fill(2, "BUY", "200", "1", "0", "", T0 + 1))
        later = {**fill(4, "SELL", "300", "0.5", "0", "", T0 + 3), "client_order_id": "s1"}
        store.record_fill(later)  # booked against the first buy: 300*0.5 - 50 = 100
        assert store.get_order("s1")["realized_pnl"] == "100"
        late = store.record_fill(fill(3, "SELL", "300", "1", "0", "", T0 + 2))
        # in exchange order the late sell takes the first buy, the later one the second
        assert store.get_order("s1")["realized_pnl"] == "50"
        assert "order" in [change.kind for change in late.changes]
        assert store.get_position(1, "BTCUSDT")["realized_pnl"] == "250"
    finally:
        store.close()


def test_other_bots_and_symbols_are_not_touched_by_a_rebuild():
    store = memory_store()
    try:
        store.create_bot(strategy="SWING", symbol="ETHUSDT", timeframe="1m")
        store.record_fill(fill(1, "BUY", "100", "1", "0", "", T0, bot_id=2, symbol="ETHUSDT"))
        store.record_fill(fill(1, "BUY", "100", "1", "0", "", T0 + 5))
        late = store.record_fill(fill(2, "SELL", "110", "1", "0", "", T0 + 1))
        payloads = [c.payload for c in late.changes if c.kind == "position"]
        assert [(p["bot_id"], p["symbol"]) for p in payloads] == [(1, "BTCUSDT")]
        assert store.get_position(2, "ETHUSDT")["qty"] == "1"
    finally:
        store.close()


def test_an_in_order_fill_does_not_rebuild(monkeypatch):
    store = memory_store()
    try:
        monkeypatch.setattr(store, "_rebuild", lambda *a: pytest.fail("rebuilt"))
        for item in exchange_order(FILLS):
            store.record_fill(item)
    finally:
        store.close()


# ------------------------------------------------------------------ property


@st.composite
def fill_sequences(draw):
    """A plausible fill history (sells never exceed what is held) and an arrival order."""
    count = draw(st.integers(min_value=1, max_value=8))
    fills, held, ts = [], Decimal(0), T0
    for trade_id in range(1, count + 1):
        ts += draw(st.sampled_from([0, 0, 1, 1000]))
        price = Decimal(draw(st.integers(min_value=90, max_value=110)))
        if held > 0 and draw(st.booleans()):
            whole = draw(st.booleans())
            qty = held if whole else held * Decimal(draw(st.sampled_from(["0.3", "0.5"])))
            qty = qty.quantize(Decimal("1e-4"))
            if qty <= 0:
                continue
            fee = (price * qty / 1000).quantize(Decimal("1e-8"))
            fills.append(fill(trade_id, "SELL", str(price), str(qty), str(fee), "USDT", ts))
            held -= qty
        else:
            qty = Decimal(draw(st.sampled_from(["0.1", "0.25", "1"])))
            fee = qty / 1000
            fills.append(fill(trade_id, "BUY", str(price), str(qty), str(fee), "BTC", ts))
            held += qty - fee
    arrival = draw(st.permutations(fills))
    return fills, list(arrival)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fill_sequences())
def test_any_arrival_order_books_like_exchange_order(case):
    fills, arrival = case
    assert book(arrival, view=True) == book(exchange_order(fills))
