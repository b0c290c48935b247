"""A writer killed with SIGKILL mid-stream loses no acknowledged fill and no integrity."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.state import db

REPO_ROOT = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("crash_writer.py")
ACKS_BEFORE_KILL = 200


def read_acks(process: subprocess.Popen, wanted: int, timeout_s: float) -> list[int]:
    """Read acknowledged ids from the child's stdout until ``wanted`` or the timeout."""
    acks: list[int] = []
    buffer = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while len(acks) < wanted and time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            acks.extend(int(line) for line in lines if line)
    return acks


def test_sigkill_mid_stream_keeps_every_acknowledged_fill(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env,
    )
    try:
        acks = read_acks(process, ACKS_BEFORE_KILL, timeout_s=30)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)
        remaining, errors = process.communicate(timeout=5)  # printed before the kill: acked
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    acks += [int(line) for line in remaining.split() if line]
    assert len(acks) >= ACKS_BEFORE_KILL, errors.decode(errors="replace")

    conn = db.connect(tmp_path / db.DB_FILENAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {int(row[0]) for row in conn.execute("SELECT trade_id FROM fills")}
    finally:
        conn.close()
    assert set(acks) <= stored
    assert max(stored) <= max(acks) + 1  # at most the one in flight was committed unacked
