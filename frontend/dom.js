// Small DOM and formatting helpers. Every text from the server goes through textContent.
"use strict";

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes and children; strings become text nodes, never HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function setText(id, text) {
  const node = typeof id === "string" ? document.getElementById(id) : id;
  if (node) node.textContent = text == null || text === "" ? "—" : String(text);
}

/** A decimal string or number, shown as is when it is a string (no float rounding). */
export function num(value, digits = null) {
  if (value == null || value === "") return "—";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return "—";
    return digits == null ? String(value) : value.toFixed(digits);
  }
  const text = String(value);
  if (digits == null) return trimZeros(text);
  const parsed = Number(text);
  return Number.isFinite(parsed) ? parsed.toFixed(digits) : text;
}

/** "1.50000000" -> "1.5"; leaves integers and non-numbers alone. */
export function trimZeros(text) {
  if (!/^-?\d+\.\d+$/.test(text)) return text;
  return text.replace(/0+$/, "").replace(/\.$/, "");
}

export function signClass(value) {
  const n = Number(value);
  if (!Number.isFinite(n) || n === 0) return "";
  return n > 0 ? "pos" : "neg";
}

/** A time from ms since epoch, seconds, or an ISO string, in the viewer's local time. */
export function toDate(value) {
  if (value == null || value === "") return null;
  if (typeof value === "number") return new Date(value > 1e12 ? value : value * 1000);
  const asNumber = Number(value);
  if (Number.isFinite(asNumber)) return toDate(asNumber);
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function fmtTime(value, withDate = true) {
  const date = toDate(value);
  if (!date) return "—";
  const time = date.toLocaleTimeString([], { hour12: false });
  if (!withDate) return time;
  const day = date.toLocaleDateString([], { month: "2-digit", day: "2-digit" });
  return `${day} ${time}`;
}

export function fmtAge(seconds) {
  if (seconds == null) return "never";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

/** Replace a tbody's rows with one row per item. */
export function fillTable(tbody, items, rowOf) {
  tbody.replaceChildren(...items.map(rowOf));
}

export function td(text, cls) {
  return el("td", { class: cls || null, text: text == null ? "—" : String(text) });
}
