"""Request/reply to the state, execution and market data services, for many HTTP threads.

A ``RequestClient`` (Lazy Pirate) is not thread-safe, so each backend keeps a small pool: a
request borrows a client, uses it, gives it back. Every call is bounded by its timeout and
is sent once (``retries=1``): the HTTP caller decides whether to repeat, so a command such as
closing a position is never sent twice behind the user's back. A backend's answer becomes an
``ApiError`` with the right HTTP status; silence becomes 503.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq

from services.gateway.errors import ApiError
from shared.bus import RequestClient
from shared.codec import encode
from shared.config import Endpoints
from shared.errors import CodecError, RequestTimeout
from shared.messages import Message, Reply

log = logging.getLogger(__name__)

TIMEOUTS_MS = {"state": 2000, "execution": 3000, "marketdata": 10000}
MAX_IDLE_CLIENTS = 8

# A backend's error code -> HTTP status. Codes not listed: 409 (refused by a rule).
STATUS_OF_CODE = {
    "invalid": 400, "bad_request": 400, "unknown_bot": 404, "unknown_order": 404,
    "not_found": 404, "stale_lease": 409, "storage": 502, "internal": 502,
    "exchange_error": 502, "exchange_unavailable": 503, "timeout": 504, "429": 503,
}


class ClientPool:
    """Idle ``RequestClient``s to one endpoint; borrow with ``with pool.client() as c``."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout_ms: int) -> None:
        self._ctx = ctx
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self._idle: list[RequestClient] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def client(self) -> Iterator[RequestClient]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = RequestClient(self._ctx, self.endpoint, self.timeout_ms, retries=1)
        try:
            yield client
        finally:
            with self._lock:
                keep = not self._closed and len(self._idle) < MAX_IDLE_CLIENTS
                if keep:
                    self._idle.append(client)
            if not keep:
                client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


class Backends:
    """The gateway's view of its peers: ``call(service, message)`` returns the result."""

    def __init__(self, ctx: zmq.Context, endpoints: Endpoints,
                 timeouts_ms: dict[str, int] | None = None) -> None:
        timeouts = {**TIMEOUTS_MS, **(timeouts_ms or {})}
        self.pools = {
            name: ClientPool(ctx, getattr(endpoints, name), timeouts[name])
            for name in ("state", "execution", "marketdata")
        }

    def request(self, service: str, msg: Message) -> Reply:
        """The raw ``Reply``; ``ApiError(503)`` when the service does not answer in time."""
        try:
            encode(msg)
        except (CodecError, OverflowError, ValueError, TypeError) as exc:
            raise ApiError(400, "invalid", f"a value cannot be sent: {exc}") from None
        try:
            with self.pools[service].client() as client:
                return client.request(msg)
        except RequestTimeout:
            raise ApiError(503, f"{service}_unavailable",
                           f"the {service} service did not answer in time; try again") from None
        except (CodecError, zmq.ZMQError) as exc:
            log.warning("bad exchange with %s on %s: %s", service, msg.type, exc)
            raise ApiError(502, "backend_error", f"the {service} service answered badly") from None

    def call(self, service: str, msg: Message) -> Any:
        """The result of an ``ok`` reply, else the matching ``ApiError``."""
        reply = self.request(service, msg)
        if reply.ok:
            return reply.result
        raise reply_error(service, msg, reply)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


def reply_error(service: str, msg: Message, reply: Reply) -> ApiError:
    """Translate a backend's error reply into an HTTP answer."""
    fields = dict(reply.fields or {})
    if "does not handle" in fields.get("type", ""):
        return ApiError(503, f"{service}_unsupported",
                        f"the {service} service does not handle {msg.type} yet")
    code = reply.error_code or "rejected"
    status = STATUS_OF_CODE.get(code, 409)
    message = reply.error_message or code
    return ApiError(status, code, message, fields)
