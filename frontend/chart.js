// The live candle chart (TradingView Lightweight Charts 4, vendored): candles from
// GET /api/candles, kept live by kline updates or, between them, by the mid price; trade markers
// from the bot's fills; entry, stop-loss and take-profit as price lines.
"use strict";

import {
  ColorType, LineStyle, createChart,
} from "./vendor/lightweight-charts-4.2.3/lightweight-charts.standalone.production.mjs";

export const INTERVAL_S = {
  "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
  "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200,
  "1w": 604800, "1M": 2678400,
};

const COLORS = {
  up: "#2ea043", down: "#da3633", buy: "#3fb950", sell: "#f85149",
  sl: "#f85149", tp: "#3fb950", entry: "#d29922",
};

/** One candle from any of the shapes the API may send, times in seconds (UTC). */
export function toBar(raw) {
  if (Array.isArray(raw)) {
    const [t, o, h, l, c] = raw;
    return bar(t, o, h, l, c);
  }
  const t = raw.open_time_ms ?? raw.t ?? raw.time ?? raw.open_time;
  return bar(t, raw.open ?? raw.o, raw.high ?? raw.h, raw.low ?? raw.l, raw.close ?? raw.c);
}

function bar(t, o, h, l, c) {
  let time = Number(t);
  if (time > 1e11) time = Math.floor(time / 1000); // ms -> s
  return { time, open: Number(o), high: Number(h), low: Number(l), close: Number(c) };
}

export class CandleChart {
  constructor(container) {
    this.container = container;
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "#161b22" },
        textColor: "#c9d1d9",
        fontFamily: "system-ui, sans-serif",
      },
      grid: { vertLines: { color: "#21262d" }, horzLines: { color: "#21262d" } },
      rightPriceScale: { borderColor: "#30363d" },
      timeScale: { borderColor: "#30363d", timeVisible: true, secondsVisible: false },
      crosshair: { mode: 0 },
    });
    this.series = this.chart.addCandlestickSeries({
      upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
      wickUpColor: COLORS.up, wickDownColor: COLORS.down,
    });
    this.last = null;
    this.intervalS = 60;
    this.lines = new Map();
    this.markers = [];
  }

  /** Replace all candles (a snapshot). */
  setCandles(rawCandles, interval) {
    this.intervalS = INTERVAL_S[interval] || 60;
    const bars = rawCandles.map(toBar).filter((b) => Number.isFinite(b.time))
      .sort((a, b) => a.time - b.time);
    const unique = [];
    for (const b of bars) {
      if (unique.length && unique[unique.length - 1].time === b.time) unique[unique.length - 1] = b;
      else unique.push(b);
    }
    this.series.setData(unique);
    this.last = unique.length ? { ...unique[unique.length - 1] } : null;
    this.applyMarkers();
    this.chart.timeScale().scrollToRealTime();
  }

  /** A kline update: replaces the bar of its open time, or appends a new one. */
  updateCandle(raw) {
    const b = toBar(raw);
    if (!Number.isFinite(b.time) || (this.last && b.time < this.last.time)) return;
    this.series.update(b);
    this.last = { ...b };
  }

  /** Between kline updates the mid price moves the last bar (or opens the next one). */
  updatePrice(price, tsMs = Date.now()) {
    const p = Number(price);
    if (!Number.isFinite(p) || p <= 0) return;
    const time = Math.floor(tsMs / 1000 / this.intervalS) * this.intervalS;
    if (this.last && time < this.last.time) return;
    if (this.last && time === this.last.time) {
      this.last = { ...this.last, high: Math.max(this.last.high, p),
        low: Math.min(this.last.low, p), close: p };
    } else {
      this.last = { time, open: p, high: p, low: p, close: p };
    }
    this.series.update(this.last);
  }

  /** Trade markers from fills/orders: [{time (ms|s|ISO), side, price, qty}]. */
  setTrades(trades) {
    this.markers = trades
      .map((t) => {
        const date = typeof t.time === "number" ? t.time : Date.parse(t.time);
        if (!Number.isFinite(date)) return null;
        const seconds = date > 1e11 ? Math.floor(date / 1000) : date;
        const time = Math.floor(seconds / this.intervalS) * this.intervalS;
        const buy = t.side === "BUY";
        return {
          time,
          position: buy ? "belowBar" : "aboveBar",
          color: buy ? COLORS.buy : COLORS.sell,
          shape: buy ? "arrowUp" : "arrowDown",
          text: `${t.side} ${t.qty ?? ""}`.trim(),
        };
      })
      .filter(Boolean)
      .sort((a, b) => a.time - b.time);
    this.applyMarkers();
  }

  applyMarkers() {
    this.series.setMarkers(this.markers);
  }

  /** Entry / stop-loss / take-profit lines; a null price removes the line. */
  setLevels({ entry = null, stopLoss = null, takeProfit = null }) {
    this.setLine("entry", entry, COLORS.entry, "entry", LineStyle.Dotted);
    this.setLine("sl", stopLoss, COLORS.sl, "SL", LineStyle.Dashed);
    this.setLine("tp", takeProfit, COLORS.tp, "TP", LineStyle.Dashed);
  }

  setLine(key, price, color, title, lineStyle) {
    const value = price == null ? NaN : Number(price);
    const old = this.lines.get(key);
    if (old && old.value === value) return;
    if (old) this.series.removePriceLine(old.line);
    this.lines.delete(key);
    if (!Number.isFinite(value) || value <= 0) return;
    const line = this.series.createPriceLine({
      price: value, color, lineWidth: 1, lineStyle, axisLabelVisible: true, title,
    });
    this.lines.set(key, { value, line });
  }

  levels() {
    return Object.fromEntries([...this.lines].map(([key, { value }]) => [key, value]));
  }

  barCount() {
    return this.series.data().length;
  }
}
