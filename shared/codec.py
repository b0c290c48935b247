"""msgpack codec for messages: ``encode(msg) -> bytes`` and ``decode(bytes) -> Message``.

The wire form is the message's ``to_dict()`` map; Decimals are already strings there, so
msgpack never sees a float where money is concerned.
"""

from __future__ import annotations

import msgpack

from shared.errors import CodecError
from shared.messages import Message, from_dict


def encode(msg: Message) -> bytes:
    if not isinstance(msg, Message):
        raise CodecError(f"only messages are encoded, got {type(msg).__name__}")
    return msgpack.packb(msg.to_dict(), use_bin_type=True)


def decode(data: bytes) -> Message:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise CodecError(f"not a msgpack message: {exc}") from None
    return from_dict(raw)
