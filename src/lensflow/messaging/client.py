"""The one MQTT client wrapper (paho-mqtt), shared by publishers (`live`) and subscribers (`stream`).

Publishing goes through a bounded in-order buffer drained by a sender thread, so a camera loop never
blocks on the network: while the broker is away, messages wait in the buffer (the oldest is dropped
and counted once it is full), paho reconnects with exponential back-off, and the buffer is flushed in
order when the broker returns.

Ordering across a reconnect: messages with QoS >= 1 that were handed to paho but not yet acknowledged
are re-sent by paho itself after the reconnect; the sender waits until those are acknowledged before
handing over newer ones, so the broker sees the original order. QoS 0 messages that paho refuses while
disconnected go back to the front of the buffer; a QoS 0 message already written to a socket whose
broker then died is lost (that is what QoS 0 means; use --qos 1 when every message counts).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from lensflow.errors import LiveError

DEFAULT_PORT = 1883


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The URL without the password, safe to print and log."""
        user = f"{self.username}@" if self.username else ""
        return f"mqtt://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse `mqtt://[user:pass@]host[:port]` (a bare `host[:port]` is accepted too)."""
    text = url.strip()
    if not text:
        raise LiveError("empty MQTT URL; expected mqtt://host:port, e.g. mqtt://127.0.0.1:1883")
    if "://" not in text:
        text = "mqtt://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "tcp"):
        raise LiveError(
            f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}; "
            "expected mqtt://[user:pass@]host:port, e.g. mqtt://127.0.0.1:1883"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise LiveError(f"bad port in MQTT URL {url!r}: {e}") from e
    if not parts.hostname:
        raise LiveError(f"no host in MQTT URL {url!r}; expected mqtt://host:port")
    if parts.path not in ("", "/"):
        raise LiveError(
            f"MQTT URL {url!r} has a path; the topic is a separate option (--topic), "
            "e.g. mqtt://127.0.0.1:1883 --topic sockfound"
        )
    return MqttUrl(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True)
