"""The whole system from the Procfile under honcho: all healthy, one restarted alone, all
stopped within 5 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from services.gateway.health import SERVICES
from tests.conftest import free_port, kill_leftovers, wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.system




def get_health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as resp:
            return json.load(resp)["services"]
    except OSError:
        return None




@pytest.fixture
def system(ipc_dir, tmp_path):
    port = free_port()
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "BUS_XSUB_ENDPOINT": f"ipc://{ipc_dir}/xsub",
        "BUS_XPUB_ENDPOINT": f"ipc://{ipc_dir}/xpub",
        "STATE_ENDPOINT": f"ipc://{ipc_dir}/state",
        "EXECUTION_ENDPOINT": f"ipc://{ipc_dir}/execution",
        "MARKETDATA_ENDPOINT": f"ipc://{ipc_dir}/marketdata",
        "GATEWAY_PORT": str(port),
        "SIM_PORT": str(free_port()),
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MODE", None)
    log = open(tmp_path / "honcho.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT),
         "-c", "strategy=2"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield proc, port, tmp_path / "data"
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kill_leftovers(tmp_path / "data" / "run")
    log.close()
    print((tmp_path / "honcho.log").read_text()[-5000:])


def all_up(port: int):
    services = get_health(port)
    if services and all(services[name]["up"] for name in SERVICES):
        return services
    return None


def test_procfile_system_starts_restarts_one_and_stops(system):
    proc, port, data_dir = system
    started = time.monotonic()

    before = wait_until(lambda: all_up(port), 30, "every service healthy")
    print(f"all services healthy {time.monotonic() - started:.2f} s after honcho start")
    assert before["strategy"]["up_instances"] == 2

    pidfiles = list((data_dir / "run").glob("state.*.pid"))
    assert len(pidfiles) == 1
    state_pid = int(pidfiles[0].read_text())
    others = {n: before[n]["instances"] for n in SERVICES if n != "state"}
    os.kill(state_pid, signal.SIGHUP)  # what `make restart SERVICE=state` does

    (old_state,) = before["state"]["instances"].values()

    def state_came_back():
        services = all_up(port)
        if services:
            (new_state,) = services["state"]["instances"].values()
            if new_state["started_at"] > old_state["started_at"]:
                return services
        return None

    after = wait_until(state_came_back, 15, "state to restart and heartbeat again")
    assert proc.poll() is None, "honcho stopped: the restart took the others down"
    for name, instances in others.items():  # the others kept running: same process, same start
        for instance, info in instances.items():
            now = after[name]["instances"][instance]
            assert (now["pid"], now["started_at"]) == (info["pid"], info["started_at"])
            assert now["up"]

    pids = [int(p.read_text()) for p in (data_dir / "run").glob("*.pid")]
    assert len(pids) == 8  # seven services, two strategy workers
    stop_started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    stop_s = time.monotonic() - stop_started
    print(f"all services stopped {stop_s:.2f} s after SIGTERM")
    assert stop_s < 5.0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_simulator_answers_python_binance_in_the_running_system(system):
    """The exchange_sim process serves Binance's REST API on SIM_PORT."""
    from binance.client import Client

    proc, port, _ = system
    wait_until(lambda: all_up(port), 30, "every service healthy")
    services = get_health(port)
    (sim,) = services["exchange_sim"]["instances"].values()
    base = sim["detail"]["url"]
    client = Client("sim-key", "sim-secret", ping=False)
    client.API_URL = f"{base}/api"
    assert client.ping() == {}
    assert client.get_symbol_ticker(symbol="BTCUSDT")["symbol"] == "BTCUSDT"
    client.close_connection()


def test_a_killed_service_comes_back_alone_under_honcho(system):
    """SIGKILL one strategy worker: its supervisor restarts it, honcho and the rest carry on."""
    proc, port, data_dir = system
    before = wait_until(lambda: all_up(port), 30, "every service healthy")
    victim = int(sorted((data_dir / "run").glob("strategy.*.pid"))[0].read_text())
    survivors = {name: {i["pid"] for i in before[name]["instances"].values()}
                 for name in SERVICES if name != "strategy"}

    os.kill(victim, signal.SIGKILL)

    def replaced():
        services = all_up(port)
        if not services:
            return None
        pids = {i["pid"] for i in services["strategy"]["instances"].values() if i["up"]}
        return services if len(pids) == 2 and victim not in pids else None

    after = wait_until(replaced, 20, "a new strategy worker in place of the killed one")
    assert proc.poll() is None, "honcho stopped everything"
    for name, pids in survivors.items():
        assert {i["pid"] for i in after[name]["instances"].values() if i["up"]} == pids
