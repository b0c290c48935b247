"""The gateway's bus side: threads that feed ``LiveData`` from pub/sub and the state replica.

- one SUB thread on ``health.``, ``log.``, ``md.book.``, ``md.kline.`` and ``exec.``; it also
  publishes the health view on the ``health`` channel once a second;
- a ``shared.replica.Replica`` (Clone pattern) for ``state.*``: snapshot, then numbered
  updates, resnapshot on a gap;
- a poller that every few seconds asks execution for its status (kill switch, last sync), so
  a page that opens between events still knows them, and asks market data to keep the book
  and kline streams of every bot's symbol flowing (``SetMarketStreams`` with a TTL), so the
  dashboard shows a live price and chart for stopped bots too.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from services.gateway.live import LiveData
from shared.bus import RequestClient, Subscriber
from shared.config import Endpoints
from shared.errors import TradingBotError
from shared.messages import GetExecutionStatus, SetMarketStreams
from shared.replica import Replica

log = logging.getLogger(__name__)

PREFIXES = ("health.", "log.", "md.book.", "md.kline.", "exec.")
HEALTH_EVERY_S = 1.0
PEER_POLL_S = 5.0
FIRST_POLL_S = 0.5
PEER_TIMEOUT_MS = 500
STREAM_TTL_S = 15.0
POLL_MS = 100


class Feeds:
    """Starts and stops every bus-facing thread of the gateway."""

    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, live: LiveData,
                 *, replica_timeout_ms: int = 1000, subscriber: str = "gateway") -> None:
        self.ctx = ctx
        self.subscriber = subscriber
        self.endpoints = endpoints
        self.live = live
        self._stop = threading.Event()
        self.replica = Replica(ctx, endpoints, on_change=live.on_state_change,
                               on_resync=live.on_state_resync, timeout_ms=replica_timeout_ms)
        self._threads = [
            threading.Thread(target=self._listen, name="gateway-bus", daemon=True),
            threading.Thread(target=self._poll_peers, name="gateway-peers", daemon=True),
        ]

    def start(self) -> Feeds:
        self.replica.start()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop every thread; they wind down together, within about one request timeout."""
        self._stop.set()
        self.replica.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=2.0)

    def _listen(self) -> None:
        sub = Subscriber(self.ctx, self.endpoints.bus_xpub, PREFIXES)
        next_health = time.monotonic()
        try:
            while not self._stop.is_set():
                got = sub.recv(timeout_ms=POLL_MS)
                if got is not None:
                    self._deliver(*got)
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + HEALTH_EVERY_S
                    self.live.publish_health()
        except zmq.ContextTerminated:
            return
        finally:
            sub.close()

    def _deliver(self, topic, msg) -> None:
        try:
            self.live.on_message(topic, msg)
        except Exception:  # one odd message must not stop the live views
            log.exception("could not handle %s on %s", msg.type, topic)

    def _poll_peers(self) -> None:
        execution = RequestClient(self.ctx, self.endpoints.execution, PEER_TIMEOUT_MS, retries=1)
        marketdata = RequestClient(self.ctx, self.endpoints.marketdata, PEER_TIMEOUT_MS,
                                   retries=1)
        try:
            while not self._stop.is_set():
                self._ask(execution, GetExecutionStatus(), self.live.set_execution_status)
                topics = self.live.market_topics()
                if topics:
                    self._ask(marketdata, SetMarketStreams(
                        subscriber=self.subscriber, topics=topics, ttl_s=STREAM_TTL_S))
                # soon again until the state copy is in, then every few seconds
                self._stop.wait(PEER_POLL_S if topics else FIRST_POLL_S)
        finally:
            execution.close()
            marketdata.close()

    @staticmethod
    def _ask(client: RequestClient, msg, on_result=None) -> None:
        try:
            reply = client.request(msg)
        except (TradingBotError, zmq.ZMQError):
            return  # the peer is away: the health channel already says so
        if reply.ok and isinstance(reply.result, dict) and on_result is not None:
            on_result(reply.result)
