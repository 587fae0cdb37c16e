"""flockmq's bundled MQTT load tester.

    python scripts/loadtest.py SCENARIO [options]

Scenarios: fanin (P publishers -> 1 wildcard subscriber), fanout (1 publisher
-> N subscribers), pairs (K publisher/subscriber pairs on their own topics),
connections (C idle connections held for --hold seconds), latency (one
publisher at a fixed --rate to one subscriber), connect-rate (C clients each
connect once, CONNACK 0, DISCONNECT: connects per second). With --cafile every
client speaks TLS; with --credentials every client sends a username and
password (the file's users in turn). Clients run in several
processes, each an asyncio event loop on uvloop, with a small MQTT client of
our own (loadgen/client.py) instead of paho, so the tester is not the
bottleneck.

Prints one JSON line of results on stdout. Exit status: 0 fine, 1 a QoS 1/2
guarantee was broken (loss or reordering at QoS 1/2, a duplicate at QoS 2),
2 the run could not be set up (connection refused, a client process died),
3 --duration-limit came before the run finished (and nothing was broken).
"Lost" means completed by the publisher but not delivered by the end of the
run, so a run cut short at QoS 1/2 can report losses that were only late.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import uuid
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.credentials import read_credentials
from loadgen.runner import Coordinator
from loadgen.scenarios import SCENARIOS, Settings


def is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("scenario", type=click.Choice(SCENARIOS))
@click.option("--host", default="127.0.0.1", help="Broker host.")
@click.option("--port", default=1883, type=click.IntRange(1, 65535), help="Broker port.")
@click.option("--qos", default=0, type=click.IntRange(0, 2), help="Publish and subscribe QoS.")
@click.option(
    "--count",
    default=100_000,
    type=click.IntRange(1),
    help="Messages published in all (fanout, latency: by the one publisher).",
)
@click.option("--payload", default=64, type=click.IntRange(16), help="Payload bytes.")
@click.option("--inflight", default=64, type=click.IntRange(1, 65535), help="QoS 1/2 window.")
@click.option("--rate", default=0.0, type=float, help="Total msg/s; 0: unpaced (latency: 10000).")
@click.option("--publishers", default=4, type=click.IntRange(1), help="fanin publishers.")
@click.option("--subscribers", default=100, type=click.IntRange(1), help="fanout subscribers.")
@click.option("--pairs", default=100, type=click.IntRange(1), help="pairs: publisher/subscriber.")
@click.option(
    "--connections",
    default=10_000,
    type=click.IntRange(1),
    help="connections: idle connections; connect-rate: connects.",
)
@click.option(
    "--connect-concurrency",
    default=200,
    type=click.IntRange(1),
    help="Handshakes in progress at a time, per client process.",
)
@click.option("--hold", default=10.0, type=float, help="connections: seconds to hold them.")
@click.option("--protocol", default="4", type=click.Choice(["4", "5"]), help="MQTT level.")
@click.option("--clean/--persistent", default=True, help="Clean or persistent sessions.")
@click.option("--duration-limit", default=60.0, type=float, help="Seconds; the run stops then.")
@click.option("--drain-timeout", default=5.0, type=float, help="Wait this long for stragglers.")
@click.option("--processes", default=0, type=click.IntRange(0), help="Client processes; 0: auto.")
@click.option("--broker-pid", default=None, type=int, help="Broker (supervisor) pid, for RSS.")
@click.option(
    "--cafile",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="TLS: trust this CA (PEM); every client speaks TLS.",
)
@click.option(
    "--credentials",
    "credentials_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="A file of user:password lines; clients take the users in turn.",
)
@click.option("--plot", "plot_path", default=None, help="Write a PNG chart here.")
@click.option("--json", "json_only", is_flag=True, help="Only the JSON line, no progress bar.")
@click.option("--allow-remote", is_flag=True, help="Allow a broker that is not on loopback.")
@click.option(
    "--subscriber-host",
    default="",
    help="Subscribers connect to this host (the same port): another host of a cluster.",
)
# click passes each of the options above as an argument of its own.
def main(  # noqa: PLR0913, PLR0917
    scenario: str,
    host: str,
    port: int,
    qos: int,
    count: int,
    payload: int,
    inflight: int,
    rate: float,
    publishers: int,
    subscribers: int,
    pairs: int,
    connections: int,
    connect_concurrency: int,
    hold: float,
    protocol: str,
    clean: bool,
    duration_limit: float,
    drain_timeout: float,
    processes: int,
    broker_pid: int | None,
    cafile: str | None,
    credentials_file: str | None,
    plot_path: str | None,
    json_only: bool,
    allow_remote: bool,
    subscriber_host: str,
) -> None:
    """Load-test an MQTT broker with SCENARIO and print one JSON line of results."""
    for where in (host, subscriber_host or host):
        if not allow_remote and not is_loopback(where):
            raise click.UsageError(f"{where} is not a loopback address; pass --allow-remote")
    if scenario == "latency" and not rate:
        rate = 10_000.0
    try:
        credentials = read_credentials(Path(credentials_file)) if credentials_file else ()
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    settings = Settings(
        scenario=scenario,
        host=host,
        port=port,
        qos=qos,
        count=count,
        payload=payload,
        inflight=inflight,
        rate=rate,
        protocol=int(protocol),
        clean=clean,
        publishers=publishers,
        subscribers=subscribers,
        pairs=pairs,
        connections=connections,
        hold=hold,
        connect_concurrency=connect_concurrency,
        duration_limit=duration_limit,
        drain_timeout=drain_timeout,
        processes=processes,
        run_id=uuid.uuid4().hex[:8],
        cafile=cafile or "",
        credentials=credentials,
        subscriber_host=subscriber_host,
    )
    try:
        coordinator = Coordinator(settings, show_progress=not json_only and sys.stderr.isatty())
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    outcome = coordinator.run(broker_pid)
    if plot_path:
        from loadgen.plot import draw

        draw(plot_path, outcome.summary, outcome.series, outcome.latency)
    click.echo(json.dumps(outcome.summary))
    if not json_only:
        for line in outcome.summary["violations"] + outcome.summary["errors"]:
            click.echo(f"loadtest: {line}", err=True)
    sys.exit(outcome.exit_code)


if __name__ == "__main__":
    main()
