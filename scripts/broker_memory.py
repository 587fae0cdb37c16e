"""Print a broker's memory, per process and summed (RSS, PSS, USS).

    python scripts/broker_memory.py PID [--json]
    python scripts/broker_memory.py --serve [--serve-args "--acceptors 2"] [--settle 3]

PID is a running supervisor's (`flockmq serve`); its children are found
afresh. With --serve, a broker with serve's defaults (plus --serve-args) is
started on a free port in a temporary data directory, sampled once it
answers a CONNECT and --settle seconds have passed, then stopped (SIGTERM to
its pid). The summed PSS is the honest figure (shared pages counted once);
the summed RSS is what `flockmq status` and most tools show.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.broker_memory import Sample, format_table, sample_tree, sum_samples

from flockmq.app.probe import free_port, mqtt_ready

READY_TIMEOUT = 30.0


def serve_and_sample(serve_args: str, settle: float) -> list[Sample]:
    """Start a broker, sample it when ready and settled, stop it."""
    flockmq = Path(sys.executable).with_name("flockmq")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="flockmq-mem-") as data_dir:
        cmd = [str(flockmq), "serve", "--port", str(port), "--data-dir", data_dir]
        proc = subprocess.Popen([*cmd, *shlex.split(serve_args)])
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not mqtt_ready("127.0.0.1", port, timeout=0.5):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise click.ClickException("the broker did not become ready")
                time.sleep(0.1)  # polling a port: nothing to wait on
            time.sleep(settle)  # idle on purpose: the figure is the idle broker's
            return sample_tree(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pid", type=int, required=False)
@click.option("--serve", is_flag=True, help="Start a broker, sample it, stop it.")
@click.option("--serve-args", default="", help="More `flockmq serve` options (with --serve).")
@click.option("--settle", default=3.0, type=float, help="Seconds idle before sampling.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def main(pid: int | None, serve: bool, serve_args: str, settle: float, as_json: bool) -> None:
    if serve == (pid is not None):
        raise click.UsageError("give either a PID or --serve")
    samples = serve_and_sample(serve_args, settle) if pid is None else sample_tree(pid)
    if not samples:
        raise click.ClickException(f"no process {pid}")
    if as_json:
        rows = [asdict(s) for s in [*samples, sum_samples(samples)]]
        click.echo(json.dumps(rows))
    else:
        click.echo(format_table(samples))


if __name__ == "__main__":
    main()
