"""One strategy worker in-process against a real state service, a real bus and small real
peers for execution and marketdata: leases, status transitions, live params, stop, failures."""

from __future__ import annotations

from shared import messages as m
from shared.bus import Publisher
from shared.strategies import build_strategy, get_strategy
from tests.conftest import wait_until as wait_for
from tests.services.strategy.conftest import (
    FAST,
    call,
    create_bot,
    get_bot,
    lease_of,
    start_state,
)


def defaults(strategy: str) -> dict:
    return get_strategy(strategy).params_schema.defaults()


def running(client, bot_id: int) -> bool:
    return get_bot(client, bot_id)["status"] == "RUNNING"


def test_a_running_bot_is_claimed_warmed_up_and_its_lease_renewed(
    client, execution, marketdata, start_worker, bot_statuses
):
    bot_id = create_bot(client, "SWING", "BTCUSDT", "1m")

    worker = start_worker()

    wait_for(lambda: running(client, bot_id), 10, "the bot to run")
    expected = ["STOPPED", "STARTING", "RUNNING"]
    assert bot_statuses(bot_id, expected) == expected
    lease = lease_of(client, bot_id)
    assert lease["owner"] == worker.instance
    (asked,) = marketdata.received(m.GetCandles)
    needed = build_strategy("SWING", str(bot_id), defaults("SWING")).warmup_candles()
    assert (asked.symbol, asked.interval, asked.limit) == ("BTCUSDT", "1m", needed)
    wait_for(lambda: marketdata.topics_of(worker.instance) == {"md.kline.BTCUSDT.1m"}, 5,
             "the worker to ask for its kline stream")
    renewed = wait_for(
        lambda: (now := lease_of(client, bot_id))["expires_at_ms"] > lease["expires_at_ms"]
        and now, 2 * FAST.lease_ttl_s, "a renewal")
    assert (renewed["owner"], renewed["epoch"]) == (worker.instance, lease["epoch"])


def test_an_intent_carries_bot_id_and_epoch_and_a_lost_reply_is_retried_with_its_id(
    ctx, endpoints, client, execution, marketdata, start_worker
):
    execution.silent = 1  # the first attempt gets no answer
    bot_id = create_bot(client, "SCALPING", params={"order_type": "MARKET"})
    worker = start_worker()
    wait_for(lambda: running(client, bot_id), 10, "the bot to run")
    epoch = lease_of(client, bot_id)["epoch"]
    pub = Publisher(ctx, endpoints.bus_xsub)
    ts_ms = [1_700_000_000_000]

    def publish_book_until_two_attempts() -> bool:  # bids 10x the asks: a BUY signal
        ts_ms[0] += 1
        pub.publish("md.book.BTCUSDT", m.BookTicker(symbol="BTCUSDT", bid=100.0, bid_qty=10.0,
                                                    ask=100.01, ask_qty=1.0, ts_ms=ts_ms[0]))
        return len(execution.received(m.SubmitIntent)) >= 2

    try:
        wait_for(publish_book_until_two_attempts, 10, "an intent and its retry")
    finally:
        pub.close()

    first, retry = execution.received(m.SubmitIntent)[:2]
    assert first == retry  # same intent_id, same everything: execution places it once
    assert (first.bot_id, first.epoch, first.side, first.order_type) == (
        str(bot_id), epoch, "BUY", "MARKET")
    wait_for(lambda: worker.worker.sender.counts["accepted"] == 1, 5, "the accepted answer")
    assert worker.worker.sender.counts["retried"] >= 1


def test_every_param_change_rebuilds_and_rewarms_the_bot_live(
    client, execution, marketdata, start_worker, bot_statuses
):
    bot_id = create_bot(client, "SWING", "BTCUSDT", "1m")
    worker = start_worker()
    wait_for(lambda: running(client, bot_id), 10, "the bot to run")

    call(client, m.SetParams(bot_id=bot_id, params={"ema_fast": 5}, symbol="ETHUSDT",
                             timeframe="5m"))

    def runner_has(**expected):
        runner = worker.worker.runners.get(bot_id)
        return runner is not None and runner.status == "RUNNING" and all(
            getattr(runner.spec, k) == v for k, v in expected.items())

    wait_for(lambda: runner_has(symbol="ETHUSDT", timeframe="5m", version=2), 10,
             "the rebuilt bot on ETHUSDT 5m")
    assert worker.worker.runners[bot_id].strategy.params["ema_fast"] == 5
    assert [(r.symbol, r.interval) for r in marketdata.received(m.GetCandles)] == [
        ("BTCUSDT", "1m"), ("ETHUSDT", "5m")]
    wait_for(lambda: running(client, bot_id), 5, "RUNNING recorded")
    expected = ["STOPPED", "STARTING", "RUNNING", "STARTING", "RUNNING"]
    assert bot_statuses(bot_id, expected) == expected
    wait_for(lambda: marketdata.topics_of(worker.instance) == {"md.kline.ETHUSDT.5m"}, 5,
             "the new kline stream")

    call(client, m.SetParams(bot_id=bot_id, params={}, strategy="SCALPING"))

    wait_for(lambda: runner_has(strategy="SCALPING", version=3), 10, "the SCALPING rebuild")
    assert worker.worker.runners[bot_id].strategy.name == "SCALPING"
    wait_for(lambda: marketdata.topics_of(worker.instance) == {
        "md.book.ETHUSDT", "md.depth.ETHUSDT"}, 5, "the book streams")
    assert lease_of(client, bot_id)["owner"] == worker.instance  # same lease throughout


