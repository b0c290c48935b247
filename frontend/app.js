// The dashboard: session and login, the live socket, the selected bot and every control.
"use strict";

import { ApiError, del, get, post, put, query, setCsrfToken, setUnauthorizedHandler } from "./api.js";
import { CandleChart } from "./chart.js";
import { $, el } from "./dom.js";
import { LogView } from "./logs.js";
import { ParamsForm } from "./params.js";
import { Store } from "./store.js";
import { fetchHealth, renderHealth } from "./health.js";
import {
  renderBanners, renderBots, renderOrders, renderPerformance, renderStatus, renderSync, renderTrades,
} from "./views.js";
import { LiveSocket } from "./ws.js";

const store = new Store();
const logs = new LogView($("#log-lines"), $("#logs-filter"));
const paramsForm = new ParamsForm($("#params-form"), $("#params-fields"), $("#params-msg"));
let chart = null;
let socket = null;
let session = { auth_required: false, authenticated: true };
let chartKey = "";
let klineSeenAt = 0;
let wasLive = false;

// -- drawing, batched to one frame ---------------------------------------------------------

const dirty = new Set();
let frame = 0;

function redraw(...parts) {
  for (const part of parts) dirty.add(part);
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  if (parts.has("bots")) renderBots(store);
  if (parts.has("bots") || parts.has("status")) renderStatus(store);
  if (parts.has("orders")) {
    renderOrders(store);
    renderTrades(store);
    updateMarkers();
  }
  if (parts.has("health")) renderHealth(store);
  if (parts.has("levels")) updateLevels();
  renderBanners(store);
  renderSync(store);
}

// -- errors and messages -------------------------------------------------------------------

function say(output, text, kind = "") {
  output.textContent = text;
  output.dataset.kind = kind;
}

function describe(err) {
  if (!(err instanceof ApiError)) return String(err.message || err);
  const fields = Object.entries(err.fields || {}).map(([k, v]) => `${k}: ${v}`).join("; ");
  return fields ? `${err.message} (${fields})` : err.message;
}

async function action(output, label, call) {
  say(output, `${label}…`);
  try {
    const result = await call();
    say(output, `${label}: done`, "ok");
    return result;
  } catch (err) {
    say(output, `${label} failed: ${describe(err)}`, "error");
    return null;
  }
}

// -- session and login ---------------------------------------------------------------------

async function loadSession() {
  session = await get("/api/session");
  setCsrfToken(session.csrf_token);
  $("#logout-form").hidden = !session.auth_required;
  return !session.auth_required || session.authenticated;
}

let loginWaiters = [];

function showLogin() {
  const dialog = $("#login-dialog");
  const badge = $("#ws-state");
  badge.dataset.state = "closed";
  badge.textContent = "logged out";
  if (!dialog.open) dialog.showModal();
  $("#login-password").focus();
  return new Promise((resolve) => loginWaiters.push(resolve));
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("#login-error");
  error.textContent = "";
  try {
    const answer = await post("/api/login", { password: $("#login-password").value });
    setCsrfToken(answer.csrf_token);
    session.authenticated = true;
    $("#login-password").value = "";
    $("#login-dialog").close();
    const waiters = loginWaiters;
    loginWaiters = [];
    waiters.forEach((resolve) => resolve());
    if (socket) { // the session had expired: catch up
      socket.retryNow();
      loadBots().catch(() => {});
      refreshSelected();
    }
  } catch (err) {
    error.textContent = err.code === "throttled"
      ? "Too many attempts: wait a few minutes." : err.status === 401 ? "Wrong password." : describe(err);
    $("#login-password").select();
  }
});

$("#login-dialog").addEventListener("cancel", (event) => event.preventDefault());

$("#logout-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await post("/api/logout");
  } finally {
    location.reload();
  }
});

setUnauthorizedHandler(() => {
  if (session.auth_required && !$("#login-dialog").open) {
    session.authenticated = false;
    showLogin();
  }
});

// -- the live socket -----------------------------------------------------------------------

