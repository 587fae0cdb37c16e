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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flockmq.frontend.codec import (
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


Case = Callable[[], None]


def _decoding(stream: bytes, packets: int, level: int) -> Case:
    """One StreamDecoder fed `stream` in CHUNK-sized pieces, drained each time."""
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

    return run


def decode_publish_case(qos: int, level: int, packets: int) -> Case:
    stream = b"".join(
        encode_publish(
            TOPIC, PAYLOAD, qos, False, False, (i % 65535) + 1 if qos else None, None, level
        )
        for i in range(packets)
    )
    return _decoding(stream, packets, level)


def decode_puback_case(level: int, packets: int) -> Case:
    stream = b"".join(encode_ack(PacketType.PUBACK, (i % 65535) + 1, level) for i in range(packets))
    return _decoding(stream, packets, level)


def encode_publish_case(qos: int, level: int, packets: int) -> Case:
    packet_id = 1 if qos else None

    def run() -> None:
        for _ in range(packets):
            encode_publish(TOPIC, PAYLOAD, qos, False, False, packet_id, None, level)

    return run


def encode_packet_case(qos: int, level: int, packets: int) -> Case:
    packet = Publish(TOPIC, PAYLOAD, qos, packet_id=1 if qos else None)

    def run() -> None:
        for _ in range(packets):
            encode(packet, level)

    return run


def best_rates(cases: dict[str, Case], packets: int, repeat: int) -> dict[str, int]:
    """Packets/s per case, best of `repeat` rounds. Rounds go over all cases in
    turn so that a busy spell on a shared machine does not hit one case only."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, run in cases.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: round(packets / seconds) for name, seconds in best.items()}


def run_all(packets: int = 200_000, repeat: int = 5) -> dict[str, Any]:
    cases: dict[str, Case] = {}
    for level in (4, 5):
        for qos in (0, 1):
            cases[f"decode/{level}/{qos}"] = decode_publish_case(qos, level, packets)
            cases[f"encode_publish/{level}/{qos}"] = encode_publish_case(qos, level, packets)
            cases[f"encode_packet/{level}/{qos}"] = encode_packet_case(qos, level, packets)
        cases[f"puback/{level}"] = decode_puback_case(level, packets)
    rates = best_rates(cases, packets, repeat)
    rows = [
        {
            "level": level,
            "qos": qos,
            "decode_per_s": rates[f"decode/{level}/{qos}"],
            "encode_publish_per_s": rates[f"encode_publish/{level}/{qos}"],
            "encode_packet_per_s": rates[f"encode_packet/{level}/{qos}"],
        }
        for level in (4, 5)
        for qos in (0, 1)
    ]
    acks = {str(level): rates[f"puback/{level}"] for level in (4, 5)}
    return {"results": rows, "puback_decode_per_s": acks}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    # parse_known_args: scripts/bench.py may call main() with its own argv.
    args, _ = parser.parse_known_args(argv)
    figures = run_all(args.packets, args.repeat)
    rows, acks = figures["results"], figures["puback_decode_per_s"]
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
