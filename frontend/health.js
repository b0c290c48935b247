// Service health: the table of every service (from the `health` channel, or by polling
// /api/health while the socket is down).
"use strict";

import { get } from "./api.js";
import { $, el, fillTable, setText, td } from "./dom.js";

/** GET /api/health: `{"services": {name: {...}}, "timeout_s"}`. */
export function fetchHealth() {
  return get("/api/health");
}

/** Service health table. */
export function renderHealth(store) {
  const view = store.health;
  if (!view) return;
  if (view.timeout_s != null) setText("timeout", view.timeout_s);
  const rows = Object.entries(view.services || {}).sort(([a], [b]) => a.localeCompare(b));
  fillTable($("#services tbody"), rows, ([name, s]) => el("tr", { dataset: { service: name } },
    td(name), td(s.up ? "up" : "down", s.up ? "up" : "down"),
    td(s.status, s.status === "RUNNING" ? "" : "warn"),
    td(String(s.up_instances ?? 0), "num"),
    td(s.uptime_s == null ? "–" : `${Number(s.uptime_s).toFixed(0)} s`),
    td(s.last_seen_s == null ? "never" : `${Number(s.last_seen_s).toFixed(1)} s ago`)));
}
