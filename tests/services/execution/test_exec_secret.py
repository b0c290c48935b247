"""The API secret never shows up in a log line, a reply or a published message."""

from __future__ import annotations

import logging
from decimal import Decimal

from shared import messages as m
from tests.services.execution.conftest import (
    intent,
    start_execution,
    start_sim,
    synced,
    unknown_status_once,
    wait_for,
)

SECRET = "S3CRET-never-log-me-0123456789abcdef"


def test_api_secret_never_appears_in_logs_replies_or_the_bus(
        state, endpoints, data_dir, ask, ask_state, listen, caplog):
    caplog.set_level(logging.DEBUG)
    sim = start_sim(secret=SECRET)
    everything = listen([""])
    execution = start_execution(endpoints, sim, data_dir, api_secret=SECRET,
                                sim_api_secret=SECRET, log_level="DEBUG")
    try:
        wait_for(lambda: synced(execution), what="first sync")
        epoch = ask_state(m.ClaimLease(bot_id=1, owner="w1", ttl_s=60)).result["value"]["epoch"]
        unknown_status_once(sim, http_5xx=1)
        replies = [
            ask(intent("s-1", epoch, quote_qty=Decimal("50"))),
            ask(intent("s-2", epoch, quote_qty=Decimal("50"))),
            ask(intent("s-3", epoch + 1, quote_qty=Decimal("50"))),
            ask(intent("s-4", epoch, quantity=Decimal("5"))),
            ask(m.GetExecutionStatus()), ask(m.GetRiskConfig()),
            ask(m.CancelOrder(client_order_id="nope", symbol="BTCUSDT")),
        ]
        everything.until(lambda t, msg: t == "health.execution")
    finally:
        execution.close()
        sim.stop()

    assert any(r.ok for r in replies[:2])  # one may meet the injected 5xx first
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(r) for r in replies)
    assert all(SECRET not in repr(msg) for _, msg in everything.seen)
