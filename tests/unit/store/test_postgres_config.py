"""The store settings: `store` and `postgres_dsn` in the TOML file and as
`flockmq serve` flags; `flockmq check-config` connects to the PostgreSQL store
(changing nothing), says clearly when it cannot, and never prints the DSN's
password."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from flockmq.app.cli import main
from flockmq.config import Config, ConfigError, load_config
from flockmq.persistence import open_configured_store
from flockmq.store import MemoryStore, SqliteStore
from flockmq.store.postgres import FORMAT_VERSION, PostgresStore
from flockmq.store.shard_locks import NAMESPACE
from tests.postgres import PostgresServer


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "flockmq.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n{text}\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, result.output


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    config = load_config(None, {"data_dir": str(tmp_path)})
    assert (config.store, config.postgres_dsn) == ("sqlite", "")
    assert config.shard_namespace == NAMESPACE
    with open_configured_store(config) as store:
        assert isinstance(store, SqliteStore)
    config = load_config(None, {"data_dir": str(tmp_path), "persistence": "none"})
    with open_configured_store(config) as store:
        assert isinstance(store, MemoryStore)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"store": "mysql"}, "store: 'mysql' is not 'sqlite' or 'postgres'"),
        ({"store": "postgres"}, "postgres_dsn: store = 'postgres' needs a connection string"),
        (
            {"store": "postgres", "postgres_dsn": "host=x", "persistence": "none"},
            "persistence = 'none'",
        ),
        ({"store": "postgres", "postgres_dsn": "host=x port"}, "not a valid PostgreSQL"),
        ({"postgres_dsn": 5}, "postgres_dsn: expected str"),
        ({"shard_namespace": -1}, r"shard_namespace: -1 is not 0\.\.2147483647"),
        ({"shard_namespace": 2**31}, r"shard_namespace: 2147483648 is not 0\.\.2147483647"),
        ({"shard_namespace": "floc"}, "shard_namespace: expected int"),
    ],
)
def test_bad_store_settings_are_refused(
    tmp_path: Path, overrides: dict[str, object], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config(None, {"data_dir": str(tmp_path), **overrides})


def test_the_configured_postgres_store_opens(tmp_path: Path, postgres_dsn: str) -> None:
    path = tmp_path / "flockmq.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\nstore = "postgres"\npostgres_dsn = "{postgres_dsn}"\n'
    )
    config = load_config(str(path), {})
    assert Config.from_json(config.to_json()).postgres_dsn == postgres_dsn  # reaches children
    with open_configured_store(config) as store:
        assert isinstance(store, PostgresStore)
        assert store.load_retained() == []


def test_serve_flags_set_the_store(tmp_path: Path) -> None:
    """The flags as `flockmq serve` passes them to load_config."""
    config = load_config(
        None, {"data_dir": str(tmp_path), "store": "postgres", "postgres_dsn": "host=db"}
    )
    assert (config.store, config.postgres_dsn) == ("postgres", "host=db")
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert "--store [sqlite|postgres]" in result.output
    assert "--postgres-dsn" in result.output


def test_check_config_connects_and_changes_nothing(tmp_path: Path, postgres_dsn: str) -> None:
    code, output = check(tmp_path, f'store = "postgres"\npostgres_dsn = "{postgres_dsn}"')
    assert code == 0, output
    assert "OK" in output.splitlines()[0]
    assert "reachable, no flockmq store yet" in output
    assert f'postgres_dsn = "{postgres_dsn}"' in output
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'flockmq'")
        assert row.fetchone() == (0,)
    config = load_config(
        None, {"data_dir": str(tmp_path), "store": "postgres", "postgres_dsn": postgres_dsn}
    )
    open_configured_store(config).close()  # creates the schema
    code, output = check(tmp_path, f'store = "postgres"\npostgres_dsn = "{postgres_dsn}"')
    assert code == 0, output
    assert f"reachable, flockmq store format {FORMAT_VERSION}" in output


def test_check_config_reports_a_dsn_that_does_not_connect(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    dsn = f"host=127.0.0.1 port={postgres_server.port} dbname=nosuchdb user=u password=s3cret"
    code, output = check(tmp_path, f'store = "postgres"\npostgres_dsn = "{dsn}"')
    assert code == 2
    assert (
        f"flockmq: store: cannot connect to postgresql://u@127.0.0.1:{postgres_server.port}"
        "/nosuchdb:"
    ) in output
    assert "s3cret" not in output


def test_check_config_hides_the_password(tmp_path: Path, postgres_dsn: str) -> None:
    dsn = f"{postgres_dsn} password=s3cret"  # trust authentication ignores it
    code, output = check(tmp_path, f'store = "postgres"\npostgres_dsn = "{dsn}"')
    assert code == 0, output
    assert "s3cret" not in output
    assert "password=********" in output
