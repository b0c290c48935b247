// Renderers: each takes the page's store and redraws one part of the page with textContent only.
"use strict";

import {
  $, el, fillTable, fmtAge, fmtTime, num, setText, signClass, td, toDate, trimZeros,
} from "./dom.js";

export const STATUSES = ["STOPPED", "STARTING", "RUNNING", "STOPPING", "ERROR"];

export function statusPill(status) {
  const known = STATUSES.includes(status) ? status : "UNKNOWN";
  return el("span", { class: "status-pill", dataset: { status: known }, text: status || "—" });
}

/** The bot picker (select) and the list of every bot with its status; redrawn only when
 * something shown changed, and keeping the keyboard focus where it was. */
export function renderBots(store) {
  const select = $("#bot-select");
  const list = $("#bot-list");
  const bots = [...store.bots.values()].sort((a, b) => a.id - b.id);
  const label = (bot) => `#${bot.id} ${bot.name || `${bot.strategy} ${bot.symbol} ${bot.timeframe}`}`;
  const shown = JSON.stringify([store.selectedId, bots.map((b) => [b.id, label(b), b.status])]);
  if (list.dataset.shown === shown) return;
  list.dataset.shown = shown;
  const focused = document.activeElement?.closest?.("#bot-list button")?.dataset.botId;
  select.replaceChildren(...bots.map((bot) => el("option",
    { value: String(bot.id), text: `${label(bot)} — ${bot.status}` })));
  if (store.selectedId != null) select.value = String(store.selectedId);
  list.replaceChildren(...bots.map((bot) => {
    const button = el("button", {
      type: "button", class: "bot-pick", dataset: { botId: String(bot.id) },
      "aria-pressed": String(bot.id === store.selectedId),
    }, label(bot));
    return el("li", { dataset: { botId: String(bot.id) } }, button, " ", statusPill(bot.status));
  }));
  if (!bots.length) list.append(el("li", { class: "muted", text: "No bot yet: create one." }));
  if (focused) list.querySelector(`button[data-bot-id="${CSS.escape(focused)}"]`)?.focus();
}

function money(value, asset) {
  const text = num(value);
  return text === "—" ? text : `${text}${asset ? ` ${asset}` : ""}`;
}

function pnlText(node, value, asset) {
  node.textContent = money(value, asset);
  node.className = signClass(value);
}

/** Unrealised PnL now: qty * mid - cost (the state service's formula, before the exit fee). */
export function unrealized(position, mid) {
  const qty = Number(position?.qty);
  const cost = Number(position?.cost);
  const price = Number(mid);
  if (!(qty > 0) || !Number.isFinite(cost) || !Number.isFinite(price) || price <= 0) return null;
  return (qty * price - cost).toFixed(8).replace(/0+$/, "").replace(/\.$/, "");
}

/** The selected bot's status card. */
export function renderStatus(store) {
  const bot = store.bots.get(store.selectedId);
  const detail = store.detail?.id === store.selectedId ? store.detail : null;
  const pill = $("#bot-status");
  if (!bot) {
    pill.textContent = "no bot";
    pill.dataset.status = "UNKNOWN";
    return;
  }
  setText("status-bot", `#${bot.id}`);
  pill.textContent = bot.status;
  pill.dataset.status = STATUSES.includes(bot.status) ? bot.status : "UNKNOWN";
  const wanted = bot.desired_status && bot.desired_status !== bot.status
    ? `wanted: ${bot.desired_status}` : "";
  setText("bot-status-detail", [wanted, bot.status_reason].filter(Boolean).join(" · ") || " ");
  setText("st-strategy", `${bot.strategy} (params v${bot.params_version ?? "?"})`);
  setText("st-symbol", `${bot.symbol} · ${bot.timeframe}`);
  const quoteAsset = detail?.quote_asset || store.assets(bot.symbol).quote;
  const baseAsset = detail?.base_asset || store.assets(bot.symbol).base;
  setText("st-quote", money(store.quoteBalance(bot, detail), quoteAsset));
  setText("st-base", money(store.baseQty(bot, detail), baseAsset));
  const mid = store.mid(bot.symbol) ?? detail?.mid_price;
  setText("st-mid", mid == null ? "—" : `${num(mid)} ${quoteAsset || ""}`.trim());
  const last = store.lastPrice(bot);
  setText("st-last", last == null ? "—" : `${num(last)} ${quoteAsset || ""}`.trim());
  renderPosition(store, bot, detail, mid, quoteAsset, baseAsset);
  $("#start-bot").disabled = bot.desired_status === "RUNNING" && bot.status !== "ERROR";
  $("#stop-bot").disabled = bot.desired_status === "STOPPED" && bot.status === "STOPPED";
}

