// The params form: drawn from a strategy's schema (GET /api/strategies), validated in the
// browser by the same rules as the server (shared/params.py), server field errors shown inline.
"use strict";

import { el } from "./dom.js";

const TYPE_WORDS = {
  int: "an integer",
  float: "a number",
  decimal: "a decimal number",
  str: "a string",
  bool: "true or false",
};

const NUMBER_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

const OPS = {
  "<": (a, b) => a < b,
  "<=": (a, b) => a <= b,
  ">": (a, b) => a > b,
  ">=": (a, b) => a >= b,
  "!=": (a, b) => a !== b,
};

/** A decimal string as sign, digits and the position of the point: 0.<digits> x 10^point. */
function decimalParts(text) {
  const m = /^([-+]?)(\d*)\.?(\d*)(?:[eE]([-+]?\d+))?$/.exec(String(text).trim());
  if (!m) return null;
  const [, sign, whole, frac, exp] = m;
  const all = whole + frac;
  const lead = all.length - all.replace(/^0+/, "").length;
  const digits = all.slice(lead).replace(/0+$/, "");
  if (!digits) return { sign: 0, digits: "", point: 0 };
  return { sign: sign === "-" ? -1 : 1, digits, point: whole.length - lead + Number(exp || 0) };
}

/** Compare two decimal strings exactly (as the server's Decimal does): -1, 0 or 1. */
export function compareDecimal(a, b) {
  const x = decimalParts(a);
  const y = decimalParts(b);
  if (x.sign !== y.sign) return x.sign < y.sign ? -1 : 1;
  if (x.sign === 0) return 0;
  let magnitude = 0;
  if (x.point !== y.point) magnitude = x.point < y.point ? -1 : 1;
  else {
    const width = Math.max(x.digits.length, y.digits.length);
    const dx = x.digits.padEnd(width, "0");
    const dy = y.digits.padEnd(width, "0");
    magnitude = dx === dy ? 0 : dx < dy ? -1 : 1;
  }
  return magnitude * x.sign;
}

/** What a parameter accepts, in the same words as ParamSpec.allowed() on the server. */
export function allowed(spec) {
  if (spec.type === "choice") return `one of: ${(spec.choices || []).join(", ")}`;
  let words = TYPE_WORDS[spec.type] || spec.type;
  if (spec.min != null && spec.max != null) words += ` from ${spec.min} to ${spec.max}`;
  else if (spec.min != null) words += ` >= ${spec.min}`;
  else if (spec.max != null) words += ` <= ${spec.max}`;
  if (spec.pattern != null) words += ` matching ${spec.pattern}`;
  if (spec.unit) words += ` (${spec.unit})`;
  return words;
}

/**
 * Coerce one raw form value by its spec: { ok: true, value, compare } or { ok: false, error }.
 * `value` is what is sent (decimals stay strings), `compare` a number for cross-field rules.
 */
export function coerce(spec, raw) {
  const bad = () => ({ ok: false, error: `must be ${allowed(spec)}; got ${JSON.stringify(raw)}` });
  if (spec.type === "bool") return { ok: true, value: Boolean(raw), compare: Boolean(raw) };
  if (spec.type === "choice") {
    const found = (spec.choices || []).find((c) => String(c) === String(raw).trim());
    return found === undefined ? bad() : { ok: true, value: found, compare: found };
  }
  if (spec.type === "str") {
    const text = String(raw);
    if (spec.pattern != null && !new RegExp(`^(?:${spec.pattern})$`).test(text)) return bad();
    return { ok: true, value: text, compare: text };
  }
  const text = String(raw).trim();
  if (!NUMBER_RE.test(text)) return bad();
  if (spec.type === "decimal") { // exact, like Python's Decimal: 1e400 is a (large) decimal
    if ((spec.min != null && compareDecimal(text, spec.min) < 0) ||
        (spec.max != null && compareDecimal(text, spec.max) > 0)) return bad();
    return { ok: true, value: text, compare: Number(text) };
  }
  const number = Number(text);
  if (!Number.isFinite(number)) return bad();
  if (spec.type === "int" && !Number.isInteger(number)) return bad();
  if ((spec.min != null && number < Number(spec.min)) ||
      (spec.max != null && number > Number(spec.max))) return bad();
  return { ok: true, value: number, compare: number };
}

/** Validate every value: { values, errors } with errors keyed by parameter name. */
export function validate(schema, raw) {
  const values = {};
  const compare = {};
  const errors = {};
  for (const spec of schema.params) {
    const result = coerce(spec, raw[spec.name]);
    if (result.ok) {
      values[spec.name] = result.value;
      compare[spec.name] = result.compare;
    } else {
      errors[spec.name] = result.error;
    }
  }
  for (const rule of schema.rules || []) {
    if (!(rule.field in compare) || !(rule.other in compare) || errors[rule.field]) continue;
    const holds = OPS[rule.op];
    if (holds && !holds(compare[rule.field], compare[rule.other])) {
      errors[rule.field] = `${rule.message || `must be ${rule.op} ${rule.other}`} ` +
        `(got ${compare[rule.field]}, ${rule.other} is ${compare[rule.other]})`;
    }
  }
  return { values, errors };
}

