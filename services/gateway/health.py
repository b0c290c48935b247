"""The last heartbeat of every service instance, heard on ``health.*``.

Liveness is judged on the gateway's own monotonic clock when each beat arrives, so a
sender's clock skew cannot make a dead service look alive. A service is up when at least one
of its instances beat within ``timeout_s`` and did not announce STOPPED.
"""

from __future__ import annotations

import logging
import threading

import zmq

from shared.bus import Subscriber
from shared.clock import SYSTEM_CLOCK, Clock
from shared.messages import Heartbeat

log = logging.getLogger(__name__)

SERVICES = ("bus", "marketdata", "strategy", "execution", "state", "gateway", "exchange_sim")
FORGET_AFTER_S = 60.0  # an instance silent this long (a removed worker) leaves the view
DOWN_STATES = ("STOPPED", "STOPPING")


class HealthBook:
    """Thread-safe table of the latest heartbeat per (service, instance)."""

    def __init__(self, timeout_s: float = 3.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._beats: dict[tuple[str, str], tuple[float, Heartbeat]] = {}
        self._lock = threading.Lock()

    def record(self, beat: Heartbeat) -> None:
        with self._lock:
            self._beats[(beat.service, beat.instance)] = (self.clock.monotonic(), beat)

    def view(self) -> dict:
        """``{"services": {name: {...}}}`` for every known service, silent ones shown down."""
        now = self.clock.monotonic()
        with self._lock:
            for key, (seen, _) in list(self._beats.items()):
                if now - seen > FORGET_AFTER_S:
                    del self._beats[key]
            beats = list(self._beats.values())
        services = {name: _empty() for name in SERVICES}
        for seen, beat in beats:
            entry = services.setdefault(beat.service, _empty())
            age = round(now - seen, 3)
            up = age <= self.timeout_s and beat.status not in DOWN_STATES
            entry["instances"][beat.instance] = {
                "up": up, "last_seen_s": age, "status": beat.status,
                "uptime_s": beat.uptime_s, "started_at": beat.started_at, "pid": beat.pid,
                "detail": beat.detail,
            }
        for entry in services.values():
            _summarise(entry)
        return {"services": services, "timeout_s": self.timeout_s}


def _empty() -> dict:
    return {"up": False, "last_seen_s": None, "status": "UNKNOWN", "instances": {}}


def _summarise(entry: dict) -> None:
    instances = list(entry["instances"].values())
    if not instances:
        return
    freshest = min(instances, key=lambda i: i["last_seen_s"])
    entry["up"] = any(i["up"] for i in instances)
    entry["last_seen_s"] = freshest["last_seen_s"]
    entry["status"] = freshest["status"] if entry["up"] else "DOWN"
    entry["uptime_s"] = freshest["uptime_s"]
    entry["up_instances"] = sum(1 for i in instances if i["up"])


class HealthListener:
    """A thread that feeds a ``HealthBook`` from the bus until stopped."""

    def __init__(self, ctx: zmq.Context, endpoint: str, book: HealthBook) -> None:
        self.book = book
        self._sub = Subscriber(ctx, endpoint, ["health."])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self._sub.recv(timeout_ms=100)
            if got is not None and isinstance(got[1], Heartbeat):
                self.book.record(got[1])
        self._sub.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
