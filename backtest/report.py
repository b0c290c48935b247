"""Backtest report: metrics, the per-trade list, JSON and a self-contained HTML page.

Metrics (all from the mark-to-close equity curve and the round trips):

* ``total_return``: final equity / starting equity - 1 (equity = quote + base x close).
* ``max_drawdown``: the largest fall from a running peak of equity, as a positive fraction.
* ``sharpe`` / ``sortino``: mean per-candle simple return over its standard deviation (sample,
  ddof=1) / over the downside deviation ``sqrt(mean(min(r, 0)^2))``, risk-free rate 0, each
  multiplied by ``sqrt(candles per year)`` with a 365-day year (crypto trades every day):
  525,600 for 1m candles. None when the deviation is zero.
* ``win_rate``: round trips with pnl > 0 / round trips. ``profit_factor``: gross profit / gross
  loss (None when there is no loss).
* ``avg_trade_duration_s``, ``exposure`` (fraction of candles closing with a position worth at
  least the symbol's minimum notional), ``fees_paid`` (quote; base fees valued at the fill price).

A round trip starts with the first BUY fill from flat and ends with the fill after which the
position is flat (dust below the minimum notional left behind counts as lost).

The HTML page draws its charts as inline SVG (no script from anywhere, works offline): candles
(bucketed to at most ``MAX_BARS`` bars), entries and exits, the equity curve, then the trades.
"""

from __future__ import annotations

import html
import json
import math
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from backtest.engine import BacktestResult, FillRecord, symbol_filters
from backtest.history import iso
from shared.strategies.base import KLINE_INTERVALS_MS

YEAR_MS = 365 * 86_400_000
MAX_BARS = 600
MAX_POINTS = 1500
MAX_TABLE_ROWS = 1000
MAX_MARKERS = 3000


@dataclass(frozen=True)
class RoundTrip:
    """One trade: from the first BUY fill out of flat to the fill that makes the bot flat."""

    entry_time_ms: int
    exit_time_ms: int | None
    entry_price: Decimal
    exit_price: Decimal | None
    qty: Decimal
    cost: Decimal
    proceeds: Decimal
    fees: Decimal
    entry_reason: str
    exit_reason: str

    @property
    def closed(self) -> bool:
        return self.exit_time_ms is not None

    @property
    def pnl(self) -> Decimal:
        return self.proceeds - self.cost

    def to_dict(self) -> dict[str, Any]:
        duration = None if self.exit_time_ms is None else (
            (self.exit_time_ms - self.entry_time_ms) / 1000)
        return {
            "entry_time_ms": self.entry_time_ms, "entry_time": iso(self.entry_time_ms),
            "exit_time_ms": self.exit_time_ms,
            "exit_time": iso(self.exit_time_ms) if self.exit_time_ms else None,
            "entry_price": str(self.entry_price),
            "exit_price": str(self.exit_price) if self.exit_price is not None else None,
            "qty": str(self.qty), "cost": str(self.cost), "proceeds": str(self.proceeds),
            "pnl": str(self.pnl), "return": float(self.pnl / self.cost) if self.cost else 0.0,
            "fees": str(self.fees), "duration_s": duration,
            "entry_reason": self.entry_reason, "exit_reason": self.exit_reason,
        }


def _fee_in_quote(fill: FillRecord, quote_asset: str) -> Decimal:
    if fill.commission_asset == quote_asset:
        return fill.commission
    return fill.commission * fill.price


def round_trips(fills: list[FillRecord], quote_asset: str) -> list[RoundTrip]:
    """Group fills into round trips; an unfinished one is returned open (no exit).

    Base left over after a trip (dust below the minimum quantity) is carried into the next
    one: a trip's pnl counts the dust it ends with at its exit price and the dust it started
    with at its entry price, so the trips' pnl add up to the change in equity."""
    trips: list[RoundTrip] = []
    group: list[FillRecord] = []
    carried = Decimal(0)
    for fill in fills:
        if not group and fill.side != "BUY":
            carried -= fill.qty  # a sell of dust left by an earlier trip
            continue
        group.append(fill)
        if fill.closes_trade:
            trip, carried = _trip(group, quote_asset, carried, closed=True)
            trips.append(trip)
            group = []
    if group:
        trips.append(_trip(group, quote_asset, carried, closed=False)[0])
    return trips


