"""The Clone-pattern replica against a real state service: late joiners and lost updates
converge to the store's own snapshot."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from decimal import Decimal

import pytest
import zmq

from services.state.service import StateService
from shared import messages as m
from shared.bus import RequestClient
from shared.codec import decode
from shared.errors import CodecError
from shared.replica import Replica
from tests.conftest import RunningService, make_config

WAIT_S = 5.0


class LossyBus:
    """Forwards the bus's pub/sub to its own endpoint, dropping chosen ``StateChanged`` seqs.

    A replica pointed at ``endpoint`` sees exactly what a subscriber behind a lossy network
    would: the same stream, with holes.
    """

    def __init__(self, ctx: zmq.Context, upstream: str, endpoint: str) -> None:
        self.endpoint = endpoint
        self.drop: set[int] = set()
        self.dropped: list[int] = []
        self._ctx = ctx
        self._upstream = upstream
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_S)

    def _run(self) -> None:
        sub = self._ctx.socket(zmq.SUB)
        pub = self._ctx.socket(zmq.PUB)
        for sock in (sub, pub):
            sock.setsockopt(zmq.LINGER, 0)
        sub.connect(self._upstream)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        pub.bind(self.endpoint)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if sub.poll(50, zmq.POLLIN):
                    frames = sub.recv_multipart()
                    if not self._dropped(frames[-1]):
                        pub.send_multipart(frames)
        finally:
            sub.close()
            pub.close()

    def _dropped(self, body: bytes) -> bool:
        try:
            msg = decode(body)
        except CodecError:
            return False
        if isinstance(msg, m.StateChanged) and msg.seq in self.drop:
            self.dropped.append(msg.seq)
            return True
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@pytest.fixture
def state(bus, endpoints, tmp_path):
    config = make_config("state", endpoints, data_dir=tmp_path / "data",
                         heartbeat_interval_s=0.2)
    running = RunningService(StateService(config))
    yield running
    running.close()


@pytest.fixture
def client(ctx, endpoints, state):
    request_client = RequestClient(ctx, endpoints.state, timeout_ms=3000, retries=1)
    yield request_client
    request_client.close()


def ok(client: RequestClient, request: m.Message):
    reply = client.request(request)
    assert reply.ok, (reply.error_code, reply.error_message, reply.fields)
    return reply.result


def make_history(client: RequestClient, first_trade_id: int = 1) -> None:
    """A bit of everything the snapshot carries: bots, params, leases, orders, fills, trades,
    balances and alerts."""
    bot_id = ok(client, m.CreateBot(strategy="SCALPING", symbol="ETHUSDT", timeframe="1m"))[
        "value"]["id"]
    ok(client, m.SetParams(bot_id=1, params={"ema_fast": 7}))
    ok(client, m.ClaimLease(bot_id=bot_id, owner="w1", ttl_s=30))
    ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))
    buy, sell = f"b{first_trade_id}", f"s{first_trade_id}"
    ok(client, m.RecordOrderEvent(client_order_id=buy, status="NEW", bot_id=1, symbol="BTCUSDT",
                                  side="BUY", order_type="MARKET", qty=Decimal("2")))
    ok(client, m.RecordFill(symbol="BTCUSDT", trade_id=first_trade_id, side="BUY",
                            price=Decimal("100"), qty=Decimal("2"), client_order_id=buy))
    ok(client, m.RecordOrderEvent(client_order_id=sell, status="NEW", bot_id=1,
                                  symbol="BTCUSDT", side="SELL", order_type="LIMIT",
                                  price=Decimal("120"), qty=Decimal("2")))
    ok(client, m.RecordFill(symbol="BTCUSDT", trade_id=first_trade_id + 1, side="SELL",
                            price=Decimal("120"), qty=Decimal("2"), client_order_id=sell))
    ok(client, m.RecordBalances(free={"USDT": Decimal("880"), "BTC": Decimal("1")}))
    ok(client, m.RecordAlert(level="WARNING", service="execution", message="slow venue"))
    ok(client, m.DeleteBot(bot_id=bot_id))


def converged(replica: Replica, client: RequestClient) -> bool:
    """Wait until the replica holds exactly what the store's snapshot says now."""
    target = ok(client, m.GetSnapshot())
    replica.wait_until(lambda r: r.seq >= target["seq"], WAIT_S)
    assert replica.state() == target
    return True


def test_a_replica_that_joins_late_converges(ctx, endpoints, client):
    make_history(client)

    with Replica(ctx, endpoints) as replica:
        assert replica.wait_synced(WAIT_S)
        make_history(client, first_trade_id=10)

        assert converged(replica, client)
        assert replica.resyncs == 1
        assert [o["client_order_id"] for o in replica.open_orders(bot_id=1)] == \
            ["b1", "s1", "b10", "s10"]
        assert replica.params(1)["params"]["ema_fast"] == 7
        assert replica.balances()["BTC"]["free"] == "1"


