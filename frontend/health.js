// Service health table: polls /api/health every second and says when the gateway is away.
"use strict";

const tbody = document.querySelector("#services tbody");
const conn = document.getElementById("conn");

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function render(view) {
  document.getElementById("timeout").textContent = view.timeout_s;
  tbody.replaceChildren();
  for (const [name, s] of Object.entries(view.services).sort()) {
    const tr = document.createElement("tr");
    tr.dataset.service = name;
    tr.append(
      cell(name),
      cell(s.up ? "up" : "down", s.up ? "up" : "down"),
      cell(s.status),
      cell(String(s.up_instances ?? 0)),
      cell(s.uptime_s == null ? "–" : `${s.uptime_s.toFixed(0)} s`),
      cell(s.last_seen_s == null ? "never" : `${s.last_seen_s.toFixed(1)} s ago`),
    );
    tbody.append(tr);
  }
}

async function poll() {
  try {
    const resp = await fetch("/api/health", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    render(await resp.json());
    conn.textContent = "connected";
    conn.className = "badge up";
  } catch (err) {
    conn.textContent = `gateway unreachable (${err.message}), retrying`;
    conn.className = "badge down";
  }
}

poll();
setInterval(poll, 1000);
