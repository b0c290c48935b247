"""Pub/sub through the real proxy and request/reply over real sockets (ipc and tcp)."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from shared.bus import Publisher, ReplyServer, RequestClient, Subscriber
from shared.errors import RemoteError, RequestTimeout, ValidationError
from shared.messages import BookTicker, Ping, Reply


def wait_for_subscription(pub: Publisher, sub: Subscriber, topic: str, probe) -> None:
    """Publish probes until the subscriber hears one: the slow-joiner handshake, no sleeps."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pub.publish(topic, probe)
        if sub.recv(timeout_ms=50) is not None:
            return
    raise AssertionError("subscription never reached the publisher")


def tick(i: int) -> BookTicker:
    return BookTicker(symbol="BTCUSDT", bid=100.0 + i, bid_qty=1.0, ask=101.0 + i, ask_qty=1.0,
                      ts_ms=i)


def drain(sub: Subscriber, timeout_ms: int = 200) -> list:
    got = []
    while (item := sub.recv(timeout_ms)) is not None:
        got.append(item)
    return got


def test_pub_sub_through_the_proxy_delivers_in_order(bus, ctx, endpoints):
    pub = Publisher(ctx, endpoints.bus_xsub)
    sub = Subscriber(ctx, endpoints.bus_xpub, ["md.book."])
    wait_for_subscription(pub, sub, "md.book.PROBE", tick(-1))
    drain(sub, 50)

    for i in range(1000):
        pub.publish("md.book.BTCUSDT", tick(i))
    got = drain(sub)

    assert [m.ts_ms for _, m in got] == list(range(1000))
    assert {t for t, _ in got} == {"md.book.BTCUSDT"}
    pub.close()
    sub.close()


def test_subscriber_gets_only_its_prefixes(bus, ctx, endpoints):
    pub = Publisher(ctx, endpoints.bus_xsub)
    sub = Subscriber(ctx, endpoints.bus_xpub, ["md.book.ETH"])
    wait_for_subscription(pub, sub, "md.book.ETHUSDT", tick(-1))
    drain(sub, 50)

    pub.publish("md.book.BTCUSDT", tick(1))
    pub.publish("md.kline.ETHUSDT.1m", tick(2))
    pub.publish("md.book.ETHUSDT", tick(3))

    assert [(t, m.ts_ms) for t, m in drain(sub)] == [("md.book.ETHUSDT", 3)]
    pub.close()
    sub.close()


def echo(request):
    return {"nonce": request.nonce}


class ThreadedServer:
    """A ReplyServer served on a thread; ``delay_s`` makes each answer slow."""

    def __init__(self, ctx, endpoint, handler=echo):
        self.server = ReplyServer(ctx, endpoint, handler)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.is_set():
            self.server.serve(50)
        self.server.close()

    def close(self):
        self.stop_event.set()
        self.thread.join(2)


def test_serve_with_a_limit_returns_to_its_loop_under_a_steady_flow(ctx, ipc_dir):
    server = ReplyServer(ctx, f"ipc://{ipc_dir}/limit", echo)
    clients = [RequestClient(ctx, server.endpoint, timeout_ms=2000, retries=1)
               for _ in range(6)]
    replies = []
    threads = [threading.Thread(target=lambda c=c, i=i: replies.append(
        c.call(Ping(nonce=str(i))))) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # all six requests are waiting

    first = server.serve(1000, limit=4)
    rest = server.serve(1000, limit=4)

    for thread in threads:
        thread.join(2)
    assert (first, rest) == (4, 2)
    assert sorted(r["nonce"] for r in replies) == [str(i) for i in range(6)]
    for client in clients:
        client.close()
    server.close()


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_request_reply_round_trip(ctx, ipc_dir, transport):
    bind = f"ipc://{ipc_dir}/rr" if transport == "ipc" else "tcp://127.0.0.1:*"
    server = ThreadedServer(ctx, bind)
    client = RequestClient(ctx, server.server.endpoint, timeout_ms=1000, retries=2)

    assert client.call(Ping(nonce="n1")) == {"nonce": "n1"}
    assert client.call(Ping(nonce="n2")) == {"nonce": "n2"}
    client.close()
    server.close()


def test_no_server_means_a_timeout_not_a_hang(ctx, ipc_dir):
    client = RequestClient(ctx, f"ipc://{ipc_dir}/nobody", timeout_ms=100, retries=3)
    started = time.monotonic()

    with pytest.raises(RequestTimeout, match="after 3 attempts"):
        client.request(Ping())

    assert time.monotonic() - started < 1.0
    client.close()


def test_request_survives_server_restart_mid_request(ctx, ipc_dir):
    """The first server dies holding the request; a new one answers the retry."""
    endpoint = f"ipc://{ipc_dir}/restart"
    received = threading.Event()

    def swallow(_request):
        received.set()
        raise SystemExit  # never reached as a reply: the server is killed below

    dying = ctx.socket(zmq.ROUTER)
    dying.setsockopt(zmq.LINGER, 0)
    dying.bind(endpoint)
    client = RequestClient(ctx, endpoint, timeout_ms=300, retries=5)
    result = {}
    caller = threading.Thread(target=lambda: result.update(r=client.request(Ping(nonce="x"))))
    caller.start()
    assert dying.poll(2000), "request never reached the first server"
    dying.recv_multipart()  # take the request, then die without answering
    dying.close()
    replacement = ThreadedServer(ctx, endpoint)

    caller.join(timeout=5)

    assert not caller.is_alive(), "client hung"
    assert result["r"].ok and result["r"].result == {"nonce": "x"}
    client.close()
    replacement.close()


def test_handler_errors_come_back_as_error_replies(ctx, ipc_dir):
    def handler(request):
        if request.nonce == "after":
            return "alive"
        if request.nonce == "invalid":
            raise ValidationError({"qty": "must be > 0"})
        raise RuntimeError("bug")

    server = ThreadedServer(ctx, f"ipc://{ipc_dir}/err", handler)
    client = RequestClient(ctx, f"ipc://{ipc_dir}/err", timeout_ms=1000, retries=1)

    with pytest.raises(ValidationError) as invalid:
        client.call(Ping(nonce="invalid"))
    with pytest.raises(RemoteError, match="internal"):
        client.call(Ping(nonce="crash"))
    assert invalid.value.fields == {"qty": "must be > 0"}
    assert client.call(Ping(nonce="after")) == "alive"
    client.close()
    server.close()


def test_undecodable_request_gets_bad_request_reply(ctx, ipc_dir):
    server = ThreadedServer(ctx, f"ipc://{ipc_dir}/bad")
    raw = ctx.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(f"ipc://{ipc_dir}/bad")

    raw.send(b"\xc1not msgpack")
    assert raw.poll(2000)
    from shared.codec import decode

    reply = decode(raw.recv())
    assert isinstance(reply, Reply) and not reply.ok and reply.error_code == "bad_request"
    raw.close()
    server.close()
