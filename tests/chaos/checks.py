"""The end-of-run invariants of the chaos run, as pure functions over what was collected.

Each check takes plain data (the venue's REST answers, the state service's rows) and returns a
list of violations, one readable line each; an empty list means the invariant holds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from shared.filters import ROUND_DOWN, round_to_step

ZERO = Decimal(0)
# client ids made by services/execution/orders.py: b<bot>-<role><gen>-<digest>
_CID = re.compile(r"^b([A-Za-z0-9]{1,8})-([ECLST])(\d{1,4})-([0-9a-f]{20})$")


def dec(value: Any) -> Decimal:
    return ZERO if value in (None, "") else Decimal(str(value))


def no_client_id_twice(venue_orders: Iterable[Mapping]) -> list[str]:
    """No ``newClientOrderId`` was placed twice at the venue (allOrders of every symbol)."""
    counts = Counter(o["clientOrderId"] for o in venue_orders)
    return [f"clientOrderId {cid} placed {n} times at the venue"
            for cid, n in sorted(counts.items()) if n > 1]


def fills_recorded_once(venue_trades: Iterable[Mapping], state_fills: Iterable[Mapping],
                        ) -> list[str]:
    """Every venue trade (myTrades) is in state exactly once, with its price and quantity;
    state holds no fill the venue does not know."""
    venue = {(t["symbol"], str(t["id"])): t for t in venue_trades}
    counts: Counter = Counter()
    rows: dict[tuple[str, str], Mapping] = {}
    for fill in state_fills:
        key = (fill["symbol"], str(fill["trade_id"]))
        counts[key] += 1
        rows[key] = fill
    problems = [f"venue trade {s}#{i} recorded {counts[(s, i)]} times in state"
                for (s, i) in sorted(counts) if counts[(s, i)] > 1]
    problems += [f"venue trade {s}#{i} (order {venue[(s, i)]['orderId']}) missing in state"
                 for (s, i) in sorted(venue) if (s, i) not in counts]
    problems += [f"state fill {s}#{i} unknown at the venue" for (s, i) in sorted(counts)
                 if (s, i) not in venue]
    for key in sorted(set(venue) & set(rows)):
        t, f = venue[key], rows[key]
        if (dec(t["price"]), dec(t["qty"])) != (dec(f["price"]), dec(f["qty"])):
            problems.append(f"fill {key[0]}#{key[1]}: venue {t['qty']}@{t['price']}, "
                            f"state {f['qty']}@{f['price']}")
    return problems


def balances_equal(venue_balances: Iterable[Mapping], state_balances: Iterable[Mapping],
                   ) -> list[str]:
    """State's balances (free and locked per asset) equal the venue account's."""
    venue = {b["asset"]: (dec(b["free"]), dec(b["locked"])) for b in venue_balances}
    state = {b["asset"]: (dec(b["free"]), dec(b["locked"])) for b in state_balances}
    problems = []
    for asset in sorted(set(venue) | set(state)):
        v, s = venue.get(asset, (ZERO, ZERO)), state.get(asset, (ZERO, ZERO))
        if v != s:
            problems.append(f"balance {asset}: venue free={v[0]} locked={v[1]}, "
                            f"state free={s[0]} locked={s[1]}")
    return problems


def positions_equal(venue_balances: Iterable[Mapping], state_positions: Iterable[Mapping],
                    base_assets: Mapping[str, str]) -> list[str]:
    """Per symbol, the bots' positions in state add up to the venue's base asset holding
    (free + locked): the account has no base asset that no bot owns, and no bot holds more
    than the account has. ``base_assets`` maps each traded symbol to its base asset."""
    held = {b["asset"]: dec(b["free"]) + dec(b["locked"]) for b in venue_balances}
    owned: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for position in state_positions:
        owned[position["symbol"]] += dec(position["qty"])
    problems = []
    for symbol, base in sorted(base_assets.items()):
        if held.get(base, ZERO) != owned[symbol]:
            problems.append(f"position {symbol}: venue holds {held.get(base, ZERO)} {base}, "
                            f"the bots' positions in state add up to {owned[symbol]}")
    return problems


def positions_protected(state_positions: Iterable[Mapping], venue_open: Iterable[Mapping],
                        filters: Mapping[str, Mapping[str, Decimal]]) -> list[str]:
    """Every open position has a protective OCO at the venue whose stop leg covers it, but for
    a remainder worth less than minNotional (unsellable dust, e.g. left by base-asset fees).

    ``filters[symbol]`` holds ``step`` (LOT_SIZE stepSize), ``min_notional`` and ``price``."""
    cover: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for order in venue_open:
        match = _CID.match(order.get("clientOrderId", ""))
        if match and match[2] == "S" and order.get("orderListId", -1) != -1:
            cover[(match[1], order["symbol"])] += dec(order["origQty"]) - dec(order["executedQty"])
    problems = []
    for position in state_positions:
        symbol, qty = position["symbol"], dec(position["qty"])
        covered = cover.pop((str(position["bot_id"]), symbol), ZERO)
        f = filters.get(symbol)
        # bare and sellable: the venue sells whole steps, so what is left below a step counts
        # for nothing (a remainder it would refuse to sell cannot be protected either)
        bare = round_to_step(max(qty - covered, ZERO), f["step"], ROUND_DOWN) if f else ZERO
        if f is not None and bare * f["price"] >= f["min_notional"]:
            problems.append(f"bot {position['bot_id']} holds {qty} {symbol} but its protective "
                            f"stop at the venue covers {covered}")
        elif covered > qty:
            problems.append(f"bot {position['bot_id']} holds {qty} {symbol} but its protective "
                            f"stops at the venue sell {covered} (would oversell)")
    problems += [f"bot {bot} holds no {symbol} but has protective stops for {qty} at the venue"
                 for (bot, symbol), qty in sorted(cover.items()) if qty > 0]
    return problems


def no_bot_oversold(venue_orders: Iterable[Mapping], venue_trades: Iterable[Mapping],
                    base_assets: Mapping[str, str]) -> list[str]:
    """At the venue, no bot sold more base than it bought (net of base-asset fees): with one
    account shared by all bots, an oversell spends another bot's holding. Orders are
    attributed to bots by their client ids; the running balance is checked in trade order."""
    owner = {(o["symbol"], o["orderId"]): m[1] for o in venue_orders
             if (m := _CID.match(o.get("clientOrderId", "")))}
    held: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    worst: dict[tuple[str, str], Decimal] = {}
    for t in sorted(venue_trades, key=lambda t: (t["symbol"], t["id"])):
        bot = owner.get((t["symbol"], t["orderId"]))
        if bot is None:
            continue
        key = (bot, t["symbol"])
        qty = dec(t["qty"])
        fee = dec(t["commission"]) if t.get("commissionAsset") == base_assets.get(t["symbol"]) \
            else ZERO
        held[key] += (qty - fee) if t["isBuyer"] else -(qty + fee)
        if held[key] < 0:
            worst[key] = min(worst.get(key, ZERO), held[key])
    return [f"bot {bot} sold {-low} {symbol} more than it had bought at the venue "
            f"(another bot's holding was sold)" for (bot, symbol), low in sorted(worst.items())]


def services_healthy(health: Mapping[str, Mapping], workers: int) -> list[str]:
    """Every service heartbeats (``/api/health``), with all ``workers`` strategy copies up."""
    problems = [f"service {name} is down (last seen {info.get('last_seen_s')} s ago)"
                for name, info in sorted(health.items()) if not info.get("up")]
    up = health.get("strategy", {}).get("up_instances", 0)
    if up != workers:
        problems.append(f"{up} strategy workers up, expected {workers}")
    return problems
