"""The rig model catalog: at least 30 models, figures consistent, tolerant lookup, no wrong guesses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hardware
from controller.cli.main import app


def test_catalog_has_at_least_30_consistent_models() -> None:
    models = hardware.catalog()
    assert len(models) >= 30
    assert len({m.model for m in models}) == len(models)
    for m in models:
        assert m.hashrate_ths > 0 and m.power_w > 0 and m.source
        # J/TH is power over hashrate; vendor sheets round, so allow 3 %.
        assert m.efficiency_jth == pytest.approx(m.power_w / m.hashrate_ths, rel=0.03), m.model
        assert m.cooling in {"air", "hydro", "immersion"}


def test_catalog_agrees_with_the_shared_asic_specs(data_dir: Path) -> None:
    with (data_dir / "asic_models.csv").open() as f:
        shared = {row["model"].split(" (")[0]: row for row in csv.DictReader(f)}
    assert len(shared) >= 30
    for name, row in shared.items():
        model = hardware.lookup(name)
        assert model is not None, name
        assert model.hashrate_ths == float(row["hashrate_ths"])
        assert model.power_w == float(row["power_w"])


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("Antminer S19j Pro", "Antminer S19j Pro"),
        ("S19J_PRO", "Antminer S19j Pro"),
        ("antminer_s19jpro", "Antminer S19j Pro"),
        ("S19JPRO", "Antminer S19j Pro"),
        ("Antminer S9 (vnish 3.8.6)", "Antminer S9"),
        ("Antminer S17 Pro", "Antminer S17 Pro"),
        ("M50S.VH30", "Whatsminer M50S"),
        ("M30S+VE40", "Whatsminer M30S+"),
        ("WhatsMiner M30S++", "Whatsminer M30S++"),
        ("Avalon1366", "Avalon A1366"),
        ("AvalonMiner 1246", "Avalon A1246"),
        ("BM1368", "Bitaxe Supra"),
        ("S21 Plus", "Antminer S21+"),
        ("Antminer S21 XP Hydro", "Antminer S21 XP Hyd"),
    ],
)
def test_lookup_tolerates_firmware_spellings(reported: str, expected: str) -> None:
    model = hardware.lookup(reported)
    assert model is not None and model.model == expected


@pytest.mark.parametrize(
    "unknown", ["Antminer L3+", "S19j", "S19 Pro Max", "Antminer S23", "", None]
)
def test_lookup_returns_nothing_for_unknown_names(unknown: str | None) -> None:
    assert hardware.lookup(unknown) is None


def test_layout_figures() -> None:
    s19pro = hardware.lookup("S19 Pro")
    assert s19pro is not None
    assert (s19pro.hashboards, s19pro.chips_per_board, s19pro.fans) == (3, 114, 4)
    assert s19pro.expected_chips == 342
    assert hardware.lookup("Avalon A1466").expected_chips is None  # type: ignore[union-attr]


def test_cli_hardware_list_and_show() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["hardware", "list", "--json"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(hardware.catalog())
    assert {"model": "Antminer S21", "hashrate_ths": 200.0, "power_w": 3500.0}.items() <= rows[
        6
    ].items()
    table = runner.invoke(app, ["hardware", "list"])
    assert "Antminer S19j Pro" in table.stdout and "30.5" in table.stdout
    shown = runner.invoke(app, ["hardware", "show", "S19JPRO"])
    assert json.loads(shown.stdout)["efficiency_jth"] == 30.5
    missing = runner.invoke(app, ["hardware", "show", "S23"])
    assert missing.exit_code == 1