def _trip(group: list[FillRecord], quote_asset: str, carried: Decimal,
          closed: bool) -> tuple[RoundTrip, Decimal]:
    zero = Decimal(0)
    buys = [f for f in group if f.side == "BUY"]
    sells = [f for f in group if f.side == "SELL"]
    bought = sum((f.qty for f in buys), zero)
    held = bought - sum((f.commission for f in buys if f.commission_asset != quote_asset), zero)
    sold = sum((f.qty for f in sells), zero)
    cost = sum((f.price * f.qty for f in buys), zero)
    gross = sum((f.price * f.qty for f in sells), zero)
    quote_fees = sum((f.commission for f in sells if f.commission_asset == quote_asset), zero)
    fees = sum((_fee_in_quote(f, quote_asset) for f in group), zero)
    entry_price = (cost / bought).quantize(Decimal("0.00000001"))
    exit_price = (gross / sold).quantize(Decimal("0.00000001")) if sold else None
    left = carried + held - sold
    proceeds = gross - quote_fees
    if closed and exit_price is not None:
        proceeds += left * exit_price - carried * entry_price
    trip = RoundTrip(
        entry_time_ms=buys[0].ts_ms,
        exit_time_ms=group[-1].ts_ms if closed else None,
        entry_price=entry_price, exit_price=exit_price,
        qty=bought, cost=cost, proceeds=proceeds, fees=fees,
        entry_reason=buys[0].reason, exit_reason=sells[-1].reason if sells else "",
    )
    return trip, left


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 or not math.isfinite(den) else num / den


def compute_metrics(result: BacktestResult) -> dict[str, Any]:
    """The headline numbers of one run (see the module docstring for definitions)."""
    config = result.config
    filters = symbol_filters(config.symbol)
    start_equity = float(config.starting_quote)
    equity = result.equity
    curve = np.concatenate([[start_equity], equity])
    peaks = np.maximum.accumulate(curve)
    drawdown = float(np.max(1.0 - curve / peaks)) if len(curve) else 0.0
    returns = np.diff(curve) / curve[:-1]
    per_year = YEAR_MS / KLINE_INTERVALS_MS[config.interval]
    std = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    mean = float(np.mean(returns)) if len(returns) else 0.0
    sharpe = _ratio(mean, std)
    sortino = _ratio(mean, downside)
    trips = [t for t in round_trips(result.fills, filters.quote_asset) if t.closed]
    pnls = [float(t.pnl) for t in trips]
    wins = [p for p in pnls if p > 0]
    losses = [-p for p in pnls if p < 0]
    durations = [(t.exit_time_ms or 0) - t.entry_time_ms for t in trips]
    closes = result.candles.close[result.start_index:]
    exposure = (float(np.mean(result.base_held * closes >= float(filters.min_notional)))
                if len(closes) else 0.0)
    fees = sum((_fee_in_quote(f, filters.quote_asset) for f in result.fills), Decimal(0))
    first_close = float(closes[0]) if len(closes) else 0.0
    return {
        "start_equity": start_equity,
        "end_equity": float(equity[-1]) if len(equity) else start_equity,
        "total_return": float(curve[-1] / start_equity - 1.0),
        "buy_and_hold_return": float(closes[-1] / first_close - 1.0) if first_close else 0.0,
        "max_drawdown": drawdown,
        "sharpe": None if sharpe is None else sharpe * math.sqrt(per_year),
        "sortino": None if sortino is None else sortino * math.sqrt(per_year),
        "annualisation": f"per-candle returns x sqrt({per_year:g}) (365-day year, rf = 0)",
        "trades": len(trips),
        "win_rate": len(wins) / len(trips) if trips else None,
        "profit_factor": _ratio(sum(wins), sum(losses)) if losses else None,
        "avg_trade_duration_s": (sum(durations) / len(durations) / 1000) if durations else None,
        "exposure": exposure,
        "fees_paid": float(fees),
        "fills": len(result.fills),
        "rejections": len(result.rejections),
        "candles": len(closes),
        "warmup_candles": result.start_index,
        "first_candle": iso(int(result.candles.open_time_ms[result.start_index]))
        if len(closes) else None,
        "last_candle": iso(int(result.candles.open_time_ms[-1])) if len(closes) else None,
    }


def build_report(result: BacktestResult) -> dict[str, Any]:
    """The JSON document: config, metrics, trades, fills, rejections, a thinned equity curve."""
    filters = symbol_filters(result.config.symbol)
    times = result.candles.open_time_ms[result.start_index:]
    keep = _thin(len(times), MAX_POINTS)
    return {
        "kind": "backtest",
        "config": result.config.to_dict(),
        "driver": result.driver,
        "elapsed_s": result.elapsed_s,
        "metrics": compute_metrics(result),
        "trades": [t.to_dict() for t in round_trips(result.fills, filters.quote_asset)],
        "fills": [_fill_dict(f) for f in result.fills],
        "rejections": [vars(r) for r in result.rejections],
        "equity_curve": [[int(times[i]), float(result.equity[i])] for i in keep],
    }


def _fill_dict(fill: FillRecord) -> dict[str, Any]:
    out = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in vars(fill).items()}
    out["time"] = iso(fill.ts_ms)
    return out


