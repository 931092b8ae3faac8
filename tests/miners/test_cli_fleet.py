"""`farmctl miners poll|scan|status` as real processes against `farmctl sim` in its own process."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FARMCTL = str(Path(sys.executable).with_name("farmctl"))
MIX = "braiins=2,luxos=2,cgminer=2"  # RPC-only families: six contiguous ports from the base
HUNG = 5  # the last cgminer rig accepts connections and never answers


@pytest.fixture(scope="module")
def sim_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`farmctl sim` on a free block of six ports of 127.0.0.1; yields its manifest."""
    folder = tmp_path_factory.mktemp("sim")
    for _ in range(6):
        manifest = folder / f"manifest-{random.randrange(10**6)}.json"
        base = random.randrange(30000, 32000)
        proc = subprocess.Popen(
            [FARMCTL, "sim", "--mix", MIX, "--base-port", str(base), "--manifest", str(manifest),
             "--fault", f"{HUNG}=hang"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if manifest.exists():
            break
        proc.kill()
        proc.wait()
    else:
        pytest.skip("could not start farmctl sim on a free port block")
    try:
        yield json.loads(manifest.read_text())
    finally:
        proc.terminate()
        proc.wait(10)


def farmctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # a wide terminal: table rows on one line each
    return subprocess.run(
        [FARMCTL, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def port_range(manifest: dict) -> str:
    ports = sorted(r["port"] for r in manifest["rigs"])
    assert ports == list(range(ports[0], ports[0] + 6))
    return f"127.0.0.1:{ports[0]}-{ports[-1]}"


def test_poll_json_one_object_per_rig(sim_fleet: dict, tmp_path: Path) -> None:
    state = tmp_path / "last_poll.json"
    started = time.monotonic()
    out = farmctl(
        "miners", "poll", port_range(sim_fleet), "--once", "--json",
        "--timeout", "1", "--deadline", "5", "--state-file", str(state),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 15
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 6
    by_port = {r["port"]: r for r in rows}
    for rig in sim_fleet["rigs"]:
        row = by_port[rig["port"]]
        if rig["index"] == HUNG:
            assert row["state"] == "offline"
            assert row["state_reason"] == "no reply within 1.00 s"
            assert row["hashrate_ths"] is None and row["boards"] == [] and row["pools"] == []
            assert row["last_seen"] is None
        else:
            assert row["state"] == "hashing", row
            assert row["family"] == rig["family"]
            assert row["hashrate_ths"] > 0 and row["last_seen"]
    # the poll was recorded for `miners status`
    assert len(json.loads(state.read_text())["rigs"]) == 6


def test_poll_from_worker_processes_reads_the_same_fleet(sim_fleet: dict, tmp_path: Path) -> None:
    out = farmctl(
        "miners", "poll", port_range(sim_fleet), "--once", "--json", "--workers", "2",
        "--timeout", "1", "--deadline", "5", "--state-file", str(tmp_path / "last_poll.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    # target order kept across the two workers (round-robin split)
    assert [r["port"] for r in rows] == sorted(r["port"] for r in sim_fleet["rigs"])
    for rig, row in zip(sorted(sim_fleet["rigs"], key=lambda r: r["port"]), rows, strict=True):
        if rig["index"] == HUNG:
            assert (row["state"], row["state_reason"]) == ("offline", "no reply within 1.00 s")
        else:
            assert (row["state"], row["family"]) == ("hashing", rig["family"])
            assert row["hashrate_ths"] > 0
    bad = farmctl("miners", "poll", port_range(sim_fleet), "--once", "--workers", "0")
    assert bad.returncode == 2
    assert "Invalid value for '--workers': Input should be greater than or equal to 1" in (
        bad.stderr
    )


def test_poll_summary_and_status_table(sim_fleet: dict, tmp_path: Path) -> None:
    state = tmp_path / "last_poll.json"
    out = farmctl(
        "miners", "poll", port_range(sim_fleet), "--once", "--summary",
        "--timeout", "1", "--deadline", "5", "--state-file", str(state),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert re.fullmatch(
        r"rigs=6 hashing=5 curtailed=0 idle=0 offline=1 error=0 "
        r"elapsed_s=\d+\.\d{3} rigs_per_s=\d+",
        line,
    ), line
    table = farmctl("miners", "status", "--state-file", str(state))
    assert table.returncode == 0, table.stderr
    assert "6 rigs, polled" in table.stdout
    for rig in sim_fleet["rigs"]:
        assert f"127.0.0.1:{rig['port']}" in table.stdout
    assert "offline" in table.stdout and "hashing" in table.stdout
    as_json = farmctl("miners", "status", "--state-file", str(state), "--json")
    assert sorted(json.loads(x)["port"] for x in as_json.stdout.splitlines()) == sorted(
        r["port"] for r in sim_fleet["rigs"]
    )


def test_status_without_a_poll_says_so(tmp_path: Path) -> None:
    out = farmctl("miners", "status", "--state-file", str(tmp_path / "none.json"))
    assert out.returncode == 1
    assert "no poll recorded yet" in out.stderr


def test_poll_rejects_bad_targets() -> None:
    out = farmctl("miners", "poll", "127.0.0.1:5-2", "--once")
    assert out.returncode == 2
    assert "reversed" in out.stderr
    both = farmctl("miners", "poll", "127.0.0.1:4028", "--once", "--json", "--summary")
    assert both.returncode == 2 and "--json and --summary" in both.stderr


def test_scan_finds_the_simulated_rigs(sim_fleet: dict) -> None:
    out = farmctl("miners", "scan", port_range(sim_fleet), "--json", "--identify-timeout", "1")
    assert out.returncode == 0, out.stderr
    found = {
        json.loads(line)["port"]: json.loads(line)["family"] for line in out.stdout.splitlines()
    }
    expected = {r["port"]: r["family"] for r in sim_fleet["rigs"] if r["index"] != HUNG}
    assert found == expected  # the hung rig is open but never identifies itself
    assert "probed=6 open=6 rigs=5 unidentified=1" in out.stderr


def test_poll_file_round_trip_and_errors(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from miners.pollfile import PollFileError, PollSnapshot, read_poll, write_poll
    from miners.status import BoardStatus, PoolStatus, RigStatus

    seen = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    rig = RigStatus(
        ip="127.0.0.1", port=4028, mac="02:53:00:00:00:01", state="hashing", hashrate_ths=110.0,
        boards=[BoardStatus(0, 36.7, 62.0, 67.0, 114, 114)],
        pools=[PoolStatus("stratum+tcp://btc.pool.example:3333", "farm.rig00001", "Alive", 6600, 16)],
        last_seen=seen,
    )  # fmt: skip
    path = tmp_path / "state" / "last_poll.json"
    write_poll(path, PollSnapshot(seen, 1.25, [rig, RigStatus(ip="127.0.0.1", port=4029)]))
    back = read_poll(path)
    assert back.polled_at == seen and back.elapsed_s == 1.25
    assert back.rigs[0] == rig
    assert back.rigs[1].state == "offline" and back.rigs[1].last_seen is None
    assert [p.name for p in path.parent.iterdir()] == ["last_poll.json"]  # no temp file left

    path.write_text('{"format": 1, "polled_at": "2026-11-23T12:00:00+00:00", "elapsed_s": 1,'
                    ' "rigs": [{"ip": "10.0.0.5", "port": 4028, "state": "melting"}]}')  # fmt: skip
    with pytest.raises(PollFileError, match="rig state 'melting'"):
        read_poll(path)
    path.write_text("[1, 2]")
    with pytest.raises(PollFileError, match="not a farmctl poll file"):
        read_poll(path)
    path.write_text("{not json")
    with pytest.raises(PollFileError, match="cannot read poll file"):
        read_poll(path)
