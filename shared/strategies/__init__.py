"""Pure strategy classes and their registry, shared by the strategy worker, the state service
(param validation) and the backtester.

A new strategy is one file in this package: a ``Strategy`` subclass with a unique ``name``
(e.g. ``"SWING"``), a ``params_schema`` and ``needs``. Every module here is imported once at
start and each such subclass is registered under its name; a duplicate name fails the import.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from shared.errors import ValidationError
from shared.strategies.base import (
    Book,
    Candle,
    Fill,
    MarketInfo,
    OrderIntent,
    Position,
    Strategy,
)

_NOT_STRATEGIES = frozenset({"base", "indicators"})


def _discover() -> dict[str, type[Strategy]]:
    """Every concrete ``Strategy`` subclass defined in this package, by ``name``, sorted."""
    found: dict[str, type[Strategy]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _NOT_STRATEGIES or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for obj in vars(module).values():
            if not (isinstance(obj, type) and issubclass(obj, Strategy) and obj.name):
                continue
            if obj.__module__ != module.__name__:
                continue  # imported from elsewhere, registered by its own module
            if obj.name in found and found[obj.name] is not obj:
                raise ImportError(f"two strategies are named {obj.name!r}")
            found[obj.name] = obj
    return dict(sorted(found.items()))


STRATEGIES: dict[str, type[Strategy]] = _discover()
"""Strategy classes by name, e.g. ``{"SCALPING": ScalpingStrategy, "SWING": SwingStrategy}``."""


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class called ``name``, or ``ValidationError`` listing the allowed names."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        allowed = ", ".join(STRATEGIES)
        raise ValidationError(
            {"strategy": f"unknown strategy {name!r}; allowed: {allowed}"},
            message="invalid strategy",
        ) from None


def build_strategy(
    name: str, bot_id: str, params: Mapping[str, Any], market: MarketInfo | None = None
) -> Strategy:
    """Look up ``name`` and build it from ``params`` (validated; ``ValidationError`` if not)."""
    return get_strategy(name)(bot_id, params, market)


def schemas_json() -> dict[str, dict[str, Any]]:
    """Every strategy's param schema as JSON, by strategy name, for the API and the dashboard."""
    return {name: cls.params_schema.to_json() for name, cls in STRATEGIES.items()}


__all__ = [
    "STRATEGIES",
    "Book",
    "Candle",
    "Fill",
    "MarketInfo",
    "OrderIntent",
    "Position",
    "Strategy",
    "build_strategy",
    "get_strategy",
    "schemas_json",
]
