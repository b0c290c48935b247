"""``make bench`` entries for the simulator: orders/s accepted and market-data messages/s.

Orders go through unmodified python-binance (sync ``Client``, one connection, REST over
loopback) to a :class:`SimServer` on a free port with the order limits lifted. Market data is
counted at plain aiohttp WebSocket clients on a combined stream of ``@trade`` streams, with
the market accelerated so that there is always more to send than the server's pacing (one
frame every ``PACE_S`` per socket, so python-binance's 100-message queue never overflows)
lets out: the figure is what the venue publishes, not what the market happens to make.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp
from binance.client import Client

from shared.clock import SYSTEM_CLOCK

from .market import ScaledClock
from .ratelimit import RateLimits
from .server import SimServer
from .venue import AccountConfig, Venue

Row = tuple[str, str, str]
UNLIMITED = RateLimits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9,
                       raw_requests_per_5m=10**9)
ORDERS = 300
STREAM_SECONDS = 3.0
MARKET_SPEED = 500  # market seconds per wall second: trades pile up faster than pacing


def _server(venue: Venue) -> SimServer:
    server = SimServer(venue, port=0)
    server.start()
    return server


def _client(server: SimServer) -> Client:
    client = Client("sim-key", "sim-secret", ping=False, requests_params={"timeout": 10})
    client.API_URL = f"{server.base_url}/api"
    return client


def bench_orders() -> list[Row]:
    """MARKET and resting LIMIT orders per second, each acknowledged by the venue."""
    account = AccountConfig(funding={"USDT": Decimal("100000000")})
    server = _server(Venue(accounts=[account], replay=False, history_s=600, limits=UNLIMITED))
    client = _client(server)
    try:
        client.order_market_buy(symbol="ETHUSDT", quantity="0.01")  # warm the connection
        started = time.perf_counter()
        for _ in range(ORDERS):
            client.order_market_buy(symbol="ETHUSDT", quantity="0.01")
        market_rate = ORDERS / (time.perf_counter() - started)
        symbols = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
        qty = {"BTCUSDT": "0.001", "ETHUSDT": "0.01", "BNBUSDT": "0.1"}
        prices = {}  # 10 % under the market: the orders rest
        for symbol in symbols:
            ref = Decimal(client.get_symbol_ticker(symbol=symbol)["price"]) * Decimal("0.9")
            prices[symbol] = str(ref.quantize(Decimal("0.1")))
        started = time.perf_counter()
        for i in range(ORDERS):  # at most 100 per symbol: under MAX_NUM_ORDERS (200)
            symbol = symbols[i % 3]
            client.order_limit_buy(symbol=symbol, quantity=qty[symbol], price=prices[symbol])
        limit_rate = ORDERS / (time.perf_counter() - started)
    finally:
        client.close_connection()
        server.stop()
    return [("exchange_sim MARKET orders accepted (python-binance REST, loopback)",
             f"{market_rate:,.0f}", "orders/s"),
            ("exchange_sim LIMIT GTC orders accepted (python-binance REST, loopback)",
             f"{limit_rate:,.0f}", "orders/s")]


async def _count_frames(url: str, seconds: float) -> int:
    count = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await asyncio.wait_for(ws.receive(), 10)  # the first frame: the stream is flowing
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            try:
                msg = await asyncio.wait_for(ws.receive(), left)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            count += 1
    return count


async def _fan_out(url: str, clients: int, seconds: float) -> int:
    counts = await asyncio.gather(*(_count_frames(url, seconds) for _ in range(clients)))
    return sum(counts)


def bench_market_data() -> list[Row]:
    """Messages per second received by one WebSocket client, and by four at once."""
    venue = Venue(ScaledClock(SYSTEM_CLOCK, MARKET_SPEED), replay=False, history_s=600,
                  signing_clock=SYSTEM_CLOCK)
    server = _server(venue)
    url = f"{server.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade/bnbusdt@trade"
    try:
        one = asyncio.run(_fan_out(url, 1, STREAM_SECONDS)) / STREAM_SECONDS
        four = asyncio.run(_fan_out(url, 4, STREAM_SECONDS)) / STREAM_SECONDS
    finally:
        server.stop()
    return [("exchange_sim market-data messages to 1 WebSocket client (paced)",
             f"{one:,.0f}", "msg/s"),
            ("exchange_sim market-data messages to 4 WebSocket clients, total",
             f"{four:,.0f}", "msg/s")]


def run() -> list[Row]:
    """All simulator benchmarks as (name, value, unit) rows."""
    return bench_orders() + bench_market_data()


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
