"""Write golden_v2.db: a small format-2 store with one of every row kind.

Run once, by hand, when format 2 was defined:

    .venv/bin/python tests/unit/store/make_golden_v2.py

(and once more before format 2 was released, when its migration came to drop
the unused inbound table) and never again: test_format.py checks that the
current code reads the checked-in file with exactly these contents (spelled
out there on their own, so that editing this script cannot change what the
test expects). A new format gets its own golden file and script.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))

from flockmq.store import (
    FORMAT_VERSION,
    Op,
    PutInboundQos2,
    PutMessage,
    PutRetained,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    open_store,
)

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_v2.db")

OPS: list[Op] = [
    PutSession("sensor-1", 3600, 5, b"\x94\xa6will/t\xc4\x03bye\x01\xc2", 1700000000.5),
    PutSession("älterer-client", 0xFFFFFFFF, 4, None, None),
    PutSubscription("sensor-1", "cmd/#", 1, True, False, 1, 42),
    PutSubscription("sensor-1", "$share/g/jobs/+", 2),
    PutMessage("sensor-1", 10, "cmd/a", b"in flight", 2, False, b"\x81\xa1k\xa1v", 7, 1),
    PutMessage("sensor-1", 11, "cmd/b", b"", 1, True, None, 8, 0),
    PutMessage("sensor-1", 12, "cmd/c", b"\x00\xff queued", 1, False, None, 0, 0),
    PutInboundQos2("sensor-1", 65535, 2**62),
    PutInboundQos2("sensor-1", 3, 5),
    PutSession("pub", 60, 4, None, None),
    PutInboundQos2("pub", 1, 2**63 - 1),
    PutInboundQos2("pub", 2, 8),
    PutSeenQos2("sensor-1", "pub", 2, 8),
    PutSeenQos2("sensor-1", "pub", 1, 2**63 - 1),
    PutSeenQos2("älterer-client", "pub", 2, 8),
    PutSubscription("älterer-client", "a/b", 0),
    PutRetained("status/€", b"online", 1, b"\x81\xa2ct\xa4text"),
    PutRetained("status/x", b"\x01", 0, None),
]


def main() -> None:
    assert FORMAT_VERSION == 2, "golden_v2.db is format 2; write a new script for a new format"
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store("sqlite", tmp, "power")
        store.apply(OPS)
        store.close()  # the last connection checkpoints the WAL into the file
        src = os.path.join(tmp, "flockmq.db")
        assert not os.path.exists(src + "-wal"), "WAL not checkpointed"
        shutil.copyfile(src, GOLDEN)
    print(f"wrote {GOLDEN} ({os.path.getsize(GOLDEN)} bytes)")


if __name__ == "__main__":
    main()
