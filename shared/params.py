"""Declared, validated parameters: one schema per strategy, read by the API, the dashboard form,
the strategy worker and the backtester.

A ``ParamSchema`` is an ordered list of ``ParamSpec`` plus cross-field ``Rule``s. ``validate``
returns a new, complete dict of coerced values or raises ``ValidationError`` whose ``fields`` names
every bad field at once (unknown names included); it never returns half-coerced input and never
mutates its argument. ``to_json`` is the description the dashboard draws its form from.

Coercion (what each type accepts; anything else is an error naming what is allowed):

* ``int``: an int, an integral float (``9.0``) or an integral numeric string (``"9"``);
  never a bool, never a fraction.
* ``float``: an int, a float or a numeric string; never a bool, NaN or infinity.
* ``decimal``: a string, an int or a ``Decimal``; a float is taken by its shortest repr
  (``0.1`` -> ``Decimal("0.1")``). Never a bool, NaN or infinity. Result is ``Decimal``.
* ``str``: a string, matched in full against ``pattern`` when one is set.
* ``bool``: ``True``/``False`` or the strings ``"true"``/``"false"`` (any case); not
  ``"yes"``, not ``1``.
* ``choice``: one of ``choices``; a value whose ``str()`` equals a choice's ``str()`` is taken
  as that choice (so a form's ``"5"`` selects the choice ``5``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.errors import ValidationError

PARAM_TYPES = ("int", "float", "decimal", "str", "bool", "choice")

_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "decimal": "a decimal number",
    "str": "a string",
    "bool": "true or false",
    "choice": "one of",
}


class _Invalid(ValueError):
    """One value failed its spec; the message is what the user reads."""


def _json_number(value: Any) -> Any:
    """Decimals travel as strings so no precision is lost; everything else as is."""
    return str(value) if isinstance(value, Decimal) else value


def _as_decimal(raw: Any) -> Decimal | None:
    """``raw`` as a finite Decimal, or None when it is not a number (bools are not numbers)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        raw = repr(raw)
    if isinstance(raw, str):
        raw = raw.strip()
    if not isinstance(raw, (int, str, Decimal)):
        return None
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, type, default, bounds or choices, and the help a user reads."""

    name: str
    type: str
    default: Any
    help: str
    min: Any = None
    max: Any = None
    choices: tuple[Any, ...] | None = None
    unit: str | None = None
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"{self.name}: type must be one of {PARAM_TYPES}, not {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"{self.name}: a choice parameter needs choices")
        if self.pattern is not None and self.type != "str":
            raise ValueError(f"{self.name}: only a str parameter can have a pattern")
        if self.type == "decimal":
            for attr in ("min", "max"):
                bound = getattr(self, attr)
                if bound is not None and not isinstance(bound, Decimal):
                    object.__setattr__(self, attr, Decimal(str(bound)))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        # The default must pass its own spec: a wrong schema fails at import, not in production.
        object.__setattr__(self, "default", self.coerce(self.default))

    # -- describing -------------------------------------------------------------------------

    def allowed(self) -> str:
        """What this parameter accepts, in words: type, range, choices or pattern."""
        if self.type == "choice":
            return "one of: " + ", ".join(str(c) for c in self.choices or ())
        words = _TYPE_WORDS[self.type]
        if self.min is not None and self.max is not None:
            words += f" from {self.min} to {self.max}"
        elif self.min is not None:
            words += f" >= {self.min}"
        elif self.max is not None:
            words += f" <= {self.max}"
        if self.pattern is not None:
            words += f" matching {self.pattern}"
        if self.unit:
            words += f" ({self.unit})"
        return words

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable description (decimals as strings) for forms and the API."""
        return {
            "name": self.name,
            "type": self.type,
            "default": _json_number(self.default),
            "min": _json_number(self.min),
            "max": _json_number(self.max),
            "choices": list(self.choices) if self.choices is not None else None,
            "unit": self.unit,
            "pattern": self.pattern,
            "help": self.help,
        }

    # -- coercing ---------------------------------------------------------------------------

    def coerce(self, raw: Any) -> Any:
        """``raw`` as this parameter's type, or ``_Invalid`` whose message says what is allowed."""
        value = _COERCERS[self.type](self, raw)
        if value is None:
            raise _Invalid(f"must be {self.allowed()}; got {raw!r}")
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise _Invalid(f"must be {self.allowed()}; got {raw!r}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise _Invalid(f"must be {self.allowed()}; got {raw!r}")
        return value


def _coerce_int(spec: ParamSpec, raw: Any) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    value = _as_decimal(raw)
    if value is None or value != value.to_integral_value():
        return None
    return int(value)


def _coerce_float(spec: ParamSpec, raw: Any) -> float | None:
    value = _as_decimal(raw)
    if value is None:
        return None
    result = float(raw) if isinstance(raw, (int, float)) else float(value)
    return result if math.isfinite(result) else None


def _coerce_decimal(spec: ParamSpec, raw: Any) -> Decimal | None:
    return _as_decimal(raw)


def _coerce_str(spec: ParamSpec, raw: Any) -> str | None:
    return raw if isinstance(raw, str) else None


def _coerce_bool(spec: ParamSpec, raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    return None


def _coerce_choice(spec: ParamSpec, raw: Any) -> Any:
    for choice in spec.choices or ():
        if raw == choice and type(raw) is type(choice):
            return choice
    if isinstance(raw, bool):
        return None
    for choice in spec.choices or ():
        if str(raw).strip() == str(choice):
            return choice
    return None


_COERCERS: dict[str, Callable[[ParamSpec, Any], Any]] = {
    "int": _coerce_int,
    "float": _coerce_float,
    "decimal": _coerce_decimal,
    "str": _coerce_str,
    "bool": _coerce_bool,
    "choice": _coerce_choice,
}

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Rule:
    """A cross-field check ``field <op> other``, reported on ``field``; simple enough for the
    dashboard to evaluate client-side from ``to_json``."""

    field: str
    op: str
    other: str
    message: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"rule op must be one of {tuple(_OPS)}, not {self.op!r}")

    def holds(self, values: Mapping[str, Any]) -> bool:
        return _OPS[self.op](values[self.field], values[self.other])

    def explain(self) -> str:
        return self.message or f"must be {self.op} {self.other}"

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "op": self.op, "other": self.other, "message": self.explain()}


