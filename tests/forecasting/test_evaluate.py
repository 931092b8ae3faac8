"""Metrics against hand-computed values and the paper's table; DM test on constructed series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forecasting.ensemble import (
    combine,
    conformal_band,
    coverage,
    inverse_mae_weights,
    inverse_mae_weights_per_hour,
)
from forecasting.evaluate import (
    diebold_mariano,
    load_published_forecasts,
    load_reference_metrics,
    mae,
    metric_row,
    rmae,
    rmse,
    smape,
    weekly_naive_mae,
)


def test_metrics_by_hand() -> None:
    actual = np.array([10.0, -5.0, 0.0, 20.0])
    forecast = np.array([12.0, -4.0, 0.0, 16.0])
    assert mae(actual, forecast) == pytest.approx((2 + 1 + 0 + 4) / 4)
    assert rmse(actual, forecast) == pytest.approx(np.sqrt((4 + 1 + 0 + 16) / 4))
    # 2|e|/(|y|+|f|): 4/22, 2/9, 0 (0/0 counts 0), 8/36
    assert smape(actual, forecast) == pytest.approx(100 * (4 / 22 + 2 / 9 + 0 + 8 / 36) / 4)


def test_rmae_uses_weekly_naive_inside_test_period() -> None:
    days = np.arange(10 * 24, dtype=float).reshape(10, 24)  # each day is 24 above the previous
    assert weekly_naive_mae(days) == pytest.approx(7 * 24)
    assert rmae(days, days + 3.0) == pytest.approx(3.0 / (7 * 24))
    with pytest.raises(ValueError, match="more than 7"):
        weekly_naive_mae(days[:7])


def test_metrics_reproduce_the_paper_table(data_dir: Path) -> None:
    folder = data_dir / "electricity" / "epftoolbox"
    for market in ("NP", "DE"):
        published = load_published_forecasts(
            folder / f"forecasts_paper2021_{market}_DNN_LEAR.csv.gz"
        )
        reference = load_reference_metrics(folder / "reference_metrics_paper2021.csv", market)
        actual = published["Real price"].to_numpy().reshape(-1, 24)
        assert actual.shape == (728, 24)
        for model in ("LEAR Ensemble", "DNN Ensemble"):
            ours = metric_row(actual, published[model].to_numpy().reshape(-1, 24))
            for key in ("MAE", "rMAE", "sMAPE", "RMSE"):
                assert ours[key] == pytest.approx(reference[model][key], abs=6e-5), (market, model)


def test_diebold_mariano_on_constructed_series() -> None:
    rng = np.random.default_rng(7)
    actual = rng.normal(50, 10, size=(200, 24))
    good = actual + rng.normal(0, 1, size=actual.shape)
    bad = actual + rng.normal(0, 3, size=actual.shape)
    better = diebold_mariano(actual, bad, good)
    assert better.p_value < 1e-6 and better.statistic > 5
    assert better.hours_significant == 24
    worse = diebold_mariano(actual, good, bad)
    assert worse.p_value > 0.999 and worse.hours_significant == 0
    same = diebold_mariano(actual, good, good)
    assert same.statistic == 0.0 and same.p_value == pytest.approx(0.5)


def test_inverse_mae_weights_and_conformal_band() -> None:
    actual = np.zeros((4, 24))
    weights = inverse_mae_weights({"a": actual + 1.0, "b": actual + 3.0}, actual)
    assert weights["a"] == pytest.approx(0.75) and weights["b"] == pytest.approx(0.25)
    assert inverse_mae_weights({"a": actual[:0], "b": actual[:0]}, actual[:0]) == {
        "a": 0.5,
        "b": 0.5,
    }
    hourly = inverse_mae_weights_per_hour(
        {"a": actual + np.arange(1.0, 25.0), "b": actual + 2.0}, actual
    )
    np.testing.assert_allclose(hourly["a"][:3], [2 / 3, 0.5, 0.4])  # (1/1) / (1/1 + 1/2) ...
    np.testing.assert_allclose(hourly["a"] + hourly["b"], 1.0)
    assert hourly["a"][1] == pytest.approx(0.5) and hourly["b"][23] == pytest.approx(12 / 13)
    even = inverse_mae_weights_per_hour({"a": actual[:0], "b": actual[:0]}, actual[:0])
    np.testing.assert_array_equal(even["a"], np.full(24, 0.5))
    np.testing.assert_allclose(
        combine({"a": np.zeros(24), "b": np.ones(24)}, hourly), hourly["b"], rtol=1e-12
    )
    residuals = np.tile(np.arange(-10.0, 10.0), (24, 1)).T  # 20 days, same spread every hour
    lo, hi = conformal_band(np.full(24, 50.0), residuals)
    assert np.allclose(lo, 50 + np.quantile(np.arange(-10.0, 10.0), 0.1))
    assert np.allclose(hi, 50 + np.quantile(np.arange(-10.0, 10.0), 0.9))
    with pytest.raises(ValueError, match="needs 14 days"):
        conformal_band(np.zeros(24), residuals[:5])
    assert coverage(np.array([1.0, 5.0, 9.0]), np.array([0.0, 6.0, 0.0]), np.full(3, 10.0)) == (
        pytest.approx(2 / 3)
    )
