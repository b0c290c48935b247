"""Execution service: joins the bus, heartbeats and answers on its command endpoint.

Risk, order placement and the user-data stream come with the execution issue.
"""

from __future__ import annotations

from shared.service import ReplyService


class ExecutionService(ReplyService):
    """Will be the only reader of the API secret; answers ``Ping`` for now."""

    name = "execution"
    endpoint_name = "execution"
