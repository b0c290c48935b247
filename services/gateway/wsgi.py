"""Gunicorn entry point: ``gunicorn ... services.gateway.wsgi:app``.

Builds the gateway service without its own HTTP server, runs its loop (heartbeats, bus
feeds) on a thread, and exposes the Flask ``app``. Use one worker process with threads
(``--workers 1 --worker-class gthread``): the WebSocket hub and the bus views live in it.
"""

from __future__ import annotations

import atexit
import sys
import threading

from services.gateway.service import GatewayService
from shared.config import load_config
from shared.errors import ConfigError


def build() -> GatewayService:
    try:
        config = load_config(GatewayService.name)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    service = GatewayService(config, configure_logging=True, serve_http=False)
    service.start()
    threading.Thread(target=service.run, name="gateway-loop", daemon=True).start()
    atexit.register(service.stop)
    return service


service = build()
app = service.app
