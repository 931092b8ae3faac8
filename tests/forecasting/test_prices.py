"""Price types, DST conversion (23- and 25-hour days), data-quality policy and the loaders."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.prices import (
    AmbiguousLocalTimeError,
    MissingHoursError,
    NonexistentLocalTimeError,
    PriceDataError,
    PriceKind,
    PriceSeries,
    StaleDataError,
    check_fresh,
    epftoolbox_path,
    hour_ending_to_utc,
    load_csv,
    load_epftoolbox,
    local_day_hours,
    local_to_utc,
    validate_hourly,
)


def _consecutive(index: pd.DatetimeIndex) -> bool:
    return bool((np.diff(index.asi8) == 3_600 * 10**6).all() or (np.diff(index.asi8) == 0).all())


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Europe/Berlin", date(2016, 3, 27), 23),
        ("Europe/Berlin", date(2016, 10, 30), 25),
        ("Europe/Berlin", date(2016, 10, 31), 24),
        ("America/Chicago", date(2024, 3, 10), 23),
        ("America/Chicago", date(2024, 11, 3), 25),
    ],
)
def test_local_day_hours_across_dst(tz: str, day: date, hours: int) -> None:
    index = local_day_hours(day, tz)
    assert len(index) == hours and index.is_unique
    steps = np.diff(index.tz_convert("UTC").as_unit("s").asi8)
    assert (steps == 3600).all()
    assert index[0].tz_convert(tz).hour == 0 and index[-1].tz_convert(tz).hour == 23


def test_ercot_hour_ending_with_dst_flag_on_autumn_day() -> None:
    # ERCOT lists hour ending 02 twice on 2024-11-03; DSTFlag=Y marks the second (standard) one
    he = [1, 2, 2, *range(3, 25)]
    flags = [False, False, True] + [False] * 22
    utc = hour_ending_to_utc(["2024-11-03"] * 25, he, "America/Chicago", flags)
    assert len(utc) == 25 and utc.is_unique
    assert (np.diff(utc.as_unit("s").asi8) == 3600).all()
    assert utc[0] == pd.Timestamp("2024-11-03 05:00", tz="UTC")  # 00:00 CDT
    assert utc[1] == pd.Timestamp("2024-11-03 06:00", tz="UTC")  # 01:00 CDT
    assert utc[2] == pd.Timestamp("2024-11-03 07:00", tz="UTC")  # 01:00 CST
    assert utc[-1] == pd.Timestamp("2024-11-04 05:00", tz="UTC")  # 23:00 CST


def test_ercot_spring_day_skips_hour_ending_three() -> None:
    he = [1, 2, *range(4, 25)]
    utc = hour_ending_to_utc(["2024-03-10"] * 23, he, "America/Chicago")
    assert len(utc) == 23 and (np.diff(utc.as_unit("s").asi8) == 3600).all()
    with pytest.raises(NonexistentLocalTimeError, match="does not exist"):
        hour_ending_to_utc(["2024-03-10"], [3], "America/Chicago")


def test_elapsed_hour_numbering() -> None:
    utc = hour_ending_to_utc(["2024-11-03"] * 25, range(1, 26), "America/Chicago", None, "elapsed")
    assert len(utc) == 25 and (np.diff(utc.as_unit("s").asi8) == 3600).all()
    with pytest.raises(NonexistentLocalTimeError, match="shorter than 24"):
        hour_ending_to_utc(["2024-03-10"], [24], "America/Chicago", None, "elapsed")


def test_repeated_hour_without_flag_needs_order() -> None:
    in_order = pd.DatetimeIndex(["2016-10-30 01:00", "2016-10-30 02:00", "2016-10-30 02:00"])
    utc = local_to_utc(in_order, "Europe/Berlin")
    assert list(utc.hour) == [23, 0, 1] and utc.is_unique
    with pytest.raises(AmbiguousLocalTimeError, match="DST flag"):
        local_to_utc(pd.DatetimeIndex(["2016-10-30 02:00"]), "Europe/Berlin")
    with pytest.raises(NonexistentLocalTimeError):
        local_to_utc(pd.DatetimeIndex(["2016-03-27 02:00"]), "Europe/Berlin")


def test_epftoolbox_loader_real_files(data_dir: Path) -> None:
    nordpool = load_epftoolbox(epftoolbox_path(data_dir, "NP"))
    assert nordpool.n_days == 2184 and nordpool.price.shape == (2184, 24)
    assert nordpool.exog.shape == (2184, 24, 2)
    assert nordpool.exog_names == ("Grid load forecast", "Wind power forecast")
    assert nordpool.price[0, 0] == 31.05 and nordpool.exog[0, 0, 0] == 42497.0
    assert str(nordpool.days[0].date()) == "2013-01-01"
    assert str(nordpool.days[-728].date()) == "2016-12-27"  # first test day
    germany = load_epftoolbox(epftoolbox_path(data_dir, "DE"))
    assert germany.timezone == "Europe/Berlin"
    assert germany.notes["negative_hours"] > 0 and germany.price.min() < 0


def test_epftoolbox_dst_artifacts_become_true_utc_hours(data_dir: Path) -> None:
    germany = load_epftoolbox(epftoolbox_path(data_dir, "DE"))
    series = germany.to_price_series()
    spring_row = germany.price[germany.days.get_loc(pd.Timestamp("2016-03-27"))]
    spring = series.local_day(date(2016, 3, 27))
    assert len(spring) == 23 and not spring.isna().any()
    # the file's interpolated 02:00 slot is dropped; 03:00 keeps its own value, no shift
    assert spring.iloc[1] == spring_row[1] == 3.04 and spring.iloc[2] == spring_row[3] == 6.1
    autumn = series.local_day(date(2016, 10, 30))
    assert len(autumn) == 25
    assert autumn.iloc[2] == 31.55 and np.isnan(autumn.iloc[3])  # second 02:00: explicit gap
    assert autumn.iloc[4] == 31.4
    assert series.prices.index.is_unique and series.prices.isna().sum() == 6  # six autumn days
    assert series.prices.min() < 0  # negative German prices are kept


def test_epftoolbox_loader_rejects_broken_files(tmp_path: Path, data_dir: Path) -> None:
    with gzip.open(epftoolbox_path(data_dir, "FR"), "rt") as handle:
        lines = handle.read().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:50] + lines[51:100]) + "\n")
    with pytest.raises(MissingHoursError, match=r"whole days|hours 0\.\.23"):
        load_epftoolbox(short)
    holes = tmp_path / "nan.csv"
    broken = lines[:49]
    broken[30] = broken[30].split(",")[0] + ",,1,2"
    holes.write_text("\n".join(broken) + "\n")
    with pytest.raises(MissingHoursError, match="NaN or non-numeric"):
        load_epftoolbox(holes)


def _write_csv(path: Path, stamps: list[str], prices: list[str], flags: list[int] | None) -> None:
    rows = ["time,price" + (",first" if flags is not None else "")]
    for i, (ts, p) in enumerate(zip(stamps, prices, strict=True)):
        rows.append(f"{ts},{p}" + (f",{flags[i]}" if flags is not None else ""))
    path.write_text("\n".join(rows) + "\n")


def test_generic_csv_local_time_across_autumn_change(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    stamps = ["2016-10-30 00:00", "2016-10-30 01:00", "2016-10-30 02:00", "2016-10-30 02:00",
              "2016-10-30 03:00"]  # fmt: skip
    _write_csv(path, stamps, ["30", "-5.5", "20", "21", "22"], [1, 1, 1, 0, 1])
    series = load_csv(
        path, timestamp_col="time", price_col="price", tz="Europe/Berlin", dst_flag_col="first"
    )
    assert len(series.prices) == 5 and series.prices.index.is_unique
    assert series.prices.iloc[1] == -5.5
    assert series.prices.index[2] == pd.Timestamp("2016-10-30 00:00", tz="UTC")
    assert series.prices.index[3] == pd.Timestamp("2016-10-30 01:00", tz="UTC")


def test_generic_csv_gap_policy(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    _write_csv(path, ["2024-01-01T00:00Z", "2024-01-01T01:00Z", "2024-01-01T03:00Z"],
               ["1", "", "3"], None)  # fmt: skip
    with pytest.raises(MissingHoursError, match="2 missing or NaN hours"):
        load_csv(path, timestamp_col="time", price_col="price")
    kept = load_csv(path, timestamp_col="time", price_col="price", gaps="keep")
    assert len(kept.prices) == 4 and kept.prices.isna().sum() == 2
    assert list(kept.gaps()) == [
        pd.Timestamp("2024-01-01 01:00", tz="UTC"),
        pd.Timestamp("2024-01-01 02:00", tz="UTC"),
    ]
    bad = tmp_path / "bad.csv"
    _write_csv(bad, ["2024-01-01T00:00Z"], ["n/a"], None)
    with pytest.raises(PriceDataError, match="non-numeric price 'n/a'"):
        load_csv(bad, timestamp_col="time", price_col="price")
    with pytest.raises(PriceDataError, match="no column 'eur'"):
        load_csv(path, timestamp_col="time", price_col="eur")


def test_series_invariants_and_staleness() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    series = PriceSeries("ERCOT", "LZ_WEST", PriceKind.REAL_TIME, "America/Chicago", "USD",
                         pd.Series([10.0, -31.7, 3059.6], index=index))  # fmt: skip
    check_fresh(series, datetime(2024, 1, 1, 3, tzinfo=UTC), timedelta(hours=2))
    with pytest.raises(StaleDataError, match="more than the allowed"):
        check_fresh(series, datetime(2024, 1, 2, tzinfo=UTC), timedelta(hours=6))
    with pytest.raises(PriceDataError, match="must be UTC"):
        PriceSeries("X", "Y", PriceKind.DAY_AHEAD, "Europe/Berlin", "EUR",
                    pd.Series([1.0], index=index[:1].tz_convert("Europe/Berlin")))  # fmt: skip
    with pytest.raises(PriceDataError, match="duplicate"):
        validate_hourly(pd.Series([1.0, 2.0], index=index[[0, 0]]))
