"""What CURVE (flockmq/curve.py) costs a cluster's bus per frame: one
ZeroMQ PUSH -> PULL pipe over tcp://127.0.0.1 in one process, frames of a
few sizes, without and with CURVE (the sockets set up as the bus sets them
up between hosts: `bind_curve`, `connect_curve`).

    .venv/bin/python scripts/bench_curve.py [--frames 200000] [--repeat 2]

Prints, per frame size and mode, frames/s and the CPU time per frame of the
whole process (both ends and ZeroMQ's I/O threads, from getrusage), and one
JSON line. The bus batches envelopes into frames (flockmq/bus.py), so CURVE
costs per frame and per byte, not per message. A benchmark, not a test: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import zmq

from flockmq.app.probe import free_port
from flockmq.curve import CurveKeys, bind_curve, connect_curve

SIZES = (100, 2_000, 32_000)  # bytes: a lone ack, a typical batch, a large one
WINDOW = 100  # frames sent before reading them back (inside the HWM)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(keys: CurveKeys | None, size: int, frames: int) -> dict[str, float]:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        endpoint = f"tcp://127.0.0.1:{free_port('127.0.0.1')}"
        pull = ctx.socket(zmq.PULL)
        bind_curve(pull, endpoint, keys)
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 1000)
        connect_curve(push, endpoint, keys)
        push.send(b"ready")
        pull.recv()  # connected (and the handshake done) before timing
        frame = b"m" * size
        cpu, start = cpu_seconds(), time.perf_counter()
        for sent in range(1, frames + 1):
            push.send(frame)
            if sent % WINDOW == 0:
                for _ in range(WINDOW):
                    pull.recv()
        for _ in range(frames % WINDOW):
            pull.recv()
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        return {"frames_per_s": frames / elapsed, "cpu_us_per_frame": cpu / frames * 1e6}
    finally:
        ctx.destroy(linger=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames of 100 bytes")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating")
    options = parser.parse_args()
    public, secret = zmq.curve_keypair()
    keys = CurveKeys(public.decode(), secret.decode(), (("127.0.0.1", public.decode()),))
    results: list[dict[str, Any]] = []
    for size in SIZES:
        frames = max(1_000, options.frames * 100 // size // 4) if size > 100 else options.frames
        for _ in range(options.repeat):
            for mode, mode_keys in (("plain", None), ("curve", keys)):
                result = {"size": size, "mode": mode, **run(mode_keys, size, frames)}
                results.append(result)
                print(
                    f"{size:>6} B {mode}: {result['frames_per_s']:>10,.0f} frames/s,"
                    f" CPU {result['cpu_us_per_frame']:6.2f} us/frame",
                    flush=True,
                )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
