"""The live path for the parity test: the Procfile's services under honcho on the simulator
(replaying the shipped candles at ``SIM_SPEED``), and the venue's own record of the account's
fills (``GET /api/v3/myTrades`` joined with ``allOrders`` for the client order ids)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port, kill_leftovers

ROOT = Path(__file__).resolve().parents[2]
MINUTE_MS = 60_000






@dataclass(frozen=True)
class LiveFill:
    """One fill of the account as the simulator recorded it, with its order's client id
    (execution's ``b<bot id>-...``)."""

    ts_ms: int
    side: str
    qty: str
    price: str
    order_id: int
    client_order_id: str = ""

    def bot_id(self) -> int | None:
        head = self.client_order_id.split("-", 1)[0]
        return int(head[1:]) if head[:1] == "b" and head[1:].isdigit() else None

    def key(self) -> tuple[int, str, str, str]:
        return (self.ts_ms, self.side, self.qty, self.price)


@dataclass
class LiveStack:
    """honcho running the Procfile on ipc endpoints, free ports and a temp DATA_DIR."""

    speed: float
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="parity-")))
    port: int = field(default_factory=free_port)
    sim_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def start(self) -> None:
        t = self.tmp
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "BUS_XSUB_ENDPOINT": f"ipc://{t}/xsub", "BUS_XPUB_ENDPOINT": f"ipc://{t}/xpub",
            "STATE_ENDPOINT": f"ipc://{t}/state", "EXECUTION_ENDPOINT": f"ipc://{t}/execution",
            "MARKETDATA_ENDPOINT": f"ipc://{t}/marketdata",
            "GATEWAY_PORT": str(self.port), "SIM_PORT": str(self.sim_port),
            "DATA_DIR": str(t / "data"), "PYTHONUNBUFFERED": "1",
            "SIM_PRICE_SOURCE": "klines", "SIM_SPEED": f"{self.speed:g}", "SIM_SEED": "7",
        }
        for name in ("MODE", "DASHBOARD_PASSWORD", "DASHBOARD_PASSWORD_HASH",
                     "GATEWAY_API_TOKENS", "SIM_FAULTS"):
            env.pop(name, None)
        log = open(t / "honcho.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"),
             "-d", str(ROOT)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        kill_leftovers(self.tmp / "data" / "run")

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, chars: int = 6000) -> str:
        path = self.tmp / "honcho.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- HTTP -------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, base: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{base or self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)

    def answers(self) -> bool:
        try:
            services = self.call("GET", "/api/health")["services"]
        except (OSError, ValueError):
            return False
        return all(s["up"] for s in services.values())

    def market_row(self, symbol: str, origin_ms: int) -> tuple[int, int]:
        """(CSV row the replay is in, seconds into it) in the simulator's market time."""
        row = self.call("GET", f"/api/v3/klines?symbol={symbol}&interval=1m&limit=1",
                        base=self.sim_url)[-1]
        return (int(row[0]) - origin_ms) // MINUTE_MS, int(row[8]) - 1

    def origin_ms(self, symbol: str) -> int:
        """Open time of the replay's first candle: CSV row 0 sits there."""
        rows = self.call("GET", f"/api/v3/klines?symbol={symbol}&interval=1m&startTime=0&limit=1",
                         base=self.sim_url)
        return int(rows[0][0])

    def sim_fills(self, symbol: str) -> list[LiveFill]:
        from binance.client import Client

        client = Client("sim-key", "sim-secret", ping=False)
        client.API_URL = f"{self.sim_url}/api"
        try:
            trades = client.get_my_trades(symbol=symbol, limit=1000)
            orders = client.get_all_orders(symbol=symbol, limit=1000)
        finally:
            client.close_connection()
        cids = {int(o["orderId"]): o["clientOrderId"] for o in orders}
        return [LiveFill(int(t["time"]), "BUY" if t["isBuyer"] else "SELL", t["qty"], t["price"],
                         int(t["orderId"]), cids.get(int(t["orderId"]), ""))
                for t in trades]
