"""The SQLite file: created when missing, never overwritten when it is not ours
or not readable, refused when newer, read back from the golden format-1 file
(migrated) and format-2 file;
WAL mode and the durability setting; several processes writing at once."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flockmq.store import (
    FORMAT_VERSION,
    DeleteInboundQos2,
    InboundQos2Record,
    MessageRecord,
    PutRetained,
    PutSeenQos2,
    PutSession,
    RetainedRecord,
    SeenQos2Record,
    SessionRecord,
    SqliteStore,
    StoreError,
    SubscriptionRecord,
    open_store,
)
from flockmq.store.sqlite import db_path

GOLDEN_V1 = Path(__file__).with_name("golden_v1.db")
GOLDEN_V2 = Path(__file__).with_name("golden_v2.db")


def everyone(_cid: str) -> bool:
    return True


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_store(data: Path) -> str:
    with open_store("sqlite", str(data), "process") as s:
        s.apply([PutSession(f"c{i}", 10, 5, b"w" * 500, None) for i in range(200)])
    return db_path(str(data))


def test_missing_file_is_created_with_parents(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b" / "data"
    with open_store("sqlite", str(data), "process") as s:
        assert s.path == str(data / "flockmq.db")
        s.apply([PutRetained("t", b"x", 0, None)])
    raw = sqlite3.connect(data / "flockmq.db")
    version = raw.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    assert version == (FORMAT_VERSION,) == (2,)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_reopen_keeps_state(tmp_path: Path) -> None:
    make_store(tmp_path / "data")
    with open_store("sqlite", str(tmp_path / "data"), "power") as s:
        assert len(s.load_sessions(everyone)) == 200


@pytest.mark.parametrize(("durability", "level"), [("process", 1), ("power", 2)])
def test_durability_sets_synchronous(tmp_path: Path, durability: str, level: int) -> None:
    with open_store("sqlite", str(tmp_path), durability) as s:
        assert isinstance(s, SqliteStore)
        # White box: the setting is per connection, so check both of them.
        assert s._conn is not None
        assert s._conn.execute("PRAGMA synchronous").fetchone() == (level,)
        w = s.writer()
        w.apply([PutRetained("t", b"x", 0, None)])
        # writer() is typed as any backend's writer; this one is SQLite's.
        assert w._conn.execute("PRAGMA synchronous").fetchone() == (level,)  # type: ignore[attr-defined]
        w.close()


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = make_store(tmp_path / "data")
    raw = sqlite3.connect(path)
    newer = FORMAT_VERSION + 1
    raw.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (newer,))
    raw.commit()
    raw.close()
    with pytest.raises(StoreError) as err:
        open_store("sqlite", str(tmp_path / "data"), "process")
    assert str(err.value) == (
        f"{path} was written by a newer flockmq (format {newer};"
        f" this one reads up to {FORMAT_VERSION})"
    )
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta").fetchone() == (newer,)
    assert raw.execute("SELECT count(*) FROM sessions").fetchone() == (200,)
    raw.close()


def test_garbage_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = db_path(str(data))
    Path(path).write_bytes(os.urandom(3000) + b"not a database" * 100)
    before = digest(path)
    with pytest.raises(StoreError, match="not a readable flockmq store") as err:
        open_store("sqlite", str(data), "process")
    assert path in str(err.value)
    assert digest(path) == before
    assert sorted(os.listdir(data)) == ["flockmq.db"]


def test_damaged_pages_are_refused_and_left_alone(tmp_path: Path) -> None:
    path = make_store(tmp_path / "data")
    size = os.path.getsize(path)
    assert size > 8 * 4096
    with open(path, "r+b") as f:  # keep the header and schema page, smash the rest
        f.seek(4096)
        f.write(b"\xa5" * (size - 4096))
    before = digest(path)
    with pytest.raises(StoreError) as err:
        open_store("sqlite", str(tmp_path / "data"), "process")
    assert path in str(err.value)
    assert digest(path) == before


def test_foreign_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = db_path(str(data))
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE precious (x)")
    raw.execute("INSERT INTO precious VALUES (1)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not a flockmq store") as err:
        open_store("sqlite", str(data), "process")
    assert path in str(err.value)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT * FROM precious").fetchall() == [(1,)]
    raw.close()


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    """Works as root too: nobody can make a directory below a regular file."""
    (tmp_path / "file").write_text("x")
    data = tmp_path / "file" / "data"
    with pytest.raises(StoreError, match="cannot create the data directory") as err:
        open_store("sqlite", str(data), "process")
    assert str(data) in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o555)
    existing = tmp_path / "existing"
    path = make_store(existing)
    os.chmod(path, 0o444)
    existing.chmod(0o555)
    try:
        with pytest.raises(StoreError) as err:
            open_store("sqlite", str(empty), "process")
        assert str(empty) in str(err.value)
        # An existing store: refused on open, or failing on the first write.
        try:
            s = open_store("sqlite", str(existing), "process")
        except StoreError as e:
            assert path in str(e)
        else:
            with pytest.raises(StoreError) as err:
                s.apply([PutRetained("t", b"x", 0, None)])
            assert path in str(err.value)
            s.close()
    finally:
        empty.chmod(0o755)
        existing.chmod(0o755)
        os.chmod(path, 0o644)


def test_bad_kind_or_durability(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="kind"):
        open_store("oracle", str(tmp_path), "process")
    with pytest.raises(StoreError, match="durability"):
        open_store("sqlite", str(tmp_path), "eventually")
    with pytest.raises(StoreError, match="durability"):
        open_store("memory", str(tmp_path), "eventually")


def test_golden_v1_file_reads_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """tests/unit/store/golden_v1.db was written once by make_golden_v1.py with
    format 1. If this fails, the change breaks reading existing stores. Opening
    it migrates it to the current format, in place, saying so."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(GOLDEN_V1, data / "flockmq.db")  # never open the checked-in file
    with open_store("sqlite", str(data), "process") as s:
        assert s.load_sessions(everyone) == [
            SessionRecord(
                "sensor-1",
                3600,
                5,
                b"\x94\xa6will/t\xc4\x03bye\x01\xc2",
                1700000000.5,
                (
                    SubscriptionRecord("$share/g/jobs/+", 2, False, False, 0, None),
                    SubscriptionRecord("cmd/#", 1, True, False, 1, 42),
                ),
                (
                    MessageRecord(10, "cmd/a", b"in flight", 2, False, b"\x81\xa1k\xa1v", 7, 1),
                    MessageRecord(11, "cmd/b", b"", 1, True, None, 8, 0),
                    MessageRecord(12, "cmd/c", b"\x00\xff queued", 1, False, None, 0, 0),
                ),
                (InboundQos2Record(3, 0), InboundQos2Record(65535, 0)),  # no tokens in v1
            ),
            SessionRecord(
                "älterer-client",
                0xFFFFFFFF,
                4,
                None,
                None,
                (SubscriptionRecord("a/b", 0),),
            ),
        ]
        assert s.load_retained() == [
            RetainedRecord("status/x", b"\x01", 0, None),
            RetainedRecord("status/€", b"online", 1, b"\x81\xa2ct\xa4text"),
        ]
        s.apply([PutRetained("status/x", b"\x02", 0, None)])  # and it stays writable
        assert s.load_retained()[0].payload == b"\x02"
        s.apply([PutSeenQos2("sensor-1", "pub", 3, 77)])  # format 2 rows, too
        assert s.load_sessions(everyone)[0].seen_qos2 == (SeenQos2Record("pub", 3, 77),)
    assert f"{data / 'flockmq.db'}: migrating the store from format 1 to 2" in caplog.text
    raw = sqlite3.connect(data / "flockmq.db")
    assert raw.execute("SELECT value FROM meta").fetchone() == (2,)
    # Format 1's inbound log (two rows in the golden file) was never used: gone.
    assert raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'inbound'").fetchall() == []
    raw.close()