const wsHistory = []; // the last connection states, for the console and the tests

function wsState(state, detail) {
  wsHistory.push(state);
  if (wsHistory.length > 50) wsHistory.shift();
  const badge = $("#ws-state");
  const texts = {
    connecting: "connecting…",
    live: "live",
    resyncing: "resyncing…",
    reconnecting: `reconnecting (attempt ${detail.attempt})…`,
    waiting: `disconnected: retry in ${(detail.delay_ms / 1000).toFixed(1)} s`,
    error: `error: ${detail.message}`,
    closed: "closed",
  };
  if (state === "error") {
    badge.title = detail.message;
    return; // an error frame does not change the connection
  }
  badge.dataset.state = state;
  badge.textContent = texts[state] || state;
  if (state === "waiting" && detail.code === 1008 && /unauthorized/.test(detail.reason || "")) {
    session.authenticated = false;
    showLogin();
  }
  if (state === "live") {
    store.gatewayDown = "";
    if (wasLive) refreshSelected(); // back after a break: REST views resync too
    wasLive = true;
  }
  if (state === "waiting") pollHealthOnce();
  redraw("banners");
}

const handlers = {
  state: {
    snapshot(data) {
      if (data.synced === false) return false; // the gateway has no copy yet; keep ours
      store.stateSnapshot(data);
      ensureSelection();
      redraw("bots", "status", "orders", "levels");
    },
    update(data) {
      const kind = store.stateUpdate(data);
      if (kind === "bot_deleted" && store.selectedId === data.payload?.id) ensureSelection(true);
      if (["bot", "bot_deleted"].includes(kind)) redraw("bots");
      const bot = store.bots.get(store.selectedId);
      if (kind === "bot" && bot && chartKey && chartKey !== `${bot.symbol}.${bot.timeframe}`) {
        loadCandles(); // its symbol or timeframe changed with its params
      }
      if (["position", "balance", "bot", "trade"].includes(kind)) scheduleDetail();
      if (["order", "trade"].includes(kind)) redraw("orders");
      if (kind === "trade" && data.payload?.bot_id === store.selectedId) scheduleTrades();
      if (kind === "params" && data.payload?.bot_id === store.selectedId && !paramsForm.dirty) loadParams();
      redraw("status", "levels");
    },
  },
  ticker: {
    snapshot(data) {
      store.books = new Map(Object.entries(data.books || {}));
      for (const [key, candle] of Object.entries(data.candles || {})) {
        const [symbol, interval] = key.split(".");
        applyCandle({ symbol, interval, ...candle });
      }
      redraw("status");
    },
    update(data) {
      if (data.kind === "candle") {
        applyCandle(data);
        redraw("status");
      } else {
        store.books.set(data.symbol, data);
        const bot = store.bots.get(store.selectedId);
        const drawn = bot && chartKey === `${bot.symbol}.${bot.timeframe}`;
        if (chart && drawn && data.symbol === bot.symbol && Date.now() - klineSeenAt > 5000) {
          chart.updatePrice(store.mid(bot.symbol), data.ts_ms || Date.now());
        }
        if (bot && data.symbol === bot.symbol) redraw("status");
      }
    },
  },
  orders: {
    snapshot(data) {
      if (data.synced === false) return false; // a real snapshot follows unasked
      store.ordersSnapshot(data);
      redraw("orders");
    },
    update(data) {
      store.ordersUpdate(data);
      if (data.row && String(data.row.bot_id) === String(store.selectedId)) scheduleDetail();
      redraw("orders");
    },
  },
  logs: {
    snapshot(data) {
      logs.replace(data.items || []);
    },
    update(data) {
      logs.add([data]);
    },
  },
  health: {
    snapshot(data) {
      store.healthSnapshot(data);
      redraw("health");
    },
    update(data) {
      const kind = store.healthUpdate(data);
      if (kind === "protection") redraw("levels");
      redraw("health");
    },
  },
};

