"""Codec benchmark (not a test): decode and encode rates of a QoS 0 and a QoS 1
PUBLISH with a 64-byte payload at protocol levels 4 and 5, on one core.

Decoding feeds a stream of many packets in 64 KiB chunks to one StreamDecoder
and drains it, as the acceptor does. Encoding measures `encode_publish` (the
acceptor's hot path) and `encode(Publish)`. Prints a table and then one JSON
line; `main()` returns the figures for scripts/bench.py.

    .venv/bin/python scripts/bench_codec.py [--packets 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frontend.codec import (
    PacketType,
    Publish,
    StreamDecoder,
    encode,
    encode_ack,
    encode_publish,
)

CHUNK = 64 * 1024
PAYLOAD = bytes(range(64))
TOPIC = "sensors/building-1/floor-2/temperature"


def _best_rate(run: Any, count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return count / best


def _decode_rate(stream: bytes, packets: int, level: int, repeat: int) -> float:
    """Packets/s for one StreamDecoder fed `stream` in CHUNK-sized pieces."""
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def run() -> None:
        decoder = StreamDecoder(protocol_level=level)
        feed = decoder.feed
        got = 0
        for chunk in chunks:
            feed(chunk)
            for _ in decoder:
                got += 1
        assert got == packets, got

    return _best_rate(run, packets, repeat)


def bench_decode(qos: int, level: int, packets: int, repeat: int) -> float:
    stream = b"".join(
        encode_publish(
            TOPIC, PAYLOAD, qos, False, False, (i % 65535) + 1 if qos else None, None, level
        )
        for i in range(packets)
    )
    return _decode_rate(stream, packets, level, repeat)


def bench_decode_puback(level: int, packets: int, repeat: int) -> float:
    stream = b"".join(encode_ack(PacketType.PUBACK, (i % 65535) + 1, level) for i in range(packets))
    return _decode_rate(stream, packets, level, repeat)


def bench_encode_publish(qos: int, level: int, packets: int, repeat: int) -> float:
    packet_id = 1 if qos else None

    def run() -> None:
        for _ in range(packets):
            encode_publish(TOPIC, PAYLOAD, qos, False, False, packet_id, None, level)

    return _best_rate(run, packets, repeat)


def bench_encode_packet(qos: int, level: int, packets: int, repeat: int) -> float:
    packet = Publish(TOPIC, PAYLOAD, qos, packet_id=1 if qos else None)

    def run() -> None:
        for _ in range(packets):
            encode(packet, level)

    return _best_rate(run, packets, repeat)


def run_all(packets: int = 200_000, repeat: int = 5) -> list[dict[str, Any]]:
    rows = []
    for level in (4, 5):
        for qos in (0, 1):
            rows.append(
                {
                    "level": level,
                    "qos": qos,
                    "decode_per_s": round(bench_decode(qos, level, packets, repeat)),
                    "encode_publish_per_s": round(
                        bench_encode_publish(qos, level, packets, repeat)
                    ),
                    "encode_packet_per_s": round(bench_encode_packet(qos, level, packets, repeat)),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    # parse_known_args: scripts/bench.py may call main() with its own argv.
    args, _ = parser.parse_known_args(argv)
    rows = run_all(args.packets, args.repeat)
    acks = {
        str(level): round(bench_decode_puback(level, args.packets, args.repeat)) for level in (4, 5)
    }
    print(
        f"{'level':>5} {'qos':>3} {'decode/s':>12} "
        f"{'encode_publish/s':>17} {'encode(Publish)/s':>18}"
    )
    for r in rows:
        print(
            f"{r['level']:>5} {r['qos']:>3} {r['decode_per_s']:>12,} "
            f"{r['encode_publish_per_s']:>17,} {r['encode_packet_per_s']:>18,}"
        )
    for level, rate in acks.items():
        print(f"PUBACK decode/s at level {level}: {rate:,}")
    result = {
        "bench": "codec",
        "payload_bytes": len(PAYLOAD),
        "topic": TOPIC,
        "packets": args.packets,
        "results": rows,
        "puback_decode_per_s": acks,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
