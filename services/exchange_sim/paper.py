"""Paper mode: real public market data relayed from Binance, orders matched locally.

REST market data (klines, depth, trades, tickers, avgPrice) is fetched from the upstream REST
base and passed through; ``/ws/<streams>`` and ``/stream?streams=`` are relayed frame by frame
from the upstream stream base. :class:`EngineFeed` keeps one upstream connection of its own
(``<s>@depth20@100ms``, ``<s>@bookTicker``, ``<s>@trade`` for every symbol) and hands the books
and trades to the venue, so orders fill against the real market. Nothing here needs a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from .api_error import ApiError
from .faults import Faults
from .operations import Operation
from .venue import Venue

log = logging.getLogger(__name__)

BINANCE_REST = "https://api.binance.com"
BINANCE_STREAMS = "wss://stream.binance.com:9443"
RELAYED_PATHS = frozenset({"klines", "uiKlines", "depth", "trades", "aggTrades", "ticker/price",
                           "ticker/bookTicker", "ticker/24hr", "avgPrice"})
REST_TIMEOUT_S = 10.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 16.0
STALL_POLL_S = 0.05


@dataclass
class Upstream:
    """Where the real market is: REST base (no ``/api``) and stream base (no trailing ``/``)."""

    rest_url: str = BINANCE_REST
    ws_url: str = BINANCE_STREAMS
    session: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def open(self) -> None:
        if self.session is None:
            timeout = aiohttp.ClientTimeout(total=REST_TIMEOUT_S)
            self.session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def rest(self, path_qs: str) -> str:
        return self.rest_url.rstrip("/") + path_qs

    def stream(self, path_qs: str) -> str:
        return self.ws_url.rstrip("/") + path_qs


def relay_handler(op: Operation, upstream: Upstream, path: str):
    """A REST handler answering with the upstream's reply to the same GET (weights and faults
    are still applied by the server's middleware through ``sim_op``)."""

    async def handle(request: web.Request) -> Any:
        assert upstream.session is not None
        url = upstream.rest(f"/api/v3/{path}")
        query = request.rel_url.raw_query_string
        if query:
            url = f"{url}?{query}"
        try:
            async with upstream.session.get(url) as reply:
                body = await reply.json(content_type=None)
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("upstream %s failed: %s", path, exc)
            raise ApiError(503, -1001, "Internal error; unable to process your request. "
                                       "Please try again.") from exc
        if status >= 400:
            code = body.get("code", -1000) if isinstance(body, dict) else -1000
            msg = body.get("msg", "upstream error") if isinstance(body, dict) else str(body)
            raise ApiError(status, code, msg)
        return body

    handle.sim_op = op  # type: ignore[attr-defined]
    return handle


async def relay_stream(request: web.Request, upstream: Upstream, faults: Faults,
                       sockets: weakref.WeakSet) -> web.StreamResponse:
    """Relay one market-stream connection to the upstream's same path, both ways."""
    assert upstream.session is not None
    url = upstream.stream(request.rel_url.path_qs)
    try:
        remote = await upstream.session.ws_connect(url, heartbeat=20.0)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("upstream stream %s unavailable: %s", url, exc)
        return web.json_response({"code": -1001, "msg": "Upstream stream unavailable."},
                                 status=502)
    ws = web.WebSocketResponse(heartbeat=20.0, timeout=1.0)
    await ws.prepare(request)
    sockets.add(ws)
    down = asyncio.create_task(_downstream(remote, ws, faults))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await remote.send_str(msg.data)  # SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS
    finally:
        down.cancel()
        await asyncio.gather(down, return_exceptions=True)
        await remote.close()
    return ws


async def _downstream(remote: aiohttp.ClientWebSocketResponse, ws: web.WebSocketResponse,
                      faults: Faults) -> None:
    try:
        async for msg in remote:
            if msg.type != WSMsgType.TEXT:
                break
            if faults.latency_s:
                await asyncio.sleep(faults.latency_s)
            while faults.stalled("streams") and not ws.closed:
                await asyncio.sleep(STALL_POLL_S)
            await ws.send_str(msg.data)
    except ConnectionError:
        return
    await ws.close()  # the upstream ended the stream: so does the relay


def feed_streams(symbols: list[str]) -> str:
    """The combined-stream path :class:`EngineFeed` subscribes to."""
    names = [f"{s.lower()}@{kind}" for s in symbols
             for kind in ("depth20@100ms", "bookTicker", "trade")]
    return "/stream?streams=" + "/".join(names)


class EngineFeed:
    """Feeds the venue's matching engine from the upstream's public streams, reconnecting."""

    def __init__(self, venue: Venue, upstream: Upstream) -> None:
        self.venue = venue
        self.upstream = upstream
        self.symbols = list(venue.symbols)
        self._has_depth: set[str] = set()
        self.frames = 0

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        url = self.upstream.stream(feed_streams(self.symbols))
        while True:
            try:
                assert self.upstream.session is not None
                async with self.upstream.session.ws_connect(url, heartbeat=20.0) as remote:
                    log.info("paper feed connected to %s", self.upstream.ws_url)
                    backoff = BACKOFF_MIN_S
                    async for msg in remote:
                        if msg.type != WSMsgType.TEXT:
                            break
                        self.on_frame(msg.data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed must outlive any upstream trouble
                log.warning("paper feed interrupted: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def on_frame(self, text: str) -> None:
        """One combined-stream frame: a partial book, a bookTicker or a trade."""
        try:
            frame = json.loads(text)
            stream, data = frame.get("stream", ""), frame.get("data", frame)
            self._apply(stream, data)
        except (ValueError, KeyError, TypeError, ArithmeticError, AttributeError):
            log.warning("paper feed: unreadable frame %.200s", text)
            return
        self.frames += 1

    def _apply(self, stream: str, data: dict) -> None:
        if data.get("e") == "trade":
            symbol = data["s"]
            if symbol in self.symbols:
                self.venue.feed_trade(symbol, Decimal(data["p"]), Decimal(data["q"]),
                                      int(data["T"]))
        elif "lastUpdateId" in data:
            symbol = stream.split("@")[0].upper()
            if symbol in self.symbols:
                self._has_depth.add(symbol)
                self.venue.feed_book(symbol, _levels(data["bids"]), _levels(data["asks"]))
        elif {"u", "s", "b", "a"} <= data.keys():
            symbol = data["s"]
            if symbol in self.symbols and symbol not in self._has_depth:
                self.venue.feed_book(symbol, [(Decimal(data["b"]), Decimal(data["B"]))],
                                     [(Decimal(data["a"]), Decimal(data["A"]))])


def _levels(rows: list) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in rows]