function applyCandle(candle) {
  store.candles.set(`${candle.symbol}.${candle.interval}`, candle);
  const bot = store.bots.get(store.selectedId);
  if (!chart || !bot || candle.symbol !== bot.symbol || candle.interval !== bot.timeframe) return;
  if (chartKey !== `${bot.symbol}.${bot.timeframe}`) return;
  klineSeenAt = Date.now();
  chart.updateCandle(candle);
}

/** While the socket is down, health comes by polling, which also says if the gateway is up. */
async function pollHealthOnce() {
  try {
    store.health = await fetchHealth();
    store.gatewayDown = "";
  } catch (err) {
    store.gatewayDown = err.status ? `HTTP ${err.status}` : "no answer";
  }
  redraw("health");
}

setInterval(() => {
  if ($("#ws-state").dataset.state !== "live") pollHealthOnce();
  renderSync(store);
  renderBanners(store);
}, 2000);

// -- the selected bot ----------------------------------------------------------------------

function ensureSelection(force = false) {
  if (!force && store.bots.has(store.selectedId)) return;
  const saved = Number(localStorage.getItem("selectedBot"));
  const ids = [...store.bots.keys()].sort((a, b) => a - b);
  const next = ids.includes(saved) ? saved : ids[0] ?? null;
  if (next !== store.selectedId || force) selectBot(next);
}

function selectBot(id) {
  store.selectedId = id;
  store.detail = null;
  klineSeenAt = 0;
  if (id != null) localStorage.setItem("selectedBot", String(id));
  paramsForm.dirty = false;
  redraw("bots", "status", "orders", "levels");
  refreshSelected();
}

async function refreshSelected() {
  const id = store.selectedId;
  if (id == null) return;
  await Promise.allSettled([loadDetail(), loadParams(), loadVersions(), loadCandles(), loadHistory(id)]);
}

let tradesTimer = 0;

function scheduleTrades() {
  clearTimeout(tradesTimer);
  tradesTimer = setTimeout(() => loadHistory(store.selectedId), 500);
}

let detailTimer = 0;

function scheduleDetail() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(loadDetail, 300);
}

async function loadDetail() {
  const id = store.selectedId;
  if (id == null) return;
  try {
    const detail = await get(`/api/bots/${id}`);
    if (id !== store.selectedId) return;
    store.detail = detail;
    store.bots.set(id, { ...store.bots.get(id), ...pickBot(detail) });
    if (detail.last_sync_ts != null && (store.lastSyncTs == null || detail.last_sync_ts > store.lastSyncTs)) {
      store.lastSyncTs = detail.last_sync_ts;
    }
    redraw("bots", "status", "levels");
  } catch (err) {
    if (err.code === "unknown_bot" || err.status === 404) { // deleted meanwhile
      store.bots.delete(id);
      ensureSelection(true);
    }
  }
}

function pickBot(detail) {
  const keys = ["id", "name", "strategy", "symbol", "timeframe", "status", "desired_status",
    "status_reason", "params_version", "created_at_ms", "updated_at_ms"];
  return Object.fromEntries(keys.filter((k) => k in detail).map((k) => [k, detail[k]]));
}

let ordersBefore = null; // the next page of the selected bot's order history

async function loadHistory(id, before = null) {
  const [orders, trades] = await Promise.allSettled([
    get(`/api/orders${query({ bot: id, limit: 100, before })}`),
    before == null ? get(`/api/trades${query({ bot: id, limit: 100 })}`) : Promise.resolve(null),
  ]);
  if (id !== store.selectedId) return;
  if (orders.status === "fulfilled") {
    for (const o of orders.value.items || []) store.upsertOrder(o);
    ordersBefore = orders.value.next_before ?? null;
    $("#orders-more").hidden = ordersBefore == null;
  }
  if (trades.status === "fulfilled" && trades.value) {
    for (const t of trades.value.items || []) store.trades.set(t.id, t);
    renderPerformance(trades.value.performance);
  }
  redraw("orders");
}

