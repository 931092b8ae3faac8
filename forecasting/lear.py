"""LEAR day-ahead model: one LASSO per hour on asinh-median scaled data, ensembled over windows.

Follows Lago et al. (2021): for every target hour a LASSO over the same 247 features (prices
d-1, d-2, d-3, d-7; exogenous d, d-1, d-7; weekday dummies), the penalty chosen by the Akaike
criterion along the LARS path, data scaled by the "invariant" asinh-median transform, and the
forecast averaged over calibration windows of 56, 84, 1092 and 1456 days.

Speed: the 24 hour models share one design matrix, so the Gram matrix is formed once per
(day, window); the AIC search over penalties and the final fit are coordinate descent on that
Gram (compiled with numba), warm-started from the larger penalty and from yesterday's fit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

logger = logging.getLogger(__name__)

LEAR_WINDOWS: tuple[int, ...] = (56, 84, 1092, 1456)
WINDOW_LAG_DAYS = 7  # first days of a calibration window that only feed the d-7 lags
_MAD_TO_STD = 1.4826  # MAD of a normal sample times this estimates its standard deviation
_EPS = 1e-9
CD_TOL = 1e-3  # coordinate-descent stop: largest coefficient step / ||y||, ample for forecasts
AIC_GRID = 40  # penalties from max|X'y| down three decades
AIC_PATIENCE = 8  # grid points without a better AIC before the search stops


@dataclass(frozen=True)
class AsinhMedianScaler:
    """The "invariant" transform: ``asinh((x - median) / MAD)`` per column, and its inverse."""

    median: np.ndarray
    mad: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> AsinhMedianScaler:
        """Median and (normal-consistent) MAD per column; a zero MAD falls back to the std or 1."""
        median = np.median(values, axis=0)
        mad = np.median(np.abs(values - median), axis=0) * _MAD_TO_STD
        std = values.std(axis=0)
        mad = np.where(mad > _EPS, mad, np.where(std > _EPS, std, 1.0))
        return cls(median=median, mad=mad)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale then asinh."""
        return np.arcsinh((values - self.median) / self.mad)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """sinh then unscale: exact inverse of :meth:`transform`."""
        return np.sinh(scaled) * self.mad + self.median


@njit(cache=True)
def _cd_sweep(
    gram: np.ndarray,
    xy: np.ndarray,
    lam: float,
    coef: np.ndarray,
    gb: np.ndarray,
    active_only: bool,
) -> float:
    """One coordinate-descent pass; returns the largest scaled coefficient step."""
    p = xy.shape[0]
    max_step = 0.0
    for j in range(p):
        if active_only and coef[j] == 0.0:
            continue
        gjj = gram[j, j]
        if gjj <= 1e-12:
            continue
        old = coef[j]
        rho = xy[j] - gb[j] + gjj * old
        if rho > lam:
            new = (rho - lam) / gjj
        elif rho < -lam:
            new = (rho + lam) / gjj
        else:
            new = 0.0
        if new != old:
            delta = new - old
            for k in range(p):
                gb[k] += delta * gram[j, k]
            coef[j] = new
            step = abs(delta) * np.sqrt(gjj)
            if step > max_step:
                max_step = step
    return max_step


@njit(cache=True)
def _lasso_cd_gram(
    gram: np.ndarray,
    xy: np.ndarray,
    lam: float,
    coef: np.ndarray,
    yy: float,
    max_sweeps: int,
    tol: float,
) -> int:
    """Coordinate descent for min 1/2 b'Gb - b'Xy + lam |b|_1, warm-started in place in ``coef``.

    Active-set strategy: sweep the non-zero coefficients until they settle, then one full sweep
    to let others in; done when a full sweep moves nothing more than ``tol``.
    """
    gb = gram @ coef
    limit = tol * np.sqrt(max(yy, 1e-300))
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        if _cd_sweep(gram, xy, lam, coef, gb, False) < limit:
            return sweeps
        while sweeps < max_sweeps:
            sweeps += 1
            if _cd_sweep(gram, xy, lam, coef, gb, True) < limit:
                break
    return sweeps


