"""SIM_* settings: defaults, validation messages, and what the service builds from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.exchange_sim.market import QuoteReplayPath, RandomWalkPath, ReplayPath
from services.exchange_sim.service import ExchangeSimService
from services.exchange_sim.settings import DEFAULT_QUOTES, SimSettings, load_sim_settings
from shared.config import load_config
from shared.errors import ConfigError


def test_defaults_replay_klines_at_real_speed_with_no_faults():
    settings = load_sim_settings({})

    assert settings == SimSettings()
    assert settings.price_source == "klines" and settings.speed == 1.0
    assert settings.seed == 7 and settings.faults == {}
    assert settings.upstream_rest == "https://api.binance.com"
    assert settings.upstream_ws == "wss://stream.binance.com:9443"
    assert DEFAULT_QUOTES.is_file() and settings.quotes_symbol == "BTCUSDT"


def test_every_bad_variable_is_named_with_what_it_allows():
    env = {"SIM_PRICE_SOURCE": "csv", "SIM_SPEED": "fast", "SIM_SEED": "-1",
           "SIM_UPSTREAM_WS": "http://example.invalid", "SIM_FAULTS": "http_429=many"}

    with pytest.raises(ConfigError) as info:
        load_sim_settings(env)

    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 5
    assert "SIM_PRICE_SOURCE='csv'" in text and "klines, random, quotes" in text
    assert "SIM_SPEED='fast'" in text and "<= 1000" in text
    assert "SIM_SEED='-1'" in text and "integer >= 0" in text
    assert "SIM_UPSTREAM_WS=" in text and "wss://host[:port]" in text
    assert "SIM_FAULTS=" in text and "http_429: must be an integer >= 0" in text


def test_faults_are_read_as_json_or_as_name_value_pairs():
    as_json = load_sim_settings({"SIM_FAULTS": '{"rate_http_5xx": 0.25, "stall_ws": "streams",'
                                               ' "latency_ms": 40}'})
    as_pairs = load_sim_settings({"SIM_FAULTS": "rate_http_5xx=0.25, stall_ws=streams,"
                                                "latency_ms=40"})

    assert as_json.faults == as_pairs.faults == {"rate_http_5xx": 0.25, "stall_ws": "streams",
                                                 "latency_ms": 40}


def test_a_quotes_file_must_exist_and_name_a_known_symbol(tmp_path: Path):
    stray = tmp_path / "DOGEUSDT_bookTicker.csv"
    stray.write_text("ts_ms,bid,bid_qty,ask,ask_qty\n")

    with pytest.raises(ConfigError) as missing:
        load_sim_settings({"SIM_PRICE_SOURCE": "quotes", "SIM_QUOTES_FILE": "/nope.csv"})
    with pytest.raises(ConfigError) as unknown:
        load_sim_settings({"SIM_PRICE_SOURCE": "quotes", "SIM_QUOTES_FILE": str(stray)})

    assert "SIM_QUOTES_FILE='/nope.csv'" in missing.value.problems[0]
    assert "BTCUSDT, ETHUSDT, BNBUSDT" in unknown.value.problems[0]


def build_venue(env: dict[str, str], tmp_path: Path):
    env = {"DATA_DIR": str(tmp_path), **env}
    service = ExchangeSimService(load_config("exchange_sim", env=env),
                                 settings=load_sim_settings(env))
    return service.build_venue()


def test_the_service_starts_with_the_configured_faults_and_seed(tmp_path: Path):
    venue = build_venue({"SIM_FAULTS": "http_5xx=2,rate_http_429=0.1", "SIM_SEED": "42",
                         "SIM_PRICE_SOURCE": "random"}, tmp_path)

    faults = venue.faults.snapshot()

    assert faults["http_5xx"] == 2 and faults["rate_http_429"] == 0.1 and faults["seed"] == 42
    assert all(isinstance(p, RandomWalkPath) for p in venue.market.paths.values())


def test_price_source_picks_the_paths(tmp_path: Path):
    quotes = build_venue({"SIM_PRICE_SOURCE": "quotes"}, tmp_path).market.paths
    klines = build_venue({}, tmp_path).market.paths

    assert isinstance(quotes["BTCUSDT"], QuoteReplayPath)
    assert isinstance(quotes["ETHUSDT"], RandomWalkPath)
    assert isinstance(klines["BTCUSDT"], ReplayPath) and isinstance(klines["ETHUSDT"], ReplayPath)
