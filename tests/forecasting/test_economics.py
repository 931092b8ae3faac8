"""Economics: halving schedule, hashprice against the shared network file, break-even prices."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from forecasting.economics import (
    EconomicsError,
    break_even_price,
    hashprice_from_difficulty,
    load_network_days,
    model_economics,
    network_day,
    network_file,
    network_hashrate_hs,
    revenue_per_mwh,
    subsidy_btc,
    subsidy_sat,
)


@pytest.mark.parametrize(
    ("height", "btc"),
    [
        (0, 50.0),
        (209_999, 50.0),
        (210_000, 25.0),
        (419_999, 25.0),
        (420_000, 12.5),
        (630_000, 6.25),
        (840_000, 3.125),
        (1_050_000, 1.5625),
    ],
)
def test_halving_schedule(height: int, btc: float) -> None:
    assert subsidy_btc(height) == btc


def test_subsidy_in_whole_satoshis_and_ends() -> None:
    # 10th halving: 50e8 >> 10 = 4882812.5 -> integer shift keeps 4882812 sat, as Bitcoin Core does
    assert subsidy_sat(10 * 210_000) == 4_882_812
    assert subsidy_sat(64 * 210_000) == 0
    with pytest.raises(EconomicsError, match="height"):
        subsidy_sat(-1)


def test_hashrate_from_difficulty() -> None:
    # difficulty 1 = 2^32 hashes per block, one block per 600 s
    assert network_hashrate_hs(1.0) == pytest.approx(2**32 / 600)
    with pytest.raises(EconomicsError, match="difficulty"):
        network_hashrate_hs(0.0)


@pytest.fixture(scope="module")
def network(data_dir: Path) -> dict[date, object]:
    return load_network_days(network_file(data_dir))  # type: ignore[return-value]


# Dates across two halvings; fee-inclusive where the file has fees (2024-02 .. 2025-02).
SUBSIDY_DATES = [date(2017, 6, 1), date(2020, 1, 1), date(2022, 11, 15), date(2025, 3, 8)]
TOTAL_DATES = [date(2024, 4, 21), date(2024, 6, 1), date(2024, 12, 20), date(2025, 1, 15)]


@pytest.mark.parametrize("day", SUBSIDY_DATES)
def test_subsidy_hashprice_matches_network_file(network: dict, day: date) -> None:
    row = network_day(network, day)
    ours = row.hashprice(include_fees=False)
    # same formula from the file's implied difficulty; 1e-6 covers the file's rounding
    assert ours == pytest.approx(row.hashprice_subsidy_published, rel=1e-6)


@pytest.mark.parametrize("day", TOTAL_DATES)
def test_total_hashprice_with_fees_matches_network_file(network: dict, day: date) -> None:
    row = network_day(network, day)
    ours = row.hashprice(include_fees=True)
    assert ours == pytest.approx(row.hashprice_total_published, rel=1e-6)


def test_known_values_jan_2025(network: dict) -> None:
    row = network_day(network, date(2025, 1, 15))
    # SOURCES.md: Jan 2025 about 0.054-0.059 USD/TH/day with fees
    assert 0.054 <= row.hashprice() <= 0.059
    assert row.hashprice() == pytest.approx(0.056386, rel=1e-4)


def test_missing_fees_named(network: dict) -> None:
    row = network_day(network, date(2020, 1, 1))
    with pytest.raises(EconomicsError, match="no fees"):
        row.hashprice(include_fees=True)
    with pytest.raises(EconomicsError, match="no network data for 2030-01-01"):
        network_day(network, date(2030, 1, 1))


def test_hashprice_formula_by_hand() -> None:
    # D = 1.1e14, subsidy 3.125, fees 0.1, price 100k: 3.225*1e5*86400*1e12/(1.1e14*2^32)
    expected = 3.225 * 1e5 * 86400 * 1e12 / (1.1e14 * 2**32)
    assert hashprice_from_difficulty(1.1e14, 3.125, 100_000.0, 0.1) == pytest.approx(expected)


def test_revenue_and_break_even_per_mwh() -> None:
    # 0.05 USD/TH/day at 17.5 J/TH: 1 TH/s uses 0.42 kWh/day -> 0.05/0.00042 = 119.05 USD/MWh
    assert revenue_per_mwh(0.05, 17.5) == pytest.approx(119.047619, rel=1e-6)
    assert break_even_price(0.04, 25.0) == pytest.approx(66.6667, rel=1e-4)
    assert break_even_price(0.05, 25.0, pool_fee=0.02) == pytest.approx(83.3333 * 0.98, rel=1e-4)
    with pytest.raises(EconomicsError, match="J/TH"):
        revenue_per_mwh(0.05, 0.0)


def test_model_economics_row() -> None:
    row = model_economics("Antminer S21", 17.5, 0.05, hashrate_ths=200.0, power_w=3500.0)
    assert row.revenue_usd_per_day == pytest.approx(10.0)
    assert row.break_even_usd_per_mwh == pytest.approx(119.047619, rel=1e-6)
