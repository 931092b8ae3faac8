"""Short-horizon real-time price forecaster for sites that pay real-time prices (e.g. ERCOT RT).

The forecast for hour h uses only what is known before h starts: the real-time hourly prices up
to h-1 and the day-ahead prices (published the day before, so known for h and h+1). Features:

* ``da``, ``da_next``, ``da_prev``: day-ahead price of h, h+1, h-1;
* ``rt_1``, ``rt_2``, ``rt_24``: real-time price of h-1, h-2, h-24;
* ``ratio``: the day-ahead price of h scaled by how far real time ran above or below day-ahead in
  h-1, ``da x clip(rt_1 / max(da_prev, 1), 0.3, 3)`` (real-time premiums persist for hours);
* ``hour``: local hour of day.

Models are scikit-learn ``HistGradientBoostingRegressor`` (squared error for the mean, quantile
loss for p10 and p90). The point forecast p50 averages the boosted mean with the ``ratio``
rule, which is steadier in price spikes the trees have seen rarely. Walk-forward use refits on
all hours before each refit date (expanding window), so no forecast sees its own future.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

FEATURES = ("da", "da_next", "da_prev", "rt_1", "rt_2", "rt_24", "ratio", "hour")
RATIO_CLIP = (0.3, 3.0)


class RtForecastError(ValueError):
    """The real-time forecaster cannot run on the data given (too little history, bad index)."""


def ratio_rule(da: np.ndarray, da_prev: np.ndarray, rt_prev: np.ndarray) -> np.ndarray:
    """Day-ahead price scaled by the last hour's real-time / day-ahead ratio (DA when unknown)."""
    ratio = np.clip(rt_prev / np.maximum(da_prev, 1.0), *RATIO_CLIP)
    out = da * ratio
    return np.where(np.isnan(out), da, out)


def rt_features(da: pd.Series, rt: pd.Series, timezone: str) -> pd.DataFrame:
    """Feature rows for every hour of the grid; row h uses only information available before h.

    ``da`` and ``rt`` share one hourly UTC grid (gaps as NaN; the trees handle NaN features).
    """
    if not da.index.equals(rt.index):
        raise RtForecastError("day-ahead and real-time series must share one hourly index")
    d = da.to_numpy(dtype=float)
    r = rt.to_numpy(dtype=float)

    def shift(x: np.ndarray, k: int) -> np.ndarray:
        out = np.full_like(x, np.nan)
        if k > 0:
            out[k:] = x[:-k]
        else:
            out[:k] = x[-k:]
        return out

    da_prev, rt_1 = shift(d, 1), shift(r, 1)
    hours = pd.DatetimeIndex(da.index).tz_convert(timezone).hour
    return pd.DataFrame(
        {
            "da": d,
            "da_next": shift(d, -1),
            "da_prev": da_prev,
            "rt_1": rt_1,
            "rt_2": shift(r, 2),
            "rt_24": shift(r, 24),
            "ratio": ratio_rule(d, da_prev, rt_1),
            "hour": np.asarray(hours, dtype=float),
        },
        index=da.index,
    )


