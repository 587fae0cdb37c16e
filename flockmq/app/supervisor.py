"""The supervisor (`flockmq serve`): spawns the router, the workers, the
acceptors and, with an auth hook, the auth processes; restarts any that dies
(with backoff), and on SIGTERM/SIGINT stops them in order — acceptors first
(no new input), then auth processes, then workers, then the router —
leaving no orphan processes and no stale socket files. In a cluster
(`--cluster FILE --node NAME`, Config.placement) it runs its node's share:
its router, its acceptors and the workers of its shards (`local_children`).

It holds the data directory's lock (`flockmq.app.data_dir_lock`) and passes it to
its children, so no second broker opens the same store while any of them
runs. Each child is told the supervisor's pid and stops if the supervisor
dies, even by kill -9 (`flockmq.app.parent_watch`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flockmq.app.data_dir_lock import lock_data_dir
from flockmq.app.forked import ForkedProcess, fork_child, preload_roles
from flockmq.app.proctitle import child_name, name_process, supervisor_title
from flockmq.app.restarts import STABLE_SECONDS, Restarts
from flockmq.config import Config, ConfigError
from flockmq.control import PollingControl, Snapshot, control_endpoint
from flockmq.persistence import open_configured_store
from flockmq.store import StoreError
from flockmq.workers.serving_broker import new_broker_id

if TYPE_CHECKING:
    from flockmq.app.shard_workers import ShardWorkers
    from flockmq.cluster import Cluster

log = logging.getLogger("flockmq.app.supervisor")


@dataclass
class Child:
    role: str
    index: int
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    incarnation: int = 0
    started: float = 0.0
    restarts: Restarts = field(default_factory=Restarts)  # backoff, crash loop
    restart_at: float | None = None
    history: list[float] = field(default_factory=list)
    retiring: bool = False  # a cluster's worker whose shard moved away: not restarted

    @property
    def name(self) -> str:
        return f"{self.role} {self.index}"


def check_port_free(host: str, port: int) -> None:
    """Fail early with a clear message if someone else holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        # SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count,
        # a live listener (without SO_REUSEPORT on our side) still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use") from exc
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def local_children(config: Config) -> list[Child]:
    """The processes this supervisor runs: every one of the broker, or in a
    cluster those of its node (flockmq/placement.py), by their global index."""
    placement = config.placement
    if placement is None:
        return (
            [Child("router", i) for i in range(config.routers)]
            + [Child("worker", i) for i in range(config.workers)]
            + [Child("acceptor", i) for i in range(config.acceptors)]
            + [Child("auth", i) for i in range(config.auth_processes or 0)]
        )
    return (
        [Child("router", i) for i in placement.routers_here()]
        + [Child("worker", i) for i in placement.workers_here()]
        + [Child("acceptor", i) for i in placement.acceptors_here()]
    )


