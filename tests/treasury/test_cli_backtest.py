"""`farmctl treasury backtest` end to end on the real hourly file (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app

runner = CliRunner()


def test_backtest_json_and_png(data_dir: Path, tmp_path: Path) -> None:
    prices = data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz"
    png = tmp_path / "bt.png"
    result = runner.invoke(
        app,
        [
            "treasury", "backtest", "--prices", str(prices), "--json", "--plot", str(png),
            "--hashrate-ths", "10000", "--start", "2021-01-01", "--end", "2021-03-01",
            "--network", str(data_dir / "bitcoin-network"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) >= {"prices", "bars", "period", "params", "costs", "inflow", "results", "plot"}
    assert out["bars"] == 1416  # 59 days of hourly bars
    assert out["period"] == {"start": "2021-01-01T00:00:00", "end": "2021-02-28T23:00:00"}
    assert set(out["results"]) == {"strategy", "hold", "sell_daily", "twap"}
    for metrics in out["results"].values():
        assert set(metrics) >= {
            "final_value", "total_return", "max_drawdown", "sharpe", "trades", "fees",
            "average_sell_price", "vwap", "sell_vs_vwap",
        }  # fmt: skip
    hold = out["results"]["hold"]
    # a 10 PH/s fleet mined ~0.07 BTC/day in early 2021; hold keeps them all
    assert 3.0 < out["inflow"]["coins"] < 6.0
    assert hold["trades"] == 0 and hold["final_value"] > 0
    assert out["results"]["sell_daily"]["trades"] == 58
    assert out["results"]["strategy"]["trades"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_backtest_table_and_errors(data_dir: Path, tmp_path: Path) -> None:
    prices = data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz"
    ok = runner.invoke(
        app,
        [
            "treasury", "backtest", "--prices", str(prices), "--coins", "2", "--mode", "two_way",
            "--start", "2020-03-01", "--end", "2020-04-01", "--plot", str(tmp_path / "p.png"),
        ],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "strategy" in ok.output and "sell_daily" in ok.output
    bad = runner.invoke(
        app, ["treasury", "backtest", "--prices", str(prices), "--coins", "1", "--mode", "both"]
    )
    assert bad.exit_code == 2 and "mode='both'" in bad.output
    missing = runner.invoke(
        app, ["treasury", "backtest", "--prices", str(tmp_path / "none.csv"), "--coins", "1"]
    )
    assert missing.exit_code == 2 and "price file not found" in missing.output
    both = runner.invoke(
        app,
        [
            "treasury", "backtest", "--prices", str(prices), "--hashrate-ths", "1",
            "--deposits", str(tmp_path / "d.csv"),
        ],
    )  # fmt: skip
    assert both.exit_code == 2 and "either --hashrate-ths or --deposits" in both.output


def test_backtest_with_prices_only(data_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    prices = data_dir / "btc" / "btceur_kraken_1h.csv.gz"
    result = runner.invoke(app, ["treasury", "backtest", "--prices", str(prices), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["initial"] == {"coins": 1.0, "fiat": 0.0}
    assert out["bars"] == 30_537  # data/btc/SOURCES.md
    # holding the coin is worth the last Kraken close, 2020-12-25 00:00: 19426.8 EUR
    assert out["results"]["hold"]["final_value"] == pytest.approx(19426.8)
    assert (tmp_path / "backtest.png").stat().st_size > 10_000
