"""The backtest kernel: hand-computed tiny runs, and kernel == plain loop == live decision on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treasury.backtest import Costs, indicators, run_backtest
from treasury.inflow import load_network_history, mined_deposits
from treasury.price_data import Bars, load_bars
from treasury.strategy import StrategyError, StrategyParams, decide, price_band

FIXED = dict(band_method="fixed", fixed_pmin=50.0, fixed_pmax=150.0, momentum_strength=0.0)


@pytest.fixture(scope="module")
def bitstamp(data_dir: Path) -> Bars:
    return load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz")


def _run(open_: list[float], close: list[float], params: StrategyParams, **kw: object):  # type: ignore[no-untyped-def]
    return run_backtest(np.array(open_), np.array(close), params, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["numba", "python"])
def test_latency_fees_slippage_and_deposits_hand_computed(engine: str) -> None:
    params = StrategyParams(**FIXED, momentum_window=1, band_lookback=1, min_trade_fraction=0.01)  # type: ignore[arg-type]
    costs = Costs(fee=0.01, slippage=0.02)
    r = _run(
        [100.0, 110.0, 120.0],
        [100.0, 120.0, 120.0],
        params,
        deposits=np.array([0.0, 0.0, 0.5]),
        costs=costs,
        coins0=2.0,
        engine=engine,
    )
    # bar 0: close 100 -> base weight 0.5 of value 200 -> sell 1 coin, filled at bar 1's open
    fill1 = 110.0 * 0.98
    fiat1 = fill1 * 0.99
    assert r.trade_bar[0] == 1 and r.trade_coins[0] == pytest.approx(1.0)
    assert r.trade_price[0] == pytest.approx(fill1)
    assert r.trade_fee[0] == pytest.approx(fill1 * 0.01)
    assert r.equity[1] == pytest.approx(120.0 + fiat1)
    # bar 1: close 120 -> target 0.7; gap in coins from the marked value
    value1 = 120.0 + fiat1
    sell2 = (0.7 * value1 - fiat1) / 120.0
    # bar 2: 0.5 coin deposited, then the second sell fills at 120 * 0.98
    fiat2 = fiat1 + sell2 * 117.6 * 0.99
    coins2 = 1.0 + 0.5 - sell2
    assert r.n_trades == 2 and r.trade_coins[1] == pytest.approx(sell2)
    assert r.final_coins == pytest.approx(coins2) and r.final_fiat == pytest.approx(fiat2)
    assert r.final_value == pytest.approx(coins2 * 120.0 + fiat2)
    assert r.fees == pytest.approx(fill1 * 0.01 + sell2 * 117.6 * 0.01)
    assert r.target_weight[1] == pytest.approx(0.7)
    assert r.fiat_weight[2] == pytest.approx(fiat2 / (coins2 * 120.0 + fiat2))


@pytest.mark.parametrize("engine", ["numba", "python"])
def test_two_way_buys_what_the_fiat_pays_for(engine: str) -> None:
    params = StrategyParams(
        mode="two_way",
        band_method="fixed",
        fixed_pmin=150.0,
        fixed_pmax=250.0,
        momentum_strength=0.0,
        momentum_window=1,
    )
    r = _run(
        [100.0, 105.0], [100.0, 106.0], params, fiat0=1000.0, costs=Costs(0.01, 0.02), engine=engine
    )
    price = 105.0 * 1.02
    coins = 1000.0 / (price * 1.01)
    assert r.trade_coins[0] == pytest.approx(-coins)
    assert r.final_coins == pytest.approx(coins) and r.final_fiat == pytest.approx(0.0, abs=1e-9)
    # the same gap is never bought in sell-only mode
    held = _run(
        [100.0, 105.0],
        [100.0, 106.0],
        StrategyParams(**{**params.__dict__, "mode": "sell_only"}),
        fiat0=1000.0,
    )
    assert held.n_trades == 0 and held.final_fiat == 1000.0


def test_stop_loss_and_decision_interval() -> None:
    base = dict(FIXED, fixed_pmin=100.0, fixed_pmax=200.0, momentum_window=1)
    close = [120.0, 120.0, 120.0, 80.0, 80.0, 80.0, 80.0]
    # without a stop-loss the price under pmin means "hold all coins"
    hold = _run(close, close, StrategyParams(**base), coins0=1.0, costs=Costs(0.0, 0.0))  # type: ignore[arg-type]
    assert hold.trade_coins[0] == pytest.approx(0.2) and hold.n_trades == 1
    # 80 < 100 * (1 - 0.1): everything goes at the next open
    stop = _run(
        close, close, StrategyParams(**base, stop_loss=0.1), coins0=1.0, costs=Costs(0.0, 0.0)
    )  # type: ignore[arg-type]
    assert stop.trade_bar.tolist() == [1, 4] and stop.final_coins == pytest.approx(0.0)
    # decisions every 3 bars: bars 0, 3 (stop hit) and 6 (last bar, cannot fill)
    every = _run(close, close, StrategyParams(**base, stop_loss=0.1, decision_every=3), coins0=1.0)  # type: ignore[arg-type]
    assert every.trade_bar.tolist() == [1, 4]


def test_rejects_bad_inputs() -> None:
    p = StrategyParams(**FIXED, momentum_window=1)  # type: ignore[arg-type]
    with pytest.raises(StrategyError, match="deposits have shape"):
        _run([1.0, 2.0], [1.0, 2.0], p, deposits=np.zeros(3))
    with pytest.raises(StrategyError, match="non-positive"):
        _run([1.0, 0.0], [1.0, 2.0], p)
    with pytest.raises(StrategyError, match="outside"):
        _run([1.0, 2.0], [1.0, 2.0], p, start=2)


def test_rolling_indicators_equal_the_live_band(bitstamp: Bars) -> None:
    params = StrategyParams(band_lookback=240, momentum_window=36)
    close = bitstamp.close[:3000]
    ind = indicators(close, params)
    assert np.isnan(ind.pmin[238]) and np.isnan(ind.moving_average[34])
    for t in (239, 1000, 2999):
        lo, hi = price_band(close[: t + 1], params)
        assert (ind.pmin[t], ind.pmax[t]) == pytest.approx((lo, hi), rel=1e-12)
        assert ind.moving_average[t] == pytest.approx(close[t - 35 : t + 1].mean(), rel=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        StrategyParams(band_lookback=240, momentum_window=24, decision_every=1),
        StrategyParams(
            band_method="minmax", band_lookback=500, momentum_strength=5.0, stop_loss=0.05
        ),
        StrategyParams(mode="two_way", band_lookback=168, min_trade_fraction=0.0, decision_every=4),
    ],
)
def test_kernel_equals_plain_loop_on_real_data(
    bitstamp: Bars, data_dir: Path, params: StrategyParams
) -> None:
    bars = bitstamp.slice(20_000, 26_000)
    deposits = mined_deposits(
        bars.timestamp, load_network_history(data_dir / "bitcoin-network"), 50_000
    )
    kw = dict(deposits=deposits, coins0=5.0, fiat0=10_000.0)
    fast = run_backtest(bars.open, bars.close, params, engine="numba", **kw)  # type: ignore[arg-type]
    slow = run_backtest(bars.open, bars.close, params, engine="python", **kw)  # type: ignore[arg-type]
    assert fast.n_trades > 10
    np.testing.assert_allclose(fast.equity, slow.equity, rtol=1e-12)
    np.testing.assert_array_equal(fast.trade_bar, slow.trade_bar)
    np.testing.assert_allclose(fast.trade_coins, slow.trade_coins, rtol=1e-12)
    assert fast.final_value == pytest.approx(slow.final_value, rel=1e-12)
    if params.sell_only:
        assert (fast.trade_coins > 0).all()


def test_kernel_decisions_are_the_live_decisions(bitstamp: Bars) -> None:
    """Replaying the live `decide` on the history up to each bar gives the kernel's orders."""
    params = StrategyParams(
        mode="two_way", band_lookback=120, momentum_window=12, min_trade_fraction=0.0
    )
    bars = bitstamp.slice(30_000, 30_400)
    r = run_backtest(
        bars.open, bars.close, params, fiat0=1_000.0, coins0=0.1, costs=Costs(0.0, 0.0)
    )
    coins, fiat = 0.1, 1_000.0
    fills = dict(zip(r.trade_bar.tolist(), r.trade_coins.tolist(), strict=True))
    for t in range(params.history_bars - 1, 399):
        d = decide(bars.close[: t + 1], coins, fiat, params)
        assert r.target_weight[t] == pytest.approx(d.target_weight, abs=1e-12)
        # a buy is clipped at the fill to what the fiat pays for at the next open
        qty = max(d.coins_to_sell, -fiat / bars.open[t + 1])
        assert fills.get(t + 1, 0.0) == pytest.approx(qty, rel=1e-9, abs=1e-15)
        coins -= qty
        fiat = max(fiat + qty * bars.open[t + 1], 0.0)
    assert r.final_coins == pytest.approx(coins, rel=1e-9)
