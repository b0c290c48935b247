"""Fixtures for the market data service: the simulator, a relay, the service, a bus tap."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from services.exchange_sim.market import FIRST_UPDATE_ID
from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import Venue
from services.marketdata.service import MarketdataService
from services.marketdata.settings import MarketdataSettings
from shared.bus import RequestClient, Subscriber
from shared.messages import DepthBook
from tests.conftest import RunningService, make_config
from tests.services.marketdata.relay import StreamRelay

FAST = MarketdataSettings(silence_s=3.0, backoff_min_s=0.2, backoff_max_s=2.0,
                          resubscribe_delay_s=0.05, rest_timeout_s=5.0)


@pytest.fixture(scope="module")
def sim_server() -> Iterator[SimServer]:
    """One simulator (random-walk market) per test module: starting one takes a while."""
    server = SimServer(Venue(replay=False), port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sim(sim_server: SimServer) -> Iterator[SimServer]:
    """The module's simulator, its faults cleared after each test."""
    yield sim_server
    req = urllib.request.Request(f"{sim_server.base_url}/sim/faults", method="DELETE")
    urllib.request.urlopen(req, timeout=5).close()


@pytest.fixture
def relay(sim: SimServer) -> Iterator[StreamRelay]:
    r = StreamRelay(sim.ws_url)
    r.start()
    yield r
    r.stop()


def set_faults(sim: SimServer, **faults) -> dict:
    req = urllib.request.Request(f"{sim.base_url}/sim/faults", data=json.dumps(faults).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


@pytest.fixture
def start_md(bus, endpoints) -> Iterator[Callable[..., MarketdataService]]:
    """Start the service against a simulator (or a relay for the streams); stopped after."""
    running: list[RunningService] = []

    def start(sim: SimServer | None = None, sim_port: int = 1,
              **settings) -> MarketdataService:
        config = make_config("marketdata", endpoints, mode="sim",
                             sim_port=sim.port if sim is not None else sim_port)
        values = {**FAST.__dict__, **settings}
        service = MarketdataService(config, settings=MarketdataSettings(**values))
        running.append(RunningService(service))
        return service

    yield start
    for r in running:
        r.close()


@pytest.fixture
def md_client(ctx, endpoints) -> Iterator[RequestClient]:
    client = RequestClient(ctx, endpoints.marketdata, timeout_ms=10_000, retries=1)
    yield client
    client.close()


class Tap:
    """Collects (topic, message) from the bus on a thread; tests wait on predicates."""

    def __init__(self, ctx, endpoint: str, prefixes: list[str]) -> None:
        self.sub = Subscriber(ctx, endpoint, prefixes)
        self.received: list[tuple[str, object]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self.sub.recv(timeout_ms=50)
            if got is not None:
                with self._cond:
                    self.received.append(got)
                    self._cond.notify_all()
        self.sub.close()

    def messages(self, topic: str | None = None, kind: type | None = None) -> list:
        with self._cond:
            items = list(self.received)
        return [m for t, m in items
                if (topic is None or t == topic) and (kind is None or isinstance(m, kind))]

    def wait_for(self, predicate: Callable[[], object], timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            with self._cond:
                self._cond.wait(min(left, 0.1))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def tap(ctx, endpoints, bus) -> Iterator[Tap]:
    t = Tap(ctx, endpoints.bus_xpub, ["md.", "health.marketdata"])
    yield t
    t.close()


def assert_matches_venue(sim, depth: DepthBook) -> None:
    """The published book equals the venue's own book at the same update id."""
    venue_book = sim.venue.market.book("BTCUSDT", depth.last_update_id - FIRST_UPDATE_ID)
    assert venue_book.update_id == depth.last_update_id
    assert depth.bids == tuple((float(p), float(q)) for p, q in venue_book.bids[:20])
    assert depth.asks == tuple((float(p), float(q)) for p, q in venue_book.asks[:20])
