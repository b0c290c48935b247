"""The chaos run: the whole stack on the simulator, faults at random, services SIGKILLed and
restarted, then the money invariants checked (see docs/operating.md).

    python -m tests.chaos --duration 600 --workers 3 --bots 6 --seed 1

Exit status 0 when every check holds, 1 on any violation (each one printed).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import zmq

from shared.bus import RequestClient
from shared.messages import GetSnapshot, QueryFills
from tests.chaos import checks
from tests.chaos.stack import ChaosStack, Slot, VenueClient, dump_json

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
# exchange_sim is the venue itself (in memory): killing it would wipe the "exchange", which no
# real venue does. Every other service is fair game.
KILLABLE = ("bus", "state", "marketdata", "execution", "strategy", "gateway")
SWING_FAST = {"ema_fast": 2, "ema_slow": 3, "rsi_period": 2, "rsi_overbought": 99.0,
              "rsi_oversold": 0.0}
SCALPING_FAST = {"imbalance_threshold": "1.1", "max_spread_ticks": 100000, "max_hold_s": 5,
                 "limit_order_timeout_ms": 2000}
# Random faults in force during the run; drop_ws and bursts are added by the driver.
FAULT_RATES = {"rate_http_5xx": 0.03, "rate_http_429": 0.01, "rate_unknown_status": 0.05,
               "unknown_status_placed": 0.5, "retry_after_s": 1}


@dataclass
class ChaosConfig:
    duration_s: float = 600.0
    workers: int = 3
    bots: int = 6
    seed: int = 1
    kill_every_s: tuple[float, float] = (20.0, 40.0)
    down_s: tuple[float, float] = (0.5, 3.0)
    drop_ws_every_s: tuple[float, float] = (10.0, 30.0)
    sim_speed: float = 60.0
    start_timeout_s: float = 60.0
    settle_s: float = 60.0
    keep: bool = False
    soak: bool = False  # no kills, no faults: measure RSS and open fds at start and end


@dataclass
class ChaosReport:
    """What happened and what the checks found."""

    kills: Counter = field(default_factory=Counter)
    fault_events: Counter = field(default_factory=Counter)
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    soak: list[str] = field(default_factory=list)
    tmp: str = ""

    def lines(self) -> list[str]:
        out = [f"chaos run in {self.tmp}",
               "figures: " + ", ".join(f"{k}={v}" for k, v in self.figures.items()),
               "kills: " + (", ".join(f"{k}={v}" for k, v in sorted(self.kills.items()))
                            or "none") + f" (total {sum(self.kills.values())})",
               "faults: " + ", ".join(f"{k}={v}" for k, v in sorted(self.fault_events.items()))]
        out += [f"soak: {line}" for line in self.soak]
        out += [f"VIOLATION: {v}" for v in self.violations]
        out.append("RESULT: " + ("OK, every check holds" if not self.violations
                                 else f"FAILED, {len(self.violations)} violation(s)"))
        return out


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a service on its way up answers with errors
            value = None
        if value:
            return value
        time.sleep(interval_s)  # polling HTTP endpoints: there is no event to wait on
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class ChaosRun:
    """Drives one chaos run from start to verdict; ``close`` always stops every process."""

    def __init__(self, cfg: ChaosConfig, tmp: Path | None = None) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.tmp = tmp or Path(tempfile.mkdtemp(prefix="chaos-"))
        env = {"SIM_SPEED": f"{cfg.sim_speed:g}", "SIM_SEED": str(cfg.seed),
               "SIM_FAULTS": json.dumps({"seed": cfg.seed})}
        self.stack = ChaosStack(self.tmp, workers=cfg.workers, extra_env=env)
        self.venue = VenueClient(self.stack.sim_url)
        self.report = ChaosReport(tmp=str(self.tmp))
        self.bot_ids: list[int] = []

    # --- phases ---------------------------------------------------------------------------

    def run(self) -> ChaosReport:
        try:
            self.start()
            self.chaos()
            self.settle_and_check()
        finally:
            self.close()
        return self.report

    def start(self) -> None:
        self.stack.start_all()
        wait_until(self.all_healthy, self.cfg.start_timeout_s, "every service healthy")
        self.bot_ids = start_bots(self.stack, self.cfg.bots)
        if not self.cfg.soak:
            self.stack.sim_faults(**FAULT_RATES)

    def chaos(self) -> None:
        """Kill a random service every 20-40 s and restart it; drop WebSockets now and then."""
        cfg, now = self.cfg, time.monotonic()
        end = now + cfg.duration_s
        if cfg.soak:
            self.soak(end)
            return
        next_kill = now + self.rng.uniform(*cfg.kill_every_s)
        next_drop = now + self.rng.uniform(*cfg.drop_ws_every_s)
        while (now := time.monotonic()) < end:
            self.restart_crashed()
            if now >= next_kill and end - now > cfg.down_s[1] + 2:
                self.kill_and_restart(self.rng.choice(self.killable()))
                next_kill = time.monotonic() + self.rng.uniform(*cfg.kill_every_s)
            if now >= next_drop:
                self.inject_fault()
                next_drop = now + self.rng.uniform(*cfg.drop_ws_every_s)
            time.sleep(0.5)

    def soak(self, end: float) -> None:
        """Let the stack trade undisturbed; report RSS and fds per process, start and end."""
        time.sleep(min(30.0, max(0.0, end - time.monotonic()) / 4))  # past warm-up
        first, t0 = resources(self.stack.slots), time.monotonic()
        while time.monotonic() < end:
            self.restart_crashed()
            time.sleep(1.0)
        last, hours = resources(self.stack.slots), max(time.monotonic() - t0, 1.0) / 3600
        for label in sorted(first):
            (rss0, fd0), (rss1, fd1) = first[label], last.get(label, (0, 0))
            self.report.soak.append(
                f"{label}: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
                f"({(rss1 - rss0) / 1024 / hours:+.1f} MiB/h), open fds {fd0} -> {fd1} "
                f"({(fd1 - fd0) / hours:+.0f}/h)")

    def settle_and_check(self) -> None:
        self.report.fault_events["ws_dropped"] = self.venue_faults().get("ws_dropped", 0)
        self.stack.sim_clear_faults()
        self.restart_crashed()
        for bot_id in self.bot_ids:
            self.call_retrying("POST", f"/api/bots/{bot_id}/stop")
        deadline = time.monotonic() + self.cfg.settle_s
        violations = ["not checked"]
        while time.monotonic() < deadline:
            violations = self.check_once()
            if not violations:
                break
            time.sleep(3)
        self.report.violations += violations
        self.report.violations += self.check_dashboard_ws()
        self.report.violations += [f"a service exited by itself: {line}"
                                   for line in self.stack.crashes()]

    def close(self) -> None:
        self.stack.stop_all()
        if not self.cfg.keep and not self.report.violations:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- chaos actions ------------------------------------------------------------------

    def killable(self) -> list[Slot]:
        return [s for s in self.stack.slots if s.name in KILLABLE]

    def kill_and_restart(self, slot: Slot) -> None:
        if not self.stack.kill(slot):
            return  # its supervisor is between two starts
        self.report.kills[slot.name] += 1
        if slot.supervised:
            print(f"[chaos] killed {slot.label}; its supervisor restarts it", flush=True)
            return
        time.sleep(self.rng.uniform(*self.cfg.down_s))
        self.stack.start(slot)
        print(f"[chaos] killed and restarted {slot.label}", flush=True)

    def restart_crashed(self) -> None:
        """A service that exits by itself is a violation (it must wait for its peers)."""
        for slot in self.stack.dead():
            code = slot.proc.returncode if slot.proc else None
            self.report.violations.append(f"{slot.label} exited by itself with status {code}")
            self.stack.start(slot)

    def inject_fault(self) -> None:
        kind = self.rng.choice(("drop_ws", "drop_ws", "burst_5xx", "burst_unknown"))
        changes: dict[str, Any] = {
            "drop_ws": {"drop_ws": self.rng.choice(("all", "streams", "ws_api"))},
            "burst_5xx": {"http_5xx": self.rng.randint(2, 5)},
            "burst_unknown": {"unknown_status": self.rng.randint(1, 3)},
        }[kind]
        try:
            self.stack.sim_faults(**changes)
            self.report.fault_events[kind] += 1
        except OSError as exc:
            print(f"[chaos] could not inject {kind}: {exc}", flush=True)

    def venue_faults(self) -> dict:
        try:
            import requests
            return requests.get(f"{self.stack.sim_url}/sim/faults", timeout=5).json()
        except (OSError, ValueError):
            return {}

    def call_retrying(self, method: str, path: str, timeout_s: float = 30.0) -> Any:
        return wait_until(lambda: self.stack.api(method, path, {}) or True, timeout_s,
                          f"{method} {path}")

    # --- checks ---------------------------------------------------------------------------

    def all_healthy(self) -> bool:
        services = self.stack.api("GET", "/api/health")["services"]
        return all(i["up"] for i in services.values()) and (
            services["strategy"]["up_instances"] == self.cfg.workers)

    def check_once(self) -> list[str]:
        """One collection of venue and state data and every check over it."""
        try:
            data = self.collect()
        except Exception as exc:  # noqa: BLE001 - a check that cannot collect is a violation
            return [f"could not collect the data to check: {type(exc).__name__}: {exc}"]
        state = data["state"]
        found = (checks.no_client_id_twice(data["orders"])
                 + checks.no_bot_oversold(data["orders"], data["trades"], data["base_assets"])
                 + checks.fills_recorded_once(data["trades"], data["fills"])
                 + checks.balances_equal(data["account"]["balances"], state["balances"])
                 + checks.positions_equal(data["account"]["balances"], state["positions"],
                                          data["base_assets"])
                 + checks.positions_protected(state["positions"], data["open_orders"],
                                              data["filters"])
                 + checks.services_healthy(data["health"], self.cfg.workers))
        self.report.figures.update(data["figures"])
        if found:  # keep what was seen, for the post-mortem (the venue lives in memory)
            (self.tmp / "last_check.json").write_text(dump_json(data))
        return found

    def collect(self) -> dict[str, Any]:
        info = self.venue.exchange_info()
        orders, trades = [], []
        for symbol in SYMBOLS:
            orders += self.venue.all_orders(symbol)
            trades += [t | {"symbol": symbol} for t in self.venue.my_trades(symbol)]
        account, open_orders = self.venue.account(), self.venue.open_orders()
        state, fills = self.state_rows()
        health = self.stack.api("GET", "/api/health")["services"]
        figures = {"venue_orders": len(orders), "venue_fills": len(trades),
                   "state_fills": len(fills), "oco_orders": sum(o["orderListId"] != -1
                                                                for o in orders),
                   "open_positions": sum(checks.dec(p["qty"]) > 0 for p in state["positions"])}
        return {"orders": orders, "trades": trades, "account": account,
                "open_orders": open_orders, "state": state, "fills": fills, "health": health,
                "filters": self.filters(info), "base_assets": {
                    s["symbol"]: s["baseAsset"] for s in info["symbols"]
                    if s["symbol"] in SYMBOLS}, "figures": figures}

    def filters(self, info: dict) -> dict[str, dict[str, Decimal]]:
        out = {}
        for sym in info["symbols"]:
            if sym["symbol"] not in SYMBOLS:
                continue
            f = {x["filterType"]: x for x in sym["filters"]}
            notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL") or {}
            price = self.venue.public("ticker/price", symbol=sym["symbol"])["price"]
            out[sym["symbol"]] = {"step": Decimal(f["LOT_SIZE"]["stepSize"]),
                                  "min_notional": Decimal(notional.get("minNotional", "0")),
                                  "price": Decimal(price)}
        return out

    def state_rows(self) -> tuple[dict, list[dict]]:
        """The state service's snapshot and every fill, over its request/reply endpoint."""
        ctx = zmq.Context()
        client = RequestClient(ctx, self.stack.endpoint("state"), timeout_ms=5000, retries=2)
        try:
            snapshot = client.call(GetSnapshot(recent=1))
            fills, before = [], None
            while True:
                page = client.call(QueryFills(limit=1000, before=before))
                fills += page["items"]
                before = page["next_before"]
                if before is None:
                    return snapshot, fills
        finally:
            client.close()
            ctx.destroy(linger=0)

    def check_dashboard_ws(self) -> list[str]:
        from tests.chaos.wscheck import check_ws_resync
        try:
            return check_ws_resync(self.stack.gateway_url)
        except Exception as exc:  # noqa: BLE001
            return [f"dashboard WebSocket: {type(exc).__name__}: {exc}"]


