"""Slow evaluation (make eval): the walk-forward figures recorded in bench/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasury.inflow import load_network_history, mined_deposits
from treasury.price_data import load_bars
from treasury.strategy import StrategyParams
from treasury.walkforward import ParamGrid, walk_forward


@pytest.mark.slow
def test_bitstamp_walk_forward_matches_results_md(data_dir: Path) -> None:
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz")
    dep = mined_deposits(bars.timestamp, load_network_history(data_dir / "bitcoin-network"), 1e5)
    points = ParamGrid().points(StrategyParams())
    assert len(points) == 360
    report = walk_forward(
        bars.timestamp, bars.open, bars.close, points,
        in_sample_bars=180 * 24, out_of_sample_bars=90 * 24, deposits=dep,
    )  # fmt: skip
    summary = report.summary()
    assert len(report.folds) == 14
    assert summary["in_sample_vs_sell_daily"]["mean_edge"] == pytest.approx(0.0706, abs=5e-4)
    assert summary["out_of_sample_vs_sell_daily"]["mean_edge"] == pytest.approx(0.0101, abs=5e-4)
    assert summary["out_of_sample_vs_twap"]["folds_won"] == pytest.approx(10 / 14)
    assert summary["out_of_sample_vs_hold"]["mean_edge"] == pytest.approx(-0.0672, abs=5e-4)
    # in sample the chosen point beats selling daily in every fold (it is the best of the grid)
    assert summary["in_sample_vs_sell_daily"]["folds_won"] == 1.0
