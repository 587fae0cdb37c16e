"""Durability load for end-to-end tests: paho publishers that record exactly
which messages the broker acknowledged, and persistent subscribers that record
exactly what they received, both reconnecting on their own when the broker
closes them (a killed process) and keeping their MQTT session state.

Payloads are ``b"<publisher>:<seq>:<attempt>"``. Publishers never republish a
message as a new one: paho (clean session 0, the same client object) retransmits
unacknowledged messages with their packet ids on reconnect, so the attempt is
always 0 and a QoS 2 payload seen twice is a real duplicate.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .clients import unique

WINDOW = 20  # publisher's in-flight window
WAIT = 60.0  # generous: a loaded 2-core machine, a process restart with backoff


def id_on_shard(prefix: str, shard: int, workers: int = 2) -> str:
    while True:
        client_id = unique(prefix)
        if zlib.crc32(client_id.encode()) % workers == shard:
            return client_id


def parse(payload: bytes) -> tuple[str, int, int]:
    name, seq, attempt = payload.decode().rsplit(":", 2)
    return name, int(seq), int(attempt)


class PahoClient(mqtt.Client):
    """paho-mqtt 2.2.0 with one client-side QoS 2 bug worked around.

    Before every reconnect attempt paho resets its outgoing messages: a QoS 2
    message whose PUBREL was sent (wait_for_pubcomp) becomes resend_pubrel, to
    send PUBREL again. When that attempt fails (the broker is still down), the
    next reset finds resend_pubrel, which it does not recognise, and turns the
    message back into a fresh PUBLISH (DUP 0, same packet id). MQTT 3.1.1
    section 4.3.3: "the Sender MUST NOT re-send the PUBLISH once it has sent
    the corresponding PUBREL packet"; the broker has released that packet id
    and rightly takes the PUBLISH as a new message, delivered again. (Seen in
    the broker-kill test: reconnect attempts fail while the broker is down.)
    Restoring the state paho set before the failed attempt makes each reset
    see what the first one saw.
    """

    def _messages_reconnect_reset_out(self) -> None:
        with self._out_message_mutex:
            for m in self._out_messages.values():
                if m.qos == 2 and m.state == mqtt.mqtt_ms_resend_pubrel:
                    m.state = mqtt.mqtt_ms_wait_for_pubcomp
        super()._messages_reconnect_reset_out()


class Peer:
    """A paho client with clean session 0 that reconnects by itself (fast)."""

    def __init__(self, port: int, client_id: str, *, clean: bool = False) -> None:
        self.client_id = client_id
        self.port = port
        self.paho = PahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=True,
        )
        # paho annotates the delays as int; it takes seconds, floats included.
        self.paho.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self.paho.max_queued_messages_set(0)
        self.lock = threading.Lock()
        self.connects = 0  # CONNACKs with rc 0
        self.disconnects = 0
        self.session_present: list[bool] = []
        self.connected = threading.Event()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect

    def _on_connect(
        self,
        c: mqtt.Client,
        u: object,
        flags: mqtt.ConnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if rc == 0:
            with self.lock:
                self.connects += 1
                self.session_present.append(bool(flags.session_present))
                self.on_connected()
            self.connected.set()

    def _on_disconnect(
        self,
        c: mqtt.Client,
        u: object,
        flags: mqtt.DisconnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.connected.clear()
        with self.lock:
            self.disconnects += 1
            self.on_connection_lost()

    def on_connection_lost(self) -> None:
        """Called with the lock held."""

    def on_connected(self) -> None:
        """Called with the lock held, before paho retransmits anything."""

    def start(self) -> None:
        self.paho.connect_async("127.0.0.1", self.port, keepalive=30)
        self.paho.loop_start()
        if not self.connected.wait(WAIT):
            raise AssertionError(f"{self.client_id}: no CONNACK")

    def stop(self) -> None:
        """A clean DISCONNECT (the session stays: clean session 0)."""
        self.paho.disconnect()
        self.paho.loop_stop()


class Publisher(Peer):
    """Publishes `count` messages to `topic` at `rate` per second; records which
    were acknowledged (PUBACK for QoS 1, PUBCOMP for QoS 2) and which were
    unacknowledged when a connection was lost (they may be retransmitted, so
    they may arrive out of order relative to later messages)."""

    def __init__(
        self, port: int, client_id: str, topic: str, qos: int, count: int, rate: float
    ) -> None:
        super().__init__(port, client_id)
        self.name = client_id
        self.topic = topic
        self.qos = qos
        self.count = count
        self.rate = rate
        self.paho.max_inflight_messages_set(WINDOW)
        self.mids: list[int] = []  # packet id of each seq (fewer than 65535: unique)
        self.acked_mids: set[int] = set()  # on_publish: PUBACK (QoS 1) or PUBCOMP (QoS 2)
        self.paho.on_publish = self._on_publish
        self.cond = threading.Condition(self.lock)
        self.started = 0  # publish() called (or about to be) for seqs below this
        self.retransmittable: set[int] = set()  # seqs unacked at a connection loss
        self.thread = threading.Thread(target=self._run, daemon=True)

    def payload(self, seq: int) -> bytes:
        return f"{self.name}:{seq}:0".encode()

    def on_connection_lost(self) -> None:
        self.retransmittable.update(set(range(self.started)) - self._acked())

    def on_connected(self) -> None:
        # paho retransmits these now; a message handed to paho by our thread
        # at this very moment can go out before them.
        self.retransmittable.update(set(range(self.started)) - self._acked())

    def _on_publish(
        self, c: mqtt.Client, u: object, mid: int, rc: ReasonCode, props: Properties
    ) -> None:
        with self.lock:
            self.acked_mids.add(mid)
            self.cond.notify_all()

    def _acked(self) -> set[int]:
        return {seq for seq, mid in enumerate(self.mids) if mid in self.acked_mids}

    def _run(self) -> None:
        start = time.monotonic()
        for seq in range(self.count):
            due = start + seq / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self.lock:
                # At most WINDOW unacknowledged (what paho has in flight): paho
                # never holds a backlog, so what a lost connection or a killed
                # process may hold is exactly the unacknowledged set.
                while self.started - len(self._acked()) >= WINDOW:
                    self.cond.wait(1.0)
                self.started = seq + 1
            info = self.paho.publish(self.topic, self.payload(seq), self.qos)
            # rc is MQTT_ERR_NO_CONN while disconnected: paho keeps the message
            # and sends it after reconnecting.
            with self.lock:
                self.mids.append(info.mid)

    def begin(self) -> None:
        self.thread.start()

    def acked(self) -> set[int]:
        with self.lock:
            return self._acked()

    def mark_in_flight(self) -> None:
        """A process died: the messages possibly inside it (the unacknowledged
        ones) may come again later, retried by the acceptor or retransmitted by
        the client, after newer ones."""
        with self.lock:
            self.retransmittable.update(set(range(self.started)) - self._acked())

    def unacked(self) -> int:
        """Messages handed to paho and not acknowledged (at most WINDOW)."""
        with self.lock:
            return self.started - len(self._acked())

    def all_acked(self) -> bool:
        with self.lock:
            return len(self._acked()) == self.count


class Subscriber(Peer):
    """Records every message in arrival order (paho delivers QoS 2 on PUBREL and
    keeps its QoS 2 receive state across its own reconnects)."""

    def __init__(self, port: int, client_id: str) -> None:
        super().__init__(port, client_id)
        self.received: list[bytes] = []
        self.trace: list[tuple[int, int, int, bytes]] = []  # (connection, mid, dup, payload)
        self.paho.on_message = self._on_message

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            payload = bytes(msg.payload)  # paho types it bytes | bytearray
            self.received.append(payload)
            self.trace.append((self.connects, msg.mid, int(msg.dup), payload))

    def subscribe(self, topic: str, qos: int) -> None:
        done = threading.Event()
        self.paho.on_subscribe = lambda c, u, mid, rcs, props: done.set()
        result, _ = self.paho.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert done.wait(WAIT), f"{self.client_id}: no SUBACK"

    def distinct(self) -> set[bytes]:
        with self.lock:
            return set(self.received)

    def snapshot(self) -> list[bytes]:
        with self.lock:
            return list(self.received)


def check_delivery(
    sub: Subscriber, publishers: Iterable[Publisher], qos: int, markers: int = 0
) -> dict[str, int]:
    """What the durability tests assert for one subscriber:

    - 0 lost: every message its publisher saw acknowledged was received;
    - QoS 2: no payload received twice (QoS 1: duplicates are counted);
    - order: per publisher, the first receipts in arrival order have increasing
      sequence numbers, except messages that were unacknowledged when their
      publisher lost or regained a connection or when a killed process was
      back (retransmitted by the client or retried by the acceptor, they
      may legitimately arrive after newer messages the broker already took).
    """
    got = [p for p in sub.snapshot() if not p.startswith(b"marker")]
    stats = {"received": len(got), "duplicates": len(got) - len(set(got))}
    for pub in publishers:
        mine = [parse(p) for p in got if p.startswith(pub.name.encode() + b":")]
        seqs = [seq for _, seq, _ in mine]
        lost = pub.acked() - set(seqs)
        assert not lost, (
            f"{sub.client_id}: {len(lost)} acknowledged messages of {pub.name} lost, "
            f"e.g. {sorted(lost)[:10]}"
        )
        if qos == 2:
            dups = sorted({s for s in seqs if seqs.count(s) > 1})
            if dups:
                payload = pub.payload(dups[0])
                receipts = [t for t in sub.trace if t[3] == payload]
                raise AssertionError(
                    f"{sub.client_id}: QoS 2 duplicates of {pub.name}: {dups[:10]}; receipts "
                    f"of the first as (connection, mid, dup, payload): {receipts}"
                )
        seen: set[int] = set()
        last = -1
        for seq in seqs:
            if seq in seen:
                continue
            seen.add(seq)
            if seq in pub.retransmittable:
                continue
            if seq <= last:
                payload = pub.payload(seq)
                at = next(i for i, t in enumerate(sub.trace) if t[3] == payload)
                context = sub.trace[max(0, at - 5) : at + 3]
                raise AssertionError(
                    f"{sub.client_id}: {pub.name} seq {seq} arrived after {last} "
                    f"(order of first receipts, retransmitted ones aside); "
                    f"(connection, mid, dup, payload) around it: {context}"
                )
            last = seq
    return stats