class ParamSchema:
    """An ordered set of ``ParamSpec`` plus cross-field ``Rule``s."""

    def __init__(self, specs: Iterable[ParamSpec], rules: Iterable[Rule] = ()) -> None:
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._by_name = {spec.name: spec for spec in self.specs}
        if len(self._by_name) != len(self.specs):
            raise ValueError("parameter names must be unique")
        for rule in self.rules:
            for name in (rule.field, rule.other):
                if name not in self._by_name:
                    raise ValueError(f"rule names unknown parameter {name!r}")
        problems = self._broken_rules(self.defaults())
        if problems:
            raise ValueError(f"defaults break the schema's rules: {problems}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def __getitem__(self, name: str) -> ParamSpec:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def defaults(self) -> dict[str, Any]:
        """Every parameter at its default, in schema order."""
        return {spec.name: spec.default for spec in self.specs}

    def validate(
        self,
        values: Mapping[str, Any],
        partial: bool = False,
        base: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The coerced, complete params, or ``ValidationError`` naming every bad field.

        With ``partial=False`` every parameter must be given. With ``partial=True`` the missing
        ones come from ``base`` (the current, already valid params) or else from the defaults,
        and the cross-field rules run on the merged result.
        """
        if not isinstance(values, Mapping):
            raise ValidationError({"params": "must be an object mapping parameter names to values"})
        errors: dict[str, str] = {}
        for name in values:
            if name not in self._by_name:
                errors[str(name)] = "unknown parameter; allowed: " + ", ".join(self.names)
        result: dict[str, Any] = {}
        for spec in self.specs:
            if spec.name in values:
                raw = values[spec.name]
            elif partial:
                raw = base[spec.name] if base is not None and spec.name in base else spec.default
            else:
                errors[spec.name] = f"required: {spec.allowed()} (default {spec.default})"
                continue
            try:
                result[spec.name] = spec.coerce(raw)
            except _Invalid as exc:
                errors[spec.name] = str(exc)
        for name, message in self._broken_rules(result).items():
            errors.setdefault(name, message)
        if errors:
            raise ValidationError(errors, message="invalid params")
        return result

    def _broken_rules(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Rules that fail among those whose two fields are both present and valid."""
        broken: dict[str, str] = {}
        for rule in self.rules:
            if rule.field in values and rule.other in values and not rule.holds(values):
                broken.setdefault(
                    rule.field, f"{rule.explain()} (got {values[rule.field]}, "
                    f"{rule.other} is {values[rule.other]})"
                )
        return broken

    def serialize(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validated params as JSON-safe values (decimals as strings); ``validate`` reads back."""
        return {name: _json_number(value) for name, value in values.items()}

    def to_json(self) -> dict[str, Any]:
        """The whole schema, JSON-serialisable: ``{"params": [...], "rules": [...]}``."""
        return {
            "params": [spec.to_json() for spec in self.specs],
            "rules": [rule.to_json() for rule in self.rules],
        }
