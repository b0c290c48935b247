"""A live copy of the state service's data: the client side of the zguide Clone pattern.

``Replica`` subscribes to ``state.*`` first, then asks the state service for a snapshot
(``GetSnapshot``, Lazy Pirate). Updates that arrive meanwhile wait in the SUB socket; those
numbered at or below the snapshot's ``seq`` are dropped, the rest applied in order. A gap in
the numbers, or a state heartbeat announcing a ``seq`` this copy never saw (the last update
of a burst was lost), triggers a new snapshot. The gateway and the strategy workers use it.

One background thread owns the sockets; readers get copies under a lock. Every wait has a
timeout and ``close`` returns within about one request timeout.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq

from shared import topics
from shared.bus import RequestClient, Subscriber
from shared.config import Endpoints
from shared.errors import CodecError, RequestTimeout
from shared.messages import GetSnapshot, Heartbeat, Message, StateChanged

log = logging.getLogger(__name__)

STATE_PREFIX = "state."
OPEN_ORDER_STATUSES = frozenset({"PENDING_NEW", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL"})
POLL_MS = 100  # the longest the thread waits before it looks at the stop flag again
MAX_BACKOFF_S = 5.0

ChangeCallback = Callable[[StateChanged], None]
ResyncCallback = Callable[[dict[str, Any]], None]


class View:
    """The replicated data, keyed for updates; ``to_snapshot`` gives the snapshot's shape."""

    def __init__(self, snapshot: dict[str, Any], recent: int) -> None:
        self.recent = recent
        self.seq: int = snapshot["seq"]
        self.bots = {bot["id"]: bot for bot in snapshot.get("bots", [])}
        self.params = {p["bot_id"]: p for p in snapshot.get("params", [])}
        self.leases = {lease["bot_id"]: lease for lease in snapshot.get("leases", [])}
        self.positions = {(p["bot_id"], p["symbol"]): p for p in snapshot.get("positions", [])}
        self.balances = {b["asset"]: b for b in snapshot.get("balances", [])}
        self.open_orders = {o["id"]: o for o in snapshot.get("open_orders", [])}
        self.recent_orders = {o["id"]: o for o in snapshot.get("recent_orders", [])}
        self.recent_trades = {t["id"]: t for t in snapshot.get("recent_trades", [])}
        self.alerts = {a["id"]: a for a in snapshot.get("alerts", [])}

    def apply(self, kind: str, payload: dict[str, Any]) -> None:
        """Fold one change in; kinds this copy does not keep (``fill``...) change nothing."""
        apply = getattr(self, f"_apply_{kind}", None)
        if apply is not None:
            apply(payload)

    def _apply_bot(self, bot: dict[str, Any]) -> None:
        self.bots[bot["id"]] = bot

    def _apply_bot_deleted(self, payload: dict[str, Any]) -> None:
        for table in (self.bots, self.params, self.leases):
            table.pop(payload["id"], None)

    def _apply_params(self, version: dict[str, Any]) -> None:
        self.params[version["bot_id"]] = version

    def _apply_lease(self, lease: dict[str, Any]) -> None:
        if lease["bot_id"] in self.bots:
            self.leases[lease["bot_id"]] = lease

    def _apply_position(self, position: dict[str, Any]) -> None:
        self.positions[(position["bot_id"], position["symbol"])] = position

    def _apply_balance(self, payload: dict[str, Any]) -> None:
        for balance in payload.get("balances", []):
            self.balances[balance["asset"]] = balance

    def _apply_order(self, order: dict[str, Any]) -> None:
        if order["status"] in OPEN_ORDER_STATUSES:
            self.open_orders[order["id"]] = order
        else:
            self.open_orders.pop(order["id"], None)
        self._keep_recent(self.recent_orders, order)

    def _apply_trade(self, trade: dict[str, Any]) -> None:
        self._keep_recent(self.recent_trades, trade)

    def _apply_trade_deleted(self, payload: dict[str, Any]) -> None:
        """A late fill rebooked in exchange order took back a trade closed too early."""
        self.recent_trades.pop(payload["id"], None)

    def _apply_alert(self, alert: dict[str, Any]) -> None:
        self._keep_recent(self.alerts, alert)

    def _keep_recent(self, table: dict[int, dict[str, Any]], row: dict[str, Any]) -> None:
        """Keep the ``recent`` rows with the highest ids, as the snapshot's pages do."""
        if len(table) >= self.recent and row["id"] not in table and row["id"] < min(table):
            return
        table[row["id"]] = row
        while len(table) > self.recent:
            del table[min(table)]

    def to_snapshot(self) -> dict[str, Any]:
        """The same shape (and, once in sync, the same content) as ``GetSnapshot``'s answer."""
        bot_ids = sorted(self.bots)
        return copy.deepcopy({
            "seq": self.seq,
            "bots": [self.bots[i] for i in bot_ids],
            "params": [self.params[i] for i in bot_ids if i in self.params],
            "leases": [self.leases[i] for i in sorted(self.leases)],
            "positions": [self.positions[k] for k in sorted(self.positions)],
            "balances": [self.balances[k] for k in sorted(self.balances)],
            "open_orders": [self.open_orders[i] for i in sorted(self.open_orders)],
            "recent_orders": _newest_first(self.recent_orders),
            "recent_trades": _newest_first(self.recent_trades),
            "alerts": _newest_first(self.alerts),
        })


