"""Retained messages with several routers (Config.routers > 1): which update
of a topic wins, and which router writes it to the store (sans-IO).

Every router holds the whole retained set. A retained PUBLISH (or delete)
is applied by the router it arrived at (its *origin*), written to the store
by that router, and sent to every other router as RETAINED
(flockmq/envelopes.py) in the same pass (before its write is committed, as
it is delivered to subscribers before: memory first, as with one router); an
expiry is made by every router alike from the message's deadline. This
module decides, per topic, from a *version* `(stamp, origin)`:

- **Last writer wins by (stamp, origin)**, compared as a pair: `stamp` is
  the origin's wall clock in nanoseconds when the update arrived, raised to
  one more than the stamp it held for the topic if the clock is behind it (a
  hybrid logical clock: a router's own updates of a topic always win over
  what it held, whatever its clock says); `origin`, the router's index,
  breaks ties. Every router applies an update only if its version is above
  the one it holds for the topic, so two updates of one topic arriving at
  different routers at once end the same way on every router: the one with
  the later stamp (the same stamp: the higher router index), whatever order
  each router receives them in. A delete is an update too: the topic's
  version is kept after it is gone (a *tombstone*), so that an older put
  arriving later does not bring it back.
- **Who writes the store**: the origin of an update always does. A router
  that applies another router's update writes it too if, and only if, it
  has written that topic before (`Version.wrote`; a router that loaded the
  set from the store at start counts as having written it when it is router
  0). A router applies versions in increasing order, so each router's last
  write of a topic is the winner, and since every router that ever wrote
  the topic writes the winner last, the store ends with the winner whatever
  order the routers' commits land in. Usually that is one write per update.
- **Expiry** [MQTT-3.3.2-5] is an update made by every router holding the
  message, with the version `(max(deadline, stamp + 1), origin)` of the
  message: the same on every router, so a put made after the deadline wins
  over it everywhere.
- **A restarted router** loads the set from the store (version (0, -1):
  anything newer wins) and every other router sends it the updates of the
  last RESEND_WINDOW seconds it holds (what may not have been committed
  when it loaded); older ones are in the store. Its own updates among them
  (its previous incarnation's, shared before they were committed: it may
  have died first) it writes again.
- **Visibility**: another router holds an update one hop (a pipe between
  two routers) after its origin applied it. A subscriber whose SUBSCRIBE
  reaches its router within that moment gets the previous retained message
  (with one router, a SUBSCRIBE handled just before the PUBLISH does too).

Bounds: one version per retained topic (bounded by the retained store's
limits), and tombstones for at most TOMBSTONE_SECONDS and TOMBSTONE_BYTES
(the oldest are forgotten first, counted in `tombstones_dropped`: a
forgotten tombstone can only let a put older than the delete, still in
flight after that long, come back).
"""

from __future__ import annotations

from typing import Final, NamedTuple

TOMBSTONE_SECONDS: Final = 60.0
TOMBSTONE_BYTES: Final = 16 * 1024 * 1024
TOMBSTONE_OVERHEAD: Final = 150  # a tombstone's dict entry and tuple, estimated
RESEND_WINDOW: Final = 60.0  # seconds: older updates are in the store
NS: Final = 1_000_000_000


class Version(NamedTuple):
    stamp: int  # nanoseconds (see the module docstring)
    origin: int  # the router the update arrived at (-1: loaded from the store)
    wrote: bool  # this router has written the topic to the store


LOADED: Final = (0, -1)


class Versions:
    """The version of every retained topic (and of recently deleted ones)."""

    def __init__(self, index: int, routers: int) -> None:
        self.index = index
        self.routers = routers
        self.live: dict[str, Version] = {}
        self.deleted: dict[str, Version] = {}  # insertion order: oldest first
        self.deleted_bytes = 0
        self.tombstones_dropped = 0

    def held(self, topic: str) -> Version | None:
        return self.live.get(topic) or self.deleted.get(topic)

    def loaded(self, topic: str) -> None:
        """A message loaded from the store at start."""
        self.live[topic] = Version(0, -1, self.index == 0)

    def local(self, topic: str, now: float, deleted: bool) -> int:
        """An update that arrived at this router at `now` (wall-clock
        seconds): its stamp. It always wins here, and this router writes it."""
        held = self.held(topic)
        stamp = int(now * NS)
        if held is not None and stamp <= held.stamp:
            stamp = held.stamp + 1
        self._record(topic, Version(stamp, self.index, True), deleted, now)
        return stamp

    def accept(self, topic: str, stamp: int, origin: int, deleted: bool, now: float) -> int:
        """Another router's update: 0 if it lost (not applied), 1 if it is
        applied, 2 if applied and this router writes it too."""
        held = self.held(topic)
        if held is not None and (stamp, origin) <= (held.stamp, held.origin):
            return 0
        # this router's own update, sent back after it restarted: its
        # previous incarnation may have died before committing it
        wrote = origin == self.index or (held is not None and held.wrote)
        self._record(topic, Version(stamp, origin, wrote), deleted, now)
        return 2 if wrote else 1

    def expired(self, topic: str, deadline: float, now: float) -> bool:
        """The retained message of `topic` expired here: whether this router
        writes the delete."""
        held = self.live.get(topic)
        if held is None:
            return self.index == 0
        stamp = max(int(deadline * NS), held.stamp + 1)
        self._record(topic, Version(stamp, held.origin, held.wrote), True, now)
        return held.wrote

    def _record(self, topic: str, version: Version, deleted: bool, now: float) -> None:
        old = self.deleted.pop(topic, None)
        if old is not None:
            self.deleted_bytes -= len(topic) + TOMBSTONE_OVERHEAD
        if deleted:
            self.live.pop(topic, None)
            self.deleted[topic] = version
            self.deleted_bytes += len(topic) + TOMBSTONE_OVERHEAD
            self.prune(now)
        else:
            self.live[topic] = version

    def prune(self, now: float) -> None:
        """Forget tombstones older than TOMBSTONE_SECONDS, and the oldest past
        TOMBSTONE_BYTES."""
        oldest = int((now - TOMBSTONE_SECONDS) * NS)
        deleted = self.deleted
        while deleted:
            topic, version = next(iter(deleted.items()))
            if version.stamp >= oldest and self.deleted_bytes <= TOMBSTONE_BYTES:
                break
            del deleted[topic]
            self.deleted_bytes -= len(topic) + TOMBSTONE_OVERHEAD
            if version.stamp >= oldest:
                self.tombstones_dropped += 1

    def recent(self, now: float) -> list[tuple[str, Version, bool]]:
        """(topic, version, deleted) of the updates of the last RESEND_WINDOW
        seconds: what a restarted router may have missed."""
        since = int((now - RESEND_WINDOW) * NS)
        out = [(t, v, False) for t, v in self.live.items() if v.stamp >= since]
        out.extend((t, v, True) for t, v in self.deleted.items() if v.stamp >= since)
        return out
