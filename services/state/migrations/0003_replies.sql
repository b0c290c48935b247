-- Version 3: the reply to each request that carries a request_id (bot creation, param saves,
-- rollbacks, alerts), written in the same transaction as its changes: a retry after a crash
-- between the commit and the reply gets the first reply, never a second bot or version.

CREATE TABLE replies (
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    reply TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, request_id)
);
CREATE INDEX replies_by_age ON replies (ts_ms);
