"""Gradient-boosting day-ahead model: one HistGradientBoostingRegressor over all 24 hours.

One row per (day, hour) with the hour as a feature keeps this to a single fit per recalibration.
Trees cannot extrapolate a price level they have not seen, so the target and the price features
are taken relative to the mean price of day d-1 (the level), which is itself a feature.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

logger = logging.getLogger(__name__)

GBM_WINDOW = 1456  # calibration days
GBM_REFIT_EVERY = 7  # days between refits; forecasts use fresh d-1 features every day
GBM_MAX_ITER = 200
GBM_LOSS = "squared_error"


@dataclass(frozen=True)
class GbmFeatures:
    """Per (day, hour) features for every day of a market: (n_days, 24, n_features), and levels."""

    values: np.ndarray
    level: np.ndarray  # (n_days,) mean price of day d-1
    names: tuple[str, ...]


def gbm_features(price: np.ndarray, exog: np.ndarray, weekday: np.ndarray) -> GbmFeatures:
    """Build the (day, hour) feature cube; rows of the first 7 days are NaN (lags missing)."""
    n_days = price.shape[0]
    nan_day = np.full((1, 24), np.nan)

    def lag(m: np.ndarray, k: int) -> np.ndarray:
        return np.concatenate([np.repeat(nan_day, k, axis=0), m[:-k]], axis=0) if k else m

    p1, p2, p7 = lag(price, 1), lag(price, 2), lag(price, 7)
    level = p1.mean(axis=1)
    rel = level[:, None]
    hours = np.broadcast_to(np.arange(24.0), (n_days, 24))
    cols: list[np.ndarray] = [
        hours,
        np.broadcast_to(weekday[:, None].astype(float), (n_days, 24)),
        np.broadcast_to(rel, (n_days, 24)),
        p1 - rel,
        p2 - rel,
        p7 - rel,
        np.broadcast_to(p1.min(axis=1, keepdims=True) - rel, (n_days, 24)),
        np.broadcast_to(p1.max(axis=1, keepdims=True) - rel, (n_days, 24)),
        np.broadcast_to(p1[:, 23:24] - rel, (n_days, 24)),
        np.broadcast_to(p1.std(axis=1, keepdims=True), (n_days, 24)),
    ]
    names = ["hour", "weekday", "level", "p_d1", "p_d2", "p_d7", "min_d1", "max_d1", "last_d1"]
    names.append("std_d1")
    for k in range(exog.shape[2]):
        e0, e1, e7 = exog[:, :, k], lag(exog[:, :, k], 1), lag(exog[:, :, k], 7)
        day_mean = e0.mean(axis=1, keepdims=True)
        cols.extend(
            [
                e0,
                e0 - e1,
                e0 - e7,
                np.broadcast_to(day_mean, (n_days, 24)),
                e0 - day_mean,
                np.broadcast_to(day_mean - e1.mean(axis=1, keepdims=True), (n_days, 24)),
            ]
        )
        names.extend(
            f"exog{k + 1}_{s}"
            for s in ("d0", "d0_minus_d1", "d0_minus_d7", "mean", "shape", "dmean")
        )
    values = np.stack([np.asarray(c, dtype=float) for c in cols], axis=2)
    values[:7] = np.nan
    return GbmFeatures(values=values, level=level, names=tuple(names))


def make_gbm(seed: int = 0, max_iter: int = GBM_MAX_ITER) -> HistGradientBoostingRegressor:
    """The boosting model used for every market (fixed settings, no per-market tuning)."""
    return HistGradientBoostingRegressor(
        loss=GBM_LOSS,
        learning_rate=0.1,
        max_iter=max_iter,
        max_leaf_nodes=31,
        min_samples_leaf=40,
        l2_regularization=1.0,
        categorical_features=[0, 1],
        early_stopping=False,
        random_state=seed,
    )


@dataclass(frozen=True)
class GbmModel:
    """A fitted booster and the scale of its asinh target."""

    booster: HistGradientBoostingRegressor
    scale: float


def fit_gbm(
    feats: GbmFeatures,
    price: np.ndarray,
    start: int,
    end: int,
    seed: int = 0,
    max_iter: int = GBM_MAX_ITER,
) -> GbmModel:
    """Fit on days [start, end). The target is asinh((price - level) / s), s the window's MAD of
    price - level: squared error on it is fast and as robust to price spikes as an absolute loss."""
    x = feats.values[start:end].reshape(-1, feats.values.shape[2])
    dev = (price[start:end] - feats.level[start:end, None]).reshape(-1)
    scale = float(np.median(np.abs(dev - np.median(dev)))) * 1.4826 or 1.0
    model = make_gbm(seed, max_iter)
    model.fit(x, np.arcsinh(dev / scale))
    return GbmModel(booster=model, scale=scale)


def predict_gbm(model: GbmModel, feats: GbmFeatures, day: int) -> np.ndarray:
    """Forecast the 24 hours of day index ``day``."""
    z = model.booster.predict(feats.values[day])
    return np.asarray(np.sinh(z) * model.scale + feats.level[day], dtype=float)
