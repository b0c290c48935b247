"""Intents from the strategies to execution, by request/reply, sent from the worker's loop.

Each ``OrderIntent`` becomes a ``SubmitIntent`` carrying the bot id (execution's ids are
strings: ``str(state bot id)``) and the lease epoch it was decided under. It leaves at once
on a DEALER socket (no thread hand-over on the tick-to-intent path); each attempt carries a
correlation frame that the ROUTER on the other side sends back with its answer, so several
intents can be out at a time. An attempt unanswered within ``timeout_s`` is sent again with
the same ``intent_id`` (execution answers a repeated id with its first answer, so a retry
never places a second order), until the lease is no longer held or ``give_up_s`` has passed;
one answered "not yet" (``unconfirmed``...) is asked again after a pause. Final answers are
queued on ``results`` for the loop.

Each intent carries a deadline, ``DEADLINE_SHARE`` of ``give_up_s`` after its first send:
execution refuses one that reaches it later (attempts can wait in its queue while it is busy
or stuck on the exchange), so an intent the worker dropped is not traded behind its back, and
a decision is never acted on long after the candle or quote it came from.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from shared.clock import Clock
from shared.codec import decode, encode
from shared.errors import CodecError
from shared.messages import Reply, SubmitIntent
from shared.strategies import OrderIntent

log = logging.getLogger(__name__)

RETRY_CODES = frozenset({"unconfirmed", "state_unreachable", "exchange_unavailable"})
RETRY_PAUSE_S = 0.5
NOT_CONNECTED_RETRY_S = 0.05
DEADLINE_SHARE = 0.8  # the rest of give_up_s leaves time for execution's answer to arrive


def to_submit(intent: OrderIntent, bot_id: int, epoch: int) -> SubmitIntent:
    """The wire command for one strategy intent under lease ``epoch``."""
    return SubmitIntent(
        intent_id=intent.intent_id,
        bot_id=str(bot_id),
        epoch=epoch,
        symbol=intent.symbol,
        side=intent.side,
        order_type=intent.order_type,
        quantity=intent.base_qty,
        quote_qty=intent.quote_amount,
        price=intent.limit_price,
        stop_loss=intent.stop_loss,
        take_profit=intent.take_profit,
        reason=intent.reason,
    )


@dataclass(frozen=True)
class IntentResult:
    """Execution's final answer to an intent (``reply`` None: none came, or lease lost)."""

    intent: SubmitIntent
    reply: Reply | None
    attempts: int


@dataclass
class _Outstanding:
    intent: SubmitIntent
    started: float
    attempts: int = 0
    due: float = 0.0  # when to send again (no answer by then, or a "not yet" pause over)
    correlation: bytes = b""


class IntentSender:
    """Delivers intents to execution; driven by the loop (``socket`` readable, ``tick``)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, held: Callable[[int, int], bool],
                 clock: Clock, timeout_s: float, give_up_s: float) -> None:
        self._ctx = ctx
        self.endpoint = endpoint
        self._held = held
        self.clock = clock
        self.timeout_s = timeout_s
        self.give_up_s = give_up_s
        self._sock = self._connect()
        self._ids = itertools.count(1)
        self._out: dict[str, _Outstanding] = {}  # by intent_id
        self._by_correlation: dict[bytes, str] = {}
        self.results: collections.deque[IntentResult] = collections.deque()
        self.counts = {"sent": 0, "accepted": 0, "rejected": 0, "retried": 0, "dropped": 0}

    def _connect(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # only onto a live connection: an intent must not wait in a queue for an execution
        # that is away and land long after it was given up on
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.connect(self.endpoint)
        return sock

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    @property
    def outstanding(self) -> int:
        return len(self._out)

    def close(self) -> None:
        self._sock.close()

    def submit(self, intent: SubmitIntent) -> None:
        """Send now; an intent already out (same id) is left to its own retries."""
        if intent.intent_id in self._out:
            return
        if not intent.deadline_ms:
            deadline = self.clock.time() + self.give_up_s * DEADLINE_SHARE
            intent = dataclasses.replace(intent, deadline_ms=int(deadline * 1000))
        entry = _Outstanding(intent, self.clock.monotonic())
        self._out[intent.intent_id] = entry
        self._attempt(entry)

    def _attempt(self, entry: _Outstanding) -> None:
        if not self._held(int(entry.intent.bot_id), entry.intent.epoch):
            log.warning("intent %s dropped: bot %s lease epoch %d is lost",
                        entry.intent.intent_id, entry.intent.bot_id, entry.intent.epoch)
            self._finish("dropped", entry, None)
            return
        entry.attempts += 1
        self.counts["sent" if entry.attempts == 1 else "retried"] += 1
        self._by_correlation.pop(entry.correlation, None)
        entry.correlation = next(self._ids).to_bytes(8, "big")
        self._by_correlation[entry.correlation] = entry.intent.intent_id
        entry.due = self.clock.monotonic() + self.timeout_s
        try:
            self._sock.send_multipart([entry.correlation, b"", encode(entry.intent)],
                                      flags=zmq.NOBLOCK)
        except zmq.Again:  # no connection to execution (yet): try again shortly
            entry.due = self.clock.monotonic() + NOT_CONNECTED_RETRY_S

    def receive(self) -> None:
        """Take every answer waiting on the socket (call when it is readable)."""
        while True:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 3:
                continue
            intent_id = self._by_correlation.pop(frames[0], None)
            entry = self._out.get(intent_id) if intent_id is not None else None
            if entry is None:
                continue  # an answer to an attempt already given up on or answered
            try:
                reply = decode(frames[2])
            except CodecError as exc:
                log.warning("undecodable answer to intent %s: %s", intent_id, exc)
                continue
            self._answered(entry, reply)

    def _answered(self, entry: _Outstanding, reply: object) -> None:
        if not isinstance(reply, Reply):
            log.warning("intent %s answered with %s", entry.intent.intent_id, type(reply))
            return
        if not reply.ok and reply.error_code in RETRY_CODES:
            entry.due = self.clock.monotonic() + RETRY_PAUSE_S
            self._by_correlation.pop(entry.correlation, None)
            entry.correlation = b""
            return
        self._finish("accepted" if reply.ok else "rejected", entry, reply)

    def tick(self) -> None:
        """Send again what went unanswered (or was answered "not yet"); give up when due."""
        now = self.clock.monotonic()
        for entry in [e for e in self._out.values() if e.due <= now]:
            if now - entry.started > self.give_up_s:
                log.error("intent %s dropped: no answer from execution for %.0f s",
                          entry.intent.intent_id, self.give_up_s)
                self._finish("dropped", entry, None)
                continue
            if entry.correlation:
                log.info("intent %s: no answer within %g s; sending it again",
                         entry.intent.intent_id, self.timeout_s)
            self._attempt(entry)

    def pump(self, timeout_ms: int) -> None:
        """Wait at most ``timeout_ms`` for answers, take them, then ``tick`` (for callers
        without a loop of their own)."""
        if self._sock.poll(timeout_ms, zmq.POLLIN):
            self.receive()
        self.tick()

    def _finish(self, outcome: str, entry: _Outstanding, reply: Reply | None) -> None:
        self.counts[outcome] += 1
        self._out.pop(entry.intent.intent_id, None)
        self._by_correlation.pop(entry.correlation, None)
        if reply is not None and not reply.ok:
            log.info("intent %s refused by execution: %s %s", entry.intent.intent_id,
                     reply.error_code, reply.error_message)
        self.results.append(IntentResult(entry.intent, reply, entry.attempts))
