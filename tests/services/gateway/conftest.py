"""A whole gateway over real sockets: bus, state service, fake execution and market data.

The gateway is the real ``GatewayService`` (HTTP server on port 0, bus feeds, replica);
tests call it through ``app.test_client()`` or a real HTTP/WebSocket client. Execution and
market data are small reply servers that answer like the real ones (fakes, not mocks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import zmq

from services.gateway.service import GatewayService
from services.state.service import StateService
from shared import messages as m
from shared.bus import Publisher, ReplyServer, RequestClient
from shared.config import Endpoints
from shared.errors import ValidationError
from tests.conftest import RunningService, make_config
from tests.conftest import wait_until as wait_for

CANDLE_MS = 60_000


class FakePeer:
    """A reply server on a thread answering with ``handlers[type(request)]``."""

    def __init__(self, ctx: zmq.Context, endpoint: str, name: str,
                 handlers: dict[type, Callable]) -> None:
        self.name = name
        self.handlers = handlers
        self.requests: list[m.Message] = []
        self._server = ReplyServer(ctx, endpoint, self._handle)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _handle(self, request: m.Message):
        self.requests.append(request)
        handler = self.handlers.get(type(request))
        if handler is None:
            raise ValidationError({"type": f"{self.name} does not handle {request.type}"})
        return handler(request)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._server.serve(50)
        self._server.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def fake_execution(ctx, endpoint) -> FakePeer:
    return FakePeer(ctx, endpoint, "execution", {
        m.CancelOrder: lambda r: {"status": "canceled", "client_order_id": r.client_order_id},
        m.CloseBotPosition: lambda r: {"status": "flat", "bot_id": r.bot_id, "cancelled": [],
                                       "orders": []},
        m.SetKillSwitch: lambda r: {"kill_switch": r.enabled},
        m.GetExecutionStatus: lambda r: {"kill_switch": False, "halted": False,
                                         "last_sync_ts": 1_700_000_000.0},
    })


def candles(r: m.GetCandles) -> dict:
    start = 1_700_000_000_000
    rows = [m.Candle(symbol=r.symbol, interval=r.interval, open_time_ms=start + i * CANDLE_MS,
                     close_time_ms=start + (i + 1) * CANDLE_MS - 1, open=100.0 + i,
                     high=101.0 + i, low=99.0 + i, close=100.5 + i, volume=1.0,
                     closed=True).to_dict() for i in range(min(r.limit, 5))]
    return {"symbol": r.symbol, "interval": r.interval, "candles": rows}


def fake_marketdata(ctx, endpoint) -> FakePeer:
    return FakePeer(ctx, endpoint, "marketdata", {
        m.GetCandles: candles,
        m.SetMarketStreams: lambda r: {"subscriber": r.subscriber, "topics": list(r.topics),
                                       "active": len(r.topics), "ttl_s": r.ttl_s},
    })


@dataclass
class Stack:
    running: RunningService
    gateway: GatewayService
    state_client: RequestClient
    publisher: Publisher
    execution: FakePeer
    marketdata: FakePeer
    endpoints: Endpoints

    @property
    def app(self):
        return self.gateway.app

    @property
    def live(self):
        return self.gateway.live

    @property
    def port(self) -> int:
        return self.gateway.http.server_port

    def client(self):
        return self.app.test_client()

    def state(self, msg: m.Message):
        reply = self.state_client.request(msg)
        assert reply.ok, (reply.error_code, reply.error_message, reply.fields)
        return reply.result




def start_gateway(endpoints, tmp_path, port: int = 0, **app_env) -> RunningService:
    config = make_config("gateway", endpoints, gateway_port=port, data_dir=tmp_path / "gw",
                         dashboard_password=app_env.pop("DASHBOARD_PASSWORD", ""))
    return RunningService(GatewayService(config, env=app_env))


@contextmanager
def running_stack(ctx, endpoints, tmp_path, **app_env) -> Iterator[Stack]:
    """The whole stack around a gateway started with ``app_env`` (e.g. a password)."""
    state = RunningService(StateService(make_config(
        "state", endpoints, data_dir=tmp_path / "state", heartbeat_interval_s=0.2)))
    execution = fake_execution(ctx, endpoints.execution)
    marketdata = fake_marketdata(ctx, endpoints.marketdata)
    gateway = start_gateway(endpoints, tmp_path, **app_env)
    gateway.service.backends.pools["state"].timeout_ms = 10_000  # a busy shared test machine
    client = RequestClient(ctx, endpoints.state, timeout_ms=3000, retries=1)
    publisher = Publisher(ctx, endpoints.bus_xsub)
    result = Stack(gateway, gateway.service, client, publisher, execution, marketdata, endpoints)
    wait_for(lambda: gateway.service.feeds.replica.synced, what="gateway replica in sync")
    try:
        yield result
    finally:
        publisher.close()
        client.close()
        result.running.close()
        marketdata.close()
        execution.close()
        state.close()


@pytest.fixture
def stack(bus, ctx, endpoints, tmp_path) -> Iterator[Stack]:
    with running_stack(ctx, endpoints, tmp_path) as result:
        yield result
