"""Exchange simulator service: the offline Binance Spot venue on SIM_PORT, with heartbeats.

The venue (REST, market streams, user-data WebSocket API, fault switches) runs on its own
thread and event loop; this class only ties its life to the service lifecycle. ``MODE=paper``
relays the real public market (``SIM_UPSTREAM_*``) and matches orders locally; every other mode
serves the configured price source (``SIM_PRICE_SOURCE``, ``SIM_SPEED``). See ``settings``.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from services.exchange_sim.market import ScaledClock
from services.exchange_sim.paper import Upstream
from services.exchange_sim.server import SimServer
from services.exchange_sim.settings import SimSettings, load_sim_settings
from services.exchange_sim.venue import AccountConfig, Venue
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Config
from shared.service import Service

log = logging.getLogger(__name__)
PAPER_HISTORY_S = 3600  # paper serves the real history; the local market is only a fallback


class ExchangeSimService(Service):
    """Serves the venue on ``SIM_HOST:SIM_PORT`` (``SIM_BIND_HOST`` in a container)."""

    name = "exchange_sim"

    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK,
                 settings: SimSettings | None = None, **kwargs) -> None:
        super().__init__(config, clock, **kwargs)
        self.settings = settings or load_sim_settings()
        self.server: SimServer | None = None

    def build_venue(self) -> Venue:
        s, paper = self.settings, self.config.mode == "paper"
        account = AccountConfig(
            api_key=self.config.sim_api_key,
            api_secret=self.config.sim_api_secret,
            funding={"USDT": Decimal("10000")},
        )
        market_clock = self.clock if s.speed == 1 else ScaledClock(self.clock, s.speed)
        history = {"history_s": PAPER_HISTORY_S} if paper else {}
        venue = Venue(market_clock, [account], seed=s.seed,
                      sources={} if paper else s.sources(), signing_clock=self.clock,
                      local_feed=not paper, **history)
        venue.faults.update(s.faults)
        return venue

    def on_start(self) -> None:
        s = self.settings
        upstream = Upstream(s.upstream_rest, s.upstream_ws) if self.config.mode == "paper" else None
        self.server = SimServer(self.build_venue(), host=self.config.sim_bind_host,
                                port=self.config.sim_port, upstream=upstream)
        self.server.start()
        log.info("exchange simulator: mode=%s source=%s speed=%g seed=%d faults=%s",
                 self.config.mode, "upstream" if upstream else s.price_source, s.speed, s.seed,
                 s.faults or "none")

    def heartbeat_detail(self) -> dict:
        if self.server is None:
            return {}
        return {"url": self.server.base_url, "running": self.server.running,
                "mode": self.config.mode,
                "source": "upstream" if self.server.upstream else self.settings.price_source}

    def on_stop(self) -> None:
        if self.server is not None:
            self.server.stop()
