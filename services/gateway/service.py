"""Gateway service: serves the Flask app on GATEWAY_HOST:GATEWAY_PORT and heartbeats."""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import make_server

from services.gateway.app import create_app
from services.gateway.health import HealthBook, HealthListener
from shared.service import Service

log = logging.getLogger(__name__)


class GatewayService(Service):
    """Runs the HTTP server on a thread; the bus listeners feed what it shows."""

    name = "gateway"

    def on_start(self) -> None:
        self.health = HealthBook(self.config.health_timeout_s, self.clock)
        self.listener = HealthListener(self.ctx, self.config.endpoints.bus_xpub, self.health)
        self.listener.start()
        app = create_app(self.health)
        self.http = make_server(
            self.config.gateway_host, self.config.gateway_port, app, threaded=True
        )
        self._http_thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )
        self._http_thread.start()
        log.info("dashboard on http://%s:%d", self.config.gateway_host, self.http.server_port)

    def on_stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.listener.stop()
