"""The simulator's ``make bench`` rows, run small so the suite notices if they break."""

from __future__ import annotations

import pytest

from services.exchange_sim import bench


def test_bench_rows_name_a_positive_figure_and_a_unit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bench, "ORDERS", 6)
    monkeypatch.setattr(bench, "STREAM_SECONDS", 0.3)

    rows = bench.run()

    assert [unit for _, _, unit in rows] == ["orders/s", "orders/s", "msg/s", "msg/s"]
    assert all(float(value.replace(",", "")) > 0 for _, value, _ in rows)
