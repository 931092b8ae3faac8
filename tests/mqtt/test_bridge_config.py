"""config/mosquitto/bridge.conf on two real brokers: a site broker bridged to a central one.

The example file is used as written, with the central address pointed at a local TCP proxy
and the TLS client-certificate lines left out (the test brokers listen in plain TCP). The
proxy is the WAN link: severed, the site keeps publishing; restored, the centre gets it all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt.conftest import Collector
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_for

BRIDGE = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "bridge.conf"


def bridge_conf(central_port: int) -> str:
    """The example bridge with the central broker at 127.0.0.1:`central_port`, no TLS."""
    text = BRIDGE.read_text()
    text = re.sub(r"(?m)^address .*$", f"address 127.0.0.1:{central_port}", text)
    text = re.sub(r"(?m)^bridge_(cafile|certfile|keyfile) .*\n", "", text)
    return text.replace("restart_timeout 2 30", "restart_timeout 1 2")  # quick test reconnects


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, MosquittoBroker, TcpProxy]]:
    """Central broker, the WAN link (a proxy) and the site broker bridged through it."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed (make test installs the Debian package when it can)")
    central = MosquittoBroker(tmp_path / "central")
    central.start()
    link = TcpProxy(central.port).start()
    site = MosquittoBroker(tmp_path / "site", extra_conf=bridge_conf(link.port))
    try:
        site.start()
        yield central, site, link
    finally:
        site.kill()
        link.close()
        central.kill()


def _publish(port: int, messages: list[tuple[str, str]], *, retain: bool = False) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{port}", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _bridge_up(central: Collector) -> bool:
    return any(p == b"1" for t, p in central.messages if t == "farmctl/west/bridge/state")


def test_site_topics_go_out_targets_come_in_and_a_cut_loses_nothing(
    brokers: tuple[MosquittoBroker, MosquittoBroker, TcpProxy],
) -> None:
    central_broker, site_broker, link = brokers
    central = Collector(central_broker.port, "#", client_id="central-view")
    site = Collector(site_broker.port, "farmctl/#", client_id="site-view")
    try:
        wait_for(lambda: _bridge_up(central), timeout=15, what="the bridge up (notification)")
        _publish(
            site_broker.port,
            [
                ("farmctl/west/rig/s19-01/state", '{"state": "hashing"}'),
                ("farmctl/west/totals", '{"rigs": 1}'),
                ("farmctl/west/power_target/ack", '{"target_id": "t1", "state": "met"}'),
                ("farmctl/west/plan", '{"groups": []}'),
                ("farmctl/gateway/farm_west/availability", "online"),
                ("farm/reports/reports", '{"id": "sale-report-2025-08-20"}'),
                ("farmctl/west/cmd/ack", '{"id": "op-1", "ok": true}'),
                # not for the centre: rig telemetry, another site's topics, commands
                ("farm/west/s19-01/telemetry", '{"id": "x"}'),
                ("farmctl/east/rig/a/state", '{"state": "hashing"}'),
                ("farmctl/east/plan", '{"groups": []}'),
                ("farmctl/west/cmd", '{"id": "op-3"}'),
            ],
        )
        _publish(
            central_broker.port,
            [
                ("farmctl/west/power_target", '{"id": "t2"}'),
                ("farmctl/east/power_target", '{"id": "t3"}'),
                ("farmctl/west/cmd", '{"id": "op-2"}'),
                ("farmctl/east/cmd", '{"id": "op-4"}'),
                ("farmctl/receipts", '{"msg_id": "sale-report-2025-08-20"}'),
            ],
        )
        out = {
            "farmctl/west/rig/s19-01/state",
            "farmctl/west/totals",
            "farmctl/west/power_target/ack",
            "farmctl/west/plan",
            "farmctl/gateway/farm_west/availability",
            "farm/reports/reports",
            "farmctl/west/cmd/ack",
        }
        wait_for(lambda: out <= {t for t, _ in central.messages}, what="site topics at the centre")
        wait_for(
            lambda: (
                {"farmctl/west/power_target", "farmctl/west/cmd", "farmctl/receipts"}
                <= {t for t, _ in site.messages}
            ),
            what="central topics at the site",
        )
        time.sleep(0.5)  # anything that should not cross would have by now
        at_centre = [t for t, _ in central.messages]
        assert "farm/west/s19-01/telemetry" not in at_centre
        assert "farmctl/east/rig/a/state" not in at_centre
        assert "farmctl/east/plan" not in at_centre
        # a command goes centre -> site only: the site's own op-3 stays there
        assert [p for t, p in central.messages if t == "farmctl/west/cmd"] == [b'{"id": "op-2"}']
        at_site = [t for t, _ in site.messages]
        assert "farmctl/east/power_target" not in at_site and "farmctl/east/cmd" not in at_site
        # the site's own farmctl/west/cmd (op-3) and the centre's (op-2), each once
        assert sorted(p for t, p in site.messages if t == "farmctl/west/cmd") == [
            b'{"id": "op-2"}',
            b'{"id": "op-3"}',
        ]
        # No loop: each message crossed once, none came back.
        assert sorted(t for t in at_centre if t in out) == sorted(out)
        assert [t for t, _ in site.messages].count("farmctl/west/power_target") == 1

        # The WAN link is cut: the site keeps publishing, the centre sees the link down.
        link.sever()
        wait_for(
            lambda: (
                [p for t, p in central.messages if t == "farmctl/west/bridge/state"][-1] == b"0"
            ),
            timeout=15,
            what="the bridge down (the centre's will for it)",
        )
        during = [("farmctl/west/power_target/ack", f'{{"n": {i}}}') for i in range(50)]
        _publish(site_broker.port, during)
        time.sleep(1.0)
        assert sum(t == "farmctl/west/power_target/ack" for t, _ in central.messages) == 1
        link.restore()
        wait_for(
            lambda: sum(t == "farmctl/west/power_target/ack" for t, _ in central.messages) == 51,
            timeout=20,
            what="the 50 messages of the cut at the centre",
        )
        payloads = [p for t, p in central.messages if t == "farmctl/west/power_target/ack"][1:]
        assert payloads == [p.encode() for _, p in during]  # all, once, in order
    finally:
        central.close()
        site.close()
