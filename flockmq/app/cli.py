"""The `flockmq` command line (click): `flockmq serve` runs the supervisor."""

from __future__ import annotations

import sys
from typing import Any

import click

from flockmq import __version__
from flockmq.app.logsetup import setup_logging
from flockmq.config import LOG_FORMATS, LOG_LEVELS, ConfigError, load_config


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
@click.option(
    "--routers",
    type=int,
    default=None,
    help="Router processes, each holding every subscription and retained message [1].",
)
@click.option("--data-dir", default=None, help="Where durable state lives.")
@click.option("--acl-file", default=None, help="ACL file in Mosquitto's format.")
@click.option(
    "--password-file",
    default=None,
    help="Password file in Mosquitto's format (`flockmq passwd` or mosquitto_passwd).",
)
@click.option(
    "--auth-hook",
    default=None,
    help="Python module with authenticate()/authorize() hooks, run in auth processes.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None, help="[info]")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="text, or json: one JSON object per line for log collectors [text].",
)
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
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on HOST:PORT/metrics [off].",
)
@click.option(
    "--persistence",
    type=click.Choice(["sqlite", "none"]),
    default=None,
    help="Durable state in DATA_DIR/flockmq.db, or none (memory only) [sqlite].",
)
@click.option(
    "--store",
    type=click.Choice(["sqlite", "postgres"]),
    default=None,
    help="Durable state in DATA_DIR/flockmq.db, or in PostgreSQL (--postgres-dsn) [sqlite].",
)
@click.option(
    "--postgres-dsn",
    default=None,
    help="libpq connection string of the PostgreSQL store (a password is better in "
    "~/.pgpass or PGPASSWORD than on the command line).",
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
@click.option(
    "--spawn",
    type=click.Choice(["exec", "fork"]),
    default=None,
    help="Children forked from the supervisor with every role imported (shared "
    "pages: about half the memory), or each a new interpreter [fork].",
)
@click.option(
    "--cluster",
    "cluster_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Cluster file (TOML): run one node of a broker over several hosts (--node).",
)
@click.option("--node", default=None, help="With --cluster: the name of this host's node.")
def serve(
    config_file: str | None, cluster_file: str | None, node: str | None, **flags: Any
) -> None:
    """Run the broker: a supervisor that spawns acceptors, routers and workers."""
    from flockmq.app.supervisor import Supervisor

    try:
        fixed = _cluster_values(cluster_file, node)
        config = load_config(config_file, flags, fixed)
        setup_logging(config.log_level, "supervisor", config.log_format)
        cluster = None
        if cluster_file is not None:  # checked above: its shards move as nodes die
            from flockmq.cluster import load_cluster

            cluster = load_cluster(cluster_file)
            if cluster.insecure:
                import logging

                logging.getLogger("flockmq.curve").warning(
                    "cluster: %s has insecure = true: the bus and heartbeats between"
                    " the hosts are neither authenticated nor encrypted; anyone who"
                    " reaches their ports can act as a node",
                    cluster.source,
                )
        supervisor = Supervisor(config, cluster)
        code = supervisor.run()
    except ConfigError as exc:
        click.echo(f"flockmq: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


def _cluster_values(cluster_file: str | None, node: str | None) -> dict[str, Any] | None:
    """The settings the cluster file decides for node `node` (None: no
    cluster); click's usage error (exit 2) for --cluster and --node apart."""
    if cluster_file is None and node is None:
        return None
    if cluster_file is None:
        raise click.UsageError("--node: only with --cluster FILE")
    if node is None:
        raise click.UsageError("--cluster: which node is this host? (--node NAME)")
    from flockmq.cluster import load_cluster

    cluster = load_cluster(cluster_file)  # a ClusterError is a ConfigError: exit 2
    if node not in cluster.node_names:
        raise click.BadParameter(
            f"{cluster.source} has no node {node[:80]!r}"
            f" (its nodes: {', '.join(cluster.node_names)})",
            param_hint="'--node'",
        )
    return cluster.config_values(node)


@main.command()
@click.option("-b", "batch", is_flag=True, help="Batch mode: the password is an argument.")
@click.option("-c", "create", is_flag=True, help="Create a new file (overwrites it).")
@click.option("-D", "delete", is_flag=True, help="Delete USER instead of setting a password.")
@click.option("-U", "upgrade", is_flag=True, help="Hash every plain-text password in FILE.")
@click.option(
    "-H",
    "scheme",
    type=click.Choice(["sha512-pbkdf2", "sha512"]),
    default="sha512-pbkdf2",
    show_default=True,
    help="Hash (sha512 only for Mosquitto 1.x).",
)
@click.option("-I", "iterations", type=click.IntRange(1, 1_000_000), default=101, show_default=True)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("username", required=False)
@click.argument("password", required=False)
def passwd(file: str, username: str | None, password: str | None, **flags: Any) -> None:
    """Manage a password file in Mosquitto's format (as mosquitto_passwd does).

    \b
    flockmq passwd [-c | -D] FILE USER        (prompts for the password)
    flockmq passwd [-c] -b FILE USER PASSWORD
    flockmq passwd -U FILE
    """
    from flockmq.app.passwd import PasswdRequest, run_passwd

    request = PasswdRequest(file, username, password, **flags)
    try:
        message = run_passwd(request, prompt=_prompt_password)
    except (ValueError, OSError) as exc:
        click.echo(f"flockmq passwd: {exc}", err=True)
        sys.exit(1)
    if message:
        click.echo(message, err=True)


def _prompt_password() -> str:
    return str(click.prompt("Password", hide_input=True, confirmation_prompt="Reenter password"))


@main.command("cluster-keys")
@click.argument("nodes", nargs=-1, required=True)
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False),
    help="Where to write NODE.key (public) and NODE.key_secret (0600).",
)
def cluster_keys(nodes: tuple[str, ...], directory: str) -> None:
    """Make a CURVE keypair for each cluster node NODE (the cluster file's
    [security] curve_keys = DIR). Copy every NODE.key to every host, and
    each NODE.key_secret to its own host only. Never overwrites a key."""
    from flockmq.cluster import NODE_NAME
    from flockmq.curve import CurveKeyError, write_keypair

    for node in nodes:
        if not NODE_NAME.fullmatch(node):
            raise click.BadParameter(f"{node[:80]!r} is not a node name", param_hint="NODES")
    for node in nodes:
        try:
            public, secret = write_keypair(directory, node)
        except CurveKeyError as exc:
            click.echo(f"flockmq: {exc}", err=True)
            sys.exit(2)
        click.echo(f"{node}: {public} (every host), {secret} (host {node} only)")


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
def check_config(file: str) -> None:
    """Check a TOML config as `serve --config FILE` would (types, ranges, and
    the files it names: ACL, passwords, certificates), then print the
    settings in effect."""
    try:
        config = load_config(file, {})
    except ConfigError as exc:
        click.echo(f"flockmq: {exc}", err=True)
        sys.exit(2)
    from flockmq.persistence import check_configured_store
    from flockmq.store import StoreError

    try:
        store_note = check_configured_store(config)
    except StoreError as exc:
        click.echo(f"flockmq: store: {exc}", err=True)
        sys.exit(2)
    click.echo(f"# {file}: OK. The settings in effect (defaults included):")
    if store_note:
        click.echo(f"# store: {store_note}")
    click.echo(effective_settings(config))


