"""A one-line progress bar on stderr, redrawn in place; silent when disabled
(--json, or stderr is not a terminal)."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 28


def human(n: float) -> str:
    """12345 -> '12.3k'."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


class ProgressBar:
    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.drawn = False

    def update(self, fraction: float, text: str) -> None:
        if not self.enabled:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(fraction * WIDTH)
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(f"\r[{bar}] {fraction * 100:5.1f}% {text}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
