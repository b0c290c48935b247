"""Market data service: the one connection to Binance market streams, republished on ``md.*``.

Publications (pub/sub through the bus):

- ``md.kline.<SYMBOL>.<interval>``: ``Candle``; the forming candle (``closed=False``) about every
  1-2 s and each closed candle exactly once, in order, also across reconnects (gaps are
  filled by REST before the next candle is published).
- ``md.book.<SYMBOL>``: ``BookTicker`` (best bid/ask) on every change.
- ``md.depth.<SYMBOL>``: ``DepthBook`` (top 20 levels per side) from the diff stream, kept in
  sync with REST snapshots; ``last_update_id`` is Binance's ``u``.
- ``health.marketdata.streams``: ``StreamHealth`` every heartbeat and on (dis)connect; the
  heartbeat's ``detail["streams"]`` carries the same figures.

Requests on the ``marketdata`` endpoint (answered with ``Reply``):

- ``SetMarketStreams(subscriber="<worker instance>", topics=("md.kline.BTCUSDT.1m",
  "md.book.BTCUSDT", "md.depth.BTCUSDT"), ttl_s=15)`` replaces that subscriber's topics and
  keeps them for ``ttl_s``; send it again every few seconds (it is idempotent) or the streams
  stop when the TTL runs out, so a dead worker's streams go away by themselves. Empty
  ``topics`` releases them. Result: ``{"subscriber", "topics", "active", "ttl_s"}``.
- ``GetCandles(symbol="BTCUSDT", interval="1m", limit=500, end_time_ms=None)``: up to 5000
  closed candles, oldest first, as ``Candle`` maps in ``result["candles"]`` (decode each with
  ``Candle.from_dict``). Served from a cache, paged from REST 1000 at a time within the REST
  weight budget; may take seconds when REST is needed, so use a request timeout of ~10 s.
  Errors: ``invalid`` (with fields), ``rate_limited`` (REST budget spent or 429: retry later),
  ``ip_banned`` (418), ``TemporaryError`` (venue away), ``timeout``.

Public market data needs no key: ``MODE=sim`` reads the simulator at ``SIM_HOST:SIM_PORT``,
``paper``/``live`` Binance, ``testnet`` the Spot testnet. A venue that is away is retried with
backoff; the service itself keeps heartbeating (``DEGRADED`` while wanted streams are down).
"""

from __future__ import annotations

import asyncio
import logging

from shared.bus import Subscriber
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Config
from shared.errors import ValidationError
from shared.messages import GetCandles, RateBudget, SetMarketStreams, StreamHealth, TradingPaused
from shared.service import DEGRADED, RUNNING, ReplyService
from shared.strategies.base import KLINE_INTERVALS_MS

from .replies import DeferredReplyServer
from .settings import MarketdataSettings, venue_urls
from .streams import StreamSupervisor
from .subscriptions import (
    StreamKey,
    SubscriptionRegistry,
    check_interval,
    check_symbol,
    parse_topic,
)

log = logging.getLogger(__name__)

HISTORY_TIMEOUT_S = 30.0
DEFERRED_POLL_S = 0.005  # how often parked replies are checked while any is pending
DEGRADED_AFTER_S = 2.0  # wanted streams down this long: heartbeat says DEGRADED


