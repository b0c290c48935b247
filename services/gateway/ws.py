"""WebSocket routes: ``/ws`` (channels with snapshots and numbered updates) and ``/ws_logs``.

One handler thread per socket moves frames from the client's bounded queue (filled by the
hub) to the socket, and reads the client's commands in between. A client dropped for being
slow gets a close frame with the reason; if its socket stays blocked, it is shut down after
a grace period so its thread ends too.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from flask import Flask, current_app, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from services.gateway.hub import SLOW_REASON, Hub, WsClient, dumps
from services.gateway.live import LEVELS, LiveData, matches

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
GOING_AWAY = 1001
WAIT_S = 0.05
PING_INTERVAL_S = 20
MAX_CLIENT_MESSAGE = 64 * 1024


def install(app: Flask, live: LiveData | None) -> Sock:
    """Add the two WebSocket routes; without ``live`` they answer and close at once."""
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": PING_INTERVAL_S,
                                                  "max_message_size": MAX_CLIENT_MESSAGE})
    app.config.setdefault("WS_QUEUE_SIZE", 1000)
    app.config.setdefault("WS_DROP_GRACE_S", 5.0)
    sock = Sock(app)

    @sock.route("/ws")
    def channels(ws) -> None:
        serve(ws, live, commands=True)

    @sock.route("/ws_logs")
    def plain_logs(ws) -> None:
        serve(ws, live, commands=False)

    return sock


def serve(ws, live: LiveData | None, commands: bool) -> None:
    auth = current_app.extensions.get("gateway_auth")
    if auth is not None and not auth.websocket_allowed():
        ws.close(POLICY_VIOLATION, "unauthorized")
        return
    if live is None:
        ws.close(1011, "no live data in this gateway")
        return
    client = WsClient(current_app.config["WS_QUEUE_SIZE"], name=request.remote_addr or "")
    session = Session(ws, live.hub, client, current_app.config["WS_DROP_GRACE_S"])
    client.on_drop = session.start_watchdog
    live.hub.attach(client)
    if commands:
        client.offer(dumps({"type": "hello", "channels": list(live.hub.channels)}))
    else:
        session.formatter = LogLines(request.args.get("level", ""),
                                     request.args.get("service", ""))
        live.hub.subscribe(client, ["logs"])
    try:
        session.run(commands)
    except (ConnectionClosed, OSError):
        pass
    finally:
        live.hub.detach(client)
        client.close("gone")
        session.finished.set()


class LogLines:
    """Turns ``logs`` channel frames into the original bot's plain text lines."""

    def __init__(self, level: str, service: str) -> None:
        self.floor = LEVELS.get(level.upper(), 0)
        self.service = service

    def __call__(self, text: str) -> list[str]:
        frame = json.loads(text)
        data = frame.get("data", {})
        items = data.get("items", []) if frame.get("type") == "snapshot" else [data]
        return [_line(i) for i in items if matches(i, self.floor, self.service)]


def _line(item: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item["ts"]))
    millis = int((item["ts"] % 1) * 1000)
    return f"{stamp},{millis:03d} {item['level']} {item['service']}: {item['message']}"


class Session:
    """The loop of one socket: deliver queued frames, obey commands, close on a drop."""

    def __init__(self, ws, hub: Hub, client: WsClient, grace_s: float) -> None:
        self.ws = ws
        self.hub = hub
        self.client = client
        self.grace_s = grace_s
        self.formatter = None
        self.finished = threading.Event()

    def run(self, commands: bool) -> None:
        while self.ws.connected:
            if commands:
                self._read_commands()
            text = self.client.next(WAIT_S)
            if self.client.close_reason is not None:
                self._close_dropped()
                return
            while text is not None:
                self._send(text)
                text = self.client.next(0)
                if self.client.close_reason is not None:
                    self._close_dropped()
                    return
            if not commands and self.ws.receive(timeout=0) is None and not self.ws.connected:
                return

    def _send(self, text: str) -> None:
        if self.formatter is None:
            self.ws.send(text)
            return
        for line in self.formatter(text):
            self.ws.send(line)

    def _read_commands(self) -> None:
        while True:
            raw = self.ws.receive(timeout=0)
            if raw is None:
                return
            error = self._command(raw)
            if error is not None:
                self.client.offer(dumps({"type": "error", **error}))

    def _command(self, raw: Any) -> dict[str, Any] | None:
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            return {"message": "send a JSON object", "fields": {}}
        if not isinstance(message, dict) or not message:
            return {"message": "send a JSON object", "fields": {}}
        actions = {"subscribe": self.hub.subscribe, "unsubscribe": self.hub.unsubscribe,
                   "resnapshot": self.hub.resnapshot}
        for key, value in message.items():
            action = actions.get(key)
            if action is None:
                return {"message": f"unknown command {key!r}",
                        "fields": {key: "use subscribe, unsubscribe or resnapshot"}}
            try:
                channels = self.hub.check(value)
            except ValueError as exc:
                return {"message": str(exc), "fields": {key: str(exc)}}
            if key == "resnapshot":
                channels = [c for c in channels if c in self.client.channels]
            action(self.client, channels)
        return None

    def start_watchdog(self) -> None:
        """On a drop (publisher's thread): shut the socket if the close has not gone out
        within the grace period, so a socket blocked in ``send`` frees its thread."""
        timer = threading.Timer(self.grace_s, self._force_close)
        timer.daemon = True
        timer.start()

    def _close_dropped(self) -> None:
        reason = self.client.close_reason
        self.ws.close(POLICY_VIOLATION if reason == SLOW_REASON else GOING_AWAY, reason)
        self.finished.set()

    def _force_close(self) -> None:
        if self.finished.is_set():
            return
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
