"""Is an MQTT broker up on host:port? Used by `make bench` (scripts/loadgen)
and the end-to-end tests to wait for a broker they started, flockmq or
Mosquitto: ready means a CONNECT gets a successful CONNACK (for flockmq, an
acceptor and the client's session worker answered), not merely an open port."""

from __future__ import annotations

import os
import random
import socket
import time

from flockmq.frontend.codec import (
    Connack,
    Connect,
    Disconnect,
    ProtocolError,
    StreamDecoder,
    encode,
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the caller binds it soon after),
    below the ephemeral range: a port the kernel hands out for outgoing
    connections could be taken by one before the caller binds it."""
    return free_port_range(1, host)


def free_port_range(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive TCP ports free on `host` right now,
    below the kernel's ephemeral range, so that the outgoing connections of
    other programs (which take ephemeral ports) do not take them meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            ephemeral_low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, max(10_001, ephemeral_low - count))
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise OSError(f"no {count} consecutive free ports on {host}")


def mqtt_ready(
    host: str,
    port: int,
    timeout: float = 1.0,
    credentials: tuple[str, bytes] | None = None,
    client_id: str | None = None,
) -> bool:
    """True when an MQTT 3.1.1 CONNECT (clean session; with `credentials`, a
    username and password; `client_id`: the session whose shard must answer)
    on host:port gets a CONNACK with return code 0 within `timeout`; the
    probe then disconnects."""
    username, password = credentials if credentials is not None else (None, None)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            client_id = client_id or f"ready-probe-{os.getpid()}"
            probe = Connect(client_id, 4, True, 10, username, password)
            sock.sendall(encode(probe, 4))
            decoder = StreamDecoder(protocol_level=4)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = sock.recv(4096)
                if not data:
                    return False
                decoder.feed(data)
                packet = decoder.next_packet()
                if packet is not None:
                    ok = isinstance(packet, Connack) and packet.reason_code == 0
                    if ok:
                        sock.sendall(encode(Disconnect(), 4))
                    return ok
    except (OSError, ProtocolError):
        return False
    return False
