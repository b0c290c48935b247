"""Benchmark of a strategy worker (not a test): tick-to-intent latency and book throughput.

Usage: python -m services.strategy.bench [--samples N]
The real bus, state and one worker run as processes on tcp loopback; this process plays
marketdata (publishes ``BookTicker`` on ``md.book.BTCUSDT``) and execution (a ROUTER that
receives ``SubmitIntent``). Measured, in the same run:

- tick-to-intent: book published -> intent received, p50/p99, one SCALPING bot whose every
  sample book is a BUY signal (cooldown 0, new data time each time);
- the limit: the same three hops (PUB -> bus -> SUB, then a request to a ROUTER) through a
  raw ZeroMQ relay process with no decoding or strategy in between;
- throughput: 200,000 book updates paced at 50,000/s, then flat out, the last one a signal:
  it must produce its intent (the latest value is never lost, however many were coalesced),
  and the worker's own count says how many it took off its socket.

``run()`` returns ``(name, value, unit)`` rows for ``make bench``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from shared import messages as m
from shared.codec import decode, encode

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "md.book.BTCUSDT"
RAW_TOPIC = "md.book.RAWBENCH"  # the raw relay's own topic: the worker never sees it
SIGNAL = dict(bid=100.0, bid_qty=10.0, ask=100.01, ask_qty=1.0)  # bid/ask 10x: BUY
QUIET = dict(bid=100.0, bid_qty=1.0, ask=100.01, ask_qty=1.0)  # balanced: nothing
SCALP_PARAMS = {"order_type": "MARKET", "cooldown_ms": 0, "limit_order_timeout_ms": 100}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def book(ts_ms: int, signal: bool) -> bytes:
    return encode(m.BookTicker(symbol="BTCUSDT", ts_ms=ts_ms, **(SIGNAL if signal else QUIET)))


def relay(xpub: str, target: str) -> None:
    """The raw limit: SUB from the bus, each message sent on as a request, reply awaited."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, RAW_TOPIC.encode())
    sub.connect(xpub)
    req = ctx.socket(zmq.REQ)
    req.connect(target)
    while True:
        _, body = sub.recv_multipart()
        if body == b"stop":
            break
        req.send(body)
        req.recv()
    ctx.destroy(linger=0)


