"""A WebSocket relay between the market data service and the simulator's streams.

It forwards the simulator's frames unchanged, except that a test can make it swallow the next
frame containing some text (a lost diff-depth event: a sequence gap) or hold all frames while
keeping the connection open (a silent stream). The simulator has neither fault itself.
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web


class StreamRelay:
    """Serves ``/stream`` and ``/ws/...`` on 127.0.0.1:<free port>, relaying to ``upstream``."""

    def __init__(self, upstream_ws_url: str) -> None:
        self.upstream = upstream_ws_url.rstrip("/")
        self.port = 0
        self.paused = False
        self.connections = 0
        self.dropped = 0
        self._drops: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def drop_next(self, text: str) -> None:
        """Swallow the next frame whose JSON text contains ``text``."""
        with self._lock:
            self._drops.append(text)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stream-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise TimeoutError("relay did not start")

    def stop(self) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/stream", self._handle)
        app.router.add_get("/ws/{names:.+}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        await asyncio.gather(*(ws.close() for ws in list(self._sockets)), return_exceptions=True)
        assert self._runner is not None
        await self._runner.cleanup()

    def _swallow(self, data: str) -> bool:
        with self._lock:
            for i, text in enumerate(self._drops):
                if text in data:
                    del self._drops[i]
                    self.dropped += 1
                    return True
        return self.paused

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections += 1
        try:
            async with aiohttp.ClientSession() as session, \
                    session.ws_connect(self.upstream + request.path_qs) as upstream:
                pump = asyncio.create_task(self._pump(upstream, ws))
                async for _ in ws:  # until the client goes away
                    pass
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _pump(self, upstream, ws: web.WebSocketResponse) -> None:
        async for msg in upstream:
            if msg.type == aiohttp.WSMsgType.TEXT and not self._swallow(msg.data):
                await ws.send_str(msg.data)
        await ws.close()
