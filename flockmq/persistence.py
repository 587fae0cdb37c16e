"""Opening the durable store for a broker process, as the configuration says."""

from __future__ import annotations

import logging

import msgpack

from flockmq.config import Config
from flockmq.store import Store, open_store

log = logging.getLogger("flockmq.store")


def open_configured_store(config: Config) -> Store:
    kind = "memory" if config.persistence == "none" else config.store
    return open_store(kind, config.data_dir, config.durability, dsn=config.postgres_dsn)


def check_configured_store(config: Config) -> str | None:
    """For `flockmq check-config`: whether the PostgreSQL store is reachable and
    readable, without creating or changing anything (a line to print; None for
    the embedded stores). StoreError saying why it is not."""
    if config.store != "postgres" or config.persistence == "none":
        return None
    from flockmq.store.postgres import check_postgres

    return check_postgres(config.postgres_dsn)


def pack_blob(value: object) -> bytes | None:
    """Props and wills are stored as msgpack blobs (None stays None)."""
    if value is None:
        return None
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_blob(blob: bytes | None) -> object:
    """The stored value; a blob that is not msgpack (a damaged row, a bug of
    an older version) is logged and read as None: a stored record never makes
    a process raise at load."""
    if blob is None:
        return None
    try:
        return msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as exc:
        log.error("store: a stored blob of %d bytes cannot be read (%s): ignored", len(blob), exc)
        return None
