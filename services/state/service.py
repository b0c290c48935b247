"""State service: the SQLite store behind request/reply, its changes published as ``state.*``.

Each request is one store call. A write is acknowledged only once its transaction is
committed (``synchronous=FULL``), and only after its changes went out on the bus as
``StateChanged`` on ``state.<kind>`` with their sequence numbers, so a replica that follows
the bus (``shared.replica``) orders them against ``GetSnapshot``'s ``seq``. Bad input gets a
readable error reply; the service itself never stops over it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.state import db
from services.state.store import Outcome, Store, UnknownBotError
from shared import messages as m
from shared import topics
from shared.errors import StaleLeaseError, ValidationError
from shared.filters import dust_notional
from shared.service import ReplyService
from shared.strategies import get_strategy

log = logging.getLogger(__name__)

MARKET_PARAMS = ("strategy", "symbol", "timeframe")
"""Kept in the bot's own columns, not in its params dict (the worker merges them back)."""


def schema_validator(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """The store's validator: ``params`` checked against ``strategy``'s schema.

    Missing params take their defaults (so ``{}`` is a valid SWING set); every bad field is
    reported at once; decimals come back as strings. Symbol and timeframe are not stored
    here: they are the bot's columns.
    """
    schema = get_strategy(strategy).params_schema
    given = {name: value for name, value in params.items() if name not in MARKET_PARAMS}
    checked = schema.serialize(schema.validate(given, partial=True))
    return {name: value for name, value in checked.items() if name not in MARKET_PARAMS}


def _reply_to(outcome: Outcome) -> dict[str, Any]:
    return {"result": outcome.result, "value": outcome.value, "seq": outcome.seq}


def _order_event(request: m.RecordOrderEvent) -> dict[str, Any]:
    return {
        "client_order_id": request.client_order_id,
        "status": request.status or None,
        "bot_id": request.bot_id,
        "symbol": request.symbol or None,
        "side": request.side or None,
        "type": request.order_type or None,
        "time_in_force": request.time_in_force or None,
        "exchange_order_id": request.exchange_order_id,
        "price": request.price,
        "stop_price": request.stop_price,
        "qty": request.qty,
        "executed_qty": request.executed_qty,
        "cumulative_quote_qty": request.cumulative_quote_qty,
        "reject_reason": request.reject_reason or None,
        "ts_ms": request.ts_ms or None,
    }


def _fill(request: m.RecordFill) -> dict[str, Any]:
    return {
        "symbol": request.symbol,
        "trade_id": request.trade_id,
        "side": request.side,
        "price": request.price,
        "qty": request.qty,
        "quote_qty": request.quote_qty,
        "commission": request.commission,
        "commission_asset": request.commission_asset,
        "client_order_id": request.client_order_id or None,
        "exchange_order_id": request.exchange_order_id,
        "bot_id": request.bot_id,
        "is_maker": request.is_maker,
        "ts_ms": request.ts_ms or None,
    }


def _market(request: m.CreateBot | m.SetParams) -> tuple[dict[str, Any], dict[str, str]]:
    """Split params from strategy/symbol/timeframe, which may come inside them too."""
    params = dict(request.params)
    market = {}
    for name in MARKET_PARAMS:
        lifted = params.pop(name, None)
        value = getattr(request, name) or lifted
        if value:
            market[name] = value if isinstance(value, str) else str(value)
    return params, market


class StateService(ReplyService):
    """The source of truth: answers on the ``state`` endpoint, publishes ``state.<kind>``."""

    name = "state"
    endpoint_name = "state"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store: Store | None = None
        self.db_path = Path(self.config.data_dir) / db.DB_FILENAME
        self._seq = 0
        self._served = 0
        self._refused = 0
        self._handlers: dict[type[m.Message], Callable[[Any], Any]] = self._dispatch_table()

    # --- lifecycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        self.store = Store.open(self.config.data_dir, clock=self.clock,
                                validator=schema_validator, dust_notional=dust_notional())
        self._seq = self.store.seq
        log.info("state store open at %s (seq %d)", self.db_path, self._seq)
        super().on_start()

    def on_stop(self) -> None:
        super().on_stop()
        if self.store is not None:
            self.store.close()
            self.store = None

    def heartbeat_detail(self) -> dict:
        return {
            **self.status_detail,
            "seq": self._seq,
            "db": str(self.db_path),
            "served": self._served,
            "refused": self._refused,
        }

    # --- requests ------------------------------------------------------------------------

    def handle(self, request: m.Message) -> Any:
        handler = self._handlers.get(type(request))
        if handler is None or self.store is None:
            return super().handle(request)
        key = self._replay_key(request)
        try:
            if key is None:
                answer = handler(request)
            else:
                saved = self.store.saved_reply(*key)
                if saved is not None:
                    return saved
                with self.store.answer_once(*key) as keep:
                    answer = handler(request)
                    if isinstance(answer, Outcome):
                        keep(_reply_to(answer))
        except UnknownBotError as exc:
            return self._refuse("unknown_bot", str(exc), exc.fields)
        except ValidationError as exc:
            return self._refuse("invalid", str(exc), exc.fields)
        except StaleLeaseError as exc:
            return self._refuse("stale_lease", str(exc))
        except sqlite3.Error as exc:
            log.exception("storage failed on %s", request.type)
            return self._refuse("storage", f"the database refused the request: {exc}")
        self._served += 1
        if isinstance(answer, Outcome):
            self._publish(answer)
            answer = _reply_to(answer)
        return answer

    def _refuse(self, code: str, text: str, fields: dict[str, str] | None = None) -> m.Reply:
        self._refused += 1
        return m.Reply(ok=False, error_code=code, error_message=text, fields=fields or {})

    def _publish(self, outcome: Outcome) -> None:
        """Send each committed change on ``state.<kind>``, in sequence order."""
        for change in outcome.changes:
            self.publisher.publish(
                topics.state(change.kind),
                m.StateChanged(seq=change.seq, kind=change.kind, payload=change.payload),
            )
            self._seq = max(self._seq, change.seq)

    @staticmethod
    def _replay_key(request: m.Message) -> tuple[str, str] | None:
        request_id = getattr(request, "request_id", "")
        return (request.type, request_id) if request_id else None

    def _dispatch_table(self) -> dict[type[m.Message], Callable[[Any], Any]]:
        return {
            m.GetSnapshot: lambda r: self.store.snapshot(recent=r.recent),
            m.ListBots: lambda r: self.store.list_bots(),
            m.GetBot: lambda r: self.store.get_bot(r.bot_id),
            m.CreateBot: self._create_bot,
            m.DeleteBot: lambda r: self.store.delete_bot(r.bot_id),
            m.SetDesiredStatus: lambda r: self.store.set_desired_status(
                r.bot_id, r.desired_status),
            m.SetBotStatus: lambda r: self.store.set_status(
                r.bot_id, r.status, r.reason, epoch=r.epoch),
            m.GetParams: lambda r: self.store.get_params(r.bot_id, r.version),
            m.SetParams: self._set_params,
            m.ListParamVersions: lambda r: self.store.list_param_versions(r.bot_id),
            m.RollbackParams: lambda r: self.store.rollback_params(
                r.bot_id, r.version, r.comment or None),
            m.ClaimLease: lambda r: self.store.claim_lease(r.bot_id, r.owner, r.ttl_s),
            m.RenewLease: lambda r: self.store.renew_lease(r.bot_id, r.owner, r.epoch, r.ttl_s),
            m.ReleaseLease: lambda r: self.store.release_lease(r.bot_id, r.owner, r.epoch),
            m.CheckLease: lambda r: self.store.check_lease(r.bot_id, r.epoch),
            m.RecordOrderEvent: lambda r: self.store.record_order_event(_order_event(r)),
            m.RecordFill: lambda r: self.store.record_fill(_fill(r)),
            m.RecordBalances: self._record_balances,
            m.RecordAlert: lambda r: self.store.add_alert(
                r.level, r.service, r.message, r.bot_id),
            m.AcknowledgeAlert: lambda r: self.store.acknowledge_alert(r.alert_id),
            m.QueryOrders: lambda r: self.store.list_orders(
                bot_id=r.bot_id, symbol=r.symbol or None, status=r.status or None,
                limit=r.limit, before=r.before),
            m.QueryFills: lambda r: self.store.list_fills(
                bot_id=r.bot_id, symbol=r.symbol or None,
                client_order_id=r.client_order_id or None, limit=r.limit, before=r.before),
            m.QueryTrades: lambda r: self.store.list_trades(
                bot_id=r.bot_id, symbol=r.symbol or None, limit=r.limit, before=r.before),
            m.QueryAlerts: lambda r: self.store.list_alerts(
                level=r.level or None, limit=r.limit, before=r.before),
            m.GetPosition: lambda r: self.store.get_position(
                r.bot_id, r.symbol or None, r.mid_price),
        }

    def _create_bot(self, request: m.CreateBot) -> Outcome:
        params, market = _market(request)
        return self.store.create_bot(
            strategy=market.get("strategy", ""), symbol=market.get("symbol", ""),
            timeframe=market.get("timeframe", ""), params=params, name=request.name or None,
        )

    def _set_params(self, request: m.SetParams) -> Outcome:
        params, market = _market(request)
        return self.store.set_params(request.bot_id, params, comment=request.comment, **market)

    def _record_balances(self, request: m.RecordBalances) -> Outcome:
        assets = sorted(set(request.free) | set(request.locked))
        balances = [
            {"asset": asset, "free": request.free.get(asset), "locked": request.locked.get(asset)}
            for asset in assets
        ]
        return self.store.set_balances(balances, request.ts_ms or None)
