"""Market data: the one connection to Binance market streams, republished on ``md.*``."""
