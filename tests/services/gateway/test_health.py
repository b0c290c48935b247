"""/api/health: the last heartbeat of every service; 3 s of silence means down."""

from __future__ import annotations

import re

from services.gateway.app import create_app
from services.gateway.health import SERVICES, HealthBook
from shared.clock import TestClock
from shared.messages import Heartbeat


def beat(service: str, instance: str = "host-1", status: str = "RUNNING") -> Heartbeat:
    return Heartbeat(service=service, instance=instance, status=status, uptime_s=5.0,
                     ts=0.0, pid=1)


def test_all_seven_services_are_listed_even_before_any_heartbeat():
    view = HealthBook(3.0, TestClock()).view()
    assert set(view["services"]) == set(SERVICES) and len(SERVICES) == 7
    assert not any(s["up"] for s in view["services"].values())


def test_a_service_silent_for_3s_is_down():
    clock = TestClock()
    book = HealthBook(3.0, clock)
    book.record(beat("state"))

    clock.advance(2.9)
    assert book.view()["services"]["state"]["up"] is True
    clock.advance(0.2)
    state = book.view()["services"]["state"]
    assert state["up"] is False and state["status"] == "DOWN"
    assert state["last_seen_s"] == 3.1


def test_a_stopped_announcement_is_down_at_once():
    book = HealthBook(3.0, TestClock())
    book.record(beat("execution", status="STOPPED"))
    assert book.view()["services"]["execution"]["up"] is False


def test_several_strategy_workers_are_counted():
    clock = TestClock()
    book = HealthBook(3.0, clock)
    book.record(beat("strategy", "w1"))
    clock.advance(5)
    book.record(beat("strategy", "w2"))
    book.record(beat("strategy", "w3"))

    strategy = book.view()["services"]["strategy"]
    assert strategy["up"] and strategy["up_instances"] == 2
    assert strategy["instances"]["w1"]["up"] is False


def test_api_health_answers_json():
    book = HealthBook(3.0, TestClock())
    book.record(beat("bus"))
    client = create_app(book).test_client()

    resp = client.get("/api/health")

    assert resp.status_code == 200 and resp.is_json
    assert resp.get_json()["services"]["bus"]["up"] is True


def test_unknown_path_is_a_json_404():
    client = create_app(HealthBook()).test_client()
    resp = client.get("/api/nope")
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"
    assert set(resp.get_json()["error"]) == {"code", "message", "fields"}


def test_dashboard_page_and_its_scripts_are_served():
    client = create_app(HealthBook()).test_client()
    page = client.get("/")
    scripts = re.findall(r'src="(/static/[^"]+)"', page.get_data(as_text=True))
    assert page.status_code == 200 and scripts
    for script in scripts:
        assert client.get(script).status_code == 200, script
