"""The whole system from the Procfile (on the simulator, auth on) and a headless Chromium for the
dashboard's browser tests.

One stack and one browser serve every test of a session: starting seven services takes seconds
and the total must stay under two minutes. Tests that change state (start a bot, save params)
leave it as they found it or create their own bot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, kill_leftovers, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct horse battery staple"




@dataclass
class Stack:
    """The running system: honcho's process, the gateway's URL and the data directory."""

    proc: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path
    sim_port: int
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sim_faults(self, **faults) -> dict:
        """Switch the exchange simulator's faults (``POST /sim/faults``)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.sim_port}/sim/faults", data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)

    def pid_of(self, service: str) -> int:
        (pidfile,) = (self.data_dir / "run").glob(f"{service}.*.pid")
        return int(pidfile.read_text())

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]




def _gateway_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/session", timeout=1) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return True  # it answered, even if not with 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Every service of the Procfile under honcho, on ipc endpoints, free ports and a temp
    DATA_DIR; auth on with ``PASSWORD``. Killed (the whole process group) at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="fe-"))
    port, sim_port = free_port(), free_port()
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "BUS_XSUB_ENDPOINT": f"ipc://{tmp}/xsub",
        "BUS_XPUB_ENDPOINT": f"ipc://{tmp}/xpub",
        "STATE_ENDPOINT": f"ipc://{tmp}/state",
        "EXECUTION_ENDPOINT": f"ipc://{tmp}/execution",
        "MARKETDATA_ENDPOINT": f"ipc://{tmp}/marketdata",
        "GATEWAY_PORT": str(port),
        "SIM_PORT": str(sim_port),
        "DATA_DIR": str(tmp / "data"),
        "DASHBOARD_PASSWORD": PASSWORD,
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("MODE", "DASHBOARD_PASSWORD_HASH", "GATEWAY_API_TOKENS", "GATEWAY_HOST"):
        env.pop(name, None)
    log_path = tmp / "honcho.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    running = Stack(proc, port, tmp / "data", log_path, sim_port)
    try:
        wait_until(lambda: _gateway_answers(running.url), 45, "the gateway to answer")
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        kill_leftovers(tmp / "data" / "run")
        log.close()
        print(running.log_tail())
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
