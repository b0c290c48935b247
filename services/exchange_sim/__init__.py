"""Offline Binance Spot venue: REST + WebSocket on loopback that unmodified python-binance uses.

    venue = Venue(clock, [AccountConfig(api_key, api_secret)])   # venue.py
    server = SimServer(venue, host="127.0.0.1", port=9010)        # server.py; port=0 in tests
    server.start(); ...; server.stop()

Modules: ``market`` (price paths, klines, trades, books), ``streams`` (market streams),
``venue`` (accounts and orders over ``shared.matching``), ``operations`` (every REST / WS-API
call), ``auth`` (keys, HMAC, timestamps), ``ratelimit`` (weights, 429/418), ``faults``
(``/sim/faults``), ``ws_api`` (``/ws-api/v3`` and user data), ``server`` (aiohttp app),
``paper`` (MODE=paper: the real market relayed, orders matched here), ``settings`` (the
``SIM_*`` variables), ``bench`` (``make bench`` rows).
"""
