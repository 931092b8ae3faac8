"""Treasury backtester speed: our numba kernel vs the same loop in plain Python vs backtrader.

Data: 1,000,000 one-minute BTC/USDT bars built from the real Binance hourly bars from
2023-04-01 (gap-free) with the intra-hour movement of the real Binance minute month
(treasury.price_data.minute_bars_from_hours), plus the mined inflow of a 100 PH/s fleet from the
real network history. Runs, in one process:

1. agreement + throughput of all three on a 30,000-bar subset (two-way mode, fiat start, no
   inflow: backtrader cannot receive coin deposits); final values must agree;
2. our kernel (compile/cache-load time reported apart) and the plain Python loop on all
   1,000,000 bars with inflow, sell-only; final values must agree;
3. a 1,000-point parameter sweep over the first year (525,600 bars).

Run: `python -m bench treasury` (or `.venv/bin/python -m bench.bench_treasury`).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

N_BARS = 1_000_000
YEAR = 525_600
BT_BARS = 30_000
FLEET_THS = 100_000.0
REL_TOL = 1e-9


def _data_dir() -> str:
    from controller.paths import shared_data_dir

    path = shared_data_dir()
    if path is None:
        raise SystemExit("shared data absent: set FARMCTL_DATA_DIR")
    return str(path)


def build_bars() -> tuple[Any, np.ndarray]:
    """The 1M minute bars and their mined inflow."""
    from treasury.inflow import load_network_history, mined_deposits
    from treasury.price_data import load_bars, minute_bars_from_hours

    data = _data_dir()
    hours = load_bars(f"{data}/btc/btcusdt_binance_1h.csv.gz").between("2023-04-01", "2025-03-01")
    minutes = load_bars(f"{data}/btc/btcusdt_binance_1m_2024-07.csv.gz")
    bars = minute_bars_from_hours(hours, minutes, N_BARS)
    deposits = mined_deposits(
        bars.timestamp, load_network_history(f"{data}/bitcoin-network"), FLEET_THS
    )
    return bars, deposits


def _best_of(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def run_backtrader(
    bars: Any, ind: Any, start: int, end: int, params: Any, costs: Any, fiat: float
) -> float:
    """backtrader running the same strategy functions on bars [start, end); its final value."""
    import backtrader as bt
    import pandas as pd

    from treasury.strategy import coins_for_target, target_fiat_weight_scalar

    frame = pd.DataFrame(
        {
            "open": bars.open[start:end],
            "high": bars.high[start:end],
            "low": bars.low[start:end],
            "close": bars.close[start:end],
            "volume": bars.volume[start:end],
            "pmin": ind.pmin[start:end],
            "pmax": ind.pmax[start:end],
            "ma": ind.moving_average[start:end],
        },
        index=pd.DatetimeIndex(bars.timestamp[start:end]),
    )

    class Feed(bt.feeds.PandasData):
        lines = ("pmin", "pmax", "ma")
        params = (("pmin", -1), ("pmax", -1), ("ma", -1), ("openinterest", None))

    total = end - start

    class WeightMomentum(bt.Strategy):
        def __init__(self) -> None:
            self.countdown = 0

        def next(self) -> None:
            self.countdown -= 1
            if self.countdown > 0:
                return
            self.countdown = params.decision_every
            if len(self.data) >= total:
                return  # the last bar's order could not fill (same rule as our kernel)
            price = self.data.close[0]
            coins, fiat = self.position.size, self.broker.get_cash()
            target = target_fiat_weight_scalar(
                price, self.data.pmin[0], self.data.pmax[0], self.data.ma[0],
                params.momentum_strength, params.stop_loss,
            )  # fmt: skip
            qty, _code = coins_for_target(
                coins, fiat, price, target, params.min_trade_fraction, params.sell_only
            )
            if qty > 0.0:
                self.sell(size=qty)
            elif qty < 0.0:
                # backtrader does not clip a buy to the cash at the fill as our kernel does;
                # apply the same clip with the fill's own open (not used for the decision),
                # 1e-12 short so that rounding never makes backtrader reject it as over margin
                fill = self.data.open[1] * (1.0 + costs.slippage)
                affordable = fiat / (fill * (1.0 + costs.fee)) * (1.0 - 1e-12)
                self.buy(size=min(-qty, affordable))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(Feed(dataname=frame))
    cerebro.addstrategy(WeightMomentum)
    cerebro.broker.setcash(fiat)
    cerebro.broker.setcommission(commission=costs.fee)
    cerebro.broker.set_slippage_perc(
        costs.slippage, slip_open=True, slip_limit=True, slip_match=True, slip_out=True
    )
    cerebro.broker.set_checksubmit(False)
    cerebro.run()
    return float(cerebro.broker.getvalue())


def _kernel_only(
    bars: Any, deposits: np.ndarray, ind: Any, params: Any, costs: Any
) -> tuple[float, float, float]:
    """Best times of the compiled loop alone (inputs already checked), with and without curves."""
    from treasury.backtest import _compiled

    kernel = _compiled()["simulate"]
    n = len(bars)
    cap = n // params.decision_every + 2
    curves = [np.empty(n) for _ in range(3)]
    trades = [np.empty(cap, dtype=np.int64)] + [np.empty(cap) for _ in range(3)]
    empty = [np.empty(0)] * 3 + [np.empty(0, dtype=np.int64)] + [np.empty(0)] * 3
    head = (bars.open, bars.close, deposits, ind.pmin, ind.pmax, ind.moving_average, 0, n)
    mid = (0.0, 0.0, params.momentum_strength, params.stop_loss, params.decision_every)
    tail = (params.min_trade_fraction, params.sell_only, costs.fee, costs.slippage)
    t_rec, _ = _best_of(lambda: kernel(*head, *mid, *tail, True, *curves, *trades), 10)
    t_bare, out = _best_of(lambda: kernel(*head, *mid, *tail, False, *empty), 10)
    return t_rec, t_bare, float(out[0])


def sweep_grid(base: Any) -> list[Any]:
    """1,000 points: 5 bands x 4 averages x 5 strengths x 5 thresholds x 2 intervals."""
    from treasury.walkforward import ParamGrid

    grid = ParamGrid(
        bands=(
            ("quantile", 10_080, 0.1, 0.9),
            ("quantile", 10_080, 0.25, 0.75),
            ("quantile", 43_200, 0.1, 0.9),
            ("quantile", 43_200, 0.25, 0.75),
            ("minmax", 10_080, 0.0, 1.0),
        ),
        momentum_windows=(240, 1_440, 2_880, 10_080),
        strengths=(0.0, 1.0, 2.0, 5.0, 10.0),
        stop_losses=(0.0,),
        min_trade_fractions=(0.005, 0.01, 0.02, 0.05, 0.1),
        decision_every=(15, 60),
    )
    return grid.points(base)


def main() -> None:
    """Run the three engines side by side and print throughputs and ratios."""
    import numba

    from treasury.backtest import Costs, _compiled, indicators, run_backtest
    from treasury.strategy import StrategyParams
    from treasury.walkforward import PreparedSweep

    t0 = time.perf_counter()
    bars, deposits = build_bars()
    print(
        f"bars: {len(bars):,} one-minute bars {bars.timestamp[0]} .. {bars.timestamp[-1]} "
        f"built from real hourly + minute data in {time.perf_counter() - t0:.1f} s; "
        f"inflow {deposits.sum():.4f} BTC from a {FLEET_THS / 1000:.0f} PH/s fleet"
    )
    print(f"cpus: {os.cpu_count()}, numba threads: {numba.get_num_threads()}")
    costs = Costs(fee=0.0026, slippage=0.0005)

    # 1. three engines on the same subset
    small = StrategyParams(
        mode="two_way", band_lookback=1_440, momentum_window=240, momentum_strength=2.0,
        decision_every=15, min_trade_fraction=0.01,
    )  # fmt: skip
    ind_small = indicators(bars.close, small)
    s0 = small.history_bars
    s1 = s0 + BT_BARS
    started = time.perf_counter()
    _compiled()
    run_backtest(bars.open, bars.close, small, costs=costs, fiat0=1.0, start=s0, end=s0 + 10)
    compile_s = time.perf_counter() - started
    print(f"numba compile or cache load (first call): {compile_s:.2f} s")
    kw: dict[str, Any] = dict(costs=costs, fiat0=100_000.0, start=s0, end=s1, ind=ind_small)
    t_nb, r_nb = _best_of(lambda: run_backtest(bars.open, bars.close, small, **kw), 5)
    t_py, r_py = _best_of(
        lambda: run_backtest(bars.open, bars.close, small, engine="python", **kw), 1
    )
    started = time.perf_counter()
    v_bt = run_backtrader(bars, ind_small, s0, s1, small, costs, 100_000.0)
    t_bt = time.perf_counter() - started
    print(
        f"[subset {BT_BARS:,} bars, two-way, {r_nb.n_trades} trades] final value: "
        f"numba {r_nb.final_value:.6f}, python {r_py.final_value:.6f}, "
        f"backtrader {v_bt:.6f}"
    )
    assert abs(r_nb.final_value - r_py.final_value) <= REL_TOL * r_py.final_value
    assert abs(v_bt - r_nb.final_value) <= 1e-7 * r_nb.final_value, "backtrader disagrees"
    rates = {"numba": BT_BARS / t_nb, "python": BT_BARS / t_py, "backtrader": BT_BARS / t_bt}
    for name, rate in rates.items():
        print(f"  {name:10s} {rate:>16,.0f} bars/s")

    # 2. one parameter set on all 1M bars, sell-only with inflow
    params = StrategyParams(
        band_lookback=43_200, momentum_window=2_880, momentum_strength=2.0, decision_every=60,
        min_trade_fraction=0.01,
    )  # fmt: skip
    started = time.perf_counter()
    ind = indicators(bars.close, params)
    t_ind = time.perf_counter() - started
    full: dict[str, Any] = dict(costs=costs, deposits=deposits, ind=ind)
    t_full, r_full = _best_of(lambda: run_backtest(bars.open, bars.close, params, **full), 10)
    t_pyfull, r_pyfull = _best_of(
        lambda: run_backtest(bars.open, bars.close, params, engine="python", **full), 1
    )
    assert abs(r_full.final_value - r_pyfull.final_value) <= REL_TOL * r_pyfull.final_value
    t_kernel, t_bare, bare_value = _kernel_only(bars, deposits, ind, params, costs)
    assert abs(bare_value - r_full.final_value) <= REL_TOL * r_full.final_value
    print(
        f"[1,000,000 bars, sell-only, inflow, {r_full.n_trades} trades] final value numba "
        f"{r_full.final_value:.6f} == python {r_pyfull.final_value:.6f}"
    )
    print(f"  indicators (pandas rolling quantiles + mean): {t_ind:.3f} s")
    print(
        f"  run_backtest (checks, allocation, kernel) {N_BARS / t_full:>14,.0f} bars/s "
        f"({t_full * 1e3:.1f} ms)"
    )
    print(
        f"  kernel, curves recorded    {N_BARS / t_kernel:>16,.0f} bars/s ({t_kernel * 1e3:.1f} ms)"
    )
    print(f"  kernel, final figures only {N_BARS / t_bare:>16,.0f} bars/s ({t_bare * 1e3:.1f} ms)")
    every_bar = replace(params, decision_every=1)
    t_k1, t_b1, v1 = _kernel_only(bars, deposits, ind, every_bar, costs)
    r_1 = run_backtest(bars.open, bars.close, every_bar, engine="python", **full)
    assert abs(v1 - r_1.final_value) <= REL_TOL * r_1.final_value
    print(
        f"  kernel, a decision on every bar ({r_1.n_trades} trades): curves "
        f"{N_BARS / t_k1:,.0f} bars/s, final figures only {N_BARS / t_b1:,.0f} bars/s"
    )
    print(f"  plain Python loop          {N_BARS / t_pyfull:>16,.0f} bars/s ({t_pyfull:.2f} s)")
    print(
        f"  ratios: numba/python {t_pyfull / t_full:,.0f}x, "
        f"kernel/python {t_pyfull / t_kernel:,.0f}x, "
        f"numba/backtrader {rates['numba'] / rates['backtrader']:,.0f}x (subset rates), "
        f"python/backtrader {rates['python'] / rates['backtrader']:,.0f}x"
    )

    # 3. 1,000-point sweep over a year of minute bars
    points = sweep_grid(replace(params))
    year_open, year_close = bars.open[:YEAR], bars.close[:YEAR]
    started = time.perf_counter()
    prepared = PreparedSweep(year_close, points)
    t_prep = time.perf_counter() - started
    prepared.run(year_open, year_close, deposits=deposits[:YEAR], costs=costs, start=0, end=1_000)
    started = time.perf_counter()
    result = prepared.run(year_open, year_close, deposits=deposits[:YEAR], costs=costs)
    t_sweep = time.perf_counter() - started
    best, value = result.best()
    print(
        f"[sweep {len(points):,} points x {YEAR:,} bars] indicators {t_prep:.1f} s + "
        f"sweep {t_sweep:.1f} s = {t_prep + t_sweep:.1f} s "
        f"({len(points) * YEAR / t_sweep:,.0f} bar-steps/s); best final value {value:,.2f} "
        f"(band {best.band_method} {best.band_lookback}, MA {best.momentum_window}, "
        f"strength {best.momentum_strength}, min trade {best.min_trade_fraction}, "
        f"every {best.decision_every})"
    )


if __name__ == "__main__":
    main()
