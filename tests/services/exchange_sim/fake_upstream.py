"""A local stand-in for Binance's public REST and stream endpoints, for paper-mode tests.

It serves a few canned klines and a bookTicker over REST, and on ``/ws/<streams>`` and
``/stream?streams=`` sends the frames of the streams asked for: the ones in ``initial`` at
once (and again every ``repeat_s`` if set, as a busy market would), later ones when the test
calls :meth:`FakeUpstream.push`. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import WSMsgType, web

KLINES = [
    [1723161240000, "61837.63", "61840.00", "61830.01", "61835.50", "12.5", 1723161299999,
     "772943.75", 310, "6.1", "377200.12", "0"],
    [1723161300000, "61835.50", "61850.00", "61820.00", "61849.99", "9.25", 1723161359999,
     "572025.10", 255, "4.4", "272100.00", "0"],
]
BOOK_TICKER = {"symbol": "BTCUSDT", "bidPrice": "50000.00000000", "bidQty": "1.50000000",
               "askPrice": "50000.10000000", "askQty": "2.00000000"}
BOOK_FRAME = {"u": 400900217, "s": "BTCUSDT", "b": "50000.00", "B": "1.5", "a": "50000.10",
              "A": "2.0"}


class FakeUpstream:
    """Binance's public endpoints on a free loopback port, run in a thread of their own."""

    def __init__(self) -> None:
        self.initial: dict[str, list[dict]] = {"btcusdt@bookTicker": [BOOK_FRAME]}
        self.requests: list[str] = []
        self.repeat_s: float | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: list[tuple[web.WebSocketResponse, bool, list[str]]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> FakeUpstream:
        self._thread.start()
        assert self._ready.wait(5), "fake upstream did not start"
        return self

    def stop(self) -> None:
        assert self._loop is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def push(self, stream: str, data: dict) -> None:
        """Send ``data`` to every connection subscribed to ``stream``."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._send_all(stream, data), self._loop).result(5)

    def drop_all(self) -> None:
        """Close every stream connection, as Binance does at its 24 h limit or on a fault."""
        assert self._loop is not None

        async def close() -> None:
            for ws, _, _ in list(self._sockets):
                await ws.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    @property
    def connections(self) -> int:
        return len(self._sockets)

    # ---- server ------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._serve())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/ws/{names:.+}", self._raw)
        app.router.add_get("/stream", self._combined)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _klines(self, request: web.Request) -> web.Response:
        self.requests.append(request.rel_url.path_qs)
        return web.json_response(KLINES)

    async def _book_ticker(self, request: web.Request) -> web.Response:
        self.requests.append(request.rel_url.path_qs)
        return web.json_response(BOOK_TICKER)

    async def _depth(self, request: web.Request) -> web.Response:
        self.requests.append(request.rel_url.path_qs)
        return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)

    async def _raw(self, request: web.Request) -> web.WebSocketResponse:
        return await self._stream(request, request.match_info["names"].split("/"), False)

    async def _combined(self, request: web.Request) -> web.WebSocketResponse:
        return await self._stream(request, request.query.get("streams", "").split("/"), True)

    async def _stream(self, request: web.Request, names: list[str],
                      combined: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        entry = (ws, combined, names)
        self._sockets.append(entry)
        repeater = asyncio.create_task(self._send_initial(ws, names, combined))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(json.dumps({"result": None,
                                                  "id": json.loads(msg.data).get("id")}))
        finally:
            repeater.cancel()
            self._sockets.remove(entry)
        return ws

    async def _send_initial(self, ws: web.WebSocketResponse, names: list[str],
                            combined: bool) -> None:
        while not ws.closed:
            for name in names:
                for data in self.initial.get(name, []):
                    await ws.send_str(_frame(name, data, combined))
            if self.repeat_s is None:
                return
            await asyncio.sleep(self.repeat_s)

    async def _send_all(self, stream: str, data: dict) -> None:
        for ws, combined, names in list(self._sockets):
            if stream in names and not ws.closed:
                await ws.send_str(_frame(stream, data, combined))


def _frame(stream: str, data: dict, combined: bool) -> str:
    return json.dumps({"stream": stream, "data": data} if combined else data)
