"""The service lifecycle: heartbeats on the bus, idempotent stop, signals stop a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.bus import Subscriber
from shared.messages import Heartbeat
from shared.service import RUNNING, STOPPED, Service
from tests.conftest import RunningService, make_config

ROOT = Path(__file__).resolve().parents[2]


class Idle(Service):
    name = "idle"


def test_heartbeats_flow_every_interval_with_status_and_uptime(bus, ctx, endpoints):
    sub = Subscriber(ctx, endpoints.bus_xpub, ["health.idle"])
    running = RunningService(Idle(make_config("idle", endpoints, heartbeat_interval_s=0.1)))

    beats = []
    deadline = time.monotonic() + 5
    while len(beats) < 5 and time.monotonic() < deadline:
        got = sub.recv(timeout_ms=200)
        if got and isinstance(got[1], Heartbeat):
            beats.append(got[1])
    running.close()

    assert len(beats) == 5
    assert all(b.status == RUNNING and b.service == "idle" for b in beats)
    assert [b.uptime_s for b in beats] == sorted(b.uptime_s for b in beats)
    gaps = [b.ts - a.ts for a, b in zip(beats, beats[1:], strict=False)]
    assert all(0.05 < g < 0.5 for g in gaps), gaps
    sub.close()


def test_stop_is_idempotent(endpoints):
    service = Idle(make_config("idle", endpoints))
    service.start()
    service.stop()
    service.stop()
    assert service.state == STOPPED


def test_a_failing_step_faults_but_keeps_heartbeating(bus, ctx, endpoints):
    class Broken(Service):
        name = "broken"

        def step(self, timeout_s):
            raise RuntimeError("boom")

    sub = Subscriber(ctx, endpoints.bus_xpub, ["health.broken"])
    running = RunningService(Broken(make_config("broken", endpoints, heartbeat_interval_s=0.1)))
    faulted = None
    deadline = time.monotonic() + 5
    while faulted is None and time.monotonic() < deadline:
        got = sub.recv(timeout_ms=200)
        if got and got[1].status == "FAULTED":
            faulted = got[1]
    running.close()

    assert faulted is not None
    assert faulted.detail["fault"] == "RuntimeError: boom"
    sub.close()


def service_env(endpoints, tmp_path) -> dict:
    return os.environ | {
        "BUS_XSUB_ENDPOINT": endpoints.bus_xsub, "BUS_XPUB_ENDPOINT": endpoints.bus_xpub,
        "STATE_ENDPOINT": endpoints.state, "DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
    }


def test_sigterm_and_sigint_stop_a_service_process_within_2s(bus, ctx, endpoints, tmp_path):
    for signum in (signal.SIGTERM, signal.SIGINT):
        sub = Subscriber(ctx, endpoints.bus_xpub, ["health.state"])
        proc = subprocess.Popen([sys.executable, "-m", "services.state"], cwd=ROOT,
                                env=service_env(endpoints, tmp_path))
        try:
            assert sub.recv(timeout_ms=10_000) is not None, "no heartbeat from the process"
            started = time.monotonic()
            proc.send_signal(signum)
            assert proc.wait(timeout=5) == 0
            assert time.monotonic() - started < 2.0
        finally:
            proc.kill()
            sub.close()


def test_bad_config_exits_with_the_problem_named(tmp_path):
    env = os.environ | {"MODE": "moon", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "services.bus"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "MODE='moon' is not allowed; use one of: sim, paper, testnet, live" in proc.stderr
