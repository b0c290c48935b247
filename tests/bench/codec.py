"""Codec cost: encode + decode of one message, per message type that travels often."""

from __future__ import annotations

import timeit
from decimal import Decimal

from shared.codec import decode, encode
from shared.messages import BookTicker, Candle, Heartbeat, OrderFilled

SAMPLES = {
    "BookTicker": BookTicker(symbol="BTCUSDT", bid=61837.63, bid_qty=1.2, ask=61837.64,
                             ask_qty=0.5, ts_ms=1_723_161_254_087),
    "Candle": Candle(symbol="BTCUSDT", interval="1m", open_time_ms=1_723_161_240_000,
                     close_time_ms=1_723_161_299_999, open=1.0, high=2.0, low=0.5, close=1.5,
                     volume=12.5, closed=True),
    "OrderFilled": OrderFilled(bot_id="bot-1", client_order_id="b1-abc", exchange_order_id=1,
                               trade_id=2, symbol="BTCUSDT", side="BUY",
                               price=Decimal("61837.63"), quantity=Decimal("0.00161"),
                               quote_qty=Decimal("99.55858430"), commission=Decimal("0.00000161"),
                               commission_asset="BTC", is_maker=False, ts_ms=1),
    "Heartbeat": Heartbeat(service="state", instance="host-1", status="RUNNING", uptime_s=12.5,
                           ts=1.7e9, pid=1234, detail={"seq": 10}),
}


def run(number: int = 20_000) -> list[tuple]:
    rows = []
    for name, msg in SAMPLES.items():
        seconds = min(timeit.repeat(lambda m=msg: decode(encode(m)), number=number, repeat=3))
        rows.append((f"codec {name} encode+decode", f"{seconds / number * 1e6:.1f}", "µs/msg"))
    return rows
