"""The chaos run in short (about a minute, a few kills) as part of the default suite.

Any violation fails it: the five money bugs the chaos runs found are fixed (docs/operating.md),
each with a test of its own that failed before its fix.
"""

from __future__ import annotations

import pytest

from tests.chaos.driver import ChaosConfig, ChaosRun

pytestmark = pytest.mark.system


@pytest.mark.timeout(150)
def test_short_chaos_run_keeps_the_money_invariants(tmp_path):
    cfg = ChaosConfig(duration_s=50, workers=3, bots=6, seed=11, kill_every_s=(12.0, 20.0),
                      down_s=(0.5, 2.0), settle_s=30, start_timeout_s=45)
    report = ChaosRun(cfg, tmp_path / "chaos").run()
    print("\n".join(report.lines()))

    assert sum(report.kills.values()) >= 2
    assert report.figures.get("venue_orders", 0) > 20, "the bots barely traded"
    assert report.violations == []
