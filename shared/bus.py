"""ZeroMQ helpers every service uses: publish, subscribe, request/reply.

- ``Publisher`` connects a PUB socket to the bus proxy's XSUB side; thread-safe.
- ``Subscriber`` connects a SUB socket to the proxy's XPUB side and yields messages.
- ``RequestClient`` is the zguide Lazy Pirate: a REQ socket, a poll with a timeout, and on
  silence the socket is thrown away and the request sent again, a bounded number of times.
  It never hangs; requests must be safe to repeat (they carry idempotency keys).
- ``ReplyServer`` is a ROUTER socket that answers each request with a handler's ``Reply``;
  a handler error becomes an error reply, never a dead server.

Every socket has ``linger=0`` so closing never blocks on unsent messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import zmq

from shared.codec import decode, encode
from shared.errors import CodecError, RemoteError, RequestTimeout, TradingBotError, ValidationError
from shared.messages import Message, Reply

log = logging.getLogger(__name__)

# Pub/sub may drop under load by design; these bounds keep memory finite when a peer stalls.
PUB_SNDHWM = 100_000
SUB_RCVHWM = 100_000


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


class Publisher:
    """Publishes ``[topic, body]`` frames to the bus; safe to call from any thread."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self._sock = _socket(ctx, zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, PUB_SNDHWM)
        self._sock.connect(endpoint)
        self._lock = threading.Lock()
        self._closed = False

    def publish(self, topic: str, msg: Message) -> None:
        body = encode(msg)
        with self._lock:
            if self._closed:
                return
            try:
                self._sock.send_multipart([topic.encode(), body], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass  # high-water mark reached: pub/sub drops, by design

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._sock.close()


class Subscriber:
    """Receives ``(topic, message)`` pairs for the given topic prefixes."""

    def __init__(self, ctx: zmq.Context, endpoint: str, prefixes: Iterable[str] = ()) -> None:
        self._sock = _socket(ctx, zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        self._sock.connect(endpoint)
        for prefix in prefixes:
            self.subscribe(prefix)

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def subscribe(self, prefix: str) -> None:
        self._sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())

    def unsubscribe(self, prefix: str) -> None:
        self._sock.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())

    def recv(self, timeout_ms: int) -> tuple[str, Message] | None:
        """The next message, or None when nothing came within ``timeout_ms``.

        A frame that does not decode is logged and skipped, never raised to the caller.
        """
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return None
        frames = self._sock.recv_multipart()
        if len(frames) != 2:
            log.warning("dropped a pub/sub message with %d frames", len(frames))
            return None
        try:
            return frames[0].decode(), decode(frames[1])
        except (CodecError, UnicodeDecodeError) as exc:
            log.warning("dropped an undecodable message on %r: %s", frames[0][:64], exc)
            return None

    def close(self) -> None:
        self._sock.close()


class RequestClient:
    """Lazy Pirate request/reply client: bounded wait, bounded retries, never hangs.

    Not thread-safe: give each thread its own client.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        timeout_ms: int = 1000,
        retries: int = 3,
    ) -> None:
        if timeout_ms <= 0 or retries < 1:
            raise ValueError("timeout_ms must be > 0 and retries >= 1")
        self._ctx = ctx
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.retries = retries
        self._sock: zmq.Socket | None = None

    def _connect(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = _socket(self._ctx, zmq.REQ)
            self._sock.connect(self.endpoint)
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, msg: Message) -> Reply:
        """Send ``msg`` and return the ``Reply``; raise RequestTimeout after all retries."""
        body = encode(msg)
        for attempt in range(1, self.retries + 1):
            sock = self._connect()
            sock.send(body)
            if sock.poll(self.timeout_ms, zmq.POLLIN):
                reply = decode(sock.recv())
                if not isinstance(reply, Reply):
                    self._reset()
                    raise CodecError(f"expected a Reply, got {reply.type}")
                return reply
            # Lazy Pirate: a REQ socket that got no answer is unusable; start afresh.
            self._reset()
            log.debug("no reply from %s (attempt %d/%d)", self.endpoint, attempt, self.retries)
        raise RequestTimeout(
            f"no reply from {self.endpoint} after {self.retries} attempts "
            f"of {self.timeout_ms} ms"
        )

    def call(self, msg: Message) -> object:
        """Like ``request`` but return the result, raising RemoteError on an error reply."""
        reply = self.request(msg)
        if not reply.ok:
            if reply.fields:
                raise ValidationError(reply.fields, reply.error_message or reply.error_code)
            raise RemoteError(reply.error_code, reply.error_message)
        return reply.result

    def close(self) -> None:
        self._reset()


Handler = Callable[[Message], Reply | object]


class ReplyServer:
    """Answers requests on a ROUTER socket; call ``serve(timeout_ms)`` from a loop."""

    def __init__(self, ctx: zmq.Context, endpoint: str, handler: Handler) -> None:
        self._sock = _socket(ctx, zmq.ROUTER)
        self._sock.bind(endpoint)
        self._handler = handler

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    @property
    def endpoint(self) -> str:
        """The bound address, with the real port when bound to ``tcp://host:*``."""
        return self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def serve(self, timeout_ms: int, limit: int = 0) -> int:
        """Answer every request waiting now (at most ``limit`` when it is set), or the first
        to arrive within the timeout. A service whose loop has other work (reconciliation,
        stream events) sets a limit: under a steady flow of requests an unbounded drain
        would never return to it."""
        served = 0
        if not self._sock.poll(timeout_ms, zmq.POLLIN):
            return 0
        while not limit or served < limit:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return served
            self._answer(frames)
            served += 1
        return served

    def _answer(self, frames: list[bytes]) -> None:
        if len(frames) < 3:
            log.warning("dropped a malformed request with %d frames", len(frames))
            return
        envelope, body = frames[:-1], frames[-1]
        reply = self._handle(body)
        self._sock.send_multipart([*envelope, encode(reply)])

    def _handle(self, body: bytes) -> Reply:
        try:
            request = decode(body)
        except CodecError as exc:
            return Reply(ok=False, error_code="bad_request", error_message=str(exc))
        try:
            result = self._handler(request)
        except ValidationError as exc:
            return Reply(ok=False, error_code="invalid", error_message=str(exc), fields=exc.fields)
        except TradingBotError as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            return Reply(ok=False, error_code=str(code), error_message=str(exc))
        except Exception as exc:  # a handler bug must not kill the server
            log.exception("request handler failed on %s", request.type)
            return Reply(ok=False, error_code="internal", error_message=type(exc).__name__)
        return result if isinstance(result, Reply) else Reply(ok=True, result=result)

    def close(self) -> None:
        self._sock.close()
