"""The state service over real sockets: every request type, idempotency, errors, restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import zmq

from services.state import db
from services.state.service import StateService
from shared import messages as m
from shared.bus import Publisher, RequestClient, Subscriber
from shared.codec import encode
from shared.messages import Reply, StateChanged
from tests.conftest import RunningService, make_config

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_MS = 3000


def start_state(endpoints, data_dir) -> RunningService:
    config = make_config("state", endpoints, data_dir=data_dir, heartbeat_interval_s=0.2)
    return RunningService(StateService(config))


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def state(bus, endpoints, data_dir):
    running = start_state(endpoints, data_dir)
    yield running
    running.close()


@pytest.fixture
def client(ctx, endpoints, state):
    request_client = RequestClient(ctx, endpoints.state, timeout_ms=TIMEOUT_MS, retries=1)
    yield request_client
    request_client.close()


@pytest.fixture
def changes(ctx, endpoints, bus):
    """A subscriber to ``state.*`` whose subscription has reached the bus."""
    pub = Publisher(ctx, endpoints.bus_xsub)
    sub = Subscriber(ctx, endpoints.bus_xpub, ["state."])
    probe = StateChanged(seq=-1, kind="probe", payload={})
    deadline = time.monotonic() + 5
    while sub.recv(timeout_ms=20) is None:  # the slow-joiner handshake, without sleeps
        assert time.monotonic() < deadline, "subscription never reached the bus"
        pub.publish("state.probe", probe)
    while sub.recv(timeout_ms=50) is not None:
        pass
    yield sub
    sub.close()
    pub.close()


def received(sub: Subscriber, count: int) -> list[StateChanged]:
    got = []
    deadline = time.monotonic() + 3
    while len(got) < count and time.monotonic() < deadline:
        item = sub.recv(timeout_ms=100)
        if item is not None:
            got.append(item[1])
    return got


def ok(client: RequestClient, request: m.Message):
    reply = client.request(request)
    assert reply.ok, (reply.error_code, reply.error_message, reply.fields)
    return reply.result


def refused(client: RequestClient, request: m.Message) -> Reply:
    reply = client.request(request)
    assert not reply.ok, reply.result
    return reply


def order(client_order_id="c1", side="BUY", **overrides) -> m.RecordOrderEvent:
    values = dict(client_order_id=client_order_id, status="NEW", bot_id=1, symbol="BTCUSDT",
                  side=side, order_type="MARKET", qty=Decimal("1"))
    return m.RecordOrderEvent(**{**values, **overrides})


def fill(trade_id=1, client_order_id="c1", side="BUY", price="100", **overrides):
    values = dict(symbol="BTCUSDT", trade_id=trade_id, side=side, price=Decimal(price),
                  qty=Decimal("1"), commission=Decimal("0.1"), commission_asset="USDT",
                  client_order_id=client_order_id, ts_ms=1_700_000_000_000 + trade_id)
    return m.RecordFill(**{**values, **overrides})


# ------------------------------------------------------------------ bots


def test_a_fresh_database_has_the_default_swing_bot(client):
    snapshot = ok(client, m.GetSnapshot())

    assert [(b["strategy"], b["symbol"], b["timeframe"], b["desired_status"])
            for b in snapshot["bots"]] == [("SWING", "BTCUSDT", "1m", "STOPPED")]
    assert snapshot["params"][0]["params"]["ema_fast"] == 9  # the schema's defaults
    assert snapshot["seq"] == 2


def test_create_get_list_and_delete_a_bot(client):
    created = ok(client, m.CreateBot(strategy="SCALPING", symbol="ETHUSDT", timeframe="1m",
                                     name="eth scalper"))
    bot_id = created["value"]["id"]

    assert created["result"] == "created"
    assert ok(client, m.GetBot(bot_id=bot_id))["name"] == "eth scalper"
    assert [b["id"] for b in ok(client, m.ListBots())] == [1, bot_id]

    deleted = ok(client, m.DeleteBot(bot_id=bot_id))

    assert deleted["result"] == "deleted"
    assert [b["id"] for b in ok(client, m.ListBots())] == [1]
    assert refused(client, m.GetBot(bot_id=bot_id)).error_code == "unknown_bot"


def test_symbol_and_timeframe_may_come_inside_the_params(client):
    created = ok(client, m.CreateBot(strategy="", symbol="", timeframe="",
                                     params={"strategy": "SWING", "symbol": "ETHUSDT",
                                             "timeframe": "5m", "ema_fast": 5}))
    params = ok(client, m.GetParams(bot_id=created["value"]["id"]))

    assert (params["symbol"], params["timeframe"], params["params"]["ema_fast"]) == \
        ("ETHUSDT", "5m", 5)
    assert "symbol" not in params["params"]


def test_a_create_retried_with_its_request_id_makes_one_bot(client):
    request = m.CreateBot(strategy="SWING", symbol="BTCUSDT", timeframe="5m", request_id="r1")

    first = ok(client, request)
    second = ok(client, request)

    assert first == second
    assert len(ok(client, m.ListBots())) == 2


def test_a_create_retried_after_a_restart_of_state_makes_one_bot(ctx, bus, endpoints,
                                                                   data_dir):
    """The first reply may be lost with the process (killed after its commit): the retry
    after the restart must get that reply, not a second bot."""
    request = m.CreateBot(strategy="SWING", symbol="BTCUSDT", timeframe="5m",
                          request_id="r-restart")
    version = m.SetParams(bot_id=1, params={"ema_fast": 7}, request_id="p-restart")
    running = start_state(endpoints, data_dir)
    caller = RequestClient(ctx, endpoints.state, timeout_ms=TIMEOUT_MS, retries=1)
    try:
        first, first_version = ok(caller, request), ok(caller, version)
    finally:
        running.close()
    running = start_state(endpoints, data_dir)
    try:
        again, again_version = ok(caller, request), ok(caller, version)
        bots = ok(caller, m.ListBots())
        versions = ok(caller, m.ListParamVersions(bot_id=1))
    finally:
        caller.close()
        running.close()

    assert again == first and again_version == first_version
    assert len(bots) == 2
    assert len(versions) == 2  # the default bot's version 1 and the one saved


def test_start_and_stop_set_the_desired_status_once(client):
    started = ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))
    again = ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))
    stopped = ok(client, m.SetDesiredStatus(bot_id=1, desired_status="STOPPED"))

    assert (started["result"], started["value"]["desired_status"]) == ("updated", "RUNNING")
    assert (again["result"], again["seq"]) == ("duplicate", None)
    assert stopped["value"]["desired_status"] == "STOPPED"
    reply = refused(client, m.SetDesiredStatus(bot_id=1, desired_status="FLYING"))
    assert "desired_status" in reply.fields


def test_the_lease_holder_reports_the_bot_status(client):
    epoch = ok(client, m.ClaimLease(bot_id=1, owner="w1", ttl_s=5))["value"]["epoch"]

    running = ok(client, m.SetBotStatus(bot_id=1, status="RUNNING", epoch=epoch))

    assert running["value"]["status"] == "RUNNING"
    stale = refused(client, m.SetBotStatus(bot_id=1, status="ERROR", epoch=epoch + 1))
    assert stale.error_code == "stale_lease"


# ------------------------------------------------------------------ params


def test_params_are_versioned_and_roll_back(client):
    saved = ok(client, m.SetParams(bot_id=1, params={"ema_fast": 12, "stop_loss_pct": "0.8"},
                                   comment="tighter"))

    assert saved["value"]["version"] == 2
    current = ok(client, m.GetParams(bot_id=1))
    assert (current["params"]["ema_fast"], current["params"]["stop_loss_pct"]) == (12, "0.8")

    rolled = ok(client, m.RollbackParams(bot_id=1, version=1))

    assert rolled["value"]["version"] == 3
    assert ok(client, m.GetParams(bot_id=1))["params"]["ema_fast"] == 9
    versions = ok(client, m.ListParamVersions(bot_id=1))
    assert [(v["version"], v["current"]) for v in versions] == \
        [(3, True), (2, False), (1, False)]
    assert ok(client, m.GetParams(bot_id=1, version=2))["comment"] == "tighter"


def test_an_invalid_set_params_returns_every_field_error_and_changes_nothing(client):
    before = ok(client, m.GetSnapshot())

    reply = refused(client, m.SetParams(
        bot_id=1, timeframe="7m",
        params={"ema_fast": 1, "rsi_period": "fourteen", "sl_tp_mode": "guess", "bogus": 3},
    ))

    assert reply.error_code == "invalid"
    assert set(reply.fields) == {"timeframe", "ema_fast", "rsi_period", "sl_tp_mode", "bogus"}
    assert ok(client, m.GetSnapshot()) == before
    assert len(ok(client, m.ListParamVersions(bot_id=1))) == 1


def test_params_of_an_unknown_strategy_or_bot_are_refused(client):
    unknown_strategy = refused(client, m.SetParams(bot_id=1, params={}, strategy="MAGIC"))
    unknown_bot = refused(client, m.SetParams(bot_id=99, params={}))

    assert "strategy" in unknown_strategy.fields
    assert (unknown_bot.error_code, list(unknown_bot.fields)) == ("unknown_bot", ["bot_id"])


# ------------------------------------------------------------------ leases


def test_leases_are_claimed_renewed_released_and_taken_over_with_a_new_epoch(client):
    claimed = ok(client, m.ClaimLease(bot_id=1, owner="w1", ttl_s=5))["value"]
    held = ok(client, m.ClaimLease(bot_id=1, owner="w2", ttl_s=5))

    assert (claimed["owner"], claimed["epoch"]) == ("w1", 1)
    assert (held["result"], held["value"]["owner"]) == ("held", "w1")
    assert ok(client, m.RenewLease(bot_id=1, owner="w1", epoch=1, ttl_s=5))["result"] == "renewed"
    assert ok(client, m.CheckLease(bot_id=1, epoch=1))["owner"] == "w1"

    assert ok(client, m.ReleaseLease(bot_id=1, owner="w1", epoch=1))["result"] == "released"
    taken = ok(client, m.ClaimLease(bot_id=1, owner="w2", ttl_s=5))["value"]

    assert (taken["owner"], taken["epoch"]) == ("w2", 2)
    stale = refused(client, m.RenewLease(bot_id=1, owner="w1", epoch=1, ttl_s=5))
    assert stale.error_code == "stale_lease" and "epoch 1" in stale.error_message
    assert refused(client, m.CheckLease(bot_id=1, epoch=1)).error_code == "stale_lease"


# ------------------------------------------------------------------ orders, fills, trades


def test_the_same_fill_sent_twice_over_the_bus_is_stored_once(client):
    ok(client, order())

    first = ok(client, fill())
    second = ok(client, fill())

    assert (first["result"], second["result"], second["seq"]) == ("recorded", "duplicate", None)
    assert len(ok(client, m.QueryFills(bot_id=1))["items"]) == 1
    position = ok(client, m.GetPosition(bot_id=1, mid_price=Decimal("110")))
    assert (position["qty"], position["unrealized_pnl"]) == ("1", "9.9")


def test_a_buy_then_sell_becomes_a_trade_with_its_pnl(client):
    ok(client, order())
    ok(client, fill())
    ok(client, order("c2", side="SELL"))
    ok(client, fill(2, "c2", side="SELL", price="110"))

    trades = ok(client, m.QueryTrades(bot_id=1))["items"]

    assert [(t["entry_price"], t["exit_price"], t["pnl"]) for t in trades] == \
        [("100", "110", "9.8")]
    assert ok(client, m.GetPosition(bot_id=1))["qty"] == "0"


def test_orders_advance_and_page_with_filters(client):
    for index in range(5):
        ok(client, order(f"c{index}"))
    advanced = ok(client, order("c0", status="FILLED", executed_qty=Decimal("1"),
                                cumulative_quote_qty=Decimal("100"), exchange_order_id=7))
    stale = ok(client, order("c0", status="NEW"))

    assert (advanced["result"], stale["result"]) == ("updated", "duplicate")
    page = ok(client, m.QueryOrders(bot_id=1, limit=2))
    assert [o["client_order_id"] for o in page["items"]] == ["c4", "c3"]
    older = ok(client, m.QueryOrders(bot_id=1, limit=2, before=page["next_before"]))
    assert [o["client_order_id"] for o in older["items"]] == ["c2", "c1"]
    opened = ok(client, m.QueryOrders(status="OPEN", limit=10))["items"]
    assert len(opened) == 4
    assert refused(client, m.QueryOrders(limit=0)).fields == {"limit": "an integer from 1 to 1000"}


def test_a_fill_of_an_unknown_bot_or_a_bad_fill_is_refused(client):
    unknown = refused(client, fill(client_order_id="", bot_id=42))
    bad = refused(client, fill(side="HOLD", price="0"))

    assert unknown.error_code == "unknown_bot"
    assert "side" in bad.fields


def test_balances_and_alerts_are_recorded(client):
    balances = ok(client, m.RecordBalances(free={"USDT": Decimal("1000"), "BTC": Decimal(0)},
                                           locked={"USDT": Decimal("5")}))
    same = ok(client, m.RecordBalances(free={"USDT": Decimal("1000"), "BTC": Decimal(0)},
                                       locked={"USDT": Decimal("5")}))
    alert = ok(client, m.RecordAlert(level="CRITICAL", service="execution", message="banned"))
    seen = ok(client, m.AcknowledgeAlert(alert_id=alert["value"]["id"]))

    assert [b["asset"] for b in balances["value"]] == ["BTC", "USDT"]
    assert same["result"] == "duplicate"
    assert seen["value"]["acknowledged"] is True
    assert ok(client, m.QueryAlerts(level="CRITICAL"))["items"][0]["message"] == "banned"
    assert refused(client, m.RecordAlert(level="LOUD", service="x", message="y")).fields


# ------------------------------------------------------------------ publishing, errors


def test_every_committed_change_is_published_in_order_before_the_reply(client, changes):
    created = ok(client, m.CreateBot(strategy="SWING", symbol="ETHUSDT", timeframe="1m"))
    status = ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))

    published = received(changes, 3)

    assert [(c.kind, c.seq) for c in published] == [
        ("bot", created["seq"] - 1), ("params", created["seq"]), ("bot", status["seq"])]
    assert published[2].payload["desired_status"] == "RUNNING"


def test_a_refused_write_publishes_nothing(client, changes):
    refused(client, m.SetParams(bot_id=1, params={"ema_fast": "x"}))

    assert changes.recv(timeout_ms=200) is None


def test_bad_input_gets_an_error_reply_and_the_service_carries_on(ctx, endpoints, client):
    raw = ctx.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoints.state)
    raw.send(b"\x93not a message")
    assert raw.poll(TIMEOUT_MS)
    raw.close()

    wrong_field = refused(client, m.Heartbeat(service="x", instance="y", status="z",
                                              uptime_s=0, ts=0, pid=1))

    assert wrong_field.error_code == "invalid"
    assert ok(client, m.Ping(nonce="still here"))["nonce"] == "still here"


def test_the_heartbeat_tells_the_sequence_and_the_database(ctx, endpoints, state, client,
                                                           data_dir):
    ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))
    sub = Subscriber(ctx, endpoints.bus_xpub, ["health.state"])
    try:
        item = sub.recv(timeout_ms=3000)
        while item is not None and item[1].detail.get("seq") != 3:
            item = sub.recv(timeout_ms=3000)
    finally:
        sub.close()

    assert item is not None
    assert item[1].detail["db"] == str(data_dir / "state.db")


def test_a_restart_on_the_same_data_dir_keeps_everything(bus, ctx, endpoints, data_dir):
    first = start_state(endpoints, data_dir)
    client = RequestClient(ctx, endpoints.state, timeout_ms=TIMEOUT_MS, retries=1)
    try:
        ok(client, m.SetParams(bot_id=1, params={"ema_fast": 15}))
        ok(client, order())
        ok(client, fill())
        before = ok(client, m.GetSnapshot())
        first.close()

        second = start_state(endpoints, data_dir)
        try:
            after = ok(client, m.GetSnapshot())
            again = ok(client, fill())
            next_write = ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))
        finally:
            second.close()
    finally:
        client.close()

    assert after == before
    assert again["result"] == "duplicate"
    assert next_write["seq"] == before["seq"] + 1


def test_sigkill_during_a_stream_of_writes_loses_no_acknowledged_one(ctx, endpoints, data_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATA_DIR": str(data_dir),
           "STATE_ENDPOINT": endpoints.state, "BUS_XSUB_ENDPOINT": endpoints.bus_xsub,
           "BUS_XPUB_ENDPOINT": endpoints.bus_xpub, "MODE": "sim", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "services.state"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = RequestClient(ctx, endpoints.state, timeout_ms=5000, retries=2)
    in_flight = ctx.socket(zmq.REQ)
    in_flight.setsockopt(zmq.LINGER, 0)
    acked = []
    try:
        ok(client, order(qty=Decimal("1000")))
        for trade_id in range(1, 151):
            assert ok(client, fill(trade_id, qty=Decimal("0.001")))["result"] == "recorded"
            acked.append(trade_id)
        in_flight.connect(endpoints.state)
        in_flight.send(encode(fill(151, qty=Decimal("0.001"))))
        process.kill()
        process.wait(timeout=5)
    finally:
        in_flight.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stderr.close()

    conn = db.connect(data_dir / db.DB_FILENAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {int(row[0]) for row in conn.execute("SELECT trade_id FROM fills")}
    finally:
        conn.close()
    assert set(acked) <= stored <= set(acked) | {151}

    restarted = start_state(endpoints, data_dir)
    try:
        retried = [ok(client, fill(trade_id, qty=Decimal("0.001")))["result"]
                   for trade_id in range(1, 152)]  # every retry is safe to repeat
        fills = ok(client, m.QueryFills(bot_id=1, limit=1000))["items"]
    finally:
        restarted.close()
        client.close()
    assert retried[:150] == ["duplicate"] * 150
    assert len(fills) == 151
