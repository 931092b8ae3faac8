"""The weight-and-momentum selling strategy as pure functions, shared by live trading and backtests.

The portfolio holds coins and fiat. The strategy decides which share of its value should be fiat
(the *fiat weight*), from where the price sits inside a band [pmin, pmax] drawn from recent prices,
shifted by momentum (price against its moving average). The gap between that target and the current
fiat weight becomes a number of coins to sell (negative = buy), skipped when smaller than a fraction
of the portfolio value.

Two layers:

* scalar functions on plain floats (`base_fiat_weight`, `momentum_shift`, `stop_loss_hit`,
  `target_fiat_weight_scalar`, `coins_for_target`): no objects, no strings, so `numba.njit` compiles
  the very same definitions for the backtest kernel (see `treasury.backtest`);
* a typed API for live trading (`StrategyParams`, `price_band`, `target_fiat_weight`,
  `trade_for_target`, `decide`) that calls the scalar layer.

This module imports only numpy, so the live path never pays numba's import cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["sell_only", "two_way"]
BandMethod = Literal["quantile", "minmax", "fixed"]

# Outcome codes of `coins_for_target` (ints so that numba can return them).
CODE_TRADE = 0
CODE_BELOW_MIN = 1
CODE_SELL_ONLY_HOLD = 2
CODE_EMPTY = 3


class StrategyError(ValueError):
    """A strategy parameter or input is invalid; the message names which and why."""


@dataclass(frozen=True)
class StrategyParams:
    """Everything that shapes the strategy; windows are counted in bars of the price series.

    band_method:
        ``quantile``: pmin/pmax are the `band_low_quantile` / `band_high_quantile` quantiles
        (linear interpolation) of the last `band_lookback` closes, the current one included;
        ``minmax``: the minimum / maximum of that window; ``fixed``: `fixed_pmin` / `fixed_pmax`.
    momentum_window, momentum_strength:
        simple moving average of the last `momentum_window` closes; the fiat weight moves by
        ``-strength * (price / MA - 1)`` (price above its average = up-trend = hold more coins).
        Strength 0 switches momentum off.
    stop_loss:
        when the price falls below ``pmin * (1 - stop_loss)`` the target fiat weight becomes 1
        (sell everything rather than keep buying a crash). 0 switches it off.
    decision_every:
        decide once every this many bars (1 = every bar).
    min_trade_fraction:
        skip trades whose value is below this fraction of the portfolio value, so funds can be
        added or withdrawn without retuning.
    mode:
        ``sell_only`` (miners, default): never buys back; ``two_way``: the original buy-and-sell.
    """

    mode: Mode = "sell_only"
    band_method: BandMethod = "quantile"
    band_lookback: int = 720
    band_low_quantile: float = 0.10
    band_high_quantile: float = 0.90
    fixed_pmin: float = 0.0
    fixed_pmax: float = 0.0
    momentum_window: int = 48
    momentum_strength: float = 2.0
    stop_loss: float = 0.0
    decision_every: int = 1
    min_trade_fraction: float = 0.01

    def __post_init__(self) -> None:
        if self.mode not in ("sell_only", "two_way"):
            raise StrategyError(f"mode={self.mode!r}: expected 'sell_only' or 'two_way'")
        if self.band_method not in ("quantile", "minmax", "fixed"):
            raise StrategyError(
                f"band_method={self.band_method!r}: expected 'quantile', 'minmax' or 'fixed'"
            )
        if self.band_lookback < 1:
            raise StrategyError(f"band_lookback={self.band_lookback}: must be >= 1 bar")
        if not 0.0 <= self.band_low_quantile <= self.band_high_quantile <= 1.0:
            raise StrategyError(
                f"band quantiles low={self.band_low_quantile} high={self.band_high_quantile}: "
                "need 0 <= low <= high <= 1"
            )
        if self.band_method == "fixed" and not 0.0 < self.fixed_pmin <= self.fixed_pmax:
            raise StrategyError(
                f"fixed band pmin={self.fixed_pmin} pmax={self.fixed_pmax}: need 0 < pmin <= pmax"
            )
        if self.momentum_window < 1:
            raise StrategyError(f"momentum_window={self.momentum_window}: must be >= 1 bar")
        if not math.isfinite(self.momentum_strength) or self.momentum_strength < 0.0:
            raise StrategyError(f"momentum_strength={self.momentum_strength}: must be >= 0")
        if not 0.0 <= self.stop_loss < 1.0:
            raise StrategyError(f"stop_loss={self.stop_loss}: must be in [0, 1) (0 = off)")
        if self.decision_every < 1:
            raise StrategyError(f"decision_every={self.decision_every}: must be >= 1 bar")
        if not 0.0 <= self.min_trade_fraction < 1.0:
            raise StrategyError(f"min_trade_fraction={self.min_trade_fraction}: must be in [0, 1)")

    @property
    def sell_only(self) -> bool:
        """True when the strategy may never buy."""
        return self.mode == "sell_only"

    @property
    def history_bars(self) -> int:
        """Closes needed before the first decision (band window and moving-average window)."""
        band = 1 if self.band_method == "fixed" else self.band_lookback
        return max(band, self.momentum_window)


@dataclass(frozen=True)
class TradeDecision:
    """What the strategy wants now. `coins_to_sell` < 0 means buy; 0 means do nothing.

    reason: ``rebalance`` (trade), ``stop_loss`` (trade forced by the stop-loss),
    ``below_min_trade`` (gap too small, `skipped_small` is True), ``sell_only_hold`` (the gap asks
    for a buy but the mode forbids it), ``empty_portfolio`` (nothing to value or trade).
    """

    coins_to_sell: float
    reason: str
    skipped_small: bool
    target_weight: float
    current_weight: float
    price: float
    pmin: float
    pmax: float
    moving_average: float
    portfolio_value: float

    @property
    def is_trade(self) -> bool:
        """True when an order should be placed."""
        return self.coins_to_sell != 0.0


# ---------------------------------------------------------------- scalar layer (numba-jittable)


def base_fiat_weight(price: float, pmin: float, pmax: float) -> float:
    """Fiat weight from the band: 0 at or below pmin, 1 at or above pmax, linear in between.

    A degenerate band (pmax <= pmin) is a step at pmin: below it all coins, from it all fiat.
    """
    if pmax <= pmin:
        return 0.0 if price < pmin else 1.0
    if price <= pmin:
        return 0.0
    if price >= pmax:
        return 1.0
    return (price - pmin) / (pmax - pmin)


def momentum_shift(price: float, moving_average: float, strength: float) -> float:
    """Shift of the fiat weight: ``-strength * (price / MA - 1)``; 0 without a valid average."""
    if not moving_average > 0.0:
        return 0.0
    return -strength * (price / moving_average - 1.0)


def stop_loss_hit(price: float, pmin: float, stop_loss: float) -> bool:
    """True when the price has fallen more than `stop_loss` below the band's lower edge."""
    return stop_loss > 0.0 and price < pmin * (1.0 - stop_loss)


