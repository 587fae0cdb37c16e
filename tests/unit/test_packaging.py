"""The installed shape: `pip install flockmq` adds one top-level package,
`flockmq`, with the roles' folders (frontend/, router/, workers/, store/,
kept at the top of the source tree) installed under it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests"
)
BUILD = "from setuptools import build_meta; print(build_meta.build_wheel({out!r}))"


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the tree (building writes build/ and
    *.egg-info next to the sources), with the backend pyproject.toml names."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)
    out = tmp_path / "dist"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", BUILD.format(out=str(out))],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out / done.stdout.strip().splitlines()[-1]


def test_the_wheel_installs_only_flockmq(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert whl.read(top_level).decode().split() == ["flockmq"]
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "flockmq = flockmq.app.cli:main" in whl.read(entry_points).decode()
        whl.extractall(tmp_path / "installed")
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"flockmq"}
    for module in (
        "flockmq/frontend/acceptor.py",
        "flockmq/frontend/codec/decoder.py",
        "flockmq/router/router.py",
        "flockmq/workers/shard.py",
        "flockmq/store/sqlite.py",
        "flockmq/mqtt/topics.py",
        "flockmq/app/child.py",
        "flockmq/router/dashboard.html",  # package data: the dashboard (router/metrics.py)
    ):
        assert module in names, module
    # The installed copy imports from where it was installed (no site
    # packages, so not this checkout's editable install).
    installed = tmp_path / "installed"
    probe = (
        f"import sys; sys.path.insert(0, {str(installed)!r}); "
        "import flockmq.frontend.codec as c, flockmq.mqtt.topics as t; "
        "print(c.__file__); print(t.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        assert line.startswith(str(installed)), line


def test_the_version_is_defined_once() -> None:
    import flockmq

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert "\nversion =" not in pyproject.split("[tool.setuptools.dynamic]")[0]
    assert flockmq.__version__
