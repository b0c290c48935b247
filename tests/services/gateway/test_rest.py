"""REST through ``app.test_client()`` against a real state service on ipc sockets."""

from __future__ import annotations

import time
from decimal import Decimal

from services.gateway.app import create_app
from services.gateway.health import HealthBook
from shared import messages as m
from tests.services.gateway.conftest import Stack, start_gateway, wait_for

JSON = {"Content-Type": "application/json"}


def test_bots_list_has_the_default_bot(stack: Stack):
    resp = stack.client().get("/api/bots")
    assert resp.status_code == 200
    (bot,) = resp.get_json()["items"]
    assert {"id", "strategy", "symbol", "timeframe", "status"} <= set(bot)
    assert bot["status"] == "STOPPED"


def test_create_then_delete_a_bot(stack: Stack):
    client = stack.client()
    resp = client.post("/api/bots", json={"strategy": "SCALPING", "symbol": "ethusdt",
                                          "timeframe": "1m"})
    assert resp.status_code == 201, resp.get_json()
    bot = resp.get_json()
    assert (bot["strategy"], bot["symbol"]) == ("SCALPING", "ETHUSDT")

    assert client.delete(f"/api/bots/{bot['id']}", headers=JSON).get_json() == {
        "deleted": bot["id"]}
    ids = [b["id"] for b in client.get("/api/bots").get_json()["items"]]
    assert bot["id"] not in ids


def test_create_with_bad_fields_names_each_one(stack: Stack):
    resp = stack.client().post("/api/bots", json={"strategy": "NOPE", "symbol": "b!",
                                                  "params": 3})
    assert resp.status_code == 400
    fields = resp.get_json()["error"]["fields"]
    assert set(fields) == {"strategy", "symbol", "timeframe", "params"}


def test_start_and_stop_set_the_desired_status(stack: Stack):
    client = stack.client()
    assert client.post("/api/bots/1/start", json={}).get_json()["desired_status"] == "RUNNING"
    assert client.post("/api/bots/1/stop", json={}).get_json()["desired_status"] == "STOPPED"


def test_unknown_bot_is_404_and_a_bad_id_is_400(stack: Stack):
    client = stack.client()
    assert client.get("/api/bots/999").status_code == 404
    assert client.get("/api/bots/999").get_json()["error"]["code"] == "unknown_bot"
    resp = client.get("/api/bots/abc")
    assert resp.status_code == 400 and "id" in resp.get_json()["error"]["fields"]


def test_bot_detail_has_balances_mid_price_position_and_sync(stack: Stack):
    stack.state(m.RecordBalances(free={"USDT": Decimal("1000"), "BTC": Decimal("0.5")}))
    stack.state(m.RecordFill(symbol="BTCUSDT", trade_id=1, side="BUY", price=100, qty=2,
                             bot_id=1, ts_ms=1_700_000_000_000))
    book = m.BookTicker(symbol="BTCUSDT", bid=109.0, bid_qty=1.0, ask=111.0, ask_qty=1.0,
                        ts_ms=1)
    wait_for(lambda: (stack.publisher.publish("md.book.BTCUSDT", book),
                      stack.live.mid_price("BTCUSDT"))[1], what="mid price")
    wait_for(lambda: stack.live.execution_status().get("last_sync_ts"), what="exec status")
    wait_for(lambda: "USDT" in (stack.live.balances() or {}), what="balances")

    detail = stack.client().get("/api/bots/1").get_json()

    assert detail["mid_price"] == 110.0
    assert (detail["quote_balance"], detail["base_qty"]) == ("1000", "0.5")
    assert detail["position"]["qty"] == "2" and detail["position"]["entry_price"] == "100"
    assert detail["position"]["opened_at_ms"] == 1_700_000_000_000
    assert detail["pnl"]["unrealized"] == "20" and detail["pnl"]["realized"] == "0"
    assert detail["last_sync_ts"] == 1_700_000_000.0


