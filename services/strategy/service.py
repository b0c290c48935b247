"""Strategy worker: joins the bus and heartbeats; several copies may run at once.

Claiming bots by lease and running strategies come with the strategy issue.
"""

from __future__ import annotations

from shared.service import Service


class StrategyService(Service):
    """One worker process; each copy heartbeats under its own instance id."""

    name = "strategy"