function inputFor(spec, id, describedBy) {
  const common = { id, name: spec.name, "aria-describedby": describedBy, dataset: { type: spec.type } };
  if (spec.type === "bool") return el("input", { ...common, type: "checkbox" });
  if (spec.type === "choice") {
    const select = el("select", common);
    for (const choice of spec.choices || []) {
      select.append(el("option", { value: String(choice), text: String(choice) }));
    }
    return select;
  }
  const inputmode = spec.type === "int" ? "numeric" : spec.type === "str" ? null : "decimal";
  return el("input", {
    ...common, type: "text", inputmode, autocomplete: "off", spellcheck: "false", required: true,
  });
}

/** Draws and runs the form of one strategy's params; `onSave(values)` does the PUT. */
export class ParamsForm {
  constructor(form, container, message) {
    this.form = form;
    this.container = container;
    this.message = message;
    this.schema = null;
    this.current = {};
    this.dirty = false;
    form.addEventListener("input", (event) => this.edited(event.target));
    form.addEventListener("change", (event) => this.edited(event.target));
    form.addEventListener("reset", (event) => {
      event.preventDefault();
      this.setValues(this.current);
      this.say("");
    });
  }

  /** Draw the fields of `schema` ({params:[...], rules:[...]}) only. */
  draw(schema) {
    this.schema = schema;
    const fields = schema.params.map((spec) => {
      const id = `param-${spec.name}`;
      const words = ["choice", "bool"].includes(spec.type) ? null
        : el("span", { class: "allowed", text: ` (${allowed(spec)})` });
      const help = el("p", { id: `${id}-help`, class: "help" }, spec.help || "", words);
      const error = el("p", { id: `${id}-error`, class: "field-error", "aria-live": "polite" });
      const input = inputFor(spec, id, `${id}-help ${id}-error`);
      const label = el("label", { for: id }, spec.name.replaceAll("_", " "));
      const wrap = el("div", { class: `field field-${spec.type}`, dataset: { param: spec.name } });
      if (spec.type === "bool") wrap.append(el("div", { class: "check" }, input, label), help, error);
      else wrap.append(label, input, help, error);
      return wrap;
    });
    this.container.replaceChildren(...fields);
  }

  input(name) {
    return this.form.elements.namedItem(name);
  }

  /** Fill the inputs from saved params; leaves the form clean. */
  setValues(values) {
    this.current = { ...values };
    for (const spec of this.schema?.params || []) {
      const input = this.input(spec.name);
      if (!input) continue;
      const value = values[spec.name] ?? spec.default;
      if (spec.type === "bool") input.checked = value === true || value === "true";
      else input.value = value == null ? "" : String(value);
    }
    this.clearErrors();
    this.dirty = false;
  }

  raw() {
    const raw = {};
    for (const spec of this.schema.params) {
      const input = this.input(spec.name);
      raw[spec.name] = spec.type === "bool" ? input.checked : input.value;
    }
    return raw;
  }

  edited(target) {
    if (!target?.name || !this.schema) return;
    this.dirty = true;
    const spec = this.schema.params.find((s) => s.name === target.name);
    if (!spec) return;
    const result = coerce(spec, spec.type === "bool" ? target.checked : target.value);
    this.showError(spec.name, result.ok ? "" : result.error);
  }

  clearErrors() {
    for (const spec of this.schema?.params || []) this.showError(spec.name, "");
  }

  showError(name, text) {
    const error = document.getElementById(`param-${name}-error`);
    const input = this.input(name);
    if (error) error.textContent = text || "";
    if (input) {
      if (text) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }

  /** Show every field error (client or server); unknown names go to the form message. */
  showErrors(errors) {
    const stray = [];
    for (const spec of this.schema.params) this.showError(spec.name, errors[spec.name] || "");
    for (const [name, text] of Object.entries(errors)) {
      if (!this.schema.params.some((s) => s.name === name)) stray.push(`${name}: ${text}`);
    }
    const first = this.schema.params.find((s) => errors[s.name]);
    if (first) this.input(first.name)?.focus();
    return stray;
  }

  say(text, kind = "") {
    this.message.textContent = text;
    this.message.dataset.kind = kind;
  }

  /** Client-side check; returns the values to send, or null after showing the errors. */
  check() {
    const { values, errors } = validate(this.schema, this.raw());
    if (Object.keys(errors).length) {
      const stray = this.showErrors(errors);
      this.say(["Not saved: fix the fields marked in red.", ...stray].join(" "), "error");
      return null;
    }
    this.clearErrors();
    this.say("");
    return values;
  }
}
