"""Price loader on the real files, its errors, and the minute series built from real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treasury.price_data import PriceDataError, load_bars, minute_bars_from_hours


def test_load_real_hourly_file(data_dir: Path) -> None:
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz")
    assert len(bars) == 37_387  # data/btc/SOURCES.md
    assert str(bars.timestamp[0]) == "2018-05-15T06:00:00"
    assert (bars.open[0], bars.high[0], bars.low[0], bars.close[0]) == (
        8733.86, 8796.68, 8707.28, 8740.99,
    )  # fmt: skip
    assert bars.volume[0] == 559.93 and bars.bar_seconds == 3600.0
    june = bars.between("2020-06-01", "2020-07-01")
    assert len(june) == 720 and str(june.timestamp[-1]) == "2020-06-30T23:00:00"


def test_bad_files_name_the_fault(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,1,1,1\n")
    with pytest.raises(PriceDataError, match=r"missing column\(s\) \['volume'\]"):
        load_bars(path)
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,1,1,1,1,1\n2024-01-01T01:00:00Z,1,1,1,0,1\n"
    )
    with pytest.raises(
        PriceDataError, match=r"column 'close' row 1 \(2024-01-01T01:00:00Z\) holds '0'"
    ):
        load_bars(path)
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01T01:00:00Z,1,1,1,1,1\n2024-01-01T00:00:00Z,1,1,1,1,1\n"
    )
    with pytest.raises(PriceDataError, match="not strictly increasing at row 1"):
        load_bars(path)
    with pytest.raises(PriceDataError, match="price file not found"):
        load_bars(tmp_path / "absent.csv")


def test_minute_bars_follow_the_real_hours(data_dir: Path) -> None:
    hours = load_bars(data_dir / "btc" / "btcusdt_binance_1h.csv.gz").between(
        "2023-04-01", "2023-04-02"
    )
    minutes = load_bars(data_dir / "btc" / "btcusdt_binance_1m_2024-07.csv.gz")
    built = minute_bars_from_hours(hours, minutes, 1_000)
    assert len(built) == 1_000 and built.bar_seconds == 60.0
    assert str(built.timestamp[0]) == "2023-04-01T00:00:00"
    full = 1_000 // 60
    # each built hour opens and closes at the real hourly prices
    np.testing.assert_allclose(built.close[59 : full * 60 : 60], hours.close[:full], rtol=1e-12)
    np.testing.assert_allclose(built.open[: full * 60 : 60], hours.open[:full], rtol=1e-12)
    assert (built.high >= np.maximum(built.open, built.close)).all()
    assert (built.low <= np.minimum(built.open, built.close)).all()
    np.testing.assert_allclose(
        built.volume[: full * 60].reshape(full, 60).sum(axis=1), hours.volume[:full], rtol=1e-9
    )
    # the intra-hour path moves like a real hour: minute returns are neither flat nor wild
    step = np.abs(np.diff(np.log(built.close)))
    assert 1e-5 < float(np.median(step)) < 5e-3
    with pytest.raises(PriceDataError, match="need 25 hourly bars"):
        minute_bars_from_hours(hours, minutes, 1_500)
