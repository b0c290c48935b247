"""The gateway's Flask app, built by ``create_app`` so tests can hand it what they want.

Errors are always JSON of one shape: ``{"error": {"code", "message", "fields"}}``; an
unexpected failure is logged and answered 500 in that shape, never with a stack trace.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, current_app, jsonify, redirect, request, send_from_directory
from werkzeug.exceptions import HTTPException

from services.gateway import api, inputs, openapi, reports, ws
from services.gateway.auth import Auth, AuthSettings
from services.gateway.backend import Backends
from services.gateway.errors import ApiError, error_body
from services.gateway.health import HealthBook
from services.gateway.live import LiveData

log = logging.getLogger(__name__)

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
MAX_BODY_BYTES = 256 * 1024

__all__ = ["create_app", "error_body"]

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in — trading bot</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main><h1>Trading bot</h1>
<form method="post" action="/login"><p>{message}</p>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form></main></body></html>
"""


def create_app(health: HealthBook, config: dict | None = None, *,
               backends: Backends | None = None, live: LiveData | None = None) -> Flask:
    """Build the app around a health table, the backends (state, execution, market data)
    and the live bus views; without them the routes that need them answer 503.

    ``config`` keys: ``DASHBOARD_PASSWORD``, ``DASHBOARD_PASSWORD_HASH``, ``API_TOKENS``
    (list or comma-separated), ``SECRET_KEY``, ``LOGIN_MAX_FAILURES``, ``LOGIN_WINDOW_S``,
    ``WS_QUEUE_SIZE``, ``WS_DROP_GRACE_S``, plus any Flask setting.
    """
    app = Flask(__name__, static_folder=str(FRONTEND), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.url_map.merge_slashes = False  # an API answers JSON, never a redirect
    app.url_map.strict_slashes = False
    app.config.update(config or {})
    auth = Auth(AuthSettings.from_mapping(app.config))
    auth.install(app)
    app.extensions["gateway"] = api.Gateway(backends, live)
    app.register_blueprint(api.bp)
    app.register_blueprint(reports.bp)
    ws.install(app, live)
    _pages(app, health, auth)
    _errors(app)
    return app


def _pages(app: Flask, health: HealthBook, auth: Auth) -> None:
    @app.get("/")
    def index():
        return send_from_directory(FRONTEND, "index.html")

    @app.get("/api/health")
    def api_health():
        return jsonify(health.view())

    @app.get("/api/openapi.json")
    def api_openapi():
        return jsonify(openapi.document())

    @app.get("/api/session")
    def api_session():
        return jsonify(auth.session_view())

    @app.post("/api/login")
    def api_login():
        data = inputs.read_json(request)
        password = data.get("password") if isinstance(data, dict) else None
        if not isinstance(password, str):
            raise ApiError(400, "invalid", "send {\"password\": \"...\"}",
                           {"password": "required"})
        return jsonify(auth.login(password))

    @app.post("/api/logout")
    def api_logout():
        return jsonify(auth.logout())

    @app.get("/login")
    def login_page():
        return LOGIN_PAGE.format(message="This dashboard is protected by a password.")

    @app.post("/login")
    def login_form():
        try:
            auth.login(request.form.get("password", ""))
        except ApiError as exc:
            text = "Too many attempts; wait a moment." if exc.status == 429 else "Wrong password."
            return LOGIN_PAGE.format(message=text), exc.status, exc.headers
        return redirect("/", code=303)


def _errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(exc.body()), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error_body("internal", "the gateway failed; see its log")), 500
