"""The auth hook modules the e2e tests run (`flockmq_test_hook`, and
`flockmq_cert_hook` for client certificates), and how a test puts them on
the broker's PYTHONPATH (`use_test_hook`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HOOKS = str(Path(__file__).parent)
TEST_HOOK = "flockmq_test_hook"


def use_test_hook(env: pytest.MonkeyPatch, module: str = TEST_HOOK) -> list[str]:
    """The broker started next imports the test hook `module` (its
    directory on PYTHONPATH): `flockmq serve`'s arguments for it."""
    env.setenv("PYTHONPATH", os.pathsep.join([HOOKS, os.environ.get("PYTHONPATH", "")]))
    return ["--auth-hook", module]
