"""farmctl economics and farmctl plan backtest, run in-process through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from forecasting.ercot import ercot_file, load_ercot_hourly

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def test_economics_by_jth_and_hashprice() -> None:
    result = runner.invoke(
        app, ["economics", "--jth", "17.5", "--jth", "25", "--hashprice", "0.05", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    rows = {r["model"]: r for r in out["models"]}
    assert rows["17.5 J/TH"]["break_even_usd_per_mwh"] == pytest.approx(119.047619, rel=1e-6)
    assert rows["25 J/TH"]["revenue_usd_per_mwh"] == pytest.approx(83.333333, rel=1e-6)


def test_economics_for_configured_fleet_on_network_day(data_dir: Path) -> None:
    config = REPO / "config" / "farm.example.toml"
    result = runner.invoke(
        app, ["economics", "--config", str(config), "--date", "2025-01-15", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["date"] == "2025-01-15" and out["includes_fees"] is True
    # the shared network file's hashprice with fees for that day
    assert out["hashprice_usd_per_th_day"] == pytest.approx(0.05638617997, rel=1e-6)
    s21 = next(r for r in out["models"] if r["model"] == "Antminer S21")
    assert s21["j_per_th"] == pytest.approx(17.5)
    assert s21["break_even_usd_per_mwh"] == pytest.approx(0.05638617997e6 / (24 * 17.5), rel=1e-6)
    table = runner.invoke(app, ["economics", "--config", str(config), "--date", "2025-01-15"])
    assert "Antminer S21" in table.output and "with fees" in table.output


def test_economics_errors_are_named() -> None:
    result = runner.invoke(app, ["economics", "--model", "Antminer Z99"])
    assert result.exit_code == 2 and "Antminer Z99" in result.output
    result = runner.invoke(app, ["economics"])
    assert result.exit_code == 2 and "nothing to price" in result.output


@pytest.fixture(scope="module")
def price_file(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real LZ_WEST June-August 2024 as a generic CSV (UTC timestamps, rt and da columns)."""
    frame = load_ercot_hourly(ercot_file(data_dir), "LZ_WEST").frame()
    part = frame.loc["2024-06-01 05:00":"2024-09-01 04:00"].reset_index(names="timestamp")
    path = tmp_path_factory.mktemp("prices") / "lz_west_summer.csv"
    part.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return path


def test_plan_backtest_on_price_file(price_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    args = ["plan", "backtest", "--prices", str(price_file), "--price-col", "rt", "--da-col", "da",
            "--timezone", "America/Chicago", "--start", "2024-08-01", "--refit-months", "1",
            "--jth", "17.5", "--hashprice", "0.05", "--json", "--plot", str(png)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "h-1" in out["information"]
    (r,) = out["results"]
    assert r["hours_scored"] == 31 * 24
    assert r["perfect_margin"] >= r["plan_margin"] > r["always_on_margin"]
    assert 0.5 < r["capture"] <= 1.0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_plan_backtest_day_ahead_tariff_is_nearly_perfect(price_file: Path) -> None:
    """A site paying the published day-ahead price knows it: only the horizon limits the plan."""
    args = ["plan", "backtest", "--prices", str(price_file), "--price-col", "da",
            "--timezone", "America/Chicago", "--start", "2024-08-01", "--jth", "25",
            "--hashprice", "0.04", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)["results"]
    assert r["capture"] > 0.9


def test_plan_backtest_bad_prices_named() -> None:
    result = runner.invoke(app, ["plan", "backtest", "--prices", "/nonexistent.csv"])
    assert result.exit_code == 2 and "/nonexistent.csv" in result.output


def test_plan_show_on_spike_day(data_dir: Path, tmp_path: Path) -> None:
    """The example fleet's plan as of 12:00 on 20 Aug 2024: everything off 18:00-20:00 local,
    when day-ahead LZ_WEST was 202, 673 and 317 USD/MWh; least efficient off first."""
    config = REPO / "config" / "farm.example.toml"
    png = tmp_path / "show.png"
    args = ["plan", "show", "--config", str(config), "--at", "2024-08-20T12:00",
            "--hashprice", "0.05", "--json", "--plot", str(png)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    hours = out["hours"]
    peak = [h for h in hours if h["start"].startswith("2024-08-21T00:00")]  # 19:00 CDT
    assert peak and all(not h["hashing"] for h in peak)
    assert peak[0]["p50"] == pytest.approx(673.32, abs=0.5)  # DA plus a faded RT premium
    at_21 = {h["group"]: h["hashing"] for h in hours if h["start"].startswith("2024-08-21T02:00")}
    assert at_21["17.5J/TH"] is True and at_21["30.5J/TH"] is False  # 88.5 USD/MWh at 21:00
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert any(a["action"] == "curtail" for a in out["actions"])


def test_plan_backtest_epftoolbox_day_ahead_market(data_dir: Path) -> None:
    """EPEX-DE (EUR, converted at --fx): a day-ahead tariff, DST-correct via the epftoolbox loader."""
    args = ["plan", "backtest", "--prices", "epftoolbox:DE", "--fx", "1.1", "--start",
            "2017-11-01", "--jth", "25", "--hashprice", "0.03", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "day-ahead tariff" in out["information"]
    (r,) = out["results"]
    assert r["zone"] == "DE"
    # Nov-Dec 2017: 61 local days of 24 hours (no DST change in that span)
    assert r["hours_scored"] + r["hours_skipped"] == 61 * 24
    assert r["perfect_hours_curtailed"] > 0
    assert r["capture"] == pytest.approx(1.0, abs=0.02)
