"""Strategy worker: runs the bots it holds a lease on and sends their intents to execution.

Several copies run at once (``honcho start -c strategy=3``); they share the running bots
fairly through leases in the state service (see ``worker.py``). A copy starts and heartbeats
even while state, marketdata or execution are away: it waits and retries, never exits.
"""

from __future__ import annotations

import logging

from services.strategy.settings import StrategySettings
from services.strategy.worker import Worker
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Config
from shared.service import Service

log = logging.getLogger(__name__)


class StrategyService(Service):
    """One worker process; each copy heartbeats under its own instance id, its lease owner."""

    name = "strategy"

    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK,
                 configure_logging: bool = False,
                 settings: StrategySettings | None = None) -> None:
        super().__init__(config, clock, configure_logging)
        self.settings = settings or StrategySettings.from_env()
        self.worker: Worker | None = None

    def on_start(self) -> None:
        self.worker = Worker(self.ctx, self.config, self.settings, self.clock, self.instance)
        self.worker.start()
        log.info("strategy worker %s: lease TTL %g s", self.instance, self.settings.lease_ttl_s)

    def step(self, timeout_s: float) -> None:
        self.worker.step(timeout_s)

    def on_stop(self) -> None:
        if self.worker is not None:
            self.worker.close()

    def heartbeat_detail(self) -> dict:
        detail = dict(self.status_detail)
        if self.worker is not None:
            detail.update(self.worker.describe())
        return detail
