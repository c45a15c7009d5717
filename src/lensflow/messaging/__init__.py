"""The one MQTT client wrapper (paho-mqtt) shared by `live` (publisher) and `stream` (subscriber).

from lensflow.messaging import MqttClient, parse_mqtt_url
client = MqttClient("mqtt://127.0.0.1:1883").connect()
client.subscribe("sockfound", lambda m: print(m.json()))
client.publish("sockfound", {"image": "Google", "probability": 97.3}, qos=1)
client.close()
"""

from lensflow.messaging.client import (
    Message,
    MqttClient,
    MqttStats,
    MqttUrl,
    encode_payload,
    parse_mqtt_url,
)

__all__ = ["Message", "MqttClient", "MqttStats", "MqttUrl", "encode_payload", "parse_mqtt_url"]
