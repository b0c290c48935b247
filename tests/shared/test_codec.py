"""The msgpack codec: every registered message type survives a round trip unchanged."""

from __future__ import annotations

import dataclasses
import types
import typing
from decimal import Decimal
from typing import Any, Union

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.codec import decode, encode
from shared.errors import CodecError
from shared.messages import REGISTRY, SCHEMA_VERSION, Heartbeat, OrderFilled, SubmitIntent

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8,
)


def strategy_for(hint: Any) -> st.SearchStrategy:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return st.one_of(*[strategy_for(a) for a in typing.get_args(hint)])
    if hint is type(None):
        return st.none()
    if hint is Decimal:
        return st.decimals(allow_nan=False, allow_infinity=False, places=8,
                           min_value=-(10**12), max_value=10**12)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if hint is int:
        return st.integers(-(2**63), 2**63 - 1)
    if hint is bool:
        return st.booleans()
    if hint is str:
        return st.text(max_size=30)
    if origin is tuple:
        return st.lists(strategy_for(typing.get_args(hint)[0]), max_size=4).map(tuple)
    if origin is dict:
        key, value = typing.get_args(hint)
        return st.dictionaries(st.text(max_size=10), strategy_for(value), max_size=4)
    return JSONISH


def message_strategy(cls) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


ALL_MESSAGES = st.one_of(*[message_strategy(cls) for cls in REGISTRY.values()])


@settings(max_examples=400, deadline=None)
@given(ALL_MESSAGES)
def test_every_message_type_round_trips(msg):
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("cls", sorted(REGISTRY.values(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_each_type_round_trips(cls, data):
    msg = data.draw(message_strategy(cls))
    assert decode(encode(msg)) == msg


def test_decimals_travel_as_strings_and_keep_every_digit():
    msg = SubmitIntent(intent_id="i1", bot_id="b1", epoch=3, symbol="BTCUSDT", side="BUY",
                       order_type="LIMIT", quantity=Decimal("0.00012345"),
                       price=Decimal("61837.63000000"))
    wire = msgpack.unpackb(encode(msg))
    assert wire["quantity"] == "0.00012345"
    assert wire["price"] == "61837.63000000"
    assert wire["type"] == "SubmitIntent" and wire["v"] == SCHEMA_VERSION
    assert decode(encode(msg)).price == Decimal("61837.63000000")


def test_unknown_type_is_refused():
    with pytest.raises(CodecError, match="unknown message type 'Nope'"):
        decode(msgpack.packb({"type": "Nope"}))


def test_missing_field_is_named():
    with pytest.raises(CodecError, match="Heartbeat: missing field 'pid'"):
        decode(msgpack.packb({"type": "Heartbeat", "service": "s", "instance": "i",
                              "status": "RUNNING", "uptime_s": 1.0, "ts": 1.0}))


def test_a_float_where_money_belongs_is_refused():
    fill = OrderFilled(bot_id="b", client_order_id="c", exchange_order_id=1, trade_id=2,
                       symbol="BTCUSDT", side="BUY", price=Decimal("1"), quantity=Decimal("1"),
                       quote_qty=Decimal("1"), commission=Decimal("0"), commission_asset="BTC",
                       is_maker=False, ts_ms=1)
    wire = fill.to_dict() | {"price": 0.1}
    with pytest.raises(CodecError, match="OrderFilled.price: expected a decimal string"):
        decode(msgpack.packb(wire))


def test_fields_from_a_newer_sender_are_ignored():
    beat = Heartbeat(service="s", instance="i", status="RUNNING", uptime_s=1.0, ts=2.0, pid=3)
    wire = beat.to_dict() | {"added_in_v2": 1}
    assert decode(msgpack.packb(wire)) == beat


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"\x92\x01", msgpack.packb([1, 2])])
def test_garbage_bytes_raise_codec_error(garbage):
    with pytest.raises(CodecError):
        decode(garbage)
