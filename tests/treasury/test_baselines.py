"""Baselines on hand-computed tiny runs and on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treasury.backtest import Costs
from treasury.baselines import daily_schedule, run_baselines, twap_schedule
from treasury.inflow import load_network_history, mined_deposits
from treasury.price_data import load_bars

STAMPS = np.array(
    [f"2024-01-0{d}T{h}:00" for d in (1, 2) for h in ("00", "08", "16")], dtype="datetime64[s]"
)
OPEN = np.array([100.0, 101.0, 102.0, 103.0, 104.0, 105.0])
CLOSE = np.array([101.0, 102.0, 103.0, 104.0, 105.0, 106.0])
COSTS = Costs(fee=0.01, slippage=0.02)


def test_hand_computed_baselines() -> None:
    ones = np.ones(6)
    r = run_baselines(OPEN, CLOSE, STAMPS, deposits=ones, costs=COSTS, twap_horizon_bars=2)
    assert r["hold"].final_coins == 6.0 and r["hold"].final_value == 6.0 * 106.0
    assert r["hold"].n_trades == 0
    # sell all at the end of day 1 (bar 2), filled at bar 3's open incl. bar 3's deposit
    daily = r["sell_daily"]
    assert daily.trade_bar.tolist() == [3] and daily.trade_coins[0] == 4.0
    assert daily.final_fiat == pytest.approx(4.0 * 103.0 * 0.98 * 0.99)
    assert daily.final_coins == 2.0  # day 2's order would fall after the last bar
    # TWAP over 2 bars: requests 0.5, 1, 1, 1, 1 filled at bars 1..5
    twap = r["twap"]
    assert twap.trade_bar.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(twap.trade_coins, [0.5, 1, 1, 1, 1])
    assert twap.final_coins == pytest.approx(1.5)
    expected = sum(q * o * 0.98 * 0.99 for q, o in zip([0.5, 1, 1, 1, 1], OPEN[1:], strict=True))
    assert twap.final_fiat == pytest.approx(expected)


def test_schedules() -> None:
    assert np.isinf(daily_schedule(STAMPS)[[2, 5]]).all() and daily_schedule(STAMPS)[:2].sum() == 0
    grouped = twap_schedule(np.ones(6), 2, every=3)
    np.testing.assert_allclose(grouped, [0, 0, 2.5, 0, 0, 3.0])
    # initial coins are spread evenly over the window
    np.testing.assert_allclose(twap_schedule(np.zeros(4), 1, coins0=2.0), [0.5] * 4)


def test_baselines_on_real_data_sell_what_was_mined(data_dir: Path) -> None:
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz").slice(0, 24 * 60)
    dep = mined_deposits(bars.timestamp, load_network_history(data_dir / "bitcoin-network"), 10_000)
    r = run_baselines(bars.open, bars.close, bars.timestamp, deposits=dep)
    mined = dep.sum()
    # a 10 PH/s fleet earned about 0.6 BTC/day in mid-2018
    assert 30.0 < mined < 45.0
    assert r["hold"].final_coins == pytest.approx(mined)
    sold_daily = r["sell_daily"].coins_sold
    assert sold_daily + r["sell_daily"].final_coins == pytest.approx(mined)
    # 2018-05-15 06:00 .. 2018-07-14 05:00: 60 day ends inside, the last bar cannot fill
    assert r["sell_daily"].n_trades == 60
    # TWAP leaves at most the last day's coins unsold
    assert r["twap"].final_coins < dep[-25:].sum()
    # sells happen near market prices: average sell price within the period's range
    for name in ("sell_daily", "twap"):
        assert bars.low.min() < r[name].average_sell_price < bars.high.max()
