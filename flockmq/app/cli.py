"""The `flockmq` command line (click): `flockmq serve` runs the supervisor."""

from __future__ import annotations

import sys
from typing import Any

import click

from flockmq import __version__
from flockmq.app.logsetup import setup_logging
from flockmq.config import LOG_LEVELS, ConfigError, load_config


@click.group()
@click.version_option(__version__, prog_name="flockmq")
def main() -> None:
    """flockmq: an MQTT 3.1/3.1.1/5.0 broker that uses every CPU core."""


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file with the same keys as these flags (flags win).",
)
@click.option("--host", default=None, help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, default=None, help="TCP port for MQTT [1883].")
@click.option(
    "--acceptors", type=int, default=None, help="Acceptor processes (client sockets) [CPU count]."
)
@click.option(
    "--workers", type=int, default=None, help="Session-worker processes (shards) [CPU count]."
)
@click.option("--data-dir", default=None, help="Where durable state lives.")
@click.option("--acl-file", default=None, help="ACL file in Mosquitto's format.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None, help="[info]")
@click.option(
    "--max-inflight",
    type=int,
    default=None,
    help="Outbound QoS 1/2 in-flight window per session [64].",
)
@click.option(
    "--max-queued-messages",
    type=int,
    default=None,
    help="Queued messages per session before new ones are dropped [100000].",
)
@click.option(
    "--queue-qos0/--no-queue-qos0",
    default=None,
    help="Queue QoS 0 messages for offline persistent sessions [off].",
)
@click.option(
    "--sys-interval",
    type=float,
    default=None,
    help="Seconds between $SYS/broker counter updates [10].",
)
@click.option(
    "--persistence",
    type=click.Choice(["sqlite", "none"]),
    default=None,
    help="Durable state in DATA_DIR/flockmq.db, or none (memory only) [sqlite].",
)
@click.option(
    "--durability",
    type=click.Choice(["process", "power"]),
    default=None,
    help="process: survives any process being killed; power: also survives power loss "
    "(fsync on every commit) [process].",
)
@click.option(
    "--transport",
    type=click.Choice(["ipc", "tcp"]),
    default=None,
    help="ZeroMQ transport between the processes [ipc].",
)
def serve(config_file: str | None, **flags: Any) -> None:
    """Run the broker: a supervisor that spawns acceptors, a router and workers."""
    from flockmq.app.supervisor import Supervisor

    try:
        config = load_config(config_file, flags)
        setup_logging(config.log_level, "supervisor")
        supervisor = Supervisor(config)
        code = supervisor.run()
    except ConfigError as exc:
        click.echo(f"flockmq: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)
