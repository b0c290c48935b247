"""State service: joins the bus, heartbeats and answers on its request endpoint.

The SQLite store behind the endpoint comes with the state issue.
"""

from __future__ import annotations

from shared.service import ReplyService


class StateService(ReplyService):
    """Will be the source of truth; answers ``Ping`` for now."""

    name = "state"
    endpoint_name = "state"