def test_params_save_with_errors_saves_nothing(stack: Stack):
    client = stack.client()
    before = client.get("/api/bots/1/params/versions").get_json()["items"]

    resp = client.put("/api/bots/1/params", json={"params": {"ema_fast": -5, "nope": 1}})

    assert resp.status_code == 400
    assert resp.get_json()["error"]["fields"]
    assert client.get("/api/bots/1/params/versions").get_json()["items"] == before


def test_params_save_then_rollback(stack: Stack):
    client = stack.client()
    current = client.get("/api/bots/1/params").get_json()
    saved = client.put("/api/bots/1/params", json={"params": current["params"],
                                                   "comment": "same again"})
    assert saved.status_code == 200, saved.get_json()
    assert saved.get_json()["version"] == current["version"] + 1

    back = client.post("/api/bots/1/params/rollback", json={"version": 1})

    assert back.status_code == 200 and back.get_json()["version"] == current["version"] + 2
    versions = client.get("/api/bots/1/params/versions").get_json()["items"]
    assert [v["version"] for v in versions][:1] == [current["version"] + 2]


def test_rollback_needs_an_integer_version(stack: Stack):
    resp = stack.client().post("/api/bots/1/params/rollback", json={"version": "x"})
    assert resp.status_code == 400 and set(resp.get_json()["error"]["fields"]) == {"version"}


def _record_orders(stack: Stack, count: int) -> None:
    for i in range(count):
        stack.state(m.RecordOrderEvent(client_order_id=f"c{i}", status="NEW", bot_id=1,
                                       symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                                       price=100, qty=1, ts_ms=1_700_000_000_000 + i))


