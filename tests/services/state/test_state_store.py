"""The Store: bots, versioned params, leases, idempotent recording, paging, sequence numbers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from services.state.store import Store, UnknownBotError
from shared.clock import TestClock
from shared.errors import StaleLeaseError, ValidationError


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def store(tmp_path, clock):
    with Store.open(tmp_path, clock=clock) as opened:
        yield opened


def order_event(client_order_id="c1", **overrides):
    event = {
        "client_order_id": client_order_id,
        "bot_id": 1,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "price": "100.00",
        "qty": "1.00000000",
        "status": "NEW",
    }
    event.update(overrides)
    return event


def fill_event(trade_id=1, **overrides):
    fill = {
        "symbol": "BTCUSDT",
        "trade_id": trade_id,
        "client_order_id": "c1",
        "side": "BUY",
        "price": "100",
        "qty": "1",
        "commission": "0.001",
        "commission_asset": "BTC",
        "ts_ms": 1_700_000_000_000,
    }
    fill.update(overrides)
    return fill


def count(store: Store, table: str) -> int:
    return store._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# ------------------------------------------------------------------ bots


def test_a_new_store_has_one_stopped_swing_bot(store):
    bots = store.list_bots()

    assert [(b["strategy"], b["symbol"], b["timeframe"], b["status"], b["desired_status"])
            for b in bots] == [("SWING", "BTCUSDT", "1m", "STOPPED", "STOPPED")]
    assert store.get_params(1)["version"] == 1


def test_reopening_does_not_add_the_default_bot_again(tmp_path, clock):
    with Store.open(tmp_path, clock=clock) as store:
        store.delete_bot(1)

    with Store.open(tmp_path, clock=clock) as store:
        assert store.list_bots() == []


def test_create_bot_makes_params_version_1_and_delete_hides_it(store):
    created = store.create_bot(strategy="SCALPING", symbol="ETHUSDT", timeframe="5m",
                               params={"depth_levels": 10})
    bot_id = created.value["id"]

    assert created.result == "created"
    assert [c.kind for c in created.changes] == ["bot", "params"]
    assert store.get_params(bot_id)["params"] == {"depth_levels": 10}

    deleted = store.delete_bot(bot_id)

    assert deleted.changes[0].kind == "bot_deleted"
    assert [b["id"] for b in store.list_bots()] == [1]
    with pytest.raises(UnknownBotError):
        store.get_bot(bot_id)


def test_bad_market_fields_name_every_field(store):
    with pytest.raises(ValidationError) as error:
        store.create_bot(strategy="swing!", symbol="btc-usdt", timeframe="7m")

    assert set(error.value.fields) == {"strategy", "symbol", "timeframe"}


def test_desired_status_and_status_with_reason(store):
    store.set_desired_status(1, "RUNNING")
    outcome = store.set_status(1, "ERROR", "insufficient balance")

    bot = store.get_bot(1)
    assert (bot["desired_status"], bot["status"], bot["status_reason"]) == (
        "RUNNING", "ERROR", "insufficient balance")
    assert outcome.changes[0].kind == "bot"
    assert store.set_status(1, "ERROR", "insufficient balance").result == "duplicate"
    with pytest.raises(ValidationError):
        store.set_desired_status(1, "PAUSED")


# ------------------------------------------------------------------ params


def test_set_params_versions_and_rollback(store):
    store.set_params(1, {"ema_fast": 9}, comment="faster")
    store.set_params(1, {"ema_fast": 12}, symbol="ETHUSDT", timeframe="15m")

    rolled = store.rollback_params(1, 2)

    assert rolled.value["version"] == 4
    assert rolled.value["params"] == {"ema_fast": 9}
    current = store.get_params(1)
    assert (current["version"], current["symbol"], current["timeframe"]) == (4, "BTCUSDT", "1m")
    assert store.get_bot(1)["symbol"] == "BTCUSDT"
    versions = store.list_param_versions(1)
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert [v["current"] for v in versions] == [True, False, False, False]
    assert versions[0]["comment"] == "rollback to version 2"
    with pytest.raises(ValidationError):
        store.rollback_params(1, 99)


def test_a_validator_error_writes_nothing(tmp_path, clock):
    def validator(strategy, params):
        if params.get("ema_fast", 1) < 1:
            raise ValidationError({"ema_fast": "must be >= 1"})
        return {"ema_fast": 9, **params}

    with Store.open(tmp_path, clock=clock, validator=validator) as store:
        seq_before = store.seq

        with pytest.raises(ValidationError) as error:
            store.set_params(1, {"ema_fast": 0})

        assert error.value.fields == {"ema_fast": "must be >= 1"}
        assert store.seq == seq_before
        assert count(store, "param_versions") == 1
        assert store.get_params(1)["params"] == {"ema_fast": 9}  # defaults from the validator


# ------------------------------------------------------------------ leases


def test_lease_claim_renew_expire_and_epoch(store, clock):
    first = store.claim_lease(1, "worker-a", ttl_s=5)
    assert (first.result, first.value["epoch"]) == ("claimed", 1)
    assert store.claim_lease(1, "worker-a", ttl_s=5).value["epoch"] == 1  # retried claim
    assert store.claim_lease(1, "worker-b", ttl_s=5).result == "held"

    clock.advance(4)
    renewed = store.renew_lease(1, "worker-a", 1, ttl_s=5)
    assert renewed.value["epoch"] == 1
    clock.advance(4)
    assert store.claim_lease(1, "worker-b", ttl_s=5).result == "held"  # renewal kept it

    clock.advance(2)  # 6 s after the renewal: expired
    taken = store.claim_lease(1, "worker-b", ttl_s=5)

    assert (taken.result, taken.value["owner"], taken.value["epoch"]) == ("claimed", "worker-b", 2)
    with pytest.raises(StaleLeaseError):
        store.renew_lease(1, "worker-a", 1, ttl_s=5)
    with pytest.raises(StaleLeaseError):
        store.check_lease(1, 1)
    with pytest.raises(StaleLeaseError):
        store.set_status(1, "RUNNING", epoch=1)
    assert store.check_lease(1, 2)["owner"] == "worker-b"


def test_release_lets_the_next_claim_get_a_new_epoch(store):
    store.claim_lease(1, "worker-a", ttl_s=5)

    assert store.release_lease(1, "worker-a", 1).result == "released"
    assert store.release_lease(1, "worker-a", 1).result == "duplicate"
    assert store.claim_lease(1, "worker-a", ttl_s=5).value["epoch"] == 2


def test_deleting_a_bot_ends_its_lease(store):
    bot_id = store.create_bot(strategy="SWING", symbol="ETHUSDT", timeframe="1m").value["id"]
    store.claim_lease(bot_id, "worker-a", ttl_s=5)

    store.delete_bot(bot_id)

    with pytest.raises(StaleLeaseError):
        store.renew_lease(bot_id, "worker-a", 1, ttl_s=5)


# ------------------------------------------------------------------ orders and fills


def test_the_same_fill_twice_is_stored_once(store):
    store.record_order_event(order_event())

    first = store.record_fill(fill_event())
    second = store.record_fill(fill_event())

    assert first.result == "recorded"
    assert [c.kind for c in first.changes] == ["fill", "position"]
    assert (second.result, second.changes) == ("duplicate", ())
    assert count(store, "fills") == 1
    assert store.get_position(1)["qty"] == "0.999"


def test_the_same_order_event_twice_is_stored_once(store):
    assert store.record_order_event(order_event()).result == "created"
    assert store.record_order_event(order_event()).result == "duplicate"
    filled = order_event(status="FILLED", executed_qty="1", cumulative_quote_qty="100",
                         exchange_order_id=12345)

    assert store.record_order_event(filled).result == "updated"
    assert store.record_order_event(filled).result == "duplicate"
    assert store.record_order_event(order_event(status="PARTIALLY_FILLED",
                                                executed_qty="0.5")).result == "duplicate"
    order = store.get_order("c1")
    assert (order["status"], order["executed_qty"], order["avg_price"]) == ("FILLED", "1", "100")
    assert order["exchange_order_id"] == "12345"
    assert count(store, "orders") == 1


def test_a_round_trip_becomes_a_trade_with_performance(store, clock):
    store.record_order_event(order_event())
    store.record_fill(fill_event())
    store.record_order_event(order_event("c2", side="SELL", type="MARKET", qty="0.999"))

    sold = store.record_fill(fill_event(2, client_order_id="c2", side="SELL", price="110",
                                        qty="0.999", commission="0.10989",
                                        commission_asset="USDT", ts_ms=1_700_000_090_000))

    assert [c.kind for c in sold.changes] == ["fill", "position", "trade", "order"]
    assert sold.changes[-1].payload["realized_pnl"] == "9.78011"
    trade = store.list_trades()["items"][0]
    assert (trade["pnl"], trade["pnl_pct"], trade["duration_s"]) == ("9.78011", "9.78011", 90)
    assert store.get_order("c2")["realized_pnl"] == "9.78011"
    assert store.get_position(1, mid_price="120")["qty"] == "0"


def test_unrealised_pnl_of_an_open_position(store):
    store.record_order_event(order_event())
    store.record_fill(fill_event())

    position = store.get_position(1, mid_price="110")

    assert position["unrealized_pnl"] == "9.89"  # 0.999 * 110 - 100
    assert position["opened_at_ms"] == 1_700_000_000_000


def test_a_fill_whose_side_contradicts_its_order_is_refused(store):
    store.record_order_event(order_event())

    with pytest.raises(ValidationError):
        store.record_fill(fill_event(side="SELL"))
    assert count(store, "fills") == 0


def test_orders_are_paged_newest_first_with_filters(store):
    second = store.create_bot(strategy="SWING", symbol="ETHUSDT", timeframe="1m").value["id"]
    for index in range(7):
        store.record_order_event(order_event(f"a{index}"))
    for index in range(3):
        store.record_order_event(order_event(f"b{index}", bot_id=second, symbol="ETHUSDT",
                                             status="FILLED", executed_qty="1"))

    page1 = store.list_orders(bot_id=1, limit=3)
    page2 = store.list_orders(bot_id=1, limit=3, before=page1["next_before"])
    page3 = store.list_orders(bot_id=1, limit=3, before=page2["next_before"])

    ids = [o["client_order_id"] for p in (page1, page2, page3) for o in p["items"]]
    assert ids == [f"a{index}" for index in reversed(range(7))]
    assert page3["next_before"] is None
    assert len(store.list_orders(symbol="ETHUSDT")["items"]) == 3
    assert len(store.list_orders(status="OPEN")["items"]) == 7
    assert len(store.list_orders(status="FILLED", bot_id=second)["items"]) == 3
    with pytest.raises(ValidationError):
        store.list_orders(limit=0)


# ------------------------------------------------------------------ snapshot and seq


def test_every_change_gets_the_next_sequence_number(store):
    start = store.seq

    outcomes = [
        store.set_desired_status(1, "RUNNING"),
        store.record_order_event(order_event()),
        store.record_fill(fill_event()),
        store.set_balances([{"asset": "USDT", "free": "900", "locked": "0"}]),
        store.add_alert("CRITICAL", "execution", "kill switch on"),
    ]

    seqs = [change.seq for outcome in outcomes for change in outcome.changes]
    assert seqs == list(range(start + 1, start + 1 + len(seqs)))
    assert store.seq == seqs[-1]


def test_snapshot_is_plain_data_with_seq(store):
    store.record_order_event(order_event())
    store.record_fill(fill_event())
    store.set_balances([{"asset": "USDT", "free": "9900.5", "locked": "0"}])
    store.claim_lease(1, "worker-a", ttl_s=5)

    snapshot = store.snapshot()

    assert snapshot["seq"] == store.seq
    assert json.loads(json.dumps(snapshot)) == snapshot  # only plain JSON types
    assert snapshot["balances"][0]["free"] == "9900.5"
    assert snapshot["positions"][0]["qty"] == "0.999"
    assert [o["client_order_id"] for o in snapshot["open_orders"]] == ["c1"]
    assert snapshot["leases"][0]["owner"] == "worker-a"
    assert snapshot["params"][0]["version"] == 1


def test_unchanged_balances_are_a_duplicate(store):
    balances = [{"asset": "BTC", "free": "0.5", "locked": "0"}]
    store.set_balances(balances)

    assert store.set_balances([{"asset": "BTC", "free": "0.50", "locked": "0.0"}]).result == (
        "duplicate")


def test_alerts_are_kept_and_acknowledged(store):
    alert = store.add_alert("CRITICAL", "execution", "418: trading halted").value

    acknowledged = store.acknowledge_alert(alert["id"])

    assert acknowledged.value["acknowledged"] is True
    assert store.acknowledge_alert(alert["id"]).result == "duplicate"
    assert store.list_alerts(level="CRITICAL")["items"][0]["message"] == "418: trading halted"


def test_a_fill_of_an_unknown_bot_is_refused(store):
    with pytest.raises(UnknownBotError):
        store.record_fill(fill_event(client_order_id=None, bot_id=42))
    assert count(store, "fills") == 0 and count(store, "positions") == 0


def test_a_reopened_store_continues_the_fifo_book(tmp_path, clock):
    with Store.open(tmp_path, clock=clock) as store:
        store.record_order_event(order_event())
        store.record_fill(fill_event())
        seq = store.seq

    with Store.open(tmp_path, clock=clock) as store:
        store.record_order_event(order_event("c2", side="SELL", type="MARKET", qty="0.999"))
        sold = store.record_fill(fill_event(2, client_order_id="c2", side="SELL", price="110",
                                            qty="0.999", commission="0", commission_asset=""))

        assert sold.changes[0].seq == seq + 2  # the sequence goes on after a restart
        assert sold.value["realized_pnl"] == "9.89"


def test_a_final_order_never_goes_back(store):
    store.record_order_event(order_event(status="FILLED", executed_qty="1"))

    late = store.record_order_event(order_event(status="CANCELED", executed_qty="1"))

    assert late.result == "duplicate"
    assert store.get_order("c1")["status"] == "FILLED"


def test_decimal_params_from_a_schema_are_stored_as_strings(store):
    saved = store.set_params(1, {"stop_loss_pct": Decimal("1.50"), "ema_fast": 9})

    assert saved.value["params"] == {"ema_fast": 9, "stop_loss_pct": "1.5"}