function renderPosition(store, bot, detail, mid, quoteAsset, baseAsset) {
  const position = store.position(bot) || detail?.position || null;
  const open = position && Number(position.qty) > 0;
  setText("st-position", open ? `LONG ${num(position.qty)} ${baseAsset || ""}`.trim() : "none");
  $("#st-position").className = open ? "pos" : "";
  const entry = position?.avg_entry_price ?? position?.entry_price;
  setText("st-entry-price", open ? money(entry, quoteAsset) : "—");
  setText("st-entry-qty", open ? num(position.qty) : "—");
  setText("st-entry-time", open ? fmtTime(position.opened_at_ms) : "—");
  setText("st-break-even", open ? money(position.break_even_price, quoteAsset) : "—");
  const mark = mid ?? store.lastPrice(bot); // the book's mid, else the last trade price
  const upnl = open ? unrealized(position, mark) ?? detail?.pnl?.unrealized : null;
  pnlText($("#st-upnl"), open ? upnl : null, quoteAsset);
  const realized = position?.realized_pnl ?? detail?.pnl?.realized;
  pnlText($("#st-rpnl"), realized, quoteAsset);
  $("#close-position").disabled = !open;
}

function orderTime(order) {
  return order.updated_at_ms ?? order.created_at_ms ?? order.ts_ms;
}

/** Order history, newest first, with a cancel button on open orders. */
export function renderOrders(store) {
  const all = $("#orders-all-bots").checked;
  const orders = [...store.orders.values()]
    .filter((o) => all || String(o.bot_id) === String(store.selectedId))
    .sort((a, b) => (orderTime(b) - orderTime(a)) || ((b.id ?? 0) - (a.id ?? 0)))
    .slice(0, 1000);
  fillTable($("#orders-table tbody"), orders, (order) => {
    const open = ["NEW", "PARTIALLY_FILLED", "PENDING_NEW", "PENDING"].includes(order.status);
    const cancel = open ? el("button", {
      type: "button", class: "small", dataset: { cancel: order.client_order_id },
      "aria-label": `Cancel order ${order.client_order_id}`,
    }, "Cancel") : "";
    const price = order.avg_price ?? order.price;
    return el("tr", { class: `side-${String(order.side).toLowerCase()}`, dataset: { orderId: order.client_order_id } },
      td(fmtTime(orderTime(order))), td(order.bot_id ?? "—"), td(order.symbol),
      td(order.side, `side ${String(order.side).toLowerCase()}`), td(order.type ?? order.order_type),
      td(order.status), td(num(price), "num"), td(num(order.qty ?? order.quantity), "num"),
      td(num(order.executed_qty), "num"),
      td(order.side === "SELL" ? num(order.realized_pnl) : "", `num ${signClass(order.realized_pnl)}`),
      el("td", { class: "mono", text: order.client_order_id }),
      el("td", {}, cancel));
  });
  if (!orders.length) {
    $("#orders-table tbody").append(el("tr", {}, el("td", { colspan: "12", class: "muted", text: "No orders yet." })));
  }
}

