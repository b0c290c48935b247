"""Garbage to every request/reply endpoint (state, execution, marketdata) over its real socket:
each request gets a readable error reply (or, for a malformed envelope, is dropped and logged)
and the service keeps running: it still heartbeats and still answers a valid request."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.codec import decode, encode
from shared.errors import CodecError
from shared.messages import REGISTRY, Ping, Reply

pytestmark = pytest.mark.system
ENDPOINTS = ("state", "execution", "marketdata")
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
# Values msgpack can carry, nested a little: what a confused or hostile peer could send.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True) | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
# Everything but the replies themselves; Ping is the liveness probe.
TYPES = sorted(name for name in REGISTRY if name not in ("Reply",))


def request_raw(endpoint: str, frames: list[bytes], timeout_ms: int = 5000) -> bytes | None:
    """Send ``frames`` from a fresh REQ socket; the reply body, or None on silence."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(frames)
        if not sock.poll(timeout_ms, zmq.POLLIN):
            return None
        return sock.recv_multipart()[-1]
    finally:
        sock.close()


def assert_readable_error(body: bytes | None, sent: bytes) -> Reply:
    assert body is not None, "no reply to a bad request"
    reply = decode(body)
    assert isinstance(reply, Reply)
    if reply.ok:  # only a request that really is a valid message may succeed
        decode(sent)
        return reply
    assert reply.error_code and reply.error_message, reply
    assert reply.error_code != "internal", f"handler crashed on {sent[:200]!r}: {reply}"
    return reply


def assert_alive(fuzz_stack, name: str) -> None:
    endpoint = fuzz_stack.stack.endpoint(name)
    reply = decode(request_raw(endpoint, [encode(Ping(nonce="alive"))]))
    assert reply.ok and reply.result["nonce"] == "alive", reply


@pytest.mark.parametrize("name", ENDPOINTS)
@FUZZ
@given(body=st.binary(max_size=4096))
def test_random_bytes_get_a_readable_error(fuzz_stack, name, body):
    endpoint = fuzz_stack.stack.endpoint(name)
    try:
        decode(body)
    except CodecError:
        pass
    else:
        return  # astronomically rare: the bytes are a valid message
    reply = assert_readable_error(request_raw(endpoint, [body]), body)
    assert reply.error_code == "bad_request"


@pytest.mark.parametrize("name", ENDPOINTS)
@FUZZ
@given(value=VALUES)
def test_msgpack_that_is_not_a_message_gets_a_readable_error(fuzz_stack, name, value):
    body = msgpack.packb(value, use_bin_type=True)
    reply = assert_readable_error(request_raw(fuzz_stack.stack.endpoint(name), [body]), body)
    assert not reply.ok


@pytest.mark.parametrize("name", ENDPOINTS)
@FUZZ
@given(data=st.data())
def test_known_types_with_wrong_or_random_fields_get_a_readable_error(fuzz_stack, name, data):
    cls_name = data.draw(st.sampled_from(TYPES))
    fields = list(REGISTRY[cls_name].__dataclass_fields__)
    chosen = data.draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []
    value = {"type": cls_name, "v": 1} | {f: data.draw(VALUES) for f in chosen}
    body = msgpack.packb(value, use_bin_type=True)
    assert_readable_error(request_raw(fuzz_stack.stack.endpoint(name), [body]), body)


@pytest.mark.parametrize("name", ENDPOINTS)
@FUZZ
@given(type_name=st.text(max_size=30).filter(lambda t: t not in REGISTRY))
def test_unknown_type_is_named_in_the_error(fuzz_stack, name, type_name):
    body = msgpack.packb({"type": type_name, "v": 1})
    reply = assert_readable_error(request_raw(fuzz_stack.stack.endpoint(name), [body]), body)
    assert reply.error_code == "bad_request" and "unknown message type" in reply.error_message


@pytest.mark.parametrize("name", ENDPOINTS)
def test_oversized_and_malformed_envelopes_leave_the_service_running(fuzz_stack, name):
    endpoint = fuzz_stack.stack.endpoint(name)
    started = time.monotonic()
    big = b"\xde" + b"\xff" * (16 * 1024 * 1024)  # a 16 MB frame that is not msgpack
    assert_readable_error(request_raw(endpoint, [big], timeout_ms=15000), big)
    huge_map = msgpack.packb({"type": "Ping", "nonce": "x" * (8 * 1024 * 1024)})
    assert decode(request_raw(endpoint, [huge_map], timeout_ms=15000)).ok
    many = [b"frame"] * 50  # a REQ envelope with 50 body frames: the last one is the body
    assert_readable_error(request_raw(endpoint, many), many[-1])
    ctx = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)  # no empty delimiter, one frame: dropped and logged
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send(b"no envelope")
    dealer.close()
    assert_alive(fuzz_stack, name)
    assert fuzz_stack.tap.beats_after(started, [name]) == []


@pytest.mark.parametrize("name", ENDPOINTS)
def test_after_the_fuzz_the_service_still_runs_and_answers(fuzz_stack, name):
    (slot,) = [s for s in fuzz_stack.stack.slots if s.name == name]
    assert slot.proc.poll() is None, f"{name} exited with {slot.proc.returncode}"
    assert fuzz_stack.stack.crashes() == []  # its supervisor did not have to restart it
    assert_alive(fuzz_stack, name)
    assert fuzz_stack.tap.beats_after(time.monotonic(), [name]) == []
