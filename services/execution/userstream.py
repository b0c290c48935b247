"""The user-data stream, the way python-binance 1.0.x does it, on a thread of its own.

python-binance 1.0.37 subscribes with ``userDataStream.subscribe.signature`` on the WebSocket
API (``BinanceSocketManager.user_socket``); there is no listenKey to keep alive any more, the
websockets library pings the connection. After a WS-API reconnect python-binance does *not*
subscribe again (events silently stop), so any error frame ends the session here: the stream
is opened afresh on a new client, and ``on_connected`` lets execution reconcile by REST.
Events are handed to ``on_event`` (a thread-safe queue put); nothing else happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from binance.async_client import AsyncClient
from binance.ws.streams import BinanceSocketManager
from binance.ws.websocket_api import WebsocketAPI

log = logging.getLogger(__name__)

RECV_POLL_S = 0.5
PROBE_EVERY_S = 15.0  # a ping on the WebSocket API: a connection open but silent is dead too
PROBE_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 1.0
MAX_BACKOFF_S = 15.0


class StreamLost(Exception):
    """The user-data subscription can no longer be trusted."""


class UserStream:
    """Keeps one user-data subscription alive; reconnects with backoff, forever."""

    def __init__(self, api_key: str, api_secret: str, on_event: Callable[[dict], None],
                 on_connected: Callable[[], None], rest_url: str | None = None,
                 ws_api_url: str | None = None, testnet: bool = False,
                 probe_every_s: float = PROBE_EVERY_S) -> None:
        self._key = api_key
        self._secret = api_secret
        self.on_event = on_event
        self.on_connected = on_connected
        self.rest_url = rest_url
        self.ws_api_url = ws_api_url
        self.testnet = testnet
        self.probe_every_s = probe_every_s
        self.connected = False
        self.connects = 0
        self.events = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._main_task: asyncio.Task | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exec-userstream", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(2.0)

    def stop(self, timeout_s: float = 1.5) -> None:
        """Stop within ``timeout_s``: a connect in progress is cancelled, not waited for."""
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=timeout_s / 2)
        if self._thread.is_alive() and self._main_task is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._main_task.cancel)
            self._thread.join(timeout=timeout_s / 2)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._main_task = loop.create_task(self._main())
        try:
            loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("user-data stream thread failed")
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._ready.set()
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = 0.5
            except Exception as exc:
                log.warning("user-data stream down: %s; retrying in %.1f s",
                            _describe(exc), backoff)
            self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _session(self) -> None:
        client = AsyncClient(self._key, self._secret, testnet=self.testnet)
        if self.rest_url:
            client.API_URL = self.rest_url
        if self.ws_api_url:
            client.ws_api = WebsocketAPI(url=self.ws_api_url, tld="com")
        stream = BinanceSocketManager(client).user_socket()
        alive = True
        try:
            await stream.__aenter__()
            self.connected = True
            self.connects += 1
            log.info("user-data stream subscribed (connection %d)", self.connects)
            self.on_connected()
            await self._pump(client, stream)
        except StreamLost:
            alive = False
            raise
        finally:
            self.connected = False
            await self._close(client, stream, alive)

    async def _close(self, client: AsyncClient, stream: Any, alive: bool) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            # shutting down: the server ends the subscription with the connection; waiting
            # for python-binance's polite close (its read loop polls every 10 s) only delays
            await _bounded(client.session.close())
            return
        if alive:  # unsubscribe only over a connection that still answers
            await _bounded(stream.__aexit__(None, None, None))
        await _bounded(client.close_connection())

    async def _pump(self, client: AsyncClient, stream: Any) -> None:
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        next_probe = loop.time() + self.probe_every_s
        while not self._stopping.is_set():
            if loop.time() >= next_probe:
                await self._probe(client)
                next_probe = loop.time() + self.probe_every_s
            try:
                msg = await asyncio.wait_for(stream.recv(), RECV_POLL_S)
            except TimeoutError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("e") == "error":
                raise StreamLost(f"{msg.get('type')}: {msg.get('m')}")
            if msg.get("e") == "eventStreamTerminated":
                raise StreamLost("the exchange terminated the event stream")
            self.events += 1
            self.on_event(msg)

    @staticmethod
    async def _probe(client: AsyncClient) -> None:
        """A quiet stream is normal; a WebSocket API that no longer answers a ping is not."""
        try:
            await asyncio.wait_for(client._ws_api_request("ping", False, {}), PROBE_TIMEOUT_S)
        except Exception as exc:
            raise StreamLost(f"no answer to a ping: {_describe(exc)}") from None


async def _bounded(coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, CLOSE_TIMEOUT_S)
    except Exception as exc:  # closing a dead connection may fail in many ways
        log.debug("closing the user-data stream: %s", _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