def test_a_desired_stop_goes_stopping_then_stopped_and_gives_the_lease_back(
    client, execution, marketdata, start_worker, bot_statuses
):
    bot_id = create_bot(client)
    worker = start_worker()
    wait_for(lambda: running(client, bot_id), 10, "the bot to run")

    call(client, m.SetDesiredStatus(bot_id=bot_id, desired_status="STOPPED"))

    wait_for(lambda: get_bot(client, bot_id)["status"] == "STOPPED", 5, "STOPPED")
    expected = ["STOPPED", "STARTING", "RUNNING", "STOPPING", "STOPPED"]
    assert bot_statuses(bot_id, expected) == expected
    assert lease_of(client, bot_id)["owner"] is None
    assert bot_id not in worker.worker.runners
    wait_for(lambda: marketdata.topics_of(worker.instance) == set(), 5, "streams released")


def test_a_failed_warm_up_is_an_error_with_its_reason_then_tried_again(
    client, execution, marketdata, start_worker, bot_statuses
):
    marketdata.refuse_history = True
    bot_id = create_bot(client)
    start_worker()

    wait_for(lambda: get_bot(client, bot_id)["status"] == "ERROR", 10, "ERROR")
    assert "history" in get_bot(client, bot_id)["status_reason"]

    marketdata.refuse_history = False
    wait_for(lambda: running(client, bot_id), 10, "the bot to run after the retry")
    tail = ["ERROR", "STARTING", "RUNNING"]
    assert bot_statuses(bot_id, tail)[-3:] == tail


def test_a_lease_not_renewed_in_time_stops_trading_then_a_new_epoch_is_claimed(
    endpoints, data_dir, state, client, execution, marketdata, start_worker
):
    bot_id = create_bot(client, "SCALPING")
    worker = start_worker()
    wait_for(lambda: running(client, bot_id), 10, "the bot to run")
    epoch = lease_of(client, bot_id)["epoch"]

    state.close()  # renewals go unanswered
    try:
        wait_for(lambda: not worker.worker.holds(bot_id, epoch), FAST.lease_ttl_s + 1.0,
                 "the worker to stop trading the bot")
        assert bot_id not in worker.worker.runners
    finally:
        back = start_state(endpoints, data_dir)
    try:
        wait_for(lambda: worker.worker._epochs.get(bot_id, 0) > epoch, 10, "a new claim")
        assert lease_of(client, bot_id)["epoch"] == worker.worker._epochs[bot_id]
        wait_for(lambda: running(client, bot_id), 10, "the bot to run again")
    finally:
        back.close()


def test_a_worker_that_joins_gets_its_fair_share_of_the_running_bots(
    client, execution, marketdata, start_worker
):
    bots = [create_bot(client, "SCALPING") for _ in range(4)]
    first = start_worker()
    wait_for(lambda: len(first.worker.runners) == 4, 10, "the only worker to take all four")

    second = start_worker()

    def spread() -> bool:
        owners = [lease_of(client, b)["owner"] for b in bots]
        return sorted(owners.count(w.instance) for w in (first, second)) == [2, 2]

    wait_for(spread, 15, "a 2-2 spread", 0.05)
    wait_for(lambda: all(running(client, b) for b in bots), 10, "every bot running")
    assert (first.worker.share, second.worker.share) == (2, 2)


def test_a_bot_stopped_while_no_worker_ran_it_is_recorded_stopped(
    client, execution, marketdata, start_worker
):
    bot_id = create_bot(client, run=False)
    call(client, m.SetBotStatus(bot_id=bot_id, status="RUNNING"))  # as a worker that died

    worker = start_worker()

    wait_for(lambda: get_bot(client, bot_id)["status"] == "STOPPED", 10, "STOPPED")
    assert "no worker" in get_bot(client, bot_id)["status_reason"]
    assert lease_of(client, bot_id)["owner"] is None and bot_id not in worker.worker.runners


def test_a_deleted_bot_is_no_longer_run(client, execution, marketdata, start_worker):
    bot_id = create_bot(client, "SCALPING")
    worker = start_worker()
    wait_for(lambda: running(client, bot_id), 10, "the bot to run")

    call(client, m.DeleteBot(bot_id=bot_id))

    wait_for(lambda: bot_id not in worker.worker.runners, 5, "the worker to drop the bot")
    wait_for(lambda: marketdata.topics_of(worker.instance) == set(), 5, "streams released")
