"""One paho-mqtt 2.x client the way the controller needs it.

MQTT v5, callback API version 2, a stable client id, `clean_start=False` with a session expiry
so the broker keeps our subscriptions and queued QoS 1 messages while we are away, automatic
reconnect with backoff, and an alert when a reconnect finds that the broker lost our session
(messages queued for us during the gap are gone; the operator must know).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from controller.config import MqttConfig

logger = logging.getLogger(__name__)

MessageHandler = Callable[[paho.MQTTMessage], None]
PublishListener = Callable[[int, ReasonCode], None]


class MqttNotConnected(RuntimeError):
    """The broker did not accept our connection in time."""


@dataclass(slots=True)
class MqttSettings:
    """Where and how to connect. The password never appears in repr or logs."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "farmctl-controller"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    # paho's own queue of QoS>0 messages is a backstop; the outbox table is the real buffer
    max_queued_messages: int = 1000
    max_inflight_messages: int = 100


class _BatchReadClient(paho.Client):
    """paho's client with buffered reads, draining the socket on each wake-up.

    Stock paho reads one packet per select() when nothing of ours is in flight, and reads each
    packet's header one byte per recv(): a busy subscriber pays a select() and ~4 system calls
    per message. Here one recv() fills a 64 KiB buffer and every buffered packet is handled
    before paho goes back to select(). In bench/bench_mqtt.py this cut the CPU per received
    message substantially. Uses paho 2.x internals (`_packet_read`, `_sock_recv`), which is
    why the dependency is pinned below 3.
    """

    read_batch = 256
    recv_size = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:
            # a new connection: bytes left from the old one must never be parsed
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, self.recv_size))
            if len(data) <= bufsize:
                return data  # includes b"" at end of stream
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def _buffered(self) -> bool:
        return self._rsock is self._sock and self._rpos < len(self._rbuf)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle packets until the socket is drained; buffered bytes are always consumed
        (select() cannot see them)."""
        count = 0
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            count += 1
            if count >= max(self.read_batch, max_packets) and not self._buffered():
                return MQTTErrorCode.MQTT_ERR_SUCCESS


def make_paho_client(
    settings: MqttSettings,
    *,
    manual_ack: bool = False,
    will: tuple[str, bytes | str, int, bool] | None = None,
) -> paho.Client:
    """A configured (not yet connected) paho client: v5, callback API v2, credentials, TLS, will."""
    client = _BatchReadClient(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    client.reconnect_delay_set(
        min_delay=max(1, int(settings.reconnect_min_s)), max_delay=int(settings.reconnect_max_s)
    )
    client.max_queued_messages_set(settings.max_queued_messages)
    client.max_inflight_messages_set(settings.max_inflight_messages)
    return client


def connect_properties(settings: MqttSettings) -> Properties:
    """CONNECT properties: the session outlives the connection by `session_expiry_s`."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.session_expiry_s
    # Receive Maximum: how many unacknowledged QoS 1 messages the broker may send us at once.
    props.ReceiveMaximum = 65535
    return props