@dataclass
class RtForecaster:
    """One-hour-ahead real-time price model with p10/p50/p90."""

    max_iter: int = 100
    learning_rate: float = 0.05
    random_state: int = 0
    _models: dict[str, HistGradientBoostingRegressor] = field(default_factory=dict)

    def fit(self, features: pd.DataFrame, target: pd.Series) -> RtForecaster:
        """Fit the mean and the 10 % / 90 % quantile models on rows with a known target."""
        y = target.to_numpy(dtype=float)
        keep = ~np.isnan(y) & ~np.isnan(features["da"].to_numpy(dtype=float))
        if keep.sum() < 24 * 14:
            raise RtForecastError(f"need at least 14 days of history to fit, got {keep.sum()} h")
        x = features.loc[keep, list(FEATURES)].to_numpy(dtype=float)
        y = y[keep]
        specs: dict[str, dict[str, Any]] = {
            "mean": {"loss": "squared_error"},
            "p10": {"loss": "quantile", "quantile": 0.1},
            "p90": {"loss": "quantile", "quantile": 0.9},
        }
        self._models = {}
        # One OpenMP thread: on a shared 2-core gateway, oversubscribed threads spin-wait and
        # made fitting 40x slower than a single thread.
        with threadpool_limits(limits=1, user_api="openmp"):
            self._fit_all(specs, x, y)
        return self

    def _fit_all(self, specs: dict[str, dict[str, Any]], x: np.ndarray, y: np.ndarray) -> None:
        for name, spec in specs.items():
            model = HistGradientBoostingRegressor(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                random_state=self.random_state,
                **spec,
            )
            self._models[name] = model.fit(x, y)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Columns p10, p50, p90 (sorted so p10 <= p50 <= p90) for each feature row."""
        if not self._models:
            raise RtForecastError("forecaster is not fitted")
        x = features[list(FEATURES)].to_numpy(dtype=float)
        with threadpool_limits(limits=1, user_api="openmp"):
            mean = self._models["mean"].predict(x)
            low = self._models["p10"].predict(x)
            high = self._models["p90"].predict(x)
        rule = features["ratio"].to_numpy(dtype=float)
        p50 = np.where(np.isnan(rule), mean, 0.5 * (mean + rule))
        lo = np.minimum(low, p50)
        hi = np.maximum(high, p50)
        return pd.DataFrame({"p10": lo, "p50": p50, "p90": hi}, index=features.index)


def walk_forward(
    da: pd.Series,
    rt: pd.Series,
    start: pd.Timestamp,
    timezone: str,
    forecaster: RtForecaster | None = None,
    refit_months: int = 3,
) -> pd.DataFrame:
    """One-hour-ahead forecasts for every hour from ``start``, refitting every ``refit_months``
    local months on all earlier hours (expanding window). Returns p10/p50/p90 from ``start``."""
    feats = rt_features(da, rt, timezone)
    index = pd.DatetimeIndex(feats.index)
    start = pd.Timestamp(start)
    if start <= index[0]:
        raise RtForecastError(f"walk-forward start {start} leaves no history before it")
    model = forecaster or RtForecaster()
    local = index.tz_convert(timezone)
    if refit_months < 1:
        raise RtForecastError(f"refit_months must be >= 1, got {refit_months}")
    month_key = np.asarray((local.year * 12 + local.month - 1) // refit_months)
    test = index >= start
    pieces: list[pd.DataFrame] = []
    for key in np.unique(month_key[test]):
        rows = test & (month_key == key)
        first = index[rows][0]
        train = index < first
        model.fit(feats.loc[train], rt.loc[train])
        pieces.append(model.predict(feats.loc[rows]))
        logger.debug("rt forecast refit month=%s train_hours=%d", first, int(train.sum()))
    out = pd.concat(pieces).sort_index()
    logger.info("rt walk-forward hours=%d refits=%d from=%s", len(out), len(pieces), start)
    return out


def horizon_forecast(
    one_step: pd.Series,
    day_ahead: pd.Series,
    premium_half_life_hours: float = 1.0,
) -> pd.DataFrame:
    """Forecast from hour h (the one-step row: p10, p50, p90) over the day-ahead hours after it.

    Beyond h the real-time premium over day-ahead seen in the one-step forecast fades with the
    given half-life; the spread does too, down to the day-ahead price itself.
    ``day_ahead`` starts at h and ends at the last published day-ahead hour.
    """
    if day_ahead.empty:
        raise RtForecastError("no day-ahead prices for the horizon")
    step = np.array([float(one_step["p10"]), float(one_step["p50"]), float(one_step["p90"])])
    arr = horizon_arrays(step, day_ahead.to_numpy(dtype=float), premium_half_life_hours)
    return pd.DataFrame(arr.T, columns=["p10", "p50", "p90"], index=day_ahead.index)


def horizon_arrays(
    one_step: np.ndarray, day_ahead: np.ndarray, premium_half_life_hours: float = 1.0
) -> np.ndarray:
    """Array form of :func:`horizon_forecast`: ``one_step`` = [p10, p50, p90] for the first hour,
    ``day_ahead`` the horizon's day-ahead prices; returns shape (3, n)."""
    steps = np.arange(day_ahead.shape[0], dtype=float)
    fade = 0.5 ** (steps / premium_half_life_hours)
    return day_ahead[None, :] + (one_step[:, None] - day_ahead[0]) * fade[None, :]
