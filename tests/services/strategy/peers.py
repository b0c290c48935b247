"""Small real peers over real sockets for the strategy worker's tests: an execution that
records intents and checks lease epochs with state (as the real one does), and a marketdata
that serves candle history and records stream requests. Each runs a ROUTER on its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import zmq

from shared.bus import RequestClient
from shared.codec import decode, encode
from shared.messages import (
    Candle,
    CheckLease,
    GetCandles,
    Message,
    Reply,
    SetMarketStreams,
    SubmitIntent,
)
from shared.strategies.base import KLINE_INTERVALS_MS

Handler = Callable[[Message], Reply | None]  # None: stay silent (the caller must retry)


class PeerServer:
    """A ROUTER on ``endpoint`` answering each request with ``handler`` on its own thread."""

    def __init__(self, ctx: zmq.Context, endpoint: str, handler: Handler) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._handler = handler
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.requests: list[Message] = []
        self._lock = threading.Lock()

    def start(self) -> PeerServer:
        self._thread.start()
        assert self._bound.wait(5), f"peer could not bind {self._endpoint}"
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        assert not self._thread.is_alive()

    def received(self, kind: type[Message]) -> list:
        with self._lock:
            return [r for r in self.requests if isinstance(r, kind)]

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self._endpoint)
        self._bound.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(50, zmq.POLLIN):
                    continue
                *envelope, body = sock.recv_multipart()
                request = decode(body)
                with self._lock:
                    self.requests.append(request)
                reply = self._handler(request)
                if reply is not None:
                    sock.send_multipart([*envelope, encode(reply)])
        finally:
            sock.close()


class ExecutionPeer(PeerServer):
    """Records ``SubmitIntent``s; refuses a stale epoch after asking state, like execution.

    ``silent`` requests are left unanswered first (a lost reply: the worker must retry).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, state_endpoint: str,
                 silent: int = 0) -> None:
        super().__init__(ctx, endpoint, self._handle)
        self._state_endpoint = state_endpoint
        self._state: RequestClient | None = None
        self.silent = silent
        self.answers: dict[str, Reply] = {}

    def _handle(self, request: Message) -> Reply | None:
        if not isinstance(request, SubmitIntent):
            return Reply(ok=False, error_code="invalid", error_message=request.type)
        if self.silent > 0:
            self.silent -= 1
            return None
        if request.intent_id in self.answers:  # idempotent, like the real one
            return self.answers[request.intent_id]
        if self._state is None:  # created on the peer's thread, which alone uses it
            self._state = RequestClient(self._ctx, self._state_endpoint, 2000, 1)
        check = self._state.request(CheckLease(bot_id=int(request.bot_id), epoch=request.epoch))
        if check.ok:
            reply = Reply(ok=True, result={"status": "accepted", "intent_id": request.intent_id})
        else:
            reply = Reply(ok=False, error_code=check.error_code,
                          error_message=f"lease check failed: {check.error_message}")
        self.answers[request.intent_id] = reply
        return reply

    def close(self) -> None:
        super().close()
        if self._state is not None:
            self._state.close()


def history(request: GetCandles, end_ms: int = 1_700_000_000_000) -> list[dict]:
    """``limit`` closed candles ending before ``end_ms``, a gentle zig-zag around 100."""
    step = KLINE_INTERVALS_MS[request.interval]
    first = end_ms - request.limit * step
    candles = []
    for i in range(request.limit):
        close = 100.0 + (i % 7) * 0.1
        candles.append(Candle(
            symbol=request.symbol, interval=request.interval, open_time_ms=first + i * step,
            close_time_ms=first + (i + 1) * step - 1, open=close - 0.05, high=close + 0.1,
            low=close - 0.1, close=close, volume=1.0, closed=True,
        ).to_dict())
    return candles


class MarketdataPeer(PeerServer):
    """Serves ``GetCandles`` (or refuses it when ``refuse_history``) and acks streams."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        super().__init__(ctx, endpoint, self._handle)
        self.refuse_history = False

    def _handle(self, request: Message) -> Reply:
        if isinstance(request, GetCandles):
            if self.refuse_history:
                return Reply(ok=False, error_code="429", error_message="weight budget spent")
            return Reply(ok=True, result={"candles": history(request)})
        if isinstance(request, SetMarketStreams):
            return Reply(ok=True, result={"subscriber": request.subscriber,
                                          "topics": list(request.topics)})
        return Reply(ok=False, error_code="invalid", error_message=request.type)

    def topics_of(self, subscriber: str) -> set[str] | None:
        """The last topics ``subscriber`` asked for (None if it never asked)."""
        asks = [r for r in self.received(SetMarketStreams) if r.subscriber == subscriber]
        return set(asks[-1].topics) if asks else None
