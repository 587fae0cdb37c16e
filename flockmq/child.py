"""Entry point of every broker child process, as the supervisor spawns it:

    python -m flockmq.child ROLE INDEX --config FILE --incarnation N

so `ps` shows each process's role (acceptor, router, worker) and index.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from flockmq.config import Config
from flockmq.logsetup import setup_logging

ROLES = ("acceptor", "router", "worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flockmq.child")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("index", type=int)
    parser.add_argument("--config", required=True)
    parser.add_argument("--incarnation", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        config = Config.from_json(fh.read())
    setup_logging(config.log_level, f"{args.role}-{args.index}")
    # Hot paths allocate many short-lived lists: collect young objects less
    # often (the broker keeps few reference cycles), and keep start-up objects
    # out of every collection.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        if args.role == "acceptor":
            from frontend.acceptor import run_acceptor

            run_acceptor(config, args.index, args.incarnation)
        elif args.role == "router":
            from router.process import run_router

            run_router(config, args.incarnation)
        else:
            from workers.process import run_worker

            run_worker(config, args.index, args.incarnation)
    except KeyboardInterrupt:
        return 0
    except Exception:  # the process entry point: log why it died, exit non-zero
        logging.getLogger("flockmq").exception("%s %d crashed", args.role, args.index)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