$("#orders-more").addEventListener("click", () => {
  if (ordersBefore != null) loadHistory(store.selectedId, ordersBefore);
});

async function loadCandles() {
  const bot = store.bots.get(store.selectedId);
  if (!bot || !chart) return;
  const key = `${bot.symbol}.${bot.timeframe}`;
  $("#chart-label").textContent = `${bot.symbol} · ${bot.timeframe}`;
  let candles = [];
  try {
    const answer = await get(`/api/candles${query({ symbol: bot.symbol, interval: bot.timeframe, limit: 300 })}`);
    candles = answer.candles || [];
  } catch {
    // none: the live candles and the mid price draw it from now on
  }
  const now = store.bots.get(store.selectedId);
  if (!now || `${now.symbol}.${now.timeframe}` !== key) return; // another bot meanwhile
  chart.setCandles(candles, bot.timeframe);
  chartKey = key;
  updateMarkers();
  updateLevels();
}

function updateMarkers() {
  if (!chart) return;
  const fills = [...store.orders.values()].filter((o) =>
    String(o.bot_id) === String(store.selectedId) && Number(o.executed_qty) > 0);
  chart.setTrades(fills.map((o) => ({
    time: o.updated_at_ms ?? o.created_at_ms, side: o.side, qty: o.executed_qty,
  })));
}

/** Entry, stop-loss and take-profit: the live OCO when execution placed one, else from params. */
function updateLevels() {
  const bot = store.bots.get(store.selectedId);
  if (!chart || !bot) return;
  const position = store.position(bot) || store.detail?.position;
  const open = position && Number(position.qty) > 0;
  const entry = open ? Number(position.avg_entry_price ?? position.entry_price) : null;
  const protection = store.protections.get(String(bot.id));
  const active = protection && !/CLOSED|DONE|CANCEL|FILLED|ALL_DONE/i.test(protection.status || "");
  let stopLoss = null;
  let takeProfit = null;
  if (open && active) {
    stopLoss = protection.stop_loss;
    takeProfit = protection.take_profit;
  } else if (open && entry) {
    const p = paramsForm.current || {};
    if (p.sl_tp_mode !== "atr" && p.stop_loss_pct != null) stopLoss = entry * (1 - Number(p.stop_loss_pct) / 100);
    if (p.sl_tp_mode !== "atr" && p.take_profit_pct != null) takeProfit = entry * (1 + Number(p.take_profit_pct) / 100);
  }
  chart.setLevels({ entry, stopLoss, takeProfit });
}

// -- params --------------------------------------------------------------------------------

let savedParams = null;

async function loadParams() {
  const id = store.selectedId;
  if (id == null) return;
  try {
    const answer = await get(`/api/bots/${id}/params`);
    if (id !== store.selectedId) return;
    savedParams = answer;
    drawParams(answer.strategy, { ...answer.params, symbol: answer.symbol, timeframe: answer.timeframe });
    $("#params-strategy").textContent = `v${answer.version}`;
  } catch (err) {
    say($("#params-msg"), `Could not load params: ${describe(err)}`, "error");
  }
}

function drawParams(strategy, values) {
  const schema = store.strategies[strategy];
  $("#param-strategy").value = strategy;
  if (!schema) {
    say($("#params-msg"), `Unknown strategy ${strategy}`, "error");
    return;
  }
  paramsForm.draw(schema);
  paramsForm.setValues(values);
  redraw("levels");
}

$("#param-strategy").addEventListener("change", (event) => {
  // show only the chosen strategy's fields; keep the values both strategies share
  const kept = paramsForm.schema ? paramsForm.raw() : {};
  const schema = store.strategies[event.target.value];
  paramsForm.draw(schema);
  const base = event.target.value === savedParams?.strategy
    ? { ...savedParams.params, symbol: savedParams.symbol, timeframe: savedParams.timeframe } : {};
  paramsForm.setValues({ ...base, ...kept });
  paramsForm.current = { ...base };
  paramsForm.dirty = true;
});

