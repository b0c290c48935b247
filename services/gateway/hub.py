"""WebSocket fan-out: channels with per-channel sequence numbers and per-client bounded queues.

The bus threads call ``Hub.publish`` (or ``Hub.update``, which changes the data a snapshot is
made from under the same lock); each update is encoded to JSON once and offered to every
subscriber's queue without blocking. A client whose queue is full is dropped with a reason;
the publisher never waits for a socket. Snapshots are taken under the hub's lock, so a
snapshot with ``seq: n`` is followed by exactly the updates ``n + 1, n + 2...``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

CHANNELS = ("health", "logs", "orders", "state", "ticker")
QUEUE_SIZE = 1000
SLOW_REASON = "slow consumer: queue full"

SnapshotFn = Callable[[str], Any]


def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


class WsClient:
    """One connected socket's outbox: bounded, closed with a reason when it overflows."""

    def __init__(self, maxsize: int = QUEUE_SIZE, name: str = "") -> None:
        self.maxsize = maxsize
        self.name = name
        self.channels: set[str] = set()
        self.close_reason: str | None = None
        self.on_drop: Callable[[], None] | None = None  # called once, when it overflows
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()

    def offer(self, text: str) -> bool:
        """Queue one frame; False (and the client marked dropped) when the queue is full."""
        with self._cond:
            if self.close_reason is not None:
                return False
            if len(self._queue) >= self.maxsize:
                self.close_reason = SLOW_REASON
                self._queue.clear()
                self._cond.notify_all()
                if self.on_drop is not None:
                    self.on_drop()
                return False
            self._queue.append(text)
            self._cond.notify()
            return True

    def next(self, timeout_s: float) -> str | None:
        """The next frame, or None after ``timeout_s`` or once the client is closed."""
        with self._cond:
            if not self._queue and self.close_reason is None:
                self._cond.wait(timeout_s)
            if self.close_reason is not None or not self._queue:
                return None
            return self._queue.popleft()

    def close(self, reason: str) -> None:
        with self._cond:
            if self.close_reason is None:
                self.close_reason = reason
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)


class Hub:
    """Channels of numbered updates; ``snapshot(channel)`` gives a channel's current data."""

    def __init__(self, snapshot: SnapshotFn, channels: Iterable[str] = CHANNELS) -> None:
        self.channels = tuple(sorted(channels))
        self._snapshot = snapshot
        self.lock = threading.RLock()
        self._seq = dict.fromkeys(self.channels, 0)
        self._subscribers: dict[str, set[WsClient]] = {c: set() for c in self.channels}
        self._clients: set[WsClient] = set()
        self.dropped = 0
        self.published = 0

    def check(self, names: Any) -> list[str]:
        """The channel names in ``names``; ValueError naming the bad ones."""
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"a list of channel names from {', '.join(self.channels)}")
        unknown = [n for n in names if n not in self._seq]
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(map(repr, unknown))}; "
                             f"use {', '.join(self.channels)}")
        return list(dict.fromkeys(names))

    def seq(self, channel: str) -> int:
        with self.lock:
            return self._seq[channel]

    def subscribe(self, client: WsClient, channels: Iterable[str]) -> None:
        """Send each channel's snapshot, then its updates from the next number on."""
        with self.lock:
            for channel in channels:
                self._send_snapshot(client, channel)
                if client.close_reason is None:
                    self._subscribers[channel].add(client)
                    client.channels.add(channel)

    def resnapshot(self, client: WsClient, channels: Iterable[str]) -> None:
        with self.lock:
            for channel in channels:
                self._send_snapshot(client, channel)

    def unsubscribe(self, client: WsClient, channels: Iterable[str] | None = None) -> None:
        with self.lock:
            for channel in list(client.channels if channels is None else channels):
                self._subscribers[channel].discard(client)
                client.channels.discard(channel)

    def publish(self, channel: str, data: Any) -> None:
        """Number one update and offer it to every subscriber of ``channel``."""
        with self.lock:
            self._seq[channel] += 1
            self.published += 1
            subscribers = self._subscribers[channel]
            if not subscribers:
                return
            text = dumps({"channel": channel, "type": "update", "seq": self._seq[channel],
                          "data": data})
            for client in list(subscribers):
                if not client.offer(text):
                    self._drop(client)

    def update(self, change: Callable[[], Any], channel: str | None = None) -> None:
        """Run ``change`` (which alters snapshot data, returning the update or None) and
        publish its result on ``channel``, atomically with respect to snapshots."""
        with self.lock:
            data = change()
            if channel is not None and data is not None:
                self.publish(channel, data)

    def broadcast_snapshot(self, channel: str) -> None:
        """Send a fresh snapshot to every subscriber of ``channel`` (after a resync)."""
        with self.lock:
            for client in list(self._subscribers[channel]):
                self._send_snapshot(client, channel)

    def attach(self, client: WsClient) -> None:
        with self.lock:
            self._clients.add(client)

    def detach(self, client: WsClient) -> None:
        with self.lock:
            self._clients.discard(client)
            for subscribers in self._subscribers.values():
                subscribers.discard(client)
            client.channels.clear()

    def close_all(self, reason: str) -> None:
        """Ask every connected client to close (the gateway is stopping)."""
        with self.lock:
            clients = set(self._clients)
            for subscribers in self._subscribers.values():
                subscribers.clear()
        for client in clients:
            client.close(reason)

    def subscriber_count(self, channel: str | None = None) -> int:
        """Subscribers of ``channel``, or every connected client."""
        with self.lock:
            if channel is not None:
                return len(self._subscribers[channel])
            return len(self._clients)

    def _send_snapshot(self, client: WsClient, channel: str) -> None:
        text = dumps({"channel": channel, "type": "snapshot", "seq": self._seq[channel],
                      "data": self._snapshot(channel)})
        if not client.offer(text):
            self._drop(client)

    def _drop(self, client: WsClient) -> None:
        for subscribers in self._subscribers.values():
            subscribers.discard(client)
        client.channels.clear()
        self.dropped += 1
        log.warning("dropped WebSocket client %s: %s", client.name or "?", client.close_reason)
