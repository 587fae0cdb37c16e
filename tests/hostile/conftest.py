"""The hostile-input suite: every test attacks the real multi-process broker
the way a broken or hostile client would and asserts the bound (memory read
with psutil, counts of delivered messages, other clients keep working, every
broker process alive with its original pid, no traceback in the log)."""

from __future__ import annotations

from tests.e2e.conftest import broker, make_broker

__all__ = ["broker", "make_broker"]
