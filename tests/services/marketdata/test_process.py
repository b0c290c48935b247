"""``python -m services.marketdata`` as a real process: streams from the simulator, stops on
SIGTERM within 2 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.bus import RequestClient
from shared.messages import Candle, SetMarketStreams

ROOT = Path(__file__).resolve().parents[3]


def test_the_process_streams_from_the_simulator_and_stops_on_sigterm(sim, bus, endpoints, ctx,
                                                                     tap, tmp_path):
    env = os.environ | {
        "PYTHONPATH": str(ROOT), "MODE": "sim", "SIM_PORT": str(sim.port),
        "BUS_XSUB_ENDPOINT": endpoints.bus_xsub, "BUS_XPUB_ENDPOINT": endpoints.bus_xpub,
        "MARKETDATA_ENDPOINT": endpoints.marketdata, "DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.marketdata"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = RequestClient(ctx, endpoints.marketdata, timeout_ms=2000, retries=5)
    try:
        client.call(SetMarketStreams("worker-1", ("md.kline.BTCUSDT.1s",), ttl_s=30))
        tap.wait_for(lambda: tap.messages("md.kline.BTCUSDT.1s", Candle), 15, "klines")

        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - stopping < 2.0
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
