"""parse_status over several real replies, field guards, unit rules, state rules, the family table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miners.jsonrepair import loads_lenient
from miners.parsers import FAMILIES, parse_status
from miners.parsers.avalon import parse_mm_string
from miners.parsers.base import derive_state, hashrate_ths, num, unit_scale
from miners.parsers.whatsminer import describe_error
from miners.rpc import RpcTimeoutError
from miners.status import RIG_STATES


def load(root: Path, name: str) -> Any:
    return loads_lenient((root / name).read_bytes())[0]


def test_antminer_status_from_four_replies(miner_responses: Path) -> None:
    st = parse_status(
        "antminer",
        {
            "summary": load(miner_responses, "antminer/summary_s19pro.json"),
            "stats": load(miner_responses, "antminer/stats_s17pro.json"),
            "pools": load(miner_responses, "antminer/pools_s19_sleeping.json"),
            "version": load(miner_responses, "antminer/version_s19pro_bmminer.json"),
        },
    )
    assert st.family == "antminer" and st.make == "Bitmain"
    # summary is listed before stats, so its hashrate wins; boards come from stats.
    assert st.hashrate_ths == pytest.approx(110.56689)
    assert [b.chips for b in st.boards] == [48, 48, 48]
    assert st.model == "Antminer S17 Pro"  # stats is parsed before version
    assert len(st.pools) == 3
    assert st.state == "hashing"
    out = st.to_dict()
    for key in [
        "mac",
        "serial",
        "hostname",
        "ip",
        "port",
        "family",
        "make",
        "model",
        "firmware",
        "state",
        "state_reason",
        "hashrate_ths",
        "hashrate_avg_ths",
        "expected_hashrate_ths",
        "boards",
        "fans_rpm",
        "power_w",
        "power_source",
        "efficiency_jth",
        "pools",
        "uptime_s",
        "errors",
        "last_seen",
    ]:
        assert key in out
    assert set(out["boards"][0]) == {
        "index",
        "hashrate_ths",
        "temp_c",
        "chip_temp_c",
        "chips",
        "expected_chips",
    }
    assert set(out["pools"][0]) == {"url", "user", "status", "accepted", "rejected"}
    json.dumps(out)


def test_braiins_status_merges_boards_by_chain_slot(miner_responses: Path) -> None:
    st = parse_status(
        "braiins",
        {
            "summary": load(miner_responses, "braiins/summary_bosminer_plus_s9.json"),
            "devs": load(miner_responses, "braiins/devs_bosminer_plus_s9.json"),
            "fans": load(miner_responses, "braiins/fans_bosminer_plus_s9.json"),
            "temps": load(miner_responses, "braiins/temps_bosminer_plus_s9.json"),
            "tunerstatus": load(miner_responses, "braiins/tunerstatus_bosminer_plus_s9.json"),
            "version": load(miner_responses, "braiins/version_bosminer_plus_s9.json"),
        },
    )
    assert len(st.boards) == 3  # devs IDs 6,7,8 and temps IDs 6,7,8 are the same boards
    assert [b.temp_c for b in st.boards] == [75.0, 63.0, 70.0]
    assert [round(b.hashrate_ths or 0, 3) for b in st.boards] == [4.683, 4.688, 4.213]
    assert st.power_w == 1419.0
    assert st.efficiency_jth == pytest.approx(1419 / 11.988299650652435, abs=1e-3)
    assert st.fans_rpm == [2820, 3780, 0, 0]
    assert st.firmware == "BOSminer+ 0.2.0-36c56a9363"
    assert st.state == "hashing"


def test_whatsminer_status(miner_responses: Path) -> None:
    st = parse_status(
        "whatsminer",
        {
            "summary": load(miner_responses, "whatsminer/summary_m31s_btminer.json"),
            "edevs": load(miner_responses, "whatsminer/edevs_m31s_btminer.json"),
            "get_version": load(miner_responses, "whatsminer/get_version.json"),
            "get_miner_info": load(miner_responses, "whatsminer/get_miner_info.json"),
        },
    )
    assert st.mac == "C6:06:12:00:2D:63"  # summary is parsed first
    assert st.hostname == "WhatsMiner"
    assert [b.chips for b in st.boards] == [105, 105, 105]
    assert len(st.errors) == 5


def test_failed_command_is_recorded_not_raised(miner_responses: Path) -> None:
    timeout = RpcTimeoutError("10.0.0.9:4028", "stats", "no complete reply within 5s")
    st = parse_status(
        "antminer",
        {"summary": load(miner_responses, "antminer/summary_s19pro.json"), "stats": timeout},
    )
    assert st.hashrate_ths == pytest.approx(110.56689)
    assert st.boards == []
    assert any(e.startswith("stats: no reply (10.0.0.9:4028: command 'stats'") for e in st.errors)


def test_one_bad_field_never_fails_the_status(miner_responses: Path) -> None:
    stats = copy.deepcopy(load(miner_responses, "antminer/stats_s17pro.json"))
    stats["STATS"][1]["temp2"] = "hot"  # board 2 temperature unreadable
    stats["STATS"][1]["GHS av"] = {"oops": 1}
    st = parse_status("antminer", {"stats": stats})
    assert st.boards[1].temp_c == 53.0  # falls back to the temp_pcb2 dash string max
    assert st.boards[1].chip_temp_c == 75.0
    assert st.hashrate_avg_ths is None
    assert st.hashrate_ths == pytest.approx(54.99701)
    assert any("could not read chain 2 temperature" in e for e in st.errors)
    assert any("could not read average hashrate" in e for e in st.errors)


def test_status_e_reply_is_an_error_entry(miner_responses: Path) -> None:
    refusal = load(miner_responses, "whatsminer/error_missing_command.json")
    st = parse_status("whatsminer", {"summary": refusal})
    assert st.state == "error"
    assert st.state_reason == "hashrate could not be read from the replies"
    assert st.errors == ["summary: rig answered STATUS E Code 24: Missing JSON 'command'"]


def test_wrong_shapes_do_not_raise() -> None:
    st = parse_status(
        "avalon",
        {"summary": [], "stats": {"STATS": "nope"}, "pools": "x", "version": None},
    )
    assert st.state == "error"
    assert len(st.errors) >= 3


def test_unknown_family_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown rig family 'foo'"):
        parse_status("foo", {})


def test_family_table_is_complete() -> None:
    assert set(FAMILIES) == {
        "cgminer",
        "antminer",
        "braiins",
        "whatsminer",
        "avalon",
        "luxos",
        "bitaxe",
        "innosilicon",
        "auradine",
    }
    for spec in FAMILIES.values():
        assert spec.commands
        for command in spec.commands:
            assert command in spec.parsers, (spec.family, command)
    assert FAMILIES["bitaxe"].transport == "http"
    assert FAMILIES["bitaxe"].http_paths["system_info"] == "/api/system/info"


def test_luxos_fans_temps_power_shapes() -> None:
    st = parse_status(
        "luxos",
        {
            "summary": {"STATUS": [{"STATUS": "S"}], "SUMMARY": [{"GHS 5s": 1000.0}]},
            "fans": {"STATUS": [{"STATUS": "S"}], "FANS": [{"ID": 0, "RPM": 4020}]},
            "temps": {"STATUS": [{"STATUS": "S"}], "TEMPS": [{"ID": 0, "Board": 61, "Chip": 70}]},
            "power": {"STATUS": [{"STATUS": "S"}], "POWER": [{"Watts": 3010, "PSU": True}]},
        },
    )
    assert (st.hashrate_ths, st.fans_rpm, st.power_w) == (1.0, [4020], 3010.0)
    assert (st.boards[0].temp_c, st.boards[0].chip_temp_c) == (61.0, 70.0)
    assert st.efficiency_jth == 3010.0


def test_hashrate_unit_rule() -> None:
    assert hashrate_ths({"THS 5s": 1.5}, ("5s",)) == 1.5
    assert hashrate_ths({"GHS 5s": "1500.5"}, ("5s",)) == 1.5005
    assert hashrate_ths({"MHS 5s": 2_000_000}, ("5s",)) == 2.0
    assert hashrate_ths({"KHS av": 3e9}, ("av",)) == 3.0
    assert hashrate_ths({"MHS 5s": "", "MHS 1m": 1e6}, ("5s", "1m")) == 1.0
    assert hashrate_ths({"GHS 5s": "nan"}, ("5s",)) is None
    assert unit_scale("GH") == 1e-3 and unit_scale("MH/s") == 1e-6 and unit_scale(None) == 1e-3
    with pytest.raises(ValueError):
        unit_scale("parsecs")
    with pytest.raises(ValueError):
        num("12 TH")


def test_state_rules() -> None:
    assert derive_state(0.0, ["pause acknowledged"], []) == ("curtailed", "pause acknowledged")
    assert derive_state(12.5, [], ["dead chain"])[0] == "hashing"
    assert derive_state(0.0, [], ["dead chain"]) == ("error", "no hashrate: dead chain")
    assert derive_state(0.0, [], [])[0] == "idle"
    assert derive_state(None, [], [])[0] == "error"
    assert {s for s in RIG_STATES} >= {"hashing", "curtailed", "idle", "error"}


def test_avalon_idle_work_state_is_curtailed() -> None:
    mm = "Ver[1047-x] DNA[ab] SYSTEMSTATU[Work: In Idle, Hash Board: 2 ] GHSmm[0.00] MGHS[0 0]"
    st = parse_status("avalon", {"stats": {"STATUS": [{"STATUS": "S"}], "STATS": [{"MM ID0": mm}]}})
    assert st.state == "curtailed"
    assert "In Idle" in (st.state_reason or "")


def test_mm_string_parser() -> None:
    parsed = parse_mm_string(
        "Ver[1047-a_b] Elapsed[10]BOOTBY[0x0C.1] PS[0 1212 1315 174 2288 1320]"
    )
    assert parsed == {
        "Ver": "1047-a_b",
        "Elapsed": "10",
        "BOOTBY": "0x0C.1",
        "PS": "0 1212 1315 174 2288 1320",
    }


def test_whatsminer_error_codes() -> None:
    assert describe_error(110) == "intake fan speed error"
    assert describe_error(2310) == "hashrate is too low"
    assert describe_error(532) == "slot 2 not found"
    assert describe_error(299) == "power supply error"  # unknown code, known subsystem
    assert describe_error(9999) == "unknown error"


def test_unreadable_fan_and_chain_keys_are_listed(miner_responses: Path) -> None:
    stats = copy.deepcopy(load(miner_responses, "antminer/stats_s17pro.json"))
    stats["STATS"][1]["fan2"] = "broken"
    stats["STATS"][1]["chain_acn3"] = "??"
    st = parse_status("antminer", {"stats": stats})
    assert st.fans_rpm == [2400, 3120, 2400, 0]  # fan_num 4: the unreadable fan counts as 0
    assert len(st.boards) == 3  # chain 3 still has a rate, so it is still a board
    assert "stats: could not read fan2='broken'" in st.errors
    assert "stats: could not read chain_acn3='??'" in st.errors


# --- property: junk anywhere in a real reply never raises ---

_REPLY_SETS = {
    "antminer": [
        "antminer/summary_s19pro.json",
        "antminer/stats_s17pro.json",
        "antminer/pools_s19_sleeping.json",
        "antminer/version_s19pro_bmminer.json",
    ],
    "braiins": [
        "braiins/summary_bosminer_plus_s9.json",
        "braiins/devs_bosminer_plus_s9.json",
        "braiins/fans_bosminer_plus_s9.json",
        "braiins/temps_bosminer_plus_s9.json",
        "braiins/tunerstatus_bosminer_plus_s9.json",
    ],
    "whatsminer": ["whatsminer/summary_m31s_btminer.json", "whatsminer/edevs_m31s_btminer.json"],
    "avalon": ["avalon/stats_avalon10xx.json", "avalon/version.json"],
    "bitaxe": ["bitaxe/api_system_info_bm1368.json"],
}
_COMMAND_OF = {
    "summary": "summary",
    "stats": "stats",
    "pools": "pools",
    "version": "version",
    "devs": "devs",
    "fans": "fans",
    "temps": "temps",
    "tunerstatus": "tunerstatus",
    "edevs": "edevs",
    "api": "system_info",
}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["nan", "inf", "", "-", "12-x-3", "[1 2]", "x" * 3]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_REPLY_SETS)), st.data())
def test_property_junk_values_never_raise(family: str, data: st.DataObject) -> None:
    from controller.paths import miner_responses_dir

    root = miner_responses_dir()
    if root is None:
        pytest.skip("recorded miner replies absent")
    replies: dict[str, Any] = {}
    for name in _REPLY_SETS[family]:
        stem = Path(name).stem.split("_")[0]
        replies[_COMMAND_OF[stem]] = load(root, name)
    command = data.draw(st.sampled_from(sorted(replies)))
    paths = _paths(replies[command])
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=6)):
        target = replies[command]
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = data.draw(junk)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    st_ = parse_status(family, replies)
    assert st_.state in RIG_STATES
    # field guards caught it: no reply was lost whole to the last-resort handler
    assert not [e for e in st_.errors if "reply could not be parsed" in e], st_.errors
    json.dumps(st_.to_dict(), allow_nan=True)


def test_whatsminer_get_error_code_list_and_object_forms() -> None:
    from miners.decode import decode_reply

    reply = (
        '{"STATUS":"S","When":1,"Code":133,"Msg":{"error_code":'
        '[{"110":"2023-01-06 10:00:00"},{"2310":"2023-01-06 10:05:00"}]},"Description":""}'
    )
    d = decode_reply(reply).to_dict()
    assert (d["command"], d["family"]) == ("get_error_code", "whatsminer")
    assert d["errors"] == [
        "error 110: intake fan speed error (since 2023-01-06 10:00:00)",
        "error 2310: hashrate is too low (since 2023-01-06 10:05:00)",
    ]
    # btminer 2.0.4 writes the list with object members: repaired, then read the same way
    broken = '{"STATUS":"S","Code":133,"Msg":{"error_code":["530":"x","zz":"y"]}}'
    d = decode_reply(broken).to_dict()
    assert d["repairs"] == ["array_with_members"]
    assert d["errors"][0] == "error 530: slot 0 not found (since x)"
    assert "could not read error code 'zz'" in d["errors"][1]


def test_avalon_newer_estats_layout() -> None:
    mm = "Ver[1246-x] GHSspd[90123.4] GHSavg[89000] MGHS[30000 30000 30123.4] Fan1[4000]"
    reply = {"STATUS": [{"STATUS": "S"}], "STATS": [{"STATS": 0, "MM ID0:Summary": mm}]}
    st = parse_status("avalon", {"estats": reply})
    assert st.model == "Avalon 1246"
    assert st.hashrate_ths == pytest.approx(90.1234)
    assert [b.hashrate_ths for b in st.boards] == pytest.approx([30.0, 30.0, 30.1234])
    assert st.fans_rpm == [4000]
