"""The Procfile supervisor: a config error is not retried forever; bad usage is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def supervise(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared.supervise", *args], cwd=ROOT,
                          env=(env or os.environ) | {"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=30)


def test_a_configuration_error_ends_the_supervisor_with_the_problem_named():
    result = supervise("services.bus", env=os.environ | {"MODE": "moon"})
    assert result.returncode == 2
    assert "MODE='moon' is not allowed" in result.stderr
    assert "configuration error: not restarting" in result.stderr


def test_only_service_modules_are_supervised():
    result = supervise("os")
    assert result.returncode == 2 and "usage" in result.stderr
