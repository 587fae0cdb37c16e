"""The `flockmq` command line (click)."""

from __future__ import annotations

import click

from flockmq import __version__


@click.group()
@click.version_option(__version__, prog_name="flockmq")
def main() -> None:
    """flockmq: an MQTT 3.1/3.1.1/5.0 broker that uses every CPU core."""
