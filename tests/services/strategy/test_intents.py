"""The intent sender against a real ROUTER peer: retries keep the id, a "not yet" answer does
not hold up the intents behind it, nothing goes out once the lease is lost."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.strategy.intents import IntentSender, to_submit
from shared.clock import SYSTEM_CLOCK
from shared.messages import Reply, SubmitIntent
from shared.strategies import OrderIntent
from tests.conftest import wait_until as wait_for
from tests.services.strategy.peers import PeerServer


def intent(ts_ms: int) -> SubmitIntent:
    order = OrderIntent(intent_id=f"7-{ts_ms}-0", bot_id="7", symbol="BTCUSDT", side="BUY",
                        order_type="LIMIT", ts_ms=ts_ms, quote_amount=Decimal("20"),
                        limit_price=Decimal("100.01"), reason="test")
    return to_submit(order, 7, epoch=3)


@pytest.fixture
def held():
    return {7: 3}


@pytest.fixture
def sender(ctx, endpoints, held):
    s = IntentSender(ctx, endpoints.execution, lambda bot, epoch: held.get(bot) == epoch,
                     SYSTEM_CLOCK, timeout_s=0.3, give_up_s=5.0)
    yield s
    s.close()


def results(sender: IntentSender, count: int) -> list:
    """Drive the sender as the worker's loop does until ``count`` intents are settled."""
    wait_for(lambda: sender.pump(20) or len(sender.results) >= count, 5, "the answers", 0)
    return list(sender.results)


def test_an_intent_goes_out_with_the_bot_id_as_text_and_its_epoch():
    sent = intent(1)
    assert (sent.bot_id, sent.epoch, sent.quote_qty, sent.price) == (
        "7", 3, Decimal("20"), Decimal("100.01"))


def test_a_not_yet_answer_parks_the_intent_without_holding_up_the_next(ctx, endpoints, sender):
    answered = set()

    def handle(request):
        if request.intent_id == "7-1-0" and request.intent_id not in answered:
            answered.add(request.intent_id)
            return Reply(ok=False, error_code="unconfirmed", error_message="not yet")
        return Reply(ok=True, result={"status": "accepted"})

    peer = PeerServer(ctx, endpoints.execution, handle).start()
    try:
        sender.submit(intent(1))
        sender.submit(intent(2))
        done = results(sender, 2)
    finally:
        peer.close()

    assert [r.intent_id for r in peer.requests] == ["7-1-0", "7-2-0", "7-1-0"]
    assert [(r.intent.intent_id, r.reply.ok) for r in done] == [("7-2-0", True), ("7-1-0", True)]


def test_nothing_goes_out_once_the_lease_is_lost(ctx, endpoints, sender, held):
    peer = PeerServer(ctx, endpoints.execution, lambda r: Reply(ok=True)).start()
    try:
        held[7] = 4  # a new epoch: this worker's epoch 3 is gone
        sender.submit(intent(1))
        (result,) = results(sender, 1)
    finally:
        peer.close()
    assert result.reply is None and peer.requests == []
    assert sender.counts["dropped"] == 1


def test_an_intent_is_sent_again_with_its_id_until_execution_answers(ctx, endpoints, sender):
    attempts = []

    def handle(request):
        attempts.append(request)
        return None if len(attempts) < 3 else Reply(ok=True)  # two replies lost

    peer = PeerServer(ctx, endpoints.execution, handle).start()
    try:
        sender.submit(intent(1))
        (result,) = results(sender, 1)
    finally:
        peer.close()
    assert result.reply.ok and len(attempts) == 3
    assert len({a.intent_id for a in attempts}) == 1
    assert sender.counts["retried"] >= 2 and sender.outstanding == 0


def test_several_intents_are_out_at_once_and_each_answer_finds_its_intent(
    ctx, endpoints, sender
):
    peer = PeerServer(ctx, endpoints.execution,
                      lambda r: Reply(ok=True, result={"intent_id": r.intent_id})).start()
    try:
        for ts_ms in range(1, 6):
            sender.submit(intent(ts_ms))
        done = results(sender, 5)
    finally:
        peer.close()
    assert all(r.reply.result["intent_id"] == r.intent.intent_id for r in done)
    assert sorted(r.intent.intent_id for r in done) == [f"7-{t}-0" for t in range(1, 6)]


def test_an_intent_carries_a_deadline_before_the_sender_gives_up(ctx, endpoints, sender):
    peer = PeerServer(ctx, endpoints.execution, lambda r: Reply(ok=True)).start()
    try:
        before = SYSTEM_CLOCK.time()
        sender.submit(intent(1))
        results(sender, 1)
    finally:
        peer.close()
    (sent,) = peer.requests
    # give_up_s is 5: execution must refuse it from 4 s on, so a late answer still arrives
    assert int(before * 1000) + 4000 <= sent.deadline_ms <= int(SYSTEM_CLOCK.time() * 1000) + 4000