def _thin(n: int, most: int) -> list[int]:
    if n <= most:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, most).astype(int).tolist()))


# --------------------------------------------------------------------------- writing


def slug(report: dict[str, Any]) -> str:
    c = report["config"]
    first = (report["metrics"].get("first_candle") or "").replace(":", "").replace("-", "")
    digest = zlib.crc32(json.dumps(c, sort_keys=True).encode()) % 10**6
    return f"{c['strategy']}_{c['symbol']}_{c['interval']}_{first[:13]}_{digest:06d}"


def write_report(result: BacktestResult, out_dir: str | Path, name: str | None = None
                 ) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.html`` into ``out_dir`` and update its index.json."""
    report = build_report(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or slug(report)
    json_path, html_path = out / f"{name}.json", out / f"{name}.html"
    json_path.write_text(json.dumps(report, indent=1))
    html_path.write_text(render_html(report, result))
    update_index(out)
    return json_path, html_path


def update_index(out_dir: Path) -> Path:
    """``index.json``: one entry per saved report (newest first), for the dashboard's list."""
    entries = []
    for path in sorted(out_dir.glob("*.json")):
        if path.name == "index.json":
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if report.get("kind") != "backtest":
            continue
        m = report["metrics"]
        entries.append({
            "name": path.stem, "json": path.name, "html": f"{path.stem}.html",
            "created_ms": int(path.stat().st_mtime * 1000),
            "strategy": report["config"]["strategy"], "symbol": report["config"]["symbol"],
            "interval": report["config"]["interval"], "first_candle": m["first_candle"],
            "last_candle": m["last_candle"], "total_return": m["total_return"],
            "max_drawdown": m["max_drawdown"], "sharpe": m["sharpe"], "trades": m["trades"],
        })
    entries.sort(key=lambda e: e["created_ms"], reverse=True)
    index = out_dir / "index.json"
    index.write_text(json.dumps({"reports": entries}, indent=1))
    return index


# --------------------------------------------------------------------------- HTML / SVG

W, H_PRICE, H_EQUITY, PAD = 1100, 360, 200, 56


def _scale(lo: float, hi: float, top: float, height: float):
    span = (hi - lo) or 1.0
    return lambda v: top + height - (v - lo) / span * height


def _buckets(result: BacktestResult) -> list[tuple[int, int, float, float, float, float]]:
    c, s = result.candles, result.start_index
    n = len(c) - s
    size = max(1, math.ceil(n / MAX_BARS))
    bars = []
    for a in range(s, len(c), size):
        b = min(a + size, len(c))
        bars.append((int(c.open_time_ms[a]), int(c.open_time_ms[b - 1]), float(c.open[a]),
                     float(c.high[a:b].max()), float(c.low[a:b].min()), float(c.close[b - 1])))
    return bars


def _price_svg(report: dict[str, Any], result: BacktestResult) -> str:
    bars = _buckets(result)
    if not bars:
        return "<p>No candles.</p>"
    t0, t1 = bars[0][0], bars[-1][1] or bars[0][0] + 1
    x = lambda t: PAD + (t - t0) / ((t1 - t0) or 1) * (W - 2 * PAD)  # noqa: E731
    lo, hi = min(b[4] for b in bars), max(b[3] for b in bars)
    y = _scale(lo, hi, 10, H_PRICE - 30)
    width = max(1.0, (W - 2 * PAD) / len(bars) * 0.7)
    parts = [f'<svg viewBox="0 0 {W} {H_PRICE}" role="img" aria-label="candles and trades">',
             _axis(lo, hi, y, H_PRICE, t0, t1)]
    for start, _, o, h, low, cl in bars:
        cx = x(start) + width / 2
        color = "#1a9850" if cl >= o else "#d73027"
        top, bottom = sorted((y(o), y(cl)))
        parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(h):.1f}" y2="{y(low):.1f}" '
                     f'stroke="{color}"/><rect x="{x(start):.1f}" y="{top:.1f}" '
                     f'width="{width:.1f}" height="{max(bottom - top, 0.6):.1f}" fill="{color}"/>')
    fills = report["fills"]
    for k in _thin(len(fills), MAX_MARKERS):
        fill = fills[k]
        fx, fy = x(fill["ts_ms"]), y(float(fill["price"]))
        buy = fill["side"] == "BUY"
        pts = (f"{fx:.1f},{fy + 9:.1f} {fx - 5:.1f},{fy + 17:.1f} {fx + 5:.1f},{fy + 17:.1f}"
               if buy else
               f"{fx:.1f},{fy - 9:.1f} {fx - 5:.1f},{fy - 17:.1f} {fx + 5:.1f},{fy - 17:.1f}")
        tip = html.escape(f"{fill['time']} {fill['side']} {fill['qty']} @ {fill['price']} "
                          f"{fill['reason']}")
        parts.append(f'<polygon points="{pts}" fill="{"#2166ac" if buy else "#f46d43"}">'
                     f"<title>{tip}</title></polygon>")
    parts.append("</svg>")
    return "".join(parts)


