"""Garbage published on the bus (wrong frame counts, bytes that are not msgpack, messages of
the wrong class for their topic, unknown types, oversized frames): every subscriber drops it
and logs it, and every service keeps running and heartbeating."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.codec import encode
from shared.messages import BookTicker, Candle, Heartbeat, LogRecord, StateChanged
from tests.fuzz.test_request_endpoints import VALUES, assert_alive

pytestmark = pytest.mark.system
SERVICES = ("bus", "state", "exchange_sim", "marketdata", "execution", "strategy", "gateway")
# A topic for every consumer: gateway (health, log, state, md.book), strategy (md, ctl),
# execution and marketdata (ctl, exec); both ends of each prefix.
TOPICS = ("health.state", "health.marketdata.streams", "log.execution", "state.bot",
          "state.order", "md.book.BTCUSDT", "md.kline.BTCUSDT.1m", "md.depth.BTCUSDT",
          "ctl.bot", "exec.order.1", "exec.pause", "exec.sync")
# Valid messages, each published on a topic that expects another class.
WRONG_CLASS = (
    Heartbeat(service="x", instance="x", status="RUNNING", uptime_s=1.0, ts=1.0, pid=1),
    Candle(symbol="BTCUSDT", interval="1m", open_time_ms=0, close_time_ms=1, open=1.0,
           high=1.0, low=1.0, close=1.0, volume=1.0, closed=True),
    BookTicker(symbol="BTCUSDT", bid=1.0, bid_qty=1.0, ask=2.0, ask_qty=1.0, ts_ms=0),
    LogRecord(service="x", instance="x", level="INFO", logger="x", message="m", ts=0.0),
)
BUS_FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def publisher(fuzz_stack):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(fuzz_stack.stack.endpoint("xsub"))
    time.sleep(1.0)  # the bus forwards its subscribers' subscriptions: let them arrive
    yield pub
    pub.close()


def frames_strategy():
    topic = st.sampled_from(TOPICS).map(str.encode) | st.binary(max_size=30)
    body = (st.binary(max_size=2048)
            | VALUES.map(lambda v: msgpack.packb(v, use_bin_type=True))
            | st.sampled_from(WRONG_CLASS).map(encode)
            | st.text(max_size=20).map(lambda t: msgpack.packb({"type": t, "v": 1})))
    return st.one_of(
        st.tuples(topic, body).map(list),  # a well-formed pair with a bad body
        st.lists(st.binary(max_size=64), min_size=3, max_size=6).flatmap(
            lambda rest: topic.map(lambda t: [t, *rest])),  # too many frames
        topic.map(lambda t: [t]),  # a topic and no body
    )


@BUS_FUZZ
@given(frames=frames_strategy())
def test_garbage_frames_on_the_bus(fuzz_stack, publisher, frames):
    publisher.send_multipart(frames)


def test_wrong_class_on_every_topic_and_an_oversized_frame(fuzz_stack, publisher):
    for topic in TOPICS:
        for msg in WRONG_CLASS:
            publisher.send_multipart([topic.encode(), encode(msg)])
        publisher.send_multipart([topic.encode(), encode(StateChanged(seq=-1, kind="?",
                                                                      payload={"x": [1]}))])
    publisher.send_multipart([b"md.book.BTCUSDT", b"\xc1" * (8 * 1024 * 1024)])
    publisher.send_multipart([b"health.state", b"\x93" + b"\xc1" * 1024 * 1024])


def test_every_service_survives_the_bus_garbage_and_logged_drops(fuzz_stack):
    time.sleep(1.0)  # let the subscribers work through what was published
    started = time.monotonic()
    for slot in fuzz_stack.stack.slots:
        assert slot.proc.poll() is None, f"{slot.label} exited with {slot.proc.returncode}"
    assert fuzz_stack.stack.crashes() == []  # no supervisor had to restart its service
    assert fuzz_stack.tap.beats_after(started, SERVICES) == []
    for name in ("state", "execution", "marketdata"):
        assert_alive(fuzz_stack, name)
    logs = fuzz_stack.stack.logs()
    assert "dropped" in "".join(logs.values()), "no subscriber logged the garbage it dropped"
    crashed = {name: text[text.index("Traceback"):][:1500] for name, text in logs.items()
               if "Traceback" in text}
    assert not crashed, f"a service logged a traceback: {crashed}"
