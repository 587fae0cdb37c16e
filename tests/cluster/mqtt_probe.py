"""An MQTT client for the cluster tests to run inside a network namespace
(`python mqtt_probe.py HOST PORT CLIENT_ID`): paho-mqtt with a keepalive of
one second, reporting each event as a line on stdout (tests/cluster/lines.py
reads them):

- `connected` after CONNACK, then `received PAYLOAD` once its own publish to
  its own subscription came back (the broker works end to end);
- `disconnected REASON` when the connection fails (a keepalive timeout when
  the broker's network is cut: no PINGRESP within the keepalive);
- on the line `reconnect` on stdin: a new connection (`reconnect-failed
  ERROR` for each attempt that fails, one attempt a second for up to 20 s),
  then `connected` and `received` again.

No automatic reconnection: the test decides when to reconnect.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

KEEPALIVE = 1  # seconds: a cut network is noticed within about two
RECONNECT_FOR = 20.0


def say(line: str) -> None:
    print(line, flush=True)


def main(host: str, port: int, client_id: str) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, reconnect_on_failure=False
    )
    topic = f"probe/{client_id}"
    rounds = iter(range(1_000_000))

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        say(f"connected {reason}")
        c.subscribe(topic, qos=1)

    def on_subscribe(c: mqtt.Client, _u: Any, _m: Any, _r: Any, _p: Any) -> None:
        c.publish(topic, f"round-{next(rounds)}".encode(), qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        say(f"received {message.payload.decode()}")

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        say(f"disconnected {reason}")

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect(host, port, keepalive=KEEPALIVE)
    client.loop_start()
    for line in sys.stdin:
        if line.strip() == "reconnect":
            client.loop_stop()
            reconnect(client)
            client.loop_start()


def reconnect(client: mqtt.Client) -> None:
    deadline = time.monotonic() + RECONNECT_FOR
    while True:
        try:
            client.reconnect()
            return
        except OSError as exc:
            say(f"reconnect-failed {exc}")
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
