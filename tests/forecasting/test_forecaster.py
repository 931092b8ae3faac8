"""LEAR, GBM and the rolling protocol on short slices of the real epftoolbox data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forecasting.evaluate import evaluation_report, load_published_forecasts, run_rolling
from forecasting.features import lear_features
from forecasting.gbm import fit_gbm, gbm_features, predict_gbm
from forecasting.lear import AsinhMedianScaler, lear_forecast_day
from forecasting.prices import EpfDataset, epftoolbox_path, load_epftoolbox


@pytest.fixture(scope="module")
def np_data(data_dir: Path) -> EpfDataset:
    return load_epftoolbox(epftoolbox_path(data_dir, "NP"))


def test_asinh_median_scaler_round_trips(np_data: EpfDataset) -> None:
    prices = np_data.price[:400]
    scaler = AsinhMedianScaler.fit(prices)
    scaled = scaler.transform(prices)
    assert np.allclose(np.median(scaled, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse(scaled), prices, rtol=1e-10, atol=1e-9)


def test_lear_features_match_the_epftoolbox_layout(np_data: EpfDataset) -> None:
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    assert feats.values.shape == (np_data.n_days, 247)
    day = 100
    row = feats.values[day]
    np.testing.assert_array_equal(row[:24], np_data.price[day - 1])
    np.testing.assert_array_equal(row[72:96], np_data.price[day - 7])
    np.testing.assert_array_equal(row[96:120], np_data.exog[day, :, 0])  # exogenous of day d
    assert row[-7:].sum() == 1.0 and row[-7 + np_data.days[day].day_of_week] == 1.0
    assert np.isnan(feats.values[6]).all()


def test_lear_beats_weekly_naive_on_first_test_days(np_data: EpfDataset) -> None:
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    first_test = np_data.n_days - 728
    errors, naive = [], []
    warm: dict[int, np.ndarray] = {}
    for day in (first_test, first_test + 1):
        out = lear_forecast_day(feats.values, np_data.price, day, windows=(56, 84), warm=warm)
        assert set(out) == {56, 84} and all(f.shape == (24,) for f in out.values())
        ensemble = np.mean(list(out.values()), axis=0)
        errors.append(np.abs(ensemble - np_data.price[day]).mean())
        naive.append(np.abs(np_data.price[day - 7] - np_data.price[day]).mean())
    assert set(warm) == {56, 84} and warm[56].shape == (247, 24)
    assert np.mean(errors) < np.mean(naive)
    assert np.mean(errors) < 3.0  # EUR/MWh on NP's first two test days (naive: ~5)


def test_gbm_forecast_beats_weekly_naive(np_data: EpfDataset) -> None:
    feats = gbm_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    first_test = np_data.n_days - 728
    model = fit_gbm(feats, np_data.price, first_test - 364, first_test, max_iter=60)
    errors, naive = [], []
    for day in range(first_test, first_test + 7):
        forecast = predict_gbm(model, feats, day)
        assert forecast.shape == (24,) and np.isfinite(forecast).all()
        errors.append(np.abs(forecast - np_data.price[day]).mean())
        naive.append(np.abs(np_data.price[day - 7] - np_data.price[day]).mean())
    assert np.mean(errors) < np.mean(naive)


def test_rolling_protocol_short_run(np_data: EpfDataset, data_dir: Path) -> None:
    result = run_rolling(
        np_data,
        n_days=8,
        windows=(56, 84),
        warmup_days=14,
        gbm_window=364,
        gbm_refit_every=30,
        gbm_max_iter=60,
    )
    assert result.actual.shape == (8, 24)
    assert str(result.days[0].date()) == "2016-12-27"  # first test day of NP in the paper
    for name in ("LEAR 56", "LEAR 84", "LEAR Ensemble", "GBM", "Combination"):
        assert result.forecasts[name].shape == (8, 24)
        assert np.isfinite(result.forecasts[name]).all()
    assert (result.p10 <= result.p90).all()
    assert 0.0 <= result.coverage() <= 1.0
    published = load_published_forecasts(
        data_dir / "electricity" / "epftoolbox" / "forecasts_paper2021_NP_DNN_LEAR.csv.gz"
    )
    report = evaluation_report(result, published)
    models = report["models"]
    assert isinstance(models, dict)
    assert models["Combination"]["rMAE"] < 1.0  # better than the weekly naive
    frame = result.to_frame()
    assert len(frame) == 8 * 24 and {"actual", "p10", "p90", "Combination"} <= set(frame.columns)
