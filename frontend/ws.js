// The live channel client: one WebSocket to /ws, snapshot then numbered updates per channel,
// a new snapshot when a number is missing, and reconnection with exponential backoff.
"use strict";

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

/**
 * Keeps one socket open and hands each channel's snapshot and updates to its handler.
 * `handlers` maps a channel name to { snapshot(data, msg), update(data, msg) }.
 * `onState(state, detail)` hears: connecting, live, reconnecting, resyncing, closed.
 */
export class LiveSocket {
  constructor(path, handlers, onState = () => {}) {
    this.path = path;
    this.handlers = handlers;
    this.onState = onState;
    this.seq = new Map(); // channel -> last applied sequence number
    this.pending = new Set(); // channels waiting for their snapshot
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
    this.reconnects = 0; // counters the page shows and the tests read
    this.snapshots = 0;
    this.gaps = 0;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}${this.path}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "page closed");
  }

  connect() {
    clearTimeout(this.timer);
    this.onState(this.attempt === 0 && this.reconnects === 0 ? "connecting" : "reconnecting",
      { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this.scheduleReconnect(String(err));
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => this.opened(ws));
    ws.addEventListener("message", (event) => this.received(ws, event));
    ws.addEventListener("close", (event) => this.closed(ws, event));
    ws.addEventListener("error", () => {}); // a close event always follows
  }

  opened(ws) {
    if (ws !== this.ws) return;
    this.seq.clear(); // the backoff resets only once a snapshot proves the socket works
    this.onState("resyncing", {});
    this.subscribe(Object.keys(this.handlers));
  }

  /** Ask for every channel again (a fresh snapshot each); used on open and on a gap. */
  subscribe(channels) {
    for (const channel of channels) this.pending.add(channel);
    this.send({ subscribe: channels });
  }

  /** Ask for a fresh snapshot of channels whose numbering broke. */
  resnapshot(channels) {
    for (const channel of channels) {
      this.pending.add(channel);
      this.seq.delete(channel);
    }
    this.onState("resyncing", { channels });
    this.send({ resnapshot: channels });
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    }
  }

  received(ws, event) {
    if (ws !== this.ws) return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg.type === "hello") return;
    if (msg.type === "error") {
      this.onState("error", { message: msg.message || msg.reason || "server error" });
      return;
    }
    const handler = this.handlers[msg.channel];
    if (!handler) return;
    if (msg.type === "snapshot") { // asked for, or unasked after the gateway resynced
      this.seq.set(msg.channel, msg.seq);
      this.snapshots += 1;
      this.attempt = 0;
      // a handler answers false for a placeholder ("not synced yet"): a real one follows
      if (handler.snapshot(msg.data, msg) === false) return;
      this.pending.delete(msg.channel);
      if (this.pending.size === 0) this.onState("live", {});
      return;
    }
    if (msg.type === "update") this.update(handler, msg);
  }

  update(handler, msg) {
    const last = this.seq.get(msg.channel);
    if (last == null) return; // waiting for a snapshot, which includes this
    if (msg.seq <= last) return; // stale: already in the snapshot
    if (msg.seq !== last + 1) {
      this.gaps += 1;
      this.resnapshot([msg.channel]);
      return;
    }
    this.seq.set(msg.channel, msg.seq);
    handler.update(msg.data, msg);
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) {
      this.onState("closed", {});
      return;
    }
    this.scheduleReconnect(event.reason || `code ${event.code}`, event.code);
  }

  scheduleReconnect(reason, code) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    this.attempt += 1;
    this.reconnects += 1;
    this.onState("waiting", { reason, code, delay_ms: delay, attempt: this.attempt });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect now (a user click, or the page coming back online). */
  retryNow() {
    if (this.ws) return;
    this.attempt = 0;
    this.connect();
  }
}
