"""The worker state loop: read what state wants of the bots, compare with what this worker
runs, act. Every ``round_every_s`` it

1. drops bots whose lease it can no longer vouch for (renewal refused, epoch moved on, or
   not renewed within the TTL on its own clock), renews the others;
2. follows each held bot's desired state: STOPPING -> STOPPED and release on a stop, rebuild
   and re-warm on a new params version, a new try some time after an ERROR;
3. claims bots that want to run and have no live lease, up to its fair share
   (``ceil(running bots / live workers)``), and hands back one surplus bot when workers join;
4. records status changes (``SetBotStatus`` under the lease epoch, so a worker that lost the
   lease cannot overwrite the new holder's) and keeps its market streams alive.

Between rounds it feeds market data to the running strategies and sends their intents to
execution at once (``intents.py``). Nothing here blocks longer than one state request
(``state_timeout_s``); when state is away the round stops early and the next one tries again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
from typing import Any

import zmq

from services.strategy.bot_runner import (
    ERROR,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    BotRunner,
    BotSpec,
    position_of,
    to_book,
)
from services.strategy.intents import IntentSender, to_submit
from services.strategy.leases import (
    Lease,
    LeaseLost,
    StateLink,
    WorkerRoster,
    fair_share,
    preference,
)
from services.strategy.market import Batch, MarketdataLink, MarketFeed
from services.strategy.settings import StrategySettings
from shared import topics
from shared.clock import Clock
from shared.config import Config
from shared.errors import RequestTimeout
from shared.messages import StateChanged
from shared.replica import Replica
from shared.strategies import OrderIntent, Position

log = logging.getLogger(__name__)

HELD_RETRY_S = 0.5  # a bot found held by another live worker is not asked for again sooner
MAX_RETRY_S = 60.0
MAX_HISTORY = 5000  # candles marketdata serves in one GetCandles at most
ACTIVE_BOT_STATUSES = (STARTING, RUNNING, STOPPING)


class StateAway(Exception):
    """State did not answer in time: the rest of this round waits for the next one."""


class Worker:
    """Everything one strategy worker process does, driven by ``step`` from its service."""

    def __init__(self, ctx: zmq.Context, config: Config, settings: StrategySettings,
                 clock: Clock, owner: str) -> None:
        self.settings = settings
        self.clock = clock
        self.owner = owner
        endpoints = config.endpoints
        self.state = StateLink(ctx, endpoints.state, owner, settings.lease_ttl_s,
                               settings.state_timeout_s, clock)
        self.feed = MarketFeed(ctx, endpoints.bus_xpub)
        self.marketdata = MarketdataLink(ctx, endpoints.marketdata, owner,
                                         settings.history_timeout_s, settings.stream_ttl_s)
        self.sender = IntentSender(ctx, endpoints.execution, self.holds, clock,
                                   settings.intent_timeout_s, settings.intent_give_up_s)
        self.roster = WorkerRoster(owner, config.health_timeout_s, clock)
        self._poller = zmq.Poller()
        self._poller.register(self.feed.socket, zmq.POLLIN)
        self._poller.register(self.sender.socket, zmq.POLLIN)
        self._changes: collections.deque[StateChanged] = collections.deque()
        self.replica = Replica(ctx, endpoints, on_change=self._changes.append,
                               on_resync=lambda _snapshot: self._round_soon(),
                               timeout_ms=int(settings.state_timeout_s * 1000) + 500)
        self.runners: dict[int, BotRunner] = {}
        self.leases: dict[int, Lease] = {}
        self._epochs: dict[int, int] = {}  # the epoch each held bot trades under
        self._warmups: dict[int, tuple[int, concurrent.futures.Future]] = {}
        self._books: dict[str, Any] = {}
        self._depths: dict[str, Any] = {}
        self._claim_after: dict[int, float] = {}
        now = clock.monotonic()
        self._claim_from = now + settings.claim_grace_s
        self._next_round = now
        self._next_rebalance = now
        self._next_streams = now
        self._streams_asked = False
        self._state_ok = True
        self.share = 0
        self.live_workers = 1

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.replica.start()

    def close(self, release_budget_s: float = 1.0) -> None:
        """Hand the leases back (so another worker takes over at once), then close."""
        deadline = self.clock.monotonic() + release_budget_s
        for lease in list(self.leases.values()):
            self._forget(lease.bot_id)
            if self.clock.monotonic() >= deadline:
                continue
            try:
                self.state.set_status(lease, STOPPED, "its worker stopped; another takes it over")
                self.state.release(lease)
            except (RequestTimeout, zmq.ZMQError):
                deadline = 0.0  # state is away: the leases run out by themselves
            except (LeaseLost, RuntimeError) as exc:
                log.info("bot %d not handed back cleanly: %s", lease.bot_id, exc)
        self.sender.close()
        self.marketdata.close()
        self.replica.close()
        self.feed.close()
        self.state.close()

    def holds(self, bot_id: int, epoch: int) -> bool:
        """Is this worker still trading ``bot_id`` under ``epoch``? (any thread)"""
        return self._epochs.get(bot_id) == epoch

    def describe(self) -> dict[str, Any]:
        return {
            "bots": {str(bot_id): {**runner.describe(),
                                   "epoch": self._epochs.get(bot_id)}
                     for bot_id, runner in sorted(self.runners.items())},
            "held": len(self.runners),
            "share": self.share,
            "live_workers": self.live_workers,
            "state_synced": self.replica.synced,
            "md_topics": sorted(self.feed.topics),
            "md_received": self.feed.received,
            "intents": {**self.sender.counts, "outstanding": self.sender.outstanding},
        }

    # --- the loop ------------------------------------------------------------------------

    def step(self, timeout_s: float) -> None:
        ready = dict(self._poller.poll(int(timeout_s * 1000)))
        if self.sender.socket in ready:
            self.sender.receive()
        if self.feed.socket in ready:
            batch = self.feed.drain()
            for beat in batch.heartbeats:
                self.roster.heard(beat)
            self._dispatch(batch)
        self.sender.tick()
        self._apply_changes()
        self._collect_warmups()
        self._collect_results()
        if self.clock.monotonic() >= self._next_round:
            self._next_round = self.clock.monotonic() + self.settings.round_every_s
            try:
                self._round()
            except Exception:  # keep the worker (and its heartbeat) alive; next round retries
                log.exception("strategy worker round failed")

    def _round_soon(self) -> None:
        self._next_round = 0.0

    def _round(self) -> None:
        self._state_ok = True
        now = self.clock.monotonic()
        for bot_id, lease in list(self.leases.items()):
            if now >= lease.valid_until:
                self._lose(bot_id, "lease not renewed within its TTL (state not answering)")
            else:  # also after a resync, which brings no change events
                self._check_lease(self.replica.lease(bot_id))
        try:
            self._renew(now)
            if self.replica.synced:
                self._follow_desired(now)
                self._claim(now)
                self._tidy_orphan(now)
                self._rebalance(now)
            for runner in list(self.runners.values()):
                self._report(runner)
        except StateAway:
            log.debug("state not answering; the round goes on next time")
        self._keep_streams(now)

    # --- state requests ------------------------------------------------------------------

    def _ask(self, fn, *args):
        """One state request; raises StateAway (and no more asks this round) on silence."""
        if not self._state_ok:
            raise StateAway
        try:
            return fn(*args)
        except RequestTimeout:
            self._state_ok = False
            raise StateAway from None

    def _renew(self, now: float) -> None:
        for bot_id, lease in list(self.leases.items()):
            if now < lease.renew_at:
                continue
            try:
                self.leases[bot_id] = self._ask(self.state.renew, lease)
            except LeaseLost as exc:
                self._lose(bot_id, f"renewal refused: {exc}")

    def _report(self, runner: BotRunner) -> None:
        """Send the runner's status changes in order, each under its lease epoch."""
        while runner.unreported:
            status, reason = runner.unreported[0]
            lease = self.leases.get(runner.bot_id)
            if lease is None:
                return
            try:
                self._ask(self.state.set_status, lease, status, reason)
            except LeaseLost as exc:
                self._lose(runner.bot_id, f"status refused: {exc}")
                return
            runner.unreported.popleft()

    # --- following the desired state -----------------------------------------------------

    def _follow_desired(self, now: float) -> None:
        for bot_id, runner in list(self.runners.items()):
            bot = self.replica.bot(bot_id)
            if bot is None:  # deleted: state ended the lease already
                self._forget(bot_id)
                log.info("bot %d was deleted: no longer run here", bot_id)
                continue
            if bot["desired_status"] != RUNNING:
                self._stop_bot(runner)
                continue
            spec = BotSpec.from_state(bot, self.replica.params(bot_id)) or runner.spec
            if runner.status in (STOPPING, STOPPED) or spec.version != runner.spec.version:
                self._start(runner, spec)
            elif runner.status == ERROR and runner.retry_at is not None \
                    and now >= runner.retry_at:
                self._start(runner, spec)

    def _stop_bot(self, runner: BotRunner) -> None:
        """STOPPING, then STOPPED, each recorded, then the lease goes back."""
        self._warmups.pop(runner.bot_id, None)
        if runner.status not in (STOPPING, STOPPED):
            runner.stop()
        self._report(runner)
        if runner.status == STOPPING:
            runner.stopped()
            self._report(runner)
        lease = self.leases.get(runner.bot_id)
        if lease is not None and not runner.unreported:
            self._forget(runner.bot_id)
            self._ask(self.state.release, lease)
            log.info("bot %d stopped and released", runner.bot_id)

    def _start(self, runner: BotRunner, spec: BotSpec) -> None:
        """Build (or rebuild) the bot and warm it up; RUNNING once the history is in."""
        self._warmups.pop(runner.bot_id, None)
        try:
            limit = runner.begin(spec)
        except Exception:
            runner.retry_at = None  # bad params: wait for a new params version
            return
        if limit:
            future = self.marketdata.history(spec.symbol, spec.timeframe, min(limit, MAX_HISTORY))
            self._warmups[runner.bot_id] = (runner.generation, future)
        else:
            self._go_live(runner, [])

    def _go_live(self, runner: BotRunner, history: list) -> None:
        try:
            intents = runner.finish_warmup(history, self._position(runner))
        except Exception as exc:
            self._failed(runner, f"warm-up failed: {type(exc).__name__}: {exc}")
            return
        self._trade(runner, intents)

    def _failed(self, runner: BotRunner, reason: str) -> None:
        runner.fail(reason)
        delay = min(MAX_RETRY_S, self.settings.error_retry_s * 2 ** (runner.failures - 1))
        runner.retry_at = self.clock.monotonic() + delay

    def _collect_warmups(self) -> None:
        for bot_id, (generation, future) in list(self._warmups.items()):
            if not future.done():
                continue
            del self._warmups[bot_id]
            runner = self.runners.get(bot_id)
            if runner is None or runner.generation != generation or runner.status != STARTING:
                continue
            try:
                history = future.result()
            except Exception as exc:
                self._failed(runner, f"no candle history for the warm-up: {exc}")
                continue
            self._go_live(runner, history)

    # --- claiming and handing back -------------------------------------------------------

    def _claim(self, now: float) -> None:
        bots = self.replica.bots()
        running = [b for b in bots if b["desired_status"] == RUNNING]
        self.live_workers = len(self.roster.live())
        self.share = fair_share(len(running), self.live_workers)
        if now < self._claim_from:
            return
        now_ms = self.clock.time_ms()
        free = [b for b in running if b["id"] not in self.runners
                and self._claimable(b["id"], now_ms) and self._claim_after.get(b["id"], 0) <= now]
        free.sort(key=lambda b: preference(self.owner, b["id"]))
        for bot in free:
            if len(self.runners) >= self.share:
                return
            lease = self._ask(self.state.claim, bot["id"])
            if lease is None:
                self._claim_after[bot["id"]] = now + HELD_RETRY_S
                continue
            self._adopt(bot, lease)

    def _claimable(self, bot_id: int, now_ms: int) -> bool:
        lease = self.replica.lease(bot_id)
        return lease is None or lease["owner"] is None or lease["expires_at_ms"] <= now_ms

    def _adopt(self, bot: dict[str, Any], lease: Lease) -> None:
        spec = BotSpec.from_state(bot, self.replica.params(bot["id"]))
        if spec is None:  # the params row has not reached this copy yet: next time
            self._ask(self.state.release, lease)
            return
        log.info("claimed bot %d (epoch %d)", bot["id"], lease.epoch)
        runner = BotRunner(bot["id"], spec)
        self.runners[bot["id"]] = runner
        self.leases[bot["id"]] = lease
        self._epochs[bot["id"]] = lease.epoch
        self._start(runner, spec)

    def _tidy_orphan(self, now: float) -> None:
        """A bot told to stop while its worker was dead still shows it running: say STOPPED."""
        if now < self._claim_from:
            return
        now_ms = self.clock.time_ms()
        for bot in self.replica.bots():
            if bot["desired_status"] == RUNNING or bot["status"] not in ACTIVE_BOT_STATUSES:
                continue
            if bot["id"] in self.runners or not self._claimable(bot["id"], now_ms):
                continue
            if self._claim_after.get(bot["id"], 0) > now:
                continue
            lease = self._ask(self.state.claim, bot["id"])
            if lease is None:
                self._claim_after[bot["id"]] = now + HELD_RETRY_S
                return
            try:
                self._ask(self.state.set_status, lease, STOPPED, "stopped while no worker ran it")
            finally:
                self._ask(self.state.release, lease)
            return  # one per round is plenty

    def _rebalance(self, now: float) -> None:
        """More bots than the fair share (a worker joined): hand one back, the least preferred."""
        if len(self.runners) <= self.share or now < self._next_rebalance or self.share == 0:
            return
        self._next_rebalance = now + self.settings.rebalance_every_s
        bot_id = max(self.runners, key=lambda b: preference(self.owner, b))
        lease = self.leases[bot_id]
        log.info("handing bot %d back: %d held, fair share %d", bot_id, len(self.runners),
                 self.share)
        self._forget(bot_id)
        self._claim_after[bot_id] = now + self.settings.rebalance_every_s
        self._ask(self.state.release, lease)

    def _lose(self, bot_id: int, why: str) -> None:
        if bot_id in self.runners:
            log.warning("bot %d: lease lost (%s); stopped trading it", bot_id, why)
        self._forget(bot_id)

    def _forget(self, bot_id: int) -> None:
        """Stop trading the bot at once and drop everything about it (the lease is not ours)."""
        self._epochs.pop(bot_id, None)
        self.leases.pop(bot_id, None)
        self.runners.pop(bot_id, None)
        self._warmups.pop(bot_id, None)

    # --- market data in, intents out -----------------------------------------------------

    def _dispatch(self, batch: Batch) -> None:
        for topic, candle in batch.candles:
            for runner in list(self.runners.values()):
                if topic in runner.topics:
                    self._guarded(runner, runner.on_candle, candle)
        self._books.update(batch.books)
        self._depths.update(batch.depths)
        for symbol in set(batch.books) | set(batch.depths):
            ticker = self._books.get(symbol)
            if ticker is None:
                continue
            book = to_book(ticker, self._depths.get(symbol))
            wanted = {topics.book(symbol), topics.depth(symbol)}
            for runner in list(self.runners.values()):
                if runner.trading and not wanted.isdisjoint(runner.topics):
                    self._guarded(runner, runner.on_book, book)

    def _guarded(self, runner: BotRunner, feed, data) -> None:
        try:
            intents = feed(data)
        except Exception as exc:  # a strategy bug stops its bot, not the worker
            log.exception("bot %d: strategy failed", runner.bot_id)
            self._failed(runner, f"strategy failed: {type(exc).__name__}: {exc}")
            return
        self._trade(runner, intents)

    def _trade(self, runner: BotRunner, intents: list[OrderIntent]) -> None:
        lease = self.leases.get(runner.bot_id)
        if not intents or lease is None:
            return
        if self.clock.monotonic() >= lease.valid_until:
            self._lose(runner.bot_id, "lease not renewed within its TTL")
            return
        for intent in intents:
            self.sender.submit(to_submit(intent, runner.bot_id, lease.epoch))

    def _collect_results(self) -> None:
        while self.sender.results:
            result = self.sender.results.popleft()
            bot_id = int(result.intent.bot_id)
            if result.reply is not None and result.reply.error_code == "stale_lease":
                self._lose(bot_id, f"execution refused epoch {result.intent.epoch}")
            runner = self.runners.get(bot_id)
            if runner is None or result.reply is None \
                    or not self.holds(bot_id, result.intent.epoch):
                continue
            if result.reply.ok:
                runner.refusals = 0
                continue
            runner.refusals += 1
            if runner.refusals == 1:
                # refused: the strategy learns the real position again, which re-arms it at
                # once; when refusals repeat, its own pending timeout paces the next try
                self._guarded(runner, runner.on_position, self._position(runner))

    def _position(self, runner: BotRunner) -> Position:
        for row in self.replica.positions():
            if row["bot_id"] == runner.bot_id and row["symbol"] == runner.spec.symbol:
                return position_of(row)
        return Position()

    def _apply_changes(self) -> None:
        while self._changes:
            change = self._changes.popleft()
            payload = change.payload
            if change.kind == "lease":
                self._check_lease(payload)
            elif change.kind == "position":
                runner = self.runners.get(payload.get("bot_id"))
                if runner is not None and payload.get("symbol") == runner.spec.symbol:
                    self._guarded(runner, runner.on_position, position_of(payload))
            elif change.kind in ("bot", "params", "bot_deleted"):
                self._round_soon()

    def _check_lease(self, row: dict[str, Any] | None) -> None:
        """Stop trading at once when state's lease row shows the epoch moved on (an older
        row, from before this worker's claim, says nothing)."""
        held = self.leases.get(row["bot_id"]) if row else None
        if held is None:
            return
        if row["epoch"] > held.epoch or (row["epoch"] == held.epoch
                                         and row["owner"] != self.owner):
            self._lose(held.bot_id, f"epoch {row['epoch']} now held by {row['owner']}")

    def _keep_streams(self, now: float) -> None:
        wanted: set[str] = set()
        for runner in self.runners.values():
            if runner.strategy is not None:
                wanted |= runner.topics
        changed = self.feed.set_topics(wanted)
        if not (changed or now >= self._next_streams) or not (wanted or self._streams_asked):
            return
        if self.marketdata.keep_streams(wanted):
            self._streams_asked = bool(wanted)
            self._next_streams = now + self.settings.stream_ttl_s / 3
        else:
            self._next_streams = now  # the last ask is still out: ask again next round
