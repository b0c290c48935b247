"""Fixtures for execution: a real simulator (port 0), a real state service, the service itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import zmq

from services.exchange_sim.market import build_market
from services.exchange_sim.server import SimServer
from services.exchange_sim.venue import AccountConfig, Venue, spec_for
from services.execution.client import ExchangeClient
from services.execution.service import ExecutionService
from services.state.service import StateService
from shared import messages as m
from shared.bus import Publisher, RequestClient, Subscriber
from shared.clock import SYSTEM_CLOCK
from shared.config import Endpoints
from shared.filters import default_symbols
from tests.conftest import RunningService, make_config, wait_until

API_KEY, API_SECRET = "sim-key", "sim-secret"
TIMEOUT_S = 10.0


def wait_for(predicate: Callable[[], object], timeout_s: float = TIMEOUT_S,
             what: str = "condition") -> object:
    """:func:`tests.conftest.wait_until` with this package's longer default timeout."""
    return wait_until(predicate, timeout_s, what)


def set_faults(server: SimServer, **faults) -> dict:
    reply = requests.post(f"{server.base_url}/sim/faults", json=faults, timeout=5)
    reply.raise_for_status()
    return reply.json()


def unknown_status_once(server: SimServer, placed: bool = True, **more) -> dict:
    """The next order placement answers -1007; ``placed`` says whether it was executed."""
    faults = {"unknown_status": 1, **more}
    if "unknown_status_placed" in server.venue.faults.snapshot():
        faults["unknown_status_placed"] = 1 if placed else 0
    elif not placed:
        pytest.skip("this simulator always places a -1007 order")
    return set_faults(server, **faults)


def start_sim(secret: str = API_SECRET, **venue_kwargs) -> SimServer:
    """A venue on a free port with one account and a short random-walk history (fast)."""
    accounts = [AccountConfig(api_key=API_KEY, api_secret=secret)]
    specs = {name: spec_for(f) for name, f in default_symbols().items()}
    market = build_market(SYSTEM_CLOCK, {}, history_s=900, specs=specs)
    server = SimServer(Venue(accounts=accounts, market=market, **venue_kwargs), port=0)
    server.start()
    return server


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = start_sim()
    yield server
    server.stop()


def make_exchange(server: SimServer, **kwargs) -> ExchangeClient:
    return ExchangeClient(API_KEY, API_SECRET, f"{server.base_url}/api", **kwargs)


@pytest.fixture
def exchange(sim: SimServer) -> Iterator[ExchangeClient]:
    client = make_exchange(sim)
    yield client
    client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def start_state(endpoints: Endpoints, data_dir: Path) -> RunningService:
    config = make_config("state", endpoints, data_dir=data_dir / "state",
                         heartbeat_interval_s=0.5)
    return RunningService(StateService(config))


@pytest.fixture
def state(bus, endpoints: Endpoints, data_dir: Path) -> Iterator[RunningService]:
    running = start_state(endpoints, data_dir)
    yield running
    running.close()


def exec_config(endpoints: Endpoints, sim: SimServer, data_dir: Path, **overrides):
    values = {"sim_port": sim.port, "data_dir": data_dir / "execution",
              "heartbeat_interval_s": 0.5, "sim_api_key": API_KEY, **overrides}
    return make_config("execution", endpoints, **values)


def start_execution(endpoints: Endpoints, sim: SimServer, data_dir: Path,
                    **overrides) -> RunningService:
    return RunningService(ExecutionService(exec_config(endpoints, sim, data_dir, **overrides)))


def synced(running: RunningService) -> bool:
    return running.service.last_sync_ts > 0 and running.service.stream.connected


@pytest.fixture
def execution(state, endpoints, sim, data_dir) -> Iterator[RunningService]:
    running = start_execution(endpoints, sim, data_dir)
    wait_for(lambda: synced(running), what="execution's first reconciliation")
    yield running
    running.close()


class Caller:
    """A REQ client to one endpoint that returns Replies (timeouts generous for 2 cores)."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.client = RequestClient(ctx, endpoint, timeout_ms=8000, retries=1)

    def __call__(self, msg: m.Message) -> m.Reply:
        return self.client.request(msg)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def ask(ctx, endpoints) -> Iterator[Caller]:
    caller = Caller(ctx, endpoints.execution)
    yield caller
    caller.close()


@pytest.fixture
def ask_state(ctx, endpoints) -> Iterator[Caller]:
    caller = Caller(ctx, endpoints.state)
    yield caller
    caller.close()


@pytest.fixture
def lease(ask_state) -> int:
    """Bot 1's lease epoch, claimed by a worker called w1."""
    reply = ask_state(m.ClaimLease(bot_id=1, owner="w1", ttl_s=60))
    assert reply.ok, reply
    return reply.result["value"]["epoch"]


class Listener:
    """A subscriber whose subscription has reached the bus, collecting messages."""

    def __init__(self, ctx: zmq.Context, endpoints: Endpoints, prefixes: list[str]) -> None:
        self.sub = Subscriber(ctx, endpoints.bus_xpub, [*prefixes, "probe."])
        pub = Publisher(ctx, endpoints.bus_xsub)
        deadline = time.monotonic() + 5
        while self.sub.recv(timeout_ms=20) is None:
            assert time.monotonic() < deadline, "subscription never reached the bus"
            pub.publish("probe.x", m.Ping())
        pub.close()
        self.sub.unsubscribe("probe.")
        self.seen: list[tuple[str, m.Message]] = []

    def until(self, predicate: Callable[[str, m.Message], bool],
              timeout_s: float = TIMEOUT_S) -> m.Message:
        for topic, msg in self.seen:
            if predicate(topic, msg):
                return msg
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.sub.recv(timeout_ms=50)
            if got is None:
                continue
            self.seen.append(got)
            if predicate(*got):
                return got[1]
        raise AssertionError(f"no matching message; saw {[t for t, _ in self.seen][-20:]}")

    def close(self) -> None:
        self.sub.close()


@pytest.fixture
def listen(ctx, endpoints, bus) -> Iterator[Callable[[list[str]], Listener]]:
    made: list[Listener] = []

    def make(prefixes: list[str]) -> Listener:
        listener = Listener(ctx, endpoints, prefixes)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


def intent(intent_id: str, epoch: int, **fields) -> m.SubmitIntent:
    values = {"bot_id": "1", "symbol": "BTCUSDT", "side": "BUY", "order_type": "MARKET",
              **fields}
    return m.SubmitIntent(intent_id=intent_id, epoch=epoch, **values)
