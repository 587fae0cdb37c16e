"""Round trips through flockmq's ZeroMQ bus (flockmq/bus.py) between two
processes: what one inter-process hop costs, without MQTT.

    .venv/bin/python scripts/bench_bus.py [--count 20000] [--rate 10000]

Two measurements, printed as round-trip percentiles in microseconds and one
JSON line:

- closed loop: one envelope at a time, the next sent when the echo is back;
- paced: envelopes sent at --rate per second whatever comes back (both
  directions busy at once, as in the broker).

The difference between the two is scheduling: with both processes and their
ZeroMQ I/O threads runnable at once on few cores, one waits for another's
time slice. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from flockmq.bus import Bus
from flockmq.envelopes import Envelope, Fence, Kind, Wire

# The probes are FENCEs (a real kind, three small fields): acceptor 0 for the
# closed loop, 1 for the paced run; seq carries the send time.
CLOSED_LOOP, PACED = 0, 1


def echo(endpoint: str, reply_to: str) -> None:
    """Send every envelope straight back."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_envelopes(envelopes: Sequence[Wire]) -> None:
            bus.extend("back", cast(Sequence[Envelope], envelopes))  # back as they came

        bus = Bus(loop, 1, 0, on_envelopes)
        bus.bind(endpoint, pausable=False)
        bus.connect("back", reply_to, 0)
        bus.start()
        await asyncio.Event().wait()

    uvloop.run(main())


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return round(ordered[int(q * (len(ordered) - 1))] / 1000, 1)

    return {"p50_us": at(0.5), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": at(1.0)}


async def measure(endpoint: str, peer: str, count: int, rate: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[int]] = []
    paced: list[int] = []
    done = loop.create_future()

    def on_envelopes(envelopes: Sequence[Wire]) -> None:
        now = time.monotonic_ns()
        for e in envelopes:
            _, loop_kind, sent = cast(Fence, e)
            if loop_kind == CLOSED_LOOP:
                if waiting:
                    waiting.pop().set_result(now)
            else:
                paced.append(now - sent)
        if len(paced) >= count and not done.done():
            done.set_result(None)

    bus = Bus(loop, 0, 0, on_envelopes)
    bus.bind(endpoint, pausable=False)
    bus.connect("echo", peer, 1)
    bus.start()
    # Until the echo answers (it may still be starting).
    while True:
        future: asyncio.Future[int] = loop.create_future()
        waiting.append(future)
        bus.send("echo", Fence(Kind.FENCE, CLOSED_LOOP, 0))
        try:
            await asyncio.wait_for(asyncio.shield(future), 0.5)
            break
        except TimeoutError:
            waiting.clear()
    closed: list[int] = []
    for _ in range(count):
        future = loop.create_future()
        waiting.append(future)
        sent = time.monotonic_ns()
        bus.send("echo", Fence(Kind.FENCE, CLOSED_LOOP, sent))
        closed.append(await future - sent)
    start = time.monotonic_ns()
    sent_count = 0
    while sent_count < count:
        due = min(count, int((time.monotonic_ns() - start) / 1e9 * rate) + 1)
        while sent_count < due:
            bus.send("echo", Fence(Kind.FENCE, PACED, time.monotonic_ns()))
            sent_count += 1
        await asyncio.sleep(0.0001)
    await asyncio.wait_for(done, 30)
    bus.close()
    return {"closed_loop": percentiles(closed), "paced": percentiles(paced[:count])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="round trips per measurement")
    parser.add_argument("--rate", type=float, default=10000.0, help="paced envelopes per second")
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="flockmq-bench-bus-") as tmp:
        here = f"ipc://{Path(tmp) / 'here'}"
        there = f"ipc://{Path(tmp) / 'there'}"
        peer = multiprocessing.Process(target=echo, args=(there, here), daemon=True)
        peer.start()
        try:
            result = uvloop.run(measure(here, there, args.count, args.rate))
        finally:
            peer.terminate()
            peer.join(5)
    for name, figures in result.items():
        shown = ", ".join(f"{k.removesuffix('_us')} {v:.0f} us" for k, v in figures.items())
        print(f"{name:<12} round trip: {shown}")
    print(json.dumps({"count": args.count, "rate": args.rate, **result}))


if __name__ == "__main__":
    main()
