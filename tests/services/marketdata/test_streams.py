"""Market streams from the simulator arrive on the bus normalised; subscriptions follow TTLs."""

from __future__ import annotations

from shared.errors import ValidationError
from shared.messages import BookTicker, Candle, DepthBook, SetMarketStreams, StreamHealth
from tests.services.marketdata.conftest import assert_matches_venue

TOPICS = ("md.kline.BTCUSDT.1s", "md.book.BTCUSDT", "md.depth.BTCUSDT")


def test_klines_book_and_depth_arrive_normalised(sim, start_md, md_client, tap):
    start_md(sim)

    reply = md_client.call(SetMarketStreams("worker-1", TOPICS, ttl_s=30))

    assert reply["active"] == sorted(TOPICS)
    tap.wait_for(lambda: [c for c in tap.messages("md.kline.BTCUSDT.1s") if c.closed], 10,
                 "a closed candle")
    tap.wait_for(lambda: tap.messages("md.depth.BTCUSDT"), 10, "a depth book")
    tap.wait_for(lambda: tap.messages("md.book.BTCUSDT"), 10, "a book ticker")
    candles = tap.messages("md.kline.BTCUSDT.1s")
    assert all(isinstance(c, Candle) and c.symbol == "BTCUSDT" and c.interval == "1s"
               for c in candles)
    assert any(not c.closed for c in candles)
    closed = [c for c in candles if c.closed][0]
    assert closed.close_time_ms == closed.open_time_ms + 999
    assert closed.low <= min(closed.open, closed.close) <= max(closed.open, closed.close) \
        <= closed.high
    book = tap.messages("md.book.BTCUSDT")[-1]
    assert isinstance(book, BookTicker) and 0 < book.bid < book.ask and book.update_id > 0
    depth = tap.messages("md.depth.BTCUSDT")[-1]
    assert isinstance(depth, DepthBook) and len(depth.bids) == len(depth.asks) == 20
    bid_prices = [p for p, _ in depth.bids]
    ask_prices = [p for p, _ in depth.asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0]
    assert all(q > 0 for _, q in depth.bids + depth.asks)


def test_depth_books_follow_the_diff_stream_without_gaps(sim, start_md, md_client, tap):
    service = start_md(sim)
    md_client.call(SetMarketStreams("worker-1", ("md.depth.BTCUSDT",), ttl_s=30))

    tap.wait_for(lambda: len(tap.messages("md.depth.BTCUSDT")) >= 4, 15, "four depth books")

    ids = [d.last_update_id for d in tap.messages("md.depth.BTCUSDT")]
    assert ids == sorted(ids)
    book = service.supervisor.books["BTCUSDT"]
    assert book.snapshots == 1 and book.gaps == 0
    assert_matches_venue(sim, tap.messages("md.depth.BTCUSDT")[-1])



def test_streams_stop_when_the_subscriber_stops_renewing(sim, start_md, md_client, tap):
    service = start_md(sim)

    md_client.call(SetMarketStreams("worker-1", ("md.book.BTCUSDT",), ttl_s=1.0))
    tap.wait_for(lambda: service.supervisor.connected, 10, "the stream to connect")

    tap.wait_for(lambda: not service.supervisor.connected and service.registry.subscribers() == 0,
                 10, "the expired subscription to close the stream")
    def health_after_connecting() -> list[StreamHealth]:
        reports = tap.messages(kind=StreamHealth)
        first = next((i for i, h in enumerate(reports) if h.connected), len(reports))
        return [h for h in reports[first:] if not h.connected and not h.streams]

    health = tap.wait_for(health_after_connecting, 5, "health without streams")
    assert health[-1].reconnects == 0


def test_bad_topics_are_refused_with_every_field(sim, start_md, md_client):
    start_md(sim)

    try:
        md_client.call(SetMarketStreams("", ("md.kline.BTCUSDT.7m", "md.trades.X"), ttl_s=0))
    except ValidationError as exc:
        assert set(exc.fields) == {"subscriber", "ttl_s", "interval", "topics"}
    else:
        raise AssertionError("bad topics were accepted")


def test_symbols_the_venue_does_not_list_are_refused(sim, start_md, md_client, tap):
    service = start_md(sim)
    tap.wait_for(lambda: service.supervisor.symbols, 10, "the venue's symbol list")

    try:
        md_client.call(SetMarketStreams("worker-1", ("md.book.NOSUCHUSDT",), ttl_s=30))
    except ValidationError as exc:
        assert "NOSUCHUSDT" in exc.fields["topics"]
    else:
        raise AssertionError("an unlisted symbol was accepted")
    assert "BTCUSDT" in service.supervisor.symbols


def test_the_connection_follows_the_union_of_subscribers(sim, start_md, md_client, tap):
    service = start_md(sim)
    md_client.call(SetMarketStreams("worker-1", ("md.kline.BTCUSDT.1s",), ttl_s=30))
    reply = md_client.call(SetMarketStreams("worker-2", ("md.book.ETHUSDT",), ttl_s=30))
    assert reply["active"] == ["md.book.ETHUSDT", "md.kline.BTCUSDT.1s"]
    tap.wait_for(lambda: len(service.supervisor.streams) == 2 and service.supervisor.connected,
                 10, "both streams on one connection")

    reply = md_client.call(SetMarketStreams("worker-2", (), ttl_s=30))  # worker-2 lets go

    assert reply["active"] == ["md.kline.BTCUSDT.1s"]
    tap.wait_for(lambda: service.supervisor.streams == ("btcusdt@kline_1s",)
                 and service.supervisor.connected, 10, "the connection without ETHUSDT")
    seen = len(tap.messages("md.kline.BTCUSDT.1s"))
    tap.wait_for(lambda: len(tap.messages("md.kline.BTCUSDT.1s")) > seen, 10, "klines still")
    assert service.supervisor.reconnects == 0  # a resubscription is not a fault