def test_golden_v2_file_reads_back(tmp_path: Path) -> None:
    """tests/unit/store/golden_v2.db was written once by make_golden_v2.py with
    format 2: the format 1 rows plus inbound QoS 2 tokens and seen rows."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(GOLDEN_V2, data / "flockmq.db")
    with open_store("sqlite", str(data), "process") as s:
        pub, sensor, older = s.load_sessions(everyone)  # sorted by client id
        assert (pub.client_id, sensor.client_id, older.client_id) == (
            "pub",
            "sensor-1",
            "älterer-client",
        )
        assert [m.seq for m in sensor.messages] == [10, 11, 12]
        assert sensor.inbound_qos2 == (InboundQos2Record(3, 5), InboundQos2Record(65535, 2**62))
        assert sensor.seen_qos2 == (
            SeenQos2Record("pub", 1, 2**63 - 1),
            SeenQos2Record("pub", 2, 8),
        )
        assert older.seen_qos2 == (SeenQos2Record("pub", 2, 8),)
        assert pub.inbound_qos2 == (InboundQos2Record(1, 2**63 - 1), InboundQos2Record(2, 8))
        s.apply([DeleteInboundQos2("pub", 2)])  # PUBREL of pub's packet id 2
        pub, sensor, older = s.load_sessions(everyone)
        assert sensor.seen_qos2 == (SeenQos2Record("pub", 1, 2**63 - 1),)
        assert older.seen_qos2 == ()


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from flockmq.store import PutMessage, PutSession, open_store

    data, name = sys.argv[1], sys.argv[2]
    store = open_store("sqlite", data, "process")
    for i in range(60):  # one short transaction each, interleaved with the others
        store.apply([
            PutSession(f"{name}-{i}", 10, 5, None, None),
            PutMessage(f"{name}-{i}", 1, "t", name.encode(), 1, False, None),
        ])
    store.close()
    """
)


def test_processes_share_the_file(tmp_path: Path) -> None:
    """The router and each worker open the same file and write their own rows."""
    data = str(tmp_path / "data")
    names = ["w0", "w1", "w2", "router"]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, data, n], stderr=subprocess.PIPE)
        for n in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    with open_store("sqlite", data, "process") as s:
        sessions = s.load_sessions(everyone)
        assert len(sessions) == 60 * len(names)
        w1 = s.load_sessions(lambda cid: cid.startswith("w1-"))
        assert len(w1) == 60
        assert {m.payload for r in w1 for m in r.messages} == {b"w1"}
