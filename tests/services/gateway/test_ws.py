"""The WebSocket channels through a real server: snapshot then numbered updates, resnapshot,
the plain log stream, pings, and a slow client dropped while the others keep receiving."""

from __future__ import annotations

import json
import secrets
import socket
import time
from contextlib import closing

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from shared import messages as m
from tests.services.gateway.conftest import Stack, start_gateway, wait_for


def open_ws(stack: Stack, path: str = "/ws", **kwargs) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{stack.port}{path}", proxy=None, open_timeout=5,
                   legacy=True, **kwargs)


def frame(ws: ClientConnection, timeout: float = 5.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def next_on(ws: ClientConnection, channel: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = frame(ws, max(0.01, deadline - time.monotonic()))
        if got.get("channel") == channel:
            return got


def subscribe(ws: ClientConnection, *channels: str) -> dict[str, dict]:
    """Send a subscription; return the snapshot of each channel."""
    assert frame(ws)["type"] == "hello"
    ws.send(json.dumps({"subscribe": list(channels)}))
    snapshots = {}
    while len(snapshots) < len(channels):
        got = frame(ws)
        if got.get("type") == "snapshot":
            snapshots[got["channel"]] = got
    return snapshots


def test_state_snapshot_then_numbered_updates(stack: Stack):
    with closing(open_ws(stack)) as ws:
        snap = subscribe(ws, "state")["state"]
        assert snap["data"]["synced"] and snap["data"]["bots"][0]["id"] == 1

        stack.client().post("/api/bots/1/start", json={})
        update = next_on(ws, "state")

    assert update["type"] == "update" and update["seq"] == snap["seq"] + 1
    assert update["data"]["kind"] == "bot"
    assert update["data"]["payload"]["desired_status"] == "RUNNING"
    assert update["data"]["state_seq"] == snap["data"]["seq"] + 1


def test_resnapshot_on_request_continues_the_numbering(stack: Stack):
    with closing(open_ws(stack)) as ws:
        subscribe(ws, "state")
        stack.client().post("/api/bots/1/start", json={})
        update = next_on(ws, "state")

        ws.send(json.dumps({"resnapshot": ["state"]}))
        again = next_on(ws, "state")
        stack.client().post("/api/bots/1/stop", json={})
        after = next_on(ws, "state")

    assert again["type"] == "snapshot" and again["seq"] == update["seq"]
    assert again["data"]["bots"][0]["desired_status"] == "RUNNING"
    assert after["seq"] == again["seq"] + 1


def test_a_bad_command_gets_an_error_and_the_socket_stays(stack: Stack):
    with closing(open_ws(stack)) as ws:
        frame(ws)
        ws.send(json.dumps({"subscribe": ["state", "nope"]}))
        error = frame(ws)
        ws.send("not json")
        second = frame(ws)
        ws.send(json.dumps({"subscribe": ["logs"]}))
        snapshot = frame(ws)

    assert error["type"] == "error" and "nope" in error["message"]
    assert second["type"] == "error"
    assert snapshot["channel"] == "logs" and snapshot["type"] == "snapshot"


def test_ticker_orders_and_health_channels(stack: Stack):
    book = m.BookTicker(symbol="ETHUSDT", bid=10.0, bid_qty=1.0, ask=12.0, ask_qty=2.0, ts_ms=5)
    with closing(open_ws(stack)) as ws:
        subscribe(ws, "ticker", "orders", "health")
        stack.publisher.publish("md.book.ETHUSDT", book)
        stack.state(m.RecordOrderEvent(client_order_id="c1", status="NEW", bot_id=1,
                                       symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                                       price=100, qty=1))
        ticker = next_on(ws, "ticker")
        order = next_on(ws, "orders")
        health = next_on(ws, "health")

    assert ticker["data"] == {"kind": "book", "symbol": "ETHUSDT", "bid": 10.0, "ask": 12.0,
                              "bid_qty": 1.0, "ask_qty": 2.0, "mid": 11.0, "ts_ms": 5}
    assert order["data"]["kind"] == "order" and order["data"]["row"]["client_order_id"] == "c1"
    assert health["data"]["kind"] == "health" and health["data"]["services"]["state"]["up"]


def test_ws_logs_is_a_plain_filtered_line_stream(stack: Stack):
    with closing(open_ws(stack, "/ws_logs?level=WARNING")) as ws:
        wait_for(lambda: stack.live.hub.subscriber_count("logs"), what="log subscriber")
        for level in ("INFO", "ERROR"):
            stack.live.on_log(m.LogRecord(service="execution", instance="i", level=level,
                                          logger="x", message=f"{level} line", ts=time.time()))
        line = ws.recv(timeout=5)

    assert line.endswith("ERROR execution: ERROR line")


def test_idle_socket_is_kept_open_by_pings(stack: Stack):
    stack.app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 0.5}
    with closing(open_ws(stack)) as ws:
        frame(ws)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2.0)  # four ping intervals of silence, answered by pongs
        ws.send(json.dumps({"subscribe": ["logs"]}))
        assert frame(ws)["channel"] == "logs"


def slow_socket(port: int) -> socket.socket:
    """A TCP socket with a tiny receive buffer, so an unread stream backs up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_slow_client_is_dropped_with_a_reason_and_others_keep_receiving(stack: Stack):
    stack.app.config.update(WS_QUEUE_SIZE=50, WS_DROP_GRACE_S=30.0)
    fast = [open_ws(stack, max_queue=None) for _ in range(2)]
    slow = connect(f"ws://127.0.0.1:{stack.port}/ws", sock=slow_socket(stack.port),
                   proxy=None, compression=None, max_queue=1, legacy=True)
    try:
        starts = [subscribe(ws, "logs")["logs"]["seq"] for ws in fast]
        slow.send(json.dumps({"subscribe": ["logs"]}))
        wait_for(lambda: stack.live.hub.subscriber_count("logs") == 3, what="3 subscribers")
        count, batch = 400, 20  # ~13 MB of incompressible text, read by the fast ones
        received: list[list[int]] = [[] for _ in fast]
        for _ in range(count // batch):
            for _ in range(batch):
                stack.live.on_log(m.LogRecord(service="x", instance="i", level="INFO",
                                              logger="x", message=secrets.token_hex(16_000),
                                              ts=time.time()))
            for ws, seqs in zip(fast, received, strict=True):
                seqs.extend(next_on(ws, "logs", 20)["seq"] for _ in range(batch))
        wait_for(lambda: stack.live.hub.dropped >= 1, 20, what="slow client dropped")

        for seqs, start in zip(received, starts, strict=True):
            assert seqs == list(range(start + 1, start + count + 1))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                slow.recv(timeout=20)
    finally:
        for ws in (*fast, slow):
            ws.close()

    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008,
                                                                   "slow consumer: queue full")
    assert stack.live.hub.dropped == 1


def test_a_restarted_gateway_says_goodbye_and_a_reconnect_resyncs(stack: Stack, tmp_path):
    port = stack.port
    ws = open_ws(stack)
    subscribe(ws, "state")

    stack.running.close()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    stack.running = start_gateway(stack.endpoints, tmp_path, port=port)
    stack.gateway = stack.running.service
    wait_for(lambda: stack.gateway.feeds.replica.synced, what="new gateway in sync")
    with closing(open_ws(stack)) as again:
        snapshot = subscribe(again, "state")["state"]

    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "gateway stopping")
    assert snapshot["seq"] >= 0 and snapshot["data"]["synced"] and snapshot["data"]["bots"]
