"""The OpenAPI 3.1 document of the REST surface, written as data (``GET /api/openapi.json``).

A test checks that every route of the app is described here and that nothing here is
missing from the app; the fuzz test generates requests from it.
"""

from __future__ import annotations

from typing import Any

from shared.strategies import STRATEGIES
from shared.strategies.base import KLINE_INTERVALS_MS

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ORDER_STATUSES = ["OPEN", "PENDING_NEW", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL",
                  "FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"]

MAX_INT = 2**53  # the largest id or time the API accepts (exact in JavaScript)
OBJ: dict[str, Any] = {"type": "object"}
ERROR = {"$ref": "#/components/schemas/Error"}
PAGE = {"type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": OBJ},
                       "next_before": {"type": ["integer", "null"]}}}


def _int(name: str, where: str = "query", lo: int = 1, hi: int = MAX_INT,
         required: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema}


def _str(name: str, where: str = "query", required: bool = False, **schema) -> dict:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": {"type": "string", **schema}}


BOT_ID = _int("bot_id", "path")
SYMBOL = {"type": "string", "pattern": "^[A-Za-z0-9]{2,20}$"}  # upper-cased by the API
OPTIONAL_SYMBOL = "^([A-Za-z0-9]{2,20})?$"
INTERVALS = sorted(KLINE_INTERVALS_MS)


