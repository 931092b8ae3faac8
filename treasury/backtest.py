"""The backtester: one event loop over bars, compiled with numba, built on the strategy's own math.

Semantics, per bar t (in this order):

1. coins deposited during bar t (mined coins, `deposits[t]`) join the portfolio;
2. the order decided at bar t-1 fills at bar t's open (one-bar latency): sells at
   ``open * (1 - slippage)``, buys at ``open * (1 + slippage)``; the fee is ``fee * notional`` in
   fiat. A sell is clipped to the coins held, a buy to what the fiat pays for fee included;
3. the portfolio is marked at bar t's close;
4. on a decision bar (every `decision_every` bars from the start) the strategy computes the target
   fiat weight from close[t], the band and the moving average at t, and the order for bar t+1.
   Nothing is left open after a fill, so "cancel open orders before each new one" never has
   anything to cancel here. No decision is taken on the last bar (it could not fill).

The loop `_simulate` is plain Python calling the plain functions of `treasury.strategy`.
`simulate_python` is that function as it is; the compiled kernel is the same code object re-bound
to numba-compiled copies of those same functions (`_compiled`), so there is one definition of the
math for live trading, the plain loop and the kernel.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType
from typing import Any

import numpy as np

from treasury import strategy
from treasury.strategy import (
    StrategyError,
    StrategyParams,
    coins_for_target,
    target_fiat_weight_scalar,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Costs:
    """Trading costs: `fee` and `slippage` as fractions of the notional / the open price."""

    fee: float = 0.0026
    slippage: float = 0.0005

    def __post_init__(self) -> None:
        for name in ("fee", "slippage"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise StrategyError(f"{name}={value}: must be a fraction in [0, 0.5)")


@dataclass(frozen=True)
class Indicators:
    """Per-bar band and moving average (NaN until the window is full), as the live path sees them."""

    pmin: np.ndarray
    pmax: np.ndarray
    moving_average: np.ndarray


@dataclass(frozen=True)
class BacktestResult:
    """One run over bars [start, end): per-bar curves (index 0 = bar `start`) and trade lists."""

    start: int
    end: int
    equity: np.ndarray
    fiat_weight: np.ndarray
    target_weight: np.ndarray
    trade_bar: np.ndarray
    trade_coins: np.ndarray
    trade_price: np.ndarray
    trade_fee: np.ndarray
    final_value: float
    final_coins: float
    final_fiat: float

    @property
    def n_trades(self) -> int:
        """Number of fills."""
        return int(self.trade_bar.size)

    @property
    def fees(self) -> float:
        """Fees paid, in fiat."""
        return float(self.trade_fee.sum())

    @property
    def coins_sold(self) -> float:
        """Coins sold over the run."""
        return float(self.trade_coins[self.trade_coins > 0.0].sum())

    @property
    def sell_proceeds(self) -> float:
        """Gross fiat from sells (before fees)."""
        sells = self.trade_coins > 0.0
        return float((self.trade_coins[sells] * self.trade_price[sells]).sum())

    @property
    def average_sell_price(self) -> float:
        """Gross proceeds per coin sold; NaN without sells."""
        sold = self.coins_sold
        return self.sell_proceeds / sold if sold > 0.0 else math.nan


def indicators(close: np.ndarray, params: StrategyParams) -> Indicators:
    """Rolling band and moving average per bar, each equal to what `strategy.decide` computes
    from the closes up to that bar (quantiles with linear interpolation, window incl. the bar)."""
    import pandas as pd

    series = pd.Series(np.asarray(close, dtype=np.float64))
    if params.band_method == "fixed":
        pmin = np.full(series.size, params.fixed_pmin)
        pmax = np.full(series.size, params.fixed_pmax)
    else:
        rolling = series.rolling(params.band_lookback, min_periods=params.band_lookback)
        if params.band_method == "minmax":
            pmin, pmax = rolling.min().to_numpy(), rolling.max().to_numpy()
        else:
            pmin = rolling.quantile(params.band_low_quantile, interpolation="linear").to_numpy()
            pmax = rolling.quantile(params.band_high_quantile, interpolation="linear").to_numpy()
    window = params.momentum_window
    avg = series.rolling(window, min_periods=window).mean().to_numpy()
    return Indicators(pmin, pmax, avg)


def sell_fill(
    qty: float, open_price: float, slippage: float, fee: float
) -> tuple[float, float, float]:
    """Selling `qty` coins at a bar's open: (fill price, net fiat received, fee paid)."""
    price = open_price * (1.0 - slippage)
    notional = qty * price
    cost = notional * fee
    return price, notional - cost, cost


