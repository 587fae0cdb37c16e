"""Which load generator runs a bench row, and the native one's build.

`make bench` drives its rows with the native generator
(`scripts/loadgen/native/`, C with epoll and OpenSSL), which spends
a few µs of CPU per message where loadtest.py spends 14-25: on a small machine
the generator shares the cores with the broker, and a costly one measures
itself. It takes loadtest.py's options and prints the same JSON line (plus
"generator": "native"). It is compiled on first use into build/bench/,
again whenever the source is newer than the binary. A row the native
generator does not implement (it exits UNSUPPORTED on `--dry-run`), or a
machine without a C compiler or OpenSSL's headers, runs loadtest.py instead,
and says so.

Invariants: a build never leaves a half-written binary behind (it compiles to
a temporary name and renames); `native_supports` runs nothing but the
argument check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
LOADTEST = SCRIPTS / "loadtest.py"
NATIVE_DIR = SCRIPTS / "loadgen" / "native"
NATIVE_BINARY = SCRIPTS.parent / "build" / "bench" / "mqttload"
GENERATORS = ("native", "python")
UNSUPPORTED = 64  # mqttload's exit status for options it does not implement
OPENSSL_HEADER = Path("/usr/include/openssl/ssl.h")
BUILD_PACKAGES = ("gcc", "libssl-dev")


@dataclass(frozen=True, slots=True)
class Generator:
    """A load generator: "native" or "python", and the command that runs it."""

    name: str
    prefix: tuple[str, ...]  # the command before the scenario and its options

    def command(self, args: list[str]) -> list[str]:
        return [*self.prefix, *args]


PYTHON = Generator("python", (sys.executable, str(LOADTEST)))


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def native_sources(directory: Path = NATIVE_DIR) -> list[Path]:
    """The generator's C files and headers: a change to any one rebuilds it."""
    return sorted([*directory.glob("*.c"), *directory.glob("*.h")])


def build_command(cc: str, sources: list[Path], output: Path) -> list[str]:
    files = [str(f) for f in sources if f.suffix == ".c"]
    return [cc, "-O2", "-std=gnu11", "-o", str(output), *files, "-lssl", "-lcrypto"]


def needs_build(sources: list[Path], binary: Path) -> bool:
    if not binary.exists():
        return True
    built = binary.stat().st_mtime
    return any(built < source.stat().st_mtime for source in sources)


def install_build_tools() -> None:
    """apt-get gcc and libssl-dev, as find_mosquitto installs mosquitto: only
    as root with apt-get; otherwise nothing (the caller falls back)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print(f"bench: installing {' '.join(BUILD_PACKAGES)} with apt-get", file=sys.stderr)
    install = ["apt-get", "install", "-y", "-q", *BUILD_PACKAGES]
    for commands in ([install], [["apt-get", "update", "-q"], install]):
        for cmd in commands:
            subprocess.run(cmd, capture_output=True, check=False, timeout=900)
        if compiler() and OPENSSL_HEADER.exists():
            return


def build_native(
    sources: list[Path] | None = None, binary: Path = NATIVE_BINARY, install: bool = True
) -> tuple[Path | None, str]:
    """The native generator's binary, built if missing or older than a
    source: (path, "") or (None, why it could not be built)."""
    if sources is None:
        sources = native_sources()
    if not sources:
        return None, f"no C sources in {NATIVE_DIR}"
    if not needs_build(sources, binary):
        return binary, ""
    cc = compiler()
    if (cc is None or not OPENSSL_HEADER.exists()) and install:
        install_build_tools()
        cc = compiler()
    if cc is None:
        return None, "no C compiler (cc/gcc; apt-get install gcc libssl-dev)"
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(binary.name + ".partial")
    proc = subprocess.run(
        build_command(cc, sources, partial), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        reason = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        hint = (
            "" if OPENSSL_HEADER.exists() else " (no OpenSSL headers: apt-get install libssl-dev)"
        )
        return None, f"{cc} failed{hint}: {reason[0]}"
    partial.replace(binary)
    return binary, ""


def native_supports(binary: Path, args: list[str]) -> tuple[bool, str]:
    """Whether the native generator implements this scenario and these
    options (its `--dry-run` checks them and connects nothing)."""
    proc = subprocess.run(
        [str(binary), *args, "--dry-run"], capture_output=True, text=True, check=False, timeout=30
    )
    if proc.returncode == 0:
        return True, ""
    message = proc.stderr.strip().splitlines()[-1:] or [""]
    if proc.returncode == UNSUPPORTED:
        return False, message[0]
    return False, f"--dry-run failed with exit status {proc.returncode}: {message[0]}"


def choose(wanted: str, args: list[str], binary: Path | None) -> tuple[Generator, str]:
    """The generator for one row's load-tester arguments: the native one when
    wanted, built and able to run them; else loadtest.py, with the reason."""
    if wanted == "python":
        return PYTHON, ""
    if binary is None:
        return PYTHON, "the native generator could not be built"
    ok, why = native_supports(binary, args)
    if not ok:
        return PYTHON, why
    return Generator("native", (str(binary),)), ""
