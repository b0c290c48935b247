"""Fixtures for the strategy worker: a real state service, real peers, workers, a bus tap."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from services.state.service import StateService
from services.strategy.service import StrategyService
from services.strategy.settings import StrategySettings
from shared import messages as m
from shared.bus import Publisher, RequestClient, Subscriber
from tests.conftest import RunningService, make_config
from tests.services.strategy.peers import ExecutionPeer, MarketdataPeer

FAST = StrategySettings(lease_ttl_s=2.0, claim_grace_s=0.3, round_every_s=0.05,
                        state_timeout_s=0.3, history_timeout_s=2.0, intent_timeout_s=0.3,
                        stream_ttl_s=3.0, error_retry_s=0.5, rebalance_every_s=0.5)




def start_state(endpoints, data_dir) -> RunningService:
    config = make_config("state", endpoints, data_dir=data_dir, heartbeat_interval_s=0.2)
    return RunningService(StateService(config))


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def state(bus, endpoints, data_dir) -> Iterator[RunningService]:
    running = start_state(endpoints, data_dir)
    yield running
    running.close()


@pytest.fixture
def client(ctx, endpoints, state) -> Iterator[RequestClient]:
    request_client = RequestClient(ctx, endpoints.state, timeout_ms=3000, retries=1)
    yield request_client
    request_client.close()


def call(client: RequestClient, request: m.Message):
    reply = client.request(request)
    assert reply.ok, (reply.error_code, reply.error_message, reply.fields)
    return reply.result


@pytest.fixture
def execution(ctx, endpoints, state) -> Iterator[ExecutionPeer]:
    peer = ExecutionPeer(ctx, endpoints.execution, endpoints.state).start()
    yield peer
    peer.close()


@pytest.fixture
def marketdata(ctx, endpoints) -> Iterator[MarketdataPeer]:
    peer = MarketdataPeer(ctx, endpoints.marketdata).start()
    yield peer
    peer.close()


@pytest.fixture
def start_worker(endpoints, bus) -> Iterator[Callable[..., StrategyService]]:
    running: list[RunningService] = []

    def start(**settings) -> StrategyService:
        config = make_config("strategy", endpoints, heartbeat_interval_s=0.2,
                             health_timeout_s=1.0)
        service = StrategyService(config, settings=StrategySettings(
            **{**FAST.__dict__, **settings}))
        service.instance += f"-{len(running)}"  # in one process: a lease owner per worker
        running.append(RunningService(service))
        return service

    yield start
    for r in running:
        r.close()


@pytest.fixture
def bot_statuses(ctx, endpoints, bus) -> Iterator[Callable[[int], list[str]]]:
    """``statuses(bot_id, until)``: every status the bot took, in order, as state published
    them, once the last ones are ``until``."""
    pub = Publisher(ctx, endpoints.bus_xsub)
    sub = Subscriber(ctx, endpoints.bus_xpub, ["state."])
    deadline = time.monotonic() + 5
    while sub.recv(timeout_ms=20) is None:  # the slow-joiner handshake, without sleeps
        assert time.monotonic() < deadline, "subscription never reached the bus"
        pub.publish("state.probe", m.StateChanged(seq=-1, kind="probe", payload={}))
    seen: dict[int, list[str]] = {}

    def statuses(bot_id: int, until: list[str]) -> list[str]:
        """Waits (5 s at most) until the history ends with ``until``, then returns it all."""
        deadline = time.monotonic() + 5
        while seen.get(bot_id, [])[-len(until):] != until and time.monotonic() < deadline:
            item = sub.recv(timeout_ms=50)
            change = item[1] if item is not None else None
            if isinstance(change, m.StateChanged) and change.kind == "bot":
                history = seen.setdefault(change.payload["id"], [])
                if not history or history[-1] != change.payload["status"]:
                    history.append(change.payload["status"])
        return list(seen.get(bot_id, []))

    yield statuses
    sub.close()
    pub.close()


def create_bot(client: RequestClient, strategy: str = "SWING", symbol: str = "BTCUSDT",
               timeframe: str = "1m", params: dict | None = None, run: bool = True) -> int:
    bot = call(client, m.CreateBot(strategy=strategy, symbol=symbol, timeframe=timeframe,
                                   params=params or {}))["value"]
    if run:
        call(client, m.SetDesiredStatus(bot_id=bot["id"], desired_status="RUNNING"))
    return bot["id"]


def get_bot(client: RequestClient, bot_id: int) -> dict:
    return call(client, m.GetBot(bot_id=bot_id))


def lease_of(client: RequestClient, bot_id: int) -> dict | None:
    snapshot = call(client, m.GetSnapshot(recent=1))
    return next((lease for lease in snapshot["leases"] if lease["bot_id"] == bot_id), None)