class Rig:
    """Bus, state and one worker as processes; a publisher and an execution ROUTER here."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-strategy-"))
        ep = {name: f"tcp://127.0.0.1:{free_port()}" for name in
              ("BUS_XSUB", "BUS_XPUB", "STATE", "EXECUTION", "MARKETDATA")}
        self.ep = ep
        self.env = os.environ | {f"{k}_ENDPOINT": v for k, v in ep.items()} | {
            "DATA_DIR": str(self.dir), "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
            "STRATEGY_CLAIM_GRACE_S": "0.2"}
        self.procs: list[subprocess.Popen] = []
        self.ctx = zmq.Context()
        self.execution = self.ctx.socket(zmq.ROUTER)
        self.execution.bind(ep["EXECUTION"])
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 1_000_000)
        self.pub.connect(ep["BUS_XSUB"])
        self.ts_ms = 1_700_000_000_000

    def spawn(self, service: str) -> None:
        self.procs.append(subprocess.Popen([sys.executable, "-m", f"services.{service}"],
                                           env=self.env, cwd=ROOT))

    def request(self, msg: m.Message) -> m.Reply:
        req = self.ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(self.ep["STATE"])
        req.send(encode(msg))
        if not req.poll(5000):
            req.close()
            raise RuntimeError(f"state did not answer {msg.type}")
        reply = decode(req.recv())
        req.close()
        return reply

    def start_bot(self) -> None:
        for service in ("bus", "state", "strategy"):
            self.spawn(service)
        deadline = time.monotonic() + 30
        while True:
            try:
                bot = self.request(m.CreateBot(strategy="SCALPING", symbol="BTCUSDT",
                                               timeframe="1m", params=SCALP_PARAMS))
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
        bot_id = bot.result["value"]["id"]
        self.request(m.SetDesiredStatus(bot_id=bot_id, desired_status="RUNNING"))
        while self.request(m.GetBot(bot_id=bot_id)).result["status"] != "RUNNING":
            if time.monotonic() > deadline:
                raise RuntimeError("the bot never ran")
            time.sleep(0.05)
        # the worker's subscription joins the bus a little later: signal until it answers
        while self.next_intent(timeout_ms=100, send_first=True) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no intent from the worker")

    def publish(self, signal: bool) -> int:
        self.ts_ms += 1000  # new data time: the strategy's cooldown and pending are past
        self.pub.send_multipart([TOPIC.encode(), book(self.ts_ms, signal)])
        return self.ts_ms

    def next_intent(self, timeout_ms: int, send_first: bool = False) -> m.SubmitIntent | None:
        if send_first:
            self.publish(True)
        if not self.execution.poll(timeout_ms):
            return None
        *envelope, body = self.execution.recv_multipart()
        self.execution.send_multipart([*envelope, encode(m.Reply(ok=True, result={}))])
        return decode(body)

    def tick_to_intent(self, samples: int) -> list[float]:
        latencies = []
        for _ in range(samples):
            started = time.perf_counter_ns()
            ts = self.publish(True)
            intent = self.next_intent(2000)
            while intent is not None and f"-{ts}-" not in intent.intent_id:
                intent = self.next_intent(2000)  # a late answer to an earlier sample
            if intent is not None:
                latencies.append((time.perf_counter_ns() - started) / 1e3)
            time.sleep(0.001)
        return latencies

    def raw_limit(self, samples: int) -> list[float]:
        target = f"tcp://127.0.0.1:{free_port()}"
        router = self.ctx.socket(zmq.ROUTER)
        router.bind(target)
        proc = mp.get_context("spawn").Process(target=relay, args=(self.ep["BUS_XPUB"], target))
        proc.start()
        latencies = []
        try:
            while True:  # slow joiner
                self.pub.send_multipart([RAW_TOPIC.encode(), b"warmup"])
                if router.poll(100):
                    *env, _ = router.recv_multipart()
                    router.send_multipart([*env, b""])
                    break
            while router.poll(200):
                *env, _ = router.recv_multipart()
                router.send_multipart([*env, b""])
            for _ in range(samples):
                started = time.perf_counter_ns()
                self.pub.send_multipart([RAW_TOPIC.encode(), book(self.ts_ms, True)])
                if router.poll(2000):
                    *env, _ = router.recv_multipart()
                    latencies.append((time.perf_counter_ns() - started) / 1e3)
                    router.send_multipart([*env, b""])
                time.sleep(0.001)
        finally:
            self.pub.send_multipart([RAW_TOPIC.encode(), b"stop"])
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
            router.close(linger=0)
        return latencies

    def worker_received(self) -> int:
        """Messages the worker took off its socket so far, from its next heartbeat."""
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"health.strategy")
        sub.connect(self.ep["BUS_XPUB"])
        try:
            while sub.poll(5000):
                beat = decode(sub.recv_multipart()[1])
                if isinstance(beat, m.Heartbeat) and "md_received" in beat.detail:
                    return beat.detail["md_received"]
            raise RuntimeError("no heartbeat from the worker")
        finally:
            sub.close(linger=0)

    def flood(self, count: int, rate: int) -> dict[str, float | None]:
        """Publish ``count`` quiet books (at ``rate``/s, 0 = flat out) then one signal: the
        rate offered, the share the worker received, and the seconds from the last publish
        to its intent (None: the latest value was lost)."""
        before = self.worker_received()
        quiet = [TOPIC.encode(), book(self.ts_ms, False)]  # older data time: never a signal
        started = time.perf_counter()
        batch = max(1, rate // 1000)
        for i in range(count):
            if rate and i % batch == 0:
                due = started + i / rate
                while time.perf_counter() < due:
                    pass
            self.pub.send_multipart(quiet)
        last = self.publish(True)
        sent_at = time.perf_counter()
        result = {"rate": (count + 1) / (sent_at - started), "lag_s": None, "received": 0.0}
        deadline = sent_at + 10
        while time.perf_counter() < deadline:
            intent = self.next_intent(100)
            if intent is not None and f"-{last}-" in intent.intent_id:
                result["lag_s"] = time.perf_counter() - sent_at
                break
        # a heartbeat heard from now on was sent after the last book was handled
        result["received"] = (self.worker_received() - before) / (count + 1)
        return result

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.dir, ignore_errors=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def run(samples: int = 2000) -> list[tuple[str, str, str]]:
    rig = Rig()
    try:
        rig.start_bot()
        worker = rig.tick_to_intent(samples)
        limit = rig.raw_limit(samples)
        rows = [
            ("strategy tick-to-intent (md.book published -> intent at execution) p50 / p99",
             f"{_pct(worker, 0.5):,.0f} / {_pct(worker, 0.99):,.0f}", "µs"),
            ("raw ZeroMQ three hops (PUB -> bus -> SUB -> REQ -> ROUTER) p50 / p99",
             f"{_pct(limit, 0.5):,.0f} / {_pct(limit, 0.99):,.0f}", "µs"),
            ("strategy tick-to-intent p50 / raw limit p50",
             f"{_pct(worker, 0.5) / _pct(limit, 0.5):.2f}", "x"),
            ("strategy tick-to-intent samples answered", f"{len(worker)} of {samples}", "samples"),
        ]
        for rate in (50_000, 0):
            flood = rig.flood(200_000, rate)
            label = "flat out" if rate == 0 else f"paced at {rate:,}/s"
            lag = "LOST" if flood["lag_s"] is None else f"{flood['lag_s'] * 1000:,.1f}"
            rows.append((f"strategy book updates {label}: offered / received by the worker / "
                         "latest-value lag",
                         f"{flood['rate']:,.0f} / {flood['received']:.1%} / {lag}",
                         "msg/s / share / ms"))
        return rows
    finally:
        rig.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    for name, value, unit in run(args.samples):
        print(f"{name}: {value} {unit}")


if __name__ == "__main__":
    main()
