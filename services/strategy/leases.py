"""Bot leases and bot status, as a worker asks the state service for them; and who else works.

``StateLink`` sends ``ClaimLease``/``RenewLease``/``ReleaseLease``/``SetBotStatus`` with a
short timeout (one attempt: the worker's round retries). A refused renewal or status write
raises ``LeaseLost``; a silent state raises ``RequestTimeout`` and the caller tries again.
``WorkerRoster`` counts the live workers from their ``health.strategy`` heartbeats, and
``fair_share`` says how many running bots one of them should hold.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

import zmq

from shared.bus import RequestClient
from shared.clock import Clock
from shared.messages import ClaimLease, Heartbeat, ReleaseLease, RenewLease, Reply, SetBotStatus
from shared.service import STOPPED, STOPPING

log = logging.getLogger(__name__)

LOST_CODES = ("stale_lease", "unknown_bot")


class LeaseLost(Exception):
    """The lease is no longer this worker's: stop trading the bot at once."""


@dataclass
class Lease:
    """A lease this worker holds, and until when it is safe to act on it (own clock)."""

    bot_id: int
    epoch: int
    valid_until: float  # monotonic: the send time of the last granted claim/renewal + TTL
    renew_at: float


class StateLink:
    """Lease and status requests of one worker to the state service."""

    def __init__(self, ctx: zmq.Context, endpoint: str, owner: str, ttl_s: float,
                 timeout_s: float, clock: Clock) -> None:
        self.owner = owner
        self.ttl_s = ttl_s
        self.clock = clock
        self._client = RequestClient(ctx, endpoint, timeout_ms=int(timeout_s * 1000), retries=1)

    def close(self) -> None:
        self._client.close()

    def claim(self, bot_id: int) -> Lease | None:
        """The lease if this worker now holds it; None when another live worker does."""
        sent = self.clock.monotonic()
        reply = self._client.request(ClaimLease(bot_id=bot_id, owner=self.owner, ttl_s=self.ttl_s))
        if not reply.ok:
            log.warning("claim of bot %d refused: %s %s", bot_id, reply.error_code,
                        reply.error_message)
            return None
        outcome, lease = reply.result["result"], reply.result["value"]
        if outcome != "claimed" or lease["owner"] != self.owner:
            return None
        return self._granted(bot_id, lease["epoch"], sent)

    def renew(self, lease: Lease) -> Lease:
        """The lease extended; ``LeaseLost`` if state says it is no longer ours."""
        sent = self.clock.monotonic()
        reply = self._client.request(RenewLease(bot_id=lease.bot_id, owner=self.owner,
                                                epoch=lease.epoch, ttl_s=self.ttl_s))
        self._raise_if_lost(lease, reply)
        return self._granted(lease.bot_id, lease.epoch, sent)

    def release(self, lease: Lease) -> None:
        reply = self._client.request(ReleaseLease(bot_id=lease.bot_id, owner=self.owner,
                                                  epoch=lease.epoch))
        if not reply.ok:
            log.info("release of bot %d: %s", lease.bot_id, reply.error_message)

    def set_status(self, lease: Lease, status: str, reason: str = "") -> None:
        """Record what the bot does now, as its lease holder."""
        reply = self._client.request(SetBotStatus(bot_id=lease.bot_id, status=status,
                                                  reason=reason, epoch=lease.epoch))
        self._raise_if_lost(lease, reply)

    def _granted(self, bot_id: int, epoch: int, sent: float) -> Lease:
        return Lease(bot_id, epoch, valid_until=sent + self.ttl_s,
                     renew_at=sent + self.ttl_s / 3)

    @staticmethod
    def _raise_if_lost(lease: Lease, reply: Reply) -> None:
        if reply.ok:
            return
        if reply.error_code in LOST_CODES:
            raise LeaseLost(f"bot {lease.bot_id} epoch {lease.epoch}: {reply.error_message}")
        raise RuntimeError(f"state refused: {reply.error_code} {reply.error_message}")


class WorkerRoster:
    """The strategy workers alive now, from their heartbeats (this one always counts)."""

    def __init__(self, me: str, timeout_s: float, clock: Clock) -> None:
        self.me = me
        self.timeout_s = timeout_s
        self.clock = clock
        self._seen: dict[str, float] = {}

    def heard(self, beat: Heartbeat) -> None:
        if beat.status in (STOPPING, STOPPED):
            self._seen.pop(beat.instance, None)
        else:
            self._seen[beat.instance] = self.clock.monotonic()

    def live(self) -> list[str]:
        now = self.clock.monotonic()
        for instance in [i for i, seen in self._seen.items() if now - seen > self.timeout_s]:
            del self._seen[instance]
        return sorted(set(self._seen) | {self.me})


def fair_share(running_bots: int, live_workers: int) -> int:
    """How many running bots one worker should hold: ceil(bots / workers)."""
    return math.ceil(running_bots / max(1, live_workers))


def preference(owner: str, bot_id: int) -> str:
    """Rendezvous-hash rank: workers prefer different bots, so their claims rarely collide."""
    return hashlib.blake2s(f"{owner}/{bot_id}".encode(), digest_size=8).hexdigest()
