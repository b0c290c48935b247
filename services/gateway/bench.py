"""Benchmark of the gateway (not a test): WebSocket fan-out and REST latency on loopback.

Usage: python -m services.gateway.bench [--clients 50] [--rate 100] [--seconds 3]
Starts a bus, a state service and the gateway in this process on ipc sockets, then
- WebSocket fan-out: ``--clients`` sockets subscribed to ``ticker``; book tickers published on
  the bus at ``--rate`` per second, and then a burst as fast as possible; reports updates
  delivered per second (all clients together) and the publish-to-receive delay;
- REST: 8 keep-alive connections calling ``GET /api/bots/1`` (a state request plus the live
  views) and ``GET /api/health``; reports requests per second and p50/p99 latency.
``run()`` returns the figures as ``(name, value, unit)`` rows for ``make bench``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from websockets.sync.client import connect

from services.bus.service import BusService
from services.gateway.service import GatewayService
from services.state.service import StateService
from shared.bus import Publisher
from shared.config import Config, Endpoints, load_config
from shared.messages import BookTicker
from shared.service import ServiceThread

REST_THREADS = 8


def config(name: str, endpoints: Endpoints, data_dir: Path) -> Config:
    return replace(load_config(name, env={}), endpoints=endpoints, data_dir=data_dir,
                   gateway_port=0, log_level="WARNING")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


class Listener:
    """One WebSocket client on its own thread, recording each ticker update's delay."""

    def __init__(self, url: str, sent: dict[int, float]) -> None:
        self.ws = connect(url, proxy=None, max_queue=None, legacy=True)
        self.sent = sent
        self.delays: list[float] = []
        self.min_stamp = 0  # updates published before the current phase are not counted
        self.ws.recv(timeout=5)  # hello
        self.ws.send(json.dumps({"subscribe": ["ticker"]}))
        self.ws.recv(timeout=5)  # snapshot
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                frame = json.loads(self.ws.recv())
                now = time.perf_counter()
                stamp = frame["data"].get("ts_ms")
                if stamp in self.sent and stamp >= self.min_stamp:
                    self.delays.append(now - self.sent[stamp])
        except Exception:
            return

    def close(self) -> None:
        self.ws.close()
        self.thread.join(timeout=2)


def publish(pub: Publisher, sent: dict[int, float], first: int, count: int,
            rate: float | None) -> None:
    started = time.perf_counter()
    for i in range(first, first + count):
        if rate:
            delay = started + (i - first) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        sent[i] = time.perf_counter()
        pub.publish("md.book.BTCUSDT", BookTicker(symbol="BTCUSDT", bid=100.0, bid_qty=1.0,
                                                  ask=100.1, ask_qty=1.0, ts_ms=i))


def wait_delivered(listeners: list[Listener], total: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(len(x.delays) for x in listeners) < total and time.monotonic() < deadline:
        time.sleep(0.01)


def phase(listeners: list[Listener], first_stamp: int) -> None:
    for x in listeners:
        x.min_stamp = first_stamp
        x.delays.clear()


def bench_fanout(port: int, pub: Publisher, clients: int, rate: float, seconds: float):
    sent: dict[int, float] = {}
    url = f"ws://127.0.0.1:{port}/ws"
    listeners = [Listener(url, sent) for _ in range(clients)]
    try:
        publish(pub, sent, 0, 20, None)  # the subscription reaches the bus
        wait_delivered(listeners, 1, 5)
        phase(listeners, 1000)
        paced = int(rate * seconds)
        publish(pub, sent, 1000, paced, rate)
        wait_delivered(listeners, paced * clients, 10)
        delays = [d for x in listeners for d in x.delays]
        paced_rows = (len(delays), percentile(delays, 50), percentile(delays, 99))
        phase(listeners, 100_000)
        burst = 500
        started = time.perf_counter()
        publish(pub, sent, 100_000, burst, None)
        wait_delivered(listeners, burst * clients, 20)
        elapsed = time.perf_counter() - started
        delivered = sum(len(x.delays) for x in listeners)
        burst_delays = [d for x in listeners for d in x.delays]
        return paced, paced_rows, burst, delivered, elapsed, percentile(burst_delays, 99)
    finally:
        for x in listeners:
            x.close()


def bench_rest(port: int, path: str, seconds: float) -> tuple[float, float, float]:
    latencies: list[list[float]] = [[] for _ in range(REST_THREADS)]
    stop = time.perf_counter() + seconds

    def worker(out: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                out.append(time.perf_counter() - started)
        conn.close()

    threads = [threading.Thread(target=worker, args=(out,)) for out in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [x for out in latencies for x in out]
    return len(flat) / seconds, percentile(flat, 50), percentile(flat, 99)


def run(clients: int = 50, rate: float = 100.0, seconds: float = 3.0) -> list[tuple]:
    """Every figure as a ``(name, value, unit)`` row."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-"))
    endpoints = Endpoints(bus_xsub=f"ipc://{tmp}/xsub", bus_xpub=f"ipc://{tmp}/xpub",
                          state=f"ipc://{tmp}/st", execution=f"ipc://{tmp}/ex",
                          marketdata=f"ipc://{tmp}/md")
    rows: list[tuple[str, str, str]] = []
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        with ExitStack() as stack:
            for svc in (BusService(config("bus", endpoints, tmp)),
                        StateService(config("state", endpoints, tmp / "state-data")),
                        GatewayService(config("gateway", endpoints, tmp / "gw-data"), env={})):
                stack.callback(ServiceThread(svc).close)
                gateway = svc
            pub = Publisher(gateway.ctx, endpoints.bus_xsub)
            stack.callback(pub.close)
            deadline = time.monotonic() + 10
            while not gateway.feeds.replica.synced and time.monotonic() < deadline:
                time.sleep(0.02)
            port = gateway.http.server_port
            paced, (n, p50, p99), burst, delivered, elapsed, burst_p99 = bench_fanout(
                port, pub, clients, rate, seconds)
            rows += [
                (f"gateway WS fan-out, {clients} clients (same process), {rate:.0f} updates/s "
                 "paced: delivered",
                 f"{n / seconds:,.0f}", f"updates/s ({n}/{paced * clients})"),
                (f"gateway WS fan-out, {clients} clients, paced: delay p50", f"{p50 * 1e3:.1f}",
                 "ms"),
                (f"gateway WS fan-out, {clients} clients, paced: delay p99", f"{p99 * 1e3:.1f}",
                 "ms"),
                (f"gateway WS fan-out, {clients} clients, burst of {burst}: delivered",
                 f"{delivered / elapsed:,.0f}", f"updates/s ({delivered}/{burst * clients})"),
                (f"gateway WS fan-out, {clients} clients, burst: delay p99",
                 f"{burst_p99 * 1e3:.1f}", "ms"),
            ]
            for path in ("/api/bots/1", "/api/health"):
                rps, p50, p99 = bench_rest(port, path, seconds)
                rows += [
                    (f"gateway REST GET {path}, {REST_THREADS} keep-alive clients",
                     f"{rps:,.0f}", "requests/s"),
                    (f"gateway REST GET {path}: latency p50", f"{p50 * 1e3:.2f}", "ms"),
                    (f"gateway REST GET {path}: latency p99", f"{p99 * 1e3:.2f}", "ms"),
                ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    for name, value, unit in run(args.clients, args.rate, args.seconds):
        print(f"{name}: {value} {unit}")


if __name__ == "__main__":
    main()