class MqttClient:
    """Persistent-session MQTT client running paho's network loop in a background thread.

    Handlers are called in paho's thread and must be quick; an exception in a handler is
    logged and the message dropped, never propagated (a bad payload must not kill the link).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_session_lost: Callable[[], None] | None = None,
        will: tuple[str, bytes | str, int, bool] | None = None,
        manual_ack: bool = False,
    ) -> None:
        self.settings = settings
        self.client = make_paho_client(settings, manual_ack=manual_ack, will=will)
        self._on_session_lost = on_session_lost
        self._subscriptions: list[tuple[str, int, MessageHandler]] = []
        self._publish_listeners: list[PublishListener] = []
        self._connect_listeners: list[Callable[[bool], None]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_subs: set[int] = set()
        self._lock = threading.Lock()
        self._ever_connected = False
        self.session_lost_count = 0
        self.connect_count = 0
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting with backoff until `stop()`."""
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            clean_start=False,
            properties=connect_properties(self.settings),
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session is kept by the broker for `session_expiry_s`)."""
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Block until connected; raises `MqttNotConnected` naming the broker when it times out."""
        if not self._connected.wait(timeout):
            raise MqttNotConnected(
                f"MQTT broker {self.settings.host}:{self.settings.port} did not accept "
                f"client_id={self.settings.client_id} within {timeout:.1f}s"
            )

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until connected and every subscription is acknowledged by the broker."""
        self.wait_connected(timeout)
        if not self._subscribed.wait(timeout):
            raise MqttNotConnected(
                f"MQTT broker {self.settings.host}:{self.settings.port} did not acknowledge the "
                f"subscriptions of client_id={self.settings.client_id} within {timeout:.1f}s"
            )

    @property
    def connected(self) -> bool:
        """True while a connection is up."""
        return self._connected.is_set()

    # ---- registration ----------------------------------------------------------------------
    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Route messages matching `topic_filter` to `handler`; (re)subscribed on every new session."""
        with self._lock:
            self._subscriptions.append((topic_filter, qos, handler))
        if self.connected:
            self._subscribed.clear()
            _rc, mid = self.client.subscribe(topic_filter, qos=qos)
            if mid is not None:
                with self._lock:
                    self._pending_subs.add(mid)

    def add_publish_listener(self, listener: PublishListener) -> None:
        """Call `listener(mid, reason_code)` when the broker acknowledges one of our publishes."""
        self._publish_listeners.append(listener)

    def add_connect_listener(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(session_present)` after each successful connect (in paho's thread)."""
        self._connect_listeners.append(listener)

    # ---- publishing ------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        msg_id: str | None = None,
    ) -> paho.MQTTMessageInfo:
        """Publish; `msg_id` travels as the MQTT 5 user property `msg_id` for dedup downstream."""
        props = None
        if msg_id is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("msg_id", msg_id)
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def publish_if_connected(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> bool:
        """Publish only while connected, else drop: for state that is republished anyway.

        Keeps memory bounded while the broker is away (nothing piles up in paho's queue).
        """
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # ---- paho callbacks (paho's thread) ----------------------------------------------------
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error(
                "mqtt connect refused broker=%s:%s client_id=%s reason=%s",
                self.settings.host,
                self.settings.port,
                self.settings.client_id,
                reason_code,
            )
            return
        self.connect_count += 1
        session_present = bool(flags.session_present)
        if self._ever_connected and not session_present:
            self.session_lost_count += 1
            logger.error(
                "mqtt session lost on reconnect broker=%s:%s client_id=%s: messages queued "
                "for us while disconnected are gone",
                self.settings.host,
                self.settings.port,
                self.settings.client_id,
            )
            if self._on_session_lost is not None:
                try:
                    self._on_session_lost()
                except Exception:
                    logger.exception("mqtt session-lost alert handler failed")
        self._ever_connected = True
        logger.info(
            "mqtt connected broker=%s:%s client_id=%s session_present=%s",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
            session_present,
        )
        with self._lock:
            subs = list(self._subscriptions) if not session_present else []
            self._pending_subs.clear()
            if subs:
                self._subscribed.clear()
                for topic_filter, qos, _handler in subs:
                    _rc, mid = client.subscribe(topic_filter, qos=qos)
                    if mid is not None:
                        self._pending_subs.add(mid)
            else:
                self._subscribed.set()
        self._connected.set()
        for listener in self._connect_listeners:
            try:
                listener(session_present)
            except Exception:
                logger.exception("mqtt connect listener failed")

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for code in reason_codes:
            if code.is_failure:
                logger.error(
                    "mqtt subscription refused client_id=%s mid=%d reason=%s",
                    self.settings.client_id,
                    mid,
                    code,
                )
        with self._lock:
            self._pending_subs.discard(mid)
            if not self._pending_subs:
                self._subscribed.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        logger.warning(
            "mqtt disconnected broker=%s:%s client_id=%s reason=%s",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
            reason_code,
        )

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            subs = list(self._subscriptions)
        for topic_filter, _qos, handler in subs:
            if paho.topic_matches_sub(_match_filter(topic_filter), msg.topic):
                try:
                    handler(msg)
                except Exception:
                    logger.exception("mqtt handler failed topic=%s; message dropped", msg.topic)
                return
        logger.warning("mqtt message on unknown topic=%s dropped", msg.topic)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Called under paho's outgoing-message lock: listeners must not call back into paho.
        for listener in self._publish_listeners:
            try:
                listener(mid, reason_code)
            except Exception:
                logger.exception("mqtt publish listener failed mid=%d", mid)


def _match_filter(topic_filter: str) -> str:
    """The filter messages are matched against: `$share/<group>/f` delivers topics matching `f`."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


def message_id(msg: paho.MQTTMessage, payload: dict[str, Any] | None = None) -> str | None:
    """The sender's message id: MQTT 5 user property `msg_id`, else the payload's `id` field."""
    props = getattr(msg, "properties", None)
    user_props = getattr(props, "UserProperty", None) if props is not None else None
    if user_props:
        for key, value in user_props:
            if key == "msg_id":
                return str(value)
    if payload is not None:
        value = payload.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


def client_id_for(
    template: str | None, gateway: str | None = None, only_sites: Collection[str] = ()
) -> str:
    """The stable client id of one gateway, from `mqtt.client_id`.

    Unset: `farmctl-<gateway id>`. `{gateway}` in the value is replaced by the gateway id. A
    fixed value is used as is when the gateway runs every site of the config; when it runs
    only some (`farmctl run --site`, `only_sites`), their ids are appended, so gateways
    started from one config never share an id (the broker would throw each one off when the
    other connects, and they would share one persistent session).
    """
    if template is None:
        return f"farmctl-{gateway}" if gateway else "farmctl-gateway"
    if "{gateway}" in template:
        return template.replace("{gateway}", gateway or "gateway")
    if only_sites:
        return f"{template}-{'_'.join(sorted(only_sites))}"
    return template


def settings_from_config(
    config: MqttConfig,
    *,
    client_id_suffix: str = "",
    gateway: str | None = None,
    only_sites: Collection[str] = (),
) -> MqttSettings:
    """`MqttSettings` from the `[mqtt]` config section; the password is resolved now.

    The client id is `client_id_for(config.client_id, gateway, only_sites)`. Each connection
    of one gateway needs its own stable client id: pass a suffix (`"-ingest"`, `"-rigs"`) for
    every connection after the first.
    """
    password = None
    if config.password is not None:
        # resolve() raises SecretRefError naming the env var or file, never the value
        password = config.password.resolve().get_secret_value()
    return MqttSettings(
        host=config.host,
        port=config.port,
        client_id=f"{client_id_for(config.client_id, gateway, only_sites)}{client_id_suffix}",
        username=config.username,
        password=password,
        tls=config.tls,
        ca_file=str(config.ca_file) if config.ca_file else None,
        session_expiry_s=config.session_expiry_s,
    )
