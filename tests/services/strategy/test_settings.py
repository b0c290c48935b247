"""Worker settings from ``STRATEGY_*`` variables: defaults, overrides, every problem named."""

from __future__ import annotations

import pytest

from services.strategy.settings import StrategySettings
from shared.errors import ConfigError


def test_defaults_and_overrides():
    settings = StrategySettings.from_env({"STRATEGY_LEASE_TTL_S": "9"})
    assert settings.lease_ttl_s == 9.0 and settings.renew_every_s == 3.0
    assert StrategySettings.from_env({}) == StrategySettings()


def test_every_bad_value_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        StrategySettings.from_env({"STRATEGY_LEASE_TTL_S": "soon", "STRATEGY_ROUND_EVERY_S": "0"})
    assert len(caught.value.problems) == 2
    assert "STRATEGY_LEASE_TTL_S='soon'" in caught.value.problems[0]


def test_a_lease_must_outlive_a_few_state_timeouts():
    with pytest.raises(ConfigError, match="at least 3 x"):
        StrategySettings.from_env({"STRATEGY_LEASE_TTL_S": "1", "STRATEGY_STATE_TIMEOUT_S": "0.5"})
