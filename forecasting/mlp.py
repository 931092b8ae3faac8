"""Neural-network day-ahead member: a small ensemble of scikit-learn MLPs on the LEAR features.

A diverse third member for the combination, in the spirit of the epftoolbox DNN (one network
with 24 outputs, inputs and targets scaled by the invariant asinh-median transform, early
stopping on a held-out share of the calibration window), without its per-market hyper-parameter
search: one fixed architecture for every market. Several seeds are averaged, since one network's
forecast depends noticeably on its random start. Like the GBM it is refit every few days and
forecasts each day from that day's fresh features.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from forecasting.features import FIRST_USABLE_DAY, FeatureMatrix
from forecasting.lear import AsinhMedianScaler

MLP_WINDOW = 1456  # calibration days
MLP_REFIT_EVERY = 7
MLP_SEEDS: tuple[int, ...] = (0, 1, 2, 3)
MLP_HIDDEN: tuple[int, ...] = (128,)
MLP_MAX_ITER = 300  # epochs at most; early stopping ends most fits well before


def make_mlp(seed: int, hidden: tuple[int, ...] = MLP_HIDDEN) -> MLPRegressor:
    """The network used for every market (fixed settings, chosen before any validation run)."""
    return MLPRegressor(
        hidden_layer_sizes=hidden,
        alpha=1e-3,
        learning_rate_init=1e-3,
        batch_size=64,
        max_iter=MLP_MAX_ITER,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=seed,
    )


@dataclass(frozen=True)
class MlpModel:
    """Fitted networks (one per seed) and the scalers of their inputs and 24 targets."""

    networks: tuple[MLPRegressor, ...]
    x_scaler: AsinhMedianScaler
    y_scaler: AsinhMedianScaler
    n_dummies: int

    def _inputs(self, rows: np.ndarray) -> np.ndarray:
        n_scaled = rows.shape[1] - self.n_dummies
        return np.hstack([self.x_scaler.transform(rows[:, :n_scaled]), rows[:, n_scaled:]])


def fit_mlp(
    features: FeatureMatrix,
    price: np.ndarray,
    start: int,
    end: int,
    seeds: tuple[int, ...] = MLP_SEEDS,
    hidden: tuple[int, ...] = MLP_HIDDEN,
) -> MlpModel:
    """Fit one network per seed on days [start, end): LEAR features (weekday dummies unscaled)
    to the 24 prices of the day, both asinh-median scaled on the window."""
    start = max(start, FIRST_USABLE_DAY)
    if end - start < 14:
        raise ValueError(f"MLP needs at least 14 calibration days, got {end - start}")
    rows = features.values[start:end]
    n_scaled = rows.shape[1] - features.n_dummies
    x_scaler = AsinhMedianScaler.fit(rows[:, :n_scaled])
    y_scaler = AsinhMedianScaler.fit(price[start:end])
    model = MlpModel((), x_scaler, y_scaler, features.n_dummies)
    x = model._inputs(rows)
    y = y_scaler.transform(price[start:end])
    networks = []
    for seed in seeds:
        net = make_mlp(seed, hidden)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(x, y)
        networks.append(net)
    return MlpModel(tuple(networks), x_scaler, y_scaler, features.n_dummies)


def predict_mlp(model: MlpModel, features: FeatureMatrix, day: int) -> np.ndarray:
    """Forecast the 24 hours of day index ``day``: the mean of the networks' scaled outputs,
    transformed back to prices."""
    x = model._inputs(features.values[day : day + 1])
    scaled = np.mean([net.predict(x)[0] for net in model.networks], axis=0)
    return np.asarray(model.y_scaler.inverse(scaled[None, :])[0], dtype=float)
