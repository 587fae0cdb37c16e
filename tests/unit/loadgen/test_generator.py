"""Which generator runs a bench row: loadtest.py when asked for, when the
native one could not be built, or when it refuses the row's options; and the
native binary is rebuilt only when its source is newer."""

from __future__ import annotations

import os
from pathlib import Path

from loadgen.generator import PYTHON, choose, needs_build


def test_python_is_used_when_asked_for() -> None:
    assert choose("python", ["fanin"], Path("/nonexistent")) == (PYTHON, "")


def test_python_is_used_without_a_native_binary() -> None:
    generator, why = choose("native", ["fanin"], None)
    assert generator is PYTHON and "could not be built" in why


def test_a_binary_is_built_when_missing_or_older_than_its_source(tmp_path: Path) -> None:
    source, binary = tmp_path / "mqttload.c", tmp_path / "mqttload"
    source.write_text("int main(void) { return 0; }\n")
    assert needs_build(source, binary)
    binary.write_text("")
    os.utime(binary, (1_000_000, 1_000_000))
    assert needs_build(source, binary)
    os.utime(binary, None)
    os.utime(source, (1_000_000, 1_000_000))
    assert not needs_build(source, binary)
