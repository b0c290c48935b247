"""The one lifecycle every service shares: start, run loop, stop, heartbeat.

State machine (after nautilus_trader's component): INITIALIZED -> STARTING -> RUNNING ->
STOPPING -> STOPPED, with DEGRADED (running, something is wrong) and FAULTED (a step
failed; the service keeps heartbeating so the dashboard can say why). ``stop`` is
idempotent. SIGTERM/SIGINT stop the loop within 2 s; SIGHUP restarts the process in place
(same pid, so honcho does not notice) after a clean stop: that is how one service is
restarted alone while the others carry on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

import zmq

from shared import topics
from shared.bus import Publisher
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Config, load_config
from shared.errors import ConfigError
from shared.logs import setup_logging
from shared.messages import Heartbeat

log = logging.getLogger(__name__)

INITIALIZED, STARTING, RUNNING, DEGRADED, FAULTED, STOPPING, STOPPED = (
    "INITIALIZED", "STARTING", "RUNNING", "DEGRADED", "FAULTED", "STOPPING", "STOPPED",
)
LOOP_TICK_S = 0.1  # the longest a loop step may block: bounds the stop latency


class Service:
    """Base class: subclasses override ``on_start``, ``step`` and ``on_stop``."""

    name = "service"

    def __init__(
        self, config: Config, clock: Clock = SYSTEM_CLOCK, configure_logging: bool = False
    ) -> None:
        self.config = config
        self.configure_logging = configure_logging
        self.clock = clock
        self.instance = f"{socket.gethostname()}-{os.getpid()}"
        self.state = INITIALIZED
        self.status_detail: dict = {}
        self.ctx: zmq.Context | None = None
        self.publisher: Publisher | None = None
        self._stop_event = threading.Event()
        self._started_at = 0.0
        self._started_wall = 0.0
        self._next_heartbeat = 0.0
        self._lock = threading.Lock()

    # --- hooks ---------------------------------------------------------------------------

    def on_start(self) -> None:
        """Open the service's own sockets and threads."""

    def step(self, timeout_s: float) -> None:
        """Do one unit of work, blocking at most ``timeout_s``. Default: just wait."""
        self._stop_event.wait(timeout_s)

    def on_stop(self) -> None:
        """Close what ``on_start`` opened. Must not raise."""

    def heartbeat_detail(self) -> dict:
        """Extra fields for the heartbeat (counters, sync times...)."""
        return dict(self.status_detail)

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def start(self) -> None:
        self.state = STARTING
        self._started_at = self.clock.monotonic()
        self._started_wall = self.clock.time()
        self.ctx = zmq.Context()
        self.publisher = Publisher(self.ctx, self.config.endpoints.bus_xsub)
        if self.configure_logging:  # a process owns its root logger; a test does not
            setup_logging(self.name, self.config.log_level, self.config.secrets(),
                          self.publisher, self.instance)
        self.on_start()
        self.state = RUNNING
        log.info("%s started (mode=%s, instance=%s)", self.name, self.config.mode, self.instance)
        self.heartbeat()

    def run(self) -> None:
        """Run until ``request_stop``; heartbeats keep flowing even when a step fails."""
        while not self._stop_event.is_set():
            now = self.clock.monotonic()
            if now >= self._next_heartbeat:
                self.heartbeat()
            timeout = max(0.0, min(LOOP_TICK_S, self._next_heartbeat - now))
            try:
                self.step(timeout)
            except Exception as exc:
                self.state = FAULTED
                self.status_detail["fault"] = f"{type(exc).__name__}: {exc}"
                log.exception("%s step failed", self.name)
                self._stop_event.wait(LOOP_TICK_S)

    def heartbeat(self) -> None:
        now = self.clock.monotonic()
        self._next_heartbeat = now + self.config.heartbeat_interval_s
        if self.publisher is None:
            return
        beat = Heartbeat(
            service=self.name,
            instance=self.instance,
            status=self.state,
            uptime_s=round(now - self._started_at, 3),
            ts=self.clock.time(),
            pid=os.getpid(),
            detail=self.heartbeat_detail(),
            started_at=self._started_wall,
        )
        self.publisher.publish(topics.health(self.name), beat)

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self) -> None:
        """Close everything; calling it twice is harmless."""
        with self._lock:
            if self.state in (STOPPING, STOPPED):
                return
            self.state = STOPPING
        self._stop_event.set()
        try:
            self.on_stop()
        except Exception:
            log.exception("%s on_stop failed", self.name)
        log.info("%s stopped", self.name)
        self.state = STOPPED
        self.heartbeat()
        if self.publisher is not None:
            self.publisher.close()
        if self.ctx is not None:
            self.ctx.destroy(linger=0)


class ServiceThread:
    """A service started and run on a thread of this process (benchmarks, tests);
    ``close`` stops it and says whether its loop ended within ``join_s``."""

    def __init__(self, service: Service, join_s: float = 2.0) -> None:
        self.service = service
        self.join_s = join_s
        service.start()
        self.thread = threading.Thread(target=service.run, name=f"{service.name}-loop",
                                       daemon=True)
        self.thread.start()

    def close(self) -> bool:
        self.service.request_stop()
        self.thread.join(timeout=self.join_s)
        self.service.stop()
        return not self.thread.is_alive()


def _pidfile(config: Config, service: Service) -> Path:
    return config.data_dir / "run" / f"{service.name}.{os.getpid()}.pid"


def main(service_cls: type[Service]) -> None:
    """Entry point of ``python -m services.<name>``: config, signals, run, clean exit."""
    try:
        config = load_config(service_cls.name)
    except ConfigError as exc:
        print(f"{service_cls.name}: {exc}", file=sys.stderr)
        sys.exit(2)
    service = service_cls(config, configure_logging=True)
    restart = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            restart.set()
        service.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    pidfile = _pidfile(config, service)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(os.getpid()))
    try:
        service.start()
        service.run()
    finally:
        service.stop()
        pidfile.unlink(missing_ok=True)
    if restart.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", f"services.{service_cls.name}"])


class ReplyService(Service):
    """A service that answers requests on its own endpoint between heartbeats."""

    endpoint_name = ""  # the Endpoints attribute this service binds

    def on_start(self) -> None:
        from shared.bus import ReplyServer

        self.server = ReplyServer(self.ctx, self.config.endpoints.bind(self.endpoint_name),
                                  self.handle)

    def handle(self, request):
        """Answer one request; the default knows only ``Ping``."""
        from shared.errors import ValidationError
        from shared.messages import Ping

        if isinstance(request, Ping):
            return {"service": self.name, "instance": self.instance, "nonce": request.nonce}
        raise ValidationError({"type": f"{self.name} does not handle {request.type}"})

    def step(self, timeout_s: float) -> None:
        self.server.serve(int(timeout_s * 1000))

    def on_stop(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.close()
