"""Tunables of the market data service and where it finds Binance (or the simulator).

``MarketdataSettings`` has production defaults; tests pass small timeouts. ``venue_urls``
turns the configured mode into the REST base and the stream base python-binance needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Config

BINANCE_REST = "https://api.binance.com/api"
BINANCE_STREAMS = "wss://stream.binance.com:9443/"
TESTNET_REST = "https://testnet.binance.vision/api"
TESTNET_STREAMS = "wss://stream.testnet.binance.vision/"


@dataclass(frozen=True)
class MarketdataSettings:
    """How the stream connection, the REST calls and the caches behave."""

    silence_s: float = 10.0  # no message for this long on a live connection: reconnect
    backoff_min_s: float = 0.5  # first reconnect delay (before jitter)
    backoff_max_s: float = 30.0
    resubscribe_delay_s: float = 0.2  # coalesce subscription changes into one reconnect
    rest_timeout_s: float = 10.0
    weight_budget_1m: int = 3000  # of Binance's 6000 per IP: leave room for execution
    depth_levels: int = 20  # levels per side published on md.depth
    depth_snapshot_limit: int = 1000
    depth_speed_ms: int = 100
    max_backfill: int = 5000  # closed candles fetched at most to fill one gap
    cache_candles: int = 5000  # per (symbol, interval)
    history_max_limit: int = 5000
    max_ttl_s: float = 300.0
    queue_size: int = 10_000  # python-binance's per-socket message queue
    rest_url: str = ""  # overrides the mode's REST base (``http://host:port/api``)
    stream_url: str = ""  # overrides the mode's stream base (``ws://host:port/``)


def venue_urls(config: Config, settings: MarketdataSettings) -> tuple[str, str]:
    """(REST base ending in ``/api``, stream base ending in ``/``) for the configured mode."""
    if config.mode == "sim":
        rest, streams = f"{config.sim_url}/api", f"ws://{config.sim_host}:{config.sim_port}/"
    elif config.mode == "testnet":
        rest, streams = TESTNET_REST, TESTNET_STREAMS
    else:  # paper and live read the real public market: no key needed
        rest, streams = BINANCE_REST, BINANCE_STREAMS
    return settings.rest_url or rest, settings.stream_url or streams
