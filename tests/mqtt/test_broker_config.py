"""The example broker configuration in config/mosquitto/, run for real: auth, ACL, TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from miners.mqtt_sim import SimEndpoint, SimMqttRig
from tests.support.mosquitto import free_port, mosquitto_binary
from tests.support.waiting import wait_for

CONFIG = Path(__file__).resolve().parents[2] / "config" / "mosquitto"
PASSWORDS = {"farmctl-controller": "ctl-secret", "rig-a": "rig-a-secret", "rig-b": "rig-b-secret"}


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certs(folder: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key, server_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "farmctl test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(_pem_key(server_key))


@dataclass
class ExampleBroker:
    """mosquitto running the example configuration."""

    plain_port: int
    tls_port: int
    ca_file: Path
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def example_broker(tmp_path: Path) -> Iterator[ExampleBroker]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto not installed")
    etc = tmp_path / "etc"
    make_certs(etc / "certs")
    passwd = etc / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True
        )
    (etc / "acl").write_text((CONFIG / "acl").read_text())
    plain_port = free_port()
    tls_port = free_port()
    while tls_port == plain_port:
        tls_port = free_port()
    conf = (CONFIG / "mosquitto.conf").read_text()
    for example, actual in [
        ("/etc/mosquitto/farmctl/", f"{etc}/"),
        ("/var/lib/mosquitto/", f"{tmp_path}/persist/"),
        ("listener 1883 127.0.0.1", f"listener {plain_port} 127.0.0.1"),
        ("listener 8883", f"listener {tls_port} 127.0.0.1"),
    ]:
        assert example in conf, f"example config no longer contains {example!r}"
        conf = conf.replace(example, actual)
    (tmp_path / "persist").mkdir()
    conf += "user root\n"  # tests may run as root; the example drops to user mosquitto
    conf_path = tmp_path / "mosquitto.conf"
    conf_path.write_text(conf)
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(conf_path)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        import socket

        def listening() -> bool:
            assert proc.poll() is None, f"mosquitto exited: {log.read_text()}"
            try:
                with socket.create_connection(("127.0.0.1", tls_port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(listening, what="example broker listening")
        yield ExampleBroker(plain_port, tls_port, etc / "certs" / "ca.crt", proc, log)
    finally:
        proc.kill()
        proc.wait(10)


class Client:
    """A paho client that records its CONNACK and the messages it gets."""

    def __init__(
        self, port: int, user: str | None, *, ca_file: Path | None = None, client_id: str = ""
    ) -> None:
        self.reason: Any = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{user}", protocol=paho.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, PASSWORDS[user])
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.answered.wait(5), "no CONNACK"

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.reason = reason
        if not reason.is_failure:
            self.connected.set()
        self.answered.set()

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_anonymous_client_is_refused(example_broker: ExampleBroker) -> None:
    anonymous = Client(example_broker.plain_port, None, client_id="anon")
    assert not anonymous.connected.is_set()
    assert anonymous.reason.is_failure and str(anonymous.reason) == "Not authorized"
    anonymous.client.loop_stop()
    wrong = paho.Client(CallbackAPIVersion.VERSION2, client_id="wrong", protocol=paho.MQTTv5)
    wrong.username_pw_set("rig-a", "not-the-password")
    codes: list[Any] = []
    wrong.on_connect = lambda c, u, f, reason, p: codes.append(reason)
    wrong.connect("127.0.0.1", example_broker.plain_port)
    wrong.loop_start()
    wait_for(lambda: codes, what="CONNACK")
    wrong.loop_stop()
    assert codes[0].is_failure


def test_a_rig_cannot_command_another_rig(example_broker: ExampleBroker) -> None:
    ctl = Client(
        example_broker.tls_port, "farmctl-controller", ca_file=example_broker.ca_file
    )  # TLS works
    assert ctl.connected.is_set()
    ctl.subscribe("farm/#")
    rig_b = Client(example_broker.tls_port, "rig-b", ca_file=example_broker.ca_file)
    rig_b.subscribe("farm/site-a/rig-b/cmd")
    rig_a = Client(example_broker.tls_port, "rig-a", ca_file=example_broker.ca_file)
    rig_a.subscribe("farm/site-a/rig-b/cmd")  # reading another rig's commands: denied too
    forged = json.dumps({"id": "forged-1", "action": "curtail"}).encode()
    rig_a.client.publish("farm/site-a/rig-b/cmd", forged, qos=1).wait_for_publish(5)
    rig_a.client.publish("farm/site-a/rig-a/cmd", forged, qos=1).wait_for_publish(
        5
    )  # own cmd: controller only
    rig_a.client.publish("farm/site-a/rig-b/telemetry", b'{"id":"fake"}', qos=1).wait_for_publish(5)
    rig_a.client.publish("farm/site-a/rig-a/telemetry", b'{"id":"real"}', qos=1).wait_for_publish(5)
    # the controller's command reaches rig-b and only rig-b
    ctl.client.publish(
        "farm/site-a/rig-b/cmd", b'{"id":"ctl-1","action":"resume"}', qos=1
    ).wait_for_publish(5)
    wait_for(
        lambda: ("farm/site-a/rig-b/cmd", b'{"id":"ctl-1","action":"resume"}') in rig_b.messages,
        what="ctl cmd",
    )
    wait_for(
        lambda: ("farm/site-a/rig-a/telemetry", b'{"id":"real"}') in ctl.messages,
        what="rig-a telemetry",
    )
    time.sleep(0.3)
    assert [t for t, _ in ctl.messages] == ["farm/site-a/rig-a/telemetry", "farm/site-a/rig-b/cmd"]
    assert rig_b.messages == [("farm/site-a/rig-b/cmd", b'{"id":"ctl-1","action":"resume"}')]
    assert rig_a.messages == []
    for c in (ctl, rig_a, rig_b):
        c.close()


def test_simulated_rig_agent_works_under_the_acl_over_tls(example_broker: ExampleBroker) -> None:
    from controller.mqtt.client import MqttClient, MqttSettings
    from miners.mqtt_driver import MqttRigHub

    settings = MqttSettings(
        port=example_broker.tls_port,
        client_id="controller-tls",
        username="farmctl-controller",
        password=PASSWORDS["farmctl-controller"],
        tls=True,
        ca_file=str(example_broker.ca_file),
    )
    assert "ctl-secret" not in repr(settings)
    client = MqttClient(settings)
    hub = MqttRigHub(client)
    client.start()
    client.wait_ready()
    endpoint = SimEndpoint(
        port=example_broker.tls_port,
        username="rig-a",
        password=PASSWORDS["rig-a"],
        ca_file=str(example_broker.ca_file),
    )
    rig = SimMqttRig(endpoint, "site-a", "rig-a", mac="02:00:00:00:0a:01", interval_s=0.2)
    rig.start()
    try:
        wait_for(lambda: hub.telemetry("site-a", "rig-a"), what="telemetry over TLS")
        assert hub.status("site-a", "rig-a").state == "hashing"
    finally:
        rig.stop()
        client.stop()
