"""What a receiver gets from an envelope a role built: its msgpack round trip
(NamedTuples become lists, Kind plain ints), so that tests compare what
crosses the wire. Tests read what they get by name: `env.Deliver._make(e)`
when the kind is known, `env.read(e)` and isinstance when it is not, and
`kind_of(e)` for the kind alone, `of_kind(envelopes, env.X)` for those of
one kind."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgpack

from flockmq.envelopes import Kind, Wire, read

T = TypeVar("T")


def wire(envelope: Wire) -> list[Any]:
    got: list[Any] = msgpack.unpackb(msgpack.packb(envelope), raw=False, strict_map_key=False)
    return got


def wire_all(envelopes: Iterable[Wire]) -> list[list[Any]]:
    return [wire(e) for e in envelopes]


def kind_of(envelope: Wire) -> Kind:
    """The envelope's kind (the field every kind has first)."""
    return Kind(envelope[0])


def per_message(envelopes: Iterable[Wire]) -> list[Wire]:
    """`envelopes` with each SEND_PUBLISHES (several messages to one
    connection) as the SEND_PUBLISH of each of its messages, in order."""
    out: list[Wire] = []
    for e in envelopes:
        if e[0] == Kind.SEND_PUBLISHES:
            _, conn, publishes = e
            out.extend(
                [Kind.SEND_PUBLISH, conn, *publishes[i : i + 7]]
                for i in range(0, len(publishes), 7)
            )
        else:
            out.append(e)
    return out


def of_kind(envelopes: Iterable[Wire], cls: type[T]) -> list[T]:
    """Those of `envelopes` that are of cls's kind (cls: its NamedTuple), read
    as cls, in order (a SEND_PUBLISHES as one SEND_PUBLISH per message: see
    per_message); nested records stay as they came (lists, from the wire)."""
    return [e for e in map(read, per_message(envelopes)) if isinstance(e, cls)]
