"""The dashboard WebSocket check: a fresh client gets synced snapshots, then numbered updates,
and a ``resnapshot`` brings a newer snapshot (what the page does after any reconnect)."""

from __future__ import annotations

import json
import time

from websockets.sync.client import connect

CHANNELS = ("state", "orders", "health")


def _next(ws, deadline: float) -> dict:
    return json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))


def check_ws_resync(gateway_url: str, timeout_s: float = 20.0) -> list[str]:
    """Violations found on ``/ws`` (empty: it resynchronised)."""
    url = gateway_url.replace("http://", "ws://") + "/ws"
    deadline = time.monotonic() + timeout_s
    problems: list[str] = []
    with connect(url, open_timeout=timeout_s, close_timeout=1) as ws:
        ws.send(json.dumps({"subscribe": list(CHANNELS)}))
        snaps = _await_snapshots(ws, deadline)
        problems += [f"dashboard WebSocket: no synced {c} snapshot within {timeout_s:.0f} s"
                     for c in CHANNELS if c not in snaps]
        if "health" in snaps and not _update_follows(ws, "health", snaps["health"], deadline):
            problems.append("dashboard WebSocket: no health update numbered after its snapshot")
        if "state" in snaps:
            ws.send(json.dumps({"resnapshot": ["state"]}))
            again = _await_snapshots(ws, time.monotonic() + timeout_s, only=("state",))
            if "state" not in again:
                problems.append("dashboard WebSocket: resnapshot brought no state snapshot")
    return problems


def _await_snapshots(ws, deadline: float, only=CHANNELS) -> dict[str, int]:
    """channel -> seq of its first *synced* snapshot, for the channels in ``only``."""
    seen: dict[str, int] = {}
    while time.monotonic() < deadline and len(seen) < len(only):
        try:
            frame = _next(ws, deadline)
        except TimeoutError:
            break
        channel = frame.get("channel")
        if frame.get("type") == "snapshot" and channel in only:
            data = frame.get("data") or {}
            if data.get("synced", True):
                seen[channel] = frame["seq"]
    return seen


def _update_follows(ws, channel: str, snap_seq: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            frame = _next(ws, deadline)
        except TimeoutError:
            return False
        if frame.get("channel") == channel and frame.get("type") == "update":
            return frame["seq"] == snap_seq + 1
    return False
