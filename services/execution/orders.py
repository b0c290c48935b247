"""Orders that cannot double: deterministic client order ids and query-before-retry placement.

An order's ``newClientOrderId`` is derived from the intent id (plus a role and a generation
for protective legs), so the same intent always names the same order. When a placement ends
in a timeout, a 5xx or -1007, the placer asks the exchange for that client id before it
decides to send again; a "Duplicate order sent" answer is resolved the same way.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.execution.client import ExchangeClient
from shared.errors import (
    ExchangeError,
    InvalidOrderError,
    TemporaryError,
    UnknownOrderError,
    UnknownStatusError,
)

log = logging.getLogger(__name__)

ROLE_ENTRY = "E"  # an intent's own order
ROLE_CLOSE = "C"  # a close-position order
ROLE_LIST = "L"  # a protective OCO list
ROLE_STOP = "S"  # its stop-loss leg
ROLE_PROFIT = "T"  # its take-profit leg
_ID = re.compile(r"^b([A-Za-z0-9]{1,8})-([ECLST])(\d{1,4})-([0-9a-f]{20})$")
MAX_SEND_ATTEMPTS = 3
QUERY_BACKOFF_S = (0.0, 0.2, 0.5)


def _bot_part(bot_id: str) -> str:
    part = re.sub(r"[^A-Za-z0-9]", "", str(bot_id))[:8]
    return part or "0"


def client_order_id(intent_id: str, bot_id: str, role: str = ROLE_ENTRY, gen: int = 0) -> str:
    """The deterministic ``newClientOrderId`` (≤ 36 chars, ``[A-Za-z0-9-]``) of an order."""
    digest = hashlib.sha256(f"{intent_id}".encode()).hexdigest()[:20]
    return f"b{_bot_part(bot_id)}-{role}{gen % 10000}-{digest}"


@dataclass(frozen=True)
class ParsedId:
    """What a client order id made by :func:`client_order_id` says."""

    bot_id: str
    role: str
    gen: int
    digest: str


def parse_client_order_id(cid: str) -> ParsedId | None:
    match = _ID.match(cid or "")
    if match is None:
        return None
    return ParsedId(match.group(1), match.group(2), int(match.group(3)), match.group(4))


def fmt_decimal(value: Decimal) -> str:
    """A decimal as Binance wants it: fixed point, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


@dataclass(frozen=True)
class OrderSpec:
    """One order ready to send: already rounded and checked."""

    symbol: str
    side: str
    order_type: str
    client_order_id: str
    quantity: Decimal | None = None
    quote_qty: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"symbol": self.symbol, "side": self.side, "type": self.order_type,
                               "newClientOrderId": self.client_order_id,
                               "newOrderRespType": "FULL"}
        for name, value in (("quantity", self.quantity), ("quoteOrderQty", self.quote_qty),
                            ("price", self.price), ("stopPrice", self.stop_price)):
            if value is not None:
                out[name] = fmt_decimal(value)
        if self.time_in_force:
            out["timeInForce"] = self.time_in_force
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class OcoSpec:
    """A protective OCO: take-profit LIMIT_MAKER above, STOP_LOSS_LIMIT below (for a SELL)."""

    symbol: str
    side: str
    quantity: Decimal
    take_profit: Decimal
    stop_price: Decimal
    stop_limit_price: Decimal
    list_client_order_id: str
    stop_client_order_id: str
    profit_client_order_id: str

    def stop_leg(self) -> OrderSpec:
        """The stop-loss alone, as one STOP_LOSS_LIMIT order (no take-profit given)."""
        return OrderSpec(self.symbol, self.side, "STOP_LOSS_LIMIT", self.stop_client_order_id,
                         quantity=self.quantity, price=self.stop_limit_price,
                         stop_price=self.stop_price, time_in_force="GTC")

    def params(self) -> dict[str, Any]:
        if self.side != "SELL":
            raise InvalidOrderError("protective OCO is only supported for long positions")
        return {
            "symbol": self.symbol, "side": self.side, "quantity": fmt_decimal(self.quantity),
            "listClientOrderId": self.list_client_order_id,
            "aboveType": "LIMIT_MAKER", "abovePrice": fmt_decimal(self.take_profit),
            "aboveClientOrderId": self.profit_client_order_id,
            "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": fmt_decimal(self.stop_price),
            "belowPrice": fmt_decimal(self.stop_limit_price), "belowTimeInForce": "GTC",
            "belowClientOrderId": self.stop_client_order_id,
        }