def target_fiat_weight_scalar(
    price: float,
    pmin: float,
    pmax: float,
    moving_average: float,
    strength: float,
    stop_loss: float,
) -> float:
    """Target fiat weight in [0, 1]: band weight plus momentum shift, 1 on a stop-loss."""
    if stop_loss_hit(price, pmin, stop_loss):
        return 1.0
    weight = base_fiat_weight(price, pmin, pmax) + momentum_shift(price, moving_average, strength)
    if weight < 0.0:
        return 0.0
    if weight > 1.0:
        return 1.0
    return weight


def coins_for_target(
    coins: float,
    fiat: float,
    price: float,
    target_weight: float,
    min_trade_fraction: float,
    sell_only: bool,
) -> tuple[float, int]:
    """Coins to sell (negative = buy) to move the fiat weight to `target_weight`, and a code.

    The gap ``(target - fiat/value) * value / price`` is clipped to what is held (no selling more
    coins than held, no buying more than the fiat pays for at `price`), then dropped when its value
    is below ``min_trade_fraction * value`` (CODE_BELOW_MIN) or when it is a buy in sell-only mode
    (CODE_SELL_ONLY_HOLD). Scale-free: multiplying coins and fiat by k multiplies the result by k.
    """
    value = coins * price + fiat
    if not value > 0.0 or not price > 0.0:
        return 0.0, CODE_EMPTY
    gap = (target_weight - fiat / value) * value / price
    if gap > coins:
        gap = coins
    if -gap > fiat / price:
        gap = -fiat / price
    if gap < 0.0 and sell_only:
        return 0.0, CODE_SELL_ONLY_HOLD
    if gap == 0.0 or abs(gap) * price < min_trade_fraction * value:
        return 0.0, CODE_BELOW_MIN
    return gap, CODE_TRADE


# ---------------------------------------------------------------- typed API (live trading)


