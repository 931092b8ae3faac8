"""Every file in ../shared/miner-responses decoded, with the real numbers read from each file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from miners.decode import decode_file

COVERED = {
    "antminer/devs_s19pro.json",
    "antminer/pools_s19_sleeping.json",
    "antminer/stats_l3plus_missing_comma.json",
    "antminer/stats_s17pro.json",
    "antminer/stats_s19pro_overheating.json",
    "antminer/stats_s9_nicehash_missing_comma.json",
    "antminer/summary_s19pro.json",
    "antminer/version_s19pro_bmminer.json",
    "auradine/summary.json",
    "avalon/ascset_led_text_mode.txt",
    "avalon/ascset_softoff.json",
    "avalon/multicommand_pools_summary_stats_a1047.json",
    "avalon/stats_avalon10xx.json",
    "avalon/version.json",
    "bitaxe/api_system_info_bm1368.json",
    "braiins/devs_bosminer_plus_s9.json",
    "braiins/fans_bosminer_plus_s9.json",
    "braiins/pause_bosminer_plus_s17.json",
    "braiins/resume_bosminer_plus_s17.json",
    "braiins/summary_bosminer_plus_s9.json",
    "braiins/tempctrl_bosminer_plus_s9.json",
    "braiins/temps_bosminer_plus_s9.json",
    "braiins/tunerstatus_bosminer_plus_s9.json",
    "braiins/version_bosminer_plus_s9.json",
    "innosilicon/summary_a9.json",
    "luxos/summary.json",
    "luxos/version_s19kpro.json",
    "whatsminer/edevs_m31s_btminer.json",
    "whatsminer/error_missing_command.json",
    "whatsminer/get_miner_info.json",
    "whatsminer/get_token.json",
    "whatsminer/get_version.json",
    "whatsminer/privileged_encrypted_reply.json",
    "whatsminer/summary_m31s_btminer.json",
}


def decode(miner_responses: Path, name: str, **kwargs: Any) -> dict[str, Any]:
    return decode_file(miner_responses / name, **kwargs).to_dict()


def boards(d: dict[str, Any], key: str) -> list[Any]:
    return [board[key] for board in d["boards"]]


def test_every_shared_file_has_a_test(miner_responses: Path) -> None:
    present = {
        str(p.relative_to(miner_responses))
        for p in miner_responses.rglob("*")
        if p.is_file() and p.name != "SOURCES.md"
    }
    assert present == COVERED


@pytest.mark.parametrize("name", sorted(COVERED))
def test_every_file_decodes_without_error(miner_responses: Path, name: str) -> None:
    d = decode(miner_responses, name)
    assert d["command"] != "unknown"
    assert d["family"] == name.split("/")[0]


# --- antminer ---


def test_antminer_stats_s19pro_overheating(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/stats_s19pro_overheating.json")
    assert (d["command"], d["family"], d["format"]) == ("stats", "antminer", "json")
    assert (d["make"], d["model"], d["firmware"]) == ("Bitmain", "Antminer S19 Pro", "49.0.1.3")
    assert d["hashrate_ths"] == 0.0
    assert d["hashrate_avg_ths"] == pytest.approx(0.73737)
    assert d["expected_hashrate_ths"] == pytest.approx(111.859)
    assert d["fans_rpm"] == [5160, 5280, 6240, 6120]
    assert boards(d, "temp_c") == [88.0, 89.0, 92.0]
    assert boards(d, "chip_temp_c") == [93.0, 94.0, 97.0]
    assert boards(d, "chips") == [0, 0, 0]
    assert boards(d, "expected_chips") == [114, 114, 114]
    assert boards(d, "hashrate_ths") == [0.0, 0.0, 0.0]
    assert d["uptime_s"] == 12122
    assert d["state"] == "error"
    assert "3 chain(s) with every chip not responding" in d["state_reason"]
    assert "hottest chip 97 C" in d["state_reason"]
    assert "chain 2: 114 of 114 chips not responding ('x')" in d["errors"]


def test_antminer_stats_s17pro(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/stats_s17pro.json")
    assert d["model"] == "Antminer S17 Pro" and d["firmware"] == "19.10.1.3"
    assert d["hashrate_ths"] == pytest.approx(54.99701)
    assert d["hashrate_avg_ths"] == pytest.approx(54.51207)
    assert d["expected_hashrate_ths"] == pytest.approx(53.619)
    assert boards(d, "hashrate_ths") == pytest.approx([17.96826, 18.418, 18.61075])
    assert boards(d, "temp_c") == [50.0, 53.0, 45.0]
    assert boards(d, "chip_temp_c") == [80.0, 75.0, 63.0]
    assert boards(d, "chips") == [48, 48, 48]
    assert d["fans_rpm"] == [2400, 3000, 3120, 2400]
    assert d["uptime_s"] == 253447
    assert d["state"] == "hashing"
    assert "errors" not in d


def test_antminer_stats_s9_vnish_missing_comma(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/stats_s9_nicehash_missing_comma.json")
    assert d["repairs"] == ["missing_commas"]
    assert d["model"] == "Antminer S9" and d["firmware"] == "vnish 3.8.6"
    assert d["hashrate_ths"] == pytest.approx(12.79548)
    assert d["hashrate_avg_ths"] == pytest.approx(12.90071)
    assert d["expected_hashrate_ths"] == pytest.approx(12.9276)
    assert boards(d, "hashrate_ths") == pytest.approx([4.26448, 4.29832, 4.23267])
    assert boards(d, "temp_c") == [65.0, 56.0, 63.0]
    assert boards(d, "chip_temp_c") == [80.0, 71.0, 78.0]
    assert boards(d, "chips") == [63, 63, 63]
    assert d["fans_rpm"] == [5400, 5880]
    assert d["power_w"] == 1485.0 and d["power_source"] == "reported"
    assert d["efficiency_jth"] == pytest.approx(1485 / 12.90071, abs=1e-3)
    assert d["extras"]["chain6_state"] == "Warm up"
    assert d["state"] == "hashing"


def test_antminer_stats_l3plus_scrypt_units(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/stats_l3plus_missing_comma.json")
    assert d["repairs"] == ["missing_commas"]
    assert d["model"] == "Antminer L3+"
    # L3+ writes MH/s under GHS keys; GHS 5s reads 0.00 while the four chains hash.
    assert d["hashrate_avg_ths"] == pytest.approx(500.28e-6)
    assert d["hashrate_ths"] == pytest.approx((126.12 + 125.79 + 126.06 + 126.59) * 1e-6)
    assert boards(d, "hashrate_ths") == pytest.approx([126.12e-6, 125.79e-6, 126.06e-6, 126.59e-6])
    assert boards(d, "temp_c") == [46.0, 46.0, 46.0, 45.0]
    assert boards(d, "chip_temp_c") == [54.0, 56.0, 56.0, 53.0]
    assert boards(d, "chips") == [72, 72, 72, 72]
    assert d["fans_rpm"] == [3840, 3810]
    assert d["uptime_s"] == 393983
    assert d["state"] == "hashing"


def test_antminer_summary_s19pro(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/summary_s19pro.json")
    assert (d["command"], d["family"]) == ("summary", "antminer")
    assert d["hashrate_ths"] == pytest.approx(110.56689)
    assert d["hashrate_avg_ths"] == pytest.approx(111.83485)
    assert d["uptime_s"] == 50474
    assert d["state"] == "hashing"
    assert "boards" not in d and "pools" not in d


def test_antminer_pools_s19(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/pools_s19_sleeping.json")
    assert d["command"] == "pools"
    assert [p["url"] for p in d["pools"]] == [
        "stratum+tcp://aaa:700",
        "stratum+tcp://bbb:6000",
        "stratum+tcp://ccc:443",
    ]
    assert [p["user"] for p in d["pools"]] == ["aaa.226x94", "bbb.226x94", "ccc.226x94"]
    assert [p["status"] for p in d["pools"]] == ["alive", "alive", "deed"]
    assert [(p["accepted"], p["rejected"]) for p in d["pools"]] == [(0, 0)] * 3
    assert "state" not in d  # a pools reply says nothing about hashing


def test_antminer_devs_s19pro_pseudo_device(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/devs_s19pro.json")
    assert (d["command"], d["family"]) == ("devs", "antminer")
    assert "boards" not in d
    assert d["extras"]["controller_device"].startswith("BTM_SOC")
    generic = decode(miner_responses, "antminer/devs_s19pro.json", family="cgminer")
    assert generic["boards"] == [
        {
            "index": 0,
            "hashrate_ths": 0.0,
            "temp_c": None,
            "chip_temp_c": None,
            "chips": None,
            "expected_chips": None,
        }
    ]


def test_antminer_version(miner_responses: Path) -> None:
    d = decode(miner_responses, "antminer/version_s19pro_bmminer.json")
    assert (d["make"], d["model"], d["firmware"]) == ("Bitmain", "Antminer S19 Pro", "49.0.1.3")


# --- auradine, innosilicon, luxos ---


def test_auradine_summary(miner_responses: Path) -> None:
    d = decode(miner_responses, "auradine/summary.json")
    assert d["family"] == "auradine"
    assert d["hashrate_ths"] == pytest.approx(20.5997671774699)
    assert d["hashrate_avg_ths"] == pytest.approx(7.970630042671183)
    assert d["uptime_s"] == 56696
    assert d["state"] == "hashing"


def test_innosilicon_summary(miner_responses: Path) -> None:
    d = decode(miner_responses, "innosilicon/summary_a9.json")
    assert d["family"] == "innosilicon"
    assert d["hashrate_ths"] == pytest.approx(51451.63e-6)
    assert d["hashrate_avg_ths"] == pytest.approx(51274.60e-6)
    assert d["uptime_s"] == 48768


def test_luxos_summary_and_version(miner_responses: Path) -> None:
    d = decode(miner_responses, "luxos/summary.json")
    assert d["family"] == "luxos"
    assert d["hashrate_ths"] == pytest.approx(59.75606)
    assert d["hashrate_avg_ths"] == pytest.approx(56.91791)
    assert d["uptime_s"] == 3453
    v = decode(miner_responses, "luxos/version_s19kpro.json")
    assert v["family"] == "luxos"
    assert (v["make"], v["model"]) == ("Bitmain", "Antminer S19k Pro")
    assert v["firmware"] == "LUXminer 2025.4.8.220305-57b389c7"


# --- avalon ---


def test_avalon_stats_10xx(miner_responses: Path) -> None:
    d = decode(miner_responses, "avalon/stats_avalon10xx.json")
    assert (d["family"], d["make"], d["model"]) == ("avalon", "Canaan", "Avalon 1047")
    assert d["serial"] == "0201000017cdf409"
    assert d["firmware"] == "1047-19120401_d46bc64_0367a8b"
    assert d["hashrate_ths"] == pytest.approx(37.76867)
    assert d["hashrate_avg_ths"] == pytest.approx(37.23534)
    assert boards(d, "hashrate_ths") == pytest.approx([18.72758, 18.50776])
    assert boards(d, "chip_temp_c") == [75.0, 70.0]
    assert boards(d, "temp_c") == [66.0, 62.0]
    assert boards(d, "chips") == [120, 120]
    assert d["fans_rpm"] == [2984, 2972]
    assert d["power_w"] == 2288.0 and d["power_source"] == "reported"
    assert d["uptime_s"] == 103808
    assert d["extras"]["env_temp_c"] == 28.0
    assert d["state"] == "hashing"


def test_avalon_multicommand(miner_responses: Path) -> None:
    d = decode(miner_responses, "avalon/multicommand_pools_summary_stats_a1047.json")
    assert d["command"] == "summary+stats+pools"
    assert d["family"] == "avalon"
    assert d["hashrate_ths"] == pytest.approx(32.24741681)  # summary MHS 30s wins over stats
    assert d["hashrate_avg_ths"] == pytest.approx(25.53675174)
    assert boards(d, "hashrate_ths") == pytest.approx([12.36261, 12.81216])
    assert boards(d, "chip_temp_c") == [61.0, 64.0]
    assert boards(d, "temp_c") == [55.0, 58.0]
    assert d["fans_rpm"] == [2896, 2927]
    assert "power_w" not in d  # PS[0 0 0 0 0 0]: the PSU is not reporting
    assert [p["url"] for p in d["pools"]] == [
        "stratum+tcp://sha256.mining-dutch.nl:9996",
        "stratum+tcp://sha256.antpool.com:3333",
        "stratum+tcp://sha256.mining-dutch.nl:9996",
    ]
    assert [p["accepted"] for p in d["pools"]] == [5, 0, 1]
    assert d["uptime_s"] == 155
    assert d["state"] == "hashing"


def test_avalon_version(miner_responses: Path) -> None:
    d = decode(miner_responses, "avalon/version.json")
    assert (d["make"], d["model"]) == ("Canaan", "Avalon Q")
    assert d["mac"] == "AA:BB:CC:DD:EE:FF"
    assert d["firmware"] == "25052801_14a19a2"


def test_avalon_softoff_ack_is_curtailed(miner_responses: Path) -> None:
    d = decode(miner_responses, "avalon/ascset_softoff.json")
    assert d["command"] == "ascset"
    assert d["state"] == "curtailed"
    assert "softoff:1753434821" in d["state_reason"]
    assert d["extras"]["ack"]["code"] == 118


def test_avalon_text_mode_ack(miner_responses: Path) -> None:
    d = decode(miner_responses, "avalon/ascset_led_text_mode.txt")
    assert (d["command"], d["format"]) == ("ascset", "text")
    assert d["extras"]["ack"] == {
        "command": "ascset",
        "status": "S",
        "code": 119,
        "msg": "ASC 0 set OK",
    }
    assert "state" not in d


# --- bitaxe ---


def test_bitaxe_system_info(miner_responses: Path) -> None:
    d = decode(miner_responses, "bitaxe/api_system_info_bm1368.json")
    assert (d["command"], d["family"], d["model"]) == ("system_info", "bitaxe", "Bitaxe Supra")
    assert d["hashrate_ths"] == 1.0
    assert d["expected_hashrate_ths"] == pytest.approx(1276 * 490 / 1e6)
    assert d["boards"][0]["chip_temp_c"] == 59.875
    assert d["boards"][0]["temp_c"] == 78.0
    assert d["boards"][0]["chips"] == 1
    assert d["fans_rpm"] == [3517]
    assert d["power_w"] == pytest.approx(2.65)
    assert d["uptime_s"] == 4
    assert d["hostname"] == "bitaxe" and d["firmware"] == "v2.4.5-3-gb5d1e36-dirty"
    assert d["pools"][0] == {
        "url": "stratum+tcp://btc.example.pool:3333",
        "user": "asic-rs.test",
        "status": "active",
        "accepted": 0,
        "rejected": 0,
    }
    assert d["pools"][1]["url"] == "stratum+tcp://btc2.example.pool:3333"
    assert d["state"] == "hashing"


# --- braiins ---


def test_braiins_summary(miner_responses: Path) -> None:
    d = decode(miner_responses, "braiins/summary_bosminer_plus_s9.json")
    assert d["family"] == "braiins"
    assert d["hashrate_ths"] == pytest.approx(15.740915842676325)
    assert d["hashrate_avg_ths"] == pytest.approx(11.988299650652435)
    assert d["uptime_s"] == 3680


def test_braiins_devs(miner_responses: Path) -> None:
    d = decode(miner_responses, "braiins/devs_bosminer_plus_s9.json")
    assert boards(d, "hashrate_ths") == pytest.approx(
        [4.68307074742169, 4.687913424447901, 4.213098705765925]
    )
    assert boards(d, "temp_c") == [None, None, None]  # Temperature 0.0 = no sensor in devs
    assert d["expected_hashrate_ths"] == pytest.approx(3 * 4.6683)


def test_braiins_fans_temps_tempctrl_tuner_version(miner_responses: Path) -> None:
    assert decode(miner_responses, "braiins/fans_bosminer_plus_s9.json")["fans_rpm"] == [
        2820,
        3780,
        0,
        0,
    ]
    temps = decode(miner_responses, "braiins/temps_bosminer_plus_s9.json")
    assert boards(temps, "temp_c") == [75.0, 63.0, 70.0]
    assert boards(temps, "chip_temp_c") == [None, None, None]
    ctrl = decode(miner_responses, "braiins/tempctrl_bosminer_plus_s9.json")["extras"]
    assert (ctrl["temp_target_c"], ctrl["temp_hot_c"], ctrl["temp_dangerous_c"]) == (
        89.0,
        100.0,
        110.0,
    )
    tuner = decode(miner_responses, "braiins/tunerstatus_bosminer_plus_s9.json")
    assert tuner["power_w"] == 1419.0 and tuner["power_source"] == "reported"
    assert tuner["extras"]["power_limit_w"] == 1420.0
    assert tuner["extras"]["board0_power_w"] == 448.0
    version = decode(miner_responses, "braiins/version_bosminer_plus_s9.json")
    assert version["firmware"] == "BOSminer+ 0.2.0-36c56a9363"


def test_braiins_pause_and_resume(miner_responses: Path) -> None:
    pause = decode(miner_responses, "braiins/pause_bosminer_plus_s17.json")
    assert (pause["command"], pause["state"]) == ("pause", "curtailed")
    assert pause["extras"]["ack"]["code"] == 204
    resume = decode(miner_responses, "braiins/resume_bosminer_plus_s17.json")
    assert resume["command"] == "resume"
    assert resume["extras"]["ack"] == {
        "command": "resume",
        "status": "S",
        "code": 205,
        "msg": "Resume",
    }
    assert "state" not in resume


# --- whatsminer ---


def test_whatsminer_summary(miner_responses: Path) -> None:
    d = decode(miner_responses, "whatsminer/summary_m31s_btminer.json")
    assert (d["family"], d["make"]) == ("whatsminer", "MicroBT")
    assert d["mac"] == "C6:06:12:00:2D:63"
    assert d["firmware"] == "20201202.22.REL"
    assert d["hashrate_ths"] == pytest.approx(92.76828894)
    assert d["hashrate_avg_ths"] == pytest.approx(76.71860438)
    assert d["expected_hashrate_ths"] == pytest.approx(75.697)
    assert d["power_w"] == 3553.0 and d["power_source"] == "reported"
    assert d["efficiency_jth"] == 46.31
    assert d["fans_rpm"] == [5700, 0]
    assert d["uptime_s"] == 33102
    assert d["errors"] == [
        "error 110: intake fan speed error",
        "error 111: exhaust fan speed error",
        "error 131: exhaust fan speed error, deviates by more than 3000 rpm",
        "factory test code 208: power supply error",
        "factory test code 2310: hashrate is too low",
    ]
    assert d["extras"]["power_limit_w"] == 3600.0
    assert d["state"] == "hashing"


def test_whatsminer_edevs(miner_responses: Path) -> None:
    d = decode(miner_responses, "whatsminer/edevs_m31s_btminer.json")
    assert boards(d, "hashrate_ths") == pytest.approx([25.01289274, 26.03248718, 25.9448617])
    assert boards(d, "temp_c") == [57.5, 72.0, 68.0]
    assert boards(d, "chip_temp_c") == [77.44, 93.0, 89.17]
    assert boards(d, "chips") == [105, 105, 105]


def test_whatsminer_v2_replies(miner_responses: Path) -> None:
    version = decode(miner_responses, "whatsminer/get_version.json")
    assert (version["command"], version["firmware"]) == ("get_version", "20230803.11.REL")
    assert version["extras"] == {"api_version": "2.0.5", "control_board": "H616"}
    info = decode(miner_responses, "whatsminer/get_miner_info.json")
    assert (info["hostname"], info["mac"]) == ("WhatsMiner", "D4:01:02:03:04:05")
    token = decode(miner_responses, "whatsminer/get_token.json")
    assert token["command"] == "get_token" and "salt" in token["note"]
    enc = decode(miner_responses, "whatsminer/privileged_encrypted_reply.json")
    assert enc["command"] == "encrypted" and "admin password" in enc["note"]


def test_whatsminer_refusal(miner_responses: Path) -> None:
    d = decode(miner_responses, "whatsminer/error_missing_command.json")
    assert d["command"] == "error"
    assert d["errors"] == ["error: rig refused: Code 24: Missing JSON 'command'"]
