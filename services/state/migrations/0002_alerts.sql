-- Version 2: important log records (critical errors, bans, kill switch) kept for the dashboard.

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    service TEXT NOT NULL,
    message TEXT NOT NULL,
    bot_id INTEGER REFERENCES bots (id),
    acknowledged INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alerts_by_level ON alerts (level, id);
CREATE INDEX orders_by_symbol ON orders (symbol, id);
CREATE INDEX trades_by_symbol ON trades (symbol, id);
