"""Replaying the real BTCUSDT 1m series yields the same intents, ids included, every time; and
after warm-up the decisions do not depend on how much history came before."""

from __future__ import annotations

import pytest

from shared.strategies.base import Candle
from shared.strategies.swing import SWING_PARAMS, SwingStrategy

PARAM_SETS = [
    {},
    {"sl_tp_mode": "atr", "trailing_stop": True},
    {"use_ema_filter": True, "use_volume_confirmation": True, "ema_fast": 5, "ema_slow": 13},
]


@pytest.mark.parametrize("params", PARAM_SETS)
def test_a_replay_produces_the_same_intents_twice(
    real_candles: list[Candle], replay, params: dict
) -> None:
    validated = SWING_PARAMS.validate(params, partial=True)

    first = [i.to_dict() for i in replay(SwingStrategy("bot-r", validated), real_candles)]
    second = [i.to_dict() for i in replay(SwingStrategy("bot-r", validated), real_candles)]

    assert first == second
    assert {i["side"] for i in first} == {"BUY", "SELL"}
    assert len({i["intent_id"] for i in first}) == len(first)


def test_decisions_after_warmup_do_not_depend_on_the_start(real_candles: list[Candle]) -> None:
    params = SWING_PARAMS.defaults()
    early, late = SwingStrategy("bot-s", params), SwingStrategy("bot-s", params)
    start = 700
    for candle in real_candles[:start]:
        early.on_candle(candle)  # no fills: both stay flat, so only signals are compared

    signals_early, signals_late = [], []
    for candle in real_candles[start:]:
        from_early = [(i.intent_id, i.side) for i in early.on_candle(candle)]
        from_late = [(i.intent_id, i.side) for i in late.on_candle(candle)]
        if late.ready:  # the early one has had its warm-up long before
            signals_early += from_early
            signals_late += from_late

    assert signals_late and signals_early == signals_late
