// The page's copy of the system: filled by channel snapshots, kept by their numbered updates.
"use strict";

import { trimZeros } from "./dom.js";

const QUOTES = ["USDT", "FDUSD", "USDC", "BUSD", "TUSD", "EUR", "TRY", "BTC", "ETH", "BNB"];

export class Store {
  constructor() {
    this.bots = new Map(); // id -> bot row
    this.selectedId = null;
    this.detail = null; // GET /api/bots/<id> of the selected bot
    this.positions = new Map(); // "bot|symbol" -> position
    this.balances = new Map(); // asset -> {free, locked}
    this.books = new Map(); // symbol -> book
    this.orders = new Map(); // client_order_id -> order
    this.trades = new Map(); // id -> trade
    this.alerts = new Map(); // id -> alert
    this.dismissed = new Set();
    this.health = null;
    this.execution = null;
    this.protections = new Map(); // bot id -> ProtectionChanged
    this.lastSyncTs = null;
    this.gatewayDown = "";
    this.strategies = {};
    this.candles = new Map(); // "SYMBOL.interval" -> latest candle
  }

  /** Base and quote assets of a symbol: from the bot detail when known, else by suffix. */
  assets(symbol) {
    if (this.detail?.symbol === symbol && this.detail.quote_asset) {
      return { base: this.detail.base_asset, quote: this.detail.quote_asset };
    }
    const quote = QUOTES.find((q) => symbol?.endsWith(q) && symbol.length > q.length);
    return quote ? { base: symbol.slice(0, -quote.length), quote } : { base: "", quote: "" };
  }

  quoteBalance(bot, detail) {
    const { quote } = this.assets(bot.symbol);
    const row = this.balances.get(quote);
    return row ? row.free : detail?.quote_balance;
  }

  baseQty(bot, detail) {
    const { base } = this.assets(bot.symbol);
    const row = this.balances.get(base);
    if (!row) return detail?.base_qty ?? (this.balances.size && base ? "0" : null); // none held
    return (Number(row.free) + Number(row.locked || 0)).toString();
  }

  /** (bid + ask) / 2 to one digit more than the quotes have (no float noise like ...99995). */
  mid(symbol) {
    const book = this.books.get(symbol);
    if (!book) return null;
    const bid = Number(book.bid);
    const ask = Number(book.ask);
    if (!(bid > 0 && ask > 0)) return book.mid ?? null;
    const decimals = (v) => (String(v).split(".")[1] || "").length;
    const digits = Math.min(12, Math.max(decimals(book.bid), decimals(book.ask)) + 1);
    return trimZeros(((bid + ask) / 2).toFixed(digits));
  }

  /** The close of the bot's forming candle (kline stream), when one arrived. */
  lastPrice(bot) {
    return this.candles.get(`${bot.symbol}.${bot.timeframe}`)?.close ?? null;
  }

  position(bot) {
    return this.positions.get(`${bot.id}|${bot.symbol}`) || null;
  }

  criticalAlerts() {
    return [...this.alerts.values()]
      .filter((a) => a.level === "CRITICAL" && !a.acknowledged && !this.dismissed.has(a.id))
      .sort((a, b) => b.id - a.id).slice(0, 3);
  }

  // -- the state channel ------------------------------------------------------------------

  stateSnapshot(data) {
    this.bots = new Map((data.bots || []).map((b) => [b.id, b]));
    this.positions = new Map((data.positions || []).map((p) => [`${p.bot_id}|${p.symbol}`, p]));
    this.balances = new Map((data.balances || []).map((b) => [b.asset, b]));
    // orders and trades are history: merged, so pages loaded by REST stay
    for (const order of [...(data.recent_orders || []), ...(data.open_orders || [])]) {
      this.upsertOrder(order);
    }
    for (const trade of data.recent_trades || []) this.trades.set(trade.id, trade);
    this.alerts = new Map((data.alerts || []).map((a) => [a.id, a]));
    this.params = new Map((data.params || []).map((p) => [p.bot_id, p]));
  }

  /** One state change; returns its kind so the page knows what to redraw. */
  stateUpdate({ kind, payload }) {
    const apply = {
      bot: () => this.bots.set(payload.id, { ...this.bots.get(payload.id), ...payload }),
      bot_deleted: () => this.bots.delete(payload.id),
      params: () => this.params?.set(payload.bot_id, payload),
      position: () => this.positions.set(`${payload.bot_id}|${payload.symbol}`, payload),
      balance: () => {
        for (const b of payload.balances || []) this.balances.set(b.asset, b);
      },
      order: () => this.upsertOrder(payload),
      trade: () => this.trades.set(payload.id, payload),
      trade_deleted: () => this.trades.delete(payload.id),
      alert: () => this.alerts.set(payload.id, payload),
    }[kind];
    if (apply) apply();
    return kind;
  }

  upsertOrder(row) {
    const key = row.client_order_id ?? row.id;
    const old = this.orders.get(key) || {};
    const merged = { ...old, ...row };
    if (merged.type == null && row.order_type) merged.type = row.order_type;
    if (merged.qty == null && row.quantity != null) merged.qty = row.quantity;
    if (merged.updated_at_ms == null && row.ts_ms != null) merged.updated_at_ms = row.ts_ms;
    this.orders.set(key, merged);
  }

  // -- the orders channel -----------------------------------------------------------------

  ordersSnapshot(data) {
    for (const order of [...(data.recent_orders || []), ...(data.open_orders || [])]) {
      this.upsertOrder(order);
    }
    for (const trade of data.recent_trades || []) this.trades.set(trade.id, trade);
  }

  ordersUpdate({ kind, row }) {
    if (!row) return kind;
    if (kind === "trade") this.trades.set(row.id, row);
    else if (kind === "trade_deleted") this.trades.delete(row.id);
    else if (kind === "exec_order") {
      // live from execution: only fields that state's rows also have
      this.upsertOrder({
        client_order_id: row.client_order_id, bot_id: row.bot_id, symbol: row.symbol,
        side: row.side, status: row.status, executed_qty: row.executed_qty,
        order_type: row.order_type, quantity: row.quantity,
        price: row.price, ts_ms: row.ts_ms,
      });
    } else this.upsertOrder(row);
    return kind;
  }

  // -- the health channel -----------------------------------------------------------------

  healthSnapshot(data) {
    this.health = { services: data.services || {}, timeout_s: data.timeout_s ?? this.health?.timeout_s };
    this.execution = data.execution || null;
    if (this.execution?.last_sync_ts != null) this.lastSyncTs = this.execution.last_sync_ts;
  }

  healthUpdate(data) {
    const exec = (this.execution ||= {});
    switch (data.kind) {
      case "health":
        this.health = { ...this.health, services: data.services || {} };
        if (data.execution) Object.assign(exec, data.execution);
        break;
      case "killswitch":
        exec.kill_switch = data.enabled;
        exec.kill_reason = data.reason;
        break;
      case "paused":
        exec.halted = data.halted;
        exec.halt_reason = data.reason;
        exec.paused_until_ts = data.until_ts;
        break;
      case "sync":
        this.lastSyncTs = data.ts;
        break;
      case "protection":
        this.protections.set(String(data.bot_id), data);
        break;
      default:
        break;
    }
    if (exec.last_sync_ts != null && (this.lastSyncTs == null || exec.last_sync_ts > this.lastSyncTs)) {
      this.lastSyncTs = exec.last_sync_ts;
    }
    return data.kind;
  }
}
