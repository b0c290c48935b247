"""ParamSchema: coercion, every bad field reported at once, cross-field rules, JSON form."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ValidationError
from shared.params import ParamSchema, ParamSpec, Rule
from shared.strategies import STRATEGIES
from shared.strategies.scalping import SCALPING_PARAMS
from shared.strategies.swing import SWING_PARAMS


def errors_of(schema: ParamSchema, values: dict, **kwargs) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        schema.validate(values, **kwargs)
    return info.value.fields


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_defaults_validate_to_themselves(name: str) -> None:
    schema = STRATEGIES[name].params_schema

    assert schema.validate(schema.defaults()) == schema.defaults()


def test_every_bad_field_is_reported_at_once() -> None:
    values = {
        "ema_fast": "nine",
        "rsi_period": 1,
        "timeframe": "2m",
        "trailing_stop": "yes",
        "stop_loss_pct": "abc",
        "bogus": 1,
    }

    fields = errors_of(SWING_PARAMS, values, partial=True)

    assert set(fields) == {
        "ema_fast", "rsi_period", "timeframe", "trailing_stop", "stop_loss_pct", "bogus"
    }


def test_nothing_is_coerced_half_way() -> None:
    values = {"ema_fast": "5", "stop_loss_pct": "0.25", "ema_slow": "oops"}
    before = copy.deepcopy(values)

    errors_of(SWING_PARAMS, values, partial=True)

    assert values == before


def test_success_returns_a_new_complete_dict_and_leaves_input_alone() -> None:
    values = {"ema_fast": "5", "stop_loss_pct": "0.25"}

    result = SWING_PARAMS.validate(values, partial=True)

    assert values == {"ema_fast": "5", "stop_loss_pct": "0.25"}
    assert list(result) == list(SWING_PARAMS.names)
    assert result["ema_fast"] == 5
    assert result["stop_loss_pct"] == Decimal("0.25")


def test_unknown_field_names_are_errors_that_list_the_allowed_names() -> None:
    fields = errors_of(SWING_PARAMS, {"ema_fst": 5}, partial=True)

    assert "unknown parameter" in fields["ema_fst"]
    assert "ema_fast" in fields["ema_fst"]


def test_full_validation_requires_every_field() -> None:
    values = SWING_PARAMS.defaults()
    del values["rsi_period"]

    fields = errors_of(SWING_PARAMS, values)

    assert set(fields) == {"rsi_period"}
    assert "required" in fields["rsi_period"]


def test_partial_validation_takes_missing_fields_from_base_then_defaults() -> None:
    base = SWING_PARAMS.validate({"ema_fast": 5, "ema_slow": 8}, partial=True)

    result = SWING_PARAMS.validate({"ema_slow": 30}, partial=True, base=base)

    assert (result["ema_fast"], result["ema_slow"], result["rsi_period"]) == (5, 30, 14)


@pytest.mark.parametrize("raw, expected", [
    (True, True), (False, False), ("true", True), ("False", False), ("TRUE", True),
])
def test_bools_accept_true_and_false(raw: object, expected: bool) -> None:
    assert SWING_PARAMS.validate({"trailing_stop": raw}, partial=True)["trailing_stop"] is expected


@pytest.mark.parametrize("raw", ["yes", "no", "1", 1, 0, None, "on"])
def test_bools_refuse_anything_else(raw: object) -> None:
    fields = errors_of(SWING_PARAMS, {"trailing_stop": raw}, partial=True)

    assert "true or false" in fields["trailing_stop"]


@pytest.mark.parametrize("raw, expected", [(9, 9), (9.0, 9), ("9", 9), (Decimal("9"), 9)])
def test_ints_accept_integral_values(raw: object, expected: int) -> None:
    result = SWING_PARAMS.validate({"ema_fast": raw}, partial=True)["ema_fast"]

    assert result == expected and type(result) is int


@pytest.mark.parametrize("raw", [9.5, "9.5", True, "nine", None, float("nan")])
def test_ints_refuse_fractions_bools_and_text(raw: object) -> None:
    fields = errors_of(SWING_PARAMS, {"ema_fast": raw}, partial=True)

    assert "an integer from 2 to 200" in fields["ema_fast"]


@pytest.mark.parametrize("raw, expected", [
    ("0.25", Decimal("0.25")), (2, Decimal("2")), (0.1, Decimal("0.1")),
    (Decimal("1.50"), Decimal("1.50")), (" 3 ", Decimal("3")),
])
def test_decimals_accept_strings_ints_and_floats(raw: object, expected: Decimal) -> None:
    result = SWING_PARAMS.validate({"stop_loss_pct": raw}, partial=True)["stop_loss_pct"]

    assert result == expected and isinstance(result, Decimal)


@pytest.mark.parametrize("raw", ["abc", "NaN", "Infinity", True, None, [1]])
def test_decimals_refuse_non_numbers(raw: object) -> None:
    fields = errors_of(SWING_PARAMS, {"stop_loss_pct": raw}, partial=True)

    assert "a decimal number from 0.01 to 50" in fields["stop_loss_pct"]


@pytest.mark.parametrize("schema, field, raw", [
    (SWING_PARAMS, "ema_fast", 1), (SWING_PARAMS, "ema_slow", 201),
    (SWING_PARAMS, "rsi_overbought", 100.5), (SWING_PARAMS, "stop_loss_pct", "0.001"),
    (SCALPING_PARAMS, "max_hold_s", 0), (SCALPING_PARAMS, "imbalance_threshold", "0.5"),
])
def test_out_of_range_values_name_the_range(schema: ParamSchema, field: str, raw: object) -> None:
    spec = schema[field]

    fields = errors_of(schema, {field: raw}, partial=True)

    assert f"from {spec.min} to {spec.max}" in fields[field]


def test_floats_refuse_bools_and_infinity() -> None:
    for raw in (True, float("inf"), "inf"):
        assert "rsi_overbought" in errors_of(SWING_PARAMS, {"rsi_overbought": raw}, partial=True)


def test_choices_list_what_is_allowed() -> None:
    fields = errors_of(SWING_PARAMS, {"timeframe": "2m"}, partial=True)

    assert "one of: 1s, 1m, 3m" in fields["timeframe"]


def test_a_choice_given_as_text_selects_the_typed_choice() -> None:
    result = SCALPING_PARAMS.validate({"depth_levels": "10"}, partial=True)

    assert result["depth_levels"] == 10


def test_symbol_must_look_like_a_binance_symbol() -> None:
    fields = errors_of(SWING_PARAMS, {"symbol": "btc/usdt"}, partial=True)

    assert "matching" in fields["symbol"]


def test_cross_field_rule_is_reported_on_the_field() -> None:
    fields = errors_of(SWING_PARAMS, {"ema_fast": 30, "ema_slow": 20}, partial=True)

    assert set(fields) == {"ema_fast"}
    assert "less than ema_slow" in fields["ema_fast"]


def test_cross_field_rule_is_skipped_when_a_side_is_itself_invalid() -> None:
    fields = errors_of(SWING_PARAMS, {"ema_fast": 30, "ema_slow": "x"}, partial=True)

    assert set(fields) == {"ema_slow"}


def test_cross_field_rule_checks_the_merged_params() -> None:
    base = SWING_PARAMS.validate({"ema_fast": 12, "ema_slow": 26}, partial=True)

    fields = errors_of(SWING_PARAMS, {"ema_slow": 10}, partial=True, base=base)

    assert set(fields) == {"ema_fast"}


def test_not_a_mapping_is_refused() -> None:
    assert "params" in errors_of(SWING_PARAMS, ["ema_fast", 9])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_schema_json_is_serialisable_and_complete(name: str) -> None:
    schema = STRATEGIES[name].params_schema

    described = json.loads(json.dumps(schema.to_json()))

    assert [p["name"] for p in described["params"]] == list(schema.names)
    for param in described["params"]:
        assert {"name", "type", "default", "min", "max", "choices", "unit", "help"} <= set(param)
        assert param["help"]


def test_schema_json_carries_decimals_as_strings_and_the_rules() -> None:
    described = SWING_PARAMS.to_json()
    stop_loss = next(p for p in described["params"] if p["name"] == "stop_loss_pct")

    assert (stop_loss["default"], stop_loss["min"], stop_loss["max"]) == ("0.5", "0.01", "50")
    assert {"field": "ema_fast", "op": "<", "other": "ema_slow",
            "message": "must be less than ema_slow"} in described["rules"]


def test_serialized_params_validate_back_to_the_same_values() -> None:
    params = SWING_PARAMS.validate({"stop_loss_pct": "0.35"}, partial=True)

    text = json.dumps(SWING_PARAMS.serialize(params))

    assert SWING_PARAMS.validate(json.loads(text)) == params


def test_a_spec_whose_default_breaks_its_own_bounds_fails_at_definition() -> None:
    with pytest.raises(ValueError):
        ParamSpec("n", "int", 1, "a count", min=2)


def test_a_schema_whose_defaults_break_a_rule_fails_at_definition() -> None:
    with pytest.raises(ValueError):
        ParamSchema(
            [ParamSpec("a", "int", 5, "a"), ParamSpec("b", "int", 3, "b")],
            rules=[Rule("a", "<", "b")],
        )


@given(st.integers(min_value=-10_000, max_value=10_000))
def test_ints_are_accepted_exactly_inside_their_range(value: int) -> None:
    schema = ParamSchema([ParamSpec("n", "int", 0, "n", min=-100, max=100)])
    inside = -100 <= value <= 100

    try:
        result = schema.validate({"n": value})
    except ValidationError as exc:
        assert not inside and "from -100 to 100" in exc.fields["n"]
    else:
        assert inside and result == {"n": value}
