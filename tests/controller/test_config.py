"""Config validation: the example is valid, every wrong field is reported precisely, secrets stay secret."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from controller.cli.main import app
from controller.config import (
    ConfigError,
    FarmConfig,
    SecretRef,
    SecretRefError,
    load_config,
    unresolved_secrets,
)
from controller.logs import JsonFormatter

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "farm.example.toml"
runner = CliRunner()


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(EXAMPLE)
    assert [s.id for s in config.sites] == ["west"]
    assert [r.id for r in config.sites[0].racks] == ["rack-a", "rack-b"]
    assert {r.family for r in config.rigs} == {
        "antminer", "braiins", "whatsminer", "avalon", "bitaxe", "mqtt"
    }  # fmt: skip
    assert config.treasury.dry_run is True and config.treasury.live is False
    assert config.rigs[0].credentials.password == SecretRef(env="FARMCTL_RIG_PASSWORD")
    assert (
        config.database_url(EXAMPLE.parent) == f"sqlite:///{EXAMPLE.parent / 'var' / 'farmctl.db'}"
    )


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for arg in [field.annotation, *get_args(field.annotation)]:
            for inner in [arg, *get_args(arg)]:
                if (
                    isinstance(inner, type)
                    and issubclass(inner, BaseModel)
                    and inner is not SecretRef
                ):
                    names |= _field_names(inner)
    return names


def test_every_key_is_in_the_example_with_a_comment() -> None:
    text = EXAMPLE.read_text()
    missing = [
        name
        for name in sorted(_field_names(FarmConfig))
        if not re.search(rf"^\s*#?\s*{name}\s*=|{name}\s*[=/:]|\[+[a-z.]*{name}\]+", text, re.M)
    ]
    assert missing == []
    uncommented = [
        line
        for line in text.splitlines()
        if re.match(r"^[a-z_]+ = ", line)
        and "#" not in line
        and not re.match(r"^(name|site|rack|address|family|model|credentials) = ", line)
    ]
    assert uncommented == []


def test_cli_check_prints_ok_for_the_example() -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "OK"


def _broken_copy(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace('address = "127.0.0.1:40002"', 'address = "127.0.0.300:40002"')
    text = text.replace("port = 1883", "port = 99999")
    text = text.replace(
        'name = "m50s-01"\nsite = "west"\nrack = "rack-b"',
        'name = "m50s-01"\nsite = "west"\nrack = "rack-z"',
    )
    text = text.replace("momentum_strength = 0.5", "momentum_strenght = 0.5")
    text = text.replace("dry_run = true ", 'dry_run = "maybe" ')
    text = text.replace(
        'site = "west"\naddress = "127.0.0.1:40080"', 'site = "east"\naddress = "127.0.0.1:40080"'
    )
    path = tmp_path / "broken.toml"
    path.write_text(text)
    return path


def test_cli_check_reports_one_precise_line_per_wrong_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(_broken_copy(tmp_path))])
    assert result.exit_code == 2
    lines = sorted(result.stdout.strip().splitlines())
    assert lines == sorted(
        [
            "rigs[1].address: '127.0.0.300:40002': '127.0.0.300' is not a valid IPv4 address",
            "mqtt.port: 99999: Input should be less than or equal to 65535",
            "treasury.dry_run: 'maybe': Input should be a valid boolean, unable to interpret input",
            "treasury.strategy.momentum_strenght: 0.5: unknown key (misspelled? see config/farm.example.toml)",
            "rigs[2].rack: 'rack-z': no such rack in site 'west'",
            "rigs[4].site: 'east': no such site (sites: ['west'])",
        ]
    )


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[farm]\nname = "x"\n[[sites]\nid = "a"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems[0].path == "(syntax)"
    assert "line 3" in err.value.problems[0].reason


@pytest.mark.parametrize(
    ("snippet", "path", "reason"),
    [
        ('password = "hunter2"', "mqtt.password", "secrets are not written in the config"),
        ('password = { env = "A", file = "/x" }', "mqtt.password", "exactly one of env or file"),
    ],
)
def test_literal_secrets_are_refused(tmp_path: Path, snippet: str, path: str, reason: str) -> None:
    file = tmp_path / "farm.toml"
    file.write_text(f'[[sites]]\nid = "a"\n[mqtt]\n{snippet}\n')
    with pytest.raises(ConfigError) as err:
        load_config(file)
    [problem] = err.value.problems
    assert problem.path == path and reason in problem.reason
    assert "hunter2" not in problem.reason


def test_live_needs_two_switches_and_keys(tmp_path: Path) -> None:
    file = tmp_path / "farm.toml"
    file.write_text(
        '[[sites]]\nid = "a"\n[treasury]\nlive = true\ndry_run = false\n'
        '[[treasury.venues]]\nid = "k"\nexchange = "kraken"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert [str(p) for p in err.value.problems] == [
        "treasury.venues[0]: 'k': live selling needs api_key and api_secret"
    ]
    file.write_text('[[sites]]\nid = "a"\n[treasury]\nlive = true\n')
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert "two explicit switches" in err.value.problems[0].reason


def test_secrets_resolve_from_env_and_file_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FARMCTL_TEST_PW", "s3cr3t-env")
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cr3t-file\n")
    file = tmp_path / "farm.toml"
    file.write_text(
        f'[[sites]]\nid = "a"\n[mqtt]\nusername = "u"\npassword = {{ env = "FARMCTL_TEST_PW" }}\n'
        f'[reports.email]\npassword = {{ file = "{secret_file}" }}\n'
    )
    config = load_config(file)
    assert config.mqtt.password is not None and config.reports.email.password is not None
    env_secret = config.mqtt.password.resolve()
    file_secret = config.reports.email.password.resolve()
    assert env_secret.get_secret_value() == "s3cr3t-env"
    assert file_secret.get_secret_value() == "s3cr3t-file"
    shown = repr(config) + repr(env_secret) + str(file_secret)
    assert "s3cr3t" not in shown
    # A careless log line still does not leak the value.
    record = logging.makeLogRecord(
        {"msg": "login password=%s", "args": ("s3cr3t-env",), "levelname": "INFO", "password": "x"}
    )
    line = JsonFormatter().format(record)
    assert "s3cr3t" not in line and '"password": "***"' in line
    monkeypatch.delenv("FARMCTL_TEST_PW")
    with pytest.raises(SecretRefError, match="FARMCTL_TEST_PW is not set"):
        config.mqtt.password.resolve()
    assert unresolved_secrets(config) == ["mqtt.password (env:FARMCTL_TEST_PW)"]
