"""Gateway service: the Flask app on GATEWAY_HOST:GATEWAY_PORT, fed by the bus, heartbeating.

``GatewayService`` builds everything the app needs (live views, state replica, backends,
auth settings). Under ``python -m services.gateway`` it serves with werkzeug's threaded
server; under Gunicorn (``services.gateway.wsgi``) it is built with ``serve_http=False`` and
Gunicorn serves ``service.app``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

from dotenv import dotenv_values
from flask import Flask
from werkzeug.serving import make_server

from services.gateway.app import create_app
from services.gateway.backend import Backends
from services.gateway.feeds import Feeds
from services.gateway.health import HealthBook
from services.gateway.live import LiveData
from shared.logs import RedactFilter
from shared.service import Service

log = logging.getLogger(__name__)

ENV_KEYS = ("DASHBOARD_PASSWORD_HASH", "GATEWAY_API_TOKENS", "GATEWAY_SECRET_KEY",
            "GATEWAY_COOKIE_SECURE")


def gateway_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The gateway's own variables (beyond ``Config``), from ``.env`` then the environment."""
    if env is None:
        merged = {k: v for k, v in dotenv_values(Path(".env")).items() if v is not None} \
            if Path(".env").is_file() else {}
        merged.update(os.environ)
        env = merged
    return {k: env[k].strip() for k in ENV_KEYS if env.get(k, "").strip()}


class GatewayService(Service):
    """Runs the HTTP server on a thread; the bus feeds keep what it shows live."""

    name = "gateway"

    def __init__(self, *args, serve_http: bool = True, env: dict[str, str] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.serve_http = serve_http
        self.env = gateway_env(env)
        self.app: Flask | None = None
        self.http = None

    def app_config(self) -> dict:
        config = {
            "DASHBOARD_PASSWORD": self.config.dashboard_password,
            "DASHBOARD_PASSWORD_HASH": self.env.get("DASHBOARD_PASSWORD_HASH", ""),
            "API_TOKENS": self.env.get("GATEWAY_API_TOKENS", ""),
            "GATEWAY_COOKIE_SECURE": self.env.get("GATEWAY_COOKIE_SECURE", ""),
        }
        config["SECRET_KEY"] = self.env.get("GATEWAY_SECRET_KEY") or self._session_key()
        return config

    def _session_key(self) -> str:
        """A random session-signing key kept in the data dir, so a restarted gateway keeps
        its users logged in; readable by this user only."""
        path = Path(self.config.data_dir) / "gateway.key"
        try:
            return path.read_text().strip() or self._new_key(path)
        except FileNotFoundError:
            return self._new_key(path)

    @staticmethod
    def _new_key(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key

    def on_start(self) -> None:
        config = self.app_config()
        if self.configure_logging:
            self._redact(config)
        self.health = HealthBook(self.config.health_timeout_s, self.clock)
        self.live = LiveData(self.health)
        self.backends = Backends(self.ctx, self.config.endpoints)
        self.feeds = Feeds(self.ctx, self.config.endpoints, self.live,
                           subscriber=f"gateway-{self.instance}").start()
        self.app = create_app(self.health, config, backends=self.backends, live=self.live)
        if not self.serve_http:
            return
        self.http = make_server(
            self.config.gateway_host, self.config.gateway_port, self.app, threaded=True
        )
        self.http.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )
        self._http_thread.start()
        log.info("dashboard on http://%s:%d (auth %s)", self.config.gateway_host,
                 self.http.server_port, "on" if self.app.extensions["gateway_auth"].enabled
                 else "off")

    def heartbeat_detail(self) -> dict:
        detail = dict(self.status_detail)
        live = getattr(self, "live", None)
        if live is not None:
            detail["ws_clients"] = live.hub.subscriber_count()
            detail["ws_dropped"] = live.hub.dropped
        return detail

    def on_stop(self) -> None:
        if getattr(self, "live", None) is not None:
            self.live.hub.close_all("gateway stopping")
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        if getattr(self, "feeds", None) is not None:
            self.feeds.stop()
        if getattr(self, "backends", None) is not None:
            self.backends.close()

    @staticmethod
    def _redact(config: dict) -> RedactFilter:
        """Add the gateway's own secrets (hash, tokens, session key) to the log redaction."""
        secrets = [config.get("DASHBOARD_PASSWORD_HASH", ""), config.get("SECRET_KEY", ""),
                   *str(config.get("API_TOKENS", "")).split(",")]
        redactor = RedactFilter(s.strip() for s in secrets)
        for handler in logging.getLogger().handlers:
            handler.addFilter(redactor)
        return redactor