_NOT_SETTINGS = (
    "extra",
    "runtime_dir",
    "listeners",
    "auth_hook_functions",
    "broker_id",
    "placement",
    "curve",
)


def effective_settings(config: Any) -> str:
    """The resolved configuration as TOML a user could paste back."""
    import dataclasses

    lines = []
    for key, value in sorted(dataclasses.asdict(config).items()):
        if key in _NOT_SETTINGS or value is None:
            continue
        if key == "postgres_dsn" and value:
            from flockmq.store.postgres import redact_dsn

            value = redact_dsn(value)  # never print a password
        lines.append(f"{key} = {_toml(value)}")
    for listener in config.listener_list():
        lines.append("\n[[listeners]]")
        for key, value in dataclasses.asdict(listener).items():
            if value is not None:
                lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


@main.command()
@click.option(
    "--data-dir",
    default=None,
    help="The running broker's data directory [serve's default].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, for scripts.")
@click.option("--watch", is_flag=True, help="Refresh like top, until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between the two samples behind the rates, and between refreshes.",
)
def status(data_dir: str | None, as_json: bool, watch: bool, interval: float) -> None:
    """Every process of a running broker on this host: CPU, memory,
    connections, sessions, messages per second, queues, restarts; and advice
    computed from those figures. Asked of the processes themselves."""
    import json
    import time

    from flockmq.app.control import StatusError, StatusSampler, find_broker
    from flockmq.app.status import render_table
    from flockmq.config import default_data_dir

    try:
        broker = find_broker(data_dir or default_data_dir())
    except StatusError as exc:
        click.echo(f"flockmq status: {exc}", err=True)
        sys.exit(1)
    sampler = StatusSampler(broker.runtime_dir, interval)
    interrupted: list[int] = []
    if watch:
        # Ctrl-C sets a flag that the loop reads between reports, rather
        # than raising KeyboardInterrupt wherever it lands: raised inside a
        # finalizer it is printed and dropped, and the watch went on (seen
        # in the suite). Installed explicitly, so a SIGINT ignored by the
        # parent (a background job of a script) still stops it.
        import signal

        signal.signal(signal.SIGINT, lambda signum, _frame: interrupted.append(signum))
    try:
        while not interrupted:
            report = sampler.report()
            if as_json:
                click.echo(json.dumps(report, indent=None if watch else 2))
            else:
                if watch:
                    click.clear()
                click.echo(render_table(report))
            if not watch:
                break
            time.sleep(interval)  # a signal handler that returns does not cut it short
    except KeyboardInterrupt:
        pass
    finally:
        # A Ctrl-C may land anywhere, even between a socket's creation and
        # its close: exit without waiting on one (a context's term() at exit
        # waits for every socket to be closed).
        import zmq

        zmq.Context.instance().destroy(linger=0)
