"""The venue over HTTP and WebSocket, as unmodified python-binance 1.0.37 expects it.

``build_app(venue)`` makes the aiohttp application: REST under ``/api/v3``, market streams at
``/ws/<stream>`` and ``/stream?streams=a/b``, the WebSocket API (user data) at ``/ws-api/v3`` and
the fault switch at ``/sim/faults`` (loopback clients only). In paper mode (``upstream`` given)
market data comes from the real venue instead: see :mod:`.paper`. :class:`SimServer` runs it
on 127.0.0.1 in a thread of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSCloseCode, WSMsgType, web

from shared.errors import ValidationError

from .api_error import ApiError, internal_error, unknown_status
from .faults import Faults, drop_target
from .operations import OPERATIONS, REST_ROUTES, Operation
from .paper import RELAYED_PATHS, EngineFeed, Upstream, relay_handler, relay_stream
from .params import Params
from .streams import StreamSource, UnknownStream, open_stream
from .venue import Venue
from .ws_api import WsApiSession

log = logging.getLogger(__name__)

VENUE = web.AppKey("venue", Venue)
SOCKETS = web.AppKey("sockets", dict)  # "streams" | "ws_api" -> WeakSet of open sockets
TASKS = web.AppKey("tasks", list)
PARAMS = web.RequestKey("params", Params)
ACCOUNT = web.RequestKey("account", str)
ORDER_COUNTS = web.RequestKey("order_counts", tuple)
MARKET_TICK_S = 0.1
STREAM_POLL_S = 0.05
PACE_S = 0.002  # spacing between frames of a burst: python-binance queues hold 100 messages
WS_HEARTBEAT_S = 20.0
STALL_POLL_S = 0.05
LOOPBACK = "127.0.0.1"
UPSTREAM = web.AppKey("upstream", Upstream)

Handler = Callable[[web.Request], Awaitable[Any]]


# ---------------------------------------------------------------------------- middleware


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers,
                             dumps=lambda d: json.dumps(d, separators=(",", ":")))


async def _read_params(request: web.Request) -> tuple[Params, str, str]:
    """Query and body parameters merged (query wins); -1101 on a repeated parameter."""
    query = request.rel_url.raw_query_string
    body = await request.text() if request.can_read_body else ""
    values: dict[str, str] = {}
    for raw in (body, query):
        pairs = parse_qsl(raw, keep_blank_values=True)
        if len({name for name, _ in pairs}) != len(pairs):
            raise ApiError(400, -1101, "Duplicate values for a parameter detected.")
        values.update(pairs)
    return Params(values), query, body


def _inject_fault(faults: Faults) -> None:
    retry = str(faults.retry_after_s)
    if faults.take("http_418"):
        raise ApiError(418, -1003, "Way too much request weight used; IP banned until now + "
                                   f"{retry}s. Please use WebSocket Streams for live updates "
                                   "to avoid bans.", {"Retry-After": retry})
    if faults.take("http_429"):
        raise ApiError(429, -1003, "Too much request weight used; current limit is 6000 "
                                   "request weight per 1 MINUTE.", {"Retry-After": retry})
    if faults.take("http_5xx"):
        raise ApiError(502, -1000, "An unknown error occurred while processing the request.")


def is_loopback(remote: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@web.middleware
async def admin_loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/sim/*`` answers only clients on this machine: 403 JSON for anyone else."""
    if request.path.startswith("/sim/") and not is_loopback(request.remote):
        return _json({"error": {"code": "forbidden", "message": "the simulator's admin "
                                "endpoints answer loopback clients only", "fields": {}}}, 403)
    return await handler(request)


