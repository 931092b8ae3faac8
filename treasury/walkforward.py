"""Parameter sweeps and walk-forward evaluation.

Walk-forward: the bars are cut into folds. In each fold the parameter grid is swept over an
in-sample window (IS) and the point with the highest final value is kept; that point is then run,
untouched, on the out-of-sample window (OOS) that directly follows. The next fold starts one OOS
length later. Every window starts from the same balances (`coins0`, `fiat0`) and receives the same
inflow as the baselines run over it, and indicators come from the whole history before each bar
(rolling windows look back only), so the OOS windows are warm without seeing the future.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from treasury.backtest import Costs, _compiled, _sweep, check_deposits, check_prices, indicators
from treasury.baselines import run_baselines
from treasury.strategy import StrategyError, StrategyParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamGrid:
    """Values to combine; `bands` are (method, lookback, low quantile, high quantile)."""

    bands: Sequence[tuple[str, int, float, float]] = (
        ("quantile", 168, 0.1, 0.9),
        ("quantile", 720, 0.1, 0.9),
        ("quantile", 720, 0.25, 0.75),
        ("quantile", 2160, 0.1, 0.9),
        ("minmax", 720, 0.0, 1.0),
    )
    momentum_windows: Sequence[int] = (24, 72, 168)
    strengths: Sequence[float] = (0.0, 2.0, 5.0)
    stop_losses: Sequence[float] = (0.0, 0.1)
    decision_every: Sequence[int] = (1, 6)
    min_trade_fractions: Sequence[float] = (0.01, 0.05)

    def points(self, base: StrategyParams) -> list[StrategyParams]:
        """Every combination, as StrategyParams derived from `base` (mode is kept from it)."""
        out = []
        for band, window, strength, stop, every, frac in itertools.product(
            self.bands,
            self.momentum_windows,
            self.strengths,
            self.stop_losses,
            self.decision_every,
            self.min_trade_fractions,
        ):
            method, lookback, low, high = band
            out.append(
                replace(
                    base,
                    band_method=method,  # type: ignore[arg-type]
                    band_lookback=lookback,
                    band_low_quantile=low,
                    band_high_quantile=high,
                    momentum_window=window,
                    momentum_strength=strength,
                    stop_loss=stop,
                    decision_every=every,
                    min_trade_fraction=frac,
                )
            )
        return out


@dataclass(frozen=True)
class SweepResult:
    """Final value, fills and fees per parameter point (same order as `points`)."""

    points: list[StrategyParams]
    final_value: np.ndarray
    fills: np.ndarray
    fees: np.ndarray

    def best(self) -> tuple[StrategyParams, float]:
        """The point with the highest final value."""
        i = int(np.argmax(self.final_value))
        return self.points[i], float(self.final_value[i])


class PreparedSweep:
    """Indicators for a set of points computed once over `close` (shared by all folds)."""

    def __init__(self, close: np.ndarray, points: Sequence[StrategyParams]) -> None:
        if not points:
            raise StrategyError("parameter sweep needs at least one point")
        modes = {p.mode for p in points}
        if len(modes) != 1:
            raise StrategyError(f"one sweep runs one mode, got {sorted(modes)}")
        self.points = list(points)
        self.sell_only = self.points[0].sell_only
        band_keys: dict[tuple[Any, ...], int] = {}
        avg_keys: dict[int, int] = {}
        band_index, avg_index = [], []
        for p in self.points:
            key = (
                p.band_method,
                p.band_lookback,
                p.band_low_quantile,
                p.band_high_quantile,
                p.fixed_pmin,
                p.fixed_pmax,
            )
            band_index.append(band_keys.setdefault(key, len(band_keys)))
            avg_index.append(avg_keys.setdefault(p.momentum_window, len(avg_keys)))
        n = np.asarray(close).size
        self.pmins = np.empty((len(band_keys), n))
        self.pmaxs = np.empty((len(band_keys), n))
        self.averages = np.empty((len(avg_keys), n))
        first_with_band = {band_index[i]: p for i, p in enumerate(self.points)}
        first_with_avg = {avg_index[i]: p for i, p in enumerate(self.points)}
        for b, p in first_with_band.items():
            ind = indicators(close, replace(p, momentum_window=1))
            self.pmins[b], self.pmaxs[b] = ind.pmin, ind.pmax
        for a, p in first_with_avg.items():
            self.averages[a] = indicators(close, replace(p, band_method="quantile")).moving_average
        self.band_index = np.asarray(band_index, dtype=np.int64)
        self.avg_index = np.asarray(avg_index, dtype=np.int64)
        self.strength = np.array([p.momentum_strength for p in self.points])
        self.stop_loss = np.array([p.stop_loss for p in self.points])
        self.decision_every = np.array([p.decision_every for p in self.points], dtype=np.int64)
        self.min_trade = np.array([p.min_trade_fraction for p in self.points])

    def run(
        self,
        open_: np.ndarray,
        close: np.ndarray,
        *,
        deposits: np.ndarray | None = None,
        costs: Costs | None = None,
        coins0: float = 0.0,
        fiat0: float = 0.0,
        start: int = 0,
        end: int | None = None,
        engine: str = "numba",
    ) -> SweepResult:
        """Every point over bars [start, end) (numba: in parallel over points)."""
        open_, close = check_prices(open_, close)
        n = close.size
        end = n if end is None else end
        if not 0 <= start < end <= n or self.pmins.shape[1] != n:
            raise StrategyError(f"bar range [{start}, {end}) does not fit the {n} prepared bars")
        dep = check_deposits(deposits, n)
        costs = costs or Costs()
        size = len(self.points)
        value, fills, fees = np.empty(size), np.empty(size, dtype=np.int64), np.empty(size)
        loop = _compiled()["sweep"] if engine == "numba" else _sweep
        loop(
            open_, close, dep, self.pmins, self.pmaxs, self.averages, self.band_index,
            self.avg_index, self.strength, self.stop_loss, self.decision_every, self.min_trade,
            start, end, float(coins0), float(fiat0), self.sell_only, float(costs.fee),
            float(costs.slippage), value, fills, fees,
        )  # fmt: skip
        return SweepResult(self.points, value, fills, fees)


@dataclass(frozen=True)
class WindowScore:
    """Final values of the strategy and the baselines over one window."""

    start: str
    end: str
    strategy: float
    hold: float
    sell_daily: float
    twap: float

    def edge(self, baseline: str) -> float:
        """Strategy final value relative to a baseline's (0.02 = 2 % more)."""
        other = float(getattr(self, baseline))
        return self.strategy / other - 1.0 if other > 0 else math.nan


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: the chosen point and its IS and OOS scores."""

    params: StrategyParams
    in_sample: WindowScore
    out_of_sample: WindowScore


@dataclass
class WalkForwardReport:
    """All folds plus IS-vs-OOS averages of the edge against each baseline."""

    folds: list[Fold] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """Against each baseline, IS and OOS: mean edge per fold, share of folds won, and the
        pooled edge (sum of the strategy's final values over the sum of the baseline's)."""
        out: dict[str, dict[str, float]] = {}
        for side in ("in_sample", "out_of_sample"):
            scores = [getattr(f, side) for f in self.folds]
            for base in ("hold", "sell_daily", "twap"):
                edges = np.array([s.edge(base) for s in scores])
                pooled = sum(s.strategy for s in scores), sum(getattr(s, base) for s in scores)
                out[f"{side}_vs_{base}"] = {
                    "mean_edge": float(np.nanmean(edges)) if edges.size else math.nan,
                    "folds_won": float((edges > 0).mean()) if edges.size else math.nan,
                    "pooled_edge": pooled[0] / pooled[1] - 1.0 if pooled[1] > 0 else math.nan,
                }
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for --json and RESULTS.md)."""
        return {
            "folds": [
                {
                    "params": asdict(f.params),
                    "in_sample": asdict(f.in_sample),
                    "out_of_sample": asdict(f.out_of_sample),
                }
                for f in self.folds
            ],
            "summary": self.summary(),
        }


