"""The full 728-day protocol on Nord Pool against the paper's figures (slow: `make eval`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecasting.evaluate import (
    evaluation_report,
    load_published_forecasts,
    load_reference_metrics,
    run_rolling,
)
from forecasting.prices import epftoolbox_path, load_epftoolbox


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_nord_pool_full_test_period_beats_published_lear(data_dir: Path) -> None:
    folder = data_dir / "electricity" / "epftoolbox"
    dataset = load_epftoolbox(epftoolbox_path(data_dir, "NP"))
    result = run_rolling(dataset)
    report = evaluation_report(
        result,
        load_published_forecasts(folder / "forecasts_paper2021_NP_DNN_LEAR.csv.gz"),
        load_reference_metrics(folder / "reference_metrics_paper2021.csv", "NP"),
    )
    models = report["models"]
    paper = report["published_paper"]
    assert isinstance(models, dict) and isinstance(paper, dict)
    assert result.actual.shape == (728, 24)
    assert models["Combination"]["MAE"] < paper["LEAR Ensemble"]["MAE"]
    assert models["Combination"]["rMAE"] < paper["LEAR Ensemble"]["rMAE"]
    assert 0.7 <= result.coverage() <= 0.9  # p10-p90 band near its nominal 80 %