def _axis(lo: float, hi: float, y, height: int, t0: int, t1: int) -> str:
    out = [f'<rect x="{PAD}" y="10" width="{W - 2 * PAD}" height="{height - 40}" '
           'fill="none" stroke="#ccc"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<text x="4" y="{y(v) + 4:.1f}" font-size="11">{v:,.6g}</text>')
    out.append(f'<text x="{PAD}" y="{height - 8}" font-size="11">{iso(t0)}</text>')
    out.append(f'<text x="{W - PAD}" y="{height - 8}" font-size="11" text-anchor="end">'
               f"{iso(t1)}</text>")
    return "".join(out)


def _equity_svg(report: dict[str, Any]) -> str:
    points = report["equity_curve"]
    if len(points) < 2:
        return "<p>No equity curve.</p>"
    t0, t1 = points[0][0], points[-1][0]
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    y = _scale(lo, hi, 10, H_EQUITY - 30)
    x = lambda t: PAD + (t - t0) / ((t1 - t0) or 1) * (W - 2 * PAD)  # noqa: E731
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    return (f'<svg viewBox="0 0 {W} {H_EQUITY}" role="img" aria-label="equity curve">'
            f"{_axis(lo, hi, y, H_EQUITY, t0, t1)}"
            f'<polyline points="{line}" fill="none" stroke="#2166ac" stroke-width="1.5"/></svg>')


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value * 100:.2f} %" if pct else f"{value:,.4g}"
    return html.escape(str(value))


def _cell(trade: dict[str, Any], key: str) -> str:
    value = trade[key]
    if value is None:
        return ""
    if key in ("pnl", "fees"):
        return f"{float(value):.6f}"
    if key in ("entry_price", "exit_price", "qty"):
        return html.escape(f"{Decimal(value).normalize():f}")
    return html.escape(str(value))


def render_html(report: dict[str, Any], result: BacktestResult) -> str:
    """The page: headline metrics, candle chart with fills, equity curve, trade table."""
    m, c = report["metrics"], report["config"]
    pct = {"total_return", "buy_and_hold_return", "max_drawdown", "win_rate", "exposure"}
    cards = "".join(
        f"<div class=card><b>{html.escape(k.replace('_', ' '))}</b>"
        f"<span>{_fmt(m[k], k in pct)}</span></div>"
        for k in ("total_return", "buy_and_hold_return", "max_drawdown", "sharpe", "sortino",
                  "win_rate", "profit_factor", "trades", "avg_trade_duration_s", "exposure",
                  "fees_paid", "end_equity"))
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(t, k)}</td>"
                         for k in ("entry_time", "exit_time", "entry_price", "exit_price", "qty",
                                   "pnl", "fees", "duration_s", "exit_reason")) + "</tr>"
        for t in report["trades"][:MAX_TABLE_ROWS])
    more = len(report["trades"]) - MAX_TABLE_ROWS
    title = html.escape(f"{c['strategy']} {c['symbol']} {c['interval']}")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Backtest {title}</title><style>
body{{font:14px system-ui,sans-serif;margin:20px;color:#222}}
.cards{{display:flex;flex-wrap:wrap;gap:8px}}.card{{border:1px solid #ddd;padding:6px 10px;
border-radius:4px;min-width:120px}}.card b{{display:block;font-size:11px;color:#666}}
svg{{width:100%;height:auto;background:#fff}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border-bottom:1px solid #eee;padding:2px 6px;text-align:right}}</style></head><body>
<h1>Backtest {title}</h1>
<p>{html.escape(str(m['first_candle']))} to {html.escape(str(m['last_candle']))},
{m['candles']:,} candles after {m['warmup_candles']} of warm-up; params
<code>{html.escape(json.dumps(c['params']))}</code>; fee {html.escape(c['fee_rate'])};
protective orders: {html.escape(c['protective'])}.
Sharpe/Sortino: {html.escape(m['annualisation'])}.</p>
<div class=cards>{cards}</div>
<h2>Price and fills</h2>{_price_svg(report, result)}
<h2>Equity</h2>{_equity_svg(report)}
<h2>Trades</h2><table><tr><th>entry</th><th>exit</th><th>entry price</th><th>exit price</th>
<th>qty</th><th>pnl</th><th>fees</th><th>duration s</th><th>exit reason</th></tr>{rows}</table>
{f'<p>{more} more trades in the JSON file.</p>' if more > 0 else ''}
</body></html>
"""
