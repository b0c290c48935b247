"""The Binance API key and secret (set for a full run in MODE=sim, so execution reads them)
never appear in any process's output, any ``log.*`` message on the bus, any REST reply, any
request/reply answer or any WebSocket message, while the bots trade and after the garbage of
the other fuzz tests and a restart of execution."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests
from websockets.sync.client import connect

from shared.codec import encode
from shared.messages import GetExecutionStatus, GetRiskConfig, GetSnapshot
from tests.chaos.driver import wait_until
from tests.fuzz.test_request_endpoints import request_raw

pytestmark = pytest.mark.system
GET_PATHS = ("/api/health", "/api/bots", "/api/strategies", "/api/orders", "/api/trades",
             "/api/execution", "/api/logs?limit=1000", "/api/logs?level=DEBUG&limit=1000",
             "/api/alerts", "/api/openapi.json", "/api/session",
             "/api/candles?symbol=BTCUSDT&interval=1m&limit=5", "/api/bots/999999",
             "/api/orders?limit=abc", "/api/nowhere")


def leaks(text: str | bytes | None, secrets: dict[str, str]) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [name for name, value in secrets.items() if value in (text or "")]


def restart_execution(fuzz_stack) -> None:
    """SIGHUP: execution stops and re-executes itself with the same pid (startup logs again)."""
    (slot,) = [s for s in fuzz_stack.stack.slots if s.name == "execution"]
    since = time.monotonic()
    os.kill(slot.proc.pid, signal.SIGHUP)
    time.sleep(1.0)
    assert fuzz_stack.tap.beats_after(since + 1.0, ["execution"], timeout_s=20) == []


def api_replies(url: str, bot_ids: list[int]) -> list[str]:
    paths = [*GET_PATHS, *(f"/api/bots/{b}" for b in bot_ids),
             *(f"/api/bots/{b}/params" for b in bot_ids)]
    texts = [requests.get(url + path, timeout=10).text for path in paths]
    texts.append(requests.post(url + "/api/bots", json={"strategy": "NOPE"}, timeout=10).text)
    texts.append(requests.put(f"{url}/api/bots/{bot_ids[0]}/params",
                              json={"params": {"ema_fast": "x"}}, timeout=10).text)
    return texts


def ws_frames(url: str, seconds: float = 4.0) -> list[str]:
    frames = []
    base = url.replace("http://", "ws://")
    with connect(base + "/ws", close_timeout=1) as ws, \
            connect(base + "/ws_logs?level=DEBUG", close_timeout=1) as plain:
        ws.send(json.dumps({"subscribe": ["state", "ticker", "orders", "logs", "health"]}))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for sock in (ws, plain):
                try:
                    frames.append(sock.recv(timeout=0.1))
                except TimeoutError:
                    pass
    return frames


def test_no_secret_anywhere_during_a_full_run(fuzz_stack):
    stack = fuzz_stack.stack
    wait_until(lambda: stack.api("GET", "/api/orders")["items"], 60, "the bots to trade")
    restart_execution(fuzz_stack)
    replies = api_replies(stack.gateway_url, fuzz_stack.bot_ids)
    frames = ws_frames(stack.gateway_url)
    zmq_replies = [request_raw(stack.endpoint(name), [encode(msg)]) for name, msg in (
        ("execution", GetExecutionStatus()), ("execution", GetRiskConfig()),
        ("state", GetSnapshot()))]
    time.sleep(1.0)  # the last log lines reach the bus tap and the files
    outputs = stack.logs()

    assert len(fuzz_stack.tap.log_frames) > 0 and len(frames) > 0  # the net caught something
    assert all(r is not None for r in zmq_replies)
    secrets = fuzz_stack.secrets
    assert all(len(v) > 20 for v in secrets.values())
    assert stack.env()["BINANCE_API_SECRET"] == secrets["BINANCE_API_SECRET"]  # what they got
    found = {f"output of {name}": leaks(text, secrets) for name, text in outputs.items()}
    found |= {f"bus log frame {i}": leaks(f, secrets)
              for i, f in enumerate(fuzz_stack.tap.log_frames)}
    found |= {f"REST reply {i}": leaks(text, secrets) for i, text in enumerate(replies)}
    found |= {f"WebSocket frame {i}": leaks(f, secrets) for i, f in enumerate(frames)}
    found |= {f"request/reply answer {i}": leaks(r, secrets) for i, r in enumerate(zmq_replies)}
    assert {where: what for where, what in found.items() if what} == {}


def test_the_leak_detector_sees_a_leak():
    secrets = {"BINANCE_API_SECRET": "s3cr3t-value-for-the-detector"}
    assert leaks(b"... s3cr3t-value-for-the-detector ...", secrets) == ["BINANCE_API_SECRET"]
    assert leaks("signature=***", secrets) == []