class Supervisor:
    def __init__(self, config: Config, cluster: Cluster | None = None) -> None:
        """`cluster`: the cluster file of a cluster node (with its placement
        in `config`): its shard workers start and stop as shards move
        (flockmq/app/shard_workers.py)."""
        self.config = config
        self.cluster = cluster
        self.shard_workers: ShardWorkers | None = None
        self.children: list[Child] = []
        self.stopping = False
        self.runtime_dir = ""
        self.config_path = ""
        self.lock_fd: int | None = None  # holds the data dir's lock; never closed
        self.control: PollingControl | None = None  # `flockmq status` (flockmq/control.py)

    def prepare(self) -> None:
        config = self.config
        try:
            os.makedirs(config.data_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"data_dir: cannot create {config.data_dir}: {exc.strerror}") from exc
        if config.persistence != "none":
            # Before anything else touches the store (opening it may migrate
            # it) or the port: a second broker on this data dir is told who
            # holds it rather than that the port is taken.
            self.lock_fd = lock_data_dir(config.data_dir)
        check_port_free(config.host, config.port)
        try:
            # Refuse a store that is corrupt or from a newer flockmq before
            # spawning anything; nothing is discarded or overwritten.
            open_configured_store(config).close()
        except StoreError as exc:
            raise ConfigError(str(exc)) from exc
        self.runtime_dir = tempfile.mkdtemp(prefix="flockmq-")
        config.runtime_dir = self.runtime_dir
        # Once per running broker: every child (a restarted one too) reads it
        # from the config file below (workers/serving_broker.py).
        config.broker_id = new_broker_id()
        if config.store == "postgres":
            log.info("broker id %s (its workers' shard lock connections)", config.broker_id)
        self.config_path = os.path.join(self.runtime_dir, "config.json")
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write(config.to_json())
        self.children = local_children(config)
        if self.cluster is not None:
            from flockmq.app.shard_workers import ShardWorkers

            try:
                self.shard_workers = ShardWorkers(self, self.cluster)
            except ConfigError:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
                raise

    def spawn(self, child: Child) -> None:
        cmd = [
            sys.executable,
            "-m",
            "flockmq.app.child",
            child.role,
            str(child.index),
            "--config",
            self.config_path,
            "--incarnation",
            str(child.incarnation),
            "--supervisor",
            str(os.getpid()),
        ]
        # The child inherits the data dir's lock: it is released only when
        # the last process of this broker is gone.
        pass_fds = () if self.lock_fd is None else (self.lock_fd,)
        if self.config.spawn == "fork":
            name = child_name(child.role, child.index)
            child.proc = fork_child(cmd[3:], pass_fds, name)
        else:
            child.proc = subprocess.Popen(cmd, start_new_session=False, pass_fds=pass_fds)
        child.started = time.monotonic()
        child.restart_at = None
        log.debug("started %s (pid %d)", child.name, child.proc.pid)

    def run(self) -> int:
        self.prepare()
        # `ps aux` says what this is (its name, `ps -o comm`, stays); before
        # any thread starts (name_process), and so before the control socket
        name_process(supervisor_title(self.config))
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_reload)
        if self.config.spawn == "fork":
            # before the control socket starts ZeroMQ's threads
            preload_roles(
                auth=bool(self.config.auth_processes),
                metrics=bool(self.config.metrics_port),
                websocket=any(
                    listener.protocol == "websockets" for listener in self.config.listener_list()
                ),
            )
        try:
            self.control = PollingControl(self.config.data_dir, self.runtime_dir, self.describe)
            for child in self.children:
                self.spawn(child)
            counts = {
                role: sum(1 for child in self.children if child.role == role)
                for role in ("acceptor", "worker", "router")
            }
            placement = self.config.placement
            log.info(
                "flockmq serving on %s: %d acceptors, %d workers, %d routers (pid %d)%s",
                ", ".join(listener.name for listener in self.config.listener_list()),
                counts["acceptor"],
                counts["worker"],
                counts["router"],
                os.getpid(),
                ""
                if placement is None
                else f"; cluster node {placement.names[placement.node]!r}"
                f" ({placement.node + 1} of {placement.routers}), shards"
                f" {placement.workers_here()} of {self.config.workers}",
            )
            while not self.stopping:
                self.watch()
                if self.shard_workers is not None:
                    self.shard_workers.poll()
                self.control.serve_for(0.1)
        finally:
            self.shutdown()
        return 0

    def describe(self) -> Snapshot:
        """The control answer: every child, its pid and restarts."""
        return {
            "role": "supervisor",
            "index": 0,
            "children": [
                {
                    "role": child.role,
                    "index": child.index,
                    "pid": None if child.proc is None else child.proc.pid,
                    "restarts": child.incarnation,
                    "endpoint": control_endpoint(self.runtime_dir, child.role, child.index),
                }
                for child in self.children
            ],
        }

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def _on_reload(self, signum: int, _frame: object) -> None:
        """SIGHUP: the acceptors read the password and ACL files again."""
        log.info("received SIGHUP: the acceptors reload the password and ACL files")
        for child in self.children:
            if child.role == "acceptor" and child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGHUP)

    def watch(self) -> None:
        now = time.monotonic()
        for child in list(self.children):
            proc = child.proc
            if proc is not None and (code := proc.poll()) is not None:
                child.proc = None
                if child.retiring:  # its shard moved away (shard_workers.py)
                    self.children.remove(child)
                    log.info("%s (pid %d) stopped: %s", child.name, proc.pid, describe_exit(code))
                    continue
                self._exited(child, proc.pid, describe_exit(code), now)
            elif (
                proc is not None
                and child.restarts.looping
                and child.restarts.running(now - child.started)
            ):
                log.warning("%s up for %.0fs: out of its crash loop", child.name, STABLE_SECONDS)
            if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.incarnation += 1
                self.spawn(child)

    def _exited(self, child: Child, pid: int, how: str, now: float) -> None:
        """Schedule the restart of a child that exited; one log line per
        exit, except in a crash loop (flockmq/app/restarts.py)."""
        lived = now - child.started
        delay, level = child.restarts.exited(lived, self.config.restart_backoff_max)
        child.restart_at = now + delay
        if level == logging.WARNING:
            log.warning(
                "%s (pid %d) %s after %.1fs, %d times in a row within %.0fs of its start:"
                " a crash loop; restarting it every %.1fs at most, its exits not logged"
                " again until it stays up %.0fs",
                child.name,
                pid,
                how,
                lived,
                child.restarts.quick_exits,
                STABLE_SECONDS,
                self.config.restart_backoff_max,
                STABLE_SECONDS,
            )
        else:
            log.log(
                level,
                "%s (pid %d) %s after %.1fs; restarting in %.1fs",
                child.name,
                pid,
                how,
                lived,
                delay,
            )

    def shutdown(self) -> None:
        """Acceptors, then workers, then the router; SIGKILL after the timeout."""
        if self.shard_workers is not None:
            self.shard_workers.close()
        for role in ("acceptor", "auth", "worker", "router"):
            group = [c for c in self.children if c.role == role and c.proc is not None]
            for child in group:
                assert child.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.config.shutdown_timeout
            for child in group:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time: killing it", child.name)
                    child.proc.kill()
                    child.proc.wait()
                child.proc = None
        if self.control is not None:
            self.control.close()
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        log.info("stopped")