def _simulate(
    open_: np.ndarray,
    close: np.ndarray,
    deposits: np.ndarray,
    pmin: np.ndarray,
    pmax: np.ndarray,
    moving_average: np.ndarray,
    start: int,
    end: int,
    coins0: float,
    fiat0: float,
    strength: float,
    stop_loss: float,
    decision_every: int,
    min_trade_fraction: float,
    sell_only: bool,
    fee: float,
    slippage: float,
    record: bool,
    equity: np.ndarray,
    fiat_weight: np.ndarray,
    target_weight: np.ndarray,
    trade_bar: np.ndarray,
    trade_coins: np.ndarray,
    trade_price: np.ndarray,
    trade_fee: np.ndarray,
) -> tuple[float, float, float, int, float]:
    """The event loop (see the module docstring). Returns (value, coins, fiat, fills, fees)."""
    coins = coins0
    fiat = fiat0
    pending = 0.0
    target = math.nan
    countdown = 0
    n_fills = 0
    fees_paid = 0.0
    for t in range(start, end):
        coins += deposits[t]
        if pending != 0.0:
            if pending > 0.0:
                qty = pending if pending < coins else coins
                price, net, cost = sell_fill(qty, open_[t], slippage, fee)
                coins -= qty
                fiat += net
                signed = qty
            else:
                price = open_[t] * (1.0 + slippage)
                affordable = fiat / (price * (1.0 + fee))
                qty = -pending if -pending < affordable else affordable
                notional = qty * price
                cost = notional * fee
                coins += qty
                fiat -= notional + cost
                if fiat < 0.0:
                    fiat = 0.0  # rounding of the affordable size, never a real overdraft
                signed = -qty
            pending = 0.0
            if qty > 0.0:
                fees_paid += cost
                if record:
                    trade_bar[n_fills] = t
                    trade_coins[n_fills] = signed
                    trade_price[n_fills] = price
                    trade_fee[n_fills] = cost
                n_fills += 1
        countdown -= 1
        if countdown <= 0:
            countdown = decision_every
            if t + 1 < end and moving_average[t] > 0.0 and pmin[t] > 0.0:
                target = target_fiat_weight_scalar(
                    close[t], pmin[t], pmax[t], moving_average[t], strength, stop_loss
                )
                pending, _code = coins_for_target(
                    coins, fiat, close[t], target, min_trade_fraction, sell_only
                )
        if record:
            value = coins * close[t] + fiat
            equity[t - start] = value
            fiat_weight[t - start] = fiat / value if value > 0.0 else math.nan
            target_weight[t - start] = target
    final_value = coins * close[end - 1] + fiat
    return final_value, coins, fiat, n_fills, fees_paid


def _sweep(
    open_: np.ndarray,
    close: np.ndarray,
    deposits: np.ndarray,
    pmins: np.ndarray,
    pmaxs: np.ndarray,
    averages: np.ndarray,
    band_index: np.ndarray,
    average_index: np.ndarray,
    strength: np.ndarray,
    stop_loss: np.ndarray,
    decision_every: np.ndarray,
    min_trade_fraction: np.ndarray,
    start: int,
    end: int,
    coins0: float,
    fiat0: float,
    sell_only: bool,
    fee: float,
    slippage: float,
    out_value: np.ndarray,
    out_fills: np.ndarray,
    out_fees: np.ndarray,
) -> None:
    """Run `_simulate` for every parameter point (in parallel when compiled with prange)."""
    empty = np.empty(0, dtype=np.float64)
    empty_i = np.empty(0, dtype=np.int64)
    for i in prange(band_index.size):
        b = band_index[i]
        a = average_index[i]
        value, _coins, _fiat, fills, fees = simulate_kernel(
            open_,
            close,
            deposits,
            pmins[b],
            pmaxs[b],
            averages[a],
            start,
            end,
            coins0,
            fiat0,
            strength[i],
            stop_loss[i],
            decision_every[i],
            min_trade_fraction[i],
            sell_only,
            fee,
            slippage,
            False,
            empty,
            empty,
            empty,
            empty_i,
            empty,
            empty,
            empty,
        )
        out_value[i] = value
        out_fills[i] = fills
        out_fees[i] = fees


prange = range  # the plain sweep runs serially; the compiled one gets numba.prange


def _rebind(fn: Callable[..., Any], namespace: dict[str, Any]) -> Callable[..., Any]:
    """A copy of `fn` whose global names resolve in `namespace` (to compiled helpers)."""
    clone = FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


_COMPILED: dict[str, Any] = {}
_COMPILE_LOCK = threading.Lock()


def _compiled() -> dict[str, Any]:
    """numba-compiled copies of the strategy's scalar functions, `_simulate` and `_sweep`.

    Compiled lazily on first use and cached on disk (numba cache=True), so the import stays light.
    """
    with _COMPILE_LOCK:  # one compilation even when worker threads start backtests together
        if not _COMPILED:
            _compile_into(_COMPILED)
    return _COMPILED


def _compile_into(target: dict[str, Any]) -> None:
    import numba

    ns_strategy = dict(vars(strategy))
    for name in ("base_fiat_weight", "momentum_shift", "stop_loss_hit"):
        ns_strategy[name] = numba.njit(cache=True)(_rebind(getattr(strategy, name), ns_strategy))
    for name in ("target_fiat_weight_scalar", "coins_for_target"):
        ns_strategy[name] = numba.njit(cache=True)(_rebind(getattr(strategy, name), ns_strategy))
    ns = dict(globals())
    ns["sell_fill"] = numba.njit(cache=True)(sell_fill)
    ns["target_fiat_weight_scalar"] = ns_strategy["target_fiat_weight_scalar"]
    ns["coins_for_target"] = ns_strategy["coins_for_target"]
    kernel = numba.njit(cache=True, nogil=True)(_rebind(_simulate, ns))
    ns["simulate_kernel"] = kernel
    ns["prange"] = numba.prange
    sweep = numba.njit(cache=True, parallel=True)(_rebind(_sweep, ns))
    target.update(simulate=kernel, sweep=sweep, strategy=ns_strategy, namespace=ns)