@web.middleware
async def binance_rest(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Weights, faults, signatures and Binance's error shape around every ``/api`` handler."""
    op: Operation | None = getattr(handler, "sim_op", None)
    if op is None:
        return await handler(request)
    venue = request.app[VENUE]
    ip = request.remote or LOOPBACK
    if venue.faults.latency_s:
        await asyncio.sleep(venue.faults.latency_s)
    headers: dict[str, str] = {}
    try:
        params, query, body = await _read_params(request)
        request[PARAMS] = params
        headers["X-MBX-USED-WEIGHT-1M"] = str(venue.limiter.used_weight(ip))
        _inject_fault(venue.faults)
        used = venue.limiter.charge(ip, op.weight_of(params))
        headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        if op.signed:
            key = venue.auth.verify_rest(request.headers.get("X-MBX-APIKEY"), query, body,
                                         params.values)
            request[ACCOUNT] = key.account
        data = await handler(request)
        headers["X-MBX-USED-WEIGHT-1M"] = str(venue.limiter.used_weight(ip))
        if ORDER_COUNTS in request:
            count_10s, count_1d = request[ORDER_COUNTS]
            headers["X-MBX-ORDER-COUNT-10S"] = str(count_10s)
            headers["X-MBX-ORDER-COUNT-1D"] = str(count_1d)
        return _json(data, headers=headers)
    except ApiError as exc:
        headers["X-MBX-USED-WEIGHT-1M"] = str(venue.limiter.used_weight(ip))
        return _json(exc.body(), exc.status, {**headers, **exc.headers})
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        exc = internal_error()
        return _json(exc.body(), exc.status, headers)


# ---------------------------------------------------------------------------- REST


def rest_handler(op: Operation) -> Handler:
    """The aiohttp handler running ``op``; the middleware has checked weight and signature."""

    async def handle(request: web.Request) -> Any:
        venue = request.app[VENUE]
        account = request.get(ACCOUNT)
        if op.new_orders:
            request[ORDER_COUNTS] = venue.limiter.count_order(account or "", op.new_orders)
        if op.new_orders and venue.faults.take("unknown_status"):
            if venue.faults.placed_anyway():  # placed or not, by the seed: the caller must ask
                op.run(venue, account, request[PARAMS])
            raise unknown_status()
        result = op.run(venue, account, request[PARAMS])
        if op.free_on_success:
            venue.limiter.refund(request.remote or LOOPBACK, op.weight_of(request[PARAMS]))
        return result

    handle.sim_op = op  # type: ignore[attr-defined]
    return handle


# ---------------------------------------------------------------------------- websockets


async def _open_socket(request: web.Request, kind: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, timeout=1.0)
    await ws.prepare(request)
    request.app[SOCKETS][kind].add(ws)
    return ws


async def _pump_streams(ws: web.WebSocketResponse, sources: list[StreamSource], combined: bool,
                        venue: Venue) -> None:
    """Send what each stream has due, paced, until the socket closes."""
    try:
        while not ws.closed:
            if venue.faults.latency_s:
                await asyncio.sleep(venue.faults.latency_s)
            while venue.faults.stalled("streams") and not ws.closed:
                await asyncio.sleep(STALL_POLL_S)
            for source in sources:
                for payload in source.poll():
                    frame = {"stream": source.name, "data": payload} if combined else payload
                    await ws.send_str(json.dumps(frame, separators=(",", ":")))
                    await asyncio.sleep(PACE_S)
            await asyncio.sleep(STREAM_POLL_S)
    except ConnectionError:
        return  # the peer went away between two frames
    except Exception:
        log.exception("market stream failed; closing the socket")
        await ws.close(code=WSCloseCode.INTERNAL_ERROR)


async def _serve_streams(request: web.Request, names: list[str],
                         combined: bool) -> web.StreamResponse:
    venue = request.app[VENUE]
    try:
        sources = [open_stream(name, venue.market) for name in names if name]
    except UnknownStream as exc:
        return _json({"code": -1121, "msg": f"Invalid stream name: {exc}"}, 400)
    if not sources:
        return _json({"code": -1102, "msg": "No stream names were given."}, 400)
    ws = await _open_socket(request, "streams")
    pump = asyncio.create_task(_pump_streams(ws, sources, combined, venue))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(json.dumps({"result": None, "id": _request_id(msg.data)}))
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    return ws


def _request_id(text: str) -> Any:
    try:
        return json.loads(text).get("id")
    except (ValueError, AttributeError):
        return None


async def raw_stream(request: web.Request) -> web.StreamResponse:
    if UPSTREAM in request.app:
        return await relay_stream(request, request.app[UPSTREAM], request.app[VENUE].faults,
                                  request.app[SOCKETS]["streams"])
    return await _serve_streams(request, request.match_info["names"].split("/"), False)


async def combined_stream(request: web.Request) -> web.StreamResponse:
    if UPSTREAM in request.app:
        return await relay_stream(request, request.app[UPSTREAM], request.app[VENUE].faults,
                                  request.app[SOCKETS]["streams"])
    return await _serve_streams(request, request.query.get("streams", "").split("/"), True)


async def ws_api(request: web.Request) -> web.StreamResponse:
    venue = request.app[VENUE]
    ws = await _open_socket(request, "ws_api")
    session = WsApiSession(venue, asyncio.get_running_loop(), request.remote or LOOPBACK)
    writer = asyncio.create_task(session.write_to(ws, PACE_S))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                session.handle(msg.data)
    finally:
        session.close()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    return ws


# ---------------------------------------------------------------------------- admin


async def get_faults(request: web.Request) -> web.Response:
    return _json(request.app[VENUE].faults.snapshot())


async def set_faults(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        state = request.app[VENUE].faults.update(changes)
    except ValidationError as exc:
        return _json({"error": {"code": "invalid", "message": str(exc), "fields": exc.fields}},
                     400)
    except ValueError as exc:
        return _json({"error": {"code": "invalid", "message": str(exc), "fields": {}}}, 400)
    target = drop_target(changes.get("drop_ws"))
    if target:
        await close_sockets(request.app, WSCloseCode.INTERNAL_ERROR, target)
    return _json(state)


async def clear_faults(request: web.Request) -> web.Response:
    return _json(request.app[VENUE].faults.clear())


async def deposit(request: web.Request) -> web.Response:
    """``POST /sim/deposit {"asset": "USDT", "amount": "100", "account": "sim"}``."""
    venue = request.app[VENUE]
    try:
        body = await request.json()
        amount = Decimal(str(body["amount"]))
        if not amount.is_finite() or amount <= 0:
            raise ValueError("amount must be > 0")
        account = body.get("account", venue.accounts[0].name)
        venue.deposit(account, str(body["asset"]).upper(), amount)
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        return _json({"error": {"code": "invalid", "message": f"bad deposit: {exc}",
                                "fields": {}}}, 400)
    return _json(venue.engine.account_dict(account))


async def close_sockets(app: web.Application, code: int = WSCloseCode.GOING_AWAY,
                        target: str = "all") -> None:
    """Close the open WebSockets of ``target`` ("all", "streams" or "ws_api")."""
    kinds = list(app[SOCKETS]) if target == "all" else [target]
    sockets = [ws for kind in kinds for ws in list(app[SOCKETS][kind])]
    await asyncio.gather(*(ws.close(code=code, message=b"closed by simulator")
                           for ws in sockets), return_exceptions=True)


# ---------------------------------------------------------------------------- app


async def _market_clock(venue: Venue) -> None:
    """Feed the engine as the market moves, so resting orders fill and stops trigger."""
    while True:
        try:
            venue.sync_market()
        except Exception:
            log.exception("market sync failed")
        await asyncio.sleep(MARKET_TICK_S)


async def _start_background(app: web.Application) -> None:
    app[TASKS].append(asyncio.create_task(_market_clock(app[VENUE])))
    if UPSTREAM in app:
        await app[UPSTREAM].open()
        feed = EngineFeed(app[VENUE], app[UPSTREAM])
        app[TASKS].append(asyncio.create_task(feed.run()))


async def _stop_background(app: web.Application) -> None:
    for task in app[TASKS]:
        task.cancel()
    await asyncio.gather(*app[TASKS], return_exceptions=True)
    await close_sockets(app)
    if UPSTREAM in app:
        await app[UPSTREAM].close()


def build_app(venue: Venue, upstream: Upstream | None = None) -> web.Application:
    """The aiohttp application serving ``venue`` (REST, streams, WebSocket API, faults).

    With ``upstream`` (paper mode) public market data is relayed from it and the matching
    engine is fed from its streams.
    """
    app = web.Application(middlewares=[admin_loopback_only, binance_rest])
    app[VENUE] = venue
    app[SOCKETS] = {"streams": weakref.WeakSet(), "ws_api": weakref.WeakSet()}
    app[TASKS] = []
    if upstream is not None:
        app[UPSTREAM] = upstream
    for method, path, name in REST_ROUTES:
        if upstream is not None and path in RELAYED_PATHS:
            handler = relay_handler(OPERATIONS[name], upstream, path)
        else:
            handler = rest_handler(OPERATIONS[name])
        app.router.add_route(method, f"/api/v3/{path}", handler)
    app.router.add_get("/ws/{names:.+}", raw_stream)
    app.router.add_get("/stream", combined_stream)
    app.router.add_get("/ws-api/v3", ws_api)
    app.router.add_get("/sim/faults", get_faults)
    app.router.add_post("/sim/faults", set_faults)
    app.router.add_delete("/sim/faults", clear_faults)
    app.router.add_post("/sim/deposit", deposit)
    app.on_startup.append(_start_background)
    app.on_shutdown.append(_stop_background)
    return app


class SimServer:
    """Runs the venue's app on ``host:port`` in a background thread with its own event loop.

    ``port=0`` picks a free port; :attr:`port` holds the bound one after :meth:`start`.
    """

    def __init__(self, venue: Venue | None = None, host: str = "127.0.0.1",
                 port: int = 9010, upstream: Upstream | None = None) -> None:
        self.venue = venue or Venue()
        self.host = host
        self.port = port
        self.upstream = upstream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 5.0) -> None:
        """Bind and serve; returns once the port is open (raises if it could not be)."""
        if self.running:
            return
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="exchange-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"exchange simulator did not start within {timeout_s} s")
        if self._error is not None:
            self._thread.join(timeout_s)
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        runner = web.AppRunner(build_app(self.venue, self.upstream), handle_signals=False,
                               shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("exchange simulator listening on %s", self.base_url)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close every socket and the listener, end the thread; idempotent."""
        if not self.running or self._loop is None:
            return
        loop = self._loop
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            try:
                future.result(timeout_s)
            except Exception:
                log.warning("exchange simulator did not shut down cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._runner = None
        log.info("exchange simulator stopped")

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["SimServer", "build_app"]
