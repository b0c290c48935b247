"""Configuration is validated once, with every problem named, and secrets stay in execution."""

from __future__ import annotations

import pytest

from shared.config import load_config
from shared.errors import ConfigError


def test_defaults_trade_offline_against_the_simulator():
    cfg = load_config("gateway", env={})
    assert cfg.mode == "sim"
    assert cfg.log_level == "INFO"
    assert cfg.gateway_host == "127.0.0.1" and cfg.gateway_port == 5000
    assert cfg.endpoints.bus_xsub == "tcp://127.0.0.1:5550"
    assert cfg.endpoints.bind("bus_xsub") == "tcp://127.0.0.1:5550"


def test_bad_mode_names_the_variable_and_the_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config("state", env={"MODE": "moon"})
    assert err.value.problems == [
        "MODE='moon' is not allowed; use one of: sim, paper, testnet, live"
    ]


def test_every_problem_is_reported_at_once():
    env = {"MODE": "x", "LOG_LEVEL": "LOUD", "SIM_PORT": "99999", "USE_TESTNET": "maybe",
           "STATE_ENDPOINT": "localhost:5560"}
    with pytest.raises(ConfigError) as err:
        load_config("state", env=env)
    text = "\n".join(err.value.problems)
    assert len(err.value.problems) == 5
    for name in ("MODE", "LOG_LEVEL", "SIM_PORT", "USE_TESTNET", "STATE_ENDPOINT"):
        assert name in text
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in text


def test_seed_use_testnet_still_selects_testnet():
    env = {"USE_TESTNET": "true", "BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
    assert load_config("execution", env=env).mode == "testnet"


def test_only_execution_reads_the_secret():
    env = {"MODE": "testnet", "BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
    assert load_config("execution", env=env).api_secret == "s" * 64
    for service in ("bus", "state", "gateway", "strategy", "marketdata", "exchange_sim"):
        assert load_config(service, env=env).api_secret is None


def test_secret_never_in_repr():
    env = {"MODE": "testnet", "BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
    assert "s" * 64 not in repr(load_config("execution", env=env))


def test_testnet_execution_needs_keys():
    with pytest.raises(ConfigError) as err:
        load_config("execution", env={"MODE": "testnet"})
    assert err.value.problems == [
        "BINANCE_API_KEY is required when MODE=testnet",
        "BINANCE_API_SECRET is required when MODE=testnet",
    ]


def test_live_needs_explicit_confirmation():
    env = {"MODE": "live", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
    with pytest.raises(ConfigError, match="LIVE_CONFIRM must be 'yes'"):
        load_config("execution", env=env)
    assert load_config("execution", env=env | {"LIVE_CONFIRM": "yes"}).mode == "live"


def test_dashboard_refuses_a_public_address_without_a_password():
    with pytest.raises(ConfigError, match="GATEWAY_HOST='0.0.0.0'.*DASHBOARD_PASSWORD"):
        load_config("gateway", env={"GATEWAY_HOST": "0.0.0.0"})
    assert load_config("gateway", env={"GATEWAY_HOST": "0.0.0.0", "DASHBOARD_PASSWORD": "pw"})


def test_dotenv_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=DEBUG\nSIM_PORT=9100\n")
    monkeypatch.setenv("SIM_PORT", "9200")
    cfg = load_config("exchange_sim", env_file=env_file)
    assert cfg.log_level == "DEBUG"
    assert cfg.sim_port == 9200


def test_bind_address_can_differ_from_connect_address():
    env = {"BUS_XSUB_ENDPOINT": "tcp://bus:5550", "BUS_XSUB_BIND": "tcp://0.0.0.0:5550"}
    cfg = load_config("bus", env=env)
    assert cfg.endpoints.bus_xsub == "tcp://bus:5550"
    assert cfg.endpoints.bind("bus_xsub") == "tcp://0.0.0.0:5550"


def test_a_password_hash_alone_also_allows_a_public_address():
    env = {"GATEWAY_HOST": "0.0.0.0", "DASHBOARD_PASSWORD_HASH": "scrypt:32768:8:1$x$y"}
    assert load_config("gateway", env=env).gateway_host == "0.0.0.0"
