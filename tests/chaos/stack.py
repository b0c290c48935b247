"""The whole stack as separate processes, one per Procfile line, each killable and restartable
alone (honcho would stop every process when one exits, so the chaos run does not use it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
START_ORDER = ("bus", "state", "exchange_sim", "marketdata", "execution", "strategy", "gateway")




def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, list[str]]:
    """``name -> argv`` of every Procfile line (``exec python -m x`` -> this Python, ``-m x``)."""
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if not sep or line.startswith("#"):
            continue
        argv = command.split()
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv and argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        commands[name.strip()] = argv
    return commands


@dataclass
class Slot:
    """One running copy of a service (``strategy.2``) and how often it was (re)started."""

    name: str
    index: int
    argv: list[str]
    proc: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}.{self.index}"

    @property
    def supervised(self) -> bool:
        """The Procfile line runs the service under ``shared.supervise`` (which restarts it)."""
        return "shared.supervise" in self.argv

    def service_pid(self) -> int | None:
        """The pid of the service itself: the supervisor's child, or the process we started."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        if not self.supervised:
            return self.proc.pid
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None


@dataclass
class ChaosStack:
    """Spawns the services with ipc endpoints in ``tmp``, free ports and ``tmp/data``."""

    tmp: Path
    workers: int = 3
    extra_env: dict[str, str] = field(default_factory=dict)
    gateway_port: int = field(default_factory=free_port)
    sim_port: int = field(default_factory=free_port)
    slots: list[Slot] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def log_dir(self) -> Path:
        return self.tmp / "logs"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.tmp}/{name}"

    def env(self) -> dict[str, str]:
        env = os.environ | {
            "PYTHONPATH": str(ROOT),
            "BUS_XSUB_ENDPOINT": self.endpoint("xsub"),
            "BUS_XPUB_ENDPOINT": self.endpoint("xpub"),
            "STATE_ENDPOINT": self.endpoint("state"),
            "EXECUTION_ENDPOINT": self.endpoint("execution"),
            "MARKETDATA_ENDPOINT": self.endpoint("marketdata"),
            "GATEWAY_PORT": str(self.gateway_port),
            "SIM_PORT": str(self.sim_port),
            "DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("MODE", "DASHBOARD_PASSWORD", "DASHBOARD_PASSWORD_HASH",
                     "GATEWAY_API_TOKENS", "GATEWAY_HOST", "BINANCE_API_KEY",
                     "BINANCE_API_SECRET", "SIM_FAULTS", "SIM_SPEED", "SIM_SEED"):
            env.pop(name, None)
        return env | self.extra_env

    def build(self) -> None:
        commands = procfile_commands()
        for name in START_ORDER:
            for index in range(1, (self.workers if name == "strategy" else 1) + 1):
                self.slots.append(Slot(name, index, commands[name]))
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def start_all(self) -> None:
        if not self.slots:
            self.build()
        for slot in self.slots:
            self.start(slot)

    def start(self, slot: Slot) -> None:
        log = open(self.log_dir / f"{slot.label}.log", "a")
        log.write(f"\n===== start #{slot.starts + 1} at {time.time():.3f}\n")
        log.flush()
        slot.proc = subprocess.Popen(slot.argv, cwd=ROOT, env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        slot.starts += 1

    def kill(self, slot: Slot) -> bool:
        """SIGKILL one service (no clean stop) and drop the pidfile it can no longer remove.

        Under ``shared.supervise`` the service (the supervisor's child) is killed and the
        supervisor starts it again; otherwise the process is gone until :meth:`start`."""
        pid = slot.service_pid()
        if pid is None:
            return False
        _signal(pid, signal.SIGKILL)
        if not slot.supervised and slot.proc is not None:
            slot.proc.wait()
        slot.kills += 1
        for pidfile in (self.data_dir / "run").glob(f"{slot.name}.{pid}.pid"):
            pidfile.unlink(missing_ok=True)
        return True

    def crashes(self) -> list[str]:
        """Exits of a supervised service that the driver did not cause (SIGKILL is 137)."""
        found = []
        for label, text in self.logs().items():
            for line in text.splitlines():
                if line.startswith("supervise[") and "exited with" in line \
                        and "exited with 137;" not in line:
                    found.append(f"{label}: {line}")
        return found

    def dead(self) -> list[Slot]:
        """Slots whose process exited by itself (not killed by the driver)."""
        return [s for s in self.slots if s.proc is not None and s.proc.poll() is not None]

    def stop_all(self, timeout_s: float = 8.0) -> None:
        """SIGTERM every process, SIGKILL what is left after ``timeout_s``; always safe."""
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for proc in live:
            _signal(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                proc.wait()
        for pidfile in (self.data_dir / "run").glob("*.pid"):
            try:  # anything a service re-executed or forked and left behind
                _signal(int(pidfile.read_text()), signal.SIGKILL)
            except ValueError:
                pass

    def logs(self) -> dict[str, str]:
        return {p.stem: p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log"))}

    # --- HTTP helpers -----------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout_s: float = 5.0) -> Any:
        """Call the gateway's REST API (auth off: a JSON body passes the CSRF rule)."""
        resp = requests.request(method, f"{self.gateway_url}{path}", timeout=timeout_s,
                                json=body if body is not None or method != "GET" else None)
        resp.raise_for_status()
        return resp.json()

    def sim_faults(self, **faults: Any) -> dict:
        resp = requests.post(f"{self.sim_url}/sim/faults", json=faults, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def sim_clear_faults(self) -> dict:
        resp = requests.delete(f"{self.sim_url}/sim/faults", timeout=5)
        resp.raise_for_status()
        return resp.json()


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _get_within_limits(url: str, headers: dict | None = None, tries: int = 4):
    """GET, waiting out a 429/418 (the stack may have spent the minute's weight) as a
    Binance client must: Retry-After, at most about a minute each time."""
    for _ in range(tries - 1):
        resp = requests.get(url, headers=headers, timeout=10)
        if resp.status_code not in (418, 429):
            return resp
        time.sleep(min(65.0, float(resp.headers.get("Retry-After", "5"))))
    return requests.get(url, headers=headers, timeout=10)


class VenueClient:
    """Signed reads of the simulator's Binance REST API (its non-secret sim account)."""

    def __init__(self, base_url: str, key: str = "sim-key", secret: str = "sim-secret") -> None:
        self.base_url = base_url
        self.key = key
        self.secret = secret.encode()

    def signed(self, path: str, **params: Any) -> Any:
        params["timestamp"] = int(time.time() * 1000)
        params["recvWindow"] = 10_000
        query = urllib.parse.urlencode(params)
        signature = hmac.new(self.secret, query.encode(), hashlib.sha256).hexdigest()
        resp = _get_within_limits(f"{self.base_url}/api/v3/{path}?{query}&signature={signature}",
                                  headers={"X-MBX-APIKEY": self.key})
        if resp.status_code != 200:
            raise RuntimeError(f"venue {path}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def public(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        resp = _get_within_limits(f"{self.base_url}/api/v3/{path}?{query}")
        resp.raise_for_status()
        return resp.json()

    def all_orders(self, symbol: str) -> list[dict]:
        return self._paged("allOrders", symbol, "orderId")

    def my_trades(self, symbol: str) -> list[dict]:
        return self._paged("myTrades", symbol, "id", start_key="fromId")

    def _paged(self, path: str, symbol: str, id_key: str, start_key: str = "orderId") -> list:
        rows: list[dict] = []
        start = 0
        while True:
            page = self.signed(path, symbol=symbol, limit=1000, **{start_key: start})
            rows.extend(page)
            if len(page) < 1000:
                return rows
            start = max(r[id_key] for r in page) + 1

    def account(self) -> dict:
        return self.signed("account")

    def open_orders(self) -> list[dict]:
        return self.signed("openOrders")

    def exchange_info(self) -> dict:
        return self.public("exchangeInfo")


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)
