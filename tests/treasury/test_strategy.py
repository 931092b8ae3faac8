"""The strategy's pure functions: hand-checked values and properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treasury.price_data import load_bars
from treasury.strategy import (
    StrategyError,
    StrategyParams,
    base_fiat_weight,
    coins_for_target,
    decide,
    momentum_shift,
    price_band,
    stop_loss_hit,
    target_fiat_weight,
    trade_for_target,
)

prices = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)
balances = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
weights = st.floats(min_value=0.0, max_value=1.0)


def test_base_weight_is_linear_between_the_band_edges() -> None:
    assert base_fiat_weight(900.0, 1000.0, 2000.0) == 0.0
    assert base_fiat_weight(1000.0, 1000.0, 2000.0) == 0.0
    assert base_fiat_weight(1250.0, 1000.0, 2000.0) == 0.25
    assert base_fiat_weight(2000.0, 1000.0, 2000.0) == 1.0
    assert base_fiat_weight(5000.0, 1000.0, 2000.0) == 1.0
    # degenerate band: a step at pmin
    assert base_fiat_weight(999.0, 1000.0, 1000.0) == 0.0
    assert base_fiat_weight(1000.0, 1000.0, 1000.0) == 1.0


def test_momentum_above_the_average_lowers_the_fiat_weight() -> None:
    assert momentum_shift(1100.0, 1000.0, 2.0) == pytest.approx(-0.2)
    assert momentum_shift(900.0, 1000.0, 2.0) == pytest.approx(0.2)
    assert momentum_shift(900.0, math.nan, 2.0) == 0.0
    params = StrategyParams(momentum_strength=2.0)
    # base 0.5, price 2 % above its average -> 0.5 - 0.04
    assert target_fiat_weight(1500.0, 1000.0, 2000.0, 1500.0 / 1.02, params) == pytest.approx(0.46)


def test_stop_loss_sends_the_target_to_all_fiat() -> None:
    params = StrategyParams(stop_loss=0.1, momentum_strength=0.0)
    assert not stop_loss_hit(901.0, 1000.0, 0.1)
    assert stop_loss_hit(899.0, 1000.0, 0.1)
    assert not stop_loss_hit(1.0, 1000.0, 0.0)  # 0 = off
    assert target_fiat_weight(950.0, 1000.0, 2000.0, 950.0, params) == 0.0
    assert target_fiat_weight(899.0, 1000.0, 2000.0, 899.0, params) == 1.0


def test_trade_for_target_hand_computed() -> None:
    # 2 coins at 1000 + 1000 fiat: value 3000, weight 1/3; target 0.5 -> sell 0.5 coin
    d = trade_for_target(2.0, 1000.0, 1000.0, 0.5, 0.01, "sell_only")
    assert d.coins_to_sell == pytest.approx(0.5)
    assert d.reason == "rebalance" and not d.skipped_small
    assert d.current_weight == pytest.approx(1 / 3) and d.portfolio_value == 3000.0
    # target 0.2 asks for a buy of 0.4 coin: refused in sell-only, done in two-way
    assert trade_for_target(2.0, 1000.0, 1000.0, 0.2, 0.01, "sell_only").reason == "sell_only_hold"
    buy = trade_for_target(2.0, 1000.0, 1000.0, 0.2, 0.01, "two_way")
    assert buy.coins_to_sell == pytest.approx(-0.4)
    # a 30-unit gap on 3000 is 1 %: skipped at a 2 % threshold
    small = trade_for_target(2.0, 1000.0, 1000.0, 1 / 3 + 0.01, 0.02, "two_way")
    assert small.coins_to_sell == 0.0 and small.skipped_small and small.reason == "below_min_trade"
    assert trade_for_target(0.0, 0.0, 1000.0, 0.5, 0.01).reason == "empty_portfolio"


def test_bad_inputs_name_the_fault() -> None:
    with pytest.raises(StrategyError, match="mode="):
        StrategyParams(mode="both")  # type: ignore[arg-type]
    with pytest.raises(StrategyError, match="band quantiles"):
        StrategyParams(band_low_quantile=0.9, band_high_quantile=0.1)
    with pytest.raises(StrategyError, match="fixed band"):
        StrategyParams(band_method="fixed")
    with pytest.raises(StrategyError, match="coins=-1"):
        trade_for_target(-1.0, 0.0, 100.0, 0.5, 0.01)
    with pytest.raises(StrategyError, match="needs 720"):
        decide([100.0] * 10, 1.0, 0.0, StrategyParams())
    with pytest.raises(StrategyError, match="non-positive"):
        decide([100.0] * 719 + [0.0], 1.0, 0.0, StrategyParams())


@given(prices, prices, prices)
def test_weight_in_unit_interval_and_monotone_in_price(p1: float, p2: float, lo: float) -> None:
    hi = lo * 1.5
    w1, w2 = base_fiat_weight(p1, lo, hi), base_fiat_weight(p2, lo, hi)
    assert 0.0 <= w1 <= 1.0 and 0.0 <= w2 <= 1.0
    if p1 <= p2:
        assert w1 <= w2


@given(prices, prices, prices, st.floats(0.0, 20.0), st.floats(0.0, 0.5))
def test_target_weight_always_in_unit_interval(
    price: float, lo: float, avg: float, strength: float, stop: float
) -> None:
    params = StrategyParams(momentum_strength=strength, stop_loss=stop)
    assert 0.0 <= target_fiat_weight(price, lo, lo * 2.0, avg, params) <= 1.0


@given(balances, balances, prices, weights, st.floats(0.0, 0.2))
def test_sell_only_never_buys_and_never_oversells(
    coins: float, fiat: float, price: float, target: float, frac: float
) -> None:
    qty, _code = coins_for_target(coins, fiat, price, target, frac, True)
    assert 0.0 <= qty <= coins


@given(balances, balances, prices, weights, st.floats(0.0, 0.2))
def test_two_way_stays_within_balances_and_skips_small(
    coins: float, fiat: float, price: float, target: float, frac: float
) -> None:
    d = trade_for_target(coins, fiat, price, target, frac, "two_way")
    assert d.coins_to_sell <= coins * (1 + 1e-12)
    assert -d.coins_to_sell * price <= fiat * (1 + 1e-9) + 1e-9
    if d.coins_to_sell != 0.0:
        assert abs(d.coins_to_sell) * price >= frac * d.portfolio_value * (1 - 1e-12)
    value = coins * price + fiat
    gap_value = abs(target - (fiat / value if value > 0 else 0.0)) * value
    if gap_value < frac * value:
        assert d.coins_to_sell == 0.0


@settings(max_examples=200)
@given(
    st.floats(0.01, 100.0),
    st.floats(0.0, 1e5),
    prices,
    weights,
    st.floats(0.0, 0.2),
    st.sampled_from([2.0, 10.0, 0.5, 1000.0]),
    st.booleans(),
)
def test_scale_invariance(
    coins: float, fiat: float, price: float, target: float, frac: float, k: float, sell_only: bool
) -> None:
    q1, c1 = coins_for_target(coins, fiat, price, target, frac, sell_only)
    qk, ck = coins_for_target(coins * k, fiat * k, price, target, frac, sell_only)
    # away from the threshold edge the decision is the same and the size scales by k
    value = coins * price + fiat
    edge = abs(abs(q1) * price - frac * value) < 1e-9 * value
    if not edge:
        assert c1 == ck
        assert qk == pytest.approx(q1 * k, rel=1e-9, abs=1e-12)


def test_price_band_methods_on_real_closes(data_dir) -> None:  # type: ignore[no-untyped-def]
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz")
    closes = bars.close[:720]
    lo, hi = price_band(closes, StrategyParams(band_lookback=720))
    assert lo == pytest.approx(np.quantile(closes, 0.1))
    assert hi == pytest.approx(np.quantile(closes, 0.9))
    # Bitstamp BTC/USD hourly closes 2018-05-15 06:00 .. 2018-06-14 05:00
    assert (lo, hi) == pytest.approx((6823.435, 8318.657))
    mm = price_band(closes, StrategyParams(band_method="minmax", band_lookback=24))
    assert mm == (6260.41, 6568.87)
    assert price_band(closes, StrategyParams(band_method="fixed", fixed_pmin=1, fixed_pmax=2)) == (
        1,
        2,
    )


def test_decide_on_real_history(data_dir) -> None:  # type: ignore[no-untyped-def]
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz")
    params = StrategyParams(band_lookback=720, momentum_window=48, momentum_strength=2.0)
    closes = bars.close[:1000]
    d = decide(closes, coins=3.0, fiat=0.0, params=params)
    lo, hi = np.quantile(closes[-720:], [0.1, 0.9])
    avg = closes[-48:].mean()
    expected_target = min(
        max((closes[-1] - lo) / (hi - lo) - 2.0 * (closes[-1] / avg - 1), 0.0), 1.0
    )
    assert d.target_weight == pytest.approx(expected_target)
    assert d.current_weight == 0.0
    assert d.coins_to_sell == pytest.approx(expected_target * 3.0)


def test_decide_reports_a_stop_loss_sale() -> None:
    # 30 closes at 100 then a crash to 80: band [100, 100], 80 < 100 * (1 - 0.1)
    closes = [100.0] * 30 + [80.0]
    params = StrategyParams(band_lookback=30, momentum_window=1, stop_loss=0.1)
    d = decide(closes, coins=2.0, fiat=0.0, params=params)
    assert d.reason == "stop_loss" and d.coins_to_sell == 2.0 and d.target_weight == 1.0
    calm = decide(closes, 2.0, 0.0, StrategyParams(band_lookback=30, momentum_window=1))
    assert calm.reason == "below_min_trade" and calm.coins_to_sell == 0.0
