"""The simulator's own ``SIM_*`` settings, read from the environment and validated once.

``load_sim_settings(env)`` returns :class:`SimSettings` or raises ``ConfigError`` listing every
bad variable with the values it allows (the foundation's ``shared.config`` reads the common ones:
``MODE``, ``SIM_HOST``, ``SIM_PORT``, ``SIM_API_KEY``...).

    SIM_SEED           integer >= 0, default 7: random walks, books, fault draws
    SIM_PRICE_SOURCE   klines | random | quotes, default klines
    SIM_QUOTES_FILE    bookTicker CSV(.gz) replayed when SIM_PRICE_SOURCE=quotes
    SIM_SPEED          number > 0 and <= 1000, default 1: market time runs this much faster
    SIM_FAULTS         JSON object or name=value,... of /sim/faults settings, default none
    SIM_UPSTREAM_REST  http(s) base of the real REST API (MODE=paper)
    SIM_UPSTREAM_WS    ws(s) base of the real market streams (MODE=paper)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from shared.errors import ConfigError, ValidationError

from .faults import Faults, parse_fault_text
from .market import DEFAULT_SPECS, QUOTES_PREFIX
from .paper import BINANCE_REST, BINANCE_STREAMS

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEFAULT_QUOTES = DATA_DIR / "quotes" / "BTCUSDT_bookTicker_20240808T235413Z-20240809T000504Z.csv.gz"
PRICE_SOURCES = ("klines", "random", "quotes")
MAX_SPEED = 1000.0
_SYMBOL_PREFIX = re.compile(r"^([A-Z0-9]+)_")


@dataclass(frozen=True)
class SimSettings:
    """How the simulator builds its market, which faults it starts with, where paper reads."""

    seed: int = 7
    price_source: str = "klines"
    quotes_file: Path = DEFAULT_QUOTES
    speed: float = 1.0
    faults: dict[str, Any] = field(default_factory=dict)
    upstream_rest: str = BINANCE_REST
    upstream_ws: str = BINANCE_STREAMS

    @property
    def quotes_symbol(self) -> str:
        """The symbol a quotes file is for: the upper-case prefix of its name (``BTCUSDT_...``)."""
        match = _SYMBOL_PREFIX.match(self.quotes_file.name)
        return match[1] if match else ""

    def sources(self) -> dict[str, str] | None:
        """The Venue ``sources`` for this price source (None: the venue's klines default)."""
        if self.price_source == "random":
            return {}
        if self.price_source == "quotes":
            return {self.quotes_symbol: f"{QUOTES_PREFIX}{self.quotes_file}"}
        return None


class _SimReader:
    """Reads SIM_* variables and collects every problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def text(self, name: str, default: str = "") -> str:
        return (self.values.get(name) or default).strip()

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        raw = self.text(name, default)
        if raw.lower() not in allowed:
            self.problems.append(f"{name}={raw!r} is not allowed; use one of: {', '.join(allowed)}")
            return default
        return raw.lower()

    def integer(self, name: str, default: int) -> int:
        raw = self.text(name, str(default))
        if raw.isdigit():
            return int(raw)
        self.problems.append(f"{name}={raw!r} is not allowed; use an integer >= 0")
        return default

    def number(self, name: str, default: float, high: float) -> float:
        raw = self.text(name, str(default))
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if 0 < value <= high:
            return value
        self.problems.append(f"{name}={raw!r} is not allowed; use a number > 0 and <= {high:g}")
        return default

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.text(name, default)
        parsed = urlsplit(value)
        if parsed.scheme not in schemes or not parsed.hostname:
            allowed = " or ".join(f"{s}://host[:port]" for s in schemes)
            self.problems.append(f"{name}={value!r} is not allowed; use {allowed}")
            return default
        return value.rstrip("/")

    def faults(self, name: str) -> dict[str, Any]:
        raw = self.text(name)
        try:
            changes = parse_fault_text(raw)
            Faults.validate(changes)
        except ValidationError as exc:
            bad = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
            self.problems.append(f"{name}={raw!r} is not allowed: {bad}")
            return {}
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r} is not allowed ({exc}); use a JSON object or "
                                 "name=value,name=value with the fields of /sim/faults")
            return {}
        return changes

    def quotes_file(self, name: str, needed: bool) -> Path:
        path = Path(self.text(name, str(DEFAULT_QUOTES)))
        if not needed:
            return path
        symbol = SimSettings(quotes_file=path).quotes_symbol
        if not path.is_file():
            self.problems.append(f"{name}={str(path)!r} is not allowed; use an existing "
                                 "bookTicker CSV file")
        elif symbol not in DEFAULT_SPECS:
            self.problems.append(f"{name}={str(path)!r} is not allowed; its name must start with "
                                 f"one of {', '.join(DEFAULT_SPECS)} and '_'")
        return path


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is not None:
        return dict(env)
    merged: dict[str, str] = {}
    if Path(".env").is_file():
        merged.update({k: v for k, v in dotenv_values(".env").items() if v is not None})
    merged.update(os.environ)
    return merged


def load_sim_settings(env: Mapping[str, str] | None = None) -> SimSettings:
    """Read and validate the SIM_* extras (default: ``.env`` then the process environment)."""
    r = _SimReader(_environment(env))
    source = r.choice("SIM_PRICE_SOURCE", PRICE_SOURCES, "klines")
    settings = SimSettings(
        seed=r.integer("SIM_SEED", 7),
        price_source=source,
        quotes_file=r.quotes_file("SIM_QUOTES_FILE", source == "quotes"),
        speed=r.number("SIM_SPEED", 1.0, MAX_SPEED),
        faults=r.faults("SIM_FAULTS"),
        upstream_rest=r.url("SIM_UPSTREAM_REST", BINANCE_REST, ("https", "http")),
        upstream_ws=r.url("SIM_UPSTREAM_WS", BINANCE_STREAMS, ("wss", "ws")),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings
