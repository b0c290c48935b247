"""Configuration from the environment and an optional ``.env`` file, validated once at start.

``load_config(service)`` returns a frozen ``Config`` or raises ``ConfigError`` listing every
bad variable with the values it allows. The process environment wins over ``.env``.
Only the ``execution`` service reads ``BINANCE_API_SECRET``: every other service gets None.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from shared.errors import ConfigError

MODES = ("sim", "paper", "testnet", "live")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECRET_READER = "execution"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Endpoints:
    """Where each ZeroMQ socket lives. ``*_bind`` is where the owner binds (defaults to the
    connect address; docker compose binds 0.0.0.0 and connects by service name)."""

    bus_xsub: str = "tcp://127.0.0.1:5550"
    bus_xpub: str = "tcp://127.0.0.1:5551"
    state: str = "tcp://127.0.0.1:5560"
    execution: str = "tcp://127.0.0.1:5561"
    marketdata: str = "tcp://127.0.0.1:5562"
    bus_xsub_bind: str = ""
    bus_xpub_bind: str = ""
    state_bind: str = ""
    execution_bind: str = ""
    marketdata_bind: str = ""

    def bind(self, name: str) -> str:
        return getattr(self, f"{name}_bind") or getattr(self, name)


@dataclass(frozen=True)
class Config:
    """Everything a service needs to start; built only by ``load_config``."""

    service: str
    mode: str = "sim"
    log_level: str = "INFO"
    api_key: str = field(default="", repr=False)
    api_secret: str | None = field(default=None, repr=False)
    endpoints: Endpoints = field(default_factory=Endpoints)
    sim_host: str = "127.0.0.1"
    sim_bind_host: str = "127.0.0.1"
    sim_port: int = 9010
    sim_api_key: str = "sim-key"
    sim_api_secret: str = field(default="sim-secret", repr=False)
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 5000
    dashboard_password: str = field(default="", repr=False)
    data_dir: Path = Path("var")
    heartbeat_interval_s: float = 1.0
    health_timeout_s: float = 3.0

    @property
    def sim_url(self) -> str:
        return f"http://{self.sim_host}:{self.sim_port}"

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or an API reply."""
        values = [self.api_key, self.api_secret or "", self.dashboard_password]
        return [v for v in values if v]


def _read_env(env: Mapping[str, str] | None, env_file: str | os.PathLike | None) -> dict:
    if env is not None:
        return dict(env)
    merged: dict[str, str] = {}
    path = Path(env_file) if env_file else Path(".env")
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


class _Reader:
    """Reads variables and collects every problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def text(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()

    def choice(self, name: str, allowed: tuple[str, ...], default: str, upper=False) -> str:
        raw = self.text(name, default)
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            self.problems.append(f"{name}={raw!r} is not allowed; use one of: {', '.join(allowed)}")
            return default
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.text(name, "true" if default else "false").lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        self.problems.append(f"{name}={raw!r} is not a boolean; use true or false")
        return default

    def port(self, name: str, default: int) -> int:
        raw = self.text(name, str(default))
        if raw.isdigit() and 1 <= int(raw) <= 65535:
            return int(raw)
        self.problems.append(f"{name}={raw!r} is not a port; use an integer from 1 to 65535")
        return default

    def positive(self, name: str, default: float) -> float:
        raw = self.text(name, str(default))
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value > 0:
            return value
        self.problems.append(f"{name}={raw!r} must be a number greater than 0")
        return default

    def endpoint(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("tcp://", "ipc://", "inproc://")):
            self.problems.append(
                f"{name}={value!r} is not a ZeroMQ endpoint; use tcp://host:port or ipc://path"
            )
            return default
        return value


def _endpoints(r: _Reader) -> Endpoints:
    d = Endpoints()
    names = ("bus_xsub", "bus_xpub", "state", "execution", "marketdata")
    kwargs = {n: r.endpoint(f"{n.upper()}_ENDPOINT", getattr(d, n)) for n in names}
    for n in names:
        if r.text(f"{n.upper()}_BIND"):
            kwargs[f"{n}_bind"] = r.endpoint(f"{n.upper()}_BIND", "")
    return Endpoints(**kwargs)


def _mode(r: _Reader) -> str:
    use_testnet = r.flag("USE_TESTNET")
    if r.text("MODE"):
        mode = r.choice("MODE", MODES, "sim")
        if use_testnet and mode not in ("testnet", "sim"):
            r.problems.append(f"USE_TESTNET=true contradicts MODE={mode}; remove one of them")
        return mode
    return "testnet" if use_testnet else "sim"  # the seed's USE_TESTNET keeps working


def load_config(
    service: str,
    env: Mapping[str, str] | None = None,
    env_file: str | os.PathLike | None = None,
) -> Config:
    """Read and validate the configuration for ``service``; raise ConfigError on any problem."""
    r = _Reader(_read_env(env, env_file))
    mode = _mode(r)
    api_key = r.text("BINANCE_API_KEY")
    # Only execution touches the secret; for everyone else it is as if it were not set.
    api_secret = r.text("BINANCE_API_SECRET") if service == SECRET_READER else None
    if service == SECRET_READER and mode in ("testnet", "live"):
        for name, value in (("BINANCE_API_KEY", api_key), ("BINANCE_API_SECRET", api_secret)):
            if not value:
                r.problems.append(f"{name} is required when MODE={mode}")
    if mode == "live" and r.text("LIVE_CONFIRM").lower() != "yes":
        r.problems.append("LIVE_CONFIRM must be 'yes' when MODE=live (real money is at stake)")
    cfg = Config(
        service=service,
        mode=mode,
        log_level=r.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
        api_key=api_key,
        api_secret=api_secret,
        endpoints=_endpoints(r),
        sim_host=r.text("SIM_HOST", "127.0.0.1"),
        sim_bind_host=r.text("SIM_BIND_HOST", "127.0.0.1"),
        sim_port=r.port("SIM_PORT", 9010),
        sim_api_key=r.text("SIM_API_KEY", "sim-key"),
        sim_api_secret=r.text("SIM_API_SECRET", "sim-secret"),
        gateway_host=r.text("GATEWAY_HOST", "127.0.0.1"),
        gateway_port=r.port("GATEWAY_PORT", 5000),
        dashboard_password=r.text("DASHBOARD_PASSWORD"),
        data_dir=Path(r.text("DATA_DIR", "var")),
        heartbeat_interval_s=r.positive("HEARTBEAT_INTERVAL_S", 1.0),
        health_timeout_s=r.positive("HEALTH_TIMEOUT_S", 3.0),
    )
    # In docker compose the gateway must listen on the container's interface, and compose
    # publishes it on the host's 127.0.0.1 only; IN_CONTAINER=yes says so.
    loopback = cfg.gateway_host in ("127.0.0.1", "localhost", "::1")
    in_container = r.text("IN_CONTAINER").lower() == "yes"
    has_auth = bool(cfg.dashboard_password or r.text("DASHBOARD_PASSWORD_HASH"))
    if not loopback and not in_container and not has_auth:
        r.problems.append(
            f"GATEWAY_HOST={cfg.gateway_host!r} exposes the dashboard beyond this machine; "
            "set DASHBOARD_PASSWORD (or DASHBOARD_PASSWORD_HASH) or use 127.0.0.1"
        )
    if r.problems:
        raise ConfigError(r.problems)
    return cfg
