"""Health rules: each rule's condition, and the sustained-for-N-minutes semantics with explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from miners.health import (
    FanStopped,
    HashrateLow,
    HealthMonitor,
    Offline,
    Overheat,
    PoolHijack,
    default_rules,
)
from miners.status import BoardStatus, PoolStatus, RigStatus

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAC = "aa:bb:cc:00:11:22"


def s19pro(**changes: object) -> RigStatus:
    """An S19 Pro as its captured stock replies describe it (stats_s19pro_overheating.json):
    ideal rate 111859 GH/s, chains at 88/89/92 C with chips at 93/94/97 C, fans 5160-6240 RPM,
    pools from pools_s19_sleeping.json."""
    status = RigStatus(
        ip="127.0.0.1",
        port=4028,
        mac=MAC,
        family="antminer",
        model="Antminer S19 Pro",
        state="hashing",
        hashrate_ths=110.2,
        expected_hashrate_ths=111.859,
        boards=[
            BoardStatus(0, 36.7, 88.0, 93.0, 114),
            BoardStatus(1, 36.8, 89.0, 94.0, 114),
            BoardStatus(2, 36.7, 92.0, 97.0, 114),
        ],
        fans_rpm=[5160, 5280, 6240, 6120],
        pools=[
            PoolStatus("stratum+tcp://aaa:700", "aaa.226x94", "Alive"),
            PoolStatus("stratum+tcp://bbb:6000", "bbb.226x94", "Alive"),
        ],
    )
    for key, value in changes.items():
        setattr(status, key, value)
    return status


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_hashrate_low_fires_only_after_the_window_and_clears_at_once() -> None:
    monitor = HealthMonitor([HashrateLow(min_pct=90, window=timedelta(minutes=10))])
    # GHS 5s 0.0 in the overheating capture: the rig makes nothing
    low = s19pro(hashrate_ths=0.0)
    assert monitor.evaluate([low], at(0)) == []
    assert monitor.evaluate([low], at(5)) == []
    assert monitor.evaluate([low], at(9.99)) == []
    fired = monitor.evaluate([low], at(10))
    assert [(e.rule, e.kind, e.since) for e in fired] == [("hashrate_low", "fired", at(0))]
    assert "0.0 % of expected 111.86 TH/s" in fired[0].message
    assert monitor.evaluate([low], at(11)) == []  # fires once, not on every poll
    assert [a.rule for a in monitor.active()] == ["hashrate_low"]
    cleared = monitor.evaluate([s19pro()], at(12))
    assert [(e.kind, e.rig) for e in cleared] == [("cleared", MAC)]
    assert monitor.active() == []


def test_a_dip_that_recovers_inside_the_window_never_fires() -> None:
    monitor = HealthMonitor([HashrateLow(min_pct=90, window=timedelta(minutes=10))])
    assert monitor.evaluate([s19pro(hashrate_ths=90.0)], at(0)) == []  # 80.5 %
    assert monitor.evaluate([s19pro(hashrate_ths=90.0)], at(8)) == []
    assert monitor.evaluate([s19pro(hashrate_ths=101.0)], at(9)) == []  # 90.3 %: recovered
    # the window restarts at the next dip
    assert monitor.evaluate([s19pro(hashrate_ths=90.0)], at(12)) == []
    assert monitor.evaluate([s19pro(hashrate_ths=90.0)], at(21)) == []
    assert [e.kind for e in monitor.evaluate([s19pro(hashrate_ths=90.0)], at(22))] == ["fired"]


def test_curtailed_rig_is_not_low_and_unknown_expected_is_no_evidence() -> None:
    rule = HashrateLow(min_pct=90)
    assert rule.check(s19pro(state="curtailed", hashrate_ths=0.0)) is False
    assert rule.check(s19pro(expected_hashrate_ths=None, hashrate_ths=1.0)) is None
    assert rule.check(s19pro(state="offline", hashrate_ths=None)) is None


def test_no_evidence_restarts_a_pending_window_but_keeps_a_firing_alert() -> None:
    monitor = HealthMonitor([HashrateLow(min_pct=90, window=timedelta(minutes=10))])
    low = s19pro(hashrate_ths=50.0)
    blind = s19pro(state="offline", hashrate_ths=None)
    monitor.evaluate([low], at(0))
    monitor.evaluate([blind], at(6))  # continuity not proven
    assert monitor.evaluate([low], at(10)) == []
    assert [e.kind for e in monitor.evaluate([low], at(20))] == ["fired"]
    assert monitor.evaluate([blind], at(25)) == []
    assert [a.rule for a in monitor.active()] == ["hashrate_low"]


def test_overheat_uses_the_model_limit_or_the_default() -> None:
    rule = Overheat(limits={"antminer s19 pro": 95.0}, default_limit_c=85.0, window=timedelta(0))
    hot = s19pro()  # hottest chip 97 C
    msg = rule.check(hot)
    assert msg == "temperature 97.0 C over the Antminer S19 Pro limit 95 C"
    assert rule.check(s19pro(model="Antminer S21")) is not False  # default 85 C
    cool_boards = [BoardStatus(i, 36.0, 60.0, 70.0) for i in range(3)]
    assert rule.check(s19pro(boards=cool_boards)) is False
    assert rule.check(s19pro(boards=[])) is None
    monitor = HealthMonitor(
        [Overheat(limits={"Antminer S19 Pro": 95.0}, window=timedelta(minutes=2))]
    )
    assert monitor.evaluate([hot], at(0)) == []
    assert [e.kind for e in monitor.evaluate([hot], at(2))] == ["fired"]


def test_overheat_limit_from_the_hardware_catalog() -> None:
    rule = Overheat()  # no explicit limits: the catalog's max_temp_c for the model
    assert rule.limit_for("Antminer S19 Pro") == 80.0  # hardware/catalog.csv
    assert rule.limit_for("Unknown Rig 9000") == 85.0
    assert rule.check(s19pro()) == "temperature 97.0 C over the Antminer S19 Pro limit 80 C"
    assert Overheat(use_catalog=False).limit_for("Antminer S19 Pro") == 85.0


def test_fan_stopped_only_while_hashing() -> None:
    rule = FanStopped()
    assert rule.check(s19pro(fans_rpm=[5160, 0, 6240, 6120])) == "fan(s) 1 stopped while hashing"
    assert rule.check(s19pro()) is False
    # a sleeping S19 spins its fans down on purpose
    assert rule.check(s19pro(state="curtailed", fans_rpm=[0, 0, 0, 0])) is False
    assert rule.check(s19pro(fans_rpm=[])) is None


def test_pool_hijack_by_url_and_by_worker_account() -> None:
    rule = PoolHijack(allowed_pools=("aaa:700", "stratum+tcp://bbb"), allowed_users=("aaa", "bbb"))
    assert rule.check(s19pro()) is False
    hijacked = s19pro(
        pools=[
            PoolStatus("stratum+tcp://aaa:700", "aaa.226x94", "Alive"),
            PoolStatus("stratum+tcp://ccc:443", "ccc.226x94", "Dead"),  # third pool of the capture
        ]
    )
    assert rule.check(hijacked) == "pool stratum+tcp://ccc:443 not allowed"
    wrong_port = s19pro(pools=[PoolStatus("stratum+tcp://aaa:3333", "aaa.226x94", "Alive")])
    assert rule.check(wrong_port) == "pool stratum+tcp://aaa:3333 not allowed"
    stolen = s19pro(pools=[PoolStatus("stratum+tcp://bbb:6000", "thief.1", "Alive")])
    assert (
        rule.check(stolen)
        == "worker 'thief.1' on stratum+tcp://bbb:6000 not under an allowed account"
    )
    monitor = HealthMonitor([rule])  # window 0: fires on the first poll
    assert [e.rule for e in monitor.evaluate([hijacked], at(0))] == ["pool_hijack"]


def test_offline_rule_and_rig_identity_by_mac() -> None:
    monitor = HealthMonitor([Offline(window=timedelta(minutes=5))])
    down = s19pro(state="offline", state_reason="no reply within 3.00 s", hashrate_ths=None)
    monitor.evaluate([down], at(0))
    # same MAC at another address (DHCP): still the same rig, the window keeps running
    moved = s19pro(ip="127.0.0.9", state="offline", state_reason="refused", hashrate_ths=None)
    events = monitor.evaluate([moved], at(5))
    assert [(e.rig, e.rule, e.kind) for e in events] == [(MAC, "offline", "fired")]
    assert events[0].message == "offline: refused"


def test_default_rules_and_validation() -> None:
    names = [r.name for r in default_rules()]
    assert names == ["offline", "hashrate_low", "overheat", "fan_stopped"]
    assert default_rules(allowed_pools=["aaa:700"])[-1].name == "pool_hijack"
    with pytest.raises(ValueError, match="unique"):
        HealthMonitor([Offline(), Offline()])
    with pytest.raises(ValueError, match="timezone-aware"):
        HealthMonitor([Offline()]).evaluate([s19pro()], datetime(2026, 11, 23, 12, 0))


def test_fan_rule_counts_fans_against_the_model(miner_responses: Path) -> None:
    """Braiins OS on an S9 reports four fan headers, two empty: not a stopped fan. One of the
    two real fans at 0 is."""
    from miners.decode import decode_file
    from miners.health import FanStopped

    decoded = decode_file(miner_responses / "braiins" / "fans_bosminer_plus_s9.json")
    fans = decoded.fields["fans_rpm"]
    assert fans == [2820, 3780, 0, 0]
    rule = FanStopped()
    hashing = RigStatus(state="hashing", model="Antminer S9", fans_rpm=fans)
    assert rule.check(hashing) is False
    one_dead = RigStatus(state="hashing", model="Antminer S9", fans_rpm=[2820, 0, 0, 0])
    assert rule.check(one_dead) == "1 of 2 fans stopped while hashing"
    unknown_model = RigStatus(state="hashing", model="Mystery 9000", fans_rpm=[2820, 0])
    assert rule.check(unknown_model) == "fan(s) 1 stopped while hashing"
