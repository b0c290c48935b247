"""The bus counts messages per topic prefix and publishes the rates on health.bus."""

from __future__ import annotations

import time

from shared.bus import Publisher, Subscriber
from shared.messages import BookTicker, BusStats


def test_rates_per_topic_prefix_are_published(bus, ctx, endpoints):
    pub = Publisher(ctx, endpoints.bus_xsub)
    sub = Subscriber(ctx, endpoints.bus_xpub, ["health.bus", "md."])
    tick = BookTicker(symbol="X", bid=1.0, bid_qty=1.0, ask=2.0, ask_qty=1.0, ts_ms=0)
    while sub.recv(timeout_ms=50) is None:  # wait until our subscription is through
        pub.publish("md.book.X", tick)

    for _ in range(500):
        pub.publish("md.book.BTCUSDT", tick)
    for _ in range(200):
        pub.publish("md.kline.BTCUSDT.1m", tick)

    totals: dict = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and totals.get("md.kline", 0) < 200:
        got = sub.recv(timeout_ms=200)
        if got and isinstance(got[1], BusStats):
            totals = got[1].totals
    assert totals.get("md.kline") == 200
    assert totals.get("md.book", 0) >= 500
    pub.close()
    sub.close()
