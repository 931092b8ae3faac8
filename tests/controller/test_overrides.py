"""Overrides from the CLI: checked targets and windows, listed, cancelled, and read by reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from controller.cli.main import app
from controller.config import load_config
from controller.reconcile import RigPlace, desired_states
from controller.storage import make_engine, session_factory

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "farm.example.toml"
runner = CliRunner()


def _config(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text().replace('data_dir = "var"', f'data_dir = "{tmp_path}"')
    path = tmp_path / "farm.toml"
    path.write_text(text)
    return path


def test_override_lifecycle(tmp_path: Path) -> None:
    config = _config(tmp_path)
    added = runner.invoke(
        app,
        [
            "override",
            "add",
            "-c",
            str(config),
            "--rack",
            "rack-a",
            "--state",
            "curtailed",
            "--for",
            "2h",
            "--reason",
            "4CP",
        ],
    )
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("override 1: rack rack-a curtailed until ")
    listed = runner.invoke(app, ["override", "list", "-c", str(config)])
    assert "rack:rack-a\tcurtailed" in listed.stdout and "4CP" in listed.stdout
    farm = load_config(config)
    engine = make_engine(farm.database_url(config.parent))
    places = [RigPlace(r.name, r.site, r.rack) for r in farm.rigs]
    with session_factory(engine)() as session:
        wanted = desired_states(session, places, datetime.now(UTC) + timedelta(minutes=1))
    assert wanted["s19jpro-01"] == ("curtailed", "override:1")  # in rack-a
    assert wanted["m50s-01"] == ("hashing", "default")  # rack-b, no plan
    cancelled = runner.invoke(app, ["override", "cancel", "-c", str(config), "1"])
    assert cancelled.exit_code == 0
    with session_factory(engine)() as session:
        assert desired_states(session, places, datetime.now(UTC))["s19jpro-01"] == (
            "hashing",
            "default",
        )
    assert (
        runner.invoke(app, ["override", "list", "-c", str(config)]).stdout.strip() == "no overrides"
    )
    engine.dispose()


def test_override_refuses_unknown_targets_and_bad_windows(tmp_path: Path) -> None:
    config = _config(tmp_path)
    unknown = runner.invoke(
        app, ["override", "add", "-c", str(config), "--rig", "s19-99", "--state", "curtailed"]
    )
    assert unknown.exit_code == 2 and "unknown rig 's19-99'" in unknown.output
    too_long = runner.invoke(
        app,
        [
            "override",
            "add",
            "-c",
            str(config),
            "--site",
            "west",
            "--state",
            "hashing",
            "--for",
            "8d",
        ],
    )
    assert too_long.exit_code == 2 and "longer than 7 days" in too_long.output
    bad_state = runner.invoke(
        app, ["override", "add", "-c", str(config), "--site", "west", "--state", "off"]
    )
    assert bad_state.exit_code == 2
    assert runner.invoke(app, ["override", "cancel", "-c", str(config), "42"]).exit_code == 1
