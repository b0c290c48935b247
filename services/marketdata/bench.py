"""Benchmark of market data throughput (not a test): how many book updates per second flow

1. into the service from one websocket, normalised and published (python-binance's socket,
   the supervisor's dispatch, msgpack, ZeroMQ), and
2. through the bus into one consumer that keeps only the latest book per symbol, as a strategy
   worker does, checking that the latest value always arrives: decoding every message, and
   draining the socket then decoding only the newest frame per topic (conflation).

Usage: python -m services.marketdata.bench [--updates N]. ``run()`` returns
``(name, value, unit)`` rows for ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import threading
import time

import zmq
from aiohttp import web

from shared.bus import Publisher, Subscriber
from shared.clock import SYSTEM_CLOCK
from shared.codec import decode, encode
from shared.config import Endpoints, load_config
from shared.messages import BookTicker

from .settings import MarketdataSettings
from .streams import StreamSupervisor
from .subscriptions import StreamKey

SYMBOLS = [f"SYM{i}USDT" for i in range(10)]


class BlastServer:
    """A WebSocket server that sends ``count`` bookTicker frames as fast as it can."""

    def __init__(self, count: int) -> None:
        self.frames = [json.dumps({"stream": "btcusdt@bookTicker", "data": {
            "u": i, "s": "BTCUSDT", "b": f"{60000 + i % 7:.2f}", "B": "1.00000000",
            "a": f"{60001 + i % 7:.2f}", "A": "2.00000000"}}) for i in range(1, count + 1)]
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/stream", self._blast)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()

    async def _blast(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in self.frames:
            await ws.send_str(frame)
        async for _ in ws:
            pass
        return ws

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def bench_ingest(count: int) -> float:
    """Book updates per second from one websocket to published md.book messages."""
    server = BlastServer(count)
    server.start()
    done = threading.Event()
    stamps: list[float] = []
    ctx = zmq.Context()
    tmp = tempfile.mkdtemp(prefix="mdb-")
    publisher = Publisher(ctx, f"ipc://{tmp}/nobody")  # nobody listens: the cost of sending

    def publish(topic: str, msg) -> None:
        publisher.publish(topic, msg)
        if not stamps:
            stamps.append(time.perf_counter())
        if isinstance(msg, BookTicker) and msg.update_id == count:
            stamps.append(time.perf_counter())
            done.set()

    settings = MarketdataSettings(stream_url=f"ws://127.0.0.1:{server.port}/",
                                  rest_url="http://127.0.0.1:1/api", queue_size=count + 10,
                                  silence_s=30)
    supervisor = StreamSupervisor(settings, settings.rest_url, settings.stream_url, publish,
                                  SYSTEM_CLOCK)
    supervisor.start()
    supervisor.set_wanted(frozenset({StreamKey("book", "BTCUSDT")}))
    try:
        if not done.wait(120):
            raise RuntimeError("the last book update never came")
        return (count - 1) / (stamps[1] - stamps[0])
    finally:
        supervisor.stop()
        server.stop()
        publisher.close()
        ctx.destroy(linger=0)
        shutil.rmtree(tmp, ignore_errors=True)


def _consume_each(sub: Subscriber, latest: dict[str, int]) -> int:
    """Decode every message, keep the newest book per symbol."""
    received = 0
    while True:
        got = sub.recv(timeout_ms=500)
        if got is None:
            return received
        if got[1].symbol != "PROBE":  # a late probe from the warm-up
            latest[got[1].symbol] = got[1].update_id
            received += 1


def _consume_conflated(sub: Subscriber, latest: dict[str, int]) -> int:
    """Drain whatever is queued, then decode only the newest frame of each topic."""
    sock, received = sub.socket, 0
    while sock.poll(500, zmq.POLLIN):
        newest: dict[bytes, bytes] = {}
        for _ in range(10_000):
            try:
                topic, body = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            if topic != b"md.book.PROBE":
                newest[topic] = body
                received += 1
        for body in newest.values():
            msg = decode(body)
            latest[msg.symbol] = msg.update_id
    return received


def bench_into_worker(count: int, conflate: bool) -> tuple[float, int, bool]:
    """(updates/s, received, latest kept for every symbol) through the bus into one consumer."""
    from services.bus.service import BusService

    tmp = tempfile.mkdtemp(prefix="mdb-")
    endpoints = Endpoints(bus_xsub=f"ipc://{tmp}/xsub", bus_xpub=f"ipc://{tmp}/xpub")
    config = load_config("bus", env={})
    bus = BusService(type(config)(**{**config.__dict__, "endpoints": endpoints}))
    bus.start()
    bus_thread = threading.Thread(target=bus.run, daemon=True)
    bus_thread.start()
    ctx = zmq.Context()
    sub = Subscriber(ctx, endpoints.bus_xpub, ["md.book."])
    pub = Publisher(ctx, endpoints.bus_xsub)
    try:
        probe = BookTicker("PROBE", 1, 1, 2, 1, 0, 0)
        while sub.recv(timeout_ms=50) is None:  # the subscription has reached the publisher
            pub.publish("md.book.PROBE", probe)
        while sub.recv(timeout_ms=50) is not None:
            pass
        latest: dict[str, int] = {}
        received = [0]
        consume = _consume_conflated if conflate else _consume_each
        frames = [(f"md.book.{SYMBOLS[i % len(SYMBOLS)]}".encode(),
                   encode(BookTicker(SYMBOLS[i % len(SYMBOLS)], 100.0, 1.0, 100.1, 1.0, i, i)))
                  for i in range(1, count + 1)]  # encoded beforehand: measure the consumer
        raw = ctx.socket(zmq.PUB)
        raw.setsockopt(zmq.SNDHWM, 0)
        raw.connect(endpoints.bus_xsub)
        time.sleep(0.2)  # a fresh PUB socket: let it join the proxy before sending
        consumer = threading.Thread(target=lambda: received.append(consume(sub, latest)))
        consumer.start()
        started = time.perf_counter()
        for frame in frames:
            raw.send_multipart(frame)
        consumer.join()
        raw.close(linger=0)
        elapsed = time.perf_counter() - started - 0.5  # minus the consumer's idle timeout
        last = {SYMBOLS[i % len(SYMBOLS)]: i for i in range(count - len(SYMBOLS) + 1, count + 1)}
        return received[-1] / elapsed, received[-1], latest == last
    finally:
        sub.close()
        pub.close()
        ctx.destroy(linger=0)
        bus.request_stop()
        bus_thread.join(2)
        bus.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run(updates: int = 100_000) -> list[tuple[str, str, str]]:
    ingest = bench_ingest(updates // 2)
    rows = [("marketdata: bookTicker frames in from one websocket, normalised and published",
             f"{ingest:,.0f}", "updates/s")]
    for conflate, how in ((False, "decoding each"), (True, "decoding the newest per drain")):
        rate, received, latest_ok = bench_into_worker(updates * 2, conflate)
        rows += [
            (f"book updates through the bus into one worker, {how}", f"{rate:,.0f}",
             "updates/s"),
            (f"book updates into one worker, {how}: received / latest kept for every symbol",
             f"{received:,} of {updates * 2:,} / {'yes' if latest_ok else 'NO'}", "msgs"),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100_000)
    args = parser.parse_args()
    for row in run(args.updates):
        print(" | ".join(row))


if __name__ == "__main__":
    main()
