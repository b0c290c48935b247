"""One connection of the WebSocket API (``/ws-api/v3``): requests, replies, user-data events.

python-binance 1.0.37 subscribes to user data with ``userDataStream.subscribe.signature`` and
routes every ``{"subscriptionId", "event"}`` frame to the queue of that subscription. Replies
and events leave through one outbox, written with a small pause between frames of a burst so
the client's 100-message queue never overflows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, web

from .api_error import ApiError, internal_error, unknown_status
from .operations import OPERATIONS, WS_API_METHODS, Operation
from .params import Params
from .venue import Venue

log = logging.getLogger(__name__)

STALL_POLL_S = 0.05


class WsApiSession:
    """State of one WebSocket API connection: its subscriptions and its outbox."""

    def __init__(self, venue: Venue, loop: asyncio.AbstractEventLoop, ip: str) -> None:
        self.venue = venue
        self.loop = loop
        self.ip = ip
        self.outbox: asyncio.Queue[dict] = asyncio.Queue()
        self._ids = itertools.count(0)
        self._subscriptions: dict[int, tuple[str, int]] = {}  # id -> (account, listener token)

    async def write_to(self, ws: web.WebSocketResponse, pace_s: float) -> None:
        """Send the outbox in order, ``pace_s`` apart within a burst, until the socket closes."""
        try:
            while not ws.closed:
                frame = await self.outbox.get()
                latency = self.venue.faults.latency_s
                if latency:
                    await asyncio.sleep(latency)
                while self.venue.faults.stalled("ws_api") and not ws.closed:
                    await asyncio.sleep(STALL_POLL_S)
                await ws.send_str(json.dumps(frame, separators=(",", ":")))
                if not self.outbox.empty():
                    await asyncio.sleep(pace_s)
        except ConnectionError:
            return  # the peer went away; its subscriptions end with the socket
        except Exception:
            log.exception("WebSocket API writer failed; closing the socket")
            await ws.close(code=WSCloseCode.INTERNAL_ERROR)

    def handle(self, text: str) -> None:
        """Answer one request frame (the reply goes to the outbox)."""
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            self._reply(None, error=ApiError(400, -1000, "Malformed request."))
            return
        request_id, method = request.get("id"), request.get("method")
        params = request.get("params") or {}
        try:
            result = self._call(str(method), params)
        except ApiError as exc:
            self._reply(request_id, error=exc)
        except Exception:
            log.exception("WebSocket API %s failed", method)
            self._reply(request_id, error=internal_error())
        else:
            self._reply(request_id, result=result)

    def _call(self, method: str, params: dict) -> Any:
        if method in WS_API_METHODS:
            return self._operation(OPERATIONS[WS_API_METHODS[method]], params)
        if method == "userDataStream.subscribe.signature":
            return self._subscribe(params)
        if method == "userDataStream.unsubscribe":
            return self._unsubscribe(params.get("subscriptionId"))
        if method == "session.subscriptions":
            return [{"subscriptionId": sub_id} for sub_id in self._subscriptions]
        raise ApiError(400, -1000, f"Unknown method '{method}'.")

    def _operation(self, op: Operation, params: dict) -> Any:
        """Run a REST-equivalent operation with WebSocket API params (JSON values)."""
        values = {k: _text(v) for k, v in params.items()}
        p = Params(values)
        self.venue.limiter.charge(self.ip, op.weight_of(p))
        account = None
        if op.signed:
            account = self.venue.auth.verify_ws(params).account
        if op.new_orders:
            self.venue.limiter.count_order(account or "", op.new_orders)
            if self.venue.faults.take("unknown_status"):  # as over REST: placed or not
                if self.venue.faults.placed_anyway():
                    op.run(self.venue, account, p)
                raise unknown_status()
        result = op.run(self.venue, account, p)
        if op.free_on_success:
            self.venue.limiter.refund(self.ip, op.weight_of(p))
        return result

    def _subscribe(self, params: dict) -> dict:
        key = self.venue.auth.verify_ws(params)
        if any(account == key.account for account, _ in self._subscriptions.values()):
            raise ApiError(400, -2035, "User Data Stream subscription already active.")
        sub_id = next(self._ids)

        def deliver(event: dict) -> None:
            frame = {"subscriptionId": sub_id, "event": event}
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, frame)

        token = self.venue.add_user_listener(key.account, deliver)
        self._subscriptions[sub_id] = (key.account, token)
        log.info("user-data subscription %s for account %s", sub_id, key.account)
        return {"subscriptionId": sub_id}

    def _unsubscribe(self, sub_id: Any) -> dict:
        if sub_id is None:
            self.close()
            return {}
        try:
            account_token = self._subscriptions.pop(int(sub_id))
        except (KeyError, ValueError, TypeError):
            raise ApiError(400, -2036, "User Data Stream subscription not active.") from None
        self.venue.remove_user_listener(account_token[1])
        return {}

    def close(self) -> None:
        """Drop every subscription of this connection."""
        for _, token in self._subscriptions.values():
            self.venue.remove_user_listener(token)
        self._subscriptions.clear()

    def _reply(self, request_id: Any, result: Any = None, error: ApiError | None = None) -> None:
        limits = self.venue.limiter.limits
        frame: dict[str, Any] = {"id": request_id}
        if error is None:
            frame.update(status=200, result=result)
        else:
            frame.update(status=error.status, error=error.body())
        frame["rateLimits"] = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                "intervalNum": 1, "limit": limits.weight_per_minute,
                                "count": 2}]
        self.outbox.put_nowait(frame)


def _text(value: Any) -> str:
    """A JSON param value as the REST form would carry it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
