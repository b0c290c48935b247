"""Fixtures shared by the whole suite: short ipc endpoints, a running bus, a config."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import zmq

from shared.config import Config, Endpoints, load_config
from shared.service import ServiceThread


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a service the test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float = 5.0,
               what: str = "condition", every_s: float = 0.02) -> object:
    """Poll ``predicate`` (state in another thread or process, or an HTTP endpoint: there is
    no event to wait on) until it returns something truthy, and return that; fail naming
    ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


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
    return replace(load_config(service, env={}), endpoints=endpoints, **overrides)


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
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            continue
        parent = _supervisor_of(pid)
        for victim in (parent, pid):  # the supervisor first, or it starts the service again
            if victim is None:
                continue
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _supervisor_of(pid: int) -> int | None:
    """The ``shared.supervise`` process that runs ``pid``, if any (from /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        cmdline = Path(f"/proc/{ppid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return ppid if b"shared.supervise" in cmdline else None
