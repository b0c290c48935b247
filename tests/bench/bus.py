"""Bus throughput and latency through the proxy, against direct PUB/SUB in the same run.

Publisher, proxy and subscriber are separate processes on tcp loopback, as in production.
Two runs per path: flat out (how many messages per second get through, and how many are
lost), and paced at a fixed rate (loss must be zero; p50/p99 latency).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import zmq

from shared.codec import encode
from shared.messages import BookTicker
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOPIC = b"md.book.BTCUSDT"
HEADER = struct.Struct("<qq")  # sequence number, send time (monotonic ns)
WARMUP = b"warmup"




def payload() -> bytes:
    """A real encoded BookTicker, as market data would travel."""
    return encode(BookTicker(symbol="BTCUSDT", bid=61837.63, bid_qty=1.234, ask=61837.64,
                             ask_qty=0.5, ts_ms=1_723_161_254_087, update_id=51_234_567_890))


def publisher(endpoint: str, bind: bool, count: int, rate: int, ready, done) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 1000)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.bind(endpoint) if bind else pub.connect(endpoint)
    while not ready.is_set():  # slow-joiner: repeat until the subscriber hears us
        pub.send_multipart([TOPIC, WARMUP])
        ready.wait(0.01)
    body = payload()
    start = time.monotonic_ns()
    batch = max(1, rate // 1000) if rate else 1
    for seq in range(count):
        if rate and seq % batch == 0:
            due = start + seq * 1_000_000_000 // rate
            while time.monotonic_ns() < due:
                pass
        pub.send_multipart([TOPIC, HEADER.pack(seq, time.monotonic_ns()) + body])
    done.wait(30)
    pub.close()
    ctx.term()


def subscriber(endpoint: str, bind: bool, count: int, ready, done, results) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.bind(endpoint) if bind else sub.connect(endpoint)
    latencies = []
    received = 0
    first = last = 0
    while True:
        if not sub.poll(2000):
            break  # nothing for 2 s: the run is over (or lost its tail)
        _, body = sub.recv_multipart()
        if body == WARMUP:
            ready.set()
            continue
        now = time.monotonic_ns()
        seq, sent = HEADER.unpack_from(body)
        first = first or now
        last = now
        received += 1
        latencies.append(now - sent)
        if seq == count - 1:
            break
    done.set()
    latencies.sort()
    results.put({
        "received": received,
        "seconds": (last - first) / 1e9 if received > 1 else 0.0,
        "p50_us": latencies[len(latencies) // 2] / 1e3 if latencies else 0.0,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1e3 if latencies else 0.0,
    })
    sub.close()
    ctx.term()


def run_once(pub_ep: str, sub_ep: str, direct: bool, count: int, rate: int) -> dict:
    mpctx = mp.get_context("spawn")
    ready, done, results = mpctx.Event(), mpctx.Event(), mpctx.Queue()
    sub = mpctx.Process(target=subscriber, args=(sub_ep, direct, count, ready, done, results))
    pub = mpctx.Process(target=publisher, args=(pub_ep, False, count, rate, ready, done))
    sub.start()
    pub.start()
    result = results.get(timeout=120)
    pub.join(30)
    sub.join(30)
    result["lost"] = count - result["received"]
    result["rate"] = result["received"] / result["seconds"] if result["seconds"] else 0.0
    return result


class Proxy:
    """The real bus service in its own process."""

    def __init__(self) -> None:
        self.xsub = f"tcp://127.0.0.1:{free_port()}"
        self.xpub = f"tcp://127.0.0.1:{free_port()}"
        env = os.environ | {"BUS_XSUB_ENDPOINT": self.xsub, "BUS_XPUB_ENDPOINT": self.xpub,
                            "LOG_LEVEL": "WARNING", "DATA_DIR": "/tmp/bench-bus",
                            "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "services.bus"], env=env, cwd=ROOT)
        ctx = zmq.Context()
        probe = ctx.socket(zmq.SUB)
        probe.setsockopt(zmq.LINGER, 0)
        probe.setsockopt(zmq.SUBSCRIBE, b"health.bus")
        probe.connect(self.xpub)
        if not probe.poll(10_000):
            raise RuntimeError("bus did not start")
        probe.close()
        ctx.term()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def run(count: int = 200_000, rate: int = 50_000, paced_s: float = 3.0,
        rounds: int = 3) -> list[tuple]:
    """Flat-out throughput is the median of ``rounds`` runs per path, the two paths taken in
    turn so that both see the same machine; then one paced run per path."""
    rows: list[tuple] = []
    proxy = Proxy()
    try:
        paths = {"direct PUB/SUB": True, "through the proxy": False}
        flats: dict[str, list[dict]] = {label: [] for label in paths}
        for _ in range(rounds):
            for label, direct in paths.items():
                pub_ep, sub_ep = _endpoints(proxy, direct)
                flats[label].append(run_once(pub_ep, sub_ep, direct, count, 0))
        paced_count = int(rate * paced_s)
        medians = {}
        for label, direct in paths.items():
            pub_ep, sub_ep = _endpoints(proxy, direct)
            paced = run_once(pub_ep, sub_ep, direct, paced_count, rate)
            medians[label] = statistics.median(r["rate"] for r in flats[label])
            lost = sum(r["lost"] for r in flats[label])
            rows.append((f"bus {label}: flat-out throughput (median of {rounds})",
                         f"{medians[label]:,.0f}", "msg/s"))
            rows.append((f"bus {label}: flat-out lost", f"{lost:,} of {count * rounds:,}",
                         "msgs"))
            rows.append((f"bus {label}: lost at {rate:,} msg/s",
                         f"{paced['lost']:,} of {paced_count:,}", "msgs"))
            rows.append((f"bus {label}: latency p50 / p99 at {rate:,} msg/s",
                         f"{paced['p50_us']:,.0f} / {paced['p99_us']:,.0f}", "µs"))
        ratio = medians["through the proxy"] / medians["direct PUB/SUB"]
        rows.append(("bus proxy / direct throughput", f"{ratio:.0%}", "ratio"))
    finally:
        proxy.close()
    return rows


def _endpoints(proxy: Proxy, direct: bool) -> tuple[str, str]:
    if direct:
        ep = f"tcp://127.0.0.1:{free_port()}"
        return ep, ep
    return proxy.xsub, proxy.xpub
