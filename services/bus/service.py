"""The bus: the zguide espresso proxy (XSUB <-> XPUB) with per-topic-prefix counters.

The forwarding runs in libzmq's C proxy (``zmq.proxy_steerable``) on its own thread, so
Python never sits in the message path. A capture socket copies every message to a counting
thread (at the lowest CPU priority) over inproc PUB/SUB; if the counter cannot keep up, it
is the copy that is dropped, never the traffic (the counts are then a lower bound).

High-water marks, set on purpose:
- XSUB ``RCVHWM`` and XPUB ``SNDHWM`` = 100,000 messages per peer. At ~200 bytes a message
  that bounds a stalled subscriber to ~20 MB of queue; past it, pub/sub drops for that
  subscriber only, and publishers are never blocked. Anything that must not be lost travels
  request/reply, not here.
- The capture pair holds 200,000 messages, twice the peer bound, so bursts are counted.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter

import zmq

from shared import topics
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Config
from shared.messages import BusStats
from shared.service import Service

log = logging.getLogger(__name__)

PEER_HWM = 100_000
CAPTURE_HWM = 200_000
STATS_INTERVAL_S = 1.0


class BusService(Service):
    """Forwards every published message to every matching subscriber and counts them."""

    name = "bus"

    def __init__(self, config: Config, clock: Clock = SYSTEM_CLOCK, **kwargs) -> None:
        super().__init__(config, clock, **kwargs)
        self._proxy_thread: threading.Thread | None = None
        self._counts: Counter[bytes] = Counter()
        self._totals: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._last_stats = 0.0

    def on_start(self) -> None:
        ctx = self.ctx
        self._xsub = ctx.socket(zmq.XSUB)
        self._xpub = ctx.socket(zmq.XPUB)
        self._capture = ctx.socket(zmq.PUB)
        self._capture_in = ctx.socket(zmq.SUB)
        self._control = ctx.socket(zmq.PAIR)
        control_peer = ctx.socket(zmq.PAIR)
        for sock in (self._xsub, self._xpub, self._capture, self._capture_in, self._control,
                     control_peer):
            sock.setsockopt(zmq.LINGER, 0)
        self._xsub.setsockopt(zmq.RCVHWM, PEER_HWM)
        self._xpub.setsockopt(zmq.SNDHWM, PEER_HWM)
        self._capture.setsockopt(zmq.SNDHWM, CAPTURE_HWM)
        self._capture_in.setsockopt(zmq.RCVHWM, CAPTURE_HWM)
        self._capture_in.setsockopt(zmq.SUBSCRIBE, b"")
        self._capture_in.bind("inproc://bus-capture")
        self._capture.connect("inproc://bus-capture")
        self._control.bind("inproc://bus-control")
        control_peer.connect("inproc://bus-control")
        self._xsub.bind(self.config.endpoints.bind("bus_xsub"))
        self._xpub.bind(self.config.endpoints.bind("bus_xpub"))
        self._last_stats = self.clock.monotonic()
        self._proxy_thread = threading.Thread(
            target=self._proxy, args=(control_peer,), name="bus-proxy", daemon=True
        )
        self._proxy_thread.start()
        self._counter_thread = threading.Thread(target=self._count_loop, name="bus-counter",
                                                daemon=True)
        self._counter_thread.start()

    def _proxy(self, control: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(self._xsub, self._xpub, self._capture, control)
        except zmq.ContextTerminated:
            pass
        finally:
            control.close()

    def _count_loop(self) -> None:
        """Count captured messages by raw topic, on a thread of the lowest CPU priority.

        Forwarding is what matters: on a busy machine this thread yields the CPU to the
        publishers and subscribers (and the copies it has not read are dropped by the
        capture socket, making the counts a lower bound) instead of slowing the traffic."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            log.debug("could not lower the counter thread's priority")
        sock = self._capture_in
        recv = sock.recv_multipart
        while not self.stopping:
            if not sock.poll(100, zmq.POLLIN):
                continue
            batch: Counter[bytes] = Counter()
            for _ in range(10_000):
                try:
                    frames = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) == 2:  # [topic, body]; one-frame copies are subscriptions
                    batch[frames[0]] += 1
            with self._counts_lock:
                self._counts.update(batch)

    def step(self, timeout_s: float) -> None:
        """Publish the rates per topic prefix once a second."""
        now = self.clock.monotonic()
        if now - self._last_stats >= STATS_INTERVAL_S:
            self._publish_stats(now)
        self._stop_event.wait(timeout_s)

    def _publish_stats(self, now: float) -> None:
        interval = now - self._last_stats
        self._last_stats = now
        with self._counts_lock:
            raw, self._counts = self._counts, Counter()
        counts: Counter[str] = Counter()
        for topic, n in raw.items():
            counts[topics.prefix_of(topic.decode("utf-8", "replace"))] += n
        self._totals.update(counts)
        rates = {k: round(v / interval, 1) for k, v in counts.items()}
        stats = BusStats(
            ts=self.clock.time(), interval_s=round(interval, 3), rates=rates,
            totals=dict(self._totals),
        )
        self.publisher.publish(topics.health("bus"), stats)

    def heartbeat_detail(self) -> dict:
        return {"topics": len(self._totals), "messages": sum(self._totals.values())}

    def on_stop(self) -> None:
        if self._proxy_thread is not None:
            try:
                self._control.send(b"TERMINATE")
            except zmq.ZMQError:
                pass
            self._proxy_thread.join(timeout=1.0)
            self._counter_thread.join(timeout=1.0)
        for sock in (self._xsub, self._xpub, self._capture, self._capture_in, self._control):
            sock.close()
