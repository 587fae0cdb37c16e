"""The `auth` role: a user's authentication/authorization hooks
(flockmq.hooks) run in processes of their own, so that a slow or broken hook
never stalls an acceptor.

- `core.py`: `AuthCore`, the role's logic under the runtime's contract
  (flockmq/runtime.py): AUTHENTICATE/AUTHORIZE envelopes in, AUTH_REPLY out.
  Sans-IO: it hands each call to a runner and sends what the runner answers.
- `runner.py`: `HookRunner`, which calls the hook's functions on the event
  loop (async ones, concurrently) or on a small bounded thread pool (sync
  ones), each call within its time budget.
- `process.py`: the process (`python -m flockmq.app.child auth N`).
"""

from __future__ import annotations


def auth_key(index: int) -> tuple[str, int]:
    """The bus key of auth process `index` (flockmq/runtime.py's keys)."""
    return ("auth", index)
