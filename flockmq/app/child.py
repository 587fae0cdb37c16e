"""Entry point of every broker child process, as the supervisor spawns it:

    python -m flockmq.app.child ROLE INDEX --config FILE --incarnation N --supervisor PID

or, with `spawn = "fork"` (the default), `main` runs in a child forked from
the supervisor (flockmq/app/forked.py). Either way the child titles itself
`flockmq ROLE INDEX` (`ps aux`) and names itself ROLE-INDEX (`ps -o comm`)
first (flockmq/app/proctitle.py). A child stops when its supervisor (PID)
dies (`flockmq.app.parent_watch`).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import signal
import sys

from flockmq.app.logsetup import setup_logging
from flockmq.app.parent_watch import stop_with_parent
from flockmq.app.proctitle import ROLES, child_name, child_title, name_process
from flockmq.config import Config
from flockmq.store import StoreError


def main(argv: list[str] | None = None) -> int:
    # SIGHUP asks acceptors to reload files (the supervisor forwards it); until
    # a role installs its handler, and in the other roles, it must not kill.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="flockmq.app.child")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("index", type=int)
    parser.add_argument("--config", required=True)
    parser.add_argument("--incarnation", type=int, default=0)
    parser.add_argument("--supervisor", type=int, default=None, help="the supervisor's pid")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        config = Config.from_json(fh.read())
    # before any thread (the parent watch's, the loop's): see name_process
    name_process(child_title(args.role, args.index, config), child_name(args.role, args.index))
    setup_logging(config.log_level, f"{args.role}-{args.index}", config.log_format)
    if args.supervisor is not None and not stop_with_parent(
        args.supervisor, config.shutdown_timeout
    ):
        logging.getLogger("flockmq").error(
            "%s %d: the supervisor (pid %d) died before it started: not starting",
            args.role,
            args.index,
            args.supervisor,
        )
        return 1
    # Hot paths allocate many short-lived lists: collect young objects less
    # often (the broker keeps few reference cycles), and keep start-up objects
    # out of every collection.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    code = run_role(args.role, args.index, args.incarnation, config)
    if args.supervisor is not None and os.getppid() != args.supervisor:
        # Stopping already: the parent watch's second SIGTERM (parent_watch)
        # must not cut the cleanup below short, and the loop that handled
        # SIGTERM is closed, which put back the default that kills.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        logging.getLogger("flockmq").warning(
            "%s %d stopped: the supervisor (pid %d) is gone",
            args.role,
            args.index,
            args.supervisor,
        )
        # The supervisor removes the runtime dir (ipc sockets, config) after
        # its children stop; killed, it cannot, and nothing in it is of use to
        # anyone now (every child is stopping and a new broker makes its own).
        if config.runtime_dir:
            shutil.rmtree(config.runtime_dir, ignore_errors=True)
    return code


def run_role(role: str, index: int, incarnation: int, config: Config) -> int:
    try:
        if role == "acceptor":
            from flockmq.frontend.acceptor import run_acceptor

            run_acceptor(config, index, incarnation)
        elif role == "router":
            from flockmq.router.process import run_router

            run_router(config, incarnation, index)
        elif role == "auth":
            from flockmq.auth.process import run_auth

            run_auth(config, index, incarnation)
        else:
            from flockmq.workers.process import run_worker

            run_worker(config, index, incarnation)
    except KeyboardInterrupt:
        return 0
    except StoreError as e:  # a store it cannot open or use: its message says it all
        logging.getLogger("flockmq").error("%s %d stopped: %s", role, index, e)
        return 1
    except Exception:  # the process entry point: log why it died, exit non-zero
        logging.getLogger("flockmq").exception("%s %d crashed", role, index)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
