"""Child process of the crash test: records fills forever, printing each id once committed.

Usage: python crash_writer.py DATA_DIR
"""

from __future__ import annotations

import sys

from services.state.store import Store


def main(data_dir: str) -> None:
    store = Store.open(data_dir)
    store.record_order_event({
        "client_order_id": "crash-1", "bot_id": 1, "symbol": "BTCUSDT", "side": "BUY",
        "type": "MARKET", "qty": "1000000", "status": "NEW",
    })
    trade_id = 0
    while True:
        trade_id += 1
        store.record_fill({
            "symbol": "BTCUSDT", "trade_id": trade_id, "client_order_id": "crash-1",
            "side": "BUY", "price": "100", "qty": "0.001", "commission": "0.000001",
            "commission_asset": "BTC",
        })
        print(trade_id, flush=True)  # acknowledged only after the durable commit


if __name__ == "__main__":
    main(sys.argv[1])