/** Completed BUY → SELL round trips with their performance, and a summary row. */
export function renderTrades(store) {
  const all = $("#orders-all-bots").checked;
  const trades = [...store.trades.values()]
    .filter((t) => all || String(t.bot_id) === String(store.selectedId))
    .sort((a, b) => (b.closed_at_ms - a.closed_at_ms) || (b.id - a.id))
    .slice(0, 200);
  const tbody = $("#trades-table tbody");
  fillTable(tbody, trades, (trade) => el("tr", { dataset: { tradeId: String(trade.id) } },
    td(fmtTime(trade.closed_at_ms)), td(trade.bot_id ?? "—"), td(trade.symbol),
    td(num(trade.sell_qty ?? trade.buy_qty), "num"), td(num(trade.entry_price), "num"),
    td(num(trade.exit_price), "num"),
    td(num(trade.pnl), `num ${signClass(trade.pnl)}`),
    td(trade.pnl_pct == null ? "—" : `${num(trade.pnl_pct, 2)} %`, `num ${signClass(trade.pnl_pct)}`)));
  if (!trades.length) {
    tbody.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No completed trade yet." })));
    return;
  }
  const total = trades.reduce((sum, t) => sum + Number(t.pnl || 0), 0);
  const wins = trades.filter((t) => Number(t.pnl) > 0).length;
  tbody.append(el("tr", { class: "summary" },
    el("td", { colspan: "6", text: `${trades.length} trades, ${wins} won (${Math.round((100 * wins) / trades.length)} %)` }),
    td(trimZeros(total.toFixed(8)), `num ${signClass(total)}`), td("")));
}

/** "12:00:01 (3 s ago)" for the last exchange sync, refreshed every second. */
export function renderSync(store) {
  const node = $("#last-sync");
  const ts = store.lastSyncTs;
  if (ts == null) {
    node.textContent = "never";
    node.removeAttribute("datetime");
    return;
  }
  const date = toDate(ts);
  node.dateTime = date.toISOString();
  node.textContent = `${fmtTime(ts, false)} (${fmtAge(Math.max(0, (Date.now() - date.getTime()) / 1000))})`;
}

/** Critical banners: the gateway or a service down, 418 ban, kill switch, critical alerts. */
export function renderBanners(store) {
  const banners = [];
  const add = (key, text, action = null) => banners.push(
    el("div", { class: "banner", dataset: { banner: key } }, el("strong", { text: "⚠ " }), text, action ? " " : "", action));
  if (store.gatewayDown) add("gateway", `Gateway unreachable: ${store.gatewayDown}`);
  const exec = store.execution || {};
  if (exec.kill_switch) add("killswitch", `Kill switch is ON: no new orders${exec.kill_reason ? ` (${exec.kill_reason})` : ""}.`);
  const now = Date.now();
  const until = exec.paused_until_ts ? exec.paused_until_ts * 1000 : null;
  if (exec.halted && (until == null || until > now)) {
    const end = until ? ` until ${fmtTime(exec.paused_until_ts, false)}` : "";
    add("banned", `Trading halted: the exchange banned this IP (HTTP 418)${end}.`);
  } else if (until && until > now) {
    add("paused", `Orders paused by the exchange's rate limit (429) until ${fmtTime(exec.paused_until_ts, false)}.`);
  }
  const down = Object.entries(store.health?.services || {}).filter(([, s]) => !s.up).map(([n]) => n);
  if (store.health && down.length) add("service-down", `Service down: ${down.sort().join(", ")}.`);
  for (const alert of store.criticalAlerts()) {
    const ack = el("button", { type: "button", class: "small", dataset: { ack: String(alert.id) } }, "Dismiss");
    add(`alert-${alert.id}`, `${alert.service}: ${alert.message}`, ack);
  }
  $("#banners").replaceChildren(...banners);
  const kill = $("#killswitch");
  kill.setAttribute("aria-pressed", String(Boolean(exec.kill_switch)));
  kill.textContent = exec.kill_switch ? "Kill switch ON — release" : "Kill switch";
}

/** The selected bot's performance over all its completed trades (GET /api/trades). */
export function renderPerformance(performance) {
  const node = $("#trades-summary");
  if (!performance || !performance.count) {
    node.textContent = "";
    return;
  }
  const p = performance;
  const rate = p.win_rate == null ? "—" : `${num(Number(p.win_rate) * 100, 1)} %`; // a ratio
  node.textContent = `All trades: ${p.count} (${p.wins} won, ${p.losses} lost, win rate ${rate}), ` +
    `total PnL ${num(p.total_pnl)}, fees ${num(p.fees_quote)}, ` +
    `average ${p.avg_pnl_pct == null ? "—" : `${num(p.avg_pnl_pct, 3)} %`} per trade.`;
}
