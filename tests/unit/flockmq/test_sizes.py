"""message_size: what every bound in bytes counts of a message."""

from __future__ import annotations

from flockmq.sizes import MESSAGE_OVERHEAD, message_size


def test_message_size_counts_every_part() -> None:
    base = message_size("t", b"", None)
    assert message_size("t" * 1001, b"", None) == base + 1000
    assert message_size("t", b"p" * 1000, None) == base + 1000
    assert message_size("t", b"", {"correlation_data": b"c" * 1000}) > base + 1000
    assert message_size("t", b"", {"response_topic": "r" * 1000}) > base + 1000
    many = {"user_property": [("k", "v")] * 1000}
    assert message_size("t", b"", many) > base + 1000
    # non-ASCII text counts its UTF-8 bytes
    assert message_size("\u20ac" * 1000, b"", None) > base + 2000


def test_an_empty_message_costs_its_overhead() -> None:
    assert message_size("", b"", None) == MESSAGE_OVERHEAD
    assert message_size("", b"", {}) == MESSAGE_OVERHEAD
