"""Market data service: joins the bus, heartbeats and answers on its history endpoint.

The stream connection and the history cache come with the market data issue.
"""

from __future__ import annotations

from shared.service import ReplyService


class MarketdataService(ReplyService):
    """Will own the single Binance market-stream connection; answers ``Ping`` for now."""

    name = "marketdata"
    endpoint_name = "marketdata"
