"""Saved backtest reports through the gateway: listed from the backtester's index, opened as
their HTML page, and nothing outside the reports folder ever served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backtest.report import update_index
from services.gateway.app import create_app
from services.gateway.health import HealthBook

PAGE = "<!doctype html><html><body><h1>Backtest SWING BTCUSDT 1m</h1></body></html>\n"


def save_report(folder: Path, name: str, total_return: float = 0.01) -> None:
    """What ``backtest.report.write_report`` leaves: the JSON, the page, the index."""
    report = {
        "kind": "backtest",
        "config": {"strategy": "SWING", "symbol": "BTCUSDT", "interval": "1m"},
        "metrics": {"first_candle": "2021-04-20T00:00:00Z", "last_candle": "2021-04-21T00:00:00Z",
                    "total_return": total_return, "max_drawdown": 0.02, "sharpe": 1.5,
                    "trades": 7},
    }
    (folder / f"{name}.json").write_text(json.dumps(report))
    (folder / f"{name}.html").write_text(PAGE)
    update_index(folder)


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    folder = tmp_path / "reports"
    folder.mkdir()
    return folder


@pytest.fixture
def client(reports: Path):
    return create_app(HealthBook(), {"REPORTS_DIR": str(reports)}).test_client()


def test_the_list_has_every_saved_report_with_its_page_url(reports, client):
    save_report(reports, "SWING_BTCUSDT_1m_a", 0.05)
    save_report(reports, "SWING_BTCUSDT_1m_b", -0.01)

    resp = client.get("/api/reports")

    assert resp.status_code == 200
    items = resp.get_json()["items"]
    assert {i["name"] for i in items} == {"SWING_BTCUSDT_1m_a", "SWING_BTCUSDT_1m_b"}
    by_name = {i["name"]: i for i in items}
    assert by_name["SWING_BTCUSDT_1m_a"]["url"] == "/reports/SWING_BTCUSDT_1m_a.html"
    assert by_name["SWING_BTCUSDT_1m_a"]["total_return"] == 0.05
    assert by_name["SWING_BTCUSDT_1m_b"]["trades"] == 7
    created = [i["created_ms"] for i in items]
    assert created == sorted(created, reverse=True)


def test_no_reports_folder_is_an_empty_list(tmp_path):
    app = create_app(HealthBook(), {"REPORTS_DIR": str(tmp_path / "nothing-here")})

    resp = app.test_client().get("/api/reports")

    assert resp.status_code == 200 and resp.get_json() == {"items": []}


def test_a_broken_index_is_an_empty_list_not_an_error(reports, client):
    (reports / "index.json").write_text("{not json")

    resp = client.get("/api/reports")

    assert resp.status_code == 200 and resp.get_json() == {"items": []}


def test_an_index_entry_without_its_page_is_not_listed(reports, client):
    save_report(reports, "kept")
    save_report(reports, "gone")
    (reports / "gone.html").unlink()

    names = [i["name"] for i in client.get("/api/reports").get_json()["items"]]

    assert names == ["kept"]


def test_a_report_opens_as_its_html_page(reports, client):
    save_report(reports, "SWING_BTCUSDT_1m_a")

    resp = client.get("/reports/SWING_BTCUSDT_1m_a.html")

    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    assert resp.get_data(as_text=True) == PAGE


def test_a_missing_report_is_a_json_404(client):
    resp = client.get("/reports/no_such_report.html")

    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", [
    "/reports/..%2Fsecret.html",
    "/reports/%2E%2E%2Fsecret.html",
    "/reports/../secret.html",
    "/reports/..%5Csecret.html",
    "/reports/.hidden.html",
    "/reports/a%00b.html",
    "/reports/%2Fetc%2Fpasswd.html",
])
def test_a_path_outside_the_reports_folder_is_refused(tmp_path, reports, client, path):
    (tmp_path / "secret.html").write_text("OUTSIDE-CONTENT")
    (reports / ".hidden.html").write_text("HIDDEN-CONTENT")

    resp = client.get(path)

    assert resp.status_code == 404
    assert resp.is_json and set(resp.get_json()["error"]) == {"code", "message", "fields"}
    assert b"OUTSIDE-CONTENT" not in resp.get_data()
    assert b"HIDDEN-CONTENT" not in resp.get_data()


def test_the_data_dir_reports_folder_is_the_default(tmp_path, monkeypatch):
    folder = tmp_path / "reports"
    folder.mkdir()
    save_report(folder, "from_data_dir")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))

    client = create_app(HealthBook()).test_client()

    assert [i["name"] for i in client.get("/api/reports").get_json()["items"]] == ["from_data_dir"]
    assert client.get("/reports/from_data_dir.html").status_code == 200


def test_reports_need_a_login_when_auth_is_on(reports):
    save_report(reports, "private")
    app = create_app(HealthBook(), {"REPORTS_DIR": str(reports), "DASHBOARD_PASSWORD": "pw"})
    client = app.test_client()

    assert client.get("/api/reports").status_code == 401
    assert client.get("/reports/private.html").status_code == 401
