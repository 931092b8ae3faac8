"""farmctl forecast prices import / evaluate argument handling, on real files and SQLite."""

from __future__ import annotations

import gzip
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from forecasting.tables import Base

runner = CliRunner()


def test_import_generic_csv_twice_is_idempotent(tmp_path: Path) -> None:
    csv = tmp_path / "da.csv"
    csv.write_text(
        "timestamp,price\n"
        "2016-03-27 00:00,7.33\n2016-03-27 01:00,3.04\n2016-03-27 03:00,-6.1\n"
        "2016-03-27 04:00,4.02\n"
    )
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    args = ["forecast", "prices", "import", "--csv", str(csv), "--tz", "Europe/Berlin"]
    args += ["--zone", "DE", "--db", url]
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "stored 4 hours" in result.output and "negative hours 1" in result.output
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select ts, price from electricity_price order by ts")).all()
    engine.dispose()
    assert len(rows) == 4
    # local 03:00 CEST directly follows 01:00 CET: consecutive UTC hours 23, 0, 1, 2
    assert [str(r.ts)[11:13] for r in rows] == ["23", "00", "01", "02"]


def test_import_refuses_nonexistent_local_hour(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("timestamp,price\n2016-03-27 02:00,4.57\n")
    result = runner.invoke(
        app,
        ["forecast", "prices", "import", "--csv", str(csv), "--tz", "Europe/Berlin",
         "--db", f"sqlite:///{tmp_path / 'x.db'}"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "does not exist in Europe/Berlin" in result.output


def test_import_needs_the_table(tmp_path: Path) -> None:
    csv = tmp_path / "ok.csv"
    csv.write_text("timestamp,price\n2024-01-01T00:00Z,1\n")
    result = runner.invoke(
        app,
        [
            "forecast",
            "prices",
            "import",
            "--csv",
            str(csv),
            "--db",
            f"sqlite:///{tmp_path / 'e.db'}",
        ],
    )
    assert result.exit_code == 2 and "farmctl db upgrade" in result.output


def test_evaluate_rejects_unknown_market_and_short_file(tmp_path: Path, data_dir: Path) -> None:
    result = runner.invoke(app, ["forecast", "evaluate", "--market", "XX"])
    assert result.exit_code != 0 and "unknown market" in result.output
    with gzip.open(data_dir / "electricity" / "epftoolbox" / "NP.csv.gz", "rt") as handle:
        head = handle.read().splitlines()[: 1 + 24 * 400]
    short = tmp_path / "short.csv"
    short.write_text("\n".join(head) + "\n")
    result = runner.invoke(app, ["forecast", "evaluate", "--csv", str(short), "--days", "8"])
    assert result.exit_code == 2
    assert "days before the test period" in result.output
