"""What a miner would do without the strategy, on the same bars, inflow, costs and latency.

* ``hold``: keep every coin (never sell);
* ``sell_daily``: at the last bar of each UTC day, sell all coins held (each day's coins at once,
  what most miners do); the order fills at the next bar's open like every order;
* ``twap``: sell evenly over time: each bar's deposit is sold in equal slices over the following
  `twap_horizon_bars` bars (initial coins over the whole run), orders grouped every `every` bars.

All three run through the same fill rule as the strategy (`treasury.backtest.sell_fill`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from treasury.backtest import (
    BacktestResult,
    Costs,
    check_deposits,
    check_prices,
    compile_loop,
    sell_fill,
)
from treasury.strategy import StrategyError

SELL_ALL = math.inf


def _sell_schedule(
    open_: np.ndarray,
    close: np.ndarray,
    deposits: np.ndarray,
    request: np.ndarray,
    start: int,
    end: int,
    coins0: float,
    fiat0: float,
    fee: float,
    slippage: float,
    equity: np.ndarray,
    fiat_weight: np.ndarray,
    trade_bar: np.ndarray,
    trade_coins: np.ndarray,
    trade_price: np.ndarray,
    trade_fee: np.ndarray,
) -> tuple[float, float, float, int]:
    """Sell `request[t]` coins (inf = all held) decided at bar t, filled at t+1's open."""
    coins = coins0
    fiat = fiat0
    pending = 0.0
    n_fills = 0
    for t in range(start, end):
        coins += deposits[t]
        if pending > 0.0:
            qty = pending if pending < coins else coins
            if qty > 0.0:
                price, net, cost = sell_fill(qty, open_[t], slippage, fee)
                coins -= qty
                fiat += net
                trade_bar[n_fills] = t
                trade_coins[n_fills] = qty
                trade_price[n_fills] = price
                trade_fee[n_fills] = cost
                n_fills += 1
            pending = 0.0
        if t + 1 < end:
            pending = request[t]
        value = coins * close[t] + fiat
        equity[t - start] = value
        fiat_weight[t - start] = fiat / value if value > 0.0 else math.nan
    return coins * close[end - 1] + fiat, coins, fiat, n_fills


_KERNEL: dict[str, Any] = {}


def run_schedule(
    open_: np.ndarray,
    close: np.ndarray,
    request: np.ndarray,
    *,
    deposits: np.ndarray | None = None,
    costs: Costs | None = None,
    coins0: float = 0.0,
    fiat0: float = 0.0,
    start: int = 0,
    end: int | None = None,
) -> BacktestResult:
    """Backtest a fixed sell schedule (coins to sell decided per bar) over bars [start, end)."""
    open_, close = check_prices(open_, close)
    n = close.size
    end = n if end is None else end
    if not 0 <= start < end <= n:
        raise StrategyError(f"bar range [{start}, {end}) outside the {n} bars")
    deposits = check_deposits(deposits, n)
    request = np.ascontiguousarray(request, dtype=np.float64)
    if request.shape != (n,) or (request < 0).any() or np.isnan(request).any():
        raise StrategyError("sell schedule must be >= 0 coins per bar, one entry per bar")
    costs = costs or Costs()
    if "loop" not in _KERNEL:
        _KERNEL["loop"] = compile_loop(_sell_schedule)
    length = end - start
    equity, weight = np.empty(length), np.empty(length)
    bars, coins_t = np.empty(length, dtype=np.int64), np.empty(length)
    prices, fees = np.empty(length), np.empty(length)
    value, coins, fiat, fills = _KERNEL["loop"](
        open_, close, deposits, request, start, end, float(coins0), float(fiat0),
        float(costs.fee), float(costs.slippage), equity, weight, bars, coins_t, prices, fees,
    )  # fmt: skip
    return BacktestResult(
        start=start,
        end=end,
        equity=equity,
        fiat_weight=weight,
        target_weight=np.full(length, math.nan),
        trade_bar=bars[:fills].copy(),
        trade_coins=coins_t[:fills].copy(),
        trade_price=prices[:fills].copy(),
        trade_fee=fees[:fills].copy(),
        final_value=float(value),
        final_coins=float(coins),
        final_fiat=float(fiat),
    )


def hold_schedule(n: int) -> np.ndarray:
    """Never sell."""
    return np.zeros(n)


def daily_schedule(timestamp: np.ndarray) -> np.ndarray:
    """Sell everything held at the last bar of each UTC day."""
    days = np.asarray(timestamp).astype("datetime64[D]")
    request = np.zeros(days.size)
    last_of_day = np.ones(days.size, dtype=bool)
    last_of_day[:-1] = days[1:] != days[:-1]
    request[last_of_day] = SELL_ALL
    return request


def twap_schedule(
    deposits: np.ndarray,
    twap_horizon_bars: int,
    every: int = 1,
    coins0: float = 0.0,
    start: int = 0,
    end: int | None = None,
) -> np.ndarray:
    """Sell each deposit in equal slices over the next `twap_horizon_bars` bars, in orders every
    `every` bars from `start`; `coins0` (held at `start`) is spread evenly over [start, end)."""
    if twap_horizon_bars < 1 or every < 1:
        raise StrategyError(f"twap horizon {twap_horizon_bars} and every {every} must be >= 1 bar")
    d = np.asarray(deposits, dtype=np.float64)
    n = d.size
    end = n if end is None else end
    window = np.zeros(n)
    window[start:end] = d[start:end]
    csum = np.concatenate(([0.0], np.cumsum(window)))
    idx = np.arange(n)
    per_bar = (csum[idx + 1] - csum[np.maximum(idx + 1 - twap_horizon_bars, 0)]) / twap_horizon_bars
    per_bar[:start] = 0.0
    per_bar[end:] = 0.0
    per_bar[start:end] += coins0 / (end - start)
    request = np.zeros(n)
    # Group into one order per `every` bars, placed on the group's last bar.
    bounds = np.arange(start, end, every)
    sums = np.add.reduceat(per_bar[start:end], bounds - start) if bounds.size else np.zeros(0)
    last = np.minimum(bounds + every - 1, end - 1)
    request[last] = sums
    return request


def run_baselines(
    open_: np.ndarray,
    close: np.ndarray,
    timestamp: np.ndarray,
    *,
    deposits: np.ndarray | None = None,
    costs: Costs | None = None,
    coins0: float = 0.0,
    fiat0: float = 0.0,
    start: int = 0,
    end: int | None = None,
    twap_horizon_bars: int = 24,
    twap_every: int = 1,
) -> dict[str, BacktestResult]:
    """{"hold", "sell_daily", "twap"} results on the same bars, inflow and costs."""
    n = np.asarray(close).size
    end = n if end is None else end
    dep = check_deposits(deposits, n)
    common: dict[str, Any] = dict(
        deposits=dep, costs=costs, coins0=coins0, fiat0=fiat0, start=start, end=end
    )
    return {
        "hold": run_schedule(open_, close, hold_schedule(n), **common),
        "sell_daily": run_schedule(open_, close, daily_schedule(timestamp), **common),
        "twap": run_schedule(
            open_,
            close,
            twap_schedule(dep, twap_horizon_bars, twap_every, coins0, start, end),
            **common,
        ),
    }
