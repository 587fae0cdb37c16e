"""The `auth` role: a user's authentication/authorization hooks
(flockmq.hooks) run in processes of their own, so that a slow or broken hook
never stalls an acceptor.

- `core.py`: `AuthCore`, the role's logic under the runtime's contract
  (flockmq/runtime.py): AUTHENTICATE/AUTHORIZE envelopes in, AUTH_REPLY out.
  Sans-IO: it hands each call to a runner and sends what the runner answers.
- `runner.py`: `HookRunner`, which calls the hook's functions on the event
  loop (async ones, concurrently) or on a small bounded thread pool (sync
  ones), each call within its time budget.
- `counting.py`: what the process counts of its calls ($SYS, Prometheus,
  `flockmq status`).
- `process.py`: the process (`flockmq auth N` in `ps aux`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flockmq.config import Config


def auth_key(index: int) -> tuple[str, int]:
    """The bus key of auth process `index` (flockmq/runtime.py's keys)."""
    return ("auth", index)


def auth_process_count(config: Config) -> int:
    """How many auth processes the broker runs (0: no hook)."""
    return (config.auth_processes or 0) if config.auth_hook else 0