def test_each_applied_change_reaches_the_callback_once_in_order(ctx, endpoints, client):
    seen: list[m.StateChanged] = []
    with Replica(ctx, endpoints, on_change=seen.append) as replica:
        assert replica.wait_synced(WAIT_S)
        start = replica.seq

        make_history(client)
        converged(replica, client)

    assert [c.seq for c in seen] == list(range(start + 1, replica.seq + 1))
    assert {"bot", "params", "lease", "order", "fill", "position", "trade", "balance",
            "alert", "bot_deleted"} <= {c.kind for c in seen}


def lossy_replica(ctx, endpoints, ipc_dir) -> tuple[LossyBus, Replica]:
    lossy = LossyBus(ctx, endpoints.bus_xpub, f"ipc://{ipc_dir}/lossy")
    replica = Replica(ctx, replace(endpoints, bus_xpub=lossy.endpoint)).start()
    return lossy, replica


def test_a_replica_that_misses_updates_resnapshots_and_converges(ctx, endpoints, ipc_dir,
                                                                 client):
    lossy, replica = lossy_replica(ctx, endpoints, ipc_dir)
    try:
        assert replica.wait_synced(WAIT_S)
        ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))  # the pipe works
        assert replica.wait_until(lambda r: r.bot(1)["desired_status"] == "RUNNING", WAIT_S)
        seq = replica.seq
        lossy.drop = {seq + 2, seq + 3, seq + 7}

        make_history(client)

        assert converged(replica, client)
        assert lossy.dropped == [seq + 2, seq + 3, seq + 7]
        assert replica.gaps >= 1 and replica.resyncs >= 2
    finally:
        replica.close()
        lossy.close()


def test_a_lost_last_update_is_noticed_from_the_state_heartbeat(ctx, endpoints, ipc_dir,
                                                                client):
    lossy, replica = lossy_replica(ctx, endpoints, ipc_dir)
    try:
        assert replica.wait_synced(WAIT_S)
        lossy.drop = {replica.seq + 1}

        ok(client, m.SetDesiredStatus(bot_id=1, desired_status="RUNNING"))

        assert replica.wait_until(lambda r: r.bot(1)["desired_status"] == "RUNNING", WAIT_S)
        assert lossy.dropped and replica.resyncs == 2
        assert converged(replica, client)
    finally:
        replica.close()
        lossy.close()


def test_a_published_gap_triggers_a_new_snapshot(ctx, endpoints, client):
    from shared.bus import Publisher

    with Replica(ctx, endpoints) as replica:
        assert replica.wait_synced(WAIT_S)
        pub = Publisher(ctx, endpoints.bus_xsub)
        try:
            # publish until the replica hears it: the first probes may meet a slow joiner
            deadline = time.monotonic() + WAIT_S
            while replica.gaps == 0 and time.monotonic() < deadline:
                future = m.StateChanged(seq=replica.seq + 5, kind="bot", payload={})
                pub.publish("state.bot", future)
                replica.wait_until(lambda r: r.gaps > 0, 0.05)
        finally:
            pub.close()

        assert replica.wait_until(lambda r: r.resyncs == 2, WAIT_S)
        assert converged(replica, client)


def test_a_replica_waits_for_a_late_state_service_and_never_hangs(ctx, endpoints, bus, tmp_path):
    replica = Replica(ctx, endpoints, timeout_ms=200).start()
    try:
        assert not replica.wait_synced(0.3)
        assert replica.state() == {} and replica.seq == -1

        config = make_config("state", endpoints, data_dir=tmp_path / "data")
        running = RunningService(StateService(config))
        try:
            assert replica.wait_synced(WAIT_S)
            assert [b["id"] for b in replica.bots()] == [1]
        finally:
            running.close()
    finally:
        started = time.monotonic()
        replica.close()
    assert time.monotonic() - started < 2.0


def test_a_replica_follows_a_restarted_state_service(ctx, endpoints, bus, tmp_path):
    config = make_config("state", endpoints, data_dir=tmp_path / "data")
    client = RequestClient(ctx, endpoints.state, timeout_ms=3000, retries=1)
    running = RunningService(StateService(config))
    replica = Replica(ctx, endpoints, timeout_ms=300).start()
    try:
        assert replica.wait_synced(WAIT_S)
        running.close()
        running = RunningService(StateService(config))

        make_history(client)

        assert converged(replica, client)
    finally:
        replica.close()
        running.close()
        client.close()
