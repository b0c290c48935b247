"""docker-compose.yml matches the Procfile, publishes on 127.0.0.1 only, and parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def procfile_services() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_one_compose_service_per_procfile_process(compose):
    procfile = procfile_services()
    assert set(compose["services"]) == set(procfile)
    for name, svc in compose["services"].items():
        assert procfile[name] == f"exec python -m shared.supervise services.{name}"
        if name == "gateway":  # served by gunicorn in containers
            assert svc["command"][0] == "gunicorn" and svc["command"][-1].startswith(
                "services.gateway.wsgi:")
            continue
        assert svc["command"] == ["python", "-m", f"services.{name}"]


def test_one_image_for_all(compose):
    assert {svc["image"] for svc in compose["services"].values()} == {"binance-zmq-bot:latest"}


def test_ports_are_published_on_loopback_only(compose):
    published = [p for svc in compose["services"].values() for p in svc.get("ports", [])]
    assert published, "the dashboard must be published"
    assert all(p.startswith("127.0.0.1:") for p in published), published


def test_each_service_config_validates_with_its_compose_environment(compose):
    for name, svc in compose["services"].items():
        cfg = load_config(name, env={k: str(v) for k, v in svc["environment"].items()})
        assert cfg.endpoints.bus_xsub == "tcp://bus:5550"
        for endpoint in ("bus_xsub", "bus_xpub", "state", "execution", "marketdata"):
            bound = cfg.endpoints.bind(endpoint)
            assert bound.startswith("tcp://0.0.0.0:") or name != endpoint.split("_")[0]


def test_docker_compose_accepts_it():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"],
                                        capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed here; the checks above parse the file")
    result = subprocess.run([docker, "compose", "config", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
