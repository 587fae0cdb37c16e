"""A real browser (issue 11): MQTT.js (npm `mqtt`) in headless Chromium loads
a page this test serves, connects to flockmq over ws://, subscribes, publishes
a message a paho client receives over TCP, and receives one paho publishes.
The page reports each step to the test's HTTP server. Skips, saying why, only
where Chromium or npm cannot be had (make test installs Chromium where it can)."""

from __future__ import annotations

import http.server
import queue
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from flockmq.app.probe import free_port

from .broker import Broker
from .clients import Client, unique

ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = ROOT / "build" / "npm"  # MQTT.js, installed once per checkout
PAGE = """<!doctype html>
<html><head><script src="/mqtt.min.js"></script></head><body><script>
function report(what) {{ fetch("/report?" + encodeURIComponent(what)); }}
const client = mqtt.connect("ws://127.0.0.1:{port}/mqtt", {{clientId: "{client_id}"}});
client.on("connect", () => {{
  client.subscribe("{to_browser}", {{qos: 1}}, (err) => {{
    if (err) {{ report("error:" + err); return; }}
    report("subscribed");
    client.publish("{from_browser}", "hello from the browser", {{qos: 1}});
  }});
}});
client.on("message", (topic, payload) => report("message:" + payload.toString()));
client.on("error", (err) => report("error:" + err));
</script></body></html>
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (make test installs it with apt-get where it can)")
    return found


def mqtt_js() -> Path:
    bundle = NPM_DIR / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"
    if bundle.exists():
        return bundle
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so MQTT.js cannot be fetched")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR), "mqtt@5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not bundle.exists():
        pytest.skip(f"npm could not install MQTT.js: {done.stderr[-500:]}")
    return bundle


class PageServer:
    """Serves the page and MQTT.js, and queues what the page reports."""

    def __init__(self, page: str, bundle: Path) -> None:
        self.reports: queue.Queue[str] = queue.Queue()
        reports, body, script = self.reports, page.encode(), bundle.read_bytes()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/report":
                    reports.put(urllib.parse.unquote(query))
                    content, kind = b"ok", "text/plain"
                elif path == "/mqtt.min.js":
                    content, kind = script, "application/javascript"
                else:
                    content, kind = body, "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def expect(self, what: str, timeout: float = 60) -> str:
        while True:
            report = self.reports.get(timeout=timeout)
            assert not report.startswith("error:"), report
            if report.startswith(what):
                return report

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ws_broker(tmp_path: Path) -> Iterator[tuple[Broker, int]]:
    ws_port = free_port()
    b = Broker(tmp_path / "b", acceptors=1, workers=1)
    b.port = free_port()
    (tmp_path / "flockmq.toml").write_text(
        f"[[listeners]]\nport = {b.port}\n"
        f'[[listeners]]\nport = {ws_port}\nprotocol = "websockets"\n'
    )
    b.extra_args = ["--config", str(tmp_path / "flockmq.toml")]
    b.start()
    yield b, ws_port
    b.stop()


def test_mqtt_js_in_chromium_talks_with_paho(ws_broker: tuple[Broker, int], tmp_path: Path) -> None:
    browser, bundle = chromium(), mqtt_js()
    broker, ws_port = ws_broker
    to_browser, from_browser = unique("e2e/to-browser"), unique("e2e/from-browser")
    paho = Client(broker.port)
    paho.connect()
    assert paho.subscribe(from_browser, 1)[0] == 1
    page = PageServer(
        PAGE.format(
            port=ws_port,
            client_id=unique("browser"),
            to_browser=to_browser,
            from_browser=from_browser,
        ),
        bundle,
    )
    proc = subprocess.Popen(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"http://127.0.0.1:{page.port}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page.expect("subscribed")
        # browser -> flockmq (WebSocket) -> paho (TCP)
        assert paho.expect(1)[0].payload == b"hello from the browser"
        # paho (TCP) -> flockmq -> browser (WebSocket)
        paho.publish(to_browser, b"hello from paho", 1)
        assert page.expect("message:") == "message:hello from paho"
    finally:
        proc.kill()
        proc.wait(30)
        page.close()
        paho.disconnect()
