"""Scaling: three real worker processes share six bots 2-2-2; a SIGKILLed worker's bots move
to the other two within the lease TTL, and an intent under the dead worker's epoch is refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from shared import messages as m
from shared.bus import RequestClient
from tests.conftest import wait_until as wait_for
from tests.services.strategy.conftest import call, create_bot

ROOT = Path(__file__).resolve().parents[3]
LEASE_TTL_S = 3.0
HEALTH_TIMEOUT_S = 1.2


@pytest.fixture
def workers(endpoints, tmp_path, state, execution, marketdata):
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "BUS_XSUB_ENDPOINT": endpoints.bus_xsub,
        "BUS_XPUB_ENDPOINT": endpoints.bus_xpub,
        "STATE_ENDPOINT": endpoints.state,
        "EXECUTION_ENDPOINT": endpoints.execution,
        "MARKETDATA_ENDPOINT": endpoints.marketdata,
        "DATA_DIR": str(tmp_path / "workers"),
        "HEARTBEAT_INTERVAL_S": "0.3",
        "HEALTH_TIMEOUT_S": str(HEALTH_TIMEOUT_S),
        "STRATEGY_LEASE_TTL_S": str(LEASE_TTL_S),
        "STRATEGY_CLAIM_GRACE_S": "1.0",
        "STRATEGY_ROUND_EVERY_S": "0.1",
        "STRATEGY_REBALANCE_EVERY_S": "0.5",
    }
    env.pop("MODE", None)
    log = open(tmp_path / "workers.log", "w")
    procs = [
        subprocess.Popen([sys.executable, "-m", "services.strategy"], cwd=ROOT, env=env,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(3)
    ]
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    print((tmp_path / "workers.log").read_text()[-4000:])


def owner_of(proc: subprocess.Popen) -> str:
    return f"{socket.gethostname()}-{proc.pid}"


def placement(client, bots: list[int]) -> tuple[dict[int, dict], dict[int, str]]:
    snapshot = call(client, m.GetSnapshot(recent=1))
    leases = {lease["bot_id"]: lease for lease in snapshot["leases"]}
    statuses = {bot["id"]: bot["status"] for bot in snapshot["bots"]}
    return {b: leases.get(b) or {"owner": None, "epoch": 0} for b in bots}, statuses


def test_a_killed_workers_bots_move_within_the_ttl_and_its_epoch_is_refused(
    ctx, endpoints, client, workers
):
    bots = [create_bot(client, "SCALPING" if i % 2 else "SWING") for i in range(6)]
    owners = {owner_of(p) for p in workers}

    def spread_two_each():
        leases, statuses = placement(client, bots)
        held = Counter(lease["owner"] for lease in leases.values())
        settled = all(statuses[b] == "RUNNING" for b in bots)
        return settled and set(held) == owners and set(held.values()) == {2} and leases

    leases = wait_for(spread_two_each, 30, "six bots spread 2-2-2 and RUNNING", 0.1)

    victim, *survivors = workers
    dead = {b: lease["epoch"] for b, lease in leases.items() if lease["owner"] == owner_of(victim)}
    alive = {owner_of(p) for p in survivors}
    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=5)

    def moved():  # claimed by a survivor under a new epoch
        now, _ = placement(client, bots)
        return all(now[b]["owner"] in alive and now[b]["epoch"] > epoch
                   for b, epoch in dead.items()) and now

    after = wait_for(moved, LEASE_TTL_S + 10, "the dead worker's bots to move", 0.05)
    took_s = time.monotonic() - killed_at
    print(f"bots claimed by the survivors {took_s:.2f} s after SIGKILL (TTL {LEASE_TTL_S} s)")
    assert took_s <= LEASE_TTL_S + 1.0  # the TTL and one claim round
    assert sorted(Counter(lease["owner"] for lease in after.values()).values()) == [3, 3]
    wait_for(lambda: all(s == "RUNNING" for b, s in placement(client, bots)[1].items()
                         if b in dead), 10, "the moved bots to run again", 0.05)

    bot_id, old_epoch = next(iter(dead.items()))
    stale = m.SubmitIntent(intent_id=f"{bot_id}-dead-0", bot_id=str(bot_id), epoch=old_epoch,
                           symbol="BTCUSDT", side="BUY", order_type="MARKET",
                           quote_qty=Decimal("10"), reason="from the dead worker")
    execution_client = RequestClient(ctx, endpoints.execution, timeout_ms=3000, retries=1)
    try:
        reply = execution_client.request(stale)
    finally:
        execution_client.close()
    assert not reply.ok and reply.error_code == "stale_lease"
