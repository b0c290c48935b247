"""The gateway's Flask app, built by ``create_app`` so tests can hand it fakes.

Errors are always JSON of one shape: ``{"error": {"code", "message", "fields"}}``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, send_from_directory
from werkzeug.exceptions import HTTPException

from services.gateway.health import HealthBook

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def create_app(health: HealthBook, config: dict | None = None) -> Flask:
    """Build the app around a health table (and, in later issues, state/execution clients)."""
    app = Flask(__name__, static_folder=str(FRONTEND), static_url_path="/static")
    app.config.update(config or {})

    @app.get("/")
    def index():
        return send_from_directory(FRONTEND, "index.html")

    @app.get("/api/health")
    def api_health():
        return jsonify(health.view())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), exc.code

    return app
