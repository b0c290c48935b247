"""``LiveData`` and ``Hub`` without sockets: snapshots and updates agree, slow clients drop."""

from __future__ import annotations

import json

from services.gateway.health import HealthBook
from services.gateway.hub import SLOW_REASON, WsClient
from services.gateway.live import LiveData
from shared import messages as m

SNAPSHOT = {"seq": 7, "bots": [{"id": 1, "status": "STOPPED"}], "params": [], "leases": [],
            "positions": [], "balances": [], "open_orders": [], "recent_orders": [],
            "recent_trades": [], "alerts": []}


def frames(client: WsClient) -> list[dict]:
    out = []
    while (text := client.next(0)) is not None:
        out.append(json.loads(text))
    return out


def bot_change(seq: int, status: str) -> m.StateChanged:
    return m.StateChanged(seq=seq, kind="bot", payload={"id": 1, "status": status})


def test_state_updates_older_than_the_copy_are_not_sent_again():
    live = LiveData(HealthBook())
    live.on_state_resync(SNAPSHOT)
    client = WsClient()
    live.hub.subscribe(client, ["state"])

    live.on_state_change(bot_change(7, "OLD"))
    live.on_state_change(bot_change(8, "RUNNING"))

    snapshot, update = frames(client)
    assert snapshot["data"]["seq"] == 7 and update["seq"] == snapshot["seq"] + 1
    assert update["data"]["state_seq"] == 8
    assert live.snapshot("state")["bots"][0]["status"] == "RUNNING"


def test_a_resync_sends_every_subscriber_a_fresh_snapshot():
    live = LiveData(HealthBook())
    client = WsClient()
    live.hub.subscribe(client, ["state", "orders"])

    live.on_state_resync(SNAPSHOT)

    sent = frames(client)
    assert [(f["channel"], f["data"]["synced"]) for f in sent] == [
        ("state", False), ("orders", False), ("state", True), ("orders", True)]


def test_a_full_queue_drops_that_client_only():
    live = LiveData(HealthBook())
    slow, fast = WsClient(maxsize=3), WsClient(maxsize=100)
    live.hub.subscribe(slow, ["logs"])
    live.hub.subscribe(fast, ["logs"])

    for i in range(5):
        live.on_log(m.LogRecord(service="s", instance="i", level="INFO", logger="l",
                                message=str(i), ts=0.0))

    assert slow.close_reason == SLOW_REASON and live.hub.dropped == 1
    assert [f["seq"] for f in frames(fast)][1:] == [1, 2, 3, 4, 5]
    assert live.hub.subscriber_count("logs") == 1
