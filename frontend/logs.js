// Live logs: the `logs` channel's lines kept in a bounded buffer, shown through level, service
// and text filters; changing a filter also asks GET /api/logs for older matching lines.
"use strict";

import { get, query } from "./api.js";
import { el } from "./dom.js";

const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const KEEP = 2000;
const SHOW = 500;

export function levelRank(level) {
  const rank = LEVELS.indexOf(String(level).toUpperCase());
  return rank < 0 ? 1 : rank;
}

function timeOf(ts) {
  const date = new Date(ts > 1e11 ? ts : ts * 1000);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour12: false });
}

export class LogView {
  constructor(list, form) {
    this.list = list;
    this.form = form;
    this.lines = new Map(); // key -> log, in arrival order
    this.services = new Set();
    this.paused = false;
    this.frame = 0;
    form.addEventListener("change", () => this.filtersChanged());
    form.addEventListener("input", (event) => {
      if (event.target.name === "text") this.render();
    });
    form.addEventListener("submit", (event) => event.preventDefault());
  }

  filters() {
    const data = new FormData(this.form);
    return {
      level: data.get("level") || "INFO",
      service: data.get("service") || "",
      text: String(data.get("text") || "").toLowerCase(),
    };
  }

  /** Not `seq`: a restarted gateway numbers its lines again and its snapshot is shorter. */
  key(log) {
    return `${log.ts}|${log.service}|${log.instance}|${log.message}`;
  }

  /** A snapshot: merged into the buffer, so lines seen before a reconnect stay. */
  replace(items) {
    this.add(items);
  }

  add(items) {
    for (const log of items) {
      this.lines.set(this.key(log), log);
      if (log.service) this.addService(log.service);
    }
    while (this.lines.size > KEEP) this.lines.delete(this.lines.keys().next().value);
    this.scheduleRender();
  }

  /** At most one redraw per frame, however many lines arrive. */
  scheduleRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  addService(name) {
    if (this.services.has(name)) return;
    this.services.add(name);
    const select = this.form.elements.namedItem("service");
    const options = [...select.options].slice(1).map((o) => o.value).concat(name).sort();
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "all" }),
      ...options.map((value) => el("option", { value, text: value })));
    select.value = chosen;
  }

  matches(log, { level, service, text }) {
    if (levelRank(log.level) < levelRank(level)) return false;
    if (service && log.service !== service) return false;
    if (text && !String(log.message).toLowerCase().includes(text)) return false;
    return true;
  }

  async filtersChanged() {
    this.paused = this.form.elements.namedItem("pause").checked;
    this.render();
    const { level, service } = this.filters();
    try {
      const older = await get(`/api/logs${query({ level, service, limit: 500 })}`);
      for (const log of older.items || []) {
        if (!this.lines.has(this.key(log))) this.lines.set(this.key(log), log);
      }
      this.render();
    } catch {
      // the live buffer is still shown; the banner says when the gateway is away
    }
  }

  render() {
    if (this.paused) return;
    const filters = this.filters();
    const shown = [...this.lines.values()].filter((log) => this.matches(log, filters))
      .sort((a, b) => a.ts - b.ts).slice(-SHOW);
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.replaceChildren(...shown.map((log) => el("li",
      { class: `log lvl-${String(log.level).toLowerCase()}`, dataset: { level: log.level, service: log.service } },
      el("time", { text: timeOf(log.ts) }), " ",
      el("span", { class: "lvl", text: log.level }), " ",
      el("span", { class: "svc", text: log.service }), " ",
      el("span", { class: "text", text: log.message }))));
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }
}
