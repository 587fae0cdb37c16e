"""What a receiver gets from an envelope a role built: its msgpack round trip
(NamedTuples become lists, Kind plain ints), so that tests compare what
crosses the wire."""

from __future__ import annotations

from typing import Any

import msgpack


def wire(envelope: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(envelope), raw=False, strict_map_key=False)


def wire_all(envelopes: Any) -> list[Any]:
    return [wire(e) for e in envelopes]