def price_band(
    history: Sequence[float] | np.ndarray, params: StrategyParams
) -> tuple[float, float]:
    """(pmin, pmax) from the last `params.band_lookback` closes (or the fixed band).

    Raises StrategyError when the history is shorter than the window or holds non-positive prices.
    """
    if params.band_method == "fixed":
        return params.fixed_pmin, params.fixed_pmax
    window = _last(history, params.band_lookback, "band_lookback")
    if params.band_method == "minmax":
        return float(window.min()), float(window.max())
    low, high = np.quantile(window, [params.band_low_quantile, params.band_high_quantile])
    return float(low), float(high)


def moving_average(history: Sequence[float] | np.ndarray, window: int) -> float:
    """Simple mean of the last `window` closes."""
    return float(_last(history, window, "momentum_window").mean())


def target_fiat_weight(
    price: float, pmin: float, pmax: float, moving_avg: float, params: StrategyParams
) -> float:
    """Target fiat weight for `price` given the band and moving average (see the scalar layer)."""
    return target_fiat_weight_scalar(
        price, pmin, pmax, moving_avg, params.momentum_strength, params.stop_loss
    )


_REASONS = {
    CODE_TRADE: "rebalance",
    CODE_BELOW_MIN: "below_min_trade",
    CODE_SELL_ONLY_HOLD: "sell_only_hold",
    CODE_EMPTY: "empty_portfolio",
}


def trade_for_target(
    coins: float,
    fiat: float,
    price: float,
    target_weight: float,
    min_trade_fraction: float,
    mode: Mode = "sell_only",
) -> TradeDecision:
    """TradeDecision for moving the portfolio to `target_weight` (band fields left at NaN)."""
    _check_balances(coins, fiat, price)
    qty, code = coins_for_target(
        coins, fiat, price, target_weight, min_trade_fraction, mode == "sell_only"
    )
    value = coins * price + fiat
    return TradeDecision(
        coins_to_sell=qty,
        reason=_REASONS[code],
        skipped_small=code == CODE_BELOW_MIN,
        target_weight=target_weight,
        current_weight=fiat / value if value > 0.0 else math.nan,
        price=price,
        pmin=math.nan,
        pmax=math.nan,
        moving_average=math.nan,
        portfolio_value=value,
    )


def decide(
    closes: Sequence[float] | np.ndarray, coins: float, fiat: float, params: StrategyParams
) -> TradeDecision:
    """The whole decision at the last close: band, momentum, stop-loss, trade size.

    `closes` are the bar closes up to now (oldest first), at least `params.history_bars` of them;
    the backtester computes exactly the same quantities bar by bar.
    """
    prices = _as_prices(closes)
    if prices.size < params.history_bars:
        raise StrategyError(
            f"price history has {prices.size} closes; the strategy needs {params.history_bars} "
            f"(band_lookback={params.band_lookback}, momentum_window={params.momentum_window})"
        )
    price = float(prices[-1])
    pmin, pmax = price_band(prices, params)
    avg = moving_average(prices, params.momentum_window)
    target = target_fiat_weight(price, pmin, pmax, avg, params)
    decision = trade_for_target(coins, fiat, price, target, params.min_trade_fraction, params.mode)
    reason = decision.reason
    if stop_loss_hit(price, pmin, params.stop_loss) and decision.coins_to_sell > 0.0:
        reason = "stop_loss"
    return TradeDecision(
        coins_to_sell=decision.coins_to_sell,
        reason=reason,
        skipped_small=decision.skipped_small,
        target_weight=target,
        current_weight=decision.current_weight,
        price=price,
        pmin=pmin,
        pmax=pmax,
        moving_average=avg,
        portfolio_value=decision.portfolio_value,
    )


def _as_prices(history: Sequence[float] | np.ndarray) -> np.ndarray:
    prices = np.asarray(history, dtype=np.float64)
    if prices.ndim != 1:
        raise StrategyError(f"price history must be 1-D, got shape {prices.shape}")
    if prices.size and not (np.isfinite(prices).all() and (prices > 0.0).all()):
        raise StrategyError("price history holds non-finite or non-positive prices")
    return prices


def _last(history: Sequence[float] | np.ndarray, window: int, name: str) -> np.ndarray:
    prices = _as_prices(history)
    if prices.size < window:
        raise StrategyError(f"{name}={window} bars but the history has only {prices.size} closes")
    return prices[-window:]


def _check_balances(coins: float, fiat: float, price: float) -> None:
    for name, value in (("coins", coins), ("fiat", fiat)):
        if not math.isfinite(value) or value < 0.0:
            raise StrategyError(f"{name}={value}: balances must be finite and >= 0")
    if not math.isfinite(price) or price <= 0.0:
        raise StrategyError(f"price={price}: must be finite and > 0")
