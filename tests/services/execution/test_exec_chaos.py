"""Many intents through random 5xx and -1007 (placed or not): never two orders for one intent,
and state ends up with exactly the orders the venue has."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from services.execution.orders import client_order_id
from shared import messages as m
from tests.services.execution.conftest import intent, set_faults, wait_for

INTENTS = 12
RETRY_CODES = {"unconfirmed", "exchange_unavailable", "state_unreachable"}


def submit_until_final(ask, request: m.SubmitIntent, timeout_s: float = 20) -> m.Reply:
    """What a strategy worker does: the same intent id again until a final answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = ask(request)
        if reply.ok or reply.error_code not in RETRY_CODES:
            return reply
        assert time.monotonic() < deadline, f"no final answer: {reply}"
        time.sleep(0.1)


def test_random_faults_never_double_an_order(execution, ask, ask_state, lease, sim):
    if "rate_unknown_status" not in sim.venue.faults.snapshot():
        pytest.skip("this simulator has no random faults")
    ask(m.SetRiskConfig(changes={"max_position_quote": "1000000"}))
    set_faults(sim, rate_http_5xx=0.2, rate_unknown_status=0.3, unknown_status_placed=0.5,
               seed=11)

    replies = [submit_until_final(ask, intent(f"chaos-{i}", lease, quote_qty=Decimal("20")))
               for i in range(INTENTS)]
    set_faults(sim, rate_http_5xx=0, rate_unknown_status=0)

    venue = [o.client_order_id for o in sim.venue.engine.all_orders("sim", "BTCUSDT", None, 999)]
    for i, reply in enumerate(replies):
        cid = client_order_id(f"chaos-{i}", "1")
        assert venue.count(cid) == (1 if reply.ok else 0), (i, reply)
    assert sum(r.ok for r in replies) >= INTENTS // 2
    wait_for(lambda: execution.service.db.outbox_size() == 0, what="the outbox drained")
    recorded = ask_state(m.QueryOrders(bot_id=1, limit=100)).result["items"]
    assert sorted(o["client_order_id"] for o in recorded) == sorted(venue)
