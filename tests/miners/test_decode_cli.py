"""`farmctl miners decode` through typer's CliRunner on real saved replies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app

runner = CliRunner()


def test_decode_json_overheating_s19(miner_responses: Path) -> None:
    path = miner_responses / "antminer/stats_s19pro_overheating.json"
    result = runner.invoke(app, ["miners", "decode", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["command"], data["family"], data["state"]) == ("stats", "antminer", "error")
    assert [b["chip_temp_c"] for b in data["boards"]] == [93.0, 94.0, 97.0]
    assert data["fans_rpm"] == [5160, 5280, 6240, 6120]


def test_decode_json_malformed_with_explicit_family_and_command(miner_responses: Path) -> None:
    path = miner_responses / "antminer/stats_s9_nicehash_missing_comma.json"
    result = runner.invoke(
        app, ["miners", "decode", str(path), "--family", "antminer", "--command", "stats", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["repairs"] == ["missing_commas"]
    assert data["hashrate_ths"] == pytest.approx(12.79548)
    assert data["power_w"] == 1485.0


def test_decode_full_prints_every_rigstatus_key(miner_responses: Path) -> None:
    path = miner_responses / "whatsminer/summary_m31s_btminer.json"
    result = runner.invoke(app, ["miners", "decode", str(path), "--json", "--full"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["boards"] == [] and data["serial"] is None and data["ip"] is None
    assert data["power_w"] == 3553.0 and data["efficiency_jth"] == 46.31


def test_decode_text_output(miner_responses: Path) -> None:
    path = miner_responses / "braiins/temps_bosminer_plus_s9.json"
    result = runner.invoke(app, ["miners", "decode", str(path)])
    assert result.exit_code == 0, result.output
    assert "family: braiins" in result.stdout
    assert "index=0, hashrate_ths=None, temp_c=75.0" in result.stdout


def test_decode_unreadable_file_exits_1_with_the_fault(tmp_path: Path) -> None:
    bad = tmp_path / "reply.json"
    bad.write_bytes(b"\x89PNG not json")
    result = runner.invoke(app, ["miners", "decode", str(bad), "--json"])
    assert result.exit_code == 1
    assert f"error: {bad}: unreadable JSON" in result.stderr


def test_decode_unknown_family_is_refused(miner_responses: Path) -> None:
    path = miner_responses / "luxos/summary.json"
    result = runner.invoke(app, ["miners", "decode", str(path), "--family", "acme"])
    assert result.exit_code == 1
    assert "unknown family 'acme'" in result.stderr
