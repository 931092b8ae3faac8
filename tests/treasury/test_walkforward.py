"""Walk-forward on a small real slice: IS picks the best point, OOS runs it untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treasury.backtest import indicators, run_backtest
from treasury.baselines import run_baselines
from treasury.inflow import load_network_history, mined_deposits
from treasury.price_data import load_bars
from treasury.strategy import StrategyError, StrategyParams
from treasury.walkforward import ParamGrid, PreparedSweep, walk_forward

GRID = ParamGrid(
    bands=(("quantile", 168, 0.1, 0.9), ("minmax", 336, 0.0, 1.0)),
    momentum_windows=(24, 72),
    strengths=(0.0, 3.0),
    stop_losses=(0.0, 0.1),
    decision_every=(1, 4),
    min_trade_fractions=(0.02,),
)


@pytest.fixture(scope="module")
def market(data_dir: Path):  # type: ignore[no-untyped-def]
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz").slice(10_000, 14_000)
    dep = mined_deposits(bars.timestamp, load_network_history(data_dir / "bitcoin-network"), 20_000)
    return bars, dep


def test_sweep_matches_single_runs(market) -> None:  # type: ignore[no-untyped-def]
    bars, dep = market
    points = GRID.points(StrategyParams())
    assert len(points) == 32
    prepared = PreparedSweep(bars.close, points)
    fast = prepared.run(bars.open, bars.close, deposits=dep, start=400, end=2000)
    slow = prepared.run(bars.open, bars.close, deposits=dep, start=400, end=2000, engine="python")
    np.testing.assert_allclose(fast.final_value, slow.final_value, rtol=1e-12)
    for i in (0, 7, 15, 31):
        p = points[i]
        single = run_backtest(
            bars.open,
            bars.close,
            p,
            deposits=dep,
            start=400,
            end=2000,
            ind=indicators(bars.close, p),
        )
        assert fast.final_value[i] == pytest.approx(single.final_value, rel=1e-12)
        assert fast.fills[i] == single.n_trades


def test_walk_forward_folds(market) -> None:  # type: ignore[no-untyped-def]
    bars, dep = market
    points = GRID.points(StrategyParams())
    report = walk_forward(
        bars.timestamp, bars.open, bars.close, points,
        in_sample_bars=1000, out_of_sample_bars=500, deposits=dep,
    )  # fmt: skip
    # warm-up 336 bars, then folds while 336 + k*500 + 1500 <= 4000
    assert len(report.folds) == 5
    fold = report.folds[1]
    is_start, is_end = 336 + 500, 336 + 500 + 1000
    # IS: the chosen point is the best of the grid on the IS window
    values = [
        run_backtest(bars.open, bars.close, p, deposits=dep, start=is_start, end=is_end).final_value
        for p in points
    ]
    assert fold.in_sample.strategy == pytest.approx(max(values), rel=1e-12)
    # OOS: that point, untouched, on the next 500 bars; the baselines on the same window
    oos = run_backtest(
        bars.open, bars.close, fold.params, deposits=dep, start=is_end, end=is_end + 500
    )
    assert fold.out_of_sample.strategy == pytest.approx(oos.final_value, rel=1e-12)
    base = run_baselines(
        bars.open, bars.close, bars.timestamp, deposits=dep, start=is_end, end=is_end + 500
    )
    assert fold.out_of_sample.hold == pytest.approx(base["hold"].final_value)
    assert fold.out_of_sample.start == str(bars.timestamp[is_end])
    summary = report.summary()
    assert set(summary) == {
        f"{side}_vs_{b}"
        for side in ("in_sample", "out_of_sample")
        for b in ("hold", "sell_daily", "twap")
    }
    edges = [f.out_of_sample.edge("twap") for f in report.folds]
    assert summary["out_of_sample_vs_twap"]["mean_edge"] == pytest.approx(np.mean(edges))
    pooled = sum(f.out_of_sample.strategy for f in report.folds) / sum(
        f.out_of_sample.twap for f in report.folds
    )
    assert summary["out_of_sample_vs_twap"]["pooled_edge"] == pytest.approx(pooled - 1.0)
    assert report.as_dict()["folds"][0]["params"]["mode"] == "sell_only"


def test_too_short_for_one_fold(market) -> None:  # type: ignore[no-untyped-def]
    bars, dep = market
    with pytest.raises(StrategyError, match="too few for one fold"):
        walk_forward(
            bars.timestamp, bars.open, bars.close, GRID.points(StrategyParams()),
            in_sample_bars=3000, out_of_sample_bars=1000, deposits=dep,
        )  # fmt: skip