async function saveParams(values) {
  const id = store.selectedId;
  const strategy = $("#param-strategy").value;
  const body = { params: values, strategy };
  if (values.symbol != null) body.symbol = values.symbol;
  if (values.timeframe != null) body.timeframe = values.timeframe;
  paramsForm.say("Saving…");
  try {
    const saved = await put(`/api/bots/${id}/params`, body);
    savedParams = saved;
    drawParams(saved.strategy, { ...saved.params, symbol: saved.symbol, timeframe: saved.timeframe });
    $("#params-strategy").textContent = `v${saved.version}`;
    paramsForm.say(`Saved as version ${saved.version}.`, "ok");
    loadVersions();
    loadDetail();
    return saved;
  } catch (err) {
    if (err.status === 400 && Object.keys(err.fields).length) {
      const fields = Object.fromEntries(Object.entries(err.fields)
        .map(([name, text]) => [name.replace(/^params\./, ""), text]));
      const stray = paramsForm.showErrors(fields);
      paramsForm.say(["Not saved: the server refused the fields marked in red.", ...stray].join(" "), "error");
    } else {
      paramsForm.say(`Not saved: ${describe(err)}`, "error");
    }
    return null;
  }
}

$("#params-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!paramsForm.schema || store.selectedId == null) return;
  const values = paramsForm.check();
  if (values) await saveParams(values);
});

async function loadVersions() {
  const id = store.selectedId;
  if (id == null) return;
  try {
    const answer = await get(`/api/bots/${id}/params/versions`);
    $("#params-versions").replaceChildren(...(answer.items || []).map((v) => el("option",
      { value: String(v.version), text: `v${v.version}${v.current ? " (current)" : ""} ${v.strategy} ${v.symbol} ${v.timeframe}${v.comment ? ` — ${v.comment}` : ""}` })));
  } catch {
    $("#params-versions").replaceChildren();
  }
}

$("#rollback-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const version = Number($("#params-versions").value);
  if (!version) return;
  const saved = await action($("#params-msg"), `Roll back to v${version}`,
    () => post(`/api/bots/${store.selectedId}/params/rollback`, { version }));
  if (saved) {
    loadParams();
    loadVersions();
  }
});

// -- bot controls --------------------------------------------------------------------------

$("#bot-select").addEventListener("change", (event) => selectBot(Number(event.target.value)));
$("#bot-select-form").addEventListener("submit", (event) => event.preventDefault());
$("#bot-list").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-bot-id]");
  if (button) selectBot(Number(button.dataset.botId));
});

async function botCommand(verb) {
  const id = store.selectedId;
  if (id == null) return;
  const bot = await action($("#control-msg"), `${verb[0].toUpperCase()}${verb.slice(1)} bot #${id}`,
    () => post(`/api/bots/${id}/${verb}`));
  if (bot) {
    store.bots.set(id, { ...store.bots.get(id), ...pickBot(bot) });
    redraw("bots", "status");
  }
}

$("#start-bot").addEventListener("click", () => botCommand("start"));
$("#stop-bot").addEventListener("click", () => botCommand("stop"));

$("#close-position").addEventListener("click", async () => {
  const id = store.selectedId;
  if (id == null || !confirm(`Sell bot #${id}'s whole position now at market?`)) return;
  await action($("#control-msg"), "Close position", () => post(`/api/bots/${id}/close`, { reason: "dashboard" }));
  scheduleDetail();
});

$("#delete-bot").addEventListener("click", async () => {
  const id = store.selectedId;
  if (id == null || !confirm(`Delete bot #${id}? Its history is kept.`)) return;
  const done = await action($("#control-msg"), `Delete bot #${id}`, () => del(`/api/bots/${id}`));
  if (done) {
    store.bots.delete(id);
    ensureSelection(true);
  }
});

$("#killswitch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const enabled = !store.execution?.kill_switch;
  const answer = await action($("#control-msg"), enabled ? "Kill switch on" : "Kill switch off",
    () => post("/api/killswitch", { enabled, reason: "dashboard" }));
  if (answer) {
    store.execution = { ...store.execution, kill_switch: answer.kill_switch ?? enabled };
    redraw("banners");
  }
});

