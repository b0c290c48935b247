"""Tunables of a strategy worker, read once at start from ``STRATEGY_*`` variables (the
environment, or ``.env``).

``STRATEGY_LEASE_TTL_S`` (default 5) is how long a bot's lease outlives a silent worker, so
also the longest a dead worker's bots wait for a new one. Tests pass small values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from dotenv import dotenv_values

from shared.errors import ConfigError

ENV_PREFIX = "STRATEGY_"


@dataclass(frozen=True)
class StrategySettings:
    """Lease, warm-up and intent timings of one worker; every value in seconds."""

    lease_ttl_s: float = 5.0  # a lease not renewed for this long may be claimed by another
    claim_grace_s: float = 1.5  # after start, listen for peer workers before claiming
    round_every_s: float = 0.2  # how often leases, desired states and statuses are looked at
    state_timeout_s: float = 0.5  # one lease/status request to state
    history_timeout_s: float = 10.0  # candle history for a warm-up (REST paging is slow)
    intent_timeout_s: float = 1.0  # one attempt of an intent to execution
    intent_give_up_s: float = 10.0  # an intent unanswered this long is dropped (logged)
    stream_ttl_s: float = 15.0  # marketdata keeps this worker's streams this long
    error_retry_s: float = 5.0  # first wait before a failed bot is started again
    rebalance_every_s: float = 2.0  # at most one surplus bot is handed back this often

    @property
    def renew_every_s(self) -> float:
        return self.lease_ttl_s / 3

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StrategySettings:
        """Settings from ``STRATEGY_<FIELD>`` variables; ConfigError names each bad one."""
        if env is None:  # like shared.config: .env first, the environment over it
            env = {k: v for k, v in dotenv_values(".env").items() if v is not None}
            env.update(os.environ)
        values, problems = {}, []
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = env.get(name, "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if value <= 0:
                problems.append(f"{name}={raw!r} must be a positive number of seconds")
            values[f.name] = value
        settings = cls(**values)
        if not problems and settings.lease_ttl_s < 3 * settings.state_timeout_s:
            problems.append(f"{ENV_PREFIX}LEASE_TTL_S must be at least 3 x STATE_TIMEOUT_S "
                            f"({3 * settings.state_timeout_s:g} s)")
        if problems:
            raise ConfigError(problems)
        return settings
