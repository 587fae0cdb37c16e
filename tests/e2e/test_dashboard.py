"""The live dashboard (issue 13) in headless Chromium: the page the metrics
port serves loads, shows a row for every process of the running broker with
its pid, and its throughput figure moves while paho publishes; the test
writes a screenshot to build/dashboard.png. Skips, saying why, only where
Chromium cannot be had (make test installs it where it can)."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

from flockmq.app.probe import free_port
from tests.hostile.health import child_pids

from .broker import Broker, MakeBroker
from .clients import Client, unique, wait_for, watch
from .test_browser import chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "build" / "dashboard.png"
ROW = re.compile(r'<tr data-process="([a-z]+)-(\d+)"[^>]*><td>[^<]*</td><td>(\d+)</td>')
RATE = re.compile(r'id="total-rate">([0-9.]+)<')


class Chromium:
    def __init__(self, profile: Path, url: str) -> None:
        self.browser = chromium()
        self.profile = profile
        self.url = url

    def run(self, *args: str) -> str:
        """Load the page, let its script poll for a few (virtual) seconds."""
        done = subprocess.run(
            [
                self.browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={self.profile}",
                *args,
                self.url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        return done.stdout

    def rows_and_rate(self) -> tuple[dict[tuple[str, int], int], float | None]:
        dom = self.run("--virtual-time-budget=3000", "--dump-dom")
        rows = {(role, int(index)): int(pid) for role, index, pid in ROW.findall(dom)}
        rate = RATE.search(dom)
        return rows, None if rate is None else float(rate.group(1))


class Load:
    """paho publishing QoS 0 to a subscriber in a thread, until stopped."""

    def __init__(self, broker: Broker) -> None:
        self.topic = unique("dashboard/load")
        self.subscriber = watch(broker, self.topic, 0)
        self.publisher = Client(broker.port)
        self.publisher.connect()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.is_set():
            for _ in range(50):
                self.publisher.paho.publish(self.topic, b"x" * 64, 0)
            self.stopped.wait(0.01)  # a steady rate, not a flood

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.publisher.disconnect()
        self.subscriber.disconnect()


def test_the_dashboard_shows_every_process_and_moves_under_load(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    metrics_port = free_port()
    broker = make_broker("--metrics-port", str(metrics_port), acceptors=2, workers=2)
    page = Chromium(tmp_path / "chromium", f"http://127.0.0.1:{metrics_port}/")
    expected = {**child_pids(broker), ("supervisor", 0): broker.pid}
    seen: list[tuple[dict[tuple[str, int], int], float | None]] = []

    def shows(condition: str) -> bool:
        seen.append(page.rows_and_rate())
        rows, rate = seen[-1]
        if rows != expected or rate is None:
            return False
        return rate == 0.0 if condition == "idle" else rate > 100

    wait_for(lambda: shows("idle"), 60, f"every process, idle, on the page (saw {seen[-1:]})")
    load = Load(broker)
    try:
        wait_for(lambda: shows("load"), 60, f"the throughput to move (saw {seen[-1:]})")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        page.run(
            "--window-size=1280,640", "--virtual-time-budget=20000", f"--screenshot={SCREENSHOT}"
        )
    finally:
        load.stop()
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
