"""Metrics on constructed series with known drawdown and Sharpe."""

from __future__ import annotations

import math

import numpy as np
import pytest

from treasury.backtest import BacktestResult
from treasury.metrics import bar_returns, compute_metrics, max_drawdown, sharpe_ratio, vwap
from treasury.price_data import Bars


def _bars(close: list[float], volume: list[float] | None = None) -> Bars:
    c = np.array(close)
    stamps = np.arange(len(close)).astype("timedelta64[D]") + np.datetime64("2024-01-01", "s")
    return Bars(stamps, c, c * 1.1, c * 0.9, c, np.array(volume or [1.0] * len(close)))


def _result(equity: list[float], trades: list[tuple[int, float, float, float]]) -> BacktestResult:
    t = np.array(trades, dtype=float).reshape(-1, 4)
    return BacktestResult(
        start=0,
        end=len(equity),
        equity=np.array(equity),
        fiat_weight=np.zeros(len(equity)),
        target_weight=np.zeros(len(equity)),
        trade_bar=t[:, 0].astype(np.int64),
        trade_coins=t[:, 1],
        trade_price=t[:, 2],
        trade_fee=t[:, 3],
        final_value=equity[-1],
        final_coins=0.0,
        final_fiat=equity[-1],
    )


def test_drawdown_and_sharpe_on_a_known_series() -> None:
    assert max_drawdown(np.array([100.0, 120.0, 90.0, 135.0, 108.0])) == pytest.approx(0.25)
    daily = np.array([0.2, -0.25, 0.5])
    expected = 0.15 / math.sqrt(0.1425) * math.sqrt(365)
    assert sharpe_ratio(daily, 1.0) == pytest.approx(expected)
    # hourly returns compound into days
    hourly = np.array([0.1, 0.0, 0.0, -0.1])
    assert sharpe_ratio(hourly, 2.0) == pytest.approx(
        (0.05 - 0.05) / 1.0 * math.sqrt(365), abs=1e-12
    )
    assert math.isnan(sharpe_ratio(np.array([0.01]), 1.0))


def test_returns_exclude_deposits() -> None:
    # 1 coin arrives at bar 1 (close 100): only 20 of the 120 gain is performance
    r = bar_returns(np.array([100.0, 220.0]), np.array([0.0, 1.0]), np.array([100.0, 100.0]))
    assert r.tolist() == pytest.approx([0.0, 0.2])


def test_compute_metrics() -> None:
    bars = _bars([100.0, 110.0, 90.0, 120.0], volume=[1.0, 3.0, 0.0, 4.0])
    res = _result([100.0, 120.0, 90.0, 135.0], [(1, 0.5, 110.0, 0.5), (3, 0.25, 120.0, 0.3)])
    m = compute_metrics(res, bars, None)
    assert m.final_value == 135.0 and m.total_return == pytest.approx(0.35)
    assert m.max_drawdown == pytest.approx(0.25)
    assert m.trades == 2 and m.fees == pytest.approx(0.8) and m.coins_sold == 0.75
    assert m.average_sell_price == pytest.approx((55.0 + 30.0) / 0.75)
    # typical = close here (high and low symmetric): (100*1 + 110*3 + 120*4) / 8
    assert m.vwap == pytest.approx(910.0 / 8.0) == vwap(bars)
    assert m.sell_vs_vwap == pytest.approx((85.0 / 0.75) / (910.0 / 8.0) - 1.0)
    # with a deposit of 1 coin at bar 2 (close 90) the capital put in is 190
    dep = np.array([0.0, 0.0, 1.0, 0.0])
    assert compute_metrics(res, bars, dep).total_return == pytest.approx(135.0 / 190.0 - 1.0)
