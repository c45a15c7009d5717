"""The MQTT wrapper against a real Mosquitto: round trips, ordering, broker loss, bad input."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from lensflow.errors import LiveError
from lensflow.messaging import Message, MqttClient, parse_mqtt_url
from tests.fixtures.mqtt import free_port


class Collector:
    """Thread-safe list of received payloads with a wait-for-count."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self._cond = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self._cond:
            self.items.append(message.json())
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.items) < n and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return list(self.items)


def test_parse_mqtt_url_forms() -> None:
    u = parse_mqtt_url("mqtt://alice:s%40cret@broker.local:1884")
    assert (u.host, u.port, u.username, u.password) == ("broker.local", 1884, "alice", "s@cret")
    assert str(u) == "mqtt://alice@broker.local:1884"  # never prints the password
    assert parse_mqtt_url("127.0.0.1").port == 1883
    assert parse_mqtt_url("tcp://h:2000").port == 2000


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://h:1883", "unsupported MQTT URL scheme"),
        ("mqtt://h:99999", "bad port"),
        ("mqtt://h:1883/sockfound", "--topic"),
        ("", "empty MQTT URL"),
        ("mqtt://:1883", "no host"),
    ],
)
def test_parse_mqtt_url_rejects(url: str, fragment: str) -> None:
    with pytest.raises(LiveError, match=fragment):
        parse_mqtt_url(url)


def test_unreachable_broker_is_a_clear_error() -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(
        LiveError, match=rf"cannot reach the MQTT broker at mqtt://127.0.0.1:{port}.*--wait-broker"
    ):
        MqttClient(f"mqtt://127.0.0.1:{port}").connect()
    assert time.monotonic() - start < 3


def test_wait_for_broker_times_out_cleanly() -> None:
    with pytest.raises(LiveError, match=r"no answer within 0\.5s"):
        MqttClient(f"mqtt://127.0.0.1:{free_port()}").connect(wait=True, timeout=0.5)


@pytest.mark.mqtt
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_subscribe_round_trip_in_order(mosquitto, qos: int) -> None:
    # One QoS per stream: the broker may interleave different QoS levels (its QoS 1 inflight
    # window queues while QoS 0 goes straight through), so ordering holds per QoS.
    got = Collector()
    sub = MqttClient(mosquitto.url).connect()
    sub.subscribe("lensflow/test/#", got, qos=1)
    time.sleep(0.2)  # SUBACK
    pub = MqttClient(mosquitto.url).connect()
    for i in range(50):
        pub.publish("lensflow/test/a", {"image": "hat", "probability": 90.0, "frame": i}, qos=qos)
    assert pub.flush(5)
    items = got.wait_for(50)
    stats = pub.close()
    sub.close()
    assert [m["frame"] for m in items] == list(range(50))
    assert stats.published == 50 and stats.dropped == 0 and stats.buffered == 0
    assert stats.disconnects == 0  # closing is not an outage


@pytest.mark.mqtt
def test_mosquitto_sub_sees_the_json(mosquitto) -> None:
    mosquitto.sub_session("sockfound", "lensflow-msg-test")  # queued for it from now on
    with MqttClient(mosquitto.url) as pub:
        pub.connect()
        for p in (97.3, 12.5, 50.0):
            pub.publish("sockfound", {"image": "Google", "probability": p}, qos=1)
    lines = mosquitto.fetch("sockfound", "lensflow-msg-test", count=3, wait=10)
    assert [json.loads(line) for line in lines] == [
        {"image": "Google", "probability": p} for p in (97.3, 12.5, 50.0)
    ]


