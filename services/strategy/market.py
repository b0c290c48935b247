"""The market side of a worker: one SUB socket for its bots' ``md.*`` topics, and requests to
the marketdata service (candle history for warm-ups, the streams this worker needs).

``MarketFeed.poll`` drains what is waiting and coalesces it: every closed candle in order,
but only the latest book and depth per symbol, so a burst of book updates never queues up
behind the strategy (the latest value is never lost). ``MarketdataLink`` runs its requests
on a small thread pool so a slow history (REST paging) never holds up lease renewals.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import zmq

from shared import topics
from shared.bus import Subscriber
from shared.codec import decode, encode
from shared.errors import RemoteError, RequestTimeout
from shared.messages import (
    BookTicker,
    Candle,
    DepthBook,
    GetCandles,
    Heartbeat,
    Message,
    Reply,
    SetMarketStreams,
)

log = logging.getLogger(__name__)

MAX_BATCH = 50_000  # messages drained per poll at most, so the loop still gets to its round
POLL_SLICE_MS = 100
COALESCED = (b"md.book.", b"md.depth.")  # only the latest value of these matters


@dataclass
class Batch:
    """What arrived since the last poll: candles and heartbeats in order, books coalesced."""

    candles: list[tuple[str, Candle]] = field(default_factory=list)
    books: dict[str, BookTicker] = field(default_factory=dict)
    depths: dict[str, DepthBook] = field(default_factory=dict)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    received: int = 0


class MarketFeed:
    """The worker's subscriptions: exactly the wanted ``md.*`` topics plus peer heartbeats."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self._sub = Subscriber(ctx, endpoint, [topics.health("strategy")])
        self._topics: frozenset[str] = frozenset()
        self.received = 0

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    def set_topics(self, wanted: Iterable[str]) -> bool:
        """Subscribe to ``wanted`` only; True when that changed anything."""
        wanted = frozenset(wanted)
        for topic in wanted - self._topics:
            self._sub.subscribe(topic)
        for topic in self._topics - wanted:
            self._sub.unsubscribe(topic)
        changed, self._topics = wanted != self._topics, wanted
        return changed

    @property
    def socket(self) -> zmq.Socket:
        return self._sub.socket

    def poll(self, timeout_ms: int) -> Batch:
        """What arrives within ``timeout_ms``, drained (empty if nothing came)."""
        if not self._sub.socket.poll(timeout_ms, zmq.POLLIN):
            return Batch()
        return self.drain()

    def drain(self) -> Batch:
        """Everything waiting now, without blocking."""
        batch = Batch()
        sock = self._sub.socket
        latest: dict[bytes, bytes] = {}  # books and depths: only the last body is decoded
        while batch.received < MAX_BATCH:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            batch.received += 1
            if len(frames) != 2:
                continue
            if frames[0].startswith(COALESCED):
                latest[frames[0]] = frames[1]
            else:
                self._sort(frames[0], frames[1], batch)
        for topic, body in latest.items():
            self._sort(topic, body, batch)
        self.received += batch.received
        return batch

    def _sort(self, raw_topic: bytes, body: bytes, batch: Batch) -> None:
        topic = raw_topic.decode(errors="replace")
        # prefix matching: md.book.BTCUSD would also bring md.book.BTCUSDT; keep exact ones
        if topic not in self._topics and not topic.startswith("health."):
            return
        try:
            msg = decode(body)
        except Exception as exc:  # a bad frame is dropped, never raised into the loop
            log.warning("dropped an undecodable message on %s: %s", topic, exc)
            return
        if isinstance(msg, Candle):
            if msg.closed:
                batch.candles.append((topic, msg))
        elif isinstance(msg, BookTicker):
            batch.books[msg.symbol] = msg
        elif isinstance(msg, DepthBook):
            batch.depths[msg.symbol] = msg
        elif isinstance(msg, Heartbeat):
            batch.heartbeats.append(msg)

    def close(self) -> None:
        self._sub.close()


def ask(ctx: zmq.Context, endpoint: str, msg: Message, timeout_s: float,
        stop: threading.Event) -> Reply:
    """One request, one REQ socket, waiting in short slices so a stop is noticed at once."""
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(encode(msg))
        waited_ms = 0
        while not stop.is_set() and waited_ms < timeout_s * 1000:
            if sock.poll(POLL_SLICE_MS, zmq.POLLIN):
                reply = decode(sock.recv())
                if not isinstance(reply, Reply):
                    raise RemoteError("bad_reply", f"expected a Reply, got {reply.type}")
                return reply
            waited_ms += POLL_SLICE_MS
        raise RequestTimeout(f"{msg.type}: no reply from {endpoint} within {timeout_s:g} s")
    finally:
        sock.close()


class MarketdataLink:
    """History and stream requests to the marketdata service, off the worker's loop."""

    def __init__(self, ctx: zmq.Context, endpoint: str, subscriber: str,
                 history_timeout_s: float, stream_ttl_s: float) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self.subscriber = subscriber
        self.history_timeout_s = history_timeout_s
        self.stream_ttl_s = stream_ttl_s
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="marketdata")
        self._streams: concurrent.futures.Future | None = None

    def history(self, symbol: str, interval: str, limit: int) -> concurrent.futures.Future:
        """A future of the newest ``limit`` closed candles, oldest first."""
        return self._pool.submit(self._history, symbol, interval, limit)

    def _history(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        request = GetCandles(symbol=symbol, interval=interval, limit=limit)
        reply = ask(self._ctx, self._endpoint, request, self.history_timeout_s, self._stop)
        if not reply.ok:
            raise RemoteError(reply.error_code, reply.error_message or reply.error_code)
        return [Candle.from_dict(c) for c in reply.result["candles"]]

    def keep_streams(self, wanted: Iterable[str]) -> bool:
        """Ask for ``wanted`` to flow (renewing the TTL); False if the last ask is unanswered."""
        if self._streams is not None and not self._streams.done():
            return False
        request = SetMarketStreams(subscriber=self.subscriber, topics=tuple(sorted(wanted)),
                                   ttl_s=self.stream_ttl_s)
        self._streams = self._pool.submit(self._keep_streams, request)
        return True

    def _keep_streams(self, request: SetMarketStreams) -> None:
        try:
            reply = ask(self._ctx, self._endpoint, request, 2.0, self._stop)
        except RequestTimeout as exc:
            log.info("marketdata not answering yet (%s); streams asked again soon", exc)
            raise
        if not reply.ok:
            log.warning("marketdata refused streams %s: %s", request.topics, reply.error_message)

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
