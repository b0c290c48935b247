"""Saved backtest reports for the dashboard: the list (``GET /api/reports``) and each report's
self-contained HTML page (``GET /reports/<name>.html``).

The backtester (``backtest/report.py``) writes ``<name>.json``, ``<name>.html`` and an
``index.json`` listing them into ``DATA_DIR/reports``; this blueprint only reads that folder
(``REPORTS_DIR`` in the app's config overrides it). A name is a plain file stem: anything
else, or a report that is not there, is a JSON 404, so no path leaves the folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, send_file

from services.gateway.errors import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("reports", __name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
INDEX = "index.json"
# what the dashboard shows of an index entry (the backtester writes these fields)
FIELDS = ("name", "created_ms", "strategy", "symbol", "interval", "first_candle",
          "last_candle", "total_return", "max_drawdown", "sharpe", "trades")


def reports_dir() -> Path:
    """``REPORTS_DIR`` from the app's config, else ``DATA_DIR/reports`` as the backtester
    writes it (``DATA_DIR`` defaults to ``var``)."""
    configured = current_app.config.get("REPORTS_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("DATA_DIR") or "var") / "reports"


def list_reports(folder: Path) -> list[dict[str, Any]]:
    """The index's entries whose HTML page exists, newest first, each with its page URL."""
    try:
        index = json.loads((folder / INDEX).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("unreadable reports index %s: %s", folder / INDEX, exc)
        return []
    entries = index.get("reports") if isinstance(index, dict) else None
    out = []
    for entry in entries if isinstance(entries, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not NAME.match(name):
            continue
        if not (folder / f"{name}.html").is_file():
            continue
        item = {key: entry.get(key) for key in FIELDS}
        item["url"] = f"/reports/{name}.html"
        out.append(item)
    out.sort(key=lambda e: e["created_ms"] if isinstance(e["created_ms"], int) else 0,
             reverse=True)
    return out


def _not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no saved report named {name!r}")


@bp.get("/api/reports")
def api_reports():
    return jsonify({"items": list_reports(reports_dir())})


@bp.get("/reports/<name>.html")
def report_page(name: str):
    """A report's HTML page; only a plain name of a file inside the reports folder."""
    if not NAME.match(name) or ".." in name:
        raise _not_found(name[:100])
    folder = reports_dir().resolve()
    path = (folder / f"{name}.html").resolve()
    if path.parent != folder or not path.is_file():
        raise _not_found(name)
    return send_file(path, mimetype="text/html", max_age=0)