class Message:
    """A received message; `json()` decodes the payload."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class MqttStats:
    """Counters for status lines and final reports."""

    published: int = 0  # handed to the broker (QoS 0) or acknowledged by it (QoS >= 1)
    dropped: int = 0  # evicted from a full buffer, or still unsent at close()
    buffered: int = 0  # waiting in the buffer or unacknowledged
    received: int = 0
    callback_errors: int = 0
    disconnects: int = 0
    connected: bool = False
    last_error: str = ""


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int


def encode_payload(payload: dict[str, Any] | list[Any] | bytes | str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    # json.dumps' default spacing: byte for byte the seed's style, {"image": "Google", ...}.
    return json.dumps(payload).encode("utf-8")


@dataclass
class _Subscription:
    topic: str
    qos: int
    callback: Callable[[Message], None] = field(repr=False)


class MqttClient:
    """A paho client with a bounded in-order publish buffer and automatic reconnects.

    Example:
        client = MqttClient("mqtt://127.0.0.1:1883")
        client.connect()
        client.publish("sockfound", {"image": "Google", "probability": 97.3})
        client.close()
    """

    def __init__(
        self,
        url: str | MqttUrl,
        *,
        client_id: str | None = None,
        clean_session: bool = True,
        buffer_size: int = 1000,
        keepalive: int = 30,
        min_backoff: float = 0.25,
        max_backoff: float = 8.0,
    ) -> None:
        if buffer_size < 1:
            raise LiveError(f"MQTT buffer size must be >= 1, got {buffer_size}")
        self.url = url if isinstance(url, MqttUrl) else parse_mqtt_url(url)
        self.buffer_size = buffer_size
        self.keepalive = keepalive
        self.stats = MqttStats()
        self._buffer: collections.deque[_Outgoing] = collections.deque()
        self._pending: dict[int, _Outgoing] = {}  # handed to paho, waiting for the broker's ack
        # Acks that arrived before publish() returned their mid (and paho's QoS 0 "written"
        # callbacks): bounded, because nothing ever claims the QoS 0 ones.
        self._early_acks: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._resync = False  # after a reconnect: paho re-sends _pending first, wait for it
        self._lock = threading.Condition()
        self._connected_event = threading.Event()
        self._connect_failure: str | None = None
        self._subscriptions: list[_Subscription] = []
        self._closing = False
        self._closed = False
        self._sender: threading.Thread | None = None
        if not clean_session and not client_id:
            raise LiveError(
                "a persistent MQTT session (clean_session=False) needs a fixed client_id"
            )
        # clean_session=False: the broker keeps this subscriber's subscriptions and queues its
        # QoS >= 1 messages while it is away (a stream processor restarting loses nothing).
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"lensflow-{uuid.uuid4().hex[:12]}",
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        # paho retries with exponential back-off between these bounds (seconds).
        self._client.reconnect_delay_set(min_delay=min_backoff, max_delay=max_backoff)  # type: ignore[arg-type]
        # 20 = Mosquitto's default max_inflight_messages: over it, MQTT 3.1.1 brokers may silently
        # discard incoming QoS 2 messages they have already acknowledged (seen with mosquitto 2).
        self._client.max_inflight_messages_set(20)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    # ---- connection ------------------------------------------------------------------------

    def connect(self, wait: bool = False, timeout: float | None = 5.0) -> MqttClient:
        """Connect and start the network and sender threads.

        wait=False: an unreachable broker raises LiveError at once (within `timeout`).
        wait=True: keep retrying with back-off until the broker answers (or `timeout`, None = forever).
        """
        try:
            if wait:
                self._client.connect_async(self.url.host, self.url.port, self.keepalive)
            else:
                self._client.connect(self.url.host, self.url.port, self.keepalive)
        except OSError as e:
            raise LiveError(self._unreachable(str(e))) from e
        self._client.loop_start()
        if not self._connected_event.wait(timeout):
            failure = self._connect_failure
            self._client.loop_stop()
            self._client.disconnect()
            raise LiveError(self._unreachable(failure or f"no answer within {timeout:g}s"))
        if self._connect_failure and not self.stats.connected:
            self._client.loop_stop()
            raise LiveError(
                f"MQTT broker {self.url} refused the connection: {self._connect_failure}"
            )
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()
        return self

    def _unreachable(self, why: str) -> str:
        return (
            f"cannot reach the MQTT broker at {self.url} ({why}); start one "
            f"(e.g. `mosquitto -p {self.url.port}`), check --mqtt, or pass --wait-broker to wait for it"
        )

    @property
    def connected(self) -> bool:
        return self.stats.connected

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            # Bad credentials and similar: retrying will not help, so fail connect() with it.
            self._connect_failure = str(reason)
            self.stats.last_error = str(reason)
            self._connected_event.set()
            return
        with self._lock:
            self.stats.connected = True
            self._connect_failure = None
            for sub in self._subscriptions:
                # Clean sessions forget subscriptions: renew them on every (re)connect.
                client.subscribe(sub.topic, sub.qos)
            self._lock.notify_all()
        self._connected_event.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self._lock:
            if self.stats.connected and not self._closed:  # close() is not an outage
                self.stats.disconnects += 1
            self.stats.connected = False
            self.stats.last_error = str(reason)
            self._resync = True
            self._lock.notify_all()

    # ---- publishing ------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: dict[str, Any] | list[Any] | bytes | str, qos: int = 0
    ) -> bool:
        """Queue a message; never blocks. Returns False when the buffer was full and one was dropped."""
        if qos not in (0, 1, 2):
            raise LiveError(f"MQTT QoS must be 0, 1 or 2, got {qos}")
        message = _Outgoing(topic, encode_payload(payload), qos)
        with self._lock:
            kept = True
            if len(self._buffer) + len(self._pending) >= self.buffer_size:
                # Keep the newest: a live loop cares more about what it sees now.
                kept = False
                self.stats.dropped += 1
                if self._buffer:
                    self._buffer.popleft()
                else:
                    self._refresh_buffered()
                    return False
            self._buffer.append(message)
            self._refresh_buffered()
            self._lock.notify_all()
        return kept

    def _refresh_buffered(self) -> None:
        self.stats.buffered = len(self._buffer) + len(self._pending)

    def _ready_to_send(self) -> bool:
        if self._closing and not self._buffer:
            return True
        if not (self.stats.connected and self._buffer):
            return False
        return not (self._resync and self._pending)

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while not self._ready_to_send():
                    self._lock.wait(0.5)
                if self._closing and not self._buffer:
                    return
                self._resync = False
                message = self._buffer.popleft()
            info = self._client.publish(message.topic, message.payload, message.qos)
            with self._lock:
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or message.qos > 0:
                    # QoS >= 1: paho keeps the message and re-sends it after a reconnect.
                    if message.qos == 0:
                        self.stats.published += 1
                    elif info.mid in self._early_acks:
                        del self._early_acks[info.mid]
                        self.stats.published += 1
                    else:
                        self._pending[info.mid] = message
                        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                            self._resync = True
                else:
                    # QoS 0 refused while disconnected: back to the front, keep the order.
                    self._buffer.appendleft(message)
                    self.stats.connected = self._client.is_connected()
                self._refresh_buffered()
                self._lock.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            message = self._pending.pop(mid, None)
            if message is not None:
                self.stats.published += 1
            else:
                self._early_acks[mid] = None
                while len(self._early_acks) > 1024:
                    self._early_acks.popitem(last=False)
            self._refresh_buffered()
            self._lock.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every buffered message is published; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._buffer or self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    # ---- subscribing -----------------------------------------------------------------------

    def subscribe(self, topic: str, callback: Callable[[Message], None], qos: int = 0) -> None:
        """Call `callback(Message)` for every message on `topic` (wildcards allowed).

        Subscriptions are renewed after every reconnect. Exceptions in the callback are counted
        in stats.callback_errors (and kept in stats.last_error) instead of killing the network thread.
        """
        sub = _Subscription(topic, qos, callback)
        with self._lock:
            self._subscriptions.append(sub)

        def deliver(client: Any, userdata: Any, msg: Any) -> None:
            self.stats.received += 1
            try:
                callback(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            except Exception as e:  # a bad message must not stop the subscriber
                self.stats.callback_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"

        self._client.message_callback_add(topic, deliver)
        if self.stats.connected:
            result, _ = self._client.subscribe(topic, qos)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise LiveError(f"cannot subscribe to {topic!r} on {self.url}: {result}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        # Only reached for topics without a matching subscription callback (should not happen).
        self.stats.received += 1

    # ---- shutdown --------------------------------------------------------------------------

    def close(self, flush_timeout: float = 5.0) -> MqttStats:
        """Flush what can be flushed within `flush_timeout`, count the rest as dropped, disconnect.

        Idempotent: a second call returns the same stats."""
        if self._closed:
            return self.stats
        self._closed = True
        if self._sender is not None:
            self.flush(flush_timeout)
        with self._lock:
            self.stats.dropped += len(self._buffer) + len(self._pending)
            self._buffer.clear()
            self._pending.clear()
            self._refresh_buffered()
            self._closing = True
            self._lock.notify_all()
        if self._sender is not None:
            self._sender.join(timeout=2)
            self._sender = None
        self._client.disconnect()
        self._client.loop_stop()
        self.stats.connected = False
        return self.stats

    def __enter__(self) -> MqttClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
