"""``python -m backtest``: a run from a data file or a saved bot's params, report written."""

from __future__ import annotations

import json
from pathlib import Path

from backtest.__main__ import main
from services.state.store import Store

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "klines" / "BTCUSDT_1m_20210420_first3000.csv"


def test_run_from_a_file_writes_a_report_and_the_index(tmp_path, capsys) -> None:
    code = main(["--strategy", "SWING", "--symbol", "BTCUSDT", "--interval", "1m",
                 "--data", str(FIXTURE), "--params", '{"ema_fast": 7}', "--balance", "5000",
                 "--fee", "0.00075", "--out", str(tmp_path), "--name", "r1", "--no-progress"])

    report = json.loads((tmp_path / "r1.json").read_text())
    assert code == 0 and (tmp_path / "r1.html").exists()
    assert report["config"]["params"] == {"ema_fast": 7}
    assert report["config"]["fee_rate"] == "0.00075" and report["metrics"]["start_equity"] == 5000
    assert json.loads((tmp_path / "index.json").read_text())["reports"][0]["name"] == "r1"
    assert "total_return" in capsys.readouterr().out


def test_params_come_from_a_saved_bot_version(tmp_path) -> None:
    with Store.open(tmp_path) as store:
        bot_id = store.create_bot(strategy="SWING", symbol="BTCUSDT", timeframe="1m",
                                  params={"ema_fast": 5, "ema_slow": 30}).value["id"]
        store.set_params(bot_id, {"ema_fast": 12, "ema_slow": 40})

    code = main(["--bot", str(bot_id), "--param-version", "1", "--state-dir", str(tmp_path),
                 "--data", str(FIXTURE), "--out", str(tmp_path / "reports"), "--name", "v1",
                 "--no-progress"])

    params = json.loads((tmp_path / "reports" / "v1.json").read_text())["config"]["params"]
    assert code == 0 and (params["ema_fast"], params["ema_slow"]) == (5, 30)


def test_invalid_params_are_refused_naming_the_field(tmp_path, capsys) -> None:
    code = main(["--data", str(FIXTURE), "--params", '{"ema_fast": 1}', "--out", str(tmp_path)])

    assert code == 2 and "ema_fast" in capsys.readouterr().err


def test_a_date_range_is_downloaded_from_the_simulator_then_run(tmp_path, monkeypatch) -> None:
    from services.exchange_sim.server import SimServer
    from services.exchange_sim.venue import Venue
    from shared.clock import TestClock

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    server = SimServer(Venue(TestClock(1_700_000_000.0)), port=0)
    server.start()
    try:
        start = server.venue.market.paths["BTCUSDT"].origin_ms
        code = main(["--start", str(start), "--end", str(start + 1999 * 60_000),
                     "--base-url", f"{server.base_url}/api", "--name", "ranged",
                     "--no-progress"])
    finally:
        server.stop()

    report = json.loads((tmp_path / "reports" / "ranged.json").read_text())
    assert code == 0 and (tmp_path / "history" / "BTCUSDT_1m.csv").exists()
    assert report["metrics"]["candles"] + report["metrics"]["warmup_candles"] == 2000