def test_orders_are_paged_newest_first(stack: Stack):
    _record_orders(stack, 5)
    client = stack.client()

    first = client.get("/api/orders?bot=1&limit=2").get_json()
    second = client.get(f"/api/orders?bot=1&limit=2&before={first['next_before']}").get_json()

    ids = [o["id"] for o in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    assert len(client.get("/api/orders?status=OPEN&limit=500").get_json()["items"]) == 5


def test_cancel_an_order_by_id_or_client_id(stack: Stack):
    _record_orders(stack, 2)
    client = stack.client()
    order_id = client.get("/api/orders?limit=1").get_json()["items"][0]["id"]

    by_id = client.delete(f"/api/orders/{order_id}", headers=JSON)
    by_client_id = client.delete("/api/orders/c0", headers=JSON)

    assert by_id.status_code == 200 and by_id.get_json()["status"] == "canceled"
    assert by_client_id.get_json()["client_order_id"] == "c0"
    sent = [r for r in stack.execution.requests if isinstance(r, m.CancelOrder)]
    assert [r.symbol for r in sent] == ["BTCUSDT", "BTCUSDT"]
    assert client.delete("/api/orders/nope", headers=JSON).status_code == 404


def test_trades_come_with_performance(stack: Stack):
    for trade_id, side, price in ((1, "BUY", 100), (2, "SELL", 110), (3, "BUY", 100),
                                  (4, "SELL", 95)):
        stack.state(m.RecordFill(symbol="BTCUSDT", trade_id=trade_id, side=side, price=price,
                                 qty=1, bot_id=1, ts_ms=1_700_000_000_000 + trade_id))

    page = stack.client().get("/api/trades?bot=1").get_json()

    assert len(page["items"]) == 2
    perf = page["performance"]
    assert (perf["count"], perf["wins"], perf["losses"], perf["win_rate"]) == (2, 1, 1, 0.5)
    assert perf["total_pnl"] == "5"


def test_close_position_and_kill_switch_go_to_execution(stack: Stack):
    client = stack.client()
    closed = client.post("/api/bots/1/close", json={"reason": "test"})
    switched = client.post("/api/killswitch", json={"enabled": True})
    bad = client.post("/api/killswitch", json={"enabled": "yes"})

    assert closed.get_json()["status"] == "flat"
    assert switched.get_json() == {"kill_switch": True}
    assert bad.status_code == 400 and set(bad.get_json()["error"]["fields"]) == {"enabled"}
    close = next(r for r in stack.execution.requests if isinstance(r, m.CloseBotPosition))
    assert (close.bot_id, close.symbol) == ("1", "BTCUSDT")


def test_a_request_execution_does_not_handle_is_503(stack: Stack):
    del stack.execution.handlers[m.SetKillSwitch]
    resp = stack.client().post("/api/killswitch", json={"enabled": False})
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "execution_unsupported"


def test_candles_come_from_marketdata(stack: Stack):
    client = stack.client()
    resp = client.get("/api/candles?symbol=BTCUSDT&interval=1m&limit=3")
    assert resp.status_code == 200
    rows = resp.get_json()["candles"]
    assert len(rows) == 3 and "type" not in rows[0] and rows[0]["close"] == 100.5
    bad = client.get("/api/candles?symbol=BTCUSDT&interval=7m&limit=0")
    assert bad.status_code == 400
    assert set(bad.get_json()["error"]["fields"]) == {"interval", "limit"}


def test_logs_from_the_bus_filtered_by_level_and_service(stack: Stack):
    records = [m.LogRecord(service=svc, instance="i", level=level, logger="x",
                           message=f"{svc}-{level}", ts=time.time())
               for svc, level in (("state", "INFO"), ("execution", "ERROR"),
                                  ("execution", "DEBUG"))]
    for record in records:
        stack.publisher.publish(f"log.{record.service}", record)
    wait_for(lambda: len(stack.live.logs.query(service="execution")) >= 2
             or [stack.publisher.publish(f"log.{r.service}", r) for r in records] and False,
             what="logs heard")
    client = stack.client()

    errors = client.get("/api/logs?level=WARNING&service=execution").get_json()["items"]

    assert {i["message"] for i in errors} == {"execution-ERROR"}
    assert client.get("/api/logs?limit=5000").status_code == 400


def test_alerts_list_and_acknowledge(stack: Stack):
    stack.state(m.RecordAlert(level="CRITICAL", service="execution", message="418 banned",
                              request_id="a1"))
    client = stack.client()
    (alert,) = client.get("/api/alerts").get_json()["items"]
    acked = client.post(f"/api/alerts/{alert['id']}/ack", json={})
    assert acked.get_json()["acknowledged"] is True


def test_a_dead_state_service_gives_503_quickly(bus, endpoints, tmp_path):
    gateway = start_gateway(endpoints, tmp_path)
    gateway.service.backends.pools["state"].timeout_ms = 200
    try:
        started = time.monotonic()
        resp = gateway.service.app.test_client().get("/api/bots")
        assert resp.status_code == 503
        assert resp.get_json()["error"]["code"] == "state_unavailable"
        assert time.monotonic() - started < 2
    finally:
        gateway.close()


def test_bad_json_body_is_400_not_500(stack: Stack):
    resp = stack.client().post("/api/bots", data=b"{not json", headers=JSON)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "bad_json"


def test_too_deep_or_broken_json_is_400_not_500():
    client = create_app(HealthBook()).test_client()
    deep = client.post("/api/killswitch", data="[" * 100_000, headers=JSON)
    broken = client.put("/api/bots/1/params", data=b"\xff\xfe", headers=JSON)
    huge = client.put("/api/bots/1/params", json={"params": {"x": 10**30}})
    assert [r.status_code for r in (deep, broken, huge)] == [400, 400, 400]
    assert huge.get_json()["error"]["fields"] == {"params": "an integer out of the 64-bit range"}


def test_the_gateway_keeps_every_bots_market_streams_flowing(stack: Stack):
    def asked():
        return [r for r in list(stack.marketdata.requests) if isinstance(r, m.SetMarketStreams)]

    (first, *_) = wait_for(asked, what="SetMarketStreams")

    assert set(first.topics) == {"md.book.BTCUSDT", "md.kline.BTCUSDT.1m"}
    assert first.subscriber.startswith("gateway-") and first.ttl_s > 5
