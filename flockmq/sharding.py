"""Which worker shard owns a session: stable across processes, restarts and hosts."""

from __future__ import annotations

import zlib


def shard_of(client_id: str, workers: int) -> int:
    """stable_hash(client_id) % workers. CRC-32 is stable across processes and
    Python versions, unlike hash(), which is salted per process."""
    return zlib.crc32(client_id.encode("utf-8", "surrogatepass")) % workers