@pytest.mark.mqtt
def test_broker_loss_buffers_reconnects_and_flushes_in_order(mosquitto) -> None:
    # A persistent-session subscriber: the broker (with persistence) keeps its queue across
    # the restart, so it receives whatever the publisher flushes, whenever that happens.
    got = Collector()
    sub = MqttClient(mosquitto.url, client_id="lensflow-test-sub", clean_session=False)
    sub.connect()
    sub.subscribe("loss", got, qos=1)
    time.sleep(0.2)
    pub = MqttClient(mosquitto.url, buffer_size=100, max_backoff=0.5).connect()
    for i in range(10):
        pub.publish("loss", {"frame": i}, qos=1)
    assert pub.flush(5)
    mosquitto.stop()
    deadline = time.monotonic() + 5
    while pub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pub.connected
    for i in range(10, 60):  # published while the broker is gone: buffered
        pub.publish("loss", {"frame": i}, qos=1)
    assert pub.stats.buffered == 50
    mosquitto.start()
    assert pub.flush(15), pub.stats
    items = got.wait_for(60, timeout=15)
    stats = pub.close()
    sub.close()
    frames = [m["frame"] for m in items]
    # QoS 1 is at-least-once: the restarted broker may redeliver a frame, but none is lost and
    # first deliveries keep the published order.
    assert list(dict.fromkeys(frames)) == list(range(60))
    assert stats.disconnects == 1 and stats.dropped == 0


@pytest.mark.mqtt
def test_full_buffer_drops_the_oldest_and_counts(mosquitto) -> None:
    got = Collector()
    sub = MqttClient(mosquitto.url, client_id="lensflow-test-full", clean_session=False)
    sub.connect()
    sub.subscribe("full", got, qos=1)
    time.sleep(0.2)
    pub = MqttClient(mosquitto.url, buffer_size=5, max_backoff=0.5).connect()
    mosquitto.stop()
    deadline = time.monotonic() + 5
    while pub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    kept = [pub.publish("full", {"frame": i}, qos=1) for i in range(8)]
    assert kept == [True] * 5 + [False] * 3
    assert pub.stats.dropped == 3 and pub.stats.buffered == 5
    mosquitto.start()
    assert pub.flush(15)
    items = got.wait_for(5, timeout=15)
    stats = pub.close()
    sub.close()
    assert stats.published == 5 and stats.dropped == 3
    # The newest five survive, in order.
    assert list(dict.fromkeys(m["frame"] for m in items)) == [3, 4, 5, 6, 7]


def test_close_counts_unsent_as_dropped() -> None:
    # Never connected: everything published is still buffered at close and reported as dropped.
    client = MqttClient(f"mqtt://127.0.0.1:{free_port()}")
    client.publish("t", b"x")
    client.publish("t", "y")
    assert client.stats.buffered == 2
    assert client.close().dropped == 2


@pytest.mark.mqtt
def test_wait_broker_connects_once_the_broker_starts(mosquitto) -> None:
    mosquitto.stop()
    threading.Timer(0.8, mosquitto.start).start()
    start = time.monotonic()
    client = MqttClient(mosquitto.url, min_backoff=0.2, max_backoff=0.5).connect(
        wait=True, timeout=15
    )
    assert client.connected and time.monotonic() - start >= 0.7
    client.publish("t", {"ok": True}, qos=1)
    assert client.flush(5)
    assert client.close().published == 1


@pytest.mark.mqtt
def test_username_password_from_the_url(tmp_path) -> None:
    from tests.fixtures.mqtt import Broker, mosquitto_path

    exe = mosquitto_path()
    if exe is None or not (
        shutil.which("mosquitto_passwd") or Path("/usr/bin/mosquitto_passwd").is_file()
    ):
        pytest.skip("mosquitto / mosquitto_passwd not installed (Debian package mosquitto)")
    broker = Broker(exe=exe, workdir=tmp_path, port=free_port(), users={"cam": "s3cret"})
    broker.start()
    try:
        good = MqttClient(f"mqtt://cam:s3cret@127.0.0.1:{broker.port}").connect()
        good.publish("t", b"x", qos=1)
        assert good.flush(5)
        good.close()
        with pytest.raises(LiveError, match="refused the connection"):
            MqttClient(f"mqtt://cam:wrong@127.0.0.1:{broker.port}").connect()
        with pytest.raises(LiveError, match="refused the connection"):
            MqttClient(f"mqtt://127.0.0.1:{broker.port}").connect()  # anonymous
    finally:
        broker.stop()


def test_payload_encoding_matches_the_seed_text() -> None:
    from lensflow.messaging import encode_payload

    assert encode_payload({"image": "Google", "probability": 97.314453125}) == (
        b'{"image": "Google", "probability": 97.314453125}'
    )
    assert encode_payload(b"\x00raw") == b"\x00raw" and encode_payload("t") == b"t"
