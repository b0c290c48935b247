-- Version 1: bots, versioned params, orders, fills, positions, balances, trades, leases.
-- Decimal amounts are TEXT (exact decimal strings); times are integer milliseconds.

CREATE TABLE state_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO state_seq (id, value) VALUES (1, 0);

CREATE TABLE bots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    desired_status TEXT NOT NULL DEFAULT 'STOPPED'
        CHECK (desired_status IN ('RUNNING', 'STOPPED')),
    status TEXT NOT NULL DEFAULT 'STOPPED'
        CHECK (status IN ('STOPPED', 'STARTING', 'RUNNING', 'STOPPING', 'ERROR')),
    status_reason TEXT NOT NULL DEFAULT '',
    params_version INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER
);

CREATE TABLE param_versions (
    bot_id INTEGER NOT NULL REFERENCES bots (id),
    version INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    params TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (bot_id, version)
);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL UNIQUE,
    exchange_order_id TEXT,
    bot_id INTEGER REFERENCES bots (id),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    type TEXT NOT NULL,
    time_in_force TEXT,
    price TEXT,
    stop_price TEXT,
    qty TEXT NOT NULL,
    status TEXT NOT NULL,
    executed_qty TEXT NOT NULL DEFAULT '0',
    cumulative_quote_qty TEXT NOT NULL DEFAULT '0',
    reject_reason TEXT NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX orders_by_bot ON orders (bot_id, id);
CREATE INDEX orders_by_status ON orders (status, id);

CREATE TABLE fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    client_order_id TEXT,
    exchange_order_id TEXT,
    bot_id INTEGER REFERENCES bots (id),
    side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    price TEXT NOT NULL,
    qty TEXT NOT NULL,
    quote_qty TEXT NOT NULL,
    commission TEXT NOT NULL,
    commission_asset TEXT NOT NULL DEFAULT '',
    is_maker INTEGER NOT NULL DEFAULT 0,
    realized_pnl TEXT,
    ts_ms INTEGER NOT NULL,
    UNIQUE (symbol, trade_id)
);
CREATE INDEX fills_by_order ON fills (client_order_id);

CREATE TABLE positions (
    bot_id INTEGER NOT NULL REFERENCES bots (id),
    symbol TEXT NOT NULL,
    qty TEXT NOT NULL,
    cost TEXT NOT NULL,
    opened_at_ms INTEGER,
    realized_pnl TEXT NOT NULL,
    fees_quote TEXT NOT NULL,
    book TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (bot_id, symbol)
);

CREATE TABLE balances (
    asset TEXT PRIMARY KEY,
    free TEXT NOT NULL,
    locked TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE trades (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id INTEGER REFERENCES bots (id),
    symbol TEXT NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER NOT NULL,
    buy_qty TEXT NOT NULL,
    sell_qty TEXT NOT NULL,
    entry_price TEXT NOT NULL,
    exit_price TEXT NOT NULL,
    cost TEXT NOT NULL,
    proceeds TEXT NOT NULL,
    fees_quote TEXT NOT NULL,
    pnl TEXT NOT NULL,
    pnl_pct TEXT NOT NULL
);
CREATE INDEX trades_by_bot ON trades (bot_id, id);

CREATE TABLE worker_leases (
    bot_id INTEGER PRIMARY KEY REFERENCES bots (id),
    owner TEXT,
    epoch INTEGER NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