@njit(cache=True)
def _aic_penalty(
    gram: np.ndarray,
    xy: np.ndarray,
    yy: float,
    y_var: float,
    n_grid: int,
    patience: int,
    tol: float,
) -> float:
    """The AIC-best LASSO penalty on a log grid, warm-started from the largest penalty down.

    AIC = RSS / var(y) + 2 df (df = non-zero coefficients), the criterion LassoLarsIC used when
    epftoolbox was published; the search stops after ``patience`` grid points without a new best.
    """
    p = xy.shape[0]
    lam_max = np.max(np.abs(xy))
    coef = np.zeros(p)
    best_aic = yy / max(y_var, 1e-12)  # the empty model
    best_lam = lam_max
    since_best = 0
    for i in range(1, n_grid + 1):
        lam = lam_max * 10.0 ** (-3.0 * i / n_grid)
        _lasso_cd_gram(gram, xy, lam, coef, yy, 2000, tol)
        gb = gram @ coef
        rss = yy - 2.0 * np.dot(xy, coef) + np.dot(coef, gb)
        df = 0
        for j in range(p):
            if coef[j] != 0.0:
                df += 1
        aic = max(rss, 0.0) / max(y_var, 1e-12) + 2.0 * df
        if aic < best_aic:
            best_aic = aic
            best_lam = lam
            since_best = 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    return best_lam


def fit_predict_lear_day(
    features: np.ndarray,
    targets: np.ndarray,
    x_next: np.ndarray,
    n_dummies: int,
    warm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrate 24 hourly LASSOs on (features, targets) and forecast the 24 hours of ``x_next``.

    ``features`` (n, p), ``targets`` (n, 24), ``x_next`` (p,); the last ``n_dummies`` feature
    columns are weekday dummies and are not scaled. The penalty of each hour is chosen by AIC on
    column-normalised data and then applied to the un-normalised scaled data, as the published
    LEAR did (LassoLarsIC with normalisation for the penalty, then Lasso without). ``warm`` (p, 24)
    are yesterday's coefficients to start from. Returns (24 forecasts, coefficients (p, 24)).
    """
    p = features.shape[1]
    n_scaled = p - n_dummies
    x_scaler = AsinhMedianScaler.fit(features[:, :n_scaled])
    y_scaler = AsinhMedianScaler.fit(targets)
    x = np.empty_like(features)
    x[:, :n_scaled] = x_scaler.transform(features[:, :n_scaled])
    x[:, n_scaled:] = features[:, n_scaled:]
    xn = np.empty(p)
    xn[:n_scaled] = x_scaler.transform(x_next[:n_scaled])
    xn[n_scaled:] = x_next[n_scaled:]
    y = y_scaler.transform(targets)

    x_mean = x.mean(axis=0)
    xc = x - x_mean
    gram_raw = xc.T @ xc
    norms = np.sqrt(np.diag(gram_raw)).copy()
    norms[norms < _EPS] = 1.0  # a constant column stays at zero
    gram_norm = gram_raw / np.outer(norms, norms)
    y_mean = y.mean(axis=0)
    yc = y - y_mean
    xy_raw = xc.T @ yc  # (p, 24)
    xy_norm = xy_raw / norms[:, None]
    yy_all = (yc**2).sum(axis=0)
    y_var = yc.var(axis=0)

    coefs = np.zeros((p, 24)) if warm is None else warm.copy()
    x_next_c = xn - x_mean
    scaled_forecast = np.empty(24)
    for hour in range(24):
        lam = _aic_penalty(
            gram_norm,
            np.ascontiguousarray(xy_norm[:, hour]),
            float(yy_all[hour]),
            float(y_var[hour]),
            AIC_GRID,
            AIC_PATIENCE,
            CD_TOL,
        )
        coef = np.ascontiguousarray(coefs[:, hour])
        _lasso_cd_gram(
            gram_raw, np.ascontiguousarray(xy_raw[:, hour]), lam, coef, yy_all[hour], 5000, CD_TOL
        )
        coefs[:, hour] = coef
        scaled_forecast[hour] = y_mean[hour] + x_next_c @ coef
    return y_scaler.inverse(scaled_forecast[None, :])[0], coefs


def lear_forecast_day(
    feature_values: np.ndarray,
    price: np.ndarray,
    day: int,
    windows: Sequence[int] = LEAR_WINDOWS,
    n_dummies: int = 7,
    first_usable: int = 7,
    warm: dict[int, np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Forecast day index ``day`` once per calibration window, using only days before it.

    As in epftoolbox, a window of W days is the last W days of data before ``day``, whose first
    week only supplies the lags of the second: it trains on W - 7 target days (49 for 56, 1449 for
    1456). Returns {window: 24 prices}. A window longer than the history available is clipped to
    it. ``warm`` ({window: coefficients}) is read and updated in place to speed up the next day.
    """
    out: dict[int, np.ndarray] = {}
    for window in windows:
        start = max(first_usable, day - window + WINDOW_LAG_DAYS)
        if day - start < 14:
            raise ValueError(f"day {day}: only {day - start} calibration days for window {window}")
        prior = None if warm is None else warm.get(window)
        out[window], coefs = fit_predict_lear_day(
            feature_values[start:day], price[start:day], feature_values[day], n_dummies, prior
        )
        if warm is not None:
            warm[window] = coefs
    return out