def _op(summary: str, *, params: list | None = None, body: dict | None = None,
        ok: dict | None = None, status: str = "200", tag: str = "api",
        body_required: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary, "tags": [tag], "parameters": params or [],
        "responses": {
            status: {"description": "success",
                     "content": {"application/json": {"schema": ok or OBJ}}},
            "default": {"description": "error",
                        "content": {"application/json": {"schema": ERROR}}},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": body_required,
                             "content": {"application/json": {"schema": body}}}
    return op


def _body(required: list[str], **properties) -> dict[str, Any]:
    """An object body; fields not required may also be null (meaning: left out)."""
    return {"type": "object", "required": required, "properties": {
        name: schema if name in required else _nullable(schema)
        for name, schema in properties.items()}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _report_page() -> dict[str, Any]:
    """A saved report's self-contained HTML page; a JSON 404 for any other name."""
    op = _op("A saved backtest report's HTML page", tag="reports",
             params=[_str("name", "path", pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")])
    op["responses"]["200"] = {"description": "the page",
                              "content": {"text/html": {"schema": {"type": "string"}}}}
    return op


PATHS: dict[str, dict[str, Any]] = {
    "/api/health": {"get": _op("Health of every service (last heartbeat)", tag="system")},
    "/api/session": {"get": _op("Auth state and the CSRF token; sets the session cookie",
                                tag="auth")},
    "/api/login": {"post": _op("Log in with the dashboard password", tag="auth",
                               body=_body(["password"], password={"type": "string"}))},
    "/api/logout": {"post": _op("End the session", tag="auth")},
    "/api/bots": {
        "get": _op("List bots", tag="bots", ok={"type": "object", "properties": {
            "items": {"type": "array", "items": OBJ}}}),
        "post": _op("Create a stopped bot", tag="bots", status="201", body=_body(
            ["strategy", "symbol", "timeframe"],
            strategy={"type": "string", "enum": sorted(STRATEGIES)}, symbol=SYMBOL,
            timeframe={"type": "string", "enum": INTERVALS}, params=OBJ,
            name={"type": "string", "maxLength": 100})),
    },
    "/api/bots/{bot_id}": {
        "get": _op("A bot with balances, mid price, position and PnL", tag="bots",
                   params=[BOT_ID]),
        "delete": _op("Delete a bot (its history stays)", tag="bots", params=[BOT_ID]),
    },
    "/api/bots/{bot_id}/start": {"post": _op("Desired status RUNNING", tag="bots",
                                             params=[BOT_ID])},
    "/api/bots/{bot_id}/stop": {"post": _op("Desired status STOPPED", tag="bots",
                                            params=[BOT_ID])},
    "/api/bots/{bot_id}/close": {"post": _op(
        "Close the bot's position now (cancel its orders, sell)", tag="execution",
        params=[BOT_ID], body=_body([], reason={"type": "string", "maxLength": 200}),
        body_required=False)},
    "/api/strategies": {"get": _op("Every strategy's params schema", tag="params")},
    "/api/bots/{bot_id}/params": {
        "get": _op("Current params version", tag="params", params=[BOT_ID]),
        "put": _op("Save a new params version (400 with every field error, nothing saved)",
                   tag="params", params=[BOT_ID], body=_body(
                       ["params"], params=OBJ,
                       strategy={"type": "string", "enum": sorted(STRATEGIES)}, symbol=SYMBOL,
                       timeframe={"type": "string", "enum": INTERVALS},
                       comment={"type": "string", "maxLength": 200})),
    },
    "/api/bots/{bot_id}/params/versions": {"get": _op("Params versions, newest first",
                                                      tag="params", params=[BOT_ID])},
    "/api/bots/{bot_id}/params/rollback": {"post": _op(
        "Save a copy of an older version as the newest", tag="params", params=[BOT_ID],
        body=_body(["version"], version={"type": "integer", "minimum": 1, "maximum": MAX_INT},
                   comment={"type": "string", "maxLength": 200}))},
    "/api/orders": {"get": _op("Orders, newest first, paged", tag="orders", ok=PAGE, params=[
        _int("bot"), _str("symbol", pattern=OPTIONAL_SYMBOL),
        _str("status", enum=["", *ORDER_STATUSES]), _int("limit", hi=500), _int("before")])},
    "/api/orders/{order_ref}": {"delete": _op(
        "Cancel an order by id or client order id", tag="execution",
        params=[_str("order_ref", "path", maxLength=64)])},
    "/api/trades": {"get": _op("Completed trades with performance", tag="orders", params=[
        _int("bot"), _str("symbol", pattern=OPTIONAL_SYMBOL), _int("limit", hi=500),
        _int("before")])},
    "/api/killswitch": {"post": _op("Kill switch on or off", tag="execution", body=_body(
        ["enabled"], enabled={"type": "boolean"}, reason={"type": "string", "maxLength": 200}))},
    "/api/execution": {"get": _op("Execution status: kill switch, pause, last sync",
                                  tag="execution")},
    "/api/candles": {"get": _op("Closed candles, oldest first", tag="market", params=[
        _str("symbol", required=True, pattern=SYMBOL["pattern"]),
        _str("interval", required=True, enum=INTERVALS), _int("limit", hi=1000),
        _int("end_time_ms")])},
    "/api/logs": {"get": _op("Recent logs from every service", tag="system", params=[
        _str("level", enum=["", *LEVELS]), _str("service", pattern="^[a-z_]{0,40}$"),
        _int("limit", hi=1000)])},
    "/api/alerts": {"get": _op("Important log records (alerts), newest first", tag="system",
                               ok=PAGE, params=[_str("level", enum=["", *LEVELS]),
                                                _int("limit", hi=500), _int("before")])},
    "/api/alerts/{alert_id}/ack": {"post": _op("Acknowledge an alert", tag="system",
                                               params=[_int("alert_id", "path")])},
    "/api/openapi.json": {"get": _op("This document", tag="system")},
    "/api/reports": {"get": _op(
        "Saved backtest reports (DATA_DIR/reports/index.json), newest first", tag="reports",
        ok={"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": OBJ}}})},
    "/reports/{name}.html": {"get": _report_page()},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Trading bot gateway", "version": "1",
                 "description": "REST control of the trading bot. WebSockets: /ws (channels "
                                "state, ticker, orders, logs, health) and /ws_logs; see "
                                "docs/api.md."},
        "paths": PATHS,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "object", "required": ["code", "message", "fields"],
                          "properties": {"code": {"type": "string"},
                                         "message": {"type": "string"},
                                         "fields": {"type": "object", "additionalProperties":
                                                    {"type": "string"}}}}}}},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "gateway_session"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}, {"bearer": []}, {}],
    }