def start_bots(stack: ChaosStack, count: int, prefix: str = "chaos") -> list[int]:
    """Create and start ``count`` bots through the gateway's REST API: SWING and SCALPING in
    turn over SYMBOLS, with periods and thresholds short enough to trade every few candles."""
    bot_ids = []
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        strategy, params = (("SWING", SWING_FAST) if n % 2 == 0
                            else ("SCALPING", SCALPING_FAST))
        bot = stack.api("POST", "/api/bots", {
            "strategy": strategy, "symbol": symbol, "timeframe": "1m", "params": params,
            "name": f"{prefix} {n} {strategy} {symbol}"})
        bot_ids.append(bot["id"])
    for bot_id in bot_ids:
        stack.api("POST", f"/api/bots/{bot_id}/start", {})
    return bot_ids


def resources(slots: list[Slot]) -> dict[str, tuple[int, int]]:
    """label -> (RSS in KiB, open file descriptors) of each running process, from /proc."""
    out = {}
    for slot in slots:
        pid = slot.service_pid()
        if pid is None:
            continue
        proc = Path(f"/proc/{pid}")
        try:
            status = (proc / "status").read_text()
            rss = int(next(ln.split()[1] for ln in status.splitlines()
                           if ln.startswith("VmRSS:")))
            out[slot.label] = (rss, len(list((proc / "fd").iterdir())))
        except (OSError, StopIteration):
            continue
    return out


def parse_args(argv: list[str] | None = None) -> ChaosConfig:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="chaos phase, seconds")
    p.add_argument("--workers", type=int, default=3, help="strategy workers")
    p.add_argument("--bots", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=60.0, help="SIM_SPEED of the market")
    p.add_argument("--settle", type=float, default=60.0, help="settle timeout, seconds")
    p.add_argument("--kill-every", type=float, nargs=2, default=(20.0, 40.0),
                   metavar=("MIN_S", "MAX_S"))
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    p.add_argument("--soak", action="store_true",
                   help="no kills and no faults; report RSS and open fds per process")
    a = p.parse_args(argv)
    return ChaosConfig(duration_s=a.duration, workers=a.workers, bots=a.bots, seed=a.seed,
                       sim_speed=a.speed, settle_s=a.settle, kill_every_s=tuple(a.kill_every),
                       keep=a.keep, soak=a.soak)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    report = ChaosRun(cfg).run()
    for line in report.lines():
        print(line, flush=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