def _newest_first(table: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [table[i] for i in sorted(table, reverse=True)]


class Replica:
    """A thread-safe, self-healing copy of the state service's data.

    ``on_change(StateChanged)`` is called for each applied update and ``on_resync(snapshot)``
    after each (re)snapshot, both from the replica's thread; a callback that raises is
    logged and does not stop the replica.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        endpoints: Endpoints,
        *,
        on_change: ChangeCallback | None = None,
        on_resync: ResyncCallback | None = None,
        timeout_ms: int = 1000,
        recent: int = 50,
    ) -> None:
        if timeout_ms <= 0 or recent < 1:
            raise ValueError("timeout_ms must be > 0 and recent >= 1")
        self._ctx = ctx
        self._endpoints = endpoints
        self._on_change = on_change
        self._on_resync = on_resync
        self.timeout_ms = timeout_ms
        self.recent = recent
        self._view: View | None = None
        self._cond = threading.Condition(threading.RLock())
        self._stop = threading.Event()
        self._need_snapshot = True
        self._thread: threading.Thread | None = None
        self._state_instance: tuple[str, float] | None = None
        self.resyncs = 0  # snapshots taken, the first included
        self.gaps = 0  # updates found missing

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Replica:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="replica", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close its sockets; calling it twice is harmless."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_ms / 1000 + 2.0)
            if self._thread.is_alive():
                log.warning("replica thread did not stop in time")
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Replica:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        with self._cond:
            return self._view is not None

    @property
    def seq(self) -> int:
        """The sequence number of the last change applied, -1 before the first snapshot."""
        with self._cond:
            return -1 if self._view is None else self._view.seq

    def wait_synced(self, timeout_s: float) -> bool:
        return self.wait_until(lambda replica: replica.synced, timeout_s)

    def wait_until(self, predicate: Callable[[Replica], bool], timeout_s: float) -> bool:
        """Block until ``predicate(self)`` holds after a change, at most ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stop.is_set() or predicate(self), timeout_s
            ) and predicate(self)

    def state(self) -> dict[str, Any]:
        """A copy of everything, shaped like the snapshot (empty before the first one)."""
        with self._cond:
            return {} if self._view is None else self._view.to_snapshot()

    def bots(self) -> list[dict[str, Any]]:
        return self._copy(lambda v: [v.bots[i] for i in sorted(v.bots)], [])

    def bot(self, bot_id: int) -> dict[str, Any] | None:
        return self._copy(lambda v: v.bots.get(bot_id), None)

    def params(self, bot_id: int) -> dict[str, Any] | None:
        return self._copy(lambda v: v.params.get(bot_id), None)

    def lease(self, bot_id: int) -> dict[str, Any] | None:
        return self._copy(lambda v: v.leases.get(bot_id), None)

    def open_orders(self, bot_id: int | None = None) -> list[dict[str, Any]]:
        return self._copy(lambda v: [
            o for _, o in sorted(v.open_orders.items()) if bot_id is None or o["bot_id"] == bot_id
        ], [])

    def positions(self) -> list[dict[str, Any]]:
        return self._copy(lambda v: [v.positions[k] for k in sorted(v.positions)], [])

    def balances(self) -> dict[str, dict[str, Any]]:
        return self._copy(lambda v: dict(v.balances), {})

    def _copy(self, read: Callable[[View], Any], empty: Any) -> Any:
        with self._cond:
            return empty if self._view is None else copy.deepcopy(read(self._view))

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        # Subscribe before the snapshot: updates sent meanwhile wait in the socket.
        sub = Subscriber(self._ctx, self._endpoints.bus_xpub,
                         [STATE_PREFIX, topics.health("state")])
        client = RequestClient(self._ctx, self._endpoints.state, self.timeout_ms, retries=1)
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if not self._need_snapshot:
                        item = sub.recv(POLL_MS)
                        if item is not None:
                            self._receive(item[1])
                    elif self._resync(client):
                        failures = 0
                    else:
                        failures += 1
                        self._stop.wait(min(MAX_BACKOFF_S, 0.1 * 2 ** min(failures, 6)))
                except zmq.ContextTerminated:
                    log.warning("replica stopped: its ZeroMQ context was terminated")
                    return
                except Exception:  # a bug here must not leave a silently stale copy
                    log.exception("replica failed; taking a new snapshot")
                    self._need_snapshot = True
                    self._stop.wait(POLL_MS / 1000)
        finally:
            sub.close()
            client.close()

    def _resync(self, client: RequestClient) -> bool:
        try:
            reply = client.request(GetSnapshot(recent=self.recent))
        except (RequestTimeout, CodecError) as exc:
            log.warning("no snapshot from the state service yet: %s", exc)
            return False
        if not reply.ok or not isinstance(reply.result, dict) or "seq" not in reply.result:
            log.warning("state refused a snapshot: %s %s", reply.error_code, reply.error_message)
            return False
        view = View(reply.result, self.recent)
        with self._cond:
            self._view = view
            self._need_snapshot = False
            self.resyncs += 1
            snapshot = view.to_snapshot()
            self._cond.notify_all()
        log.info("replica in sync at seq %d (snapshot %d)", view.seq, self.resyncs)
        self._call(self._on_resync, snapshot)
        return True

    def _receive(self, msg: Message) -> None:
        if isinstance(msg, StateChanged):
            self._apply(msg)
        elif isinstance(msg, Heartbeat):
            self._check_heartbeat(msg)

    def _apply(self, change: StateChanged) -> None:
        with self._cond:
            seq = self._view.seq
            if change.seq <= seq:
                return  # already in the snapshot
            if change.seq != seq + 1:
                self._gap(f"got update {change.seq} after {seq}")
                return
            try:
                self._view.apply(change.kind, change.payload)
            except (KeyError, TypeError, ValueError) as exc:
                self._gap(f"could not apply update {change.seq} ({change.kind}): {exc!r}")
                return
            self._view.seq = change.seq
            self._cond.notify_all()
        self._call(self._on_change, change)

    def _check_heartbeat(self, beat: Heartbeat) -> None:
        """The state service's heartbeat says how far it is; it follows its updates on the
        same socket, so a higher ``seq`` than ours means an update was lost on the way."""
        announced = beat.detail.get("seq")
        if not isinstance(announced, int):
            return
        instance, self._state_instance = self._state_instance, (beat.instance, beat.started_at)
        with self._cond:
            if announced > self._view.seq:
                self._gap(f"state is at {announced}, this copy at {self._view.seq}")
            elif announced < self._view.seq and instance not in (None, self._state_instance):
                # a restarted state service behind this copy: its database was replaced
                self._gap(f"state restarted at {announced}, this copy at {self._view.seq}")

    def _gap(self, why: str) -> None:
        log.info("replica out of sync (%s): taking a new snapshot", why)
        self.gaps += 1
        self._need_snapshot = True

    @staticmethod
    def _call(callback: Callable[[Any], None] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("replica callback failed")
