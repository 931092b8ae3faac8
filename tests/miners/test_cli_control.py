"""`farmctl miners probe|curtail|resume|reboot` and `farmctl sim` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from controller.cli.main import app
from tests.miners.sim_support import sim_in_thread

runner = CliRunner()


def test_probe_json_names_family_and_capabilities() -> None:
    with sim_in_thread(["bitaxe", "whatsminer"]) as sim:
        axe, wm = sim.rigs
        r1 = runner.invoke(app, ["miners", "probe", f"127.0.0.1:{axe.http_port}", "--json"])
        r2 = runner.invoke(app, ["miners", "probe", f"127.0.0.1:{wm.port}"])
    assert r1.exit_code == 0, r1.output
    data = json.loads(r1.stdout)
    assert data["family"] == "bitaxe" and data["capabilities"] == ["reboot"]
    assert data["status"]["mac"] == axe.mac and data["status"]["state"] == "hashing"
    assert r2.exit_code == 0, r2.output
    assert "family: whatsminer" in r2.stdout
    assert "capabilities: curtail, power_target, reboot, restart_mining, resume" in r2.stdout


def test_curtail_and_resume_with_password_from_env(tmp_path: Path) -> None:
    secret = "Farm-Pw-2026!"
    with sim_in_thread(["antminer"], passwords={"antminer": secret}) as sim:
        rig = sim.rigs[0]
        args = [f"127.0.0.1:{rig.port}", "--http-port", str(rig.http_port), "--verify-timeout", "5"]
        env = {"FARMCTL_RIG_PASSWORD": secret}
        down = runner.invoke(app, ["miners", "curtail", *args], env=env)
        mode_after_curtail = rig.mode
        pw_file = tmp_path / "pw"
        pw_file.write_text(secret + "\n")
        up = runner.invoke(app, ["miners", "resume", *args, "--password-file", str(pw_file)])
        wrong = runner.invoke(app, ["miners", "curtail", *args], env={"FARMCTL_RIG_PASSWORD": "x"})
    assert down.exit_code == 0, down.output
    assert "curtail 127.0.0.1" in down.stdout and "state=curtailed" in down.stdout
    assert mode_after_curtail == "curtailed"
    assert up.exit_code == 0, up.output
    assert "state=hashing" in up.stdout
    assert wrong.exit_code == 1 and "login refused (401)" in wrong.output
    for result in (down, up, wrong):
        assert secret not in result.output


def test_unsupported_action_exits_1_with_reason() -> None:
    with sim_in_thread(["bitaxe"]) as sim:
        port = sim.rigs[0].http_port
        result = runner.invoke(app, ["miners", "curtail", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "bitaxe cannot curtail: AxeOS has no sleep mode" in result.output
    assert sim.rigs[0].mode == "hashing"


def test_reboot_command_and_bad_address() -> None:
    with sim_in_thread(["luxos"]) as sim:
        rig = sim.rigs[0]
        ok = runner.invoke(
            app, ["miners", "reboot", f"127.0.0.1:{rig.port}", "--verify-timeout", "5"]
        )
    bad = runner.invoke(app, ["miners", "probe", "127.0.0.1:99999"])
    assert ok.exit_code == 0, ok.output
    assert rig.down_until > 0
    assert bad.exit_code == 1 and "bad port in '127.0.0.1:99999'" in bad.output


def test_sim_command_writes_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "sim.json"
    result = runner.invoke(
        app,
        [
            "sim",
            "--rigs", "9",
            "--mix", "antminer=2,whatsminer=1",
            "--base-port", "0",
            "--fault", "1=hang",
            "--manifest", str(manifest),
            "--duration-s", "0.2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rigs = json.loads(manifest.read_text())["rigs"]
    assert [r["family"] for r in rigs] == ["antminer"] * 6 + ["whatsminer"] * 3
    assert all(r["port"] for r in rigs) and all(r["http_port"] for r in rigs[:6])
    assert all(r["v3_port"] for r in rigs[6:])


def test_sim_command_rejects_bad_input() -> None:
    bad_mix = runner.invoke(app, ["sim", "--mix", "antminer=2,xyz=1", "--duration-s", "0"])
    bad_fault = runner.invoke(app, ["sim", "--mix", "antminer=1", "--fault", "0=melt"])
    assert bad_mix.exit_code == 2 and "bad mix entry 'xyz=1'" in bad_mix.output
    assert bad_fault.exit_code == 2 and "melt" in bad_fault.output