class OrderPlacer:
    """Sends orders so that one spec makes at most one order on the exchange."""

    def __init__(self, client: ExchangeClient, wait: Callable[[float], None] | None = None):
        self.client = client
        self._wait = wait or threading.Event().wait

    def place(self, spec: OrderSpec) -> dict:
        """The exchange's order (response or query) for ``spec``; raises if refused.

        Once an attempt ended without a clear answer, every later failure (a refusal of the
        resend, a 429 on the query...) becomes UnknownStatusError: the order may exist, so
        the caller keeps the intent pending and reconciliation decides by client id.
        """
        return self._send_once(spec.client_order_id, spec.symbol, spec.client_order_id,
                               lambda: self.client.create_order(**spec.params()))

    def _send_once(self, what: str, symbol: str, probe_cid: str,
                   send: Callable[[], dict]) -> dict:
        ambiguous: Exception | None = None
        for attempt in range(MAX_SEND_ATTEMPTS):
            try:
                return send()
            except UnknownStatusError as exc:
                log.warning("sending %s: %s; asking the exchange first (attempt %d)",
                            what, exc, attempt + 1)
                ambiguous = exc
            except InvalidOrderError as exc:
                if ambiguous is None and "duplicate" not in str(exc).lower():
                    raise  # a clear refusal of a first send: nothing exists
                ambiguous = exc
            except (ExchangeError, TemporaryError) as exc:
                if ambiguous is None:
                    raise  # 429/418/-1021 before anything was processed: nothing exists
                raise UnknownStatusError(f"{what} unconfirmed: {exc}") from exc
            try:
                found = self.find(symbol, probe_cid)
            except (ExchangeError, TemporaryError) as exc:
                raise UnknownStatusError(f"{what} unconfirmed, cannot ask: {exc}") from exc
            if found is not None:
                return found
        raise UnknownStatusError(f"could not confirm {what}: {ambiguous}")

    def find(self, symbol: str, cid: str) -> dict | None:
        """The order ``cid``, or None only once the exchange *said* it does not know it.

        Asks a few times (a -1007 order may show up a moment later). If no query got an
        answer at all, raises UnknownStatusError: "could not ask" is never "not there".
        """
        answered = False
        for delay in QUERY_BACKOFF_S:
            if delay:
                self._wait(delay)
            try:
                found = self.client.get_order(symbol, cid)
            except UnknownStatusError:
                continue
            answered = True
            if found is not None:
                return found
        if not answered:
            raise UnknownStatusError(f"could not ask the exchange for order {cid}")
        return None

    def place_oco(self, spec: OcoSpec) -> dict:
        """Place an OCO once; after an unknown status, look for its stop leg by client id."""
        found = self._send_once(spec.list_client_order_id, spec.symbol,
                                spec.stop_client_order_id,
                                lambda: self.client.create_oco(**spec.params()))
        if "orderListId" in found and "contingencyType" in found:
            return found
        return {"orderListId": found.get("orderListId"),
                "listClientOrderId": spec.list_client_order_id, "recovered": True}

    def cancel(self, symbol: str, cid: str) -> dict | None:
        """Cancel by client id; None when the exchange says it is unknown or already final."""
        try:
            return self.client.cancel_order(symbol, cid)
        except UnknownOrderError:
            return None