def walk_forward(
    timestamp: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    points: Sequence[StrategyParams],
    *,
    in_sample_bars: int,
    out_of_sample_bars: int,
    deposits: np.ndarray | None = None,
    costs: Costs | None = None,
    coins0: float = 0.0,
    fiat0: float = 0.0,
    first_bar: int | None = None,
    twap_horizon_bars: int = 24,
) -> WalkForwardReport:
    """Rolling IS optimisation then OOS evaluation (see the module docstring).

    The first fold starts at `first_bar` (default: once the longest indicator window is full).
    """
    if in_sample_bars < 2 or out_of_sample_bars < 2:
        raise StrategyError("in- and out-of-sample windows need at least 2 bars each")
    open_, close = check_prices(open_, close)
    n = close.size
    dep = check_deposits(deposits, n)
    prepared = PreparedSweep(close, points)
    start = max(p.history_bars for p in points) if first_bar is None else first_bar
    report = WalkForwardReport()
    stamps = np.asarray(timestamp).astype("datetime64[s]")
    balances: dict[str, Any] = dict(deposits=dep, costs=costs, coins0=coins0, fiat0=fiat0)
    while start + in_sample_bars + out_of_sample_bars <= n:
        is_end = start + in_sample_bars
        oos_end = is_end + out_of_sample_bars
        sweep = prepared.run(open_, close, start=start, end=is_end, **balances)
        best, best_value = sweep.best()
        oos = prepared.run(open_, close, start=is_end, end=oos_end, **balances)
        oos_value = float(oos.final_value[sweep.points.index(best)])
        scores = []
        for lo, hi, value in ((start, is_end, best_value), (is_end, oos_end, oos_value)):
            base = run_baselines(
                open_, close, stamps, start=lo, end=hi, twap_horizon_bars=twap_horizon_bars,
                twap_every=1, **balances,
            )  # fmt: skip
            scores.append(
                WindowScore(
                    start=str(stamps[lo]),
                    end=str(stamps[hi - 1]),
                    strategy=value,
                    hold=base["hold"].final_value,
                    sell_daily=base["sell_daily"].final_value,
                    twap=base["twap"].final_value,
                )
            )
        report.folds.append(Fold(best, scores[0], scores[1]))
        logger.info(
            "walk-forward fold is=%s..%s oos_edge_vs_hold=%.4f",
            scores[0].start,
            scores[0].end,
            scores[1].edge("hold"),
        )
        start += out_of_sample_bars
    if not report.folds:
        raise StrategyError(
            f"{n} bars are too few for one fold of {in_sample_bars} IS + {out_of_sample_bars} OOS "
            f"bars after {start} warm-up bars"
        )
    return report
