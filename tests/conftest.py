"""Fixtures shared by the whole suite: short ipc endpoints, a running bus, a config."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from shared.config import Config, Endpoints, load_config
from shared.service import ServiceThread


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short temp dir for ipc sockets (their paths are limited to ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="zmq-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def endpoints(ipc_dir: Path) -> Endpoints:
    return Endpoints(
        bus_xsub=f"ipc://{ipc_dir}/xsub",
        bus_xpub=f"ipc://{ipc_dir}/xpub",
        state=f"ipc://{ipc_dir}/state",
        execution=f"ipc://{ipc_dir}/execution",
        marketdata=f"ipc://{ipc_dir}/marketdata",
    )


def make_config(service: str, endpoints: Endpoints, **overrides) -> Config:
    base = load_config(service, env={})
    values = {**base.__dict__, "endpoints": endpoints, **overrides}
    return Config(**values)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class RunningService(ServiceThread):
    """A service's loop on a thread for a test; ``close`` fails the test if it hangs."""

    def close(self) -> None:
        assert super().close(), "service loop did not stop within 2 s"


@pytest.fixture
def bus(endpoints: Endpoints) -> Iterator[RunningService]:
    from services.bus.service import BusService

    running = RunningService(BusService(make_config("bus", endpoints)))
    yield running
    running.close()


def kill_leftovers(run_dir: Path) -> None:
    """honcho puts each service in a session of its own: after a failed or cut-short run,
    kill them by the pids they wrote, so no stray system outlives a test."""
    for pidfile in run_dir.glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
