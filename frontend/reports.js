// Saved backtest reports: the list from GET /api/reports, each linked to its HTML page.
"use strict";

import { $, el, fmtTime } from "./dom.js";

const REFRESH_MS = 30_000;
const LOGGED_OUT_RETRY_MS = 2_000; // until the login dialog has done its work

let timer = null;

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(loadReports, ms);
}

function pct(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(2)} %` : "—";
}

function fixed(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function row(report) {
  const title = `${report.strategy || "?"} ${report.symbol || "?"} ${report.interval || ""}`;
  const link = el("a", { href: report.url, target: "_blank", rel: "noopener" }, title);
  const period = `${report.first_candle || "?"} → ${report.last_candle || "?"}`;
  return el("tr", { dataset: { report: report.name } },
    el("td", {}, link),
    el("td", {}, period),
    el("td", { class: "num" }, pct(report.total_return)),
    el("td", { class: "num" }, pct(report.max_drawdown)),
    el("td", { class: "num" }, fixed(report.sharpe, 2)),
    el("td", { class: "num" }, report.trades == null ? "—" : String(report.trades)),
    el("td", {}, report.created_ms ? fmtTime(report.created_ms) : "—"));
}

/** Fetch the list and draw it; a 401 asks to log in, any other error is shown as text. */
export async function loadReports() {
  const body = $("#reports-table tbody");
  const note = $("#reports-note");
  if (!body || !note) return;
  let resp;
  try {
    resp = await fetch("/api/reports", { headers: { Accept: "application/json" },
      cache: "no-store", credentials: "same-origin" });
  } catch (err) {
    note.textContent = `Reports unavailable: gateway unreachable (${err.message}).`;
    schedule(REFRESH_MS);
    return;
  }
  if (resp.status === 401) {
    note.textContent = "Log in to see the saved reports.";
    schedule(LOGGED_OUT_RETRY_MS);
    return;
  }
  schedule(REFRESH_MS);
  const data = await resp.json().catch(() => null);
  if (!resp.ok || !data || !Array.isArray(data.items)) {
    note.textContent = `Reports unavailable (${(data && data.error && data.error.message) || `HTTP ${resp.status}`}).`;
    return;
  }
  body.replaceChildren(...data.items.map(row));
  note.textContent = data.items.length
    ? `${data.items.length} saved report(s), newest first; each opens in a new tab.`
    : "No saved reports yet: run `python -m backtest ...` (see docs/backtesting.md).";
}

function start() {
  const refresh = $("#reports-refresh");
  if (refresh) refresh.addEventListener("click", () => loadReports());
  loadReports();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