$("#banners").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-ack]");
  if (!button) return;
  const id = Number(button.dataset.ack);
  store.dismissed.add(id);
  redraw("banners");
  try {
    await post(`/api/alerts/${id}/ack`);
  } catch {
    // dismissed on this page anyway
  }
});

$("#orders-table").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-cancel]");
  if (!button) return;
  const id = button.dataset.cancel;
  await action($("#control-msg"), `Cancel ${id}`, () => del(`/api/orders/${encodeURIComponent(id)}`));
});

$("#orders-all-bots").addEventListener("change", () => redraw("orders"));

// -- creating a bot ------------------------------------------------------------------------

function fillCreateForm() {
  const names = Object.keys(store.strategies).sort();
  const options = names.map((name) => el("option", { value: name, text: name }));
  $("#new-strategy").replaceChildren(...options);
  $("#param-strategy").replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
  const timeframes = Object.values(store.strategies)
    .flatMap((schema) => schema.params.find((p) => p.name === "timeframe")?.choices || []);
  const unique = [...new Set(timeframes.length ? timeframes : ["1m"])];
  $("#new-timeframe").replaceChildren(...unique.map((tf) => el("option", { value: tf, text: tf })));
  $("#new-timeframe").value = unique.includes("1m") ? "1m" : unique[0];
}

$("#bot-create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const symbol = form.elements.symbol.value.trim().toUpperCase();
  $("#new-symbol-error").textContent = "";
  if (!/^[A-Z0-9]{2,20}$/.test(symbol)) {
    $("#new-symbol-error").textContent = "must be 2 to 20 capital letters or digits, e.g. BTCUSDT";
    form.elements.symbol.setAttribute("aria-invalid", "true");
    form.elements.symbol.focus();
    return;
  }
  form.elements.symbol.removeAttribute("aria-invalid");
  const body = { strategy: form.elements.strategy.value, symbol, timeframe: form.elements.timeframe.value };
  try {
    const bot = await post("/api/bots", body);
    say($("#bot-create-msg"), `Created bot #${bot.id}.`, "ok");
    store.bots.set(bot.id, bot);
    selectBot(bot.id);
  } catch (err) {
    if (err.fields?.symbol) $("#new-symbol-error").textContent = err.fields.symbol;
    say($("#bot-create-msg"), `Not created: ${describe(err)}`, "error");
  }
});

// -- start ---------------------------------------------------------------------------------

async function loadBots() {
  const answer = await get("/api/bots");
  for (const bot of answer.items || []) store.bots.set(bot.id, { ...store.bots.get(bot.id), ...bot });
  ensureSelection();
  redraw("bots", "status");
}

async function boot() {
  try {
    chart = new CandleChart($("#chart"));
  } catch (err) {
    $("#chart").replaceChildren(el("p", { class: "muted", text: `Chart unavailable: ${err.message}` }));
  }
  for (;;) {
    try {
      if (!(await loadSession())) await showLogin();
      break;
    } catch (err) {
      store.gatewayDown = describe(err);
      renderBanners(store);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  store.gatewayDown = "";
  try {
    store.strategies = (await get("/api/strategies")).strategies || {};
  } catch (err) {
    say($("#params-msg"), `Strategies unavailable: ${describe(err)}`, "error");
  }
  fillCreateForm();
  pollHealthOnce();
  socket = new LiveSocket("/ws", handlers, wsState);
  socket.start();
  await loadBots().catch(() => {});
  logs.filtersChanged();
}

window.addEventListener("online", () => socket?.retryNow());

/** A handle for the browser console and the browser tests. */
window.dashboard = {
  store, get socket() { return socket; }, get chart() { return chart; }, paramsForm, logs, wsHistory,
  saveParams, // sends values as they are, without the browser's own checks (to see the server's)
};

boot();