def compile_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    """numba-compile another loop (e.g. a baseline) against the compiled `sell_fill`."""
    import numba

    ns = dict(fn.__globals__)
    ns["sell_fill"] = _compiled()["namespace"]["sell_fill"]
    return numba.njit(cache=True, nogil=True)(_rebind(fn, ns))


simulate_python = _simulate
"""The event loop run by the Python interpreter (the reference for the compiled kernel)."""

simulate_kernel = _simulate  # the plain `_sweep` calls the plain loop


def run_backtest(
    open_: np.ndarray,
    close: np.ndarray,
    params: StrategyParams,
    *,
    deposits: np.ndarray | None = None,
    costs: Costs | None = None,
    coins0: float = 0.0,
    fiat0: float = 0.0,
    start: int = 0,
    end: int | None = None,
    ind: Indicators | None = None,
    engine: str = "numba",
) -> BacktestResult:
    """Backtest `params` over bars [start, end) with the compiled kernel (or `engine="python"`).

    `ind` may be passed to reuse indicators computed over a longer history (walk-forward);
    `deposits` are coins arriving per bar (same length as `close`).
    """
    open_, close = check_prices(open_, close)
    n = close.size
    end = n if end is None else end
    if not 0 <= start < end <= n:
        raise StrategyError(f"bar range [{start}, {end}) outside the {n} bars")
    deposits = check_deposits(deposits, n)
    costs = costs or Costs()
    ind = ind or indicators(close, params)
    if coins0 < 0.0 or fiat0 < 0.0:
        raise StrategyError(f"initial balances coins={coins0} fiat={fiat0} must be >= 0")
    length = end - start
    equity = np.empty(length)
    fiat_weight = np.empty(length)
    target_weight = np.empty(length)
    capacity = length // params.decision_every + 2
    trade_bar = np.empty(capacity, dtype=np.int64)
    trade_coins = np.empty(capacity)
    trade_price = np.empty(capacity)
    trade_fee = np.empty(capacity)
    if engine == "numba":
        loop = _compiled()["simulate"]
    elif engine == "python":
        loop = simulate_python
    else:
        raise StrategyError(f"engine={engine!r}: expected 'numba' or 'python'")
    value, coins, fiat, fills, _fees = loop(
        open_,
        close,
        deposits,
        ind.pmin,
        ind.pmax,
        ind.moving_average,
        start,
        end,
        float(coins0),
        float(fiat0),
        float(params.momentum_strength),
        float(params.stop_loss),
        int(params.decision_every),
        float(params.min_trade_fraction),
        params.sell_only,
        float(costs.fee),
        float(costs.slippage),
        True,
        equity,
        fiat_weight,
        target_weight,
        trade_bar,
        trade_coins,
        trade_price,
        trade_fee,
    )
    logger.debug(
        "backtest done bars=%d fills=%d value=%.2f engine=%s", length, fills, value, engine
    )
    return BacktestResult(
        start=start,
        end=end,
        equity=equity,
        fiat_weight=fiat_weight,
        target_weight=target_weight,
        trade_bar=trade_bar[:fills].copy(),
        trade_coins=trade_coins[:fills].copy(),
        trade_price=trade_price[:fills].copy(),
        trade_fee=trade_fee[:fills].copy(),
        final_value=float(value),
        final_coins=float(coins),
        final_fiat=float(fiat),
    )


def check_prices(open_: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float64 open/close of equal length, all finite and > 0 (else StrategyError)."""
    o = np.ascontiguousarray(open_, dtype=np.float64)
    c = np.ascontiguousarray(close, dtype=np.float64)
    if o.shape != c.shape or o.ndim != 1:
        raise StrategyError(f"open {o.shape} and close {c.shape} must be 1-D of equal length")
    # min() is NaN when any value is NaN, so two reductions per array check finite and positive
    if not (c.min() > 0.0 and o.min() > 0.0 and np.isfinite(c.max()) and np.isfinite(o.max())):
        raise StrategyError("open/close hold non-finite or non-positive prices")
    return o, c


def check_deposits(deposits: np.ndarray | None, n: int) -> np.ndarray:
    """Coins per bar as contiguous float64 of length `n`, finite and >= 0 (None = no inflow)."""
    if deposits is None:
        return np.zeros(n)
    d = np.ascontiguousarray(deposits, dtype=np.float64)
    if d.shape != (n,):
        raise StrategyError(f"deposits have shape {d.shape}, expected ({n},) like the prices")
    if d.size and not (d.min() >= 0.0 and np.isfinite(d.max())):
        raise StrategyError("deposits must be finite and >= 0 coins per bar")
    return d
