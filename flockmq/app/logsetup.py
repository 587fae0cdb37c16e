"""Logging for every flockmq process: one line per event, naming the process."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str, who: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
