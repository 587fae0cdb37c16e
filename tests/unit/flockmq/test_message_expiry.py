"""The message expiry arithmetic shared by router and workers."""

from __future__ import annotations

from flockmq.message_expiry import (
    DEADLINE,
    NEVER,
    deadline_of,
    has_expired,
    pack_stored_props,
    props_to_send,
    unpack_stored_props,
)
from flockmq.persistence import unpack_blob

INTERVAL = "message_expiry_interval"


def test_deadline_and_expiry() -> None:
    assert deadline_of(None, 100.0) == NEVER
    assert deadline_of({"content_type": "x"}, 100.0) == NEVER
    assert deadline_of({INTERVAL: 0}, 100.0) == 100.0  # expires at once
    deadline = deadline_of({INTERVAL: 10}, 100.0)
    assert deadline == 110.0
    assert not has_expired(deadline, 109.99)
    assert has_expired(deadline, 110.0)
    assert not has_expired(NEVER, 10.0**12)


def test_the_interval_sent_counts_down_and_never_reads_zero_early() -> None:
    props = {INTERVAL: 10, "response_topic": "r"}
    assert props_to_send(props, 110.0, 100.0) == props
    assert props_to_send(props, 110.0, 104.2) == {INTERVAL: 6, "response_topic": "r"}
    assert props_to_send(props, 110.0, 109.9) == {INTERVAL: 1, "response_topic": "r"}
    assert props == {INTERVAL: 10, "response_topic": "r"}  # not changed in place
    assert props_to_send(None, NEVER, 5.0) is None


def test_the_stored_blob_carries_the_deadline_and_nothing_else_changes() -> None:
    blob = pack_stored_props({INTERVAL: 10}, 110.0)
    assert unpack_blob(blob) == {INTERVAL: 10, DEADLINE: 110.0}
    assert unpack_stored_props(blob) == ({INTERVAL: 10}, 110.0)
    assert unpack_stored_props(pack_stored_props({"content_type": "a"}, NEVER)) == (
        {"content_type": "a"},
        NEVER,
    )
    assert unpack_stored_props(pack_stored_props(None, NEVER)) == (None, NEVER)
    assert unpack_stored_props(None) == (None, NEVER)
