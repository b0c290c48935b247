"""Dropped, silent and gapped streams: reconnect with backoff, backfill klines, resync depth."""

from __future__ import annotations

from shared.messages import Heartbeat, SetMarketStreams
from tests.services.marketdata.conftest import assert_matches_venue, set_faults

KLINE = "md.kline.BTCUSDT.1s"


def closed_opens(tap) -> list[int]:
    return [c.open_time_ms for c in tap.messages(KLINE) if c.closed]


def assert_contiguous(opens: list[int], step_ms: int) -> None:
    assert len(opens) == len(set(opens)), "a closed candle was published twice"
    gaps = [(a, b) for a, b in zip(opens, opens[1:], strict=False) if b - a != step_ms]
    assert not gaps, f"closed candles missing or out of order: {gaps}"


def test_dropped_stream_reconnects_and_backfills_every_closed_candle(sim, start_md, md_client,
                                                                     tap):
    # a reconnect waits 1.5-3 s, so at least one 1 s candle closes while disconnected
    service = start_md(sim, backoff_min_s=3.0)
    md_client.call(SetMarketStreams("worker-1", (KLINE,), ttl_s=60))
    tap.wait_for(lambda: len(closed_opens(tap)) >= 2, 10, "two closed candles")

    for drop in (1, 2):
        set_faults(sim, drop_ws=True)
        tap.wait_for(lambda n=drop: service.supervisor.reconnects >= n, 5, "the drop")
        tap.wait_for(lambda: service.supervisor.connected, 10, "the reconnect")
    seen = len(closed_opens(tap))
    tap.wait_for(lambda: len(closed_opens(tap)) >= seen + 2, 10, "closed candles after it")

    opens = closed_opens(tap)
    assert_contiguous(opens, 1000)
    assert service.supervisor.backfilled() >= 2  # each drop lost at least one closed candle
    cached = service.supervisor.cache.run(("BTCUSDT", "1s"), opens[-1], len(opens), 1000)
    assert [c.open_time_ms for c in cached] == opens


def test_silent_stream_is_detected_and_reconnected(sim, relay, start_md, md_client, tap):
    service = start_md(sim, stream_url=relay.url, silence_s=1.0)
    md_client.call(SetMarketStreams("worker-1", (KLINE, "md.book.BTCUSDT"), ttl_s=60))
    tap.wait_for(lambda: closed_opens(tap), 10, "a closed candle")

    relay.paused = True  # the connection stays open, nothing comes through
    tap.wait_for(lambda: service.supervisor.reconnects >= 1, 5, "silence to be detected")
    tap.wait_for(lambda: relay.connections >= 2, 5, "a new connection")
    relay.paused = False

    seen = len(closed_opens(tap))
    tap.wait_for(lambda: len(closed_opens(tap)) >= seen + 2, 10, "candles after the silence")
    assert_contiguous(closed_opens(tap), 1000)
    assert service.supervisor.backfilled() >= 1


def test_depth_gap_triggers_a_snapshot_resync(sim, relay, start_md, md_client, tap):
    service = start_md(sim, stream_url=relay.url)
    md_client.call(SetMarketStreams("worker-1", ("md.depth.BTCUSDT",), ttl_s=60))
    tap.wait_for(lambda: len(tap.messages("md.depth.BTCUSDT")) >= 2, 10, "depth books")
    book = service.supervisor.books["BTCUSDT"]
    assert book.snapshots == 1

    relay.drop_next('"e":"depthUpdate"')  # one lost diff event: the next one's U jumps
    tap.wait_for(lambda: book.gaps == 1 and book.snapshots == 2, 10, "the gap and a resync")
    seen = len(tap.messages("md.depth.BTCUSDT"))
    tap.wait_for(lambda: len(tap.messages("md.depth.BTCUSDT")) >= seen + 2, 10, "books after it")

    ids = [d.last_update_id for d in tap.messages("md.depth.BTCUSDT")]
    assert ids == sorted(ids)
    assert relay.dropped == 1 and service.supervisor.reconnects == 0
    assert_matches_venue(sim, tap.messages("md.depth.BTCUSDT")[-1])


def test_service_heartbeats_and_retries_while_the_venue_is_away(start_md, md_client, tap):
    service = start_md(None, sim_port=1)  # nothing listens there

    md_client.call(SetMarketStreams("worker-1", (KLINE,), ttl_s=60))

    tap.wait_for(lambda: service.supervisor.reconnects >= 2, 10, "connection retries")
    beats = tap.wait_for(lambda: [b for b in tap.messages("health.marketdata", Heartbeat)
                                  if b.status == "DEGRADED"], 5, "a DEGRADED heartbeat")
    assert beats[-1].detail["streams"]["connected"] is False
