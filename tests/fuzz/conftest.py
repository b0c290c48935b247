"""One running stack for the bad-input tests: every service as its own process (MODE=sim, one
strategy worker, two bots trading), with a Binance key and secret set that must never leak,
and a tap on the bus that keeps every ``log.*`` frame and the last heartbeat of each service.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq

from shared.codec import decode
from shared.errors import CodecError
from tests.chaos.driver import SCALPING_FAST, SWING_FAST, wait_until
from tests.chaos.stack import ChaosStack

BINANCE_KEY = "fuzzkey" + secrets.token_hex(12)
BINANCE_SECRET = "fuzzsecret" + secrets.token_hex(16)


@dataclass
class BusTap:
    """Subscribes to ``log.`` and ``health.`` on the bus from a thread of its own."""

    endpoint: str
    log_frames: list[bytes] = field(default_factory=list)
    last_beat: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(self.endpoint)
        for prefix in (b"log.", b"health."):
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        while not self._stop.is_set():
            if not sub.poll(200):
                continue
            frames = sub.recv_multipart()
            topic = frames[0]
            if topic.startswith(b"log."):
                self.log_frames.append(b"|".join(frames))
            elif len(frames) == 2:
                self._beat(frames[1])
        sub.close()
        ctx.term()

    def _beat(self, body: bytes) -> None:
        try:
            msg = decode(body)
        except CodecError:
            return
        service = getattr(msg, "service", None)
        if msg.type == "Heartbeat" and service:
            self.last_beat[service] = time.monotonic()

    def beats_after(self, since: float, services, timeout_s: float = 10.0) -> list[str]:
        """The services of ``services`` that sent no heartbeat after ``since`` in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = [s for s in services if self.last_beat.get(s, 0) <= since]
            if not missing:
                return []
            time.sleep(0.2)  # heartbeats come every second; nothing finer to wait on
        return missing

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class FuzzStack:
    stack: ChaosStack
    tap: BusTap
    bot_ids: list[int]
    secrets: dict[str, str]  # what must never leak: name -> value given to the processes


@pytest.fixture(scope="session")
def fuzz_stack() -> Iterator[FuzzStack]:
    tmp = Path(tempfile.mkdtemp(prefix="fz-"))
    env = {"BINANCE_API_KEY": BINANCE_KEY, "BINANCE_API_SECRET": BINANCE_SECRET,
           "MODE": "sim", "SIM_SPEED": "60", "SIM_SEED": "5"}
    stack = ChaosStack(tmp, workers=1, extra_env=env)
    tap = BusTap(stack.endpoint("xpub"))
    try:
        stack.start_all()
        tap.start()
        wait_until(lambda: all(i["up"] for i in stack.api("GET", "/api/health")["services"]
                               .values()), 60, "every service healthy")
        bot_ids = []
        for strategy, params in (("SWING", SWING_FAST), ("SCALPING", SCALPING_FAST)):
            bot = stack.api("POST", "/api/bots", {"strategy": strategy, "symbol": "BTCUSDT",
                                                  "timeframe": "1m", "params": params})
            stack.api("POST", f"/api/bots/{bot['id']}/start", {})
            bot_ids.append(bot["id"])
        yield FuzzStack(stack, tap, bot_ids,
                        {"BINANCE_API_KEY": BINANCE_KEY, "BINANCE_API_SECRET": BINANCE_SECRET})
    finally:
        if tap.__dict__.get("_thread"):
            tap.close()
        stack.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
