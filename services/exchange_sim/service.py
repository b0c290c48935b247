"""Exchange simulator service: the offline Binance Spot venue on SIM_PORT, with heartbeats.

The venue (REST, market streams, user-data WebSocket API, fault switches) runs on its own
thread and event loop; this class only ties its life to the service lifecycle.
"""

from __future__ import annotations

from decimal import Decimal

from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import AccountConfig, Venue
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Config
from shared.service import Service


class ExchangeSimService(Service):
    """Serves the venue on ``SIM_HOST:SIM_PORT`` (``SIM_BIND_HOST`` in a container)."""

    name = "exchange_sim"

    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK, **kwargs) -> None:
        super().__init__(config, clock, **kwargs)
        self.server: SimServer | None = None

    def on_start(self) -> None:
        account = AccountConfig(
            api_key=self.config.sim_api_key,
            api_secret=self.config.sim_api_secret,
            funding={"USDT": Decimal("10000")},
        )
        venue = Venue(self.clock, [account])
        self.server = SimServer(venue, host=self.config.sim_bind_host, port=self.config.sim_port)
        self.server.start()

    def heartbeat_detail(self) -> dict:
        if self.server is None:
            return {}
        return {"url": self.server.base_url, "running": self.server.running}

    def on_stop(self) -> None:
        if self.server is not None:
            self.server.stop()
