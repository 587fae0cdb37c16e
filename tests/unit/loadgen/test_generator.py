"""Which generator runs a bench row: loadtest.py when asked for, when the
native one could not be built, or when it refuses the row's options; and the
native binary is rebuilt only when its source is newer."""

from __future__ import annotations

import os
from pathlib import Path

from loadgen.generator import PYTHON, choose, native_sources, needs_build


def test_python_is_used_when_asked_for() -> None:
    assert choose("python", ["fanin"], Path("/nonexistent")) == (PYTHON, "")


def test_python_is_used_without_a_native_binary() -> None:
    generator, why = choose("native", ["fanin"], None)
    assert generator is PYTHON and "could not be built" in why


def test_a_binary_is_built_when_missing_or_older_than_its_source(tmp_path: Path) -> None:
    source, header, binary = tmp_path / "main.c", tmp_path / "main.h", tmp_path / "mqttload"
    source.write_text("int main(void) { return 0; }\n")
    header.write_text("")
    sources = native_sources(tmp_path)
    assert sources == [source, header]
    assert needs_build(sources, binary)
    binary.write_text("")
    os.utime(binary, (1_000_000, 1_000_000))
    assert needs_build(sources, binary)
    os.utime(binary, None)
    for old in sources:
        os.utime(old, (1_000_000, 1_000_000))
    assert not needs_build(sources, binary)
    os.utime(header, None)  # a newer header alone rebuilds it
    assert needs_build(sources, binary)
