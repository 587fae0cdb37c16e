"""One client process: an asyncio (uvloop) event loop running its share of the
plan's clients, driven by the coordinator over a pipe.

Messages, coordinator -> worker: ("go", start_ns), ("stop",).
Worker -> coordinator: ("ready", ConnectReport), ("progress", Progress)
every PROGRESS_INTERVAL, ("published", last_ns) once its publishers are done,
and ("result", WorkerResult) after "stop". A worker never decides the run's
phases: it connects, waits for "go", publishes, and reports until "stop".
In `connect-rate` it connects nothing before "go"; after it, each client
connects once (CONNECT, CONNACK 0, DISCONNECT, closed), `connect_concurrency`
at a time, and "published" says the last one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from loadgen import wire
from loadgen.client import ClientError, Counters, LoadClient, open_client, subscribe
from loadgen.scenarios import ClientSpec, Settings
from loadgen.stats import TrackerWire, tracker_to_wire

PROGRESS_INTERVAL = 0.2
MAX_ERRORS = 5
CONNECT_TIMEOUT = 5.0


@dataclass(slots=True)
class ConnectReport:
    connected: int
    failed: int
    seconds: float
    errors: list[str]


@dataclass(slots=True)
class Progress:
    sent: int
    completed: int
    received: int
    unique: int
    alive: int
    dropped: int
    at: float  # time.monotonic() when the counts were taken


@dataclass(slots=True)
class WorkerResult:
    sent: int = 0
    completed: int = 0
    received: int = 0
    rejected: int = 0
    unexpected: int = 0
    dropped: int = 0
    alive: int = 0
    last_receive_ns: int = 0
    last_publish_ns: int = 0
    failed: int = 0  # connect-rate: connects that did not get CONNACK 0 in time
    latency: tuple[dict[int, int], int, int] = ({}, 0, 0)
    trackers: list[TrackerWire] = field(default_factory=list)
    completed_bitmaps: dict[int, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_main(
    specs: list[ClientSpec], settings: Settings, counts: dict[int, int], conn: Connection
) -> None:
    """Process entry point."""
    raise_fd_limit()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    try:
        runner(Worker(specs, settings, counts, conn).run())
    except KeyboardInterrupt:
        pass
    except Exception:  # the process entry point: report the crash, then die
        with contextlib.suppress(OSError):
            conn.send(("crashed", traceback.format_exc()))
        raise
    finally:
        conn.close()


class Worker:
    def __init__(
        self, specs: list[ClientSpec], settings: Settings, counts: dict[int, int], conn: Connection
    ) -> None:
        self.specs = specs
        self.settings = settings
        self.counts = counts
        self.conn = conn
        self.counters = Counters()
        self.clients: list[LoadClient] = []
        self.errors: list[str] = []
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.last_publish_ns = 0
        self.churn = settings.scenario == "connect-rate"
        self.failed = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self.on_pipe)
        report = ConnectReport(0, 0, 0.0, []) if self.churn else await self.connect_all()
        self.conn.send(("ready", report))
        reporter = asyncio.create_task(self.report_progress())
        pinger = asyncio.create_task(self.ping())
        publishing: asyncio.Task[None] | None = None
        while True:
            message = await self.inbox.get()
            if message[0] == "go":
                work = self.connect_each() if self.churn else self.publish(message[1])
                publishing = asyncio.create_task(work)
            elif message[0] in ("stop", "eof"):
                break
        for task in (reporter, pinger, publishing):
            if task is not None:
                task.cancel()
        loop.remove_reader(self.conn.fileno())
        result = self.result()
        await self.close_all()
        if message[0] == "stop":
            self.conn.send(("result", result))

    def on_pipe(self) -> None:
        try:
            self.inbox.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.inbox.put_nowait(("eof",))

    def note_error(self, error: BaseException) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{type(error).__name__}: {error}")

    async def connect_all(self) -> ConnectReport:
        """Connect every client, subscribers subscribed, at most
        `connect_concurrency` handshakes at a time. Gives up on the rest after
        a window's worth of failures in a row (a broker out of descriptors
        stops answering; waiting out every timeout would take minutes) or when
        the run's connect time is up."""
        settings = self.settings
        gate = asyncio.Semaphore(settings.connect_concurrency)
        started = time.monotonic()
        give_up_at = started + settings.duration_limit * 0.8
        streak = 0
        failed = 0

        async def connect(spec: ClientSpec) -> None:
            nonlocal streak, failed
            async with gate:
                if streak >= settings.connect_concurrency or time.monotonic() >= give_up_at:
                    failed += 1
                    return
                try:
                    client = await open_client(spec, settings, self.counters, CONNECT_TIMEOUT)
                    self.clients.append(client)
                    if spec.topic_filter:
                        client.track(self.counts)
                        await subscribe(client, CONNECT_TIMEOUT)
                    streak = 0
                except (TimeoutError, OSError, ClientError) as error:
                    self.note_error(error)
                    streak += 1
                    failed += 1

        await asyncio.gather(*(connect(spec) for spec in self.specs))
        self.clients = [c for c in self.clients if not c.closed.done()]
        return ConnectReport(
            connected=len(self.clients),
            failed=failed,
            seconds=time.monotonic() - started,
            errors=list(self.errors),
        )

    async def publish(self, start_ns: int) -> None:
        publishers = [c for c in self.clients if c.spec.publisher_id >= 0]
        for client in publishers:
            client.start_publishing(start_ns)
        for client in publishers:
            try:
                await client.done
            except ClientError as error:
                self.note_error(error)
        self.last_publish_ns = time.monotonic_ns()
        self.conn.send(("published", self.last_publish_ns))

    async def connect_each(self) -> None:
        """connect-rate: every client connects, is accepted and disconnects."""
        gate = asyncio.Semaphore(self.settings.connect_concurrency)

        async def connect_once(spec: ClientSpec) -> None:
            async with gate:
                try:
                    client = await open_client(spec, self.settings, self.counters, CONNECT_TIMEOUT)
                except (TimeoutError, OSError, ClientError) as error:
                    self.note_error(error)
                    self.failed += 1
                    return
                self.counters.completed += 1
                self.last_publish_ns = time.monotonic_ns()
                client.disconnect()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await client.closed

        await asyncio.gather(*(connect_once(spec) for spec in self.specs))
        self.conn.send(("published", self.last_publish_ns))

    async def report_progress(self) -> None:
        c = self.counters
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            alive = sum(1 for client in self.clients if not client.closed.done())
            self.conn.send(
                (
                    "progress",
                    Progress(
                        c.sent,
                        c.completed,
                        c.received,
                        c.unique,
                        alive,
                        c.dropped,
                        time.monotonic(),
                    ),
                )
            )

    async def ping(self) -> None:
        """PINGREQ on connections that have been quiet for half the keepalive."""
        keepalive = self.settings.keepalive
        if keepalive <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(keepalive / 4)
            quiet_since = loop.time() - keepalive / 2
            for client in self.clients:
                if client.last_write < quiet_since and not client.closed.done():
                    client.write(wire.PINGREQ_BYTES)

    def result(self) -> WorkerResult:
        c = self.counters
        result = WorkerResult(
            sent=c.sent,
            completed=c.completed,
            received=c.received,
            rejected=c.rejected,
            unexpected=c.unexpected,
            dropped=c.dropped,
            alive=sum(1 for client in self.clients if not client.closed.done()),
            last_receive_ns=c.last_receive_ns,
            last_publish_ns=self.last_publish_ns,
            failed=self.failed,
            latency=c.latency.to_wire(),
            errors=list(self.errors),
        )
        for client in self.clients:
            for publisher_id, tracker in client.trackers.items():
                result.trackers.append(tracker_to_wire(publisher_id, tracker))
            if client.spec.publisher_id >= 0:
                result.completed_bitmaps[client.spec.publisher_id] = bytes(client.completed)
        return result

    async def close_all(self) -> None:
        for client in self.clients:
            client.disconnect()
        waits = [client.closed for client in self.clients]
        if waits:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 5.0)
