"""SIGKILL of the execution process between sending an order and recording it, then restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from services.execution.orders import client_order_id
from services.execution.outbox import ExecutionDb
from shared import messages as m
from shared.bus import RequestClient
from tests.services.execution.conftest import (
    API_KEY,
    API_SECRET,
    intent,
    set_faults,
    unknown_status_once,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[3]


def spawn(endpoints, sim, data_dir: Path, cwd: Path) -> subprocess.Popen:
    env = {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "MODE": "sim",
        "SIM_PORT": str(sim.port), "SIM_API_KEY": API_KEY, "SIM_API_SECRET": API_SECRET,
        "DATA_DIR": str(data_dir / "execution"), "HEARTBEAT_INTERVAL_S": "0.5",
        "BUS_XSUB_ENDPOINT": endpoints.bus_xsub, "BUS_XPUB_ENDPOINT": endpoints.bus_xpub,
        "STATE_ENDPOINT": endpoints.state, "EXECUTION_ENDPOINT": endpoints.execution,
    }
    return subprocess.Popen([sys.executable, "-m", "services.execution"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def venue_orders(sim, cid: str) -> int:
    return sum(1 for o in sim.venue.engine.all_orders("sim", "BTCUSDT", None, 1000)
               if o.client_order_id == cid)


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_sigkill_after_send_then_restart_records_the_order_once(
        state, endpoints, sim, data_dir, tmp_path, ctx, ask_state, lease, processes):
    request = intent("kill-1", lease, quote_qty=Decimal("50"))
    cid = client_order_id("kill-1", "1")
    status = RequestClient(ctx, endpoints.execution, timeout_ms=500, retries=1)
    first = spawn(endpoints, sim, data_dir, tmp_path)
    processes.append(first)
    wait_for(lambda: _synced(status), timeout_s=20, what="the first process to sync")
    status.close()
    # -1007: the venue executes the order, then answers "unknown"; execution starts asking
    unknown_status_once(sim, latency_ms=300)
    sender = threading.Thread(target=_send_and_forget, args=(ctx, endpoints, request))
    sender.start()

    wait_for(lambda: venue_orders(sim, cid), what="the order on the venue")
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    sender.join(10)
    set_faults(sim, latency_ms=0)
    db = ExecutionDb(data_dir / "execution")
    left = db.intent("kill-1")["status"]  # killed inside the window: sent, not recorded
    db.close()
    second = spawn(endpoints, sim, data_dir, tmp_path)
    processes.append(second)

    orders = wait_for(lambda: ask_state(m.QueryOrders(bot_id=1)).result["items"],
                      timeout_s=20, what="the order recorded in state")
    again = RequestClient(ctx, endpoints.execution, timeout_ms=8000, retries=1)
    try:
        reply = again.request(request)
    finally:
        again.close()

    assert left == "pending"
    assert [o["client_order_id"] for o in orders] == [cid]
    assert wait_for(lambda: ask_state(m.QueryOrders(bot_id=1)).result["items"][0]["status"]
                    == "FILLED", what="the order filled in state")
    assert reply.ok and reply.result["client_order_id"] == cid
    assert venue_orders(sim, cid) == 1


def _synced(client: RequestClient) -> bool:
    try:
        reply = client.request(m.GetExecutionStatus())
    except Exception:
        client.close()
        return False
    return reply.ok and reply.result["last_sync_ts"] > 0


def _send_and_forget(ctx, endpoints, request: m.SubmitIntent) -> None:
    client = RequestClient(ctx, endpoints.execution, timeout_ms=3000, retries=1)
    try:
        client.request(request)
    except Exception:  # the process is killed mid-request: no answer is expected
        pass
    finally:
        client.close()
