"""Exchange simulator service: joins the bus and heartbeats.

The Binance-compatible HTTP/WebSocket venue comes with the simulator issue.
"""

from __future__ import annotations

from shared.service import Service


class ExchangeSimService(Service):
    """Will serve the offline venue on SIM_PORT."""

    name = "exchange_sim"
