"""The chaos run in short (about a minute, a few kills) as part of the default suite.

Violations that match a bug the chaos runs found (docs/operating.md; one still open) make the
test xfail with the bug named, visible in every run's summary; any other violation fails it.
"""

from __future__ import annotations

import re

import pytest

from tests.chaos.driver import ChaosConfig, ChaosRun

pytestmark = pytest.mark.system

# Bugs the chaos runs found (docs/operating.md): four are fixed; the oversell when protection
# is restored under faults is still open. Their patterns make this short run xfail naming the
# bug instead of failing the whole suite; `make chaos` still exits non-zero on any of them.
KNOWN_BUGS = {
    # execution/reconcile.py _trades resumes myTrades from MAX(trade_id)+1: a fill whose
    # stream event was missed while a later trade was seen is never recovered
    "lost fill (reconcile high-water mark)": r"venue trade \S+ \(order \d+\) missing in state",
    # execution/service.py _release_protection: a failed stop-leg cancel leaves the OCO live
    # but marked closed; it later fills and, with one shared account, sells another bot's
    # holding
    "oversell after OCO exit": r"sold \S+ \S+ more than it had bought at the venue",
    # consequences of the two above, and of state booking out-of-order fills FIFO in arrival
    # order ("sold ... more than it held; no cost basis")
    "state position != venue": r"^position \S+: venue holds",
    # a protective OCO refused with -2010 (the price moved past a leg) is not retried or
    # replaced by an exit: the position stays unprotected
    "unprotected position": r"protective stop at the venue covers",
    "stale protection": r"holds no \S+ but has protective stops",
}


def known(violation: str) -> str | None:
    return next((name for name, pattern in KNOWN_BUGS.items()
                 if re.search(pattern, violation)), None)


@pytest.mark.timeout(150)
def test_short_chaos_run_keeps_the_money_invariants(tmp_path):
    cfg = ChaosConfig(duration_s=50, workers=3, bots=6, seed=11, kill_every_s=(12.0, 20.0),
                      down_s=(0.5, 2.0), settle_s=30, start_timeout_s=45)
    report = ChaosRun(cfg, tmp_path / "chaos").run()
    print("\n".join(report.lines()))

    assert sum(report.kills.values()) >= 2
    assert report.figures.get("venue_orders", 0) > 20, "the bots barely traded"
    unknown = [v for v in report.violations if known(v) is None]
    assert unknown == []
    if report.violations:
        names = sorted({known(v) for v in report.violations})
        pytest.xfail(f"only known bugs found: {', '.join(names)}")