class MarketdataService(ReplyService):
    """Streams what the bots need, publishes it normalised, and serves candle history."""

    name = "marketdata"
    endpoint_name = "marketdata"

    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK,
                 configure_logging: bool = False,
                 settings: MarketdataSettings | None = None) -> None:
        super().__init__(config, clock, configure_logging)
        self.settings = settings or MarketdataSettings()
        self.registry = SubscriptionRegistry()
        self.supervisor: StreamSupervisor | None = None
        self._wanted: frozenset[StreamKey] = frozenset()
        self._down_since: float | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        self.server = DeferredReplyServer(self.ctx, self.config.endpoints.bind(self.endpoint_name),
                                          self.handle)
        rest_url, stream_url = venue_urls(self.config, self.settings)
        assert self.publisher is not None
        self.supervisor = StreamSupervisor(self.settings, rest_url, stream_url,
                                           self.publisher.publish, self.clock)
        self.supervisor.on_health = self.publish_stream_health
        self.supervisor.start()
        # Binance counts weight per IP: execution's view of it (and its 429/418 pauses)
        # holds this process's REST calls too.
        self.exec_feed = Subscriber(self.ctx, self.config.endpoints.bus_xpub,
                                    ["exec.pause", "exec.budget"])
        log.info("market data from %s and %s", rest_url, stream_url)

    def step(self, timeout_s: float) -> None:
        if self.server.pending:
            timeout_s = min(timeout_s, DEFERRED_POLL_S)
        self.server.serve(int(timeout_s * 1000))
        self.server.flush()
        self._follow_execution_budget()
        gone = self.registry.expire(self.clock.monotonic())
        if gone:
            log.info("subscriptions expired: %s", ", ".join(gone))
            self._sync_wanted()
        self._update_state()

    def _follow_execution_budget(self) -> None:
        budget = self.supervisor.rest.budget if self.supervisor and self.supervisor.rest else None
        while (got := self.exec_feed.recv(timeout_ms=0)) is not None:
            event = got[1]
            if budget is None:
                continue
            if isinstance(event, TradingPaused):
                budget.block(max(0.0, event.until_ts - self.clock.time()))
                log.warning("REST calls held %.1f s: %s", event.until_ts - self.clock.time(),
                            event.reason)
            elif isinstance(event, RateBudget):
                budget.observe_shared(event.used_weight_1m)

    def on_stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        feed = getattr(self, "exec_feed", None)
        if feed is not None:
            feed.close()
        super().on_stop()

    def _update_state(self) -> None:
        """DEGRADED while wanted streams have been down a while (not for a resubscription)."""
        if self.state not in (RUNNING, DEGRADED) or self.supervisor is None:
            return
        if self._wanted and not self.supervisor.connected:
            now = self.clock.monotonic()
            self._down_since = self._down_since if self._down_since is not None else now
            self.state = DEGRADED if now - self._down_since >= DEGRADED_AFTER_S else self.state
        else:
            self._down_since = None
            self.state = RUNNING

    # ---- health -------------------------------------------------------------------------------

    def stream_health(self) -> StreamHealth:
        sup = self.supervisor
        if sup is None:
            return StreamHealth(False, (), -1.0, 0, 0, 0, self.clock.time())
        return StreamHealth(connected=sup.connected, streams=sup.streams,
                            last_message_age_s=sup.message_age_s(), reconnects=sup.reconnects,
                            backfilled_candles=sup.backfilled(),
                            depth_resyncs=sup.depth_snapshots(), ts=self.clock.time())

    def publish_stream_health(self) -> None:
        if self.publisher is not None:
            self.publisher.publish("health.marketdata.streams", self.stream_health())

    def heartbeat(self) -> None:
        super().heartbeat()
        self.publish_stream_health()

    def heartbeat_detail(self) -> dict:
        detail = super().heartbeat_detail()
        health = self.stream_health().to_dict()
        for name in ("type", "v", "ts"):
            health.pop(name)
        health["streams"] = len(health["streams"])
        health["subscribers"] = self.registry.subscribers()
        if self.supervisor is not None and self.supervisor.rest is not None:
            health["rest_calls"] = self.supervisor.rest.calls
            health["used_weight_1m"] = self.supervisor.rest.budget.used
        detail["streams"] = health
        return detail

    # ---- requests -----------------------------------------------------------------------------

    def handle(self, request):
        if isinstance(request, SetMarketStreams):
            return self._set_streams(request)
        if isinstance(request, GetCandles):
            return self._get_candles(request)
        return super().handle(request)

    def _set_streams(self, req: SetMarketStreams) -> dict:
        problems = {}
        if not isinstance(req.subscriber, str) or not req.subscriber:
            problems["subscriber"] = "a non-empty name (the worker's instance id)"
        if not 0 < req.ttl_s <= self.settings.max_ttl_s:
            problems["ttl_s"] = f"seconds, greater than 0 and at most {self.settings.max_ttl_s}"
        keys = set()
        for topic in req.topics:
            try:
                keys.add(parse_topic(topic))
            except ValidationError as exc:
                problems.update(exc.fields)
        listed = self.supervisor.symbols if self.supervisor is not None else None
        unknown = sorted({k.symbol for k in keys} - listed) if listed is not None else []
        if unknown:
            problems["topics"] = f"symbols not listed by the venue: {', '.join(unknown)}"
        if problems:
            raise ValidationError(problems, "bad SetMarketStreams")
        self.registry.set(req.subscriber, frozenset(keys), self.clock.monotonic() + req.ttl_s)
        self._sync_wanted()
        return {"subscriber": req.subscriber, "topics": sorted(k.topic for k in keys),
                "active": sorted(k.topic for k in self._wanted), "ttl_s": req.ttl_s}

    def _sync_wanted(self) -> None:
        wanted = self.registry.wanted()
        if wanted != self._wanted:
            self._wanted = wanted
            log.info("market streams wanted: %s",
                     ", ".join(sorted(k.topic for k in wanted)) or "none")
            assert self.supervisor is not None
            self.supervisor.set_wanted(wanted)

    def _get_candles(self, req: GetCandles):
        problems = {}
        for check, value in ((check_symbol, req.symbol), (check_interval, req.interval)):
            try:
                check(value)
            except ValidationError as exc:
                problems.update(exc.fields)
        if not 1 <= req.limit <= self.settings.history_max_limit:
            problems["limit"] = f"from 1 to {self.settings.history_max_limit}"
        if req.end_time_ms is not None and req.end_time_ms <= 0:
            problems["end_time_ms"] = "a positive time in ms, or null for now"
        if problems:
            raise ValidationError(problems, "bad GetCandles")
        assert self.supervisor is not None
        return self.supervisor.submit(self._history(req))

    async def _history(self, req: GetCandles) -> dict:
        assert self.supervisor is not None and self.supervisor.history is not None
        async with asyncio.timeout(HISTORY_TIMEOUT_S):
            candles = await self.supervisor.history.candles(
                req.symbol, req.interval, KLINE_INTERVALS_MS[req.interval], req.limit,
                req.end_time_ms)
        return {"symbol": req.symbol, "interval": req.interval,
                "candles": [c.to_dict() for c in candles]}
