"""Performance figures of a backtest, comparable across the strategy and the baselines.

Deposits are not performance: returns are time-weighted. For bar t with equity E_t (marked at the
close) and coins deposited d_t,

    r_t = (E_t - d_t * close_t) / E_{t-1} - 1        (0 while E_{t-1} = 0)

Daily returns compound r_t (from the second bar on) over consecutive blocks of `bars_per_day`
bars. The *NAV* is the
cumulative product of (1 + r_t); max drawdown is the largest fall of the NAV from its running peak.
Sharpe = mean(daily) / std(daily, ddof=1) * sqrt(365) (BTC trades every day; risk-free rate 0).
Total return = final value / capital put in - 1, where capital put in = initial coins at the first
close + initial fiat + each deposit valued at the close of the bar it arrived in.
Average sell price is gross proceeds per coin sold; VWAP is sum(typical * volume) / sum(volume)
over the same bars with typical = (high + low + close) / 3.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from treasury.backtest import BacktestResult
from treasury.price_data import Bars


@dataclass(frozen=True)
class Metrics:
    """Headline figures of one run (money in the quote currency, e.g. USD)."""

    final_value: float
    total_return: float
    max_drawdown: float
    sharpe: float
    trades: int
    fees: float
    coins_sold: float
    average_sell_price: float
    vwap: float
    sell_vs_vwap: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict (for --json)."""
        return asdict(self)


def bar_returns(equity: np.ndarray, deposits: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Time-weighted per-bar returns net of deposits (see the module docstring); r_0 = 0."""
    equity = np.asarray(equity, dtype=np.float64)
    out = np.zeros(equity.size)
    if equity.size < 2:
        return out
    prev = equity[:-1]
    gain = equity[1:] - np.asarray(deposits)[1:] * np.asarray(close)[1:]
    ok = prev > 0.0
    out[1:][ok] = gain[ok] / prev[ok] - 1.0
    return out


def max_drawdown(nav: np.ndarray) -> float:
    """Largest relative fall from a running peak (0.25 = -25 %)."""
    nav = np.asarray(nav, dtype=np.float64)
    if nav.size == 0:
        return 0.0
    peak = np.maximum.accumulate(nav)
    falls = np.where(peak > 0.0, 1.0 - nav / np.where(peak > 0.0, peak, 1.0), 0.0)
    return float(falls.max())


def sharpe_ratio(returns: np.ndarray, bars_per_day: float) -> float:
    """Annualised Sharpe of per-bar returns, computed on daily compounded returns."""
    per_day = max(round(bars_per_day), 1)
    n_days = returns.size // per_day
    if n_days < 2:
        return math.nan
    daily = np.prod(1.0 + returns[: n_days * per_day].reshape(n_days, per_day), axis=1) - 1.0
    spread = float(daily.std(ddof=1))
    if spread == 0.0:
        return math.nan
    return float(daily.mean() / spread * math.sqrt(365.0))


def vwap(bars: Bars) -> float:
    """Volume-weighted average of (high + low + close) / 3; NaN without volume."""
    volume = float(bars.volume.sum())
    if volume <= 0.0:
        return math.nan
    typical = (bars.high + bars.low + bars.close) / 3.0
    return float((typical * bars.volume).sum() / volume)


def compute_metrics(result: BacktestResult, bars: Bars, deposits: np.ndarray | None) -> Metrics:
    """Metrics of `result` over its bars [result.start, result.end) of `bars`."""
    window = bars.slice(result.start, result.end)
    dep = (
        np.zeros(len(window))
        if deposits is None
        else np.asarray(deposits)[result.start : result.end]
    )
    returns = bar_returns(result.equity, dep, window.close)
    nav = np.cumprod(1.0 + returns)
    initial = float(result.equity[0] - dep[0] * window.close[0])
    put_in = initial + float((dep * window.close).sum())
    average_sell = result.average_sell_price
    reference = vwap(window)
    return Metrics(
        final_value=result.final_value,
        total_return=result.final_value / put_in - 1.0 if put_in > 0.0 else math.nan,
        max_drawdown=max_drawdown(nav),
        sharpe=sharpe_ratio(returns[1:], window.bars_per_day),
        trades=result.n_trades,
        fees=result.fees,
        coins_sold=result.coins_sold,
        average_sell_price=average_sell,
        vwap=reference,
        sell_vs_vwap=average_sell / reference - 1.0
        if math.isfinite(average_sell) and reference > 0
        else math.nan,
    )
