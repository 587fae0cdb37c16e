"""Codec fuzzer (not a test; `make fuzz`): feeds the stream decoder millions of
random and mutated inputs and checks h11's invariant: whatever the bytes, the
decoder returns packets or raises ProtocolError, nothing else, and feeding the
input whole or one byte at a time gives the same packets and the same error.

Inputs are mutations of valid encoded packets of every type at levels 3, 4
and 5 (bit flips, byte sets, truncations, edits of the remaining length and
of string length fields, insertions, deletions, duplications, splices of two
packets), streams of several packets, and plain random bytes; decoded as a
client would (level known) and as the server does (level unknown, a CONNECT
first). Every input is decoded whole; one in `--bytewise-every` is also fed
a byte at a time and compared. Runs on every core (multiprocessing), prints
the rate and every failure with its input in hex, and exits 1 on a failure.

    .venv/bin/python scripts/fuzz_codec.py [--inputs 10000000] [--processes N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flockmq.frontend.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    StreamDecoder,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)

MAX_SIZES = (1 << 20, 1 << 20, 1 << 20, 64, 7)
# Variable Byte Integers that break a rule: non-minimal, 5 bytes, unfinished.
_VARINT_EDITS = (b"\x80\x00", b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80", b"\x81")
Outcome = tuple[list[Packet], tuple[type, int, str] | None]


def seed_packets(level: int) -> list[Packet]:
    """Valid packets of every type at `level`, with and without the optional
    fields (MQTT 5 properties of every wire type included)."""
    v5 = level == 5
    user = {"user_property": (("k", "v"), ("k", "w"))} if v5 else {}
    msg_props = (
        {
            "payload_format_indicator": 1,
            "message_expiry_interval": 60,
            "content_type": "text/plain",
            "response_topic": "r/t",
            "correlation_data": b"\x01\x02",
            **user,
        }
        if v5
        else {}
    )
    connect_props = (
        {
            "session_expiry_interval": 30,
            "receive_maximum": 10,
            "maximum_packet_size": 5000,
            "topic_alias_maximum": 4,
            "request_problem_information": 0,
            **user,
        }
        if v5
        else {}
    )
    will = Will("w/t", b"gone", 1, True, {**msg_props, "will_delay_interval": 5} if v5 else {})
    packets: list[Packet] = [
        Connect("c", level, True, 60),
        Connect("client-\u00e9", level, False, 10, "user", b"pw", will, connect_props),
        Connack(False, 0),
        Connack(
            True, 0, {"assigned_client_identifier": "x", "topic_alias_maximum": 3} if v5 else {}
        ),
        Publish("a/b", b"payload"),
        Publish("a/b/c", b"x" * 200, 1, True, False, 7),
        Publish("t", b"", 2, False, True, 65535, {**msg_props, "topic_alias": 2} if v5 else {}),
        Puback(1),
        Pubrec(2, 0x10 if v5 else 0, {"reason_string": "r", **user} if v5 else {}),
        Pubrel(3),
        Pubcomp(4, 0x92 if v5 else 0),
        Subscribe(5, (Subscription("a/+", 1), Subscription("#", 2))),
        Subscribe(
            6,
            (Subscription("$share/g/x" if v5 else "x", 0, False, v5, 2 if v5 else 0),),
            {"subscription_identifier": 9, **user} if v5 else {},
        ),
        Suback(5, (0, 1, 0x80)),
        Unsubscribe(7, ("a/+", "b")),
        Unsuback(7, (0, 0x11) if v5 else ()),
        Pingreq(),
        Pingresp(),
        Disconnect(),
    ]
    if v5:
        packets += [
            Disconnect(0x04, {"session_expiry_interval": 0, "reason_string": "bye"}),
            Auth(0x18, {"authentication_method": "m", "authentication_data": b"d"}),
        ]
    return packets


def seeds() -> list[tuple[bytes, int]]:
    """(encoded packet, level) for every seed packet."""
    return [(encode(p, level), level) for level in (3, 4, 5) for p in seed_packets(level)]


def run(chunks: list[bytes], level: int | None, max_size: int) -> Outcome:
    decoder = StreamDecoder(max_packet_size=max_size, protocol_level=level)
    got: list[Packet] = []
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            got.extend(decoder)
    except ProtocolError as exc:
        return got, (type(exc), exc.reason_code, str(exc))
    return got, None


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


class Mutator:
    def __init__(self, rng: random.Random, pool: list[tuple[bytes, int]]) -> None:
        self.rng = rng
        self.pool = pool
        self.connects = {lv: encode(Connect("f", lv, True, 0), lv) for lv in (3, 4, 5)}

    def input(self) -> tuple[bytes, int | None, int]:
        """One input: (bytes, decoder level or None for server side, max size)."""
        rng = self.rng
        max_size = rng.choice(MAX_SIZES)
        if rng.random() < 0.05:
            data = rng.randbytes(rng.randint(0, 64))
            return data, rng.choice((None, 3, 4, 5)), max_size
        data, level = rng.choice(self.pool)
        buf = bytearray(data)
        if rng.random() < 0.3:  # a stream of several packets
            for _ in range(rng.randint(1, 3)):
                other, other_level = rng.choice(self.pool)
                if other_level == level:
                    buf += other
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            self.mutate(buf)
        if rng.random() < 0.3:  # as the server reads it: a CONNECT first, level unknown
            return self.connects[level] + bytes(buf), None, max_size
        return bytes(buf), level, max_size

    def mutate(self, buf: bytearray) -> None:
        rng = self.rng
        n = len(buf)
        op = rng.randrange(10)
        if op == 0 and n:  # bit flip
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # byte set, often to an edge value
            buf[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2 and n:  # truncation
            del buf[rng.randrange(n) :]
        elif op == 3 and n > 1:  # remaining length edit
            value = rng.choice((0, 1, n - 3, n - 1, n, n + 1, 127, 128, 16383, 16384, 268_435_455))
            end = 1
            while end < min(n, 5) and buf[end] & 0x80:
                end += 1
            buf[1 : end + 1] = _varint(max(value, 0))
        elif op == 4 and n > 3:  # a string or property length field
            i = rng.randrange(2, n - 1)
            buf[i : i + 2] = rng.choice((0, 1, 0xFFFF, rng.randrange(0x10000))).to_bytes(2, "big")
        elif op == 5:  # insertion
            buf[rng.randrange(n + 1) : 0] = rng.randbytes(rng.randint(1, 4))
        elif op == 6 and n:  # deletion
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 4)]
        elif op == 7 and n:  # duplicate a segment
            i = rng.randrange(n)
            j = rng.randint(i, min(n, i + 16))
            buf[j:j] = buf[i:j]
        elif op == 8:  # splice: our prefix, another packet's suffix
            other, _ = rng.choice(self.pool)
            buf[rng.randrange(n + 1) :] = other[rng.randrange(len(other) + 1) :]
        elif n:  # a variable byte integer edit (properties length, subscription id)
            i = rng.randrange(n)
            buf[i : i + 1] = rng.choice(
                (b"\x80\x00", b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80", b"\x81")
            )


def fuzz(job: tuple[int, int, int]) -> dict[str, Any]:
    """Run `count` inputs from `seed`; every `bytewise_every`-th also bytewise."""
    seed, count, bytewise_every = job
    rng = random.Random(seed)
    mutator = Mutator(rng, seeds())
    failures: list[str] = []
    bytewise = 0
    for i in range(count):
        data, level, max_size = mutator.input()
        try:
            whole = run([data], level, max_size)
            if i % bytewise_every == 0:
                bytewise += 1
                pieces = [data[j : j + 1] for j in range(len(data))]
                one_by_one = run(pieces, level, max_size)
                if whole != one_by_one:
                    failures.append(
                        f"whole != bytewise: level={level} max={max_size} input={data.hex()}\n"
                        f"  whole:    {whole!r}\n  bytewise: {one_by_one!r}"
                    )
        except Exception:  # the invariant: nothing but ProtocolError comes out
            failures.append(
                f"{traceback.format_exc(limit=3).strip()}\n"
                f"  level={level} max={max_size} input={data.hex()}"
            )
        if len(failures) >= 20:
            break
    return {"inputs": i + 1 if count else 0, "bytewise": bytewise, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--bytewise-every", type=int, default=50, help="1 in N inputs also bytewise"
    )
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--chunk", type=int, default=100_000, help="inputs per job")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    jobs: list[tuple[int, int, int]] = []
    left: int = args.inputs
    while left > 0:
        count = min(args.chunk, left)
        jobs.append((seed * 1_000_003 + len(jobs), count, args.bytewise_every))
        left -= count
    print(
        f"fuzzing the codec: {args.inputs:,} inputs in {len(jobs)} jobs on {args.processes} "
        f"processes, seed {seed}, 1 in {args.bytewise_every} also byte at a time",
        flush=True,
    )
    started = time.perf_counter()
    done = bytewise = 0
    failures: list[str] = []
    with multiprocessing.Pool(args.processes) as pool:
        for result in pool.imap_unordered(fuzz, jobs):
            done += result["inputs"]
            bytewise += result["bytewise"]
            failures += result["failures"]
            elapsed = time.perf_counter() - started
            print(
                f"  {done:>12,} inputs  {bytewise:>10,} bytewise  "
                f"{done / elapsed:>9,.0f} inputs/s  {len(failures)} failures",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    for failure in failures:
        print(f"FAILURE: {failure}")
    print(
        f"{done:,} inputs ({bytewise:,} also byte at a time) in {elapsed:.0f}s: "
        f"{done / elapsed:,.0f} inputs/s, {len(failures)} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
